"""The production topology without Docker: `python -m include.demo --executor celery` on the PostgreSQL and Redis
every development machine and CI runs (127.0.0.1:5432, user postgres, trust; 127.0.0.1:6379).

One install cycle proves both the topology and crash safety. The demo creates its own database, migrates it and
starts the api-server, scheduler, dag-processor, triggerer and two Celery workers (CeleryExecutor, Redis broker,
PostgreSQL result backend), each its own process group; artifacts live only in the sandbox's S3. The test
approves the run through the REST API, then kills (SIGKILL, every process of its session: the worker, its pool
and the task processes, which sit in process groups of their own) the worker that is sending
wave 2's install while the sandbox holds the answer to that SendCommand: the command exists and its instances
patch, but the worker never recorded it. Airflow fails the task for its missing heartbeat and retries it on the
other worker, which finds the command instead of sending it again. The run must succeed with a correct report,
every instance must be commanded once (the sandbox's request log), tasks must have run on both workers (task
instance hostnames), and stopping the demo must leave no process and drop the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import hold_answer, release_hold, sandbox_requests
from tests.test_demo import (
    APPROVAL,
    OutputReader,
    alive,
    demo_scenario,
    free_port,
    http,
    process_table,
    started_by,
)

POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
RUN_CONF = {
    "mode": "install",
    "approval_mode": "manual",
    "halt_threshold": "50%",  # the scenario's injected install failures must not halt this run
    "poll_seconds": 2,
    "command_timeout_minutes": 0.5,
    # The canary and one wave; snapshots and rollback are proven by the e2e install cycle.
    "snapshot": False,
    "rollback": "none",
    "wave_percentages": [100],
}
# The killed task fails this long after its last heartbeat (tasks heartbeat every 5 s; the demo's default is 60 s).
HEARTBEAT_TIMEOUT = 30
KILLED_WAVE = "wave_2"
WAVE_COMMENT = "patchcycle wave 2 "
STARTUP_TIMEOUT = 300.0  # migrating PostgreSQL and starting eight processes on two busy cores
TRIGGER_TIMEOUT = 150.0
CYCLE_TIMEOUT = 600.0
# The killed task's heartbeat times out after HEARTBEAT_TIMEOUT, then its retry waits 20 to 40 s.
RECOVERY_TIMEOUT = 900.0
STOP_TIMEOUT = 60.0

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc"),
]


def postgres_databases() -> set[str]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(POSTGRES, connect_timeout=5)) as connection, connection.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        return {row[0] for row in cur.fetchall()}


@pytest.fixture(scope="module", autouse=True)
def services_running() -> None:
    """PostgreSQL and Redis are prerequisites of `make test` (docs/development.md): say so when one is missing."""
    import redis

    try:
        postgres_databases()
        redis.Redis.from_url(REDIS, socket_connect_timeout=5).ping()
    except Exception as err:  # any failure to reach them means the same thing
        pytest.fail(f"the Celery topology test needs PostgreSQL at {POSTGRES} and Redis at {REDIS}: {err}")


def worker_sessions(lines: list[str]) -> dict[str, int]:
    """The Celery workers' names and pids (each the leader of its own session), from the demo's output."""
    found = re.findall(r"^Started (celery-worker-\d+) \(pid (\d+),", "\n".join(lines), re.M)
    return {name: int(pid) for name, pid in found}


def kill_session(session: int) -> int:
    """SIGKILL every process of a session (the worker, its pool and the task processes): a crashed machine."""
    killed = 0
    for pid, process in process_table().items():
        if process.sid == session:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def wait_until(check: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.mark.timeout(STARTUP_TIMEOUT + TRIGGER_TIMEOUT + 2 * CYCLE_TIMEOUT + RECOVERY_TIMEOUT + 2 * STOP_TIMEOUT)
def test_an_approved_install_cycle_on_celery_survives_a_worker_killed_mid_wave(tmp_path: Path) -> None:
    sandbox_port, api_port = free_port(), free_port()
    sandbox, api = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    fast = demo_scenario(tmp_path / "demo-scenario.yaml")  # the demo test's: one region, no RDS, 10x clock
    argv = [sys.executable, "-m", "include.demo", "--scenario", str(fast), "--executor", "celery", "--workers", "2"]
    argv += ["--postgres", POSTGRES, "--redis", REDIS, "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)]
    argv += ["--run-conf", json.dumps(RUN_CONF)]
    argv += ["--sandbox-port", str(sandbox_port), "--api-port", str(api_port), "--state-dir", str(tmp_path / "demo")]
    started = time.monotonic()
    demo = subprocess.Popen(
        argv,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = OutputReader(demo.stdout)
    pids: dict[int, int] = {}
    database = ""
    try:
        database = output.wait_for("Database: ", STARTUP_TIMEOUT).split()[1]
        assert database in postgres_databases()
        login = output.wait_for("Login: ", STARTUP_TIMEOUT)
        print(f"topology ready after {time.monotonic() - started:.1f} s")
        user, password = login.removeprefix("Login: ").split(" / ")
        status, body = http("POST", f"{api}/auth/token", {"username": user, "password": password})
        assert status == 201, body
        token = body["access_token"]
        pids = started_by(demo.pid)
        commands = " | ".join(alive(pids).values())
        for name in ("include.sandbox", "api_server", "scheduler", "dag-processor", "triggerer"):
            assert name in commands, f"no {name} process in {commands}"
        workers = worker_sessions(output.lines)
        assert sorted(workers) == ["celery-worker-1", "celery-worker-2"], output.lines
        assert all(pid in pids for pid in workers.values())

        run_id = output.wait_for("Triggered patch_cycle run: ", TRIGGER_TIMEOUT).split(": ", 1)[1].split(" ")[0]
        run_path = f"{api}/api/v2/dags/patch_cycle/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        output.wait_for("Approval needed: ", CYCLE_TIMEOUT)
        # Wave 2's first install command will be sent, but its answer held until the worker sending it is dead.
        assert hold_answer(sandbox, "ssm:SendCommand", WAVE_COMMENT, seconds=300)["armed"]
        status, body = http(
            "PATCH", f"{run_path}/taskInstances/{APPROVAL}/-1/hitlDetails", {"chosen_options": ["Approve"]}, token
        )
        assert status == 200, body
        approved = time.monotonic()

        held = wait_until(
            lambda: [r for r in sandbox_requests(sandbox, "ssm:SendCommand") if r["held"]],
            CYCLE_TIMEOUT,
            "wave 2's send",
        )
        status, wave = http("GET", f"{run_path}/taskInstances/{KILLED_WAVE}", token=token)
        assert status == 200 and wave["state"] == "running" and wave["try_number"] == 1, wave
        victim = wave["hostname"]
        assert victim in workers, f"{KILLED_WAVE} runs on {victim!r}, not on one of {sorted(workers)}"
        pids |= started_by(demo.pid)
        assert kill_session(workers[victim]) >= 3  # the worker, its pool process and the task's processes
        release_hold(sandbox)  # the answer goes nowhere: its caller is dead
        killed = time.monotonic()
        print(f"killed {victim} (sending {held[0]['instance_ids'][:3]}...) {killed - approved:.1f} s after approval")
        assert output.wait_for(f"{victim} exited", 120).startswith(f"{victim} exited (code -9)")

        finished = output.wait_for("patch_cycle run ", RECOVERY_TIMEOUT + CYCLE_TIMEOUT)
        print(f"run finished {time.monotonic() - killed:.1f} s after the kill")
        assert finished == f"patch_cycle run {run_id} finished: success"
        report_dir = tmp_path / "demo" / "reports" / run_id.replace(":", "_").replace("+", "_")
        output.wait_for("Summary: ", 60)
        report = json.loads((report_dir / "report.json").read_text())
        assert (report["run_id"], report["mode"]) == (run_id, "install")
        assert report["accounting"]["ok"], report["accounting"]
        assert report["incomplete"] == []
        gate = report["install"]["approval"]
        assert (gate["mode"], gate["decision"], gate["by"]) == ("manual", "Approve", user)
        waves = report["install"]["waves"]
        assert [w["status"] for w in waves] == ["done", "done"], waves
        assert report["totals"]["by_verdict"]["PATCHED"] > 0
        # Every artifact lives in the sandbox's S3: no worker wrote a table of the run to its disk.
        assert not [
            p for p in (tmp_path / "demo").rglob("*") if p.suffix in (".parquet", ".json") and "reports" not in p.parts
        ]

        # The retry ran on the other worker, and found the command instead of sending it again.
        status, body = http("GET", f"{run_path}/taskInstances/{KILLED_WAVE}/tries", token=token)
        assert status == 200, body
        tries = {t["try_number"]: t for t in body["task_instances"]}
        assert tries[1]["hostname"] == victim and tries[1]["state"] == "failed", tries[1]
        survivor = tries[max(tries)]
        assert survivor["state"] == "success" and survivor["hostname"] in set(workers) - {victim}, survivor
        retry_logs = list((tmp_path / "demo").rglob(f"task_id={KILLED_WAVE}/attempt={max(tries)}.log"))
        assert any("not recorded; waiting for it instead of sending again" in p.read_text() for p in retry_logs)
        status, body = http("GET", f"{run_path}/taskInstances", token=token)
        assert status == 200, body
        hostnames = Counter(ti["hostname"] for ti in body["task_instances"] if ti["state"] == "success")
        assert set(hostnames) <= set(workers) and len(tries) >= 2, hostnames
        print(f"task instances by worker: {dict(hostnames)}; {KILLED_WAVE} tries: {sorted(tries)}")

        # No instance was commanded twice: the sandbox's request log, per instance and purpose.
        sent = [r for r in sandbox_requests(sandbox) if r["status"] == 200 and r["invoked_by"] == "client"]
        per_instance = Counter(
            (r["operation"], r["document"], r["comment"], instance) for r in sent for instance in r["instance_ids"]
        )
        twice = {key: count for key, count in per_instance.items() if count > 1}
        assert not twice, f"commanded more than once: {twice}"
        wave_sends = [r for r in sent if r["comment"].startswith("patchcycle wave")]
        installed = Counter(i for r in wave_sends for i in r["instance_ids"])
        assert sum(installed.values()) == sum(w["sent"] for w in waves), (installed, waves)
        assert set(held[0]["instance_ids"]) <= set(installed)

        pids |= started_by(demo.pid)
        stopping = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=STOP_TIMEOUT) == 0
        while (left := alive(pids)) and time.monotonic() - stopping < STOP_TIMEOUT:
            time.sleep(0.2)
        assert not left, f"still running {STOP_TIMEOUT:.0f} s after SIGINT: {left}"
        rest = output.rest()
        assert f"Dropped database {database}" in rest and "Stopped." in rest
        assert database not in postgres_databases()
        print(f"wall time {time.monotonic() - started:.1f} s; {len(pids)} processes stopped")
    finally:
        if demo.poll() is None:  # the test failed early: let the demo clean up, then kill what is left
            pids |= started_by(demo.pid)
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
        for pid in alive(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if database and database in postgres_databases():  # the demo could not drop it
            import psycopg2

            with contextlib.closing(psycopg2.connect(POSTGRES)) as connection:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

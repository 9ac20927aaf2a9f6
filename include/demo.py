"""Run the patch cycle locally: the sandbox AWS plus a throwaway Airflow.

    python -m include.demo --scenario include/sandbox/scenarios/default.yaml
    python -m include.demo --scenario include/sandbox/scenarios/default.yaml --executor celery

Starts, each in its own process group and all bound to 127.0.0.1:
the sandbox AWS, then `airflow db migrate`, then the api-server, scheduler,
dag-processor and triggerer (AIRFLOW_HOME under .demo/airflow, logs in
.demo/logs). With the LocalExecutor (the default) the database is SQLite. With
`--executor celery` it is the production topology: a fresh PostgreSQL database
(created on the `--postgres` server, dropped on stop), the CeleryExecutor with a
Redis broker (`--redis`) and the PostgreSQL database as Celery's result backend,
and `--workers` Celery workers (two by default), each its own process group with
its own host name (task instances show which worker ran them) and all serving a
queue of their own, so several demos can share one Redis. A worker that dies is
reported and its tasks are retried by Airflow on the others; the demo stops when
the last one dies. One connection per scenario account points at the sandbox
(`aws_default` for the first, `aws_<account id>` assuming a role in each other),
and the run's targets cover every account and region of the scenario.

Once the stack is up it triggers a patch_cycle install run (approval
mode manual) through the REST API, tells you where to approve it in the UI once
staging has passed, watches the run, and copies its report out of the sandbox's
S3 into .demo/reports/<run id>/. Ctrl-C or SIGTERM stops every process it started; so
does any of them dying unexpectedly.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from include import connections
from include.sandbox.scenario import load_scenario

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ADMIN_USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
HOME_MARKER = ".patchcycle-demo"
AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
STOP_GRACE_SECONDS = 15.0
SANDBOX_TIMEOUT_SECONDS = 60.0
MIGRATE_TIMEOUT_SECONDS = 300.0
API_TIMEOUT_SECONDS = 240.0
DAG_ID = "patch_cycle"
DAG_PARSE_TIMEOUT_SECONDS = 120.0
DAGBAG_IMPORT_TIMEOUT_SECONDS = 120
RUN_POLL_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 10.0
# An install cycle that waits for you at the approval gate. The sandbox runs commands in seconds;
# a hung instance is cut short after 2 minutes.
DEMO_RUN_CONF: dict[str, Any] = {
    "mode": "install",
    "approval_mode": "manual",
    "poll_seconds": 5,
    "command_timeout_minutes": 2,
}
APPROVAL_TASK = "approve_production"
ARTIFACT_BUCKET = "patchcycle-artifacts"  # the patch_cycle DAG's default artifact_root
FINISHED_STATES = ("success", "failed")
EXECUTORS = ("local", "celery")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
WORKER_CONCURRENCY = 2
# A task whose worker died is failed (then retried by its task's retries) after this long without a heartbeat.
HEARTBEAT_TIMEOUT_SECONDS = 60
MIN_HEARTBEAT_SECONDS = 5  # Airflow's [workers] min_heartbeat_interval: how often a running task heartbeats
# Redis redelivers a task message not acknowledged within this long (tasks run minutes before they defer).
VISIBILITY_TIMEOUT_SECONDS = 3600
# Each Celery worker's name, for `[core] hostname_callable` (see worker_hostname).
WORKER_HOSTNAME_VARIABLE = "PATCHCYCLE_WORKER_HOSTNAME"


class ServiceDied(Exception):
    """A process the demo started exited while it should have been running."""

    def __init__(self, service: Service) -> None:
        super().__init__(f"{service.name} exited with code {service.process.returncode}")
        self.service = service


@dataclass
class Service:
    """A process the demo started, leader of its own session and process group."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    worker: bool = False  # a Celery worker: the others take over its tasks when it dies
    death_reported: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None


@dataclass(frozen=True)
class DemoPaths:
    state_dir: Path
    airflow_home: Path
    log_dir: Path


@dataclass(frozen=True)
class CeleryTopology:
    """The CeleryExecutor's settings: the metadata database (also Celery's result backend), broker and queue."""

    database_url: str  # SQLAlchemy URL of the run's own PostgreSQL database
    broker_url: str
    queue: str
    workers: int
    heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_SECONDS


def worker_hostname() -> str:
    """`[core] hostname_callable` of the demo's Airflow: the Celery worker's own name, else the machine's.

    Several workers on one machine share its host name; each task instance records the name of the worker
    that ran it, so the demo gives each its own (in the PATCHCYCLE_WORKER_HOSTNAME environment variable).
    """
    return os.environ.get(WORKER_HOSTNAME_VARIABLE) or socket.getfqdn()


def say(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m include.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True, type=Path, help="sandbox scenario file (YAML)")
    parser.add_argument("--sandbox-port", type=int, default=5055)
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument(
        "--run-conf",
        type=json.loads,
        default=DEMO_RUN_CONF,
        help=f"params of the triggered patch_cycle run, as JSON (default: {json.dumps(DEMO_RUN_CONF)})",
    )
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="Airflow's executor (default: local)")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help=f"with --executor celery: the PostgreSQL server to create the demo's database on ({DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--redis", default=DEFAULT_REDIS, help=f"with --executor celery: Celery's broker (default: {DEFAULT_REDIS})"
    )
    parser.add_argument("--workers", type=int, default=2, help="with --executor celery: how many Celery workers")
    parser.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=HEARTBEAT_TIMEOUT_SECONDS,
        help=f"with --executor celery: seconds after which a task without heartbeat (its worker died) fails and "
        f"is retried (default: {HEARTBEAT_TIMEOUT_SECONDS}; tasks heartbeat every {MIN_HEARTBEAT_SECONDS} s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=REPO_ROOT / ".demo",
        help="where AIRFLOW_HOME (wiped on every start) and the logs live (default: .demo)",
    )
    return parser.parse_args(argv)


def prepare_state_dir(state_dir: Path) -> DemoPaths:
    """Give the demo a fresh AIRFLOW_HOME; refuse to wipe a directory it did not create."""
    state_dir = state_dir.resolve()
    airflow_home = state_dir / "airflow"
    if airflow_home.exists():
        if any(airflow_home.iterdir()) and not (airflow_home / HOME_MARKER).exists():
            raise SystemExit(f"{airflow_home} exists and was not made by the demo; not wiping it")
        shutil.rmtree(airflow_home)
    airflow_home.mkdir(parents=True)
    (airflow_home / HOME_MARKER).touch()
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return DemoPaths(state_dir=state_dir, airflow_home=airflow_home, log_dir=log_dir)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def aws_connection_json(sandbox_url: str, max_attempts: int = 10) -> str:
    """The aws_default connection, pointed at the sandbox with dummy keys."""
    return json.dumps(connections.sandbox_connection(sandbox_url, "us-east-1", max_attempts))


def child_environment(
    paths: DemoPaths, sandbox_url: str, api_url: str, celery: CeleryTopology | None = None
) -> dict[str, str]:
    """Environment for every child: the venv first on PATH, Airflow configured, no real AWS credentials."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "AIRFLOW"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    home = paths.airflow_home
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            # Each task process parses the DAG file first (a few seconds); several starting at once on a busy
            # two-core machine can pass the default 30 s, and Airflow then reschedules them a minute later.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(DAGBAG_IMPORT_TIMEOUT_SECONDS),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS_FILE),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__WORKERS": "1",
            # Every component must share these; generated per run, never printed.
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(sandbox_url),
        }
    )
    if celery is not None:
        env.update(celery_settings(celery))
        # worker_hostname is imported from this file by every Airflow process.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def celery_settings(celery: CeleryTopology) -> dict[str, str]:
    """The production topology's Airflow settings (docker-compose.yaml sets the same keys)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": celery.database_url,
        "AIRFLOW__CELERY__BROKER_URL": celery.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + celery.database_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": celery.queue,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(celery.heartbeat_timeout_seconds),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_SECONDS),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "include.demo.worker_hostname",
    }


def start_service(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Service:
    """Start argv in a new session (so its process group can be stopped as one), logging to log_dir."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name=name, process=process, log_path=log_path)


def check_alive(services: Sequence[Service]) -> None:
    """Raise ServiceDied for a service that exited; a Celery worker only when it was the last one (the others
    take over its tasks)."""
    workers = [s for s in services if s.worker]
    for service in services:
        if not service.exited():
            continue
        if not service.worker or all(w.exited() for w in workers):
            raise ServiceDied(service)
        if not service.death_reported:
            service.death_reported = True
            left = sum(not w.exited() for w in workers)
            say(
                f"{service.name} exited (code {service.process.returncode}); Airflow retries its tasks on the "
                f"{left} worker(s) left"
            )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_for_http(url: str, timeout: float, services: Sequence[Service]) -> None:
    """Poll url until it answers 200; fail early if any service dies meanwhile."""
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        check_alive(services)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def wait_for_exit(service: Service, timeout: float, others: Sequence[Service]) -> int:
    deadline = time.monotonic() + timeout
    while not service.exited():
        check_alive(others)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.name} did not finish within {timeout:.0f} s")
        time.sleep(0.5)
    return service.process.returncode


def session_processes(session_id: int) -> list[int]:
    """Live (non-zombie) processes in a session, read from /proc; empty where there is no /proc."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after "(comm)": state ppid pgrp session ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session_id:
            pids.append(int(entry.name))
    return pids


def create_database(server_url: str) -> str:
    """Create a database of its own on the PostgreSQL server; returns its SQLAlchemy URL."""
    import psycopg2  # only the Celery topology needs it

    name = f"patchcycle_demo_{secrets.token_hex(6)}"
    with contextlib.closing(psycopg2.connect(server_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    server = urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit(("postgresql+psycopg2", server.netloc, f"/{name}", "", ""))


def drop_database(server_url: str, database_url: str) -> None:
    """Drop the demo's database (its connections are closed first: every Airflow process has stopped)."""
    import psycopg2

    name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    with contextlib.closing(psycopg2.connect(server_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def signal_group(service: Service, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(service.pid, signum)


def stop_services(services: Sequence[Service], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every process group, wait up to grace, then SIGKILL whatever is left in their sessions."""
    for service in services:
        signal_group(service, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = list(services)
    while remaining and time.monotonic() < deadline:
        remaining = [s for s in remaining if not s.exited() or session_processes(s.pid)]
        time.sleep(0.2)
    for service in remaining:
        say(f"  {service.name} did not stop within {grace:.0f} s; killing it")
        signal_group(service, signal.SIGKILL)
        for pid in session_processes(service.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for service in services:
        service.process.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read {path}: {err})"


def report_death(service: Service) -> None:
    say(f"\n{service.name} exited unexpectedly (code {service.process.returncode}); last lines of {service.log_path}:")
    say(log_tail(service.log_path))
    say("Stopping the rest ...")


def read_admin_password(airflow_home: Path, timeout: float = 30.0) -> str:
    """The api-server writes the generated password file on start-up."""
    path = airflow_home / PASSWORDS_FILE
    deadline = time.monotonic() + timeout
    while True:
        try:
            passwords: dict[str, str] = json.loads(path.read_text())
            return passwords[ADMIN_USER]
        except (OSError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class ApiError(Exception):
    """The Airflow REST API answered with an unexpected status."""


@dataclass
class AirflowApi:
    """A minimal client of Airflow's REST API, logged in as one user (JWT from POST /auth/token)."""

    url: str
    username: str
    password: str
    token: str | None = None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body or text); logs in first, and again once if the token is refused."""
        if self.token is None:
            self.token = self._login()
        status, answer = self._send(method, path, body, self.token)
        if status == 401:
            self.token = self._login()
            status, answer = self._send(method, path, body, self.token)
        return status, answer

    def _login(self) -> str:
        status, answer = self._send("POST", "/auth/token", {"username": self.username, "password": self.password})
        if status not in (200, 201):
            raise ApiError(f"POST /auth/token: HTTP {status}: {answer}")
        return str(answer["access_token"])

    def _send(self, method: str, path: str, body: dict[str, Any] | None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")[:500]


@dataclass
class CycleRun:
    """The patch_cycle run the demo triggered, polled from the supervise loop until it finishes."""

    api: AirflowApi
    run_id: str
    sandbox_url: str
    reports_dir: Path
    scheduler_log: Path | None = None
    finished: bool = False
    approval_announced: bool = False
    next_poll: float = field(default_factory=time.monotonic)

    def poll(self) -> None:
        """Check the run's state (at most every RUN_POLL_SECONDS); when it finishes, copy its report out."""
        if self.finished or time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + RUN_POLL_SECONDS
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(self.run_id, safe='')}"
        try:
            status, answer = self.api.request("GET", path)
            if status != 200:
                raise ApiError(f"GET {path}: HTTP {status}: {answer}")
            state = str(answer["state"])
            if not self.approval_announced:
                self.announce_approval(path)
        except (ApiError, OSError, ValueError, KeyError) as err:
            say(f"patch_cycle: cannot read the run's state: {err}")
            return
        if state not in FINISHED_STATES:
            return
        self.finished = True
        say(f"patch_cycle run {self.run_id} finished: {state}")
        self.copy_report()

    def announce_approval(self, run_path: str) -> None:
        """Once the approval gate waits for an answer, say where to give it."""
        status, answer = self.api.request("GET", f"{run_path}/taskInstances/{APPROVAL_TASK}")
        # The request is written while the task still runs; it waits for an answer once it is awaiting_input.
        if status != 200 or answer.get("state") != "awaiting_input":
            return
        status, answer = self.api.request("GET", f"{run_path}/hitlDetails?response_received=false")
        if status != 200:
            raise ApiError(f"GET {run_path}/hitlDetails: HTTP {status}: {answer}")
        if not answer.get("hitl_details") or not self.scheduler_saw_the_pause():
            return
        self.approval_announced = True
        run = urllib.parse.quote(self.run_id, safe="")
        say(f"Approval needed: {self.api.url}/dags/{DAG_ID}/runs/{run}/tasks/{APPROVAL_TASK}/required_actions")
        say("  (staging passed or failed as its summary says; Approve rolls the patches out, Reject skips production)")

    def scheduler_saw_the_pause(self) -> bool:
        """Has the scheduler processed the paused task's exit? (Airflow 3.3.2: an answer before that fails the task.)

        The executor reports the workload that paused as finished; if the scheduler reads that report after the
        answer has queued the task again, it takes it for a task killed from outside and fails it.
        """
        if self.scheduler_log is None:
            return True
        try:
            log = self.scheduler_log.read_text(errors="replace")
        except OSError:
            return False
        key = f"TaskInstanceKey(dag_id='{DAG_ID}', task_id='{APPROVAL_TASK}', run_id='{self.run_id}'"
        return f"Received executor event with state success for task instance {key}" in log

    def copy_report(self) -> None:
        """Copy report.json/.csv/.html from the sandbox's S3 and print their paths and a summary."""
        # The run's layout comes from the plugin package (imported here: it loads Airflow, configured by then).
        from patchcycle.run_artifacts import REPORT_CSV, REPORT_HTML, REPORT_JSON, RunArtifacts

        run = RunArtifacts(f"s3://{ARTIFACT_BUCKET}", DAG_ID, self.run_id, conn_id=None)
        target = self.reports_dir / run.folder_name
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.sandbox_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(connect_timeout=5, read_timeout=REQUEST_TIMEOUT_SECONDS, retries={"max_attempts": 3}),
        )
        bucket_prefix = f"s3://{ARTIFACT_BUCKET}/"
        try:
            target.mkdir(parents=True, exist_ok=True)
            for artifact in (REPORT_JSON, REPORT_CSV, REPORT_HTML):
                key = run.uri(artifact).removeprefix(bucket_prefix)
                local = target / PurePosixPath(key).name
                # get_object, not download_file: no transfer threads for Ctrl-C to wait on.
                answer = s3.get_object(Bucket=ARTIFACT_BUCKET, Key=key)
                local.write_bytes(answer["Body"].read())
                say(f"Report: {local}")
            report = json.loads((target / PurePosixPath(REPORT_JSON.file()).name).read_text())
        except (BotoCoreError, ClientError, OSError, ValueError) as err:
            say(f"patch_cycle: cannot copy the report from {run.stage_uri(REPORT_JSON)}: {err}")
            return
        say(f"Summary: {report_summary(report)}")


def report_summary(report: dict[str, Any]) -> str:
    """One line: resources in scope, verdict counts, and what does not add up."""
    totals = report["totals"]
    verdicts = ", ".join(f"{verdict} {count}" for verdict, count in totals["by_verdict"].items())
    line = f"{totals['resources_in_scope']} resources in scope; by verdict: {verdicts or 'none'}"
    if report["incomplete"]:
        line += f"; INCOMPLETE: {len(report['incomplete'])} part(s) of the fleet could not be read"
    if not report["accounting"]["ok"]:
        line += "; ACCOUNTING FAILED"
    return line


def trigger_patch_cycle(
    api: AirflowApi,
    sandbox_url: str,
    reports_dir: Path,
    services: Sequence[Service],
    conf: dict[str, Any],
    scheduler_log: Path | None = None,
) -> CycleRun | None:
    """Unpause patch_cycle once the dag-processor has parsed it, and trigger a run with `conf`.

    API errors are printed and yield None (the demo goes on without a run); a service dying does not.
    """
    say(f"Waiting for the dag-processor to parse {DAG_ID} ...")
    deadline = time.monotonic() + DAG_PARSE_TIMEOUT_SECONDS
    try:
        while (status := api.request("GET", f"/api/v2/dags/{DAG_ID}")[0]) != 200:
            check_alive(services)
            if time.monotonic() > deadline:
                raise ApiError(f"GET /api/v2/dags/{DAG_ID}: HTTP {status} after {DAG_PARSE_TIMEOUT_SECONDS:.0f} s")
            time.sleep(1)
        status, answer = api.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        if status != 200:
            raise ApiError(f"PATCH /api/v2/dags/{DAG_ID}: HTTP {status}: {answer}")
        status, answer = api.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
        if status != 200:
            raise ApiError(f"POST /api/v2/dags/{DAG_ID}/dagRuns: HTTP {status}: {answer}")
        run_id = str(answer["dag_run_id"])
    except (ApiError, OSError, ValueError, KeyError) as err:
        say(f"Could not trigger {DAG_ID}: {err}")
        return None
    mode = f"{conf.get('mode', 'default')} mode" + (
        f", approval {conf['approval_mode']}" if conf.get("mode") == "install" and "approval_mode" in conf else ""
    )
    say(f"Triggered {DAG_ID} run: {run_id} ({mode}; its report will be copied to {reports_dir})")
    say(f"Run UI: {api.url}/dags/{DAG_ID}/runs/{run_id}")
    return CycleRun(api, run_id, sandbox_url, reports_dir, scheduler_log)


def raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def supervise(services: Sequence[Service], cycle: CycleRun | None = None) -> None:
    """Block until Ctrl-C/SIGTERM (KeyboardInterrupt) or until a service dies (ServiceDied).

    Meanwhile polls the triggered run; its HTTP calls are short and bounded, and Ctrl-C interrupts them too.
    """
    while True:
        check_alive(services)
        if cycle is not None:
            cycle.poll()
        time.sleep(1)


def run(args: argparse.Namespace, services: list[Service], databases: list[str]) -> None:
    scenario = args.scenario.resolve()
    if not scenario.is_file():
        raise SystemExit(f"scenario file not found: {args.scenario}")
    for port in (args.sandbox_port, args.api_port):
        if not port_is_free(port):
            raise SystemExit(f"port {port} on {HOST} is in use (choose another with --sandbox-port/--api-port)")

    paths = prepare_state_dir(args.state_dir)
    # This process reads the run's artifacts through the plugin package, which loads Airflow: the demo's home.
    os.environ.setdefault("AIRFLOW_HOME", str(paths.airflow_home))
    sandbox_url = f"http://{HOST}:{args.sandbox_port}"
    api_url = f"http://{HOST}:{args.api_port}"
    celery = None
    if args.executor == "celery":
        if args.workers < 1:
            raise SystemExit(f"--workers: at least one Celery worker is needed, got {args.workers}")
        least = 3 * MIN_HEARTBEAT_SECONDS  # a busy machine delays a heartbeat or two
        if args.heartbeat_timeout < least:
            raise SystemExit(f"--heartbeat-timeout: at least {least} s, got {args.heartbeat_timeout}")
        database_url = create_database(args.postgres)
        databases.append(database_url)
        queue = f"patchcycle-{secrets.token_hex(4)}"
        celery = CeleryTopology(database_url, args.redis, queue, args.workers, args.heartbeat_timeout)
        say(f"Database: {urllib.parse.urlsplit(database_url).path.lstrip('/')} on {args.postgres} (dropped on stop)")
    env = child_environment(paths, sandbox_url, api_url, celery)
    loaded = load_scenario(scenario)
    env.update(connections.connection_env(loaded, sandbox_url))
    run_conf = {"targets": connections.targets(loaded), **args.run_conf}
    # No scheduled runs: unpausing would otherwise start a catch-up run for the latest Patch Tuesday at once,
    # with the DAG's default params, queued ahead of the demo's own run (max_active_runs=1).
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    airflow = shutil.which("airflow", path=env["PATH"])
    if airflow is None:
        raise SystemExit("the airflow command is not installed in this Python environment (run `make install`)")
    say(f"Logs: {paths.log_dir}")

    sandbox_argv = [sys.executable, "-m", "include.sandbox", "serve", "--scenario", str(scenario)]
    sandbox_argv += ["--port", str(args.sandbox_port), "--host", HOST]
    services.append(start_service("sandbox", sandbox_argv, env, paths.log_dir))
    migrate = start_service("db-migrate", [airflow, "db", "migrate"], env, paths.log_dir)
    services.append(migrate)
    say("Starting the sandbox AWS and migrating the Airflow database ...")
    wait_for_http(f"{sandbox_url}/_sandbox/health", SANDBOX_TIMEOUT_SECONDS, services[:1])
    say(f"Sandbox AWS: {sandbox_url} (scenario {args.scenario})")
    if wait_for_exit(migrate, MIGRATE_TIMEOUT_SECONDS, services[:1]) != 0:
        raise ServiceDied(migrate)
    services.remove(migrate)

    say("Starting the Airflow api-server, scheduler, dag-processor and triggerer ...")
    for name in AIRFLOW_SERVICES:
        argv = [airflow, name]
        if name == "api-server":
            argv += ["--host", HOST, "--port", str(args.api_port)]
        if name in ("scheduler", "triggerer"):
            # Their log servers would bind every interface on fixed ports; task logs are local files here.
            argv.append("--skip-serve-logs")
        services.append(start_service(name, argv, env, paths.log_dir))
    if celery is not None:
        services += start_workers(airflow, env, celery, paths.log_dir)
    wait_for_http(f"{api_url}/api/v2/monitor/health", API_TIMEOUT_SECONDS, services)
    password = read_admin_password(paths.airflow_home)
    say(f"Login: {ADMIN_USER} / {password}")
    say(f"UI: {api_url}")
    api = AirflowApi(api_url, ADMIN_USER, password)
    cycle = trigger_patch_cycle(
        api, sandbox_url, paths.state_dir / "reports", services, run_conf, paths.log_dir / "scheduler.log"
    )
    say("Press Ctrl-C to stop.")
    supervise(services, cycle)


def start_workers(airflow: str, env: dict[str, str], celery: CeleryTopology, log_dir: Path) -> list[Service]:
    """The Celery workers, each named celery-worker-<n> (its Celery host name and its task instances' host name)."""
    workers = []
    for number in range(1, celery.workers + 1):
        name = f"celery-worker-{number}"
        argv = [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", celery.queue]
        # Task logs are local files every component reads here: no log server.
        argv += ["--concurrency", str(WORKER_CONCURRENCY), "--skip-serve-logs"]
        service = start_service(name, argv, {**env, WORKER_HOSTNAME_VARIABLE: name}, log_dir)
        workers.append(replace(service, worker=True))
        say(f"Started {name} (pid {service.pid}, queue {celery.queue})")
    return workers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT too: a demo started in the background by a non-interactive shell inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt for it (Ctrl-C, or a test's SIGINT, would never stop it).
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    services: list[Service] = []
    databases: list[str] = []
    code = 0
    try:
        run(args, services, databases)
    except KeyboardInterrupt:
        say("\nStopping ...")
    except ServiceDied as died:
        report_death(died.service)
        code = 1
    except TimeoutError as err:
        say(f"\n{err}; see the logs in {args.state_dir.resolve() / 'logs'}")
        code = 1
    finally:
        # A second Ctrl-C must not leave orphans behind: stopping is bounded by the grace period anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_services(services)
        for database_url in databases:
            drop_database(args.postgres, database_url)
            say(f"Dropped database {urllib.parse.urlsplit(database_url).path.lstrip('/')}")
    say("Stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())

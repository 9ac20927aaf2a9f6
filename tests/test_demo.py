"""`python -m include.demo` starts the sandbox and Airflow, serves an authenticated API, triggers a patch_cycle
install run that waits at the approval gate, which this test answers through Airflow's REST API (hitlDetails)
as an operator's script would, with the scheduler and triggerer running; the demo copies the report out and
stops without orphans.

One demo start serves every check: starting it costs about a minute, the install cycle one to three more. The
same run is walked through in headless Chromium (tests/browser.py): the grid and the approval page at the gate,
then the run page and the fleet page once the report is written, each screenshot and checked against the report
(`make screenshots` keeps the PNGs in docs/images/).

The demo runs a smaller copy of the default scenario (demo_scenario): what is proven here is the demo's
processes, API, gate, report and browser pages, not the cycle's variants. The full default scenario (both
regions, RDS, the hung Windows instance) is proven by tests/e2e/test_install_cycle.py; `make screenshots`
runs this test on it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import pytest
import yaml

from include import connections
from include.sandbox.scenario import load_scenario
from tests import browser

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "include" / "sandbox" / "scenarios" / "default.yaml"
RUN_CONF = {
    "mode": "install",
    "approval_mode": "manual",
    "halt_threshold": "50%",  # the scenario's injected install failures must not halt this run
    # Deferred tasks poll every 5 s, as in the interactive demo. Not 2: a trigger's first look comes one poll
    # after the task deferred, and the LocalExecutor sometimes reports the deferring attempt's exit 5 to 6 s
    # after it; a trigger that fires before that resumes the task too early, and Airflow 3.3.2 fails that
    # attempt ("finished with state success, but the task instance's state attribute is queued"): a retry
    # 20 s or more later, up to five per run at 2 s. A command still running after 15 s is cut short:
    # commands take a second or two at 10x.
    "poll_seconds": 5,
    "command_timeout_minutes": 0.25,
    # Snapshots and rollback are proven by the e2e install cycle; here they would add a phase (a deferral and
    # a resumed task) to each wave. The waves still validate through PatchCycle-ValidateInstance. The canary and
    # one wave are enough to show the rollout: the wave plan's variants are proven by the operator tests.
    "snapshot": False,
    "rollback": "none",
    "wave_percentages": [100],
}
APPROVAL = "approve_production"
STARTUP_TIMEOUT = 300.0  # the api-server answers in about a minute; under a full `make test -n 2`, much later
TRIGGER_TIMEOUT = 150.0  # the demo waits up to 120 s for the dag-processor to parse patch_cycle
CYCLE_TIMEOUT = 600.0  # to the gate about a minute, then two more; several times that beside other cycles
STOP_TIMEOUT = 30.0
DEMO_REGION = "us-east-1"


def demo_scenario(path: Path, whole: bool = False) -> Path:
    """The default scenario, smaller and faster, written to path: its clock runs 10x (commands take a tenth of
    the time), one region (us-east-1, each mapped task once) and no RDS instances (their restores, rehearsals
    and rollout would run beside the EC2 staging and waves, on the same two cores).

    The failures and findings of the dropped region's groups go with it: the hung Windows instance (whose
    commands would each wait for command_timeout_minutes) and the server left pending a reboot are in eu-west-1.
    Inspector rescans a patched instance after 30 simulated seconds, not 120, and Config evaluates in 5, not 20:
    inspect and config wait for them. whole: the whole default scenario, only its clock 10x (the README's
    screenshots show it).
    """
    scenario = yaml.safe_load(SCENARIO.read_text())
    scenario["clock"]["speed"] = 10.0
    if whole:
        path.write_text(yaml.safe_dump(scenario))
        return path
    scenario["inspector"]["rescan_delay_seconds"] = 30
    scenario["config"]["evaluation_seconds"] = 5
    for account in scenario["accounts"]:
        account["regions"] = {DEMO_REGION: account["regions"][DEMO_REGION]}
        for region in account["regions"].values():
            region.pop("rds_instances", None)
    groups = {
        group["name"]
        for account in scenario["accounts"]
        for region in account["regions"].values()
        for group in region.get("instance_groups", [])
    }
    scenario["failures"] = [f for f in scenario["failures"] if f["group"] in groups]
    findings = scenario["inspector"]["unpatched_findings"]
    scenario["inspector"]["unpatched_findings"] = [f for f in findings if f["group"] in groups]
    path.write_text(yaml.safe_dump(scenario))
    return path


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process(NamedTuple):
    ppid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: a pid the kernel gave again to a new process has another start


def process_table() -> dict[int, Process]:
    """pid -> its parent, session, state and start time, for every process in /proc."""
    table = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = Process(int(fields[1]), int(fields[3]), fields[0], int(fields[19]))
    return table


def started_by(root: int) -> dict[int, int]:
    """Every descendant of root, plus every process in the sessions its children lead: pid -> start time.

    The start time tells a process the test saw from a later one given the same pid (pids wrap around at
    /proc/sys/kernel/pid_max, 32768 on many machines, and a cycle starts thousands of processes).
    """
    table = process_table()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, process in table.items() if process.ppid in frontier} - found
        found |= frontier
    sessions = {pid for pid in found if table[pid].ppid == root}
    found |= {pid for pid, process in table.items() if process.sid in sessions}
    return {pid: table[pid].start for pid in found}


def alive(pids: dict[int, int]) -> dict[int, str]:
    """The processes of pids (pid -> start time) still running (zombies count as gone), with their command
    lines; a pid now held by a process started since is not one of them."""
    table = process_table()
    result = {}
    for pid, start in pids.items():
        if pid in table and table[pid].state != "Z" and table[pid].start == start:
            try:
                result[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return result


def http(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


class OutputReader:
    """Collects the demo's stdout on a thread so the test can wait for a line with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} line within {timeout:.0f} s; output:\n" + "\n".join(self.lines))

    def rest(self, timeout: float = 5.0) -> str:
        try:
            while (line := self._queue.get(timeout=timeout)) is not None:
                self.lines.append(line)
        except queue.Empty:
            pass
        return "\n".join(self.lines)


@pytest.mark.timeout(STARTUP_TIMEOUT + TRIGGER_TIMEOUT + CYCLE_TIMEOUT + STOP_TIMEOUT + 60)
def test_demo_runs_an_install_cycle_approved_through_the_rest_api_and_stops_everything(tmp_path: Path) -> None:
    shots = browser.screenshot_dir(tmp_path / "screenshots")
    browser.chromium()  # fail early, before the demo starts, when `make browser` has not run
    sandbox_port, api_port = free_port(), free_port()
    # `make screenshots` (SCREENSHOTS set) keeps the pages of the whole default scenario for the README.
    fast = demo_scenario(tmp_path / "demo-scenario.yaml", whole=bool(os.environ.get("SCREENSHOTS")))
    argv = [sys.executable, "-m", "include.demo", "--scenario", str(fast)]
    argv += ["--sandbox-port", str(sandbox_port), "--api-port", str(api_port), "--state-dir", str(tmp_path / "demo")]
    argv += ["--run-conf", json.dumps(RUN_CONF)]
    started = time.monotonic()
    demo = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = OutputReader(demo.stdout)
    pids: dict[int, int] = {}
    try:
        login = output.wait_for("Login: ", STARTUP_TIMEOUT)
        ui = output.wait_for("UI: ", 5)
        print(f"demo ready after {time.monotonic() - started:.1f} s")
        api = f"http://127.0.0.1:{api_port}"
        assert ui == f"UI: {api}"
        user, password = login.removeprefix("Login: ").split(" / ")

        status, body = http("POST", f"{api}/auth/token", {"username": user, "password": password})
        assert status == 201, body
        token = body["access_token"]
        status, body = http("GET", f"{api}/api/v2/dags", token=token)
        assert status == 200, body
        assert "dags" in body
        status, _ = http("GET", f"{api}/api/v2/dags")
        assert status in (401, 403)
        status, _ = http("POST", f"{api}/auth/token", {"username": user, "password": password + "x"})
        assert status == 401

        status, body = http("GET", f"http://127.0.0.1:{sandbox_port}/_sandbox/health")
        assert status == 200, body
        assert body["status"] == "ok"

        pids = started_by(demo.pid)
        commands = alive(pids)
        for name in ("include.sandbox", "api_server", "scheduler", "dag-processor", "triggerer"):
            assert any(name in command for command in commands.values()), f"no {name} process in {commands}"

        run_id = output.wait_for("Triggered patch_cycle run: ", TRIGGER_TIMEOUT).split(": ", 1)[1].split(" ")[0]
        assert output.wait_for("Run UI: ", 5) == f"Run UI: {api}/dags/patch_cycle/runs/{run_id}"
        triggered = time.monotonic()
        print(f"run {run_id} triggered after {triggered - started:.1f} s")
        status, body = http("GET", f"{api}/api/v2/dags/patch_cycle/dagRuns", token=token)
        assert status == 200, body
        assert [run["dag_run_id"] for run in body["dag_runs"]] == [run_id], "the demo's run must be the only one"
        # The demo adds the targets: every account and region of its scenario, one connection per account.
        targets = connections.targets(load_scenario(fast))
        assert body["dag_runs"][0]["conf"] == {"targets": targets, **RUN_CONF}

        approval = output.wait_for("Approval needed: ", CYCLE_TIMEOUT)
        quoted = urllib.parse.quote(run_id, safe="")
        assert approval == f"Approval needed: {api}/dags/patch_cycle/runs/{quoted}/tasks/{APPROVAL}/required_actions"
        run_path = f"{api}/api/v2/dags/patch_cycle/dagRuns/{quoted}"
        status, body = http("GET", f"{run_path}/taskInstances/{APPROVAL}", token=token)
        assert status == 200 and body["state"] == "awaiting_input", body
        # The demo announces the gate once the scheduler has processed the paused workload's exit: an answer
        # before that fails the task on Airflow 3.3.2 (see include/demo.py, CycleRun.scheduler_saw_the_pause).
        status, body = http("GET", f"{run_path}/hitlDetails?response_received=false", token=token)
        assert status == 200 and body["total_entries"] == 1, body
        (pending,) = body["hitl_details"]
        assert pending["options"] == ["Approve", "Reject"] and pending["defaults"] == ["Reject"]
        assert "Staging" in pending["body"] and "report" in pending["body"], pending["body"]
        walk_the_gate(api, user, password, run_id, shots)
        answer = f"{run_path}/taskInstances/{APPROVAL}/-1/hitlDetails"
        status, body = http("PATCH", answer, {"chosen_options": ["Approve"]})
        assert status in (401, 403), "answering needs an authenticated user"
        status, body = http("PATCH", answer, {"chosen_options": ["Maybe"]}, token=token)
        assert status == 400, body
        status, body = http("PATCH", answer, {"chosen_options": ["Approve"]}, token=token)
        assert status == 200, body
        status, body = http("PATCH", answer, {"chosen_options": ["Reject"]}, token=token)
        assert status == 409, "an answered gate cannot be answered again"
        approved = time.monotonic()

        finished = output.wait_for("patch_cycle run ", CYCLE_TIMEOUT)
        print(f"run finished {time.monotonic() - approved:.1f} s after the approval")
        assert finished == f"patch_cycle run {run_id} finished: success"
        report_dir = tmp_path / "demo" / "reports" / run_id.replace(":", "_").replace("+", "_")
        assert output.wait_for("Report: ", 30) == f"Report: {report_dir / 'report.json'}"
        summary = output.wait_for("Summary: ", 10)
        for name in ("report.json", "report.csv", "report.html"):
            assert (report_dir / name).stat().st_size > 0
        report = json.loads((report_dir / "report.json").read_text())
        assert report["run_id"] == run_id
        assert report["mode"] == "install"
        assert report["accounting"]["ok"], report["accounting"]
        gate = report["install"]["approval"]
        assert (gate["mode"], gate["decision"], gate["by"], gate["timed_out"]) == ("manual", "Approve", user, False)
        assert gate["at"]
        assert report["install"]["waves"] and all(w["status"] == "done" for w in report["install"]["waves"])
        assert report["totals"]["by_verdict"]["PATCHED"] > 0
        assert all(s["created"] and s["deleted"] for s in report["install"]["staging"]["stacks"])
        for region in sorted({r for target in targets for r in target["regions"]}):  # the sandbox agrees:
            stacks = boto3.client(  # no staging stack is left
                "cloudformation",
                region_name=region,
                endpoint_url=f"http://127.0.0.1:{sandbox_port}",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).list_stacks()["StackSummaries"]
            assert stacks and {s["StackStatus"] for s in stacks} == {"DELETE_COMPLETE"}, stacks
        assert report["incomplete"] == []
        assert summary.startswith(f"Summary: {report['totals']['resources_in_scope']} resources in scope; by verdict: ")
        walk_the_report(api, user, password, run_id, report, shots, tmp_path)

        pids |= started_by(demo.pid)  # the task processes the scheduler started since
        stopping = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=STOP_TIMEOUT) == 0
        while (left := alive(pids)) and time.monotonic() - stopping < STOP_TIMEOUT:
            time.sleep(0.2)
        assert not left, f"still running {STOP_TIMEOUT:.0f} s after SIGINT: {left}"
        print(f"{len(pids)} processes stopped {time.monotonic() - stopping:.1f} s after SIGINT")
        assert "Stopped." in output.rest()
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


def walk_the_gate(api: str, user: str, password: str, run_id: str, shots: Path) -> None:
    """At the gate, in the browser: the grid of the cycle, the approval page, and the run page (no report yet)."""
    started = time.monotonic()
    with browser.browser_page() as page:
        browser.log_in(page, api, user, password)
        page.goto(f"{api}/{browser.run_path(run_id)}")
        page.get_by_text("Patch cycle", exact=True).wait_for()  # the plugin's tab on every run
        page.get_by_text("approve_production", exact=True).first.wait_for()
        page.get_by_text("Task Instances").first.wait_for()
        page.wait_for_timeout(1500)  # the grid's bars fill in after the task list
        browser.shot(page, shots, "grid")

        page.goto(f"{api}/{browser.run_path(run_id)}/tasks/{APPROVAL}/required_actions")
        approve = page.get_by_role("button", name="Approve")
        approve.wait_for()
        assert page.get_by_role("button", name="Reject").is_visible()
        assert page.get_by_text("Staging", exact=False).first.is_visible()
        browser.shot(page, shots, "approval")

        page.goto(f"{api}/patchcycle/runs/patch_cycle/{urllib.parse.quote(run_id, safe='')}")
        assert "No report yet: it waits at the approval gate" in page.locator("#outcome").inner_text()
        assert page.locator("#staging-table tbody tr").count() > 0
    print(f"browser at the gate: {time.monotonic() - started:.1f} s")


def walk_the_report(
    api: str, user: str, password: str, run_id: str, report: dict[str, Any], shots: Path, tmp_path: Path
) -> None:
    """After the run, in the browser: the run page (in the run's tab and on its own) and the fleet page show the
    report's numbers, their charts as SVG, the whole resources table; the table's filter and CSV download work."""
    started = time.monotonic()
    quoted = urllib.parse.quote(run_id, safe="")
    by_verdict = {verdict: n for verdict, n in report["totals"]["by_verdict"].items() if n}
    with browser.browser_page() as page:
        browser.log_in(page, api, user, password)
        page.goto(f"{api}/{browser.run_path(run_id)}")
        page.get_by_text("Patch cycle", exact=True).click()
        frame = page.frame_locator("iframe")
        frame.locator("#charts").wait_for()
        browser.shot(page, shots, "run-tab")

        page.goto(f"{api}/patchcycle/runs/patch_cycle/{quoted}")
        shown = {
            cell.get_attribute("data-verdict"): int(cell.inner_text())
            for cell in page.locator("#verdicts td[data-verdict]").all()
        }
        assert shown == by_verdict
        assert page.locator(".chart svg").count() >= 3  # compliance, verdicts by wave, failures (if any), CVEs
        assert page.locator(".chart h3", has_text="Verdicts by wave").count() == 1
        rows = page.locator("#resources tbody tr")
        assert rows.count() == len(report["resources"])
        assert int(page.locator("#shown").inner_text()) == len(report["resources"])
        outcome = page.locator("#outcome").inner_text()
        assert f"{report['totals']['resources_in_scope']} resources in scope" in outcome
        browser.shot(page, shots, "run-page", until=rows.nth(min(9, rows.count() - 1)))  # and ten resources

        verdict, count = max(by_verdict.items(), key=lambda item: item[1])
        page.locator("#filter-verdict").select_option(verdict)
        assert int(page.locator("#shown").inner_text()) == count
        with page.expect_download() as download:
            page.locator("#download").click()
        saved = tmp_path / "resources.csv"
        download.value.save_as(saved)
        lines = list(csv.DictReader(saved.open()))
        assert len(lines) == count and {line["verdict"] for line in lines} == {verdict}

        page.goto(f"{api}/patchcycle/fleet")
        cycles = page.locator("#cycles-table tbody tr")
        assert cycles.count() >= 1
        first = cycles.first.locator("td")
        assert first.nth(1).inner_text() == run_id
        assert first.nth(4).inner_text() == str(report["totals"]["resources_in_scope"])
        assert page.locator(".chart svg").count() >= 1
        browser.shot(page, shots, "fleet-page", full_page=True)
        first.nth(1).locator("a").click()  # the fleet page links to the run page
        page.locator("#verdicts").wait_for()
        assert page.url.endswith(f"/patchcycle/runs/patch_cycle/{quoted}")
    print(f"browser after the run: {time.monotonic() - started:.1f} s")

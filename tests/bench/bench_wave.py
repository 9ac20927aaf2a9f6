"""One production wave of N instances (N = 50, 200, 1,000) through its gates, snapshot, install, validation,
rollback and halt gate: the AWS API calls per phase against the minimum the batch limits allow, the simulated
seconds each phase took in the sandbox, and the wall time.

For each N a sandbox serves one account and region with one group of N production instances: a few fail to
install a patch and two fail their health checks once patched (so the rollback phase runs on them, and the failed
validations are read step by step); snapshots and root volume restores take seconds; an OPEN change calendar and a
health alarm in OK make both gates call AWS. Inventory, match and plan_install run as the install tests run them
(tests/operators/install_helpers.plan_run), the PatchCycle-* runbooks are registered, and every planned instance
is put in wave 1. PatchWaveOperator then runs through its own execute() and resumed methods with a minimal context
and the run's validated config (install mode, its artifacts in the sandbox's S3), without a scheduler.

The wait: the scenario's clock runs at a millionth of real time, so simulated time moves only when the bench
moves it. After each deferral the bench advances the clock STEP_SECONDS at a time until every execution or
command the trigger waits on is final, then runs the real trigger once (tests.conftest.first_trigger_payload),
which finds them final at its first look, and resumes the operator with its event. The simulated seconds of a
phase are the sandbox's own timestamps (first start to last end), whatever the step.

Who made each call: GET /_sandbox/calls counts every call the sandbox served, and that includes the calls the
runbooks' steps make inside the sandbox (aws:runCommand sends its own SendCommand and polls ListCommands,
for one). So the bench wraps the sandbox app's counter in-process (nothing under include/ is edited) and files
each call under the phase and whoever made it: the operator, the trigger (its GetAutomationExecution /
ListCommands polls, which depend on poll timing and are printed apart), a runbook step, or the bench itself
(its own look-ups: not shown). The total is checked against GET /_sandbox/calls. Asserts nothing about time.
"""

from __future__ import annotations

import faulthandler
import inspect
import math
import os
import resource
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.bench.bench_cycle import SandboxControl, _isolate_airflow

SIZES = tuple(int(n) for n in os.environ.get("BENCH_WAVE_SIZES", "50,200,1000").split(","))
INSTALL_FAILURES = 3  # instances of the group that fail to install FAILING_PATCH (then are rolled back)
VALIDATION_FAILURES = 2  # instances whose health checks fail once patched (validation fails; rolled back)
HALT_THRESHOLD = "20%"  # the failures above never halt the wave, whatever its size
EBS = {"snapshot_seconds": 10, "restore_pending_seconds": 2, "restore_in_progress_seconds": 5}
CLOCK_SPEED = 1e-6  # simulated seconds per real second: in effect, the clock moves only when the bench moves it
STEP_SECONDS = 30.0  # how far the bench moves the clock between looks (the DAG's default poll_seconds)
DAG_POLL_SECONDS = 30.0  # for the estimate of a real triggerer's polls
CALENDAR = "patchcycle-bench-calendar"
HEALTH_ALARMS = ("web-5xx", "payments-*")  # one name, one prefix
RUN_ID = "manual__bench_wave"
BASE_RUN = "manual__bench_wave_plan"
PHASES = ("gates", "snapshot", "install", "validate", "rollback", "decide")
AUTOMATION_PHASES = ("snapshot", "validate", "rollback")
BATCH = 50  # instance ids per SendCommand / StartAutomationExecution, children and invocations per page

# Per API the operator calls: the documented batch/page limit its minimum follows from.
API_BASIS = {
    "ssm:GetCalendarState": "1 per target",
    "cloudwatch:DescribeAlarms": "1 per 100 alarm names + 1 per prefix, per target",
    "ssm:StartAutomationExecution": "50 instances per execution (parent)",
    "ssm:DescribeAutomationExecutions": "1 page per parent (<= 50 children, MaxResults 50)",
    "ssm:DescribeAutomationStepExecutions": "1 per failed child",
    "ssm:StopAutomationExecution": "1 per parent still running at the wait's end",
    "ssm:SendCommand": "50 instance ids per call, per patch profile",
    "ssm:ListCommandInvocations": "50 invocations per page, per command",
    "ssm:CancelCommand": "1 per command still running at the time limit",
}


# -- who made each call ---------------------------------------------------------------------------


class Ledger:
    """Files every call the sandbox serves under (phase, source), and the wall time under the same key.

    source: "operator" (PatchWaveOperator's own calls, artifact I/O included), "trigger" (its polls), "runbook"
    (a runbook step's call inside the sandbox), "wait" (the bench moving the clock and looking), "bench" (setup
    and the bench's own reads). The phase is set by the operator's methods as they run (_label_phases).
    """

    def __init__(self) -> None:
        self.phase = "setup"
        self.source = "bench"
        self.calls: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.artifacts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)  # (phase, read|write)
        self._mark = time.perf_counter()
        self._inside = threading.local()  # depth of loopback calls in this (sandbox) thread
        self._lock = threading.Lock()
        self._undo: list[tuple[Any, str, Any]] = []

    def switch(self, *, phase: str | None = None, source: str | None = None) -> None:
        now = time.perf_counter()
        self.seconds[(self.phase, self.source)] += now - self._mark
        self._mark = now
        self.phase = phase or self.phase
        self.source = source or self.source

    def install(self, app_class: type, loopback_class: type, operator_class: type, artifacts_class: type) -> None:
        """Wrap the sandbox app's call counter and its loopback (in this process), the operator's phases, and
        the run-artifact contract's reads and writes."""
        ledger = self
        count, send = app_class._count, loopback_class._send  # type: ignore[attr-defined]

        def counted(app: Any, key: str, *args: Any) -> None:
            count(app, key, *args)
            source = "runbook" if getattr(ledger._inside, "depth", 0) else ledger.source
            with ledger._lock:
                ledger.calls[(ledger.phase, source)][key] += 1

        def sent(loopback: Any, request: Any, **kwargs: Any) -> Any:
            ledger._inside.depth = getattr(ledger._inside, "depth", 0) + 1
            try:
                return send(loopback, request, **kwargs)
            finally:
                ledger._inside.depth -= 1

        self._replace(app_class, "_count", counted)
        self._replace(loopback_class, "_send", sent)
        self._label_phases(operator_class)
        for method, what in (("find", "read"), ("write", "write")):  # read() goes through find()
            self._replace(
                artifacts_class, method, self._artifact_op(inspect.getattr_static(artifacts_class, method), what)
            )

    def _artifact_op(self, original: Callable[..., Any], what: str) -> Callable[..., Any]:
        ledger = self

        def counted(store: Any, artifact: Any, *args: Any, **kwargs: Any) -> Any:
            if ledger.source == "operator":
                ledger.artifacts[(ledger.phase, what)][str(artifact.name)] += 1
            return original(store, artifact, *args, **kwargs)

        return counted

    def _label_phases(self, operator_class: type) -> None:
        """Each method of the operator sets the phase its calls belong to; the outermost one books its wall time."""
        fixed = {
            "execute": "gates",
            "_after_gates": "snapshot",
            "snapshot_complete": "snapshot",
            "_send_install": "install",
            "execute_complete": "install",
            "validate_complete": "validate",
            "_start_rollback": "rollback",
            "rollback_complete": "rollback",
            "_decide": "decide",
        }
        for name in [*fixed, "_start_phase", "_phase_results"]:  # these two: the phase is their argument
            original = inspect.getattr_static(operator_class, name)
            self._replace(operator_class, name, self._labelled(original, fixed.get(name)))

    def _labelled(self, original: Callable[..., Any], phase: str | None) -> Callable[..., Any]:
        ledger, signature = self, inspect.signature(original)

        def labelled(*args: Any, **kwargs: Any) -> Any:
            chosen = phase or str(signature.bind(*args, **kwargs).arguments["phase"])
            outermost = ledger.source != "operator"
            ledger.switch(phase=chosen, source="operator")
            try:
                return original(*args, **kwargs)
            finally:
                if outermost:
                    ledger.switch(source="bench")

        return labelled

    def _replace(self, owner: Any, name: str, value: Any) -> None:
        self._undo.append((owner, name, inspect.getattr_static(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counter in self.calls.values():
            total.update(counter)
        return total


# -- figures ----------------------------------------------------------------------------------------


@dataclass
class PhaseFigures:
    name: str
    operator: Counter[str] = field(default_factory=Counter)
    trigger: Counter[str] = field(default_factory=Counter)
    runbook: Counter[str] = field(default_factory=Counter)
    minimum: Counter[str] = field(default_factory=Counter)
    artifact_reads: Counter[str] = field(default_factory=Counter)
    artifact_writes: Counter[str] = field(default_factory=Counter)
    operator_seconds: float = 0.0
    wait_seconds: float = 0.0  # the bench moving the clock: the sandbox running the runbooks and commands
    trigger_seconds: float = 0.0
    simulated_seconds: float | None = None
    clock_moved: float = 0.0
    instances: int = 0  # what the phase's executions or commands covered
    waited_on: int = 0  # parents or commands
    failed: int = 0  # failed children or invocations
    ramp_rounds: int | None = None  # distinct child start times, most of any parent
    dag_polls: int | None = None  # a triggerer polling every DAG_POLL_SECONDS


@dataclass
class WaveFigures:
    size: int
    sandbox_start_seconds: float = 0.0
    plan_seconds: float = 0.0
    runbooks_seconds: float = 0.0
    resumed: list[str] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, PhaseFigures] = field(default_factory=lambda: {name: PhaseFigures(name) for name in PHASES})
    total_calls: int = 0
    counted_calls: int = 0
    wall_seconds: float = 0.0
    error: str = ""


@dataclass
class Waited:
    """What the bench saw while it moved the clock for one deferral."""

    clock_moved: float = 0.0
    simulated_seconds: float = 0.0
    waited_on: int = 0
    instances: int = 0
    failed: int = 0
    ramp_rounds: int | None = None
    dag_polls: int = 0
    sent: list[str] = field(default_factory=list)  # install: the instances commands went to
    invocation_pages: int = 0


# -- the sandbox --------------------------------------------------------------------------------------


def wave_scenario(size: int) -> dict[str, Any]:
    """install_helpers.scenario with one group of `size` production web servers: the first INSTALL_FAILURES fail
    to install FAILING_PATCH, the next VALIDATION_FAILURES fail their health checks once patched (a group's failures
    apply to its first `count` instances, and merge). Quick EBS timings, an OPEN change calendar, a health alarm in
    OK, and a clock that moves only when the bench moves it."""
    from tests.operators.install_helpers import FAILING_PATCH, REGION, scenario

    document = scenario(
        f"bench-wave-{size}",
        clock={"start": "2026-11-20T03:00:00Z", "speed": CLOCK_SPEED},
        ebs=dict(EBS),
        change_calendars=[{"name": CALENDAR, "type": "DEFAULT_OPEN"}],
        alarms=[{"name": "web-5xx", "state": "OK"}],
    )
    region = document["accounts"][0]["regions"][REGION]
    web = region["instance_groups"][0]
    region["instance_groups"] = [{**web, "count": size}]
    document["failures"] = [
        {"group": web["name"], "count": INSTALL_FAILURES, "install_fails": [FAILING_PATCH]},
        {"group": web["name"], "count": INSTALL_FAILURES + VALIDATION_FAILURES, "breaks_after_install": True},
    ]
    return document


def _wait_for_automations(trigger: Any, sandbox: SandboxControl, client: Callable[..., Any]) -> Waited:
    """Move the clock until every parent execution the trigger waits on is final; then read their children."""
    from patchcycle.core.wave_results import AUTOMATION_SUCCESS
    from patchcycle.operators.patch_wave import AUTOMATION_WAIT
    from patchcycle.triggers.automation_completion import FINAL_STATUSES

    parents = [(t["region_name"], execution_id) for t in trigger.targets for execution_id in t["execution_ids"]]
    pending, found, waited = set(parents), {}, Waited(waited_on=len(parents))
    while pending:
        if waited.clock_moved >= AUTOMATION_WAIT.total_seconds():
            raise RuntimeError(f"{len(pending)} executions still running after {waited.clock_moved:.0f} s")
        sandbox.advance(STEP_SECONDS)
        waited.clock_moved += STEP_SECONDS
        for region, execution_id in sorted(pending):
            execution = client("ssm", region=region).get_automation_execution(AutomationExecutionId=execution_id)
            if execution["AutomationExecution"]["AutomationExecutionStatus"] in FINAL_STATUSES:
                pending.discard((region, execution_id))
                found[execution_id] = execution["AutomationExecution"]
    starts = [e["ExecutionStartTime"] for e in found.values()]
    ends = [e["ExecutionEndTime"] for e in found.values()]
    waited.simulated_seconds = (max(ends) - min(starts)).total_seconds()
    waited.dag_polls = sum(_polls(e["ExecutionEndTime"] - e["ExecutionStartTime"]) for e in found.values())
    rounds = []
    for region, execution_id in parents:
        pages = (
            client("ssm", region=region)
            .get_paginator("describe_automation_executions")
            .paginate(Filters=[{"Key": "ParentExecutionId", "Values": [execution_id]}])
        )
        children = [child for page in pages for child in page["AutomationExecutionMetadataList"]]
        waited.instances += len(children)
        waited.failed += sum(child["AutomationExecutionStatus"] not in AUTOMATION_SUCCESS for child in children)
        rounds.append(len({child["ExecutionStartTime"] for child in children}))
    waited.ramp_rounds = max(rounds, default=0)
    return waited


def _wait_for_commands(trigger: Any, sandbox: SandboxControl, client: Callable[..., Any]) -> Waited:
    """Move the clock until every command the trigger waits on is final; then read their invocations."""
    from patchcycle.operators.patch_wave import AUTOMATION_WAIT
    from patchcycle.triggers.command_completion import FINAL_STATUSES

    commands = [(t["region_name"], command_id) for t in trigger.targets for command_id in t["command_ids"]]
    pending, waited = set(commands), Waited(waited_on=len(commands))
    while pending:
        if waited.clock_moved >= AUTOMATION_WAIT.total_seconds():
            raise RuntimeError(f"{len(pending)} commands still running after {waited.clock_moved:.0f} s")
        sandbox.advance(STEP_SECONDS)
        waited.clock_moved += STEP_SECONDS
        for region, command_id in sorted(pending):
            listed = client("ssm", region=region).list_commands(CommandId=command_id)["Commands"]
            if listed and listed[0]["Status"] in FINAL_STATUSES:
                pending.discard((region, command_id))
    first: datetime | None = None
    last: datetime | None = None
    for region, command_id in commands:
        pages = (
            client("ssm", region=region)
            .get_paginator("list_command_invocations")
            .paginate(CommandId=command_id, Details=True, PaginationConfig={"PageSize": BATCH})
        )
        invocations = [invocation for page in pages for invocation in page["CommandInvocations"]]
        requested = min(invocation["RequestedDateTime"] for invocation in invocations)
        finished = max(
            plugin.get("ResponseFinishDateTime", requested)
            for invocation in invocations
            for plugin in invocation.get("CommandPlugins", [])
        )
        first = requested if first is None else min(first, requested)
        last = finished if last is None else max(last, finished)
        waited.dag_polls += _polls(finished - requested)
        waited.invocation_pages += max(1, math.ceil(len(invocations) / BATCH))
        waited.instances += len(invocations)
        waited.failed += sum(invocation["Status"] != "Success" for invocation in invocations)
        waited.sent += [str(invocation["InstanceId"]) for invocation in invocations]
    if first is not None and last is not None:
        waited.simulated_seconds = (last - first).total_seconds()
    return waited


def _polls(duration: timedelta) -> int:
    """A triggerer's polls of one execution or command: the first one interval after the deferral, then one
    every interval until it is seen final."""
    return max(1, math.ceil(duration.total_seconds() / DAG_POLL_SECONDS))


# -- the bench -----------------------------------------------------------------------------------------


def main() -> None:
    faulthandler.enable()
    started = time.perf_counter()
    # tests.conftest sets a throwaway AIRFLOW_HOME when first imported: keep the bench's own instead.
    from tests import conftest

    shutil.rmtree(conftest._AIRFLOW_HOME, ignore_errors=True)
    airflow_home = _isolate_airflow()
    results: list[WaveFigures] = []
    try:
        for size in SIZES:
            results.append(_run(size))
            _print_wave(results[-1])
            print()
    finally:
        os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)
        shutil.rmtree(airflow_home, ignore_errors=True)
    _print_summary(results)
    print(
        f"  peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
        f"(ru_maxrss: whole process, earlier benches included); this bench: {time.perf_counter() - started:.0f} s"
    )


def _run(size: int) -> WaveFigures:
    import logging

    from include.sandbox.loopback import Loopback
    from include.sandbox.scenario import parse_scenario
    from include.sandbox.server import SandboxApp, SandboxServer
    from tests.conftest import forget_object_stores, sandbox_connections

    figures = WaveFigures(size)
    started = time.perf_counter()
    scenario = parse_scenario(wave_scenario(size), source=f"<bench_wave {size}>")
    # Imported only now: Airflow reads the environment _isolate_airflow set when it is first imported.
    from patchcycle.operators.patch_wave import PatchWaveOperator
    from patchcycle.run_artifacts import RunArtifacts

    for name in ("airflow", "airflow.task", "airflow.providers", "airflow.triggers", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ledger = Ledger()
    ledger.install(SandboxApp, Loopback, PatchWaveOperator, RunArtifacts)
    try:
        server = SandboxServer(scenario).start()
        figures.sandbox_start_seconds = time.perf_counter() - started
        try:
            os.environ.update(sandbox_connections(sys.modules[__name__], server.url))
            forget_object_stores()  # the last sandbox's S3 store (another port) must go
            sandbox = SandboxControl(server.url)
            before = sandbox.calls()
            try:
                _run_wave(figures, ledger, sandbox, server)
            except Exception as error:  # print what was measured, and why the rest was not
                figures.error = f"{type(error).__name__}: {error}"
            figures.total_calls = sum((sandbox.calls() - before).values())
            figures.counted_calls = sum(ledger.total().values())
        finally:
            server.stop()
            forget_object_stores()
    finally:
        ledger.restore()
    figures.wall_seconds = time.perf_counter() - started
    return figures


def _run_wave(figures: WaveFigures, ledger: Ledger, sandbox: SandboxControl, server: Any) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from patchcycle.operators.patch_wave import PatchWaveOperator, WaveHalted
    from patchcycle.run_artifacts import WAVE_PLAN
    from patchcycle.triggers.automation_completion import AutomationCompletionTrigger
    from tests.conftest import client_factory, first_trigger_payload
    from tests.operators.install_helpers import (
        context,
        cycle_config,
        plan_run,
        register_runbooks,
        run_artifacts,
        s3_root,
        wave_run,
    )

    config = cycle_config(
        s3_root(f"bench-wave-{figures.size}"),
        change_calendar=CALENDAR,
        health_alarms=list(HEALTH_ALARMS),
        halt_threshold=HALT_THRESHOLD,
    )
    started = time.perf_counter()
    plan_run(server, config, BASE_RUN)
    figures.plan_seconds = time.perf_counter() - started
    started = time.perf_counter()
    register_runbooks(config, BASE_RUN)
    figures.runbooks_seconds = time.perf_counter() - started
    plan = run_artifacts(config, BASE_RUN).read(WAVE_PLAN)
    members = sorted(plan["resource_id"])
    if len(members) != figures.size:
        raise RuntimeError(f"the plan holds {len(members)} of the {figures.size} instances")
    artifacts = wave_run(config, BASE_RUN, RUN_ID, {1: members})
    profile_of = dict(zip(plan["resource_id"], plan["profile_id"], strict=True))
    client = client_factory(server.url)
    phases = figures.phases

    operator = PatchWaveOperator(task_id="wave_1", wave=1, config=config)
    ledger.switch(phase="gates", source="bench")
    try:
        try:
            figures.outcome = operator.execute(context(RUN_ID))
            return
        except TaskDeferred as deferred:
            waiting = deferred
        while True:
            phase = phases[ledger.phase]
            ledger.switch(source="wait")
            if isinstance(waiting.trigger, AutomationCompletionTrigger):
                waited = _wait_for_automations(waiting.trigger, sandbox, client)
            else:
                waited = _wait_for_commands(waiting.trigger, sandbox, client)
            ledger.switch(source="trigger")
            payload = first_trigger_payload(waiting.trigger)
            ledger.switch(source="bench")
            _record_wait(phase, waited, profile_of)
            figures.resumed.append(waiting.method_name)
            try:
                figures.outcome = getattr(operator, waiting.method_name)(context(RUN_ID), event=payload)
                return
            except TaskDeferred as deferred:
                waiting = deferred
    except WaveHalted as halted:
        figures.outcome = {"halted": True, "reason": str(halted)}
    finally:
        ledger.switch(source="bench")
        _collect(figures, ledger, artifacts)


def _record_wait(phase: PhaseFigures, waited: Waited, profile_of: dict[str, str]) -> None:
    phase.clock_moved += waited.clock_moved
    phase.simulated_seconds = (phase.simulated_seconds or 0.0) + waited.simulated_seconds
    phase.waited_on += waited.waited_on
    phase.instances += waited.instances
    phase.failed += waited.failed
    phase.ramp_rounds = waited.ramp_rounds
    phase.dag_polls = (phase.dag_polls or 0) + waited.dag_polls
    if phase.name in AUTOMATION_PHASES:
        parents = math.ceil(waited.instances / BATCH)
        phase.minimum.update(
            {
                "ssm:StartAutomationExecution": parents,
                "ssm:DescribeAutomationExecutions": parents,
                "ssm:DescribeAutomationStepExecutions": waited.failed,
            }
        )
    else:
        per_profile = Counter(profile_of[instance] for instance in waited.sent)
        phase.minimum.update(
            {
                "ssm:SendCommand": sum(math.ceil(n / BATCH) for n in per_profile.values()),
                "ssm:ListCommandInvocations": waited.invocation_pages,
            }
        )


def _collect(figures: WaveFigures, ledger: Ledger, artifacts: Any) -> None:
    names = [name for name in HEALTH_ALARMS if not name.endswith("*")]
    prefixes = [name for name in HEALTH_ALARMS if name.endswith("*")]
    figures.phases["gates"].minimum.update(
        {"ssm:GetCalendarState": 1, "cloudwatch:DescribeAlarms": math.ceil(len(names) / 100) + len(prefixes)}
    )
    for (phase, source), calls in ledger.calls.items():
        if phase not in figures.phases:
            continue
        figures_phase = figures.phases[phase]
        if source == "operator":
            figures_phase.operator.update(calls)
        elif source == "trigger":
            figures_phase.trigger.update(calls)
        elif source == "runbook":
            figures_phase.runbook.update(calls)
    for (phase, what), files in ledger.artifacts.items():
        if phase in figures.phases:
            chosen = figures.phases[phase]
            (chosen.artifact_reads if what == "read" else chosen.artifact_writes).update(files)
    for (phase, source), seconds in ledger.seconds.items():
        if phase not in figures.phases:
            continue
        if source == "operator":
            figures.phases[phase].operator_seconds += seconds
        elif source == "trigger":
            figures.phases[phase].trigger_seconds += seconds
        elif source == "wait":
            figures.phases[phase].wait_seconds += seconds


# -- printing -------------------------------------------------------------------------------------------


def _artifact_io(calls: Counter[str]) -> tuple[int, str]:
    s3 = {api.split(":", 1)[1]: n for api, n in calls.items() if api.startswith("s3:")}
    return sum(s3.values()), ", ".join(f"{method} {n}" for method, n in sorted(s3.items()))


def _print_wave(figures: WaveFigures) -> None:
    from tests.operators.install_helpers import ACCOUNT, FAILING_PATCH, REGION

    phases = figures.phases
    print(
        f"wave: one wave of {figures.size} instances in {ACCOUNT}/{REGION} ({INSTALL_FAILURES} fail to install "
        f"{FAILING_PATCH}, {VALIDATION_FAILURES} fail validation), gates -> snapshot -> install -> validate -> "
        f"rollback -> decide; MaxConcurrency 50, halt_threshold {HALT_THRESHOLD}"
    )
    print(
        f"  setup: sandbox start {figures.sandbox_start_seconds:.1f} s, inventory + match + plan "
        f"{figures.plan_seconds:.1f} s, register runbooks {figures.runbooks_seconds:.1f} s"
    )
    if figures.error:
        print(f"  STOPPED: {figures.error}")
    print(f"  resumed: {', '.join(figures.resumed) or '-'}")
    outcome = ", ".join(f"{key} {value}" for key, value in figures.outcome.items() if key != "wave")
    print(f"  outcome: {outcome or '-'}")
    header = (
        f"    {'phase':<9} {'covers':>6} {'failed':>6} {'waits on':>8} {'sim s':>6} {'rounds':>6}"
        f" {'operator s':>10} {'sandbox s':>9} {'trigger s':>9}"
    )
    print("  per phase: instances covered and failed, parents/commands waited on, simulated seconds (sandbox")
    print("  timestamps, first start to last end), rounds (distinct moments children started, most of any parent:")
    print("  the 1, 2, 4, ... ramp-up when children take equally long), and wall time of the operator, of the")
    print("  sandbox running the runbooks while the bench moved the clock, and of the trigger")
    print(header)
    print("    " + "-" * (len(header) - 4))
    for phase in phases.values():
        sim = f"{phase.simulated_seconds:>6.0f}" if phase.simulated_seconds is not None else f"{'-':>6}"
        rounds = f"{phase.ramp_rounds:>6}" if phase.ramp_rounds is not None else f"{'-':>6}"
        waits = f"{phase.waited_on:>8}" if phase.waited_on else f"{'-':>8}"
        covers = f"{phase.instances:>6} {phase.failed:>6}" if phase.waited_on else f"{'-':>6} {'-':>6}"
        print(
            f"    {phase.name:<9} {covers} {waits} {sim} {rounds} {phase.operator_seconds:>10.2f}"
            f" {phase.wait_seconds:>9.2f} {phase.trigger_seconds:>9.2f}"
        )
    print("  AWS API calls by the operator itself (trigger polls and runbook steps apart)")
    header = f"    {'phase':<9} {'API':<38} {'calls':>6} {'min':>6}  minimum from"
    print(header)
    print("    " + "-" * (len(header) - 4 + 40))
    for phase in phases.values():
        apis = sorted(set(phase.minimum) | {api for api in phase.operator if not api.startswith("s3:")})
        for api in apis:
            got, low = phase.operator.get(api, 0), phase.minimum.get(api)
            flag = ""
            if low is not None and got > low:
                flag = "  <-- above the minimum"
            low_text = f"{low:>6}" if low is not None else f"{'-':>6}"
            print(f"    {phase.name:<9} {api:<38} {got:>6} {low_text}  {API_BASIS.get(api, '')}{flag}")
        s3_total, s3_text = _artifact_io(phase.operator)
        if s3_total:
            print(f"    {phase.name:<9} {'s3 (artifact I/O)':<38} {s3_total:>6} {'-':>6}  {s3_text}")
    print("  the operator's artifact reads and writes (run-artifact contract), by file name template")
    for phase in phases.values():
        for what, names in (("reads", phase.artifact_reads), ("writes", phase.artifact_writes)):
            if names:
                detail = ", ".join(f"{name} {n}" for name, n in sorted(names.items()))
                print(f"    {phase.name:<9} {what:<6} {sum(names.values()):>3}  {detail}")
    print(
        f"  trigger polls (the bench moved the clock until all were final, so each trigger looked once; a triggerer"
        f" polling every {DAG_POLL_SECONDS:.0f} s would make about the 'at {DAG_POLL_SECONDS:.0f} s' count)"
    )
    for phase in phases.values():
        for api, got in sorted(phase.trigger.items()):
            print(f"    {phase.name:<9} {api:<38} {got:>6}   at {DAG_POLL_SECONDS:.0f} s: {phase.dag_polls}")
    print("  calls the runbooks' steps made inside the sandbox (not the operator's; for scale)")
    for phase in phases.values():
        if phase.runbook:
            detail = ", ".join(f"{api} {n}" for api, n in phase.runbook.most_common())
            print(f"    {phase.name:<9} {sum(phase.runbook.values()):>6}  {detail}")
    check = "matches" if figures.total_calls == figures.counted_calls else "DOES NOT MATCH"
    print(
        f"  sandbox: {figures.total_calls} calls served in all (GET /_sandbox/calls); the ledger counted "
        f"{figures.counted_calls} ({check}); wall time for this size {figures.wall_seconds:.0f} s"
    )


def _print_summary(results: list[WaveFigures]) -> None:
    sizes = [figures.size for figures in results]
    print("wave summary: simulated seconds / operator wall s / operator AWS calls (excl. artifact I/O) per phase")
    header = f"    {'phase':<9}" + "".join(f" {f'N={size}':>24}" for size in sizes)
    print(header)
    print("    " + "-" * (len(header) - 4))
    for name in PHASES:
        cells = []
        for figures in results:
            phase = figures.phases[name]
            sim = f"{phase.simulated_seconds:.0f}" if phase.simulated_seconds is not None else "-"
            calls = sum(n for api, n in phase.operator.items() if not api.startswith("s3:"))
            cells.append(f"{sim} / {phase.operator_seconds:.2f} / {calls}")
        print(f"    {name:<9}" + "".join(f" {cell:>24}" for cell in cells))
    totals = [f"{figures.wall_seconds:.0f} s" for figures in results]
    print(f"    {'wall':<9}" + "".join(f" {total:>24}" for total in totals))


if __name__ == "__main__":
    main()

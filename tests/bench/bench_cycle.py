"""Inventory and match on the 10,000-instance scenario: AWS API calls per API against the minimum the
batch limits allow, and the wall time and peak memory of the pandas steps.

Runs the operators the patch_cycle DAG maps over (connection, region) -- InventoryOperator,
PatchScanOperator, then CycleReportOperator -- through their own execute() with a minimal context, the
run's validated config (scan mode, as validate_params pushes it) and a file:// artifact root, without a
scheduler; the bench reads the run's tables back through the run-artifact contract, as the tasks do. The
one difference from a DAG run is the wait: instead of CommandCompletionTrigger sleeping in the triggerer,
ListCommands is polled the same way and the sandbox's simulated clock is advanced by poll_seconds between
rounds (and before the first: the trigger first looks one interval after the deferral). API calls are the
sandbox's own counts (GET /_sandbox/calls), diffed per phase. Asserts nothing about time.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import inspect
import json
import math
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LARGE = REPO / "include" / "sandbox" / "scenarios" / "large.yaml"
SCENARIO = Path(os.environ.get("BENCH_CYCLE_SCENARIO", LARGE))  # a smaller one for a quick try
DAG_ID = "patch_cycle"
RUN_ID = "manual__bench_cycle"
CONN_ID = "aws_default"
POLL_SECONDS = 30.0  # the patch_cycle DAG's default poll_seconds
MIB = 1024 * 1024

# Per API: what the counter calls it, and the documented batch/page limit the minimum follows from.
API_BASIS = {
    "sts:GetCallerIdentity": "1 per (connection, region) task",
    "ec2:DescribeInstances": "1,000 instances per page",
    "ssm:DescribeInstanceInformation": "50 instances per page",
    "rds:DescribeDBInstances": "100 DB instances per page",
    "rds:DescribePendingMaintenanceActions": "100 resources per page",
    "s3:GET": "ListBuckets 1 per region + GetBucketTagging 1 per bucket",
    "ssm:SendCommand": "50 instance ids per call",
    "ssm:ListCommands": "1 per command per poll round (1 round at best)",
    "ssm:ListCommandInvocations": "50 invocations per page",
    "ssm:DescribeInstancePatchStates": "50 instance ids per call",
    # No batch form: ListComplianceItems takes one resource id per call too (50 items a page), and listing a
    # region's items without ids lacks the CVE ids, which the patch catalogs give only for some OS families.
    "ssm:DescribeInstancePatches": "1 per non-compliant instance (no batch API), 100 patches per page",
}


def _isolate_airflow() -> Path:
    """What tests/conftest.py does: a throwaway AIRFLOW_HOME, unit-test mode, no real AWS credentials.

    Airflow reads its configuration when first imported, so this runs before any airflow import.
    """
    home = Path(tempfile.mkdtemp(prefix="patchcycle-bench-airflow-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    plugins = str(REPO / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)  # as Airflow does for its plugins folder
    return home


def _point_connection_at(url: str, region: str) -> None:
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {
                "endpoint_url": url,
                "region_name": region,
                "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 10}},
            },
        }
    )


class SandboxControl:
    """The sandbox's own endpoints: API call counts and the simulated clock."""

    def __init__(self, url: str) -> None:
        self.url = url

    def calls(self) -> Counter[str]:
        with urllib.request.urlopen(f"{self.url}/_sandbox/calls", timeout=30) as response:
            return Counter({str(k): int(v) for k, v in json.load(response).items()})

    def advance(self, seconds: float) -> None:
        request = urllib.request.Request(
            f"{self.url}/_sandbox/clock/advance",
            data=json.dumps({"seconds": seconds}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30):
            pass


# -- memory -------------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so each phase's peak is its own (Linux only)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mib() -> float:
    hwm = _status_kib("VmHWM")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


# -- instrumentation ------------------------------------------------------------------------------


@dataclass
class StepStats:
    calls: int = 0
    seconds: float = 0.0
    rows: int = 0
    python_peak: int = 0  # bytes, tracemalloc (Python objects and NumPy buffers)
    arrow_peak: int = 0  # bytes, a proxy Arrow memory pool (pandas' str columns live in Arrow)
    replays: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)


class PandasSteps:
    """Times every core (pandas) function the operators (and the report's read-back helpers) call, and the
    run-artifact contract's parquet I/O (encoding and decoding its tables).

    Wall time is taken as the operators run. Peak memory is taken afterwards by calling each step
    again on the same arguments under tracemalloc and a fresh Arrow proxy pool, so that tracing
    does not slow the timed run. Nested calls count once, in the outermost step.
    """

    def __init__(self) -> None:
        self.phase = ""
        self.stats: dict[tuple[str, str], StepStats] = {}
        self.seconds_by_phase: Counter[str] = Counter()
        self._depth = 0
        self._undo: list[tuple[Any, str, Any]] = []

    def install(self, operator_modules: list[ModuleType], table_class: type) -> None:
        for module in operator_modules:
            source = inspect.getsource(module)
            for name, value in list(vars(module).items()):
                if inspect.isfunction(value) and value.__module__.startswith("patchcycle.core."):
                    self._wrap(module, name, f"{value.__module__.rsplit('.', 1)[-1]}.{name}")
                elif isinstance(value, ModuleType) and value.__name__.startswith("patchcycle.core."):
                    for called in sorted(set(re.findall(rf"\b{re.escape(name)}\.(\w+)\(", source))):
                        if inspect.isfunction(getattr(value, called, None)):
                            self._wrap(value, called, f"{value.__name__.rsplit('.', 1)[-1]}.{called}")
            if inspect.isfunction(getattr(module, "_scan_targets", None)):  # the match's own pandas filter
                self._wrap(module, "_scan_targets", f"{module.__name__.rsplit('.', 1)[-1]}._scan_targets")
        for method, what in (("decode", "parquet read"), ("encode", "parquet write")):
            self._wrap(table_class, method, f"Table.{method} ({what})")

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        original = inspect.getattr_static(owner, name)
        if getattr(original, "__bench_wrapped__", False):
            return
        steps = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if steps._depth or not steps.phase:  # nested, or outside a phase (the bench's own reads)
                return original(*args, **kwargs)
            steps._depth += 1
            started = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                steps._depth -= 1
            stats = steps.stats.setdefault((steps.phase, label), StepStats())
            stats.calls += 1
            stats.seconds += elapsed
            stats.rows += _rows(result, args)
            stats.replays.append((original, args, kwargs))
            steps.seconds_by_phase[steps.phase] += elapsed
            return result

        timed.__bench_wrapped__ = True  # type: ignore[attr-defined]
        self._undo.append((owner, name, original))
        setattr(owner, name, timed)

    def measure_memory(self) -> None:
        """Replay the steps recorded since the last call, one at a time, and keep each step's peak."""
        import pyarrow as pa

        base_pool = pa.default_memory_pool()
        pools = []
        for stats in self.stats.values():
            for function, args, kwargs in stats.replays:
                pool = pa.proxy_memory_pool(base_pool)
                pools.append(pool)
                pa.set_memory_pool(pool)
                tracemalloc.start()
                try:
                    function(*args, **kwargs)  # the result is part of the peak, then dropped
                    python_peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                    pa.set_memory_pool(base_pool)
                stats.python_peak = max(stats.python_peak, python_peak)
                stats.arrow_peak = max(stats.arrow_peak, pool.max_memory() or 0)
            stats.replays.clear()
        gc.collect()  # once: a full collection costs about a second on the sandbox's heap
        for pool in pools:
            if pool.bytes_allocated():
                # A buffer from the replay is still alive (a cache on an input, say): a pool freed
                # before its buffers crashes the process, so this one is never freed.
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(pool))


def _rows(result: Any, args: tuple[Any, ...]) -> int:
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return len(result)
    frames = [arg for arg in args if isinstance(arg, pd.DataFrame)]
    return len(frames[0]) if frames else 0


@dataclass
class HookStats:
    calls: int = 0
    seconds: float = 0.0


class HookTimes:
    """Wall time spent in each public method of the project's hooks (AWS round trips and paging)."""

    def __init__(self) -> None:
        self.stats: dict[str, HookStats] = {}
        self._undo: list[tuple[type, str, Any]] = []

    def install(self, hook_classes: list[type]) -> None:
        for cls in hook_classes:
            for name, value in list(vars(cls).items()):
                if inspect.isfunction(value) and not name.startswith("_"):
                    self._wrap(cls, name, value)

    def _wrap(self, cls: type, name: str, original: Callable[..., Any]) -> None:
        stats = self.stats.setdefault(f"{cls.__name__}.{name}", HookStats())

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                stats.calls += 1
                stats.seconds += time.perf_counter() - started

        self._undo.append((cls, name, original))
        setattr(cls, name, timed)

    def restore(self) -> None:
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)
        self._undo.clear()


# -- phases ---------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    peak_rss_mib: float = 0.0
    timings: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds) inside the phase


@contextmanager
def _timed(phase: Phase, what: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        phase.timings.append((what, elapsed))
        phase.seconds += elapsed


def _wait_for_commands(hook: Any, sandbox: SandboxControl, trigger: Any) -> tuple[dict[str, Any], int]:
    """CommandCompletionTrigger.run's loop, with the sandbox clock advanced instead of sleeping (the trigger
    also first looks one interval after the task deferred)."""
    from patchcycle.triggers.command_completion import FINAL_STATUSES, _summary

    pending = set(trigger.command_ids)
    summaries: dict[str, dict[str, Any]] = {}
    waited, rounds = 0.0, 0
    sandbox.advance(trigger.poll_interval)
    while True:
        rounds += 1
        for command_id in sorted(pending):
            try:
                command = hook.command(command_id)
            except LookupError:
                continue  # not visible yet, as the trigger tolerates
            summaries[command_id] = _summary(command)
            if command["Status"] in FINAL_STATUSES:
                pending.discard(command_id)
        if not pending:
            return {"status": "done", "commands": summaries, "pending": []}, rounds
        if waited >= trigger.timeout:
            return {"status": "timeout", "commands": summaries, "pending": sorted(pending)}, rounds
        sandbox.advance(trigger.poll_interval)
        waited += trigger.poll_interval


@dataclass
class Facts:
    """What each region held, for the minimum number of calls."""

    regions: int = 0
    ec2: int = 0
    managed: int = 0
    rds: int = 0
    rds_with_actions: int = 0
    buckets: int = 0
    scan_targets: int = 0
    commands: int = 0
    invocation_pages: int = 0
    non_compliant: int = 0
    patch_pages: int = 0
    minimum: dict[str, Counter[str]] = field(default_factory=lambda: {"inventory": Counter(), "match": Counter()})

    def add_inventory(self, inventory: Any) -> None:
        by_type = inventory["resource_type"]
        ec2 = int((by_type == "ec2").sum())
        managed = int(inventory.loc[by_type == "ec2", "managed"].sum())
        rds = int((by_type == "rds").sum())
        with_actions = int((inventory.loc[by_type == "rds", "pending_actions"] > 0).sum())
        buckets = int((by_type == "s3").sum())
        self.regions += 1
        self.ec2 += ec2
        self.managed += managed
        self.rds += rds
        self.rds_with_actions += with_actions
        self.buckets += buckets
        self.minimum["inventory"].update(
            {
                "sts:GetCallerIdentity": 1,
                "ec2:DescribeInstances": max(1, math.ceil(ec2 / 1000)),
                "ssm:DescribeInstanceInformation": max(1, math.ceil(managed / 50)),
                "rds:DescribeDBInstances": max(1, math.ceil(rds / 100)),
                "rds:DescribePendingMaintenanceActions": max(1, math.ceil(with_actions / 100)),
                "s3:GET": 1 + buckets,
            }
        )

    def add_match(self, targets: int, summaries: dict[str, Any], non_compliant: int, plan: Any) -> None:
        invocation_pages = sum(max(1, math.ceil(s["target_count"] / 50)) for s in summaries.values())
        per_instance = plan.loc[plan["resource_type"] == "ec2", "resource_id"].value_counts()
        # One call for each non-compliant instance, plus a page for every 100 patches past the first 100.
        extra_pages = int(sum(max(0, math.ceil(n / 100) - 1) for n in per_instance))
        self.scan_targets += targets
        self.commands += len(summaries)
        self.invocation_pages += invocation_pages
        self.non_compliant += non_compliant
        self.patch_pages += non_compliant + extra_pages
        self.minimum["match"].update(
            {
                "ssm:SendCommand": math.ceil(targets / 50),
                "ssm:ListCommands": len(summaries),
                "ssm:ListCommandInvocations": invocation_pages,
                "ssm:DescribeInstancePatchStates": math.ceil(targets / 50),
                "ssm:DescribeInstancePatches": non_compliant + extra_pages,
            }
        )


# -- printing -------------------------------------------------------------------------------------


def _print_api_table(title: str, calls: Counter[str], minimum: Counter[str], fleet: int) -> None:
    per_k = 1000 / fleet if fleet else 0.0
    print(f"  {title}")
    header = f"    {'API':<38} {'calls':>7} {'/1k inst':>9} {'min':>7} {'min/1k':>8}  minimum from"
    print(header)
    print("    " + "-" * (len(header) - 4 + 30))
    known = [api for api in API_BASIS if api in calls or api in minimum]
    others = sorted(api for api in calls if api not in API_BASIS)
    for api in [*known, *others]:
        got = calls.get(api, 0)
        low = minimum.get(api)
        low_text = f"{low:>7} {low * per_k:>8.1f}" if low is not None else f"{'-':>7} {'-':>8}"
        flag = ""
        if low is not None and got > low:
            flag = "  <-- above the minimum"
        elif low is not None and got < low:
            flag = "  <-- below: the sandbox returns more per page than AWS would"
        print(f"    {api:<38} {got:>7} {got * per_k:>9.1f} {low_text}  {API_BASIS.get(api, '')}{flag}")
    total = sum(calls.values())
    print(f"    {'total':<38} {total:>7} {total * per_k:>9.1f}")


def _print_steps(steps: PandasSteps, phases: list[Phase]) -> None:
    print("  pandas steps (wall time as run; peak memory on a replay of the same call)")
    header = (
        f"    {'phase':<10} {'step':<38} {'calls':>5} {'rows':>8} {'wall s':>8} {'py+np MiB':>10} {'arrow MiB':>10}"
    )
    print(header)
    print("    " + "-" * (len(header) - 4))
    for phase in phases:
        rows = [(label, s) for (name, label), s in steps.stats.items() if name == phase.name]
        for label, s in sorted(rows, key=lambda item: -item[1].seconds):
            print(
                f"    {phase.name:<10} {label:<38} {s.calls:>5} {s.rows:>8} {s.seconds:>8.3f}"
                f" {s.python_peak / MIB:>10.1f} {s.arrow_peak / MIB:>10.1f}"
            )
        total = steps.seconds_by_phase.get(phase.name, 0.0)
        share = 100 * total / phase.seconds if phase.seconds else 0.0
        print(
            f"    {phase.name:<10} {'all pandas steps':<38} {'':>5} {'':>8} {total:>8.3f}  ({share:.0f}% of the phase)"
        )


def _print_hooks(hooks: HookTimes) -> None:
    print("  hook methods (AWS round trips, paging, response parsing)")
    for name, s in sorted(hooks.stats.items(), key=lambda item: -item[1].seconds):
        if s.calls:
            print(f"    {name:<46} {s.calls:>6} calls {s.seconds:>8.2f} s {1000 * s.seconds / s.calls:>8.1f} ms/call")


# -- the bench ------------------------------------------------------------------------------------


@dataclass
class Results:
    scenario: str
    regions: list[str]
    load_seconds: float
    phases: dict[str, Phase]
    facts: Facts
    steps: PandasSteps
    hooks: HookTimes
    notes: list[str]


def main() -> None:
    faulthandler.enable()
    started = time.perf_counter()
    airflow_home = _isolate_airflow()
    artifact_dir = Path(tempfile.mkdtemp(prefix="patchcycle-bench-artifacts-"))
    try:
        results = _run(artifact_dir)
    finally:
        shutil.rmtree(artifact_dir, ignore_errors=True)
        shutil.rmtree(airflow_home, ignore_errors=True)
    _print_results(results)
    print(
        f"  peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
        f"(ru_maxrss: whole process, earlier benches included); this bench: {time.perf_counter() - started:.0f} s"
    )


def _run(artifact_dir: Path) -> Results:
    import logging

    from include.sandbox.scenario import load_scenario
    from include.sandbox.server import SandboxServer

    _reset_peak_rss()
    scenario = load_scenario(SCENARIO)
    if len(scenario.accounts) != 1:
        raise SystemExit(f"bench_cycle drives one connection; {SCENARIO.name} has {len(scenario.accounts)} accounts")
    regions = [region.name for region in scenario.accounts[0].regions]
    started = time.perf_counter()
    server = SandboxServer(scenario).start()
    load_seconds = time.perf_counter() - started
    try:
        _point_connection_at(server.url, regions[0])
        # Imported only now: Airflow reads the environment set above when it is first imported.
        from patchcycle import run_artifacts
        from patchcycle.hooks import inventory as inventory_hooks
        from patchcycle.hooks import patch_manager
        from patchcycle.operators import cycle_report, inventory, patch_scan
        from patchcycle.readback import evidence, match

        for name in ("airflow", "airflow.task", "airflow.providers", "botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
        results = Results(
            scenario=scenario.name,
            regions=regions,
            load_seconds=load_seconds,
            phases={name: Phase(name) for name in ("inventory", "match", "report")},
            facts=Facts(),
            steps=PandasSteps(),
            hooks=HookTimes(),
            notes=[],
        )
        # The report reads the tables back through patchcycle.readback: its pandas steps are timed there.
        results.steps.install([inventory, patch_scan, cycle_report, match, evidence], run_artifacts.Table)
        results.hooks.install(
            [
                patch_manager.PatchManagerHook,
                inventory_hooks.Ec2InventoryHook,
                inventory_hooks.RdsInventoryHook,
                inventory_hooks.S3InventoryHook,
            ]
        )
        try:
            _run_cycle(results, SandboxControl(server.url), artifact_dir.as_uri())
        finally:
            results.steps.restore()
            results.hooks.restore()
    finally:
        server.stop()
    return results


def _run_cycle(results: Results, sandbox: SandboxControl, artifact_root: str) -> None:
    """inventory for every region, then match for every region, then the report: the DAG's order."""
    from airflow.sdk.exceptions import TaskDeferred

    from patchcycle.config import CycleConfig, Target
    from patchcycle.operators.cycle_report import CycleReportOperator
    from patchcycle.operators.inventory import InventoryOperator
    from patchcycle.operators.patch_scan import PatchScanOperator
    from patchcycle.run_artifacts import INVENTORY, MATCH_PLAN, RunArtifacts

    # What validate_params pushes (XCom `config`) for a scan of every region, and every task takes.
    config = CycleConfig.from_params(
        {
            "mode": "scan",
            "targets": [{"aws_conn_id": CONN_ID, "regions": list(results.regions)}],
            "artifact_root": artifact_root,
            "artifact_conn_id": CONN_ID,
            "poll_seconds": POLL_SECONDS,
        }
    ).as_params()
    context: Any = {
        "dag": SimpleNamespace(dag_id=DAG_ID),
        "run_id": RUN_ID,
        "params": {},
        "outlet_events": defaultdict(SimpleNamespace),  # the report updates the patch_cycle_report asset
    }
    common = {"aws_conn_id": CONN_ID, "config": config}
    artifacts = RunArtifacts(artifact_root, DAG_ID, RUN_ID, CONN_ID)
    steps, phases, facts, notes = results.steps, results.phases, results.facts, results.notes

    @contextmanager
    def in_phase(phase: Phase) -> Iterator[None]:
        steps.phase = phase.name
        _reset_peak_rss()
        before = sandbox.calls()
        try:
            yield
        finally:
            phase.calls.update(sandbox.calls() - before)
            phase.peak_rss_mib = max(phase.peak_rss_mib, _peak_rss_mib())
            steps.phase = ""
            steps.measure_memory()

    for region in results.regions:
        phase = phases["inventory"]
        with in_phase(phase):
            operator = InventoryOperator(task_id="inventory", region_name=region, **common)
            with _timed(phase, f"{region}: InventoryOperator.execute"):
                summary = operator.execute(context)
        facts.add_inventory(artifacts.read(INVENTORY, target=Target(CONN_ID, region)))
        notes.append(f"inventory {region}: {summary['resources']} resources, {summary['in_scope']} in scope")

    for region in results.regions:
        phase = phases["match"]
        with in_phase(phase):
            scan = PatchScanOperator(task_id="match", region_name=region, **common)
            deferral: TaskDeferred | None = None
            with _timed(phase, f"{region}: execute (SendCommand, then defer)"):
                try:
                    result = scan.execute(context)
                except TaskDeferred as deferred:
                    deferral = deferred
            summaries: dict[str, Any] = {}
            if deferral is not None:
                with _timed(phase, f"{region}: wait (ListCommands; clock +{POLL_SECONDS:.0f} s a round)"):
                    event, rounds = _wait_for_commands(scan.hook, sandbox, deferral.trigger)
                with _timed(phase, f"{region}: {deferral.method_name} (invocations, states, patches)"):
                    result = getattr(scan, deferral.method_name)(context, event)
                summaries = event["commands"]
                notes.append(f"match {region}: {len(summaries)} Scan commands final after {rounds} poll rounds")
        plan = artifacts.read(MATCH_PLAN, target=Target(CONN_ID, region))
        facts.add_match(int(result["scanned"]), summaries, int(result["non_compliant"]), plan)
        notes.append(
            f"match {region}: {result['scanned']} scanned, {result['scan_failures']} scan failures, "
            f"{result['non_compliant']} non-compliant, {result['plan_rows']} plan rows"
        )

    phase = phases["report"]
    with in_phase(phase):
        report = CycleReportOperator(task_id="report", config=config)
        with _timed(phase, "CycleReportOperator.execute (all regions)"):
            outcome = report.execute(context)
    notes.append(f"report: {outcome['in_scope']} resources in scope, {outcome['incomplete']} parts missing")


def _print_results(results: Results) -> None:
    fleet = results.facts.ec2
    phases = results.phases
    print(
        f"cycle: inventory -> match -> report on scenario {results.scenario!r}: "
        f"{fleet} EC2 instances in {len(results.regions)} regions, one task per region, run one after another"
    )
    print(f"  sandbox start (seed moto and SSM state): {results.load_seconds:.1f} s")
    for note in results.notes:
        print(f"  {note}")
    print("  wall time by phase")
    for phase in phases.values():
        print(f"    {phase.name:<10} {phase.seconds:>7.1f} s   peak RSS in the phase {phase.peak_rss_mib:>6.0f} MiB")
        for what, seconds in phase.timings:
            print(f"      {what:<64} {seconds:>7.1f} s")
    for name in ("inventory", "match"):
        _print_api_table(f"AWS API calls, {name}", phases[name].calls, results.facts.minimum[name], fleet)
    _print_hooks(results.hooks)
    _print_steps(results.steps, list(phases.values()))


if __name__ == "__main__":
    main()

"""A whole install cycle under Airflow (auto approval) on a large scenario, figures per stage.

Runs patch_cycle with `airflow dags test` in a CycleEnvironment (include/cycle.py: the sandbox serving the
scenario, a fresh Airflow home), as `make cycle` does, then the same on the default scenario for the wall time
comparison. Beside the run, a sampler reads the run's log as it is written and, at every task start and end
(and every second), takes the sandbox's API call counts, the clients' and its runbooks' steps' apart
(GET /_sandbox/calls?invoked_by=client|automation), and the resident memory of the `airflow dags test` process
tree (the sandbox excluded). Per stage of the DAG it prints: wall time, the highest RSS sampled while one of
its tasks ran, task instances, worker-slot seconds (task running time less the time its trigger ran: `airflow
dags test` runs a deferred task's trigger in line), and the DAG's API calls per API per 1,000 instances next
to the minimum the APIs' batch and page limits allow (from the scenario's instance counts, each wave's
results and match's and verify's compliance tables, read from the run's artifacts), then all calls against
the sum of the minimums. Asserts nothing about time.

BENCH_DAG_SCENARIO: the scenario (default large.yaml, 10,000 instances).
BENCH_DAG_BASELINE: the scenario to compare wall time with (default default.yaml; empty to skip).
BENCH_DAG_CLOCK_SPEED: run both scenarios with the simulated clock at this speed (the scenarios' own speed,
1.0 for both shipped ones, unless set): the waves' simulated waits shrink by that factor.
BENCH_DAG_TIMEOUT: seconds a cycle may take (default 1800); past it the run is stopped and the figures of
the tasks that ran so far are printed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.bench.dag_figures import (
    Sample,
    StageFigures,
    WaveRow,
    call_totals,
    parse_time,
    patch_read_minimums,
    per_thousand,
    ratio,
    stage_figures,
    task_runs,
    wave_minimums,
)

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "include" / "sandbox" / "scenarios"
SCENARIO = Path(os.environ.get("BENCH_DAG_SCENARIO") or SCENARIOS / "large.yaml")
BASELINE = os.environ.get("BENCH_DAG_BASELINE", str(SCENARIOS / "default.yaml"))
CLOCK_SPEED = os.environ.get("BENCH_DAG_CLOCK_SPEED", "")
TIMEOUT_SECONDS = float(os.environ.get("BENCH_DAG_TIMEOUT") or 1800)
MIB = 1024 * 1024
_BOUNDARY = re.compile(r"^(\S+)\s.*\[DAG TEST\] (starting task_id|end task task_id)")

# Minimum calls per (account, region) of n instances where the documented limits alone decide it.
MINIMUM_RULES: dict[str, dict[str, tuple[str, Callable[[int], int]]]] = {
    "inventory": {
        "sts:GetCallerIdentity": ("1 per (account, region) task", lambda n: 1),
        "ec2:DescribeInstances": ("1,000 instances per page", lambda n: max(1, math.ceil(n / 1000))),
        "ssm:DescribeInstanceInformation": ("50 instances per page", lambda n: max(1, math.ceil(n / 50))),
    },
    "match": {
        "ssm:SendCommand": ("50 instance ids per call", lambda n: math.ceil(n / 50)),
        "ssm:ListCommandInvocations": ("50 invocations per page", lambda n: math.ceil(n / 50)),
        "ssm:DescribeInstancePatchStates": ("50 instance ids per call", lambda n: math.ceil(n / 50)),
    },
}


class Sampler(threading.Thread):
    """Samples at every task boundary the run's log shows, and every second."""

    def __init__(self, log_path: Path, sandbox_url: str, exclude_pid: int) -> None:
        super().__init__(daemon=True)
        self.log_path, self.url, self.exclude_pid = log_path, sandbox_url, exclude_pid
        self.samples: list[Sample] = []
        self._halt = threading.Event()  # not _stop: threading.Thread has its own

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self._take(time.time())

    def run(self) -> None:
        offset, last_periodic = 0, 0.0
        while not self._halt.wait(0.1):
            if self.log_path.exists():
                with self.log_path.open("rb") as log:
                    log.seek(offset)
                    chunk = log.read()
                # Only whole lines: a line still being written is read next round.
                whole = chunk[: chunk.rfind(b"\n") + 1]
                offset += len(whole)
                for line in whole.decode(errors="replace").splitlines():
                    boundary = _BOUNDARY.match(line)
                    if boundary:
                        self._take(parse_time(boundary.group(1)))
            if time.time() - last_periodic >= 1.0:
                last_periodic = time.time()
                self._take(last_periodic)

    def _take(self, at: float) -> None:
        try:
            calls, automation = self._calls("client"), self._calls("automation")
        except OSError:
            return
        self.samples.append(Sample(at, self._rss(), calls, automation))

    def _calls(self, invoked_by: str) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_sandbox/calls?invoked_by={invoked_by}", timeout=30) as response:
            return {str(k): int(v) for k, v in json.load(response).items()}

    def _rss(self) -> int:
        total = 0
        excluded = {self.exclude_pid}
        for child in psutil.Process().children(recursive=True):
            try:
                if child.pid in excluded or child.ppid() in excluded:
                    excluded.add(child.pid)
                    continue
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total


@dataclass
class CycleRun:
    scenario: str
    instances: int
    regions: list[tuple[str, str, int]]  # (account, region, instances)
    outcome: str
    wall_seconds: float
    stages: list[StageFigures]
    log_path: Path
    waves: dict[str, list[WaveRow]]  # "wave N" -> its instances' outcomes, from the run's artifacts
    # "match" / "verify" -> each target's instances' outstanding patch counts, from the run's artifacts
    outstanding: dict[str, list[list[int]]] = field(default_factory=dict)


def run_cycle(scenario: Path, out_dir: Path) -> CycleRun:
    """One install cycle with auto approval on the scenario, measured."""
    from include import cycle

    cycle.CYCLE_TIMEOUT_SECONDS = TIMEOUT_SECONDS
    with cycle.CycleEnvironment(scenario.resolve(), out_dir) as environment:
        log_path = environment.paths.log_dir / "dags-test-1-patch_cycle.log"
        sampler = Sampler(log_path, environment.url, environment._services[0].process.pid)
        sampler.start()
        started = time.monotonic()
        outcome = "FAILED"
        try:
            result = environment.run_cycle("install", {"approval_mode": "auto"})
            outcome = "succeeded" if result.succeeded else f"FAILED (see {log_path})"
        except subprocess.TimeoutExpired:
            outcome = f"STOPPED after {TIMEOUT_SECONDS:.0f} s (BENCH_DAG_TIMEOUT): the tasks that ran so far"
        finally:
            wall = time.monotonic() - started
            sampler.stop()
        try:
            waves, outstanding = wave_rows(environment.url), outstanding_patches(environment.url)
        except Exception as error:  # the figures of a long run are printed whatever this finds
            print(f"  could not read the waves' results from the run's artifacts: {error!r}")
            waves, outstanding = {}, {}
        loaded = environment.loaded
    regions = [
        (account.id, region.name, sum(group.count for group in region.instance_groups))
        for account in loaded.accounts
        for region in account.regions
    ]
    runs = task_runs(log_path.read_text(errors="replace").splitlines())
    return CycleRun(
        loaded.name,
        loaded.instance_count,
        regions,
        outcome,
        wall,
        stage_figures(runs, sampler.samples),
        log_path,
        waves,
        outstanding,
    )


def _artifact_tables(url: str) -> tuple[list[str], Callable[[str], Any]]:
    """The keys of patch_cycle's artifacts in the sandbox's S3, and a reader of one parquet table."""
    import io

    import pandas as pd

    from include import cycle

    s3 = cycle.sandbox_s3(url)
    keys = [
        str(obj["Key"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cycle.ARTIFACT_BUCKET, Prefix="patch_cycle/")
        for obj in page.get("Contents", [])
    ]

    def table(key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(s3.get_object(Bucket=cycle.ARTIFACT_BUCKET, Key=key)["Body"].read()))

    return keys, table


def outstanding_patches(url: str) -> dict[str, list[list[int]]]:
    """Per stage (match, verify), each target's instances' missing + failed + pending-reboot patch counts, from
    their compliance tables ({target}.compliance.parquet)."""
    keys, table = _artifact_tables(url)
    found: dict[str, list[list[int]]] = {}
    for key in keys:
        stage = re.search(r"/(match|verify)/[^/]+\.compliance\.parquet$", key)
        if stage:
            frame = table(key)
            counts = frame["missing"] + frame["failed"] + frame["installed_pending_reboot"]
            found.setdefault(stage.group(1), []).append([int(n) for n in counts])
    return found


def wave_rows(url: str) -> dict[str, list[WaveRow]]:
    """Each wave's instances as its results table ended, read from the run's artifacts in the sandbox's S3."""
    keys, table = _artifact_tables(url)

    plans = [key for key in keys if key.endswith("/install/waves.parquet")]
    if not plans:
        return {}
    plan = table(plans[-1])
    profile_of = dict(zip(plan["resource_id"], plan["profile_id"], strict=True))
    found: dict[str, list[WaveRow]] = {}
    for key in keys:
        wave = re.search(r"/waves/wave_(\d+)\.results\.parquet$", key)
        if not wave:
            continue
        found[f"wave {wave.group(1)}"] = [
            WaveRow(
                str(row.account_id),
                str(row.region),
                str(profile_of.get(row.resource_id, "")),
                str(row.snapshot),
                bool(row.command_id),
                str(row.validation),
                str(row.rollback),
            )
            for row in table(key).itertuples()
        ]
    return found


def minimums(run: CycleRun, stage: str) -> dict[str, tuple[str, int]]:
    """API -> (basis, minimum) for a stage: from the scenario's instance counts, or a wave's outcomes."""
    if stage in run.waves:
        return wave_minimums(run.waves[stage])
    found = {
        api: (basis, sum(rule(n) for _, _, n in run.regions))
        for api, (basis, rule) in MINIMUM_RULES.get(stage, {}).items()
    }
    outstanding = getattr(run, "outstanding", {})  # a run kept before it was measured has none
    if stage in outstanding:
        found.update(patch_read_minimums(stage, outstanding[stage]))
    return found


def _print_run(run: CycleRun) -> None:
    print(
        f"whole install cycle on scenario {run.scenario!r}: {run.instances} instances in {len(run.regions)} "
        f"(account, region) targets, `airflow dags test`, auto approval: "
        f"{run.outcome}, {run.wall_seconds:.0f} s"
    )
    header = (
        f"  {'stage':<12} {'tasks':>5} {'wall s':>8} {'slot s':>8} {'deferred s':>10} {'peak RSS MiB':>12} "
        f"{'AWS calls':>9} {'/1k inst':>9}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for stage in run.stages:
        calls = sum(stage.calls.values())
        print(
            f"  {stage.stage:<12} {stage.task_instances:>5} {stage.wall_seconds:>8.1f} {stage.slot_seconds:>8.1f} "
            f"{stage.deferred_seconds:>10.1f} {stage.peak_rss_bytes / MIB:>12.0f} {calls:>9} "
            f"{per_thousand(calls, run.instances):>9.1f}"
        )
    tasks = sum(s.task_instances for s in run.stages)
    slot = sum(s.slot_seconds for s in run.stages)
    print(f"  {'all':<12} {tasks:>5} {'':>8} {slot:>8.1f}")
    print("  peak RSS: the `airflow dags test` process tree (tasks run in it one at a time), sampled")
    print("  AWS calls the DAG made (its tasks and triggers; the calls its runbooks' steps make inside AWS, on")
    print("  AWS's side, are counted apart), per API per 1,000 instances, next to the minimum the documented batch")
    print("  and page limits allow: from the scenario's instance counts (inventory, match) or from each wave's")
    print("  outcomes (how many instances it snapshotted, sent, validated, rolled back; a trigger's polls at best")
    print("  look once at each execution or command when it is final)")
    print(f"    {'stage':<12} {'API':<42} {'calls':>7} {'/1k':>8} {'min':>6} {'min/1k':>7} {'ratio':>7}  basis")
    lows = {stage.stage: minimums(run, stage.stage) for stage in run.stages}
    for stage in run.stages:
        rules = lows[stage.stage]
        for api in sorted(set(stage.calls) | set(rules)):
            got = stage.calls.get(api, 0)
            basis, low = rules.get(api, ("", None))
            low_text = f"{low:>6} {per_thousand(low, run.instances):>7.1f}" if low is not None else f"{'-':>6} {'-':>7}"
            print(
                f"    {stage.stage:<12} {api:<42} {got:>7} {per_thousand(got, run.instances):>8.1f} {low_text} "
                f"{ratio(got, low):>7}  {basis}"
            )
        inside = sum(stage.automation_calls.values())
        if inside:
            top = ", ".join(f"{api} {n}" for api, n in stage.automation_calls.most_common(3))
            print(f"    {stage.stage:<12} {'(its runbooks inside AWS, not counted)':<42} {inside:>7}  {top}")
    totals = call_totals(run.stages, lows)
    print(
        f"    {'all stages':<12} {'APIs with a minimum':<42} {totals.with_minimum:>7} "
        f"{per_thousand(totals.with_minimum, run.instances):>8.1f} {totals.minimum:>6} "
        f"{per_thousand(totals.minimum, run.instances):>7.1f} {ratio(totals.with_minimum, totals.minimum):>7}"
    )
    print(
        f"    {'all stages':<12} {'every API (artifact I/O included)':<42} {totals.every:>7} "
        f"{per_thousand(totals.every, run.instances):>8.1f} {totals.minimum:>6} "
        f"{per_thousand(totals.minimum, run.instances):>7.1f} {ratio(totals.every, totals.minimum):>7}  "
        "target: within 1.5x"
    )


def _at_clock_speed(scenario: Path, out_dir: Path) -> Path:
    """A copy of the scenario with its simulated clock at BENCH_DAG_CLOCK_SPEED."""
    import yaml

    document = yaml.safe_load(scenario.read_text())
    document.setdefault("clock", {})["speed"] = float(CLOCK_SPEED)
    copy = out_dir / scenario.name
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy


def main() -> None:
    runs: list[CycleRun] = []
    scenarios = [SCENARIO] + ([Path(BASELINE)] if BASELINE else [])
    for scenario in scenarios:
        out = Path(tempfile.mkdtemp(prefix="patchcycle-bench-dag-"))
        run = run_cycle(_at_clock_speed(scenario, out) if CLOCK_SPEED else scenario, out)
        with (out / "figures.pickle").open("wb") as kept:  # to print again without running again
            pickle.dump(run, kept)
        _print_run(run)
        runs.append(run)
        if run.outcome == "succeeded":
            shutil.rmtree(out, ignore_errors=True)
        else:
            print(f"  the run's logs are kept in {out}")
        print()
    if len(runs) == 2:
        large, small = runs
        print(
            f"wall time: {large.wall_seconds:.0f} s for {large.instances} instances against "
            f"{small.wall_seconds:.0f} s for {small.instances} ({large.wall_seconds / small.wall_seconds:.2f}x; "
            "target within 2x)"
        )
        print(
            f"task instances: {sum(s.task_instances for s in large.stages)} against "
            f"{sum(s.task_instances for s in small.stages)} (target: the same, whatever the fleet size)"
        )


if __name__ == "__main__":
    main()

"""Per-stage figures of one `airflow dags test` run, from its log and the samples taken beside it.

Pure: no Airflow, no AWS. `airflow dags test` runs one task instance at a time in its own process and runs a
deferred task's trigger in line, logging "[DAG TEST] starting task_id=.. map_index=..", "running trigger in
line", "Trigger completed" and "end task ..". From those lines: each task instance's running time with its
deferred (trigger) time taken out, grouped by stage of the patch_cycle DAG.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# patch_cycle's tasks by stage, in the DAG's order; a wave_N task is its own stage ("wave N").
STAGES: dict[str, tuple[str, ...]] = {
    "validate": ("validate_params",),
    "inventory": ("inventory",),
    "match": ("match",),
    "plan": ("install_mode", "plan_install"),
    "staging": (
        "create_staging",
        "patch_staging",
        "check_staging",
        "delete_staging",
        "register_runbooks",
        "create_rds_staging",
        "rehearse_rds",
        "delete_rds_staging",
    ),
    "images": ("bake_images", "prove_images"),  # the immutable path: skipped unless its groups are in the plan
    "approval": ("approve_production",),
    "rds rollout": ("rds_rollout",),
    "refresh": ("refresh_groups", "verify_replacements"),
    "verify": ("verify",),
    "inspect": ("inspect",),
    "snapshots": ("expire_snapshots",),
    "config": ("config",),
    "report": ("report",),
    "publish": ("publish_findings", "publish_metrics"),
    "conclude": ("conclude",),
}
_STAGE_OF = {task_id: stage for stage, task_ids in STAGES.items() for task_id in task_ids}
_WAVE = re.compile(r"^wave_(\d+)$")

_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)\s.*?\[DAG TEST\] (?P<what>.*)$")
_START = re.compile(r"^starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_END = re.compile(r"^end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")


def stage_of(task_id: str) -> str:
    """The stage a patch_cycle task belongs to; a task the table does not know is its own stage."""
    wave = _WAVE.match(task_id)
    if wave:
        return f"wave {wave.group(1)}"
    return _STAGE_OF.get(task_id, task_id)


def stage_order(stage: str) -> tuple[int, int, str]:
    """Sort key: the DAG's order, waves between approval and the RDS rollout."""
    names = list(STAGES)
    if stage.startswith("wave "):
        return (names.index("approval"), int(stage.split()[1]), stage)
    return (names.index(stage) if stage in names else len(names), 0, stage)


def parse_time(text: str) -> float:
    """Seconds since the epoch of a log timestamp such as 2026-12-07T14:01:35.053944Z."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class TaskRun:
    """One task instance as `airflow dags test` ran it."""

    task_id: str
    map_index: int
    started: float
    ended: float | None = None
    deferred_seconds: float = 0.0
    _trigger_started: float | None = None

    @property
    def stage(self) -> str:
        return stage_of(self.task_id)

    @property
    def slot_seconds(self) -> float:
        """Time the task held a worker slot: start to end, less the time its trigger ran."""
        if self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started - self.deferred_seconds)


def task_runs(lines: Iterable[str]) -> list[TaskRun]:
    """Task instances in the order they started, from an `airflow dags test` log."""
    runs: list[TaskRun] = []
    current: TaskRun | None = None
    for line in lines:
        found = _LINE.match(line.strip())
        if not found:
            continue
        at, what = parse_time(found.group("ts")), found.group("what").strip()
        start = _START.match(what)
        if start:
            current = TaskRun(start.group("task"), int(start.group("index")), at)
            runs.append(current)
        elif current is None:
            continue
        elif what.startswith("running trigger in line"):
            current._trigger_started = at
        elif what.startswith("Trigger completed") and current._trigger_started is not None:
            current.deferred_seconds += at - current._trigger_started
            current._trigger_started = None
        elif _END.match(what):
            current.ended = at
    return runs


@dataclass
class StageFigures:
    stage: str
    task_instances: int = 0
    first_start: float = math.inf
    last_end: float = 0.0
    slot_seconds: float = 0.0
    deferred_seconds: float = 0.0
    peak_rss_bytes: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # the DAG's own calls (its tasks' and triggers')
    automation_calls: Counter[str] = field(default_factory=Counter)  # its runbooks' steps', made on AWS's side

    @property
    def wall_seconds(self) -> float:
        return max(0.0, self.last_end - self.first_start) if self.task_instances else 0.0


@dataclass(frozen=True)
class Sample:
    """What was measured at one moment: the tree's RSS and the sandbox's cumulative API call counts, the
    clients' (GET /_sandbox/calls?invoked_by=client) and Automation's steps' (?invoked_by=automation) apart."""

    at: float
    rss_bytes: int
    calls: Mapping[str, int]
    automation_calls: Mapping[str, int] = field(default_factory=dict)


def stage_figures(runs: list[TaskRun], samples: list[Sample]) -> list[StageFigures]:
    """Per stage, in DAG order: task instances, wall time (first start to last end), worker-slot seconds,
    deferred seconds, the highest RSS sampled while one of its tasks ran, and the API calls made between the
    samples bracketing each of its task instances (calls between two tasks count for neither)."""
    by_stage: dict[str, StageFigures] = {}
    ordered = sorted(samples, key=lambda s: s.at)
    for run in runs:
        figures = by_stage.setdefault(run.stage, StageFigures(run.stage))
        figures.task_instances += 1
        figures.first_start = min(figures.first_start, run.started)
        ended = run.ended if run.ended is not None else run.started
        figures.last_end = max(figures.last_end, ended)
        figures.slot_seconds += run.slot_seconds
        figures.deferred_seconds += run.deferred_seconds
        inside = [s for s in ordered if run.started <= s.at <= ended]
        if inside:
            figures.peak_rss_bytes = max(figures.peak_rss_bytes, max(s.rss_bytes for s in inside))
        before = _last_at_or_before(ordered, run.started)
        after = _first_at_or_after(ordered, ended)
        if before is not None and after is not None:
            figures.calls.update(_difference(after.calls, before.calls))
            figures.automation_calls.update(_difference(after.automation_calls, before.automation_calls))
    return sorted(by_stage.values(), key=lambda f: stage_order(f.stage))


def _last_at_or_before(samples: list[Sample], at: float) -> Sample | None:
    earlier = [s for s in samples if s.at <= at]
    return earlier[-1] if earlier else None


def _first_at_or_after(samples: list[Sample], at: float) -> Sample | None:
    later = [s for s in samples if s.at >= at]
    return later[0] if later else None


def _difference(after: Mapping[str, int], before: Mapping[str, int]) -> Counter[str]:
    return Counter({api: n - before.get(api, 0) for api, n in after.items() if n - before.get(api, 0) > 0})


def per_thousand(count: float, instances: int) -> float:
    """A count per 1,000 instances of the fleet."""
    return 1000 * count / instances if instances else 0.0


def ratio(calls: int, minimum: int | None) -> str:
    """calls / minimum as people read it ("1.25x"), or "-" without a minimum."""
    if not minimum:
        return "-"
    return f"{calls / minimum:.2f}x"


# -- the minimum a wave's calls could be --------------------------------------------------------------------

BATCH = 50  # instance ids per SendCommand / StartAutomationExecution; invocations and children per page


@dataclass(frozen=True)
class WaveRow:
    """One instance of a wave as its results table ends (waves/wave_N.results.parquet)."""

    account_id: str
    region: str
    profile_id: str
    snapshot: str  # "" (none taken) | completed | failed
    sent: bool  # an install command was sent to it
    validation: str  # "" (not validated) | passed | failed
    rollback: str  # "" (none) | rolled_back | failed


def wave_minimums(rows: Iterable[WaveRow]) -> dict[str, tuple[str, int]]:
    """API -> (basis, the fewest calls a wave with these outcomes could make). Each runbook phase starts one
    execution per 50 instances of a target, reads its children in one page (50 a page) and, at best, looks at
    it once when it is final; each failed child costs one DescribeAutomationStepExecutions. The install sends
    one command per 50 instances of a (target, patch profile), reads its invocations in one page, and looks at
    it once when it is final."""
    rows = list(rows)

    def per_50(keys: Iterable[tuple[str, ...]]) -> int:
        return sum(math.ceil(n / BATCH) for n in Counter(keys).values())

    def target(row: WaveRow) -> tuple[str, str]:
        return (row.account_id, row.region)

    parents = (
        per_50(target(r) for r in rows if r.snapshot)
        + per_50(target(r) for r in rows if r.validation)
        + per_50(target(r) for r in rows if r.rollback)
    )
    commands = per_50((*target(r), r.profile_id) for r in rows if r.sent)
    failed = sum((r.snapshot == "failed") + (r.validation == "failed") + (r.rollback == "failed") for r in rows)
    executions = "1 per 50 instances of a target, per runbook phase"
    return {
        "ssm:StartAutomationExecution": (executions, parents),
        "ssm:DescribeAutomationExecutions": ("1 page of <= 50 children per execution", parents),
        "ssm:GetAutomationExecution": ("trigger: 1 look per execution once final", parents),
        "ssm:DescribeAutomationStepExecutions": ("1 per failed child execution", failed),
        "ssm:SendCommand": ("1 per 50 instances of a (target, patch profile)", commands),
        "ssm:ListCommandInvocations": ("1 page of <= 50 invocations per command", commands),
        "ssm:ListCommands": ("trigger: 1 look per command once final", commands),
    }


@dataclass(frozen=True)
class CallTotals:
    with_minimum: int  # the calls of the APIs that have a minimum in their stage
    minimum: int  # the sum of those minimums
    every: int  # every call the DAG made, those without a minimum (artifact I/O, ...) included


def call_totals(stages: Iterable[StageFigures], lows: Mapping[str, Mapping[str, tuple[str, int]]]) -> CallTotals:
    """Totals over the stages: lows is stage -> API -> (basis, minimum), as printed beside each API."""
    with_minimum = minimum = every = 0
    for stage in stages:
        rules = lows.get(stage.stage, {})
        every += sum(stage.calls.values())
        for api, (_, low) in rules.items():
            with_minimum += stage.calls.get(api, 0)
            minimum += low
    return CallTotals(with_minimum, minimum, every)


def patch_read_minimums(stage: str, outstanding: Iterable[Iterable[int]]) -> dict[str, tuple[str, int]]:
    """API -> (basis, minimum) of the patch reads of match or verify, from each target's instances' outstanding
    patch counts (missing + failed + installed pending reboot) as the stage recorded them. DescribeInstancePatches
    has no batch form (one instance id a call): match reads the instances with something outstanding, verify
    every instance the waves sent an install to (their patch states after it); verify's DescribeInstancePatchStates
    takes 50 instance ids a call."""
    targets = [list(counts) for counts in outstanding]
    if stage == "match":
        read = sum(1 for counts in targets for n in counts if n > 0)
        return {"ssm:DescribeInstancePatches": ("no batch form: 1 per instance with patches outstanding", read)}
    if stage == "verify":
        return {
            "ssm:DescribeInstancePatchStates": (
                "50 instance ids per call",
                sum(math.ceil(len(counts) / BATCH) for counts in targets),
            ),
            "ssm:DescribeInstancePatches": (
                "no batch form: 1 per instance sent an install",
                sum(len(counts) for counts in targets),
            ),
        }
    return {}

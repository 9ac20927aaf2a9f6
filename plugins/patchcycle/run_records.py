"""The JSON records a run keeps, as typed, frozen dataclasses (their fields are the files' fields).

patchcycle.run_artifacts says where each is kept and checks each one against its class on write and on
read (pydantic, strict: a missing, unknown or mistyped field is an error naming the file and the field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    Any,
    NotRequired,  # pydantic reads TypedDicts from here before Python 3.12
)

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from patchcycle.core.immutable_rollout import GroupRefresh, ReplacementCheck
from patchcycle.core.outcomes import ApprovalRecord
from patchcycle.core.verdicts import ScanFailure
from patchcycle.core.wave_results import WaveRecord

# Every record is a frozen, keyword-only dataclass read strictly: an unknown, missing or mistyped field is an error.
STRICT = ConfigDict(extra="forbid", strict=True)

# The records core reasons about are its own dataclasses (core stays free of pydantic): read as strictly.
for _core_record in (ApprovalRecord, GroupRefresh, ReplacementCheck, ScanFailure, WaveRecord):
    with_config(STRICT)(_core_record)


# ---- every task ----


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class TaskError:
    """Why a task failed, kept where the report finds it (one failed region does not hide the others)."""

    stage: str  # the step that failed: inventory, match, plan_install, staging_patch, wave_1, ...
    error: str  # "<exception type>: <message>"
    at: str  # ISO 8601 UTC
    where: str  # the exception's last line
    aws_conn_id: str = ""  # the target, for a task that works on one
    region: str = ""


# ---- inventory and match ----


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class InventorySummary:
    aws_conn_id: str
    region_name: str
    account_id: str
    resources: int
    in_scope: int
    by_type: dict[str, int]  # resource type -> resources
    patchable_in_scope: int


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class ScanCommands:
    """The Scan commands a match task sent (so its resumed half reads the same ones)."""

    command_ids: list[str]
    instances: list[str]


# ---- staging ----


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class StackRecord:
    """One target's staging stack: what was created, when, and when it was deleted."""

    stack_name: str
    account_id: str
    region: str
    created: bool = False
    created_at: str = ""
    status: str = ""  # the last CloudFormation status seen, or NOT_NEEDED when nothing is staged
    error: str = ""  # why creation failed
    deleted: bool = False
    deleted_at: str = ""
    instances: dict[str, str] = field(default_factory=dict)  # profile id -> staging instance id


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class OnlineWait:
    """When patch_staging began waiting for its instances to come Online in Systems Manager."""

    since: str


class CommandInvocation(TypedDict):
    """One instance's Run Command invocation, as the stages keep it (the fields are SSM's)."""

    Status: str  # Success, Failed, TimedOut, Cancelled, ... or Undeliverable (never reached)
    StatusDetails: NotRequired[str]
    ResponseCode: NotRequired[int]
    Output: NotRequired[str]
    CommandId: NotRequired[str]


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class StagingInstall:
    """The staging install: each instance's invocation, and its pinned patches' states afterwards."""

    install: dict[str, CommandInvocation]
    patches: dict[str, list[dict[str, Any]]]  # instance id -> DescribeInstancePatches items


# ---- approval and waves ----


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class ApprovalRequest:
    """What the approval gate showed and whether staging passed (the auto policy's input)."""

    mode: str
    staging_passed: bool
    body: str


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class SentCommand:
    """One SendCommand of a wave: recorded as soon as it is sent, so a retried wave sends nothing twice."""

    command_id: str
    instance_ids: list[str]


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class RegisteredRunbook:
    """One of the project's runbooks in a target: its default version after registration, and what it took."""

    name: str
    document_version: str
    action: str  # create | update | set_default | unchanged (core.runbooks.registration)
    content_sha256: str


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class StartedAutomation:
    """One StartAutomationExecution of a wave: recorded as soon as it is started, so a retry starts none twice."""

    phase: str  # snapshot | validate | rollback
    runbook: str
    execution_id: str
    instance_ids: list[str]


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class WaveGate:
    """What a wave's gates found before it started: the change calendar and the health alarms."""

    calendar: str = ""  # the change calendar checked ("" when none)
    calendar_state: str = ""  # OPEN or CLOSED at the last look
    waiting_since: str = ""  # when the wave began waiting for a CLOSED calendar
    alarms_in_alarm: list[str] = field(default_factory=list)
    passed: bool = False
    reason: str = ""  # why the wave halted, for people


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class SnapshotRetention:
    """What the snapshot retention found in a target: the project's snapshots of earlier runs it deleted."""

    account_id: str
    cutoff: str  # snapshots started before this were expired
    deleted: list[str]
    kept: int  # the project's snapshots still within retention (or of this run)


# ---- evidence and publishing ----


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class ConfigRuleRef:
    name: str
    arn: str
    id: str
    created: bool
    found: bool


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class ConfigEvaluation:
    requested: bool  # the stage asked Config to evaluate (a new rule evaluates on its own)
    invoked_at: str
    evaluated_at: str


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class ConfigSummary:
    """One target's AWS Config result: evaluated (with the rule and the evaluation) or not_evaluated (why)."""

    aws_conn_id: str
    region_name: str
    account_id: str
    status: str  # evaluated | not_evaluated
    message: str
    recorder: dict[str, Any]
    rule: ConfigRuleRef | None
    evaluation: ConfigEvaluation | None
    counts: dict[str, int]  # compliance type -> instances
    instances: int


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class PublishedFindings:
    """What one target's publish_findings sent to Security Hub, and what was refused."""

    aws_conn_id: str
    region_name: str
    account_id: str
    run_id: str
    mode: str
    counts: dict[str, int]
    calls: dict[str, int]
    failed_imports: list[dict[str, Any]]
    failed_updates: list[dict[str, Any]]
    resolved_ids: list[str]
    reopened_ids: list[str]


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class PublishedMetrics:
    """What one target's publish_metrics put to CloudWatch."""

    aws_conn_id: str
    region_name: str
    account_id: str
    namespace: str
    timestamp: str
    metric_count: int
    calls: int
    fleet: bool  # it also published the fleet-wide metrics
    target_metrics: bool  # it published its own (not when the report could not fully read the target)
    incomplete_stages: list[str]
    dashboard_name: str
    dashboard_targets: list[dict[str, str]]
    dashboard_messages: list[dict[str, Any]]


# ---- the compliance watch ----


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class WatchSummary:
    """One target's watch: what it compared, and the drift it found by kind."""

    aws_conn_id: str
    region_name: str
    account_id: str
    instances_watched: int
    instances_drifted: int
    drift: int
    by_kind: dict[str, int]
    instances: list[str]


@with_config(STRICT)
@dataclass(frozen=True, kw_only=True)
class PublishedDrift:
    """What one target's publish_drift sent to Security Hub and CloudWatch."""

    aws_conn_id: str
    region_name: str
    account_id: str
    imported: int
    new: int
    resolved: int
    reopened: int
    failed: int
    metric_calls: int
    failed_imports: list[dict[str, Any]]
    failed_updates: list[dict[str, Any]]

"""The DAG runs' settings as validated, frozen dataclasses: the one place each param is defined.

Each field is a DAG param: its default, its form in the Airflow UI (title, description, JSON schema) and its
parser live on the field (`setting`). The DAG files derive their `Param`s from these classes
(patchcycle.dag_params), each run's first task validates the params with `from_params` (bad input fails
naming the field, before any AWS call) and hands the whole config on as `as_params()`, a JSON-safe dict that
every later task reads back with `from_params`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Final, Self, TypeVar

from patchcycle.core.cloudwatch_metrics import check_dashboard_name
from patchcycle.core.config_compliance import check_rule_name
from patchcycle.core.immutable import ASG, IMMUTABLE_MODES
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.scope import Scope
from patchcycle.core.verdicts import INSTALL, MODES, SCAN

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# "default" resolves by how the run started: the monthly schedule installs (behind the approval gate),
# a run triggered by hand only scans unless asked to install.
DEFAULT_MODE: Final = "default"
SCHEDULED_RUN_TYPES: Final = frozenset({"scheduled"})
APPROVAL_MODES: Final = ("manual", "auto")
REBOOT_OPTIONS: Final = ("RebootIfNeeded", "NoReboot")
# The DAG has this many production wave tasks: the canary and up to MAX_WAVES - 1 more.
MAX_WAVES: Final = 5
# Inspector's severities, most severe first (the watch's finding_severities choose among them).
FINDING_SEVERITIES: Final = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")
DEFAULT_RULE_NAME: Final = "patchcycle-ec2-managedinstance-patch-compliance"

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_ARTIFACT_ROOT = re.compile(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.+)$")
_INSTANCE_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# An SSM document name or ARN (a change calendar), as GetCalendarState takes it.
_CALENDAR = re.compile(r"^(arn:aws(-cn|-us-gov)?:ssm:[a-z0-9-]+:\d{12}:document/)?[a-zA-Z0-9_.-]{3,128}$")
# An SNS topic ARN (standard or FIFO topic names).
_TOPIC_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
# A CloudWatch alarm name (or name prefix): 1 to 255 characters, no control characters.
_ALARM = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")
ROLLBACK_MODES: Final = ("failed", "none")
_DASHBOARD = "^(patchcycle[A-Za-z0-9_-]*)?$"

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """One (AWS connection, region) the run covers: the unit tasks fan out by."""

    aws_conn_id: str
    region_name: str

    @property
    def key(self) -> str:
        return f"{self.aws_conn_id}.{self.region_name}"

    def as_kwargs(self) -> dict[str, str]:
        return {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name}


# ---- parsers: one per kind of value; each names the field it refuses ----


def parse_targets(name: str, value: Any) -> tuple[Target, ...]:
    """The `targets` param ([{aws_conn_id, regions}]) as (connection, region) targets, in order."""
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{name}: must be a non-empty list of {{aws_conn_id, regions}}")
    targets: list[Target] = []
    for index, entry in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be an object with aws_conn_id and regions")
        unknown = set(entry) - {"aws_conn_id", "regions"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        conn_id = entry.get("aws_conn_id")
        if not isinstance(conn_id, str) or not _CONN_ID.match(conn_id):
            raise ValueError(f"{where}.aws_conn_id: must be an Airflow connection id, got {conn_id!r}")
        regions = entry.get("regions")
        if not isinstance(regions, list | tuple) or not regions:
            raise ValueError(f"{where}.regions: must be a non-empty list of region names")
        for r_index, region in enumerate(regions):
            if not isinstance(region, str) or not _REGION.match(region):
                raise ValueError(f"{where}.regions[{r_index}]: {region!r} is not an AWS region name")
            target = Target(conn_id, region)
            if target in targets:
                raise ValueError(f"{where}.regions[{r_index}]: {conn_id} / {region} is listed twice")
            targets.append(target)
    return tuple(targets)


def dump_targets(targets: tuple[Target, ...]) -> list[dict[str, Any]]:
    """Targets back in the param's form: one entry per run of targets sharing a connection, order kept."""
    entries: list[dict[str, Any]] = []
    for target in targets:
        if entries and entries[-1]["aws_conn_id"] == target.aws_conn_id:
            entries[-1]["regions"].append(target.region_name)
        else:
            entries.append({"aws_conn_id": target.aws_conn_id, "regions": [target.region_name]})
    return entries


def parse_duration(name: str, value: Any) -> float:
    """A positive, finite number (of the unit the param's name gives: seconds, minutes, hours)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ValueError(f"{name}: must be a positive number, got {value!r}")
    return float(value)


def parse_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be a whole number of at least 1, got {value!r}")
    return value


def parse_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    return value


def parse_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{name}: must be one of {list(choices)}, got {value!r}")
        return str(value)

    return parse


def _optional_text(pattern: re.Pattern[str]) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if value == "":
            return ""
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(f"{name}: {value!r} is not valid here (leave it empty for none)")
        return value

    return parse


def _count_or_percent(minimum: int) -> Callable[[str, Any], CountOrPercent]:
    def parse(name: str, value: Any) -> CountOrPercent:
        return CountOrPercent.parse(name, value, minimum=minimum)

    return parse


def parse_artifact_root(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _ARTIFACT_ROOT.match(value):
        raise ValueError(f"{name}: must be s3://bucket[/prefix] or file:///path, got {value!r}")
    return value.rstrip("/")


def parse_scope(name: str, value: Any) -> Scope:
    return Scope.from_params(value)  # its errors name scope.<field>


def parse_wave_percentages(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{name}: must be a non-empty list of percentages that add up to 100, got {value!r}")
    if len(value) > MAX_WAVES - 1:
        raise ValueError(f"{name}: at most {MAX_WAVES - 1} waves follow the canary, got {len(value)}")
    for index, share in enumerate(value):
        if isinstance(share, bool) or not isinstance(share, int) or not 0 < share <= 100:
            raise ValueError(f"{name}[{index}]: must be a whole percentage from 1 to 100, got {share!r}")
    if sum(value) != 100:
        raise ValueError(f"{name}: must add up to 100 (the instances left after the canary), got {sum(value)}")
    return tuple(value)


def parse_percentage(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{name}: must be a whole percentage from 0 to 100, got {value!r}")
    return value


def parse_seconds(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be a whole number of seconds, 0 or more, got {value!r}")
    return value


def parse_severities(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{name}: must be a non-empty list of {list(FINDING_SEVERITIES)}")
    for index, severity in enumerate(value):
        if severity not in FINDING_SEVERITIES:
            raise ValueError(f"{name}[{index}]: must be one of {list(FINDING_SEVERITIES)}, got {severity!r}")
    return tuple(dict.fromkeys(value))


def parse_alarm_names(name: str, value: Any) -> tuple[str, ...]:
    """CloudWatch alarm names or name prefixes (a trailing "*" marks a prefix)."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name}: must be a list of alarm names or prefixes ending in '*', got {value!r}")
    for index, alarm in enumerate(value):
        if not isinstance(alarm, str) or not _ALARM.match(alarm) or alarm == "*":
            raise ValueError(f"{name}[{index}]: {alarm!r} is not an alarm name or a name prefix such as 'web-*'")
    return tuple(dict.fromkeys(value))


def parse_rule_name(name: str, value: Any) -> str:
    try:
        return check_rule_name(value) if isinstance(value, str) else check_rule_name("")
    except ValueError as error:
        raise ValueError(f"{name}: {str(error).removeprefix('rule_name: ')}") from error


def parse_dashboard_name(name: str, value: Any) -> str:
    if value == "":
        return ""  # no dashboard
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string, got {value!r}")
    try:
        return check_dashboard_name(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error


def parse_directory(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be a directory path, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """A value in the param's JSON form."""
    if isinstance(value, CountOrPercent):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# ---- fields that are DAG params ----


@dataclass(frozen=True)
class Setting:
    """How one config field is a DAG param: its form in the UI and how its value is read and written back."""

    title: str
    description: str
    schema: Mapping[str, Any]  # JSON schema keywords for the Airflow form: type, enum, minimum, ...
    parse: Callable[[str, Any], Any]
    dump: Callable[[Any], Any]


def setting(
    default: T,
    parse: Callable[[str, Any], T],
    title: str,
    description: str = "",
    *,
    dump: Callable[[Any], Any] = _plain,
    **schema: Any,
) -> T:
    """A dataclass field that is a DAG param, with its default, UI form and parser."""
    spec = Setting(title, description, schema, parse, dump)
    value: T = field(default=default, metadata={"setting": spec})
    return value


def group(settings_class: type[T]) -> T:
    """A field holding a nested group of settings (flattened into the DAG's params)."""
    value: T = field(default_factory=settings_class, metadata={"group": settings_class})
    return value


class Settings:
    """What every settings dataclass shares: reading the params, writing them back, listing them as params."""

    # The trigger form's section for the params a class defines (a subclass's own fields get its section).
    SECTION: ClassVar[str] = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Validate the params (missing ones take their default); ValueError names the offending field.

        Params the class does not define are ignored, so a base class reads its part of a subclass's params.
        """
        values: dict[str, Any] = {}
        for item in fields(cls):  # type: ignore[arg-type]
            if "group" in item.metadata:
                values[item.name] = item.metadata["group"].from_params(params)
                continue
            spec: Setting = item.metadata["setting"]
            raw = params[item.name] if item.name in params else spec.dump(item.default)
            values[item.name] = spec.parse(item.name, raw)
        return cls(**values)

    def as_params(self) -> dict[str, Any]:
        """The settings as the flat, JSON-safe params dict `from_params` reads back (the XCom form)."""
        params: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if "group" in item.metadata:
                params.update(value.as_params())
            else:
                params[item.name] = item.metadata["setting"].dump(value)
        return params

    @classmethod
    def settings(cls) -> dict[str, tuple[Any, Setting]]:
        """Every param, in field order (groups flattened): name -> (its default in the param's form, its setting)."""
        found: dict[str, tuple[Any, Setting]] = {}
        for item in fields(cls):  # type: ignore[arg-type]
            if "group" in item.metadata:
                found.update(item.metadata["group"].settings())
            else:
                spec: Setting = item.metadata["setting"]
                found[item.name] = (spec.dump(item.default), spec)
        return found

    @classmethod
    def sections(cls) -> dict[str, str]:
        """Every param's section in the trigger form: that of the class that defines (or redefines) it."""
        found: dict[str, str] = {}
        for item in fields(cls):  # type: ignore[arg-type]
            if "group" in item.metadata:
                found.update(item.metadata["group"].sections())
                continue
            owner = next(k for k in cls.__mro__ if item.name in vars(k).get("__annotations__", {}))
            found[item.name] = str(vars(owner).get("SECTION", cls.SECTION))
        return found


# ---- the runs' settings ----

DEFAULT_TARGETS: Final = (Target("aws_default", "us-east-1"), Target("aws_default", "eu-west-1"))
_TARGETS_SCHEMA: Final = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["aws_conn_id", "regions"],
        "additionalProperties": False,
        "properties": {
            "aws_conn_id": {"type": "string", "minLength": 1},
            "regions": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    },
}


def _targets(purpose: str) -> tuple[Target, ...]:
    return setting(
        DEFAULT_TARGETS,
        parse_targets,
        "Targets",
        f"AWS connections (one per account) and the regions to {purpose} in each.",
        dump=dump_targets,
        **_TARGETS_SCHEMA,
    )


def _artifact_root() -> str:
    return setting(
        "s3://patchcycle-artifacts",
        parse_artifact_root,
        "Artifact root",
        "Where each stage writes its tables and the report: s3://bucket[/prefix] or file:///path.",
        type="string",
    )


def _config_rule_name(description: str) -> str:
    return setting(DEFAULT_RULE_NAME, parse_rule_name, "AWS Config rule", description, type="string")


@dataclass(frozen=True, kw_only=True)
class Notifications(Settings):
    """Who is told what happened: an Amazon SNS topic (off when empty)."""

    SECTION = "Notifications"

    notify_topic_arn: str = setting(
        "",
        _optional_text(_TOPIC_ARN),
        "SNS topic",
        "An Amazon SNS topic ARN told when an approval is waiting, when a rollout halts and when the run ends. "
        "Empty: no notifications.",
        type="string",
    )
    notify_conn_id: str = setting(
        "aws_default",
        parse_text,
        "SNS connection",
        "The Airflow connection that publishes to the topic (the topic's account; its region is the topic's).",
        type="string",
    )

    @property
    def topic_region(self) -> str:
        return self.notify_topic_arn.split(":")[3] if self.notify_topic_arn else ""


@dataclass(frozen=True, kw_only=True)
class RunConfig(Settings):
    """What the patch_cycle and patch_compliance_watch runs share: where they look, and where they keep things."""

    SECTION = "Where: accounts, regions and artifacts"

    targets: tuple[Target, ...] = _targets("cover")
    artifact_root: str = _artifact_root()
    artifact_conn_id: str = setting(
        "aws_default",
        parse_text,
        "Artifact store connection",
        "The Airflow connection that reads and writes the artifact root (an s3:// root; unused for file://).",
        type="string",
    )
    config_rule_name: str = _config_rule_name(
        "The EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule to evaluate; created under this name when the "
        "region has none."
    )
    poll_seconds: float = setting(
        30.0,
        parse_duration,
        "Seconds between status polls",
        "How often commands, staging stacks, Inspector rescans and Config evaluations are checked.",
        type="number",
        minimum=1,
    )

    notifications: Notifications = group(Notifications)

    @property
    def poll_interval(self) -> timedelta:
        return timedelta(seconds=self.poll_seconds)


@dataclass(frozen=True, kw_only=True)
class InstallSettings(Settings):
    """How install mode stages, approves and rolls out (the install-only params)."""

    SECTION = "Install: staging, approval and waves"

    approval_mode: str = setting(
        "manual",
        _choice(*APPROVAL_MODES),
        "Approval",
        "manual: a person approves in the UI. auto: approve only if staging passed every check.",
        enum=list(APPROVAL_MODES),
    )
    approval_timeout_hours: float = setting(
        24.0, parse_duration, "Approval timeout (hours)", "No answer: Reject.", type="number", exclusiveMinimum=0
    )
    staging_max_instances: int = setting(
        10,
        parse_count,
        "Staging instances per region (at most)",
        "One per distinct OS, AMI, instance family and patch group; profiles beyond it are skipped.",
        type="integer",
        minimum=1,
    )
    staging_instance_profile: str = setting(
        "",
        _optional_text(_INSTANCE_PROFILE),
        "Staging instance profile",
        "IAM instance profile for staging instances (needs AmazonSSMManagedInstanceCore).",
        type="string",
    )
    staging_subnet_id: str = setting(
        "", _optional_text(_SUBNET), "Staging subnet", "Empty: the default VPC.", type="string"
    )
    staging_timeout_minutes: float = setting(
        30.0,
        parse_duration,
        "Staging instances must be Online in SSM within (minutes)",
        "A staging instance not Online in Systems Manager by then fails staging (and the stack is deleted).",
        type="number",
        exclusiveMinimum=0,
    )
    canary: CountOrPercent = setting(
        CountOrPercent(5, percent=True),
        _count_or_percent(1),
        "Canary wave",
        "A count or a % of the production set.",
        type="string",
    )
    wave_percentages: tuple[int, ...] = setting(
        (25, 25, 50),
        parse_wave_percentages,
        "Waves after the canary (% of the rest, adding up to 100)",
        "Each later wave's share of the instances the canary did not take, in order.",
        type="array",
        items={"type": "integer", "minimum": 1, "maximum": 100},
        minItems=1,
        maxItems=MAX_WAVES - 1,
    )
    halt_threshold: CountOrPercent = setting(
        CountOrPercent(10, percent=True),
        _count_or_percent(0),
        "Halt threshold",
        "A wave with more failed instances than this (a count or a % of the wave) halts the rest.",
        type="string",
    )
    reboot_option: str = setting(
        "RebootIfNeeded",
        _choice(*REBOOT_OPTIONS),
        "Reboot after installing",
        "AWS-RunPatchBaseline's RebootOption: RebootIfNeeded reboots when a patch needs it; NoReboot leaves the "
        "instance pending a reboot.",
        enum=list(REBOOT_OPTIONS),
    )

    @property
    def approval_timeout(self) -> timedelta:
        return timedelta(hours=self.approval_timeout_hours)

    @property
    def staging_timeout(self) -> timedelta:
        return timedelta(minutes=self.staging_timeout_minutes)


@dataclass(frozen=True, kw_only=True)
class RolloutSafety(Settings):
    """The way back and the gates around each production wave (install mode)."""

    SECTION = "Install: snapshots, rollback and gates"

    snapshot: bool = setting(
        True,
        parse_flag,
        "Pre-patch snapshots",
        "Snapshot every EBS volume of a wave's instances before installing (PatchCycle-PrePatchSnapshot); an "
        "instance whose snapshot fails is not patched.",
        type="boolean",
    )
    snapshot_retention_days: int = setting(
        7,
        parse_count,
        "Keep pre-patch snapshots (days)",
        "The cycle deletes its own snapshots of earlier runs once they are older than this (never others).",
        type="integer",
        minimum=1,
    )
    rollback: str = setting(
        "failed",
        _choice(*ROLLBACK_MODES),
        "Rollback",
        "failed: restore the root volume of each instance whose install or validation failed, from its pre-patch "
        "snapshot (PatchCycle-RestoreRootVolume). none: leave them as they are.",
        enum=list(ROLLBACK_MODES),
    )
    change_calendar: str = setting(
        "",
        _optional_text(_CALENDAR),
        "Change calendar",
        "An SSM Change Calendar (name or ARN): a wave starts only while it is OPEN. Empty: none.",
        type="string",
    )
    change_calendar_wait_minutes: float = setting(
        240.0,
        parse_duration,
        "Wait for a closed calendar (minutes)",
        "How long a wave waits (in the triggerer) for a CLOSED change calendar to open; then the rollout halts.",
        type="number",
        exclusiveMinimum=0,
    )
    health_alarms: tuple[str, ...] = setting(
        (),
        parse_alarm_names,
        "Health alarms",
        "CloudWatch alarm names, or name prefixes ending in '*': any of them in ALARM halts the rollout before "
        "the next wave.",
        type="array",
        items={"type": "string", "minLength": 1},
    )
    automation_assume_role: str = setting(
        "",
        _optional_text(_ROLE_ARN),
        "Automation role",
        "The IAM role the PatchCycle-* runbooks act as (AutomationAssumeRole). Empty: the DAGs' own role.",
        type="string",
    )

    def __post_init__(self) -> None:
        if self.rollback != "none" and not self.snapshot:
            raise ValueError(
                f"rollback: {self.rollback!r} restores from the pre-patch snapshots, so it needs snapshot: true "
                "(or set rollback: 'none')"
            )

    @property
    def change_calendar_wait(self) -> timedelta:
        return timedelta(minutes=self.change_calendar_wait_minutes)


# RDS pending maintenance actions the cycle knows (DescribePendingMaintenanceActions' Action values).
RDS_ACTIONS: Final = ("system-update", "os-upgrade", "db-upgrade", "hardware-maintenance", "ca-certificate-rotation")
RDS_APPLY_MODES: Final = ("immediate", "next-maintenance")


def parse_rds_actions(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{name}: must be a list of maintenance actions from {list(RDS_ACTIONS)}, got {value!r}")
    unknown = [action for action in value if action not in RDS_ACTIONS]
    if unknown:
        raise ValueError(f"{name}: unknown maintenance action(s) {unknown}; known: {list(RDS_ACTIONS)}")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True, kw_only=True)
class RdsSettings(Settings):
    """Which RDS pending maintenance actions install mode applies, and when (docs/rds.md)."""

    SECTION = "Install: RDS maintenance"

    rds_actions: tuple[str, ...] = setting(
        ("system-update", "os-upgrade"),
        parse_rds_actions,
        "RDS maintenance actions to apply",
        "The pending maintenance action types the cycle rehearses and applies; others stay pending (reported). "
        "Empty: no database is touched.",
        type="array",
        items={"type": "string", "enum": list(RDS_ACTIONS)},
        uniqueItems=True,
    )
    rds_apply: str = setting(
        "immediate",
        _choice(*RDS_APPLY_MODES),
        "Apply RDS maintenance",
        "immediate: apply during the wave and wait until done. next-maintenance: opt in for each database's next "
        "maintenance window (the waves schedule it; it is reported as scheduled).",
        enum=list(RDS_APPLY_MODES),
    )
    rds_timeout_minutes: float = setting(
        120.0,
        parse_duration,
        "RDS wait limit (minutes)",
        "How long a staging copy or a wave waits (in the triggerer) for databases to be available again; a "
        "database still busy then counts as failed.",
        type="number",
        exclusiveMinimum=0,
    )

    rds_connect_check: bool = setting(
        True,
        parse_flag,
        "Connect to RDS staging copies",
        "After the rehearsal, open a TCP connection from the worker to each staging copy's endpoint (no login); a "
        "copy that refuses it fails its rehearsal. Turn off where the workers have no route to the databases.",
        type="boolean",
    )

    @property
    def rds_timeout(self) -> timedelta:
        return timedelta(minutes=self.rds_timeout_minutes)


@dataclass(frozen=True, kw_only=True)
class ImmutableSettings(Settings):
    """The immutable path of Auto Scaling groups: bake a patched AMI, stage it, refresh the groups (install mode)."""

    SECTION = "Install: Auto Scaling groups (bake and instance refresh)"

    immutable: str = setting(
        ASG,
        _choice(*IMMUTABLE_MODES),
        "Auto Scaling group instances",
        "asg: never patch them in place; bake a patched AMI of each group's launch AMI, stage it, and replace the "
        "instances with an instance refresh that rolls back on its own. off: patch them in place like the rest.",
        enum=list(IMMUTABLE_MODES),
    )
    refresh_min_healthy_percentage: int = setting(
        90,
        parse_percentage,
        "Instance refresh: minimum healthy (%)",
        "The share of each group that stays InService while the refresh replaces instances (MinHealthyPercentage).",
        type="integer",
        minimum=0,
        maximum=100,
    )
    refresh_instance_warmup_seconds: int = setting(
        300,
        parse_seconds,
        "Instance refresh: warm-up (seconds)",
        "How long a new instance warms up before the refresh counts it healthy and moves on (InstanceWarmup).",
        type="integer",
        minimum=0,
    )
    refresh_checkpoint_delay_seconds: int = setting(
        300,
        parse_seconds,
        "Instance refresh: pause at each checkpoint (seconds)",
        "How long the refresh waits at the end of each wave's share (the canary first) for the health alarms to "
        "speak (CheckpointDelay).",
        type="integer",
        minimum=0,
    )
    refresh_bake_time_seconds: int = setting(
        0,
        parse_seconds,
        "Instance refresh: alarm window after the last batch (seconds)",
        "How long a refresh keeps watching the health alarms after its last batch, rolling back if one fires, "
        "before it succeeds (BakeTime); 0: it succeeds as the last batch is healthy.",
        type="integer",
        minimum=0,
    )
    refresh_timeout_minutes: float = setting(
        480.0,
        parse_duration,
        "Instance refresh time limit per group (minutes)",
        "A refresh still running after this is cancelled, and the remaining groups are not refreshed.",
        type="number",
        exclusiveMinimum=0,
    )

    @property
    def refresh_timeout(self) -> timedelta:
        return timedelta(minutes=self.refresh_timeout_minutes)


@dataclass(frozen=True, kw_only=True)
class CycleConfig(RunConfig):
    """The patch_cycle run's settings. `mode` is resolved ("scan" or "install") once validated."""

    SECTION = "The cycle"

    mode: str = setting(
        DEFAULT_MODE,
        _choice(DEFAULT_MODE, *MODES),
        "Mode",
        "scan: report what is missing, install nothing. install: stage, approve, roll out in waves, verify. "
        "default: install on the monthly schedule, scan on a run triggered by hand.",
        enum=[DEFAULT_MODE, *MODES],
    )
    install: InstallSettings = group(InstallSettings)
    safety: RolloutSafety = group(RolloutSafety)
    rds: RdsSettings = group(RdsSettings)
    auto_scaling: ImmutableSettings = group(ImmutableSettings)
    scope: Scope = setting(
        Scope(),
        parse_scope,
        "Scope",
        "include_tags: {tag: [values]}, every tag must match; exclude_ids: [ids]; exclude_tags: {tag: [values]}.",
        dump=Scope.as_params,
        type="object",
    )
    max_concurrency: CountOrPercent = setting(
        CountOrPercent(50, percent=False),
        _count_or_percent(1),
        "SSM MaxConcurrency",
        "How many instances run a command or a wave's runbook at once: a count or a %.",
        type="string",
    )
    max_errors: CountOrPercent = setting(
        CountOrPercent(10, percent=True),
        _count_or_percent(0),
        "SSM MaxErrors",
        "Errors after which a scan or install command stops reaching more instances: a count or a %.",
        type="string",
    )
    command_timeout_minutes: float = setting(
        60.0,
        parse_duration,
        "Command time limit (minutes)",
        "Commands still running after this are cancelled; their instances are reported as failed.",
        type="number",
        exclusiveMinimum=0,
    )
    inspector_wait_minutes: float = setting(
        120.0,
        parse_duration,
        "Inspector rescan wait (minutes)",
        "How long inspect waits (in the triggerer) for Amazon Inspector to rescan each patched instance; CVEs of "
        "an instance not rescanned by then are UNVERIFIED.",
        type="number",
        exclusiveMinimum=0,
    )
    dashboard_name: str = setting(
        "patchcycle",
        parse_dashboard_name,
        "CloudWatch dashboard",
        "The KPI dashboard each target's account gets (must start with patchcycle); empty: none.",
        type="string",
        pattern=_DASHBOARD,
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any], run_type: str = "manual") -> Self:
        """Validate the run's params; ValueError names the offending field.

        run_type (the DAG run's) resolves mode "default": install for scheduled runs, scan otherwise.
        """
        mode = params.get("mode", DEFAULT_MODE)
        if mode == DEFAULT_MODE:
            mode = INSTALL if run_type in SCHEDULED_RUN_TYPES else SCAN
        config = super().from_params({**params, "mode": mode})
        if config.mode == INSTALL and not config.artifact_root.startswith("s3://"):
            # AWS-RunPatchBaseline reads the pinned patch list (InstallOverrideList) from S3.
            raise ValueError(
                f"artifact_root: install mode needs an s3:// artifact root, because instances read the "
                f"pinned patch list from it; got {config.artifact_root!r}"
            )
        return config

    @property
    def installs(self) -> bool:
        return self.mode == INSTALL

    @property
    def command_timeout(self) -> timedelta:
        return timedelta(minutes=self.command_timeout_minutes)

    @property
    def inspector_wait(self) -> timedelta:
        return timedelta(minutes=self.inspector_wait_minutes)


@dataclass(frozen=True, kw_only=True)
class WatchConfig(RunConfig):
    """The patch_compliance_watch run's settings."""

    SECTION = "The watch"

    targets: tuple[Target, ...] = _targets("watch")
    finding_severities: tuple[str, ...] = setting(
        ("CRITICAL",),
        parse_severities,
        "Finding severities",
        "Active Inspector findings of these severities that the cycle did not know count as drift.",
        type="array",
        items={"enum": list(FINDING_SEVERITIES)},
        minItems=1,
    )
    config_rule_name: str = _config_rule_name(
        "The EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK rule (created when missing)."
    )
    poll_seconds: float = setting(
        15.0,
        parse_duration,
        "Seconds between AWS Config status polls",
        "How often the watch checks the Config rule's evaluation.",
        type="number",
        minimum=1,
    )


@dataclass(frozen=True, kw_only=True)
class BaselinesConfig(Settings):
    """The patch_baselines run's settings."""

    SECTION = "Baselines"

    targets: tuple[Target, ...] = _targets("apply the baselines")
    baselines_dir: str = setting(
        str(REPO_ROOT / "include" / "baselines"),
        parse_directory,
        "Baselines directory",
        "The *.yaml baseline files (a relative path is taken from the repository root).",
        type="string",
    )
    dry_run: bool = setting(True, parse_flag, "Dry run", "Log the diff and change nothing.", type="boolean")
    prune: bool = setting(
        False,
        parse_flag,
        "Prune",
        "Delete managed baselines no file declares any more (never an unmanaged one).",
        type="boolean",
    )

    @property
    def directory(self) -> Path:
        """baselines_dir, a relative path taken from the repository root."""
        path = Path(self.baselines_dir).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path

"""Scenario files: the fleet, catalog, baselines, failures and faults the sandbox serves.

A scenario is YAML validated against scenario.schema.json; a bad one raises
ScenarioError naming the file and the offending field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("scenario.schema.json")
SCENARIOS_DIR = Path(__file__).with_name("scenarios")
DEFAULT_SCENARIO = SCENARIOS_DIR / "default.yaml"


class ScenarioError(ValueError):
    """A scenario file that cannot be served, with the field at fault."""


@dataclass(frozen=True)
class Ami:
    ami_id: str
    os: str
    os_version: str
    name: str
    # Every instance launched from an image baked (CreateImage, images.py) from an instance of this AMI fails its
    # health-check scripts: the baked AMI is broken.
    bake_breaks_health_checks: bool = False


@dataclass(frozen=True)
class InstanceGroup:
    name: str
    count: int
    ami: str
    instance_type: str = "t3.medium"
    availability_zones: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    agent: str = "online"
    patched_through: date | None = None
    agent_version: str = "3.3.1142.0"


@dataclass(frozen=True)
class MaintenanceAction:
    action: str
    description: str
    auto_applied_after: date | None = None
    forced_apply: date | None = None


@dataclass(frozen=True)
class RdsInstance:
    id: str
    engine: str
    engine_version: str
    instance_class: str = "db.t3.medium"
    tags: dict[str, str] = field(default_factory=dict)
    pending_maintenance: tuple[MaintenanceAction, ...] = ()
    multi_az: bool = False
    replica_of: str | None = None  # a read replica of this DB instance (same account and region)


@dataclass(frozen=True)
class RdsCluster:
    """An Aurora DB cluster and its member DB instances (the first is the writer). Its pending_maintenance are
    cluster-level actions: DescribePendingMaintenanceActions lists them on the cluster's ARN."""

    id: str
    engine: str  # aurora-mysql | aurora-postgresql
    engine_version: str
    instances: tuple[str, ...]
    instance_class: str = "db.r6g.large"
    tags: dict[str, str] = field(default_factory=dict)
    pending_maintenance: tuple[MaintenanceAction, ...] = ()
    automated_snapshot: bool = True  # False: none yet (a cluster created minutes ago, before its first backup)


@dataclass(frozen=True)
class S3Bucket:
    name: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefreshAlarm:
    """A CloudWatch alarm an instance refresh of its Auto Scaling group sets off: ALARM once the refresh is
    `at_percent` complete, OK again when that refresh ends or has rolled back (autoscaling.py)."""

    name: str
    at_percent: int


@dataclass(frozen=True)
class AutoScalingGroupSpec:
    """An EC2 Auto Scaling group seeded with launch template `<name>` version 1 and `desired` InService instances."""

    name: str
    ami: str
    min: int
    max: int
    desired: int
    instance_type: str = "t3.medium"
    tags: dict[str, str] = field(default_factory=dict)
    patched_through: date | None = None  # the patch state of instances launched from `ami`
    availability_zones: tuple[str, ...] = ()
    alarm: RefreshAlarm | None = None
    rollback_fails: bool = False  # a rollback of a refresh of the group ends RollbackFailed after its first batch
    new_instances_unhealthy: bool = False  # instances a refresh launches never pass the health checks


@dataclass(frozen=True)
class Region:
    name: str
    instance_groups: tuple[InstanceGroup, ...] = ()
    rds_instances: tuple[RdsInstance, ...] = ()
    rds_clusters: tuple[RdsCluster, ...] = ()
    s3_buckets: tuple[S3Bucket, ...] = ()
    auto_scaling_groups: tuple[AutoScalingGroupSpec, ...] = ()


@dataclass(frozen=True)
class Account:
    id: str
    regions: tuple[Region, ...]
    name: str = ""


@dataclass(frozen=True)
class Patch:
    id: str
    os: str
    title: str
    classification: str
    severity: str
    released: date
    cves: tuple[str, ...] = ()
    reboot: bool = False


@dataclass(frozen=True)
class ApprovalRule:
    classification: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    approve_after_days: int = 7
    compliance_level: str = "UNSPECIFIED"


@dataclass(frozen=True)
class Baseline:
    name: str
    os: str
    approval_rules: tuple[ApprovalRule, ...]
    description: str = ""
    patch_groups: tuple[str, ...] = ()
    approved_patches: tuple[str, ...] = ()
    rejected_patches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    group: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    count: int | None = None
    install_fails: tuple[str, ...] = ()
    agent_offline: bool = False
    scan_fails: bool = False
    reboot_required: bool = False
    command_hangs: bool = False
    script_fails: bool = False
    breaks_after_install: bool = False  # health-check scripts fail once an Install installed a patch
    snapshot_fails: bool = False  # its EBS snapshots end in state error
    restore_fails: str = ""  # its root volume replacements end "failed" (YAML true) or "failed-detached" ("detached")


@dataclass(frozen=True)
class Fault:
    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    access_denied: bool = False
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackFailure:
    """A CloudFormation stack whose creation fails: ``resource`` is CREATE_FAILED and the stack rolls back."""

    name_prefix: str
    reason: str
    region: str | None = None  # None: every region
    resource: str | None = None  # logical id; None: the template's first AWS::EC2::Instance

    def matches(self, stack_name: str, region: str) -> bool:
        return stack_name.startswith(self.name_prefix) and self.region in (None, region)


@dataclass(frozen=True)
class UnpatchedFinding:
    """An Inspector finding no catalog patch fixes, on the first `count` instances of a group (all when None)."""

    group: str
    cve: str
    severity: str  # Inspector's: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNTRIAGED
    package: str
    count: int | None = None
    version: str = ""  # the installed (vulnerable) version; "" lets the sandbox pick one


@dataclass(frozen=True)
class InspectorSettings:
    """Amazon Inspector: how long after a patch-state change it rescans, and findings nothing patches."""

    rescan_delay_seconds: float = 300.0
    unpatched_findings: tuple[UnpatchedFinding, ...] = ()


@dataclass(frozen=True)
class ConfigSettings:
    """AWS Config: the configuration recorder per region and how long rule evaluations take."""

    recorder: str = "recording"  # recording | stopped | none
    recorder_by_region: dict[str, str] = field(default_factory=dict)  # region -> recorder state
    recorded_resource_types: tuple[str, ...] = ()  # empty: every supported resource type
    evaluation_seconds: float = 30.0
    periodic_evaluation_minutes: float | None = None  # None: only on demand and on rule changes


@dataclass(frozen=True)
class SecurityHubSettings:
    """AWS Security Hub: enabled in every account and region except `disabled_regions`."""

    enabled: bool = True
    disabled_regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandTimings:
    delivery_seconds: float = 1.0
    scan_seconds: float = 5.0
    install_seconds: float = 20.0
    script_seconds: float = 2.0
    reboot_seconds: float = 10.0


@dataclass(frozen=True)
class EbsTimings:
    """Amazon EBS, in simulated seconds: a snapshot's pending time, and a root volume replacement's two phases."""

    snapshot_seconds: float = 60.0
    restore_pending_seconds: float = 5.0
    restore_in_progress_seconds: float = 20.0


@dataclass(frozen=True)
class RdsMaintenanceFailure:
    """A pending maintenance action that fails when applied (rds_maintenance.py)."""

    db_instance: str | None = None  # exact identifier
    db_instance_prefix: str | None = None  # or every identifier starting with it (e.g. restored rehearsal copies)
    db_cluster: str | None = None  # or an Aurora DB cluster's cluster-level action (exact identifier)
    action: str | None = None  # default: every action
    region: str | None = None  # default: every region
    reason: str = "The maintenance action could not be applied."

    def matches(self, db_instance: str, action: str, region: str, cluster: bool = False) -> bool:
        """db_instance: the DB instance's identifier, or the DB cluster's when `cluster`."""
        name = db_instance.lower()
        if cluster != (self.db_cluster is not None):
            return False  # a DB instance failure never selects a cluster, nor the other way round
        if self.db_cluster is not None and name != self.db_cluster.lower():
            return False
        if self.db_instance is not None and name != self.db_instance.lower():
            return False
        if self.db_instance_prefix is not None and not name.startswith(self.db_instance_prefix.lower()):
            return False
        return (self.action is None or self.action == action) and (self.region is None or self.region == region)


@dataclass(frozen=True)
class RdsSettings:
    """Amazon RDS (rds_maintenance.py), in simulated seconds, and the maintenance actions that fail."""

    maintenance_seconds: float = 60.0
    failover_seconds: float = 30.0
    snapshot_seconds: float = 120.0
    restore_seconds: float = 300.0
    delete_seconds: float = 60.0
    fail_maintenance: tuple[RdsMaintenanceFailure, ...] = ()

    def maintenance_failure(
        self, db_instance: str, action: str, region: str, cluster: bool = False
    ) -> RdsMaintenanceFailure | None:
        return next((f for f in self.fail_maintenance if f.matches(db_instance, action, region, cluster)), None)


@dataclass(frozen=True)
class ImageTimings:
    """Baked AMIs (images.py), in simulated seconds: how long CreateImage's image stays pending."""

    create_seconds: float = 30.0


@dataclass(frozen=True)
class CalendarEvent:
    """A change calendar event: absolute UTC times, or seconds relative to the clock's start."""

    start: datetime | None = None
    end: datetime | None = None
    start_after_seconds: int | None = None
    duration_seconds: int | None = None
    summary: str = ""
    rrule: str = ""  # an iCalendar RRULE value, e.g. "FREQ=WEEKLY;BYDAY=SA"

    def resolved_start(self, clock_start: datetime) -> datetime:
        if self.start is not None:
            return self.start
        return clock_start + timedelta(seconds=self.start_after_seconds or 0)

    def resolved_end(self, clock_start: datetime) -> datetime:
        if self.end is not None:
            return self.end
        return self.resolved_start(clock_start) + timedelta(seconds=self.duration_seconds or 0)


@dataclass(frozen=True)
class ChangeCalendarSpec:
    """An SSM Change Calendar the sandbox creates at start-up (change_calendar.py)."""

    name: str
    calendar_type: str  # DEFAULT_OPEN or DEFAULT_CLOSED
    events: tuple[CalendarEvent, ...] = ()
    region: str | None = None  # None: every region of the account
    account: str | None = None  # None: the scenario's first account
    description: str = ""


@dataclass(frozen=True)
class AlarmSpec:
    """A CloudWatch metric alarm the sandbox creates at start-up (alarms.py); with `fires_after_installs` it goes
    to ALARM once that many instances of `group` (and/or carrying `tags`) completed an AWS-RunPatchBaseline Install."""

    name: str
    state: str = "OK"
    region: str | None = None  # None: the group's region, else every region of the account
    account: str | None = None  # None: the group's account, else the scenario's first account
    fires_after_installs: int | None = None
    group: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    accounts: tuple[Account, ...]
    amis: dict[str, Ami]
    description: str = ""
    seed: int = 0
    clock_start: datetime | None = None
    clock_speed: float = 1.0
    builtin_catalog: bool = True
    extra_patches: tuple[Patch, ...] = ()
    baselines: tuple[Baseline, ...] = ()
    failures: tuple[Failure, ...] = ()
    faults: dict[str, Fault] = field(default_factory=dict)
    commands: CommandTimings = CommandTimings()
    fail_stacks: tuple[StackFailure, ...] = ()
    inspector: InspectorSettings = InspectorSettings()
    config: ConfigSettings = ConfigSettings()
    securityhub: SecurityHubSettings = SecurityHubSettings()
    ebs: EbsTimings = EbsTimings()
    images: ImageTimings = ImageTimings()
    rds: RdsSettings = RdsSettings()
    change_calendars: tuple[ChangeCalendarSpec, ...] = ()
    alarms: tuple[AlarmSpec, ...] = ()
    source: str = "<memory>"

    def stack_failure(self, stack_name: str, region: str) -> StackFailure | None:
        """The injected failure of a stack created under this name in this region, if any (first match)."""
        return next((f for f in self.fail_stacks if f.matches(stack_name, region)), None)

    def groups(self) -> list[tuple[Account, Region, InstanceGroup]]:
        """Every instance group with the account and region it lives in."""
        return [
            (account, region, group)
            for account in self.accounts
            for region in account.regions
            for group in region.instance_groups
        ]

    def auto_scaling_groups(self) -> list[tuple[Account, Region, AutoScalingGroupSpec]]:
        """Every Auto Scaling group with the account and region it lives in."""
        return [
            (account, region, group)
            for account in self.accounts
            for region in account.regions
            for group in region.auto_scaling_groups
        ]

    @property
    def instance_count(self) -> int:
        """The instances seeded at start-up: instance groups' and Auto Scaling groups' desired capacity."""
        return sum(group.count for _, _, group in self.groups()) + sum(
            group.desired for _, _, group in self.auto_scaling_groups()
        )


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and build a scenario file; ScenarioError names the field at fault."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"scenario {path}: cannot read it: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {path}: not valid YAML: {exc}") from exc
    return parse_scenario(raw, source=str(path))


def parse_scenario(raw: Any, source: str = "<memory>") -> Scenario:
    """Validate a decoded scenario document against the schema and the cross-field rules."""
    errors = sorted(_validator().iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ScenarioError(f"scenario {source}: {_path(first.absolute_path)}: {first.message}{more}")
    scenario = _build(raw, source)
    _check_references(scenario)
    return scenario


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _build(raw: dict[str, Any], source: str) -> Scenario:
    amis = {
        ami_id: Ami(
            ami_id,
            spec["os"],
            spec.get("os_version", ""),
            spec.get("name", ami_id),
            bake_breaks_health_checks=spec.get("bake_breaks_health_checks", False),
        )
        for ami_id, spec in raw.get("amis", {}).items()
    }
    accounts = tuple(
        Account(
            id=acc["id"],
            name=acc.get("name", ""),
            regions=tuple(_region(name, spec or {}) for name, spec in acc["regions"].items()),
        )
        for acc in raw["accounts"]
    )
    catalog = raw.get("catalog", {})
    clock = raw.get("clock", {})
    start = clock.get("start")
    return Scenario(
        name=raw["name"],
        description=raw.get("description", ""),
        seed=raw.get("seed", 0),
        clock_start=datetime.fromisoformat(start).astimezone(UTC) if start else None,
        clock_speed=float(clock.get("speed", 1.0)),
        amis=amis,
        accounts=accounts,
        builtin_catalog=catalog.get("builtin", True),
        extra_patches=tuple(
            Patch(
                id=p["id"],
                os=p["os"],
                title=p["title"],
                classification=p["classification"],
                severity=p["severity"],
                released=date.fromisoformat(p["released"]),
                cves=tuple(p.get("cves", ())),
                reboot=p.get("reboot", False),
            )
            for p in catalog.get("patches", ())
        ),
        baselines=tuple(
            Baseline(
                name=b["name"],
                os=b["os"],
                description=b.get("description", ""),
                patch_groups=tuple(b.get("patch_groups", ())),
                approved_patches=tuple(b.get("approved_patches", ())),
                rejected_patches=tuple(b.get("rejected_patches", ())),
                approval_rules=tuple(
                    ApprovalRule(
                        classification=tuple(r.get("classification", ())),
                        severity=tuple(r.get("severity", ())),
                        approve_after_days=r.get("approve_after_days", 7),
                        compliance_level=r.get("compliance_level", "UNSPECIFIED"),
                    )
                    for r in b["approval_rules"]
                ),
            )
            for b in raw.get("baselines", ())
        ),
        failures=tuple(_failure(f) for f in raw.get("failures", ())),
        faults={
            key: Fault(
                throttle_rate=spec.get("throttle_rate", 0.0),
                server_error_rate=spec.get("server_error_rate", 0.0),
                access_denied=spec.get("access_denied", False),
                regions=tuple(spec.get("regions", ())),
            )
            for key, spec in raw.get("faults", {}).items()
        },
        commands=CommandTimings(**raw.get("commands", {})),
        ebs=EbsTimings(**raw.get("ebs", {})),
        images=ImageTimings(**raw.get("images", {})),
        rds=_rds(raw.get("rds", {})),
        fail_stacks=tuple(
            StackFailure(
                name_prefix=f["name_prefix"],
                reason=f["reason"],
                region=f.get("region"),
                resource=f.get("resource"),
            )
            for f in raw.get("cloudformation", {}).get("fail_stacks", ())
        ),
        inspector=_inspector(raw.get("inspector", {})),
        config=_config(raw.get("config", {})),
        securityhub=SecurityHubSettings(
            enabled=raw.get("securityhub", {}).get("enabled", True),
            disabled_regions=tuple(raw.get("securityhub", {}).get("disabled_regions", ())),
        ),
        change_calendars=tuple(_change_calendar(c) for c in raw.get("change_calendars", ())),
        alarms=tuple(_alarm(a) for a in raw.get("alarms", ())),
        source=source,
    )


def _failure(spec: dict[str, Any]) -> Failure:
    return Failure(
        group=spec.get("group"),
        tags=dict(spec.get("tags", {})),
        count=spec.get("count"),
        install_fails=tuple(spec.get("install_fails", ())),
        agent_offline=spec.get("agent_offline", False),
        scan_fails=spec.get("scan_fails", False),
        reboot_required=spec.get("reboot_required", False),
        command_hangs=spec.get("command_hangs", False),
        script_fails=spec.get("script_fails", False),
        breaks_after_install=spec.get("breaks_after_install", False),
        snapshot_fails=spec.get("snapshot_fails", False),
        restore_fails={True: "failed", "detached": "failed-detached"}.get(spec.get("restore_fails", False), ""),
    )


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def _change_calendar(spec: dict[str, Any]) -> ChangeCalendarSpec:
    return ChangeCalendarSpec(
        name=spec["name"],
        calendar_type=spec["type"],
        region=spec.get("region"),
        account=spec.get("account"),
        description=spec.get("description", ""),
        events=tuple(
            CalendarEvent(
                start=_time(e.get("start")),
                end=_time(e.get("end")),
                start_after_seconds=e.get("start_after_seconds"),
                duration_seconds=e.get("duration_seconds"),
                summary=e.get("summary", ""),
                rrule=e.get("rrule", ""),
            )
            for e in spec.get("events", ())
        ),
    )


def _alarm(spec: dict[str, Any]) -> AlarmSpec:
    return AlarmSpec(
        name=spec["name"],
        state=spec.get("state", "OK"),
        region=spec.get("region"),
        account=spec.get("account"),
        fires_after_installs=spec.get("fires_after_installs"),
        group=spec.get("group"),
        tags=dict(spec.get("tags", {})),
        description=spec.get("description", ""),
    )


def _inspector(spec: dict[str, Any]) -> InspectorSettings:
    return InspectorSettings(
        rescan_delay_seconds=float(spec.get("rescan_delay_seconds", InspectorSettings.rescan_delay_seconds)),
        unpatched_findings=tuple(
            UnpatchedFinding(
                group=f["group"],
                cve=f["cve"],
                severity=f["severity"],
                package=f["package"],
                count=f.get("count"),
                version=f.get("version", ""),
            )
            for f in spec.get("unpatched_findings", ())
        ),
    )


def _config(spec: dict[str, Any]) -> ConfigSettings:
    periodic = spec.get("periodic_evaluation_minutes")
    return ConfigSettings(
        recorder=spec.get("recorder", ConfigSettings.recorder),
        recorder_by_region=dict(spec.get("regions", {})),
        recorded_resource_types=tuple(spec.get("recorded_resource_types", ())),
        evaluation_seconds=float(spec.get("evaluation_seconds", ConfigSettings.evaluation_seconds)),
        periodic_evaluation_minutes=float(periodic) if periodic is not None else None,
    )


def _rds(spec: dict[str, Any]) -> RdsSettings:
    failures = tuple(RdsMaintenanceFailure(**f) for f in spec.get("fail_maintenance", ()))
    return RdsSettings(**{k: v for k, v in spec.items() if k != "fail_maintenance"}, fail_maintenance=failures)


def _maintenance(spec: dict[str, Any]) -> MaintenanceAction:
    return MaintenanceAction(
        action=spec["action"],
        description=spec["description"],
        auto_applied_after=_day(spec.get("auto_applied_after")),
        forced_apply=_day(spec.get("forced_apply")),
    )


def _region(name: str, spec: dict[str, Any]) -> Region:
    return Region(
        name=name,
        instance_groups=tuple(
            InstanceGroup(
                name=g["name"],
                count=g["count"],
                ami=g["ami"],
                instance_type=g.get("instance_type", "t3.medium"),
                availability_zones=tuple(g.get("availability_zones", (f"{name}a", f"{name}b"))),
                tags=dict(g.get("tags", {})),
                agent=g.get("agent", "online"),
                patched_through=_day(g.get("patched_through")),
                agent_version=g.get("agent_version", "3.3.1142.0"),
            )
            for g in spec.get("instance_groups", ())
        ),
        rds_instances=tuple(
            RdsInstance(
                id=r["id"],
                engine=r["engine"],
                engine_version=r["engine_version"],
                instance_class=r.get("instance_class", "db.t3.medium"),
                tags=dict(r.get("tags", {})),
                pending_maintenance=tuple(_maintenance(m) for m in r.get("pending_maintenance", ())),
                multi_az=r.get("multi_az", False),
                replica_of=r.get("replica_of"),
            )
            for r in spec.get("rds_instances", ())
        ),
        rds_clusters=tuple(
            RdsCluster(
                id=c["id"],
                engine=c["engine"],
                engine_version=c["engine_version"],
                instances=tuple(c["instances"]),
                instance_class=c.get("instance_class", "db.r6g.large"),
                automated_snapshot=bool(c.get("automated_snapshot", True)),
                tags=dict(c.get("tags", {})),
                pending_maintenance=tuple(_maintenance(m) for m in c.get("pending_maintenance", ())),
            )
            for c in spec.get("rds_clusters", ())
        ),
        s3_buckets=tuple(S3Bucket(name=b["name"], tags=dict(b.get("tags", {}))) for b in spec.get("s3_buckets", ())),
        auto_scaling_groups=tuple(_auto_scaling_group(name, g) for g in spec.get("auto_scaling_groups", ())),
    )


def _auto_scaling_group(region: str, spec: dict[str, Any]) -> AutoScalingGroupSpec:
    alarm = spec.get("alarm")
    return AutoScalingGroupSpec(
        name=spec["name"],
        ami=spec["ami"],
        min=spec["min"],
        max=spec["max"],
        desired=spec["desired"],
        instance_type=spec.get("instance_type", "t3.medium"),
        tags=dict(spec.get("tags", {})),
        patched_through=_day(spec.get("patched_through")),
        availability_zones=tuple(spec.get("availability_zones", (f"{region}a", f"{region}b"))),
        alarm=RefreshAlarm(alarm["name"], alarm["at_percent"]) if alarm else None,
        rollback_fails=bool(spec.get("rollback_fails", False)),
        new_instances_unhealthy=bool(spec.get("new_instances_unhealthy", False)),
    )


def _check_references(scenario: Scenario) -> None:
    """Cross-field rules a JSON Schema cannot state."""
    where = f"scenario {scenario.source}"
    seen: set[str] = set()
    account_ids: set[str] = set()
    for a_index, account in enumerate(scenario.accounts):
        if account.id in account_ids:
            raise ScenarioError(f"{where}: accounts[{a_index}].id: account {account.id} is listed twice")
        account_ids.add(account.id)
        for region in account.regions:
            for g_index, group in enumerate(region.instance_groups):
                field_path = f"accounts[{a_index}].regions.{region.name}.instance_groups[{g_index}]"
                if group.name in seen:
                    raise ScenarioError(f"{where}: {field_path}.name: group name {group.name!r} is used twice")
                seen.add(group.name)
                if group.ami not in scenario.amis:
                    raise ScenarioError(f"{where}: {field_path}.ami: {group.ami} is not listed under amis")
                for zone in group.availability_zones:
                    if not zone.startswith(region.name):
                        raise ScenarioError(
                            f"{where}: {field_path}.availability_zones: {zone} is not in region {region.name}"
                        )
    _check_auto_scaling_groups(scenario, where, seen)
    _check_rds(scenario, where)
    for f_index, failure in enumerate(scenario.failures):
        if failure.group is not None and failure.group not in seen:
            raise ScenarioError(f"{where}: failures[{f_index}].group: no instance group is named {failure.group!r}")
    for u_index, unpatched in enumerate(scenario.inspector.unpatched_findings):
        if unpatched.group not in seen:
            field_path = f"inspector.unpatched_findings[{u_index}].group"
            raise ScenarioError(f"{where}: {field_path}: no instance group is named {unpatched.group!r}")
    regions = {region.name for account in scenario.accounts for region in account.regions}
    for name, config_region in (
        *((f"config.regions.{r}", r) for r in scenario.config.recorder_by_region),
        *((f"securityhub.disabled_regions[{i}]", r) for i, r in enumerate(scenario.securityhub.disabled_regions)),
    ):
        if config_region not in regions:
            raise ScenarioError(f"{where}: {name}: {config_region} is not a region of any account")
    for s_index, stack_failure in enumerate(scenario.fail_stacks):
        if stack_failure.region is not None and stack_failure.region not in regions:
            raise ScenarioError(
                f"{where}: cloudformation.fail_stacks[{s_index}].region: "
                f"{stack_failure.region} is not a region of any account"
            )
    _check_calendars_and_alarms(scenario, where)
    names: set[str] = set()
    for b_index, baseline in enumerate(scenario.baselines):
        if baseline.name in names:
            raise ScenarioError(f"{where}: baselines[{b_index}].name: baseline {baseline.name!r} is defined twice")
        names.add(baseline.name)


def _check_rds(scenario: Scenario, where: str) -> None:
    """A read replica names an earlier DB instance of its region, of the same engine, that is no replica itself."""
    for a_index, account in enumerate(scenario.accounts):
        for region in account.regions:
            earlier: dict[str, RdsInstance] = {}
            for d_index, db in enumerate(region.rds_instances):
                field_path = f"accounts[{a_index}].regions.{region.name}.rds_instances[{d_index}]"
                if db.id in earlier:
                    raise ScenarioError(f"{where}: {field_path}.id: DB instance {db.id!r} is listed twice")
                if db.replica_of is not None:
                    source = earlier.get(db.replica_of)
                    if source is None:
                        raise ScenarioError(
                            f"{where}: {field_path}.replica_of: no DB instance {db.replica_of!r} is listed before it"
                        )
                    if source.replica_of is not None:
                        raise ScenarioError(f"{where}: {field_path}.replica_of: {db.replica_of!r} is a replica itself")
                    if (source.engine, source.engine_version) != (db.engine, db.engine_version):
                        raise ScenarioError(
                            f"{where}: {field_path}.engine_version: a read replica has its source's engine and version"
                        )
                earlier[db.id] = db
            clusters: set[str] = set()
            for c_index, cluster in enumerate(region.rds_clusters):
                field_path = f"accounts[{a_index}].regions.{region.name}.rds_clusters[{c_index}]"
                if not cluster.engine.startswith("aurora"):
                    raise ScenarioError(f"{where}: {field_path}.engine: {cluster.engine!r} is not an Aurora engine")
                if cluster.id.lower() in clusters:
                    raise ScenarioError(f"{where}: {field_path}.id: DB cluster {cluster.id!r} is listed twice")
                if not cluster.instances:
                    raise ScenarioError(f"{where}: {field_path}.instances: a DB cluster needs at least one instance")
                for member in cluster.instances:
                    if member in earlier:
                        raise ScenarioError(f"{where}: {field_path}.instances: DB instance {member!r} is listed twice")
                    earlier[member] = RdsInstance(member, cluster.engine, cluster.engine_version)
                clusters.add(cluster.id.lower())
    regions = {region.name for account in scenario.accounts for region in account.regions}
    for f_index, failure in enumerate(scenario.rds.fail_maintenance):
        if failure.region is not None and failure.region not in regions:
            raise ScenarioError(
                f"{where}: rds.fail_maintenance[{f_index}].region: {failure.region} is not a region of any account"
            )


def _check_auto_scaling_groups(scenario: Scenario, where: str, group_names: set[str]) -> None:
    """auto_scaling_groups: names unique in their account and region, as on AWS (one name may be used in two regions),
    and not an instance group's; known AMIs, min <= desired <= max, zones."""
    for a_index, account in enumerate(scenario.accounts):
        for region in account.regions:
            names: set[str] = set()
            for g_index, group in enumerate(region.auto_scaling_groups):
                field_path = f"{where}: accounts[{a_index}].regions.{region.name}.auto_scaling_groups[{g_index}]"
                if group.name in group_names:
                    raise ScenarioError(f"{field_path}.name: {group.name!r} is already an instance group's name")
                if group.name in names:
                    raise ScenarioError(
                        f"{field_path}.name: Auto Scaling group {group.name!r} is defined twice in {region.name}"
                    )
                names.add(group.name)
                if group.ami not in scenario.amis:
                    raise ScenarioError(f"{field_path}.ami: {group.ami} is not listed under amis")
                if group.min > group.max:
                    raise ScenarioError(f"{field_path}.min: {group.min} is greater than max ({group.max})")
                if not group.min <= group.desired <= group.max:
                    raise ScenarioError(
                        f"{field_path}.desired: {group.desired} is not between min ({group.min}) and max ({group.max})"
                    )
                for zone in group.availability_zones:
                    if not zone.startswith(region.name):
                        raise ScenarioError(f"{field_path}.availability_zones: {zone} is not in region {region.name}")


def _check_calendars_and_alarms(scenario: Scenario, where: str) -> None:
    """change_calendars and alarms: known accounts, regions and groups, unique names, events ending after they start."""
    accounts = {account.id: account for account in scenario.accounts}
    group_home = {group.name: (account.id, region.name) for account, region, group in scenario.groups()}
    placed: set[tuple[str, str, str, str]] = set()  # (kind, account, region, name)
    specs: list[tuple[str, int, ChangeCalendarSpec | AlarmSpec]] = [
        *(("change_calendars", i, spec) for i, spec in enumerate(scenario.change_calendars)),
        *(("alarms", i, spec) for i, spec in enumerate(scenario.alarms)),
    ]
    for kind, index, spec in specs:
        path = f"{where}: {kind}[{index}]"
        group = spec.group if isinstance(spec, AlarmSpec) else None
        if group is not None and group not in group_home:
            raise ScenarioError(f"{path}.group: no instance group is named {group!r}")
        home = group_home[group] if group is not None else None
        account_id = spec.account or (home[0] if home else scenario.accounts[0].id)
        if account_id not in accounts:
            raise ScenarioError(f"{path}.account: {account_id} is not an account of the scenario")
        regions = [region.name for region in accounts[account_id].regions]
        if spec.region is not None and spec.region not in regions:
            raise ScenarioError(f"{path}.region: {spec.region} is not a region of account {account_id}")
        if home is not None and (home[0] != account_id or spec.region not in (None, home[1])):
            raise ScenarioError(
                f"{path}.group: group {group!r} lives in {home[0]}/{home[1]}, not in the alarm's region"
            )
        for region in [spec.region] if spec.region else [home[1]] if home else regions:
            if (kind, account_id, region, spec.name) in placed:
                raise ScenarioError(f"{path}.name: {spec.name!r} is defined twice in {account_id}/{region}")
            placed.add((kind, account_id, region, spec.name))
        for e_index, event in enumerate(spec.events if isinstance(spec, ChangeCalendarSpec) else ()):
            if (event.start is None) == (event.start_after_seconds is None) or (event.end is None) == (
                event.duration_seconds is None
            ):
                raise ScenarioError(
                    f"{path}.events[{e_index}]: give one of start and start_after_seconds, "
                    "and one of end and duration_seconds"
                )
            # Absolute and relative times only compare once the clock has started.
            comparable = (event.start is None) == (event.end is None)
            if comparable and event.resolved_end(_EPOCH) <= event.resolved_start(_EPOCH):
                raise ScenarioError(f"{path}.events[{e_index}]: the event must end after it starts")


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

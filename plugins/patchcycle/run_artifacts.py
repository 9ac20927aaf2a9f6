"""The run's data contract: every table and record a DAG run writes, where, and with which schema.

A run keeps its artifacts under {artifact_root}/{dag_id}/{run_id}/{stage}/. Each artifact below names its
stage, its file (a template over the target, the wave, the profile or the step it belongs to), what it holds,
the task that writes it, and its schema: a table's columns and dtypes, a record's class
(patchcycle.run_records), a document's JSON schema. RunArtifacts writes and reads them, checking the schema
both ways, so a task never reads what another wrote under a different shape. Nothing else in the project
spells a stage or a file name (tests/test_run_artifacts.py checks that), and docs/artifacts.md is generated
from this module (`make docs`).
"""

from __future__ import annotations

import io
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import jsonschema
import pandas as pd
from airflow.sdk.exceptions import AirflowFailException
from pydantic import TypeAdapter, ValidationError

from patchcycle.artifacts import ArtifactStore, read_uri, safe_run_id
from patchcycle.config import Target
from patchcycle.core.config_compliance import CONFIG_COLUMNS
from patchcycle.core.drift import DRIFT_COLUMNS, DRIFT_SCHEMA
from patchcycle.core.frames import FrameSchemaError, checked_frame
from patchcycle.core.immutable import BAKE_PLAN_COLUMNS, GROUP_PLAN_COLUMNS
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS, IMAGE_PROOF_COLUMNS, GroupRefresh, ReplacementCheck
from patchcycle.core.inspection import CVE_COLUMNS, RESIDUAL_COLUMNS
from patchcycle.core.inventory import INVENTORY_COLUMNS
from patchcycle.core.outcomes import ApprovalRecord
from patchcycle.core.plan import COMPLIANCE_COLUMNS, PLAN_COLUMNS
from patchcycle.core.rds_plan import RDS_PLAN_COLUMNS, REHEARSAL_COLUMNS
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS, ROLLOUT_COLUMNS
from patchcycle.core.report import REPORT_SCHEMA
from patchcycle.core.scope import SCOPE_COLUMNS
from patchcycle.core.staging import PLANNED_PRODUCTION_COLUMNS, PROFILE_COLUMNS, STAGING_RESULT_COLUMNS
from patchcycle.core.verdicts import ScanFailure
from patchcycle.core.wave_results import WAVE_RESULT_COLUMNS, WaveRecord
from patchcycle.core.waves import WAVE_PLAN_COLUMNS
from patchcycle.run_records import (
    ApprovalRequest,
    ConfigSummary,
    InventorySummary,
    OnlineWait,
    PublishedDrift,
    PublishedFindings,
    PublishedMetrics,
    RegisteredRunbook,
    ScanCommands,
    SentCommand,
    SnapshotRetention,
    StackRecord,
    StagingInstall,
    StartedAutomation,
    TaskError,
    WatchSummary,
    WaveGate,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from patchcycle.config import RunConfig

T = TypeVar("T")
KEYS: Final = ("target", "wave", "profile", "step")


class ArtifactError(AirflowFailException, ValueError):
    """An artifact does not hold what its schema says (the message names the artifact and the field).

    No retry can fix that: the task fails at once."""


class ArtifactMissing(AirflowFailException, FileNotFoundError):
    """An artifact a task needs was never written (the task that writes it failed or did not run).

    No retry can bring it: the task fails at once, and the report lists what is missing."""


@dataclass(frozen=True)
class Keys:
    """What one artifact's file name is made of (its template's placeholders)."""

    target: Target | None = None
    wave: int | None = None
    profile: str | None = None
    step: str | None = None

    def values(self) -> dict[str, str]:
        """The placeholders' values, for those given (a target as <aws_conn_id>.<region>)."""
        given = {"target": self.target.key if self.target else None, "wave": self.wave}
        given |= {"profile": self.profile, "step": self.step}
        return {name: str(value) for name, value in given.items() if value is not None}


@dataclass(frozen=True, kw_only=True, eq=False)
class Artifact(Generic[T]):
    """One kind of file a run keeps: its stage folder, its file name template, and what it holds."""

    stage: str
    name: str  # a template over KEYS, e.g. "{target}.plan.parquet"
    about: str  # what it holds, for people
    written_by: str  # the task(s) that write it

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(part for _, part, _, _ in string.Formatter().parse(self.name) if part)

    @property
    def kind(self) -> str:
        raise NotImplementedError

    def file(
        self,
        *,
        target: Target | None = None,
        wave: int | None = None,
        profile: str | None = None,
        step: str | None = None,
    ) -> str:
        """stage/file of this artifact in a run's folder (e.g. "report/report.json")."""
        return self.path(Keys(target, wave, profile, step))

    def path(self, keys: Keys) -> str:
        """stage/file for these keys; TypeError naming the artifact when a placeholder has no value."""
        values = keys.values()
        missing = [name for name in self.placeholders if name not in values]
        extra = sorted(set(values) - set(self.placeholders))
        if missing or extra:
            raise TypeError(f"{self.stage}/{self.name} takes {list(self.placeholders)}, got {sorted(values)}")
        return f"{self.stage}/{self.name.format(**values)}"

    def encode(self, value: T, where: str) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, where: str) -> T:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True, eq=False)
class Table(Artifact[pd.DataFrame]):
    """A parquet table of exactly `columns` (name -> pandas dtype)."""

    columns: Mapping[str, str]

    @property
    def kind(self) -> str:
        return "table"

    def encode(self, value: pd.DataFrame, where: str) -> bytes:
        buffer = io.BytesIO()
        self._checked(value, where).to_parquet(buffer, index=False)
        return buffer.getvalue()

    def decode(self, data: bytes, where: str) -> pd.DataFrame:
        return self._checked(pd.read_parquet(io.BytesIO(data)), where)

    def _checked(self, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        try:
            return checked_frame(frame, self.columns, where)
        except FrameSchemaError as error:
            raise ArtifactError(str(error)) from error


@dataclass(frozen=True, kw_only=True, eq=False)
class Record(Artifact[T]):
    """A JSON record of a type from patchcycle.run_records (or a mapping of them)."""

    schema: type[T]  # the record's type, e.g. StackRecord or dict[str, str]

    @property
    def kind(self) -> str:
        return "record"

    @cached_property
    def adapter(self) -> TypeAdapter[T]:
        return TypeAdapter(self.schema)

    def encode(self, value: T, where: str) -> bytes:
        data = self.adapter.dump_json(value, indent=2)
        self.decode(data, where)  # what is written must read back
        return data

    def decode(self, data: bytes, where: str) -> T:
        try:
            return self.adapter.validate_json(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(the record)'}: {e['msg']}" for e in error.errors()[:5]
            )
            raise ArtifactError(f"{where}: {problems}") from error


@dataclass(frozen=True, kw_only=True, eq=False)
class Document(Artifact[dict[str, Any]]):
    """A JSON document checked against a JSON schema (the report, the drift report)."""

    schema: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return "document"

    def encode(self, value: dict[str, Any], where: str) -> bytes:
        self._check(value, where)
        return json.dumps(value, indent=2).encode()

    def decode(self, data: bytes, where: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(data)
        self._check(document, where)
        return document

    def _check(self, document: Any, where: str) -> None:
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(self.schema).iter_errors(document))
        if error is not None:
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            raise ArtifactError(f"{where}: {path or '(the document)'}: {error.message}")


@dataclass(frozen=True, kw_only=True, eq=False)
class Text(Artifact[str]):
    """A text file for people or for another program (CSV, HTML, an override list)."""

    @property
    def kind(self) -> str:
        return "text"

    def encode(self, value: str, where: str) -> bytes:
        return value.encode()

    def decode(self, data: bytes, where: str) -> str:
        return data.decode()


# ---- patch_cycle ----

INVENTORY: Final = Table(
    stage="inventory",
    name="{target}.parquet",
    about="every EC2 instance, RDS DB instance and S3 bucket of the target, classified and scoped",
    written_by="inventory",
    columns={**INVENTORY_COLUMNS, **SCOPE_COLUMNS},
)
RDS_PLAN: Final = Table(
    stage="inventory",
    name="{target}.rds_plan.parquet",
    about="the target's RDS pending maintenance actions, as plan rows",
    written_by="inventory",
    columns=PLAN_COLUMNS,
)
INVENTORY_SUMMARY: Final = Record(
    stage="inventory",
    name="{target}.summary.json",
    about="the target's account and resource counts",
    written_by="inventory",
    schema=InventorySummary,
)
SCAN_COMMANDS: Final = Record(
    stage="match",
    name="{target}.commands.json",
    about="the Scan commands sent, and to which instances",
    written_by="match",
    schema=ScanCommands,
)
MATCH_PLAN: Final = Table(
    stage="match",
    name="{target}.plan.parquet",
    about="one row per (resource, outstanding patch or pending maintenance action)",
    written_by="match",
    columns=PLAN_COLUMNS,
)
MATCH_COMPLIANCE: Final = Table(
    stage="match",
    name="{target}.compliance.parquet",
    about="each scanned instance's patch counts and last operation (DescribeInstancePatchStates)",
    written_by="match",
    columns=COMPLIANCE_COLUMNS,
)
SCAN_FAILURES: Final = Record(
    stage="match",
    name="{target}.scan_failures.json",
    about="instance id -> why its scan failed",
    written_by="match",
    schema=dict[str, ScanFailure],
)
PRODUCTION: Final = Table(
    stage="install",
    name="production.parquet",
    about="the production instances to patch, with their pinned patches and staging profile",
    written_by="plan_install",
    columns=PLANNED_PRODUCTION_COLUMNS,
)
PROFILES: Final = Table(
    stage="install",
    name="profiles.parquet",
    about="the staging profiles (OS, AMI, instance family, patch group) and whether each is staged",
    written_by="plan_install",
    columns=PROFILE_COLUMNS,
)
WAVE_PLAN: Final = Table(
    stage="install",
    name="waves.parquet",
    about="each staged production instance's wave (1 = the canary)",
    written_by="plan_install",
    columns=WAVE_PLAN_COLUMNS,
)
BAKE_PLAN: Final = Table(
    stage="install",
    name="bakes.parquet",
    about="the patched AMIs to bake: one per launch AMI and patch list of the Auto Scaling groups, with its patches",
    written_by="plan_install",
    columns=BAKE_PLAN_COLUMNS,
)
GROUP_PLAN: Final = Table(
    stage="install",
    name="groups.parquet",
    about="the Auto Scaling instances by (group, launch template version, AMI), each with the bake for its AMI",
    written_by="plan_install",
    columns=GROUP_PLAN_COLUMNS,
)
OVERRIDE_LIST: Final = Text(
    stage="install",
    name="overrides/{profile}.yaml",
    about="a staged profile's pinned patches as an AWS-RunPatchBaseline InstallOverrideList (instances read it)",
    written_by="plan_install",
)
OVERRIDES: Final = Record(
    stage="install",
    name="overrides.json",
    about="profile id -> the URI of its override list",
    written_by="plan_install",
    schema=dict[str, str],
)
RDS_INSTALL_PLAN: Final = Table(
    stage="install",
    name="rds_plan.parquet",
    about="the RDS DB instances install mode maintains: each applied action, its dates, impact, rehearsal and wave",
    written_by="plan_install",
    columns=RDS_PLAN_COLUMNS,
)
RDS_REHEARSALS: Final = Table(
    stage="install",
    name="rds_rehearsals.parquet",
    about="one staging copy per (account, region, engine, engine version, instance class family) planned",
    written_by="plan_install",
    columns=REHEARSAL_COLUMNS,
)
BAKE_EXECUTIONS: Final = Record(
    stage="immutable",
    name="{target}.bake_executions.json",
    about="bake id -> the PatchCycle-BakeAmi execution started for it",
    written_by="bake_images",
    schema=dict[str, str],
)
BAKE_RESULTS: Final = Table(
    stage="immutable",
    name="{target}.bakes.parquet",
    about="each bake's execution, its status and the baked AMI (or why there is none)",
    written_by="bake_images",
    columns=BAKE_RESULT_COLUMNS,
)
IMAGE_PROOFS: Final = Table(
    stage="immutable",
    name="{target}.image_proofs.parquet",
    about="per baked AMI: the CVEs Amazon Inspector shows closed on the staging instance launched from it",
    written_by="prove_images",
    columns=IMAGE_PROOF_COLUMNS,
)
REFRESHES: Final = Record(
    stage="immutable",
    name="refreshes.json",
    about="<account>/<region>/<group> -> its refresh: version, status, old and new instances, time, API calls",
    written_by="refresh_groups",
    schema=dict[str, GroupRefresh],
)
REPLACEMENT_SCANS: Final = Record(
    stage="immutable",
    name="{target}.replacement_scans.json",
    about="the Patch Manager Scan commands sent to the instances the refreshes launched (command ids)",
    written_by="verify_replacements",
    schema=list[str],
)
REPLACEMENT_CHECKS: Final = Record(
    stage="immutable",
    name="{target}.replacements.json",
    about="instance id -> its check after the refresh that launched it: pinned patches installed, CVEs closed",
    written_by="verify_replacements",
    schema=dict[str, ReplacementCheck],
)
STACK: Final = Record(
    stage="staging",
    name="{target}.stack.json",
    about="the target's staging stack: created, when, its instances, deleted",
    written_by="create_staging, delete_staging",
    schema=StackRecord,
)
ONLINE_WAIT: Final = Record(
    stage="staging",
    name="{target}.online_wait.json",
    about="when patch_staging began waiting for its instances to be Online",
    written_by="patch_staging",
    schema=OnlineWait,
)
STAGING_INSTALL_COMMANDS: Final = Record(
    stage="staging",
    name="{target}.install_commands.json",
    about="profile id -> the install command sent to its staging instance",
    written_by="patch_staging",
    schema=dict[str, str],
)
NOT_ONLINE: Final = Record(
    stage="staging",
    name="{target}.not_online.json",
    about="staging instance id -> why it was never Online in Systems Manager",
    written_by="patch_staging",
    schema=dict[str, str],
)
STAGING_INSTALL: Final = Record(
    stage="staging",
    name="{target}.install.json",
    about="each staging instance's install invocation and its pinned patches' states",
    written_by="patch_staging",
    schema=StagingInstall,
)
STAGING_HEALTH_COMMANDS: Final = Record(
    stage="staging",
    name="{target}.health_commands.json",
    about='"platform.batch" -> the health-check command sent',
    written_by="check_staging",
    schema=dict[str, str],
)
STAGING_RESULTS: Final = Table(
    stage="staging",
    name="{target}.results.parquet",
    about="each staging instance: install, pinned patches, health check, passed or why not",
    written_by="check_staging",
    columns=STAGING_RESULT_COLUMNS,
)
RDS_STAGING_STACK: Final = Record(
    stage="staging",
    name="{target}.rds_stack.json",
    about="the target's RDS staging stack (restored copies): created, when, its DB instances, deleted",
    written_by="create_rds_staging, delete_rds_staging",
    schema=StackRecord,
)
RDS_REHEARSAL_RESULTS: Final = Table(
    stage="staging",
    name="{target}.rds_results.parquet",
    about="each RDS staging copy: restored from which snapshot, the actions applied, its check, passed or why not",
    written_by="rehearse_rds",
    columns=REHEARSAL_RESULT_COLUMNS,
)
APPROVAL_REQUEST: Final = Record(
    stage="approval",
    name="request.json",
    about="what the approval gate showed, and whether staging passed",
    written_by="approve_production",
    schema=ApprovalRequest,
)
APPROVAL_DECISION: Final = Record(
    stage="approval",
    name="decision.json",
    about="the gate's decision, by whom and when",
    written_by="approve_production",
    schema=ApprovalRecord,
)
WAVE: Final = Record(
    stage="waves",
    name="wave_{wave}.json",
    about="one wave: its size, and once done its outcome against the halt threshold",
    written_by="wave_N",
    schema=WaveRecord,
)
WAVE_SENT: Final = Record(
    stage="waves",
    name="wave_{wave}.{target}.sent.json",
    about="the install commands a wave sent in a target, recorded as each is sent",
    written_by="wave_N",
    schema=list[SentCommand],
)
WAVE_GATE: Final = Record(
    stage="waves",
    name="wave_{wave}.gate.json",
    about="what the wave's gates found before it started: the change calendar and the health alarms",
    written_by="wave_N",
    schema=WaveGate,
)
WAVE_AUTOMATIONS: Final = Record(
    stage="waves",
    name="wave_{wave}.{target}.automations.json",
    about="the Automation executions (snapshot, validate, rollback) a wave started in a target, as started",
    written_by="wave_N",
    schema=list[StartedAutomation],
)
WAVE_RESULTS: Final = Table(
    stage="waves",
    name="wave_{wave}.results.parquet",
    about="each instance of a wave: its snapshot, install, validation and rollback, written after each phase",
    written_by="wave_N",
    columns=WAVE_RESULT_COLUMNS,
)
RUNBOOKS: Final = Record(
    stage="automation",
    name="{target}.runbooks.json",
    about="the project's runbooks in a target: their default version and whether registration created, "
    "updated or left them",
    written_by="register_runbooks",
    schema=dict[str, RegisteredRunbook],
)
SNAPSHOT_RETENTION: Final = Record(
    stage="retention",
    name="{target}.json",
    about="the project's pre-patch snapshots of earlier runs that the retention deleted in a target",
    written_by="expire_snapshots",
    schema=SnapshotRetention,
)
RDS_ROLLOUT: Final = Table(
    stage="waves",
    name="rds_rollout.parquet",
    about="each planned RDS DB instance the rollout reached: its wave, actions, outcome, status after",
    written_by="rds_rollout",
    columns=ROLLOUT_COLUMNS,
)
VERIFY_COMPLIANCE: Final = Table(
    stage="verify",
    name="{target}.compliance.parquet",
    about="the patched instances' patch counts after the install",
    written_by="verify",
    columns=COMPLIANCE_COLUMNS,
)
VERIFIED_PATCHES: Final = Record(
    stage="verify",
    name="{target}.patches.json",
    about="instance id -> {patch id: state} after the install (DescribeInstancePatches)",
    written_by="verify",
    schema=dict[str, dict[str, str]],
)
CVES: Final = Table(
    stage="inspect",
    name="{target}.cves.parquet",
    about="each (patched instance, CVE its pinned patches fix) with Amazon Inspector's verdict",
    written_by="inspect",
    columns=CVE_COLUMNS,
)
RESIDUAL: Final = Table(
    stage="inspect",
    name="{target}.residual.parquet",
    about="active critical and high findings on patched instances that the cycle did not target",
    written_by="inspect",
    columns=RESIDUAL_COLUMNS,
)
CONFIG_COMPLIANCE: Final = Table(
    stage="config",
    name="{target}.compliance.parquet",
    about="AWS Config's patch compliance of each managed instance",
    written_by="config",
    columns=CONFIG_COLUMNS,
)
CONFIG_SUMMARY: Final = Record(
    stage="config",
    name="{target}.json",
    about="the AWS Config rule, its evaluation and the counts (or why Config could not evaluate)",
    written_by="config",
    schema=ConfigSummary,
)
REPORT_JSON: Final = Document(
    stage="report",
    name="report.json",
    about="the run report: every in-scope resource's verdict, totals, evidence, outcome and KPIs (docs/report.md)",
    written_by="report",
    schema=REPORT_SCHEMA,
)
REPORT_CSV: Final = Text(
    stage="report",
    name="report.csv",
    about="the report's resources, one line each",
    written_by="report",
)
NEW_INSTANCES_CSV: Final = Text(
    stage="report",
    name="new_instances.csv",
    about="the instances the Auto Scaling groups' refreshes launched, one line each under its group, with their checks",
    written_by="report",
)
REPORT_HTML: Final = Text(
    stage="report",
    name="report.html",
    about="the report as a page for people",
    written_by="report",
)
PUBLISHED_FINDINGS: Final = Record(
    stage="security_hub",
    name="{target}.json",
    about="the Security Hub findings the target's account got: imported, resolved, reopened, refused",
    written_by="publish_findings",
    schema=PublishedFindings,
)
PUBLISHED_METRICS: Final = Record(
    stage="metrics",
    name="{target}.json",
    about="the CloudWatch metrics and dashboard the target's account got",
    written_by="publish_metrics",
    schema=PublishedMetrics,
)
TARGET_ERROR: Final = Record(
    stage="errors",
    name="{step}.{target}.json",
    about="why a task failed on one target",
    written_by="any task that works on one target",
    schema=TaskError,
)
RUN_ERROR: Final = Record(
    stage="errors",
    name="{step}.json",
    about="why a task of the whole run failed",
    written_by="plan_install, wave_N",
    schema=TaskError,
)

# ---- patch_compliance_watch ----

DRIFT: Final = Table(
    stage="watch",
    name="{target}.drift.parquet",
    about="one row per drift found since the cycle",
    written_by="watch",
    columns=DRIFT_COLUMNS,
)
WATCH_SUMMARY: Final = Record(
    stage="watch",
    name="{target}.json",
    about="the instances watched and the drift found, by kind",
    written_by="watch",
    schema=WatchSummary,
)
DRIFT_JSON: Final = Document(
    stage="drift_report",
    name="drift.json",
    about="the watch's report: the cycle compared with, every drift, what could not be read, the outcome",
    written_by="drift_report",
    schema=DRIFT_SCHEMA,
)
DRIFT_CSV: Final = Text(
    stage="drift_report",
    name="drift.csv",
    about="the drift rows, one line each",
    written_by="drift_report",
)
PUBLISHED_DRIFT: Final = Record(
    stage="publish_drift",
    name="{target}.json",
    about="the drift findings and metrics the target's account got",
    written_by="publish_drift",
    schema=PublishedDrift,
)

# Each DAG's artifacts, in the order its tasks write them (the layout docs list them so).
CYCLE_ARTIFACTS: Final[tuple[Artifact[Any], ...]] = (
    INVENTORY,
    RDS_PLAN,
    INVENTORY_SUMMARY,
    SCAN_COMMANDS,
    MATCH_PLAN,
    MATCH_COMPLIANCE,
    SCAN_FAILURES,
    PRODUCTION,
    PROFILES,
    WAVE_PLAN,
    BAKE_PLAN,
    GROUP_PLAN,
    OVERRIDE_LIST,
    OVERRIDES,
    RDS_INSTALL_PLAN,
    RDS_REHEARSALS,
    BAKE_EXECUTIONS,
    BAKE_RESULTS,
    STACK,
    ONLINE_WAIT,
    STAGING_INSTALL_COMMANDS,
    NOT_ONLINE,
    STAGING_INSTALL,
    STAGING_HEALTH_COMMANDS,
    STAGING_RESULTS,
    IMAGE_PROOFS,
    RDS_STAGING_STACK,
    RDS_REHEARSAL_RESULTS,
    APPROVAL_REQUEST,
    APPROVAL_DECISION,
    WAVE,
    RUNBOOKS,
    WAVE_GATE,
    WAVE_AUTOMATIONS,
    WAVE_SENT,
    WAVE_RESULTS,
    RDS_ROLLOUT,
    REFRESHES,
    REPLACEMENT_SCANS,
    REPLACEMENT_CHECKS,
    VERIFY_COMPLIANCE,
    VERIFIED_PATCHES,
    SNAPSHOT_RETENTION,
    CVES,
    RESIDUAL,
    CONFIG_COMPLIANCE,
    CONFIG_SUMMARY,
    REPORT_JSON,
    REPORT_CSV,
    NEW_INSTANCES_CSV,
    REPORT_HTML,
    PUBLISHED_FINDINGS,
    PUBLISHED_METRICS,
    TARGET_ERROR,
    RUN_ERROR,
)
WATCH_ARTIFACTS: Final[tuple[Artifact[Any], ...]] = (
    CONFIG_COMPLIANCE,
    CONFIG_SUMMARY,
    DRIFT,
    WATCH_SUMMARY,
    DRIFT_JSON,
    DRIFT_CSV,
    PUBLISHED_DRIFT,
    TARGET_ERROR,
)
ALL_ARTIFACTS: Final = tuple(dict.fromkeys((*CYCLE_ARTIFACTS, *WATCH_ARTIFACTS)))


# ---- the steps a run's records and `incomplete` parts name ----


class Step:
    """The names failure records and the report's `incomplete` parts give the stages (report.json shows them)."""

    INVENTORY: Final = "inventory"
    MATCH: Final = "match"
    PLAN_INSTALL: Final = "plan_install"
    STAGING: Final = "staging"
    STAGING_PATCH: Final = "staging_patch"
    STAGING_CHECKS: Final = "staging_checks"
    REGISTER_RUNBOOKS: Final = "register_runbooks"
    RDS_STAGING: Final = "rds_staging"
    RDS_ROLLOUT: Final = "rds_rollout"
    BAKE_IMAGES: Final = "bake_images"
    PROVE_IMAGES: Final = "prove_images"
    REFRESH_GROUPS: Final = "refresh_groups"
    VERIFY_REPLACEMENTS: Final = "verify_replacements"
    SNAPSHOT_RETENTION: Final = "expire_snapshots"
    VERIFY: Final = "verify"
    INSPECT: Final = "inspect"
    CONFIG: Final = "config"
    SECURITY_HUB: Final = "security_hub"
    METRICS: Final = "metrics"
    WATCH: Final = "watch"
    PUBLISH_DRIFT: Final = "publish_drift"

    @staticmethod
    def wave(number: int) -> str:
        return f"wave_{number}"


@dataclass
class RunArtifacts:
    """One DAG run's artifacts: write, read and locate them by their contract entry; schemas checked both ways."""

    root: str
    dag_id: str
    run_id: str
    conn_id: str | None = "aws_default"
    _store: ArtifactStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._store = ArtifactStore(self.root, self.dag_id, self.run_id, self.conn_id)

    @classmethod
    def of(cls, config: RunConfig, context: Context) -> RunArtifacts:
        """The artifacts of the run `context` belongs to, where its config keeps them."""
        return cls(config.artifact_root, context["dag"].dag_id, context["run_id"], config.artifact_conn_id)

    @property
    def folder_name(self) -> str:
        """The run's folder under {artifact_root}/{dag_id}/ (its run id, as paths spell it)."""
        return safe_run_id(self.run_id)

    def uri(
        self,
        artifact: Artifact[Any],
        *,
        target: Target | None = None,
        wave: int | None = None,
        profile: str | None = None,
        step: str | None = None,
    ) -> str:
        """The plain URI (s3://bucket/key or file:///path) of an artifact, as AWS and people read it."""
        return self._store.uri(artifact.path(Keys(target, wave, profile, step)))

    def stage_uri(self, artifact: Artifact[Any]) -> str:
        """The URI of the folder that holds an artifact's stage."""
        return self._store.uri(artifact.stage) + "/"

    def exists(
        self,
        artifact: Artifact[Any],
        *,
        target: Target | None = None,
        wave: int | None = None,
        profile: str | None = None,
        step: str | None = None,
    ) -> bool:
        return self._store.exists(artifact.path(Keys(target, wave, profile, step)))

    def write(
        self,
        artifact: Artifact[T],
        value: T,
        *,
        target: Target | None = None,
        wave: int | None = None,
        profile: str | None = None,
        step: str | None = None,
    ) -> str:
        """Write an artifact (ArtifactError unless it matches its schema); returns its URI."""
        path = artifact.path(Keys(target, wave, profile, step))
        return self._store.write(path, artifact.encode(value, self._store.uri(path)))

    def read(
        self,
        artifact: Artifact[T],
        *,
        target: Target | None = None,
        wave: int | None = None,
        profile: str | None = None,
        step: str | None = None,
    ) -> T:
        """Read an artifact; ArtifactMissing when it was never written, ArtifactError unless it matches its schema."""
        found = self.find(artifact, target=target, wave=wave, profile=profile, step=step)
        if found is None:
            where = self.uri(artifact, target=target, wave=wave, profile=profile, step=step)
            raise ArtifactMissing(f"{where} is missing: the task that writes it ({artifact.written_by}) did not finish")
        return found

    def find(
        self,
        artifact: Artifact[T],
        *,
        target: Target | None = None,
        wave: int | None = None,
        profile: str | None = None,
        step: str | None = None,
    ) -> T | None:
        """An artifact, or None when it was never written."""
        path = artifact.path(Keys(target, wave, profile, step))
        data = self._store.read(path)
        return None if data is None else artifact.decode(data, self._store.uri(path))


def read_document_at(artifact: Document, uri: str, conn_id: str | None) -> dict[str, Any]:
    """A document of another run, by the URI its asset event names (e.g. the last cycle's report)."""
    return artifact.decode(read_uri(uri, conn_id), uri)

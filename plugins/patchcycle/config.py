"""The patch_cycle run's parameters as a validated dataclass: bad input fails before any AWS call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from patchcycle.core.scope import Scope

MODES = ("scan", "install")
# "default" resolves by how the run started: the monthly schedule installs (behind the approval gate),
# a run triggered by hand only scans unless asked to install.
DEFAULT_MODE = "default"
SCHEDULED_RUN_TYPES = frozenset({"scheduled"})
APPROVAL_MODES = ("manual", "auto")
REBOOT_OPTIONS = ("RebootIfNeeded", "NoReboot")
# The DAG has this many production wave tasks: the canary and up to MAX_WAVES - 1 more.
MAX_WAVES = 5
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
# SSM's MaxConcurrency / MaxErrors syntax (botocore's ssm model): a count or a percentage, at most 7 characters.
_RATE = re.compile(r"^([1-9][0-9]*|[1-9][0-9]?%|100%)$")
_ERRORS = re.compile(r"^([1-9][0-9]*|0|[1-9]?[0-9]%|100%)$")
_RATE_MAX_LENGTH = 7
_INSTANCE_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SHARE = re.compile(r"^([1-9][0-9]*|[1-9][0-9]?%|100%)$")


@dataclass(frozen=True)
class Target:
    """One (AWS connection, region) the cycle covers: the unit tasks fan out by."""

    aws_conn_id: str
    region_name: str

    @property
    def key(self) -> str:
        return f"{self.aws_conn_id}.{self.region_name}"

    def as_kwargs(self) -> dict[str, str]:
        return {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name}


@dataclass(frozen=True)
class InstallSettings:
    """How install mode stages, approves and rolls out (the install-only params)."""

    approval_mode: str = "manual"
    approval_timeout_hours: float = 24.0
    staging_max_instances: int = 10
    staging_instance_profile: str = ""
    staging_subnet_id: str = ""
    staging_timeout_minutes: float = 30.0
    canary: str = "5%"
    wave_percentages: tuple[int, ...] = (25, 25, 50)
    halt_threshold: str = "10%"
    reboot_option: str = "RebootIfNeeded"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> InstallSettings:
        defaults = cls()
        return cls(
            approval_mode=_choice("approval_mode", params.get("approval_mode", defaults.approval_mode), APPROVAL_MODES),
            approval_timeout_hours=_positive(
                "approval_timeout_hours", params.get("approval_timeout_hours", defaults.approval_timeout_hours)
            ),
            staging_max_instances=_count(
                "staging_max_instances", params.get("staging_max_instances", defaults.staging_max_instances)
            ),
            staging_instance_profile=_optional_text(
                "staging_instance_profile", params.get("staging_instance_profile", ""), _INSTANCE_PROFILE
            ),
            staging_subnet_id=_optional_text("staging_subnet_id", params.get("staging_subnet_id", ""), _SUBNET),
            staging_timeout_minutes=_positive(
                "staging_timeout_minutes", params.get("staging_timeout_minutes", defaults.staging_timeout_minutes)
            ),
            canary=_share("canary", params.get("canary", defaults.canary)),
            wave_percentages=_wave_percentages(params.get("wave_percentages", list(defaults.wave_percentages))),
            halt_threshold=_matching("halt_threshold", params.get("halt_threshold", defaults.halt_threshold), _ERRORS),
            reboot_option=_choice("reboot_option", params.get("reboot_option", defaults.reboot_option), REBOOT_OPTIONS),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for XCom."""
        return {**asdict(self), "wave_percentages": list(self.wave_percentages)}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> InstallSettings:
        return cls(**{**value, "wave_percentages": tuple(value["wave_percentages"])})


@dataclass(frozen=True)
class CycleConfig:
    targets: tuple[Target, ...]
    scope: Scope
    mode: str
    artifact_root: str
    artifact_conn_id: str
    max_concurrency: str
    max_errors: str
    poll_seconds: float
    command_timeout_minutes: float
    install: InstallSettings = InstallSettings()

    @classmethod
    def from_params(cls, params: Mapping[str, Any], run_type: str = "manual") -> CycleConfig:
        """Validate the DAG run's params; ValueError names the offending field.

        run_type (the DAG run's) resolves mode "default": install for scheduled runs, scan otherwise.
        """
        mode = params.get("mode", DEFAULT_MODE)
        if mode == DEFAULT_MODE:
            mode = "install" if run_type in SCHEDULED_RUN_TYPES else "scan"
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {[DEFAULT_MODE, *MODES]}, got {mode!r}")
        artifact_root = _artifact_root(params.get("artifact_root", ""))
        if mode == "install" and not artifact_root.startswith("s3://"):
            # AWS-RunPatchBaseline reads the pinned patch list (InstallOverrideList) from S3.
            raise ValueError(
                f"artifact_root: install mode needs an s3:// artifact root, because instances read the "
                f"pinned patch list from it; got {artifact_root!r}"
            )
        return cls(
            targets=parse_targets(params.get("targets")),
            scope=Scope.from_params(params.get("scope")),
            mode=mode,
            artifact_root=artifact_root,
            artifact_conn_id=_text("artifact_conn_id", params.get("artifact_conn_id", "aws_default")),
            max_concurrency=_matching("max_concurrency", params.get("max_concurrency", "50"), _RATE),
            max_errors=_matching("max_errors", params.get("max_errors", "10%"), _ERRORS),
            poll_seconds=_positive("poll_seconds", params.get("poll_seconds", 30)),
            command_timeout_minutes=_positive("command_timeout_minutes", params.get("command_timeout_minutes", 60)),
            install=InstallSettings.from_params(params),
        )


def parse_targets(value: Any) -> tuple[Target, ...]:
    """The `targets` param ([{aws_conn_id, regions}]) as (connection, region) targets; ValueError names the field."""
    if not isinstance(value, list) or not value:
        raise ValueError("targets: must be a non-empty list of {aws_conn_id, regions}")
    targets: list[Target] = []
    for index, entry in enumerate(value):
        where = f"targets[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be an object with aws_conn_id and regions")
        unknown = set(entry) - {"aws_conn_id", "regions"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        conn_id = entry.get("aws_conn_id")
        if not isinstance(conn_id, str) or not _CONN_ID.match(conn_id):
            raise ValueError(f"{where}.aws_conn_id: must be an Airflow connection id, got {conn_id!r}")
        regions = entry.get("regions")
        if not isinstance(regions, list) or not regions:
            raise ValueError(f"{where}.regions: must be a non-empty list of region names")
        for r_index, region in enumerate(regions):
            if not isinstance(region, str) or not _REGION.match(region):
                raise ValueError(f"{where}.regions[{r_index}]: {region!r} is not an AWS region name")
            target = Target(conn_id, region)
            if target in targets:
                raise ValueError(f"{where}.regions[{r_index}]: {conn_id} / {region} is listed twice")
            targets.append(target)
    return tuple(targets)


def _artifact_root(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.+)$", value):
        raise ValueError(f"artifact_root: must be s3://bucket[/prefix] or file:///path, got {value!r}")
    return value.rstrip("/")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string")
    return value


def _matching(name: str, value: Any, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value) or len(value) > _RATE_MAX_LENGTH:
        raise ValueError(f"{name}: must be a count or a percentage such as '10' or '10%', got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ValueError(f"{name}: must be a positive number, got {value!r}")
    return float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {list(choices)}, got {value!r}")
    return str(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be a whole number of at least 1, got {value!r}")
    return value


def _optional_text(name: str, value: Any, pattern: re.Pattern[str]) -> str:
    if value == "":
        return ""
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{name}: {value!r} is not valid here (leave it empty for none)")
    return value


def _share(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SHARE.match(value):
        raise ValueError(f"{name}: must be a count or a percentage such as '2' or '5%', got {value!r}")
    return value


def _wave_percentages(value: Any) -> tuple[int, ...]:
    name = "wave_percentages"
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


# Inspector's severities, most severe first (the watch's finding_severities choose among them).
FINDING_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")


@dataclass(frozen=True)
class WatchConfig:
    """The patch_compliance_watch run's parameters."""

    targets: tuple[Target, ...]
    artifact_root: str
    artifact_conn_id: str
    finding_severities: tuple[str, ...]
    config_rule_name: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> WatchConfig:
        """Validate the watch run's params; ValueError names the offending field."""
        severities = params.get("finding_severities", ["CRITICAL"])
        if not isinstance(severities, list) or not severities:
            raise ValueError(f"finding_severities: must be a non-empty list of {list(FINDING_SEVERITIES)}")
        for index, severity in enumerate(severities):
            if severity not in FINDING_SEVERITIES:
                raise ValueError(
                    f"finding_severities[{index}]: must be one of {list(FINDING_SEVERITIES)}, got {severity!r}"
                )
        return cls(
            targets=parse_targets(params.get("targets")),
            artifact_root=_artifact_root(params.get("artifact_root", "")),
            artifact_conn_id=_text("artifact_conn_id", params.get("artifact_conn_id", "aws_default")),
            finding_severities=tuple(dict.fromkeys(severities)),
            config_rule_name=_text("config_rule_name", params.get("config_rule_name", "")),
        )

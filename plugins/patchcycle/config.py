"""The patch_cycle run's parameters as a validated dataclass: bad input fails before any AWS call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from patchcycle.core.scope import Scope

MODES = ("scan", "install")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
# SSM's MaxConcurrency / MaxErrors syntax (botocore's ssm model): a count or a percentage, at most 7 characters.
_RATE = re.compile(r"^([1-9][0-9]*|[1-9][0-9]?%|100%)$")
_ERRORS = re.compile(r"^([1-9][0-9]*|0|[1-9]?[0-9]%|100%)$")
_RATE_MAX_LENGTH = 7


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

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CycleConfig:
        """Validate the DAG run's params; ValueError names the offending field."""
        mode = params.get("mode", "scan")
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {list(MODES)}, got {mode!r}")
        if mode == "install":
            raise ValueError(
                "mode: 'install' needs staging, the approval gate and production waves, which this version "
                "does not have yet; run mode 'scan'"
            )
        return cls(
            targets=_targets(params.get("targets")),
            scope=Scope.from_params(params.get("scope")),
            mode=mode,
            artifact_root=_artifact_root(params.get("artifact_root", "")),
            artifact_conn_id=_text("artifact_conn_id", params.get("artifact_conn_id", "aws_default")),
            max_concurrency=_matching("max_concurrency", params.get("max_concurrency", "50"), _RATE),
            max_errors=_matching("max_errors", params.get("max_errors", "10%"), _ERRORS),
            poll_seconds=_positive("poll_seconds", params.get("poll_seconds", 30)),
            command_timeout_minutes=_positive("command_timeout_minutes", params.get("command_timeout_minutes", 60)),
        )


def _targets(value: Any) -> tuple[Target, ...]:
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

"""The key performance indicators of a run, computed from its report document (core/report.build_report).

Per (account, region) and for the whole fleet, over in-scope resources:

- in_scope, already_compliant, non_compliant (compliance state NON_COMPLIANT), skipped (any SKIPPED_* verdict);
- install mode: patched (PATCHED + PATCHED_PENDING_REBOOT + REPLACED), pending_reboot, failed (FAILED), rolled_back
  (ROLLED_BACK), rollback_failed (ROLLBACK_FAILED), attempted (patched + failed + rolled_back + rollback_failed:
  every instance the rollout owed an install, including "install not attempted" ones whose wave was due but never
  ran), success_rate (100 * patched / attempted, in percent; None when attempted is 0);
- failures_by_reason: the failed resources (verdicts FAILED, SCAN_FAILED and NO_DATA) by their reason code
  (verdicts.REASON_CODES);
- time_to_patch (install mode): for each patched instance, the seconds from the run's start to the end of the
  wave that installed it. The report carries no run start and no patch release dates: the start is the report's
  `started_at` when it has one, else the install's first recorded time (staging stack created, or a wave started);
- cves (when the report has an `inspection` section): (instance, CVE) rows by inspection status;
- residual_findings (idem): residual Inspector findings rated CRITICAL or HIGH;
- replacements (when the report has Auto Scaling groups): the instances their refreshes launched (not resources of
  the report: the inventory did not know them), how many verify_replacements found compliant (every pinned patch
  installed) and with their CVEs closed (Amazon Inspector), and how many it did not check.

Pure and deterministic: the same report gives the same document.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from patchcycle.core.verdicts import INSTALL, MODES, REASON_CODES, ComplianceState, Verdict

# RDS maintenance applied counts as patched, like an EC2 install; so does REPLACED: its Auto Scaling group's
# refresh put an instance of the patched AMI in its place.
PATCHED_VERDICTS: Final = frozenset(
    {
        Verdict.PATCHED.value,
        Verdict.PATCHED_PENDING_REBOOT.value,
        Verdict.MAINTENANCE_APPLIED.value,
        Verdict.REPLACED.value,
    }
)
SKIPPED_VERDICTS: Final = frozenset(v.value for v in Verdict if v.value.startswith("SKIPPED_"))
# Verdicts that record something going wrong (skips are decisions or preconditions, counted apart).
FAILURE_VERDICTS: Final = (
    Verdict.FAILED.value,
    Verdict.ROLLED_BACK.value,
    Verdict.ROLLBACK_FAILED.value,
    Verdict.SCAN_FAILED.value,
    Verdict.NO_DATA.value,
)
# Verdicts of an install the run attempted and that did not stick.
UNPATCHED_ATTEMPTS: Final = frozenset({Verdict.FAILED.value, Verdict.ROLLED_BACK.value, Verdict.ROLLBACK_FAILED.value})

# Every failures_by_reason key, in a stable order: the reason codes of the failure verdicts.
FAILURE_REASONS: Final = tuple(code.value for code, (verdict, _) in REASON_CODES.items() if verdict in FAILURE_VERDICTS)
# The codes only install mode gives (scan mode never reports them, not even as zeros).
INSTALL_ONLY_REASONS: Final = frozenset(
    code.value for code, (verdict, _) in REASON_CODES.items() if verdict.value in UNPATCHED_ATTEMPTS
)

CVE_STATUSES: Final[Mapping[str, str]] = {
    "REMEDIATED": "remediated",
    "STILL_ACTIVE": "still_active",
    "NOT_FOUND": "not_found",
    "UNVERIFIED": "unverified",
}
RESIDUAL_SEVERITIES: Final[Mapping[str, str]] = {"CRITICAL": "critical", "HIGH": "high"}

BASIS_RUN_START: Final = "run_start"
BASIS_INSTALL_START: Final = "install_start"

_COUNT: Final[dict[str, Any]] = {"type": "integer", "minimum": 0}


def _nullable_counts(names: Iterable[str]) -> dict[str, Any]:
    """Schema: null, or an object of the named counts."""
    required = list(names)
    counts = {"type": "object", "additionalProperties": False, "required": required}
    return {"oneOf": [{"type": "null"}, {**counts, "properties": dict.fromkeys(required, _COUNT)}]}


_BLOCK_PROPERTIES: Final[dict[str, Any]] = {
    **{
        name: _COUNT
        for name in (
            "in_scope",
            "patched",
            "pending_reboot",
            "already_compliant",
            "non_compliant",
            "failed",
            "skipped",
            "attempted",
            "rolled_back",
            "rollback_failed",
        )
    },
    "success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
    "failures_by_reason": {
        "type": "object",
        "propertyNames": {"enum": list(FAILURE_REASONS)},
        "additionalProperties": _COUNT,
    },
    "time_to_patch": {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["count", "min_seconds", "max_seconds", "mean_seconds", "samples"],
                "properties": {
                    "count": _COUNT,
                    "min_seconds": {"type": "number"},
                    "max_seconds": {"type": "number"},
                    "mean_seconds": {"type": "number"},
                    "samples": {
                        "type": "array",
                        "description": "[seconds, how many instances] pairs, sorted by seconds",
                        "items": {"type": "array", "prefixItems": [{"type": "number"}, _COUNT], "items": False},
                    },
                },
            },
        ]
    },
    "cves": _nullable_counts(CVE_STATUSES.values()),
    "residual_findings": _nullable_counts(RESIDUAL_SEVERITIES.values()),
}
REPLACEMENT_COUNTS: Final = ("launched", "compliant", "cves_closed", "not_checked")
_REQUIRED: Final = list(_BLOCK_PROPERTIES)
# Optional: reports written before the immutable path have no such key.
_BLOCK_PROPERTIES["replacements"] = {
    **_nullable_counts(REPLACEMENT_COUNTS),
    "description": "the instances the Auto Scaling groups' refreshes launched, and their checks",
}
_BLOCK_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": _REQUIRED,
    "properties": _BLOCK_PROPERTIES,
}
# The `kpis` section as compute_kpis returns it (for REPORT_SCHEMA, once the report stores it).
KPIS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mode", "run_started_at", "time_to_patch_basis", "incomplete_parts", "fleet", "targets"],
    "properties": {
        "mode": {"enum": list(MODES)},
        "run_started_at": {"type": "string", "description": "ISO 8601 UTC: time_to_patch's origin; empty if none"},
        "time_to_patch_basis": {"enum": [BASIS_RUN_START, BASIS_INSTALL_START, ""]},
        "incomplete_parts": _COUNT,
        "fleet": _BLOCK_SCHEMA,
        "targets": {
            "type": "array",
            "items": {
                **_BLOCK_SCHEMA,
                "required": ["account_id", "region", *_BLOCK_SCHEMA["required"]],
                "properties": {"account_id": {"type": "string"}, "region": {"type": "string"}, **_BLOCK_PROPERTIES},
            },
        },
    },
}


def failure_reason(verdict: str, reason_code: str) -> str | None:
    """The failures_by_reason key of one resource's verdict (None when the verdict is not a failure)."""
    return reason_code if verdict in FAILURE_VERDICTS else None


def _time(value: Any) -> dt.datetime | None:
    """An ISO 8601 text as an aware UTC datetime; None when empty or not a time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _run_start(report: Mapping[str, Any]) -> tuple[dt.datetime | None, str]:
    """time_to_patch's origin and its basis: the run's start if the report has it, else the install's start."""
    started = _time(report.get("started_at"))
    if started is not None:
        return started, BASIS_RUN_START
    install = report.get("install") or {}
    stamps = [_time(stack.get("created_at")) for stack in install.get("staging", {}).get("stacks", [])]
    stamps += [_time(wave.get("started_at")) for wave in install.get("waves", [])]
    known = [stamp for stamp in stamps if stamp is not None]
    return (min(known), BASIS_INSTALL_START) if known else (None, "")


def _wave_ends(report: Mapping[str, Any]) -> dict[int, dt.datetime]:
    ends = {}
    for wave in (report.get("install") or {}).get("waves", []):
        finished = _time(wave.get("finished_at"))
        if finished is not None:
            ends[int(wave["wave"])] = finished
    return ends


def _time_to_patch(seconds: Sequence[float]) -> dict[str, Any] | None:
    if not seconds:
        return None
    counts = Counter(seconds)
    return {
        "count": len(seconds),
        "min_seconds": min(seconds),
        "max_seconds": max(seconds),
        "mean_seconds": math.fsum(seconds) / len(seconds),
        "samples": [[value, counts[value]] for value in sorted(counts)],
    }


def _counts_by(rows: Iterable[Mapping[str, Any]], field: str, names: Mapping[str, str]) -> dict[str, int]:
    counts = dict.fromkeys(names.values(), 0)
    for row in rows:
        name = names.get(str(row.get(field, "")).upper())
        if name is not None:
            counts[name] += 1
    return counts


def _block(
    mode: str,
    resources: Sequence[Mapping[str, Any]],
    seconds: Sequence[float],
    inspection: Mapping[str, Any] | None,
    groups: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The KPIs of one set of resources (a target's, or the fleet's), its inspection rows and its Auto Scaling groups
    (None: the report has none)."""
    verdicts = Counter(str(resource["verdict"]) for resource in resources)
    patched = sum(verdicts[v] for v in PATCHED_VERDICTS)
    failed = verdicts[Verdict.FAILED.value]
    attempted = patched + sum(verdicts[v] for v in UNPATCHED_ATTEMPTS)
    applicable = [r for r in FAILURE_REASONS if mode == INSTALL or r not in INSTALL_ONLY_REASONS]
    reasons = Counter(failure_reason(str(r["verdict"]), str(r["reason_code"])) for r in resources)
    return {
        "in_scope": len(resources),
        "patched": patched,
        "pending_reboot": verdicts[Verdict.PATCHED_PENDING_REBOOT.value],
        "already_compliant": verdicts[Verdict.ALREADY_COMPLIANT.value],
        "non_compliant": sum(1 for r in resources if r.get("compliance_state") == ComplianceState.NON_COMPLIANT),
        "failed": failed,
        "skipped": sum(verdicts[v] for v in SKIPPED_VERDICTS),
        "attempted": attempted,
        "rolled_back": verdicts[Verdict.ROLLED_BACK.value],
        "rollback_failed": verdicts[Verdict.ROLLBACK_FAILED.value],
        "success_rate": 100.0 * patched / attempted if attempted else None,
        "failures_by_reason": {reason: reasons[reason] for reason in applicable},
        "time_to_patch": _time_to_patch(seconds),
        "cves": None if inspection is None else _counts_by(inspection["cves"], "status", CVE_STATUSES),
        "residual_findings": (
            None if inspection is None else _counts_by(inspection["residual"], "severity", RESIDUAL_SEVERITIES)
        ),
        "replacements": None if groups is None else _replacements(groups),
    }


def _replacements(groups: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    new = [instance for group in groups for instance in group.get("new_instances") or []]
    checked = [instance for instance in new if instance.get("checked", True)]
    return {
        "launched": len(new),
        "compliant": sum(1 for instance in checked if instance["compliant"]),
        "cves_closed": sum(1 for instance in checked if instance["cves_closed"]),
        "not_checked": len(new) - len(checked),
    }


def _groups_of(report: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The report's Auto Scaling groups (None when it has none: not a run of the immutable path)."""
    groups = (report.get("install") or {}).get("auto_scaling_groups")
    return list(groups) if groups else None


def _inspection_of(report: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]] | None:
    inspection = report.get("inspection")
    if inspection is None:
        return None
    return {"cves": list(inspection.get("cves") or []), "residual": list(inspection.get("residual") or [])}


def _where(row: Mapping[str, Any]) -> tuple[str, str]:
    return str(row.get("account_id", "")), str(row.get("region", ""))


def compute_kpis(report: Mapping[str, Any]) -> dict[str, Any]:
    """The run's KPIs (KPIS_SCHEMA): the fleet's, and each (account, region)'s, sorted by account then region.

    Works on any report build_report produces, in scan or install mode, with or without `inspection` and
    `kpis` (an existing `kpis` is ignored). Targets are the (account, region) pairs of the report's resources
    and inspection rows; a part of the fleet that could not be read has none, and is counted in
    incomplete_parts.
    """
    mode = str(report["mode"])
    resources = list(report["resources"])
    inspection = _inspection_of(report)
    start, basis = _run_start(report)
    ends = _wave_ends(report)

    seconds_by_target: dict[tuple[str, str], list[float]] = {}
    for resource in resources:
        # The EC2 waves' ends: an RDS database's wave is its RDS wave, which install.waves does not time.
        wave = resource.get("wave") if resource["resource_type"] == "ec2" else None
        if str(resource["verdict"]) in PATCHED_VERDICTS and start is not None and wave in ends:
            elapsed = (ends[int(wave)] - start).total_seconds()
            seconds_by_target.setdefault(_where(resource), []).append(elapsed)

    groups = _groups_of(report)
    keys = {_where(r) for r in resources} | {_where(g) for g in groups or []}
    if inspection is not None:
        keys |= {_where(row) for rows in inspection.values() for row in rows if row.get("account_id")}
    targets = []
    for account_id, region in sorted(keys):
        mine = [r for r in resources if _where(r) == (account_id, region)]
        own_inspection = None
        if inspection is not None:
            own_inspection = {
                name: [row for row in rows if _where(row) == (account_id, region)] for name, rows in inspection.items()
            }
        own_groups = None if groups is None else [g for g in groups if _where(g) == (account_id, region)]
        block = _block(mode, mine, seconds_by_target.get((account_id, region), []), own_inspection, own_groups)
        targets.append({"account_id": account_id, "region": region, **block})
    all_seconds = [value for key in sorted(seconds_by_target) for value in seconds_by_target[key]]
    return {
        "mode": mode,
        "run_started_at": start.isoformat().replace("+00:00", "Z") if start else "",
        "time_to_patch_basis": basis,
        "incomplete_parts": len(report.get("incomplete") or []),
        "fleet": _block(mode, resources, all_seconds, inspection, groups),
        "targets": targets,
    }


def empty_block(mode: str, with_inspection: bool) -> dict[str, Any]:
    """The KPIs of a target with no resources in the report: zero counts, no rates or times."""
    return _block(mode, [], [], {"cves": [], "residual": []} if with_inspection else None)


def target_kpis(kpis: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
    """One target's KPI block from compute_kpis' result; an empty block when the report has none of it."""
    for target in kpis["targets"]:
        if (target["account_id"], target["region"]) == (account_id, region):
            return {key: value for key, value in target.items() if key not in ("account_id", "region")}
    return empty_block(str(kpis["mode"]), kpis["fleet"]["cves"] is not None)

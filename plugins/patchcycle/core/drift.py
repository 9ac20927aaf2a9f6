"""Drift since the last patch cycle: what changed on the instances the cycle left behind.

The baseline is the last cycle's report (report.json); the present is what Patch Manager, AWS Config
and Amazon Inspector say now. Four kinds of drift, each one row of DRIFT_COLUMNS:

- PATCH_UNINSTALLED: a patch the cycle installed on the instance is MISSING or FAILED again.
- NEW_MISSING: a patch missing now that the cycle did not list for the instance (newly released or
  approved, or removed from an instance the cycle found compliant).
- CONFIG_NON_COMPLIANT: AWS Config's patch-compliance rule flags an instance the cycle left compliant.
- NEW_CRITICAL_FINDING: an active Inspector finding (of the watched severities) the cycle did not know: first
  observed after the cycle's report, or a CVE the cycle proved closed (REMEDIATED) that is open again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.json_schemas import closed_record
from patchcycle.core.timestamps import utc_timestamp


class DriftKind(StrEnum):
    PATCH_UNINSTALLED = "PATCH_UNINSTALLED"
    NEW_MISSING = "NEW_MISSING"
    CONFIG_NON_COMPLIANT = "CONFIG_NON_COMPLIANT"
    NEW_CRITICAL_FINDING = "NEW_CRITICAL_FINDING"


DRIFT_MEANINGS: Final[Mapping[str, str]] = {
    DriftKind.PATCH_UNINSTALLED: "a patch the cycle installed is missing or failed again",
    DriftKind.NEW_MISSING: "a patch is missing that the cycle did not list for this instance",
    DriftKind.CONFIG_NON_COMPLIANT: "AWS Config flags an instance the cycle left compliant",
    DriftKind.NEW_CRITICAL_FINDING: "Inspector reports an active finding the cycle did not know",
}

DRIFT_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "kind": "str",  # a DriftKind value
    "subject": "str",  # the patch id, CVE id or Config rule the drift is about
    "severity": "str",  # the patch's severity, the finding's, or "" for Config
    "state": "str",  # the patch state, the finding status or the Config compliance now
    "detail": "str",  # one line for people
}

_STRING: Final[dict[str, Any]] = {"type": "string"}
_COUNT: Final[dict[str, Any]] = {"type": "integer", "minimum": 0}


# The watch's drift.json (drift_document).
DRIFT_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "patchcycle drift report",
    **closed_record(
        {
            "run_id": _STRING,
            "generated_at": _STRING,
            "cycle": closed_record({key: _STRING for key in ("run_id", "report", "mode", "generated_at")}),
            "summary": closed_record(
                {
                    "instances_watched": _COUNT,
                    "instances_drifted": _COUNT,
                    "drift": _COUNT,
                    "by_kind": closed_record({kind.value: _COUNT for kind in DriftKind}),
                }
            ),
            "kind_meanings": {"type": "object", "additionalProperties": _STRING},
            "drift": {"type": "array", "items": closed_record(dict.fromkeys(DRIFT_COLUMNS, _STRING))},
            "incomplete": {
                "type": "array",
                "items": {"type": "object", "required": ["stage", "error"], "additionalProperties": _STRING},
            },
            "outcome": closed_record({"ok": {"type": "boolean"}, "problems": {"type": "array", "items": _STRING}}),
        }
    ),
}

# Verdicts after which the cycle's report says the instance holds its listed patches.
REPLACED: Final = "REPLACED"  # an Auto Scaling group's instance refresh put its new instances in their place
INSTALLED_VERDICTS: Final = frozenset({"PATCHED", "PATCHED_PENDING_REBOOT", REPLACED})
# Compliance states the cycle left an instance in that Config may not contradict without it being drift.
COMPLIANT_STATES: Final = frozenset({"COMPLIANT"})
# Patch states that mean "not on the instance".
ABSENT_STATES: Final = frozenset({"MISSING", "FAILED"})


def watched_instances(report: Mapping[str, Any], account_id: str, region: str) -> list[dict[str, Any]]:
    """The report's EC2 entries in one account and region that Patch Manager reported on, and the instances the
    cycle's instance refreshes launched there (expected: their baked AMI's pinned patches installed). An instance a
    refresh REPLACED is left out: it was terminated, and its place is watched as the new instance."""
    return [
        entry
        for entry in report["resources"]
        if entry["resource_type"] == "ec2"
        and entry["account_id"] == account_id
        and entry["region"] == region
        and entry.get("patch_state") is not None
        and entry.get("verdict") != REPLACED
    ] + replacement_entries(report, account_id, region)


def replacement_entries(report: Mapping[str, Any], account_id: str, region: str) -> list[dict[str, Any]]:
    """The instances an Auto Scaling group's refresh launched in this account and region, as watched entries: the
    cycle left them with the group's pinned patches installed (REPLACED), so a pinned patch missing again is
    PATCH_UNINSTALLED and any other missing patch NEW_MISSING, as for an instance patched in place."""
    groups = (report.get("install") or {}).get("auto_scaling_groups") or []
    return [
        {
            "resource_id": new["instance_id"],
            "resource_type": "ec2",
            "account_id": account_id,
            "region": region,
            "verdict": REPLACED,
            "compliance_state": "COMPLIANT" if new["compliant"] else "UNKNOWN",
            "missing_patches": [{"patch_id": patch_id} for patch_id in group["pinned_patches"]],
        }
        for group in groups
        if group["account_id"] == account_id and group["region"] == region and group["status"] == "Successful"
        for new in group["new_instances"]
    ]


def _remediated(report: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(instance, CVE) pairs the cycle proved closed."""
    cves = (report.get("inspection") or {}).get("cves", [])
    return {(row["resource_id"], row["cve_id"]) for row in cves if row.get("status") == "REMEDIATED"}


def _new_to_the_cycle(report: Mapping[str, Any], remediated: set[tuple[str, str]], finding: Mapping[str, Any]) -> bool:
    """Whether an active finding is one the cycle did not know: first observed after its report, or a CVE the
    cycle proved closed that is open again. A finding older than the report that the cycle did not prove
    closed was there to see (still active, residual, or on an instance it did not inspect): not drift."""
    if (str(finding["resource_id"]), str(finding["cve_id"])) in remediated:
        return True
    first_seen, reported = utc_timestamp(finding.get("first_observed_at")), utc_timestamp(report.get("generated_at"))
    return first_seen is not None and reported is not None and first_seen > reported


def detect_drift(
    report: Mapping[str, Any],
    account_id: str,
    region: str,
    absent_patches: Mapping[str, Iterable[Mapping[str, Any]]],
    config: pd.DataFrame | None,
    findings: Iterable[Mapping[str, Any]],
    config_rule: str = "",
) -> pd.DataFrame:
    """DRIFT_COLUMNS for one account and region.

    absent_patches: {instance id: DescribeInstancePatches entries now in MISSING or FAILED (KBId, State,
    Severity)}; an instance absent from it has none. config: config_compliance.CONFIG_COLUMNS now (or None
    when Config was not read). findings: active Inspector findings now, as rows with resource_id, cve_id,
    severity, title, first_observed_at (already filtered to the watched severities).
    """
    rows: list[dict[str, str]] = []
    where = {"account_id": account_id, "region": region}
    instances = {entry["resource_id"]: entry for entry in watched_instances(report, account_id, region)}
    for instance_id, entry in sorted(instances.items()):
        listed = {patch["patch_id"] for patch in entry["missing_patches"]}
        installed_by_cycle = listed if entry["verdict"] in INSTALLED_VERDICTS else set()
        for patch in sorted(absent_patches.get(instance_id, []), key=lambda p: str(p["KBId"])):
            patch_id, state = str(patch["KBId"]), str(patch["State"])
            if state not in ABSENT_STATES:
                continue
            if patch_id in installed_by_cycle:
                kind, detail = DriftKind.PATCH_UNINSTALLED, f"{patch_id} was installed by the cycle and is {state} now"
            elif patch_id not in listed:
                kind, detail = DriftKind.NEW_MISSING, f"{patch_id} is {state} and was not listed by the cycle"
            else:
                continue  # the cycle already reported it outstanding: not a change
            rows.append(
                {
                    **where,
                    "resource_id": instance_id,
                    "kind": kind,
                    "subject": patch_id,
                    "severity": str(patch.get("Severity", "")),
                    "state": state,
                    "detail": detail,
                }
            )
    if config is not None:
        for row in config.to_dict("records"):
            left = instances.get(str(row["resource_id"]))
            if left is None or row["compliance"] != "NON_COMPLIANT":
                continue
            if left["compliance_state"] in COMPLIANT_STATES:
                annotation = str(row.get("annotation", "") or "")
                rows.append(
                    {
                        **where,
                        "resource_id": str(row["resource_id"]),
                        "kind": DriftKind.CONFIG_NON_COMPLIANT,
                        "subject": config_rule,
                        "severity": "",
                        "state": "NON_COMPLIANT",
                        "detail": "AWS Config: NON_COMPLIANT" + (f" ({annotation})" if annotation else ""),
                    }
                )
    seen: set[tuple[str, str]] = set()
    remediated = _remediated(report)
    for finding in findings:
        key = (str(finding["resource_id"]), str(finding["cve_id"]))
        if key[0] not in instances or key in seen or not _new_to_the_cycle(report, remediated, finding):
            continue
        seen.add(key)
        rows.append(
            {
                **where,
                "resource_id": key[0],
                "kind": DriftKind.NEW_CRITICAL_FINDING,
                "subject": key[1],
                "severity": str(finding.get("severity", "")),
                "state": "ACTIVE",
                "detail": str(finding.get("title", "")) or f"{key[1]} is active",
            }
        )
    frame = typed_frame(rows, DRIFT_COLUMNS)
    return frame.sort_values(["resource_id", "kind", "subject"], kind="stable").reset_index(drop=True)


def drift_summary(drift: pd.DataFrame, watched: int) -> dict[str, Any]:
    """Counts for the watch report and its metrics: by kind, and instances with any drift."""
    by_kind = {kind.value: int((drift["kind"] == kind.value).sum()) for kind in DriftKind}
    return {
        "instances_watched": watched,
        "instances_drifted": int(drift["resource_id"].nunique()),
        "drift": len(drift),
        "by_kind": by_kind,
    }


def drift_document(
    run_id: str,
    cycle: Mapping[str, Any],
    drift: pd.DataFrame,
    watched: int,
    incomplete: list[dict[str, str]],
    generated_at: str,
) -> dict[str, Any]:
    """The watch's drift.json: what it compared with, the counts, every drift row, and what it could not read."""
    return {
        "run_id": run_id,
        "generated_at": generated_at,
        "cycle": {key: str(cycle.get(key, "")) for key in ("run_id", "report", "mode", "generated_at")},
        "summary": drift_summary(drift, watched),
        "kind_meanings": {str(kind): meaning for kind, meaning in DRIFT_MEANINGS.items()},
        "drift": [{str(k): str(v) for k, v in row.items()} for row in drift.to_dict("records")],
        "incomplete": incomplete,
        "outcome": {
            "ok": not incomplete,
            "problems": [
                f"{p.get('aws_conn_id', '')}/{p.get('region', '')} {p['stage']}: {p['error']}" for p in incomplete
            ],
        },
    }

"""Security Hub findings and CloudWatch metrics for drift (core.drift rows), beside the cycle's own.

One finding per drift row, id ``patchcycle/<account>/<region>/<instance>/drift/<kind>/<subject>`` under
GeneratorId DRIFT_GENERATOR, so a watch run updates rather than duplicates. A drift finding in the
account and region that the latest watch no longer sees is fixed (resolved); the cycle's own findings are never
touched here. Metrics: DriftInstances and Drift (by DriftKind) in the cycle's namespace, per target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import pandas as pd

from patchcycle.core.asff import (
    GENERATOR_PREFIX,
    MAX_DESCRIPTION,
    MAX_TITLE,
    FindingSet,
    base_finding,
    clip,
    finding_id,
    product_fields,
    severity_label,
)
from patchcycle.core.cloudwatch_metrics import target_dimensions
from patchcycle.core.drift import DRIFT_MEANINGS, DriftKind

DRIFT_GENERATOR: Final = "patchcycle/drift"
DRIFT_TYPES: Final[Mapping[str, str]] = {
    DriftKind.PATCH_UNINSTALLED: "Software and Configuration Checks/Patch Management/Compliance",
    DriftKind.NEW_MISSING: "Software and Configuration Checks/Patch Management/Compliance",
    DriftKind.CONFIG_NON_COMPLIANT: "Software and Configuration Checks/Patch Management/Compliance",
    DriftKind.NEW_CRITICAL_FINDING: "Software and Configuration Checks/Vulnerabilities/CVE",
}
DRIFT_PREFIX: Final = "drift/"


def drift_subject(kind: str, subject: str) -> str:
    return f"{DRIFT_PREFIX}{kind}/{subject or 'instance'}"


def drift_finding(row: Mapping[str, Any], cycle_run_id: str, now: str, created_at: str | None) -> dict[str, Any]:
    """The finding for one drift row (core.drift.DRIFT_COLUMNS)."""
    account_id, region, instance_id = str(row["account_id"]), str(row["region"]), str(row["resource_id"])
    kind, subject, severity = str(row["kind"]), str(row["subject"]), str(row["severity"])
    # Drift from a cycle's verified state is at least MEDIUM: something undid or outran the patching.
    finding = base_finding(
        account_id,
        region,
        instance_id,
        drift_subject(kind, subject),
        DRIFT_GENERATOR,
        DRIFT_TYPES[kind],
        severity_label(severity, floor="MEDIUM"),
        severity,
        now,
        created_at,
    )
    finding["Title"] = clip(f"Patch drift on EC2 instance {instance_id}: {kind} {subject}".strip(), MAX_TITLE)
    finding["Description"] = clip(
        f"{DRIFT_MEANINGS[kind].capitalize()} since patch cycle run {cycle_run_id}: {row['detail']}.",
        MAX_DESCRIPTION,
    )
    finding["Compliance"] = {"Status": "FAILED"}
    if kind == DriftKind.NEW_CRITICAL_FINDING:
        finding["Vulnerabilities"] = [{"Id": subject}]
    finding["ProductFields"] = product_fields(
        {"patchcycle/DriftKind": kind, "patchcycle/CycleRunId": cycle_run_id, "patchcycle/State": str(row["state"])}
    )
    return finding


def drift_finding_set(
    drift: pd.DataFrame,
    existing: Iterable[Mapping[str, Any]],
    account_id: str,
    region: str,
    cycle_run_id: str,
    now: str,
    created_at: Mapping[str, str],
) -> FindingSet:
    """This watch's drift findings of one target; its existing drift findings not seen now are fixed.
    existing: the findings GetFindings returned (any generator; only drift ones of this account and region count)."""
    result = FindingSet()
    for row in drift.to_dict("records"):
        fid = finding_id(
            account_id, region, str(row["resource_id"]), drift_subject(str(row["kind"]), str(row["subject"]))
        )
        result.findings.append(drift_finding(row, cycle_run_id, now, created_at.get(fid)))
    current = result.ids
    # The watch covers the whole account and region: drift it no longer sees is gone, including that of an
    # instance the cycle no longer reports (terminated, out of scope).
    here = f"{GENERATOR_PREFIX}{account_id}/{region}/"
    result.fixed_ids = {
        str(f["Id"])
        for f in existing
        if f.get("GeneratorId") == DRIFT_GENERATOR and str(f["Id"]).startswith(here) and str(f["Id"]) not in current
    }
    return result


def drift_metric_data(
    summary: Mapping[str, Any], account_id: str, region: str, timestamp: datetime
) -> list[dict[str, Any]]:
    """DriftInstances, and Drift per DriftKind (dimension DriftKind), for one target."""
    dimensions = target_dimensions(account_id, region)
    data = [
        {
            "MetricName": "DriftInstances",
            "Dimensions": dimensions,
            "Timestamp": timestamp,
            "Value": float(summary["instances_drifted"]),
            "Unit": "Count",
        }
    ]
    for kind, count in summary["by_kind"].items():
        data.append(
            {
                "MetricName": "Drift",
                "Dimensions": [*dimensions, {"Name": "DriftKind", "Value": str(kind)}],
                "Timestamp": timestamp,
                "Value": float(count),
                "Unit": "Count",
            }
        )
    return data

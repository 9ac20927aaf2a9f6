"""Drift as Security Hub findings and CloudWatch metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from include.sandbox.protocol import validate_request
from patchcycle.core.drift import DRIFT_COLUMNS, DriftKind, drift_summary
from patchcycle.core.drift_findings import DRIFT_GENERATOR, drift_finding_set, drift_metric_data
from patchcycle.core.frames import typed_frame

ACCOUNT, REGION, NOW = "123456789012", "us-east-1", "2026-11-27T06:00:00Z"


def row(instance: str, kind: str, subject: str, severity: str = "") -> dict[str, str]:
    return {
        "account_id": ACCOUNT,
        "region": REGION,
        "resource_id": instance,
        "kind": kind,
        "subject": subject,
        "severity": severity,
        "state": "MISSING",
        "detail": f"{subject} changed",
    }


DRIFT = typed_frame(
    [
        row("i-1", DriftKind.PATCH_UNINSTALLED, "ALAS-1", "Critical"),
        row("i-1", DriftKind.NEW_CRITICAL_FINDING, "CVE-2026-1", "CRITICAL"),
        row("i-2", DriftKind.CONFIG_NON_COMPLIANT, "rule"),
    ],
    DRIFT_COLUMNS,
)


def existing(instance: str, subject: str, generator: str = DRIFT_GENERATOR) -> dict[str, str]:
    return {"Id": f"patchcycle/{ACCOUNT}/{REGION}/{instance}/{subject}", "GeneratorId": generator, "ProductArn": "p"}


def test_each_drift_row_is_one_schema_valid_finding_with_a_stable_id() -> None:
    first = drift_finding_set(DRIFT, [], ACCOUNT, REGION, "cycle-1", NOW, {})
    assert len(first.findings) == 3 and len(first.ids) == 3
    validate_request("securityhub", "BatchImportFindings", {"Findings": first.findings})
    again = drift_finding_set(DRIFT, [], ACCOUNT, REGION, "cycle-1", "2026-11-28T06:00:00Z", {})
    assert again.ids == first.ids
    by_id = {f["Id"]: f for f in first.findings}
    cve = by_id[f"patchcycle/{ACCOUNT}/{REGION}/i-1/drift/NEW_CRITICAL_FINDING/CVE-2026-1"]
    assert cve["Severity"]["Label"] == "CRITICAL" and cve["Vulnerabilities"] == [{"Id": "CVE-2026-1"}]
    config = by_id[f"patchcycle/{ACCOUNT}/{REGION}/i-2/drift/CONFIG_NON_COMPLIANT/rule"]
    assert config["Severity"]["Label"] == "MEDIUM"  # drift is never below MEDIUM
    assert all(f["GeneratorId"] == DRIFT_GENERATOR and f["Compliance"]["Status"] == "FAILED" for f in first.findings)


def test_drift_of_this_account_and_region_that_is_gone_is_fixed() -> None:
    known = [
        existing("i-1", "drift/PATCH_UNINSTALLED/ALAS-1"),  # still drifting: not fixed
        existing("i-1", "drift/NEW_MISSING/ALAS-9"),  # gone: fixed
        existing("i-3", "drift/NEW_MISSING/ALAS-9"),  # an instance the cycle no longer reports: fixed too
        {**existing("i-1", "drift/NEW_MISSING/ALAS-9"), "Id": "patchcycle/999999999999/us-east-1/i-1/drift/x/y"},
        existing("i-1", "patch-compliance", generator="patchcycle/patch-compliance"),  # the cycle's: left alone
    ]
    result = drift_finding_set(DRIFT, known, ACCOUNT, REGION, "cycle-1", NOW, {})
    assert result.fixed_ids == {
        f"patchcycle/{ACCOUNT}/{REGION}/i-1/drift/NEW_MISSING/ALAS-9",
        f"patchcycle/{ACCOUNT}/{REGION}/i-3/drift/NEW_MISSING/ALAS-9",
    }


def test_drift_metrics_count_instances_and_each_kind() -> None:
    data = drift_metric_data(drift_summary(DRIFT, 5), ACCOUNT, REGION, datetime(2026, 11, 27, tzinfo=UTC))
    values = {
        (d["MetricName"], next((x["Value"] for x in d["Dimensions"] if x["Name"] == "DriftKind"), "")): d["Value"]
        for d in data
    }
    assert values[("DriftInstances", "")] == 2
    assert values[("Drift", "PATCH_UNINSTALLED")] == 1 and values[("Drift", "NEW_MISSING")] == 0
    assert all({"Name": "Region", "Value": REGION} in d["Dimensions"] for d in data)

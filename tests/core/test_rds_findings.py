"""Security Hub findings for RDS DB instances, counted like the EC2 instances' (core.rds_findings via core.asff)."""

from __future__ import annotations

from typing import Any

from include.sandbox.securityhub import asff_problems
from patchcycle.core.asff import build_findings

ACCOUNT, REGION = "123456789012", "us-east-1"
NOW = "2026-11-20T03:00:00Z"


def db(identifier: str, verdict: str, compliance: str, code: str) -> dict[str, Any]:
    return {
        "resource_id": identifier,
        "resource_type": "rds",
        "account_id": ACCOUNT,
        "region": REGION,
        "verdict": verdict,
        "compliance_state": compliance,
        "reason_code": code,
        "reason": f"{verdict.lower()} system-update",
    }


def test_non_compliant_databases_get_a_finding_and_applied_ones_are_resolved() -> None:
    report = {
        "run_id": "scheduled__1",
        "mode": "install",
        "resources": [
            db("failed-db", "FAILED", "NON_COMPLIANT", "MAINTENANCE_FAILED"),
            db("scheduled-db", "MAINTENANCE_SCHEDULED", "NON_COMPLIANT", "MAINTENANCE_SCHEDULED"),
            db("applied-db", "MAINTENANCE_APPLIED", "COMPLIANT", "MAINTENANCE_APPLIED"),
        ],
    }
    found = build_findings(report, None, ACCOUNT, REGION, NOW)
    by_id = {f["Resources"][0]["Id"].rsplit(":", 1)[-1]: f for f in found.findings}
    assert set(by_id) == {"failed-db", "scheduled-db"}
    for finding in found.findings:
        assert asff_problems(finding, ACCOUNT) == [], finding["Id"]
        assert finding["Resources"][0]["Type"] == "AwsRdsDbInstance"
        assert finding["Compliance"] == {"Status": "FAILED"}
    assert by_id["failed-db"]["Severity"]["Label"] == "MEDIUM"
    assert by_id["failed-db"]["ProductFields"]["patchcycle/ReasonCode"] == "MAINTENANCE_FAILED"
    assert found.fixed_ids == {f"patchcycle/{ACCOUNT}/{REGION}/applied-db/patch-compliance"}


def test_an_aurora_cluster_s_finding_names_the_cluster() -> None:
    cluster = {
        **db("ledger", "FAILED", "NON_COMPLIANT", "MAINTENANCE_FAILED"),
        "resource_arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:ledger",
    }
    report = {"run_id": "scheduled__1", "mode": "install", "resources": [cluster]}
    found = build_findings(report, None, ACCOUNT, REGION, NOW)
    (finding,) = found.findings
    assert asff_problems(finding, ACCOUNT) == []
    assert finding["Resources"][0]["Type"] == "AwsRdsDbCluster"
    assert finding["Resources"][0]["Id"] == cluster["resource_arn"]
    assert finding["Title"].startswith("Aurora DB cluster ledger has maintenance outstanding")

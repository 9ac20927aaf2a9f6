"""core.asff: schema-valid findings from a report and the inspect CVE table, stable ids, and reconciliation."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pandas as pd
import pytest

from include.sandbox.protocol import validate_request
from include.sandbox.securityhub import asff_problems
from patchcycle.core.asff import (
    CVE_GENERATOR,
    PATCH_GENERATOR,
    FindingSet,
    build_findings,
    created_at_of,
    finding_id,
    own_findings_filter,
    product_arn,
    reconcile,
    severity_label,
    worst_severity,
)
from patchcycle.core.report import REPORT_SCHEMA

ACCOUNT, REGION = "123456789012", "us-east-1"
NOW = "2026-11-20T03:00:00Z"


def patch(patch_id: str, severity: str, cves: list[str] | None = None) -> dict[str, Any]:
    return {
        "patch_id": patch_id,
        "title": f"{severity} update {patch_id}",
        "classification": "Security",
        "severity": severity,
        "state": "MISSING",
        "cve_ids": cves or [],
    }


def resource(instance_id: str, compliance: str, patches: list[dict[str, Any]] = (), **overrides: Any) -> dict[str, Any]:  # type: ignore[assignment]
    verdict = {"NON_COMPLIANT": "NON_COMPLIANT", "COMPLIANT": "ALREADY_COMPLIANT", "UNKNOWN": "SKIPPED_OFFLINE"}
    code = {"NON_COMPLIANT": "PATCHES_OUTSTANDING", "COMPLIANT": "NO_MISSING_PATCHES", "UNKNOWN": "AGENT_OFFLINE"}
    entry = {
        "resource_id": instance_id,
        "resource_type": "ec2",
        "account_id": ACCOUNT,
        "region": REGION,
        "responsibility": "customer",
        "verdict": verdict[compliance],
        "compliance_state": compliance,
        "reason_code": code[compliance],
        "reason": f"{len(patches)} missing patches",
        "name": f"web-{instance_id}",
        "environment": "production",
        "missing_patches": list(patches),
        "snapshot_ids": [],
        "cve_ids": sorted({c for p in patches for c in p["cve_ids"]}),
        "patch_state": {
            "operation": "Scan",
            "operation_end_time": "2026-11-20T02:00:00Z",
            "baseline_id": "pb-0123456789abcdef0",
            "patch_group": "web",
            "missing": len(patches),
            "failed": 0,
            "installed_pending_reboot": 0,
            "installed": 12,
            "critical_non_compliant": 0,
            "security_non_compliant": len(patches),
            "other_non_compliant": 0,
        },
        "wave": None,
    }
    entry.update(overrides)
    jsonschema.validate(entry, REPORT_SCHEMA["properties"]["resources"]["items"])  # a real report entry
    return entry


def report(*resources: dict[str, Any], mode: str = "scan") -> dict[str, Any]:
    return {"run_id": "manual__2026-11-20", "mode": mode, "resources": list(resources)}


def cves(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    """(instance, CVE, status, severity) rows of the inspect stage's table."""
    return pd.DataFrame(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "resource_id": instance,
                "cve_id": cve,
                "patch_ids": "ALAS2023-2026-1134",
                "severity": severity,
                "status": status,
                "reason": "Inspector scanned after the install",
                "finding_arn": f"arn:aws:inspector2:{REGION}:{ACCOUNT}:finding/{cve}",
                "last_scanned_at": pd.Timestamp("2026-11-20T04:00:00Z"),
            }
            for instance, cve, status, severity in rows
        ]
    )


def assert_importable(findings: list[dict[str, Any]]) -> None:
    """Valid against botocore's AwsSecurityFinding shape and the sandbox's ASFF checks."""
    validate_request("securityhub", "BatchImportFindings", {"Findings": findings})
    for finding in findings:
        assert asff_problems(finding, ACCOUNT) == [], finding["Id"]


def test_severity_labels_from_vendor_severities() -> None:
    assert [severity_label(s) for s in ("Critical", "Important", "High", "Moderate", "Medium", "low")] == [
        "CRITICAL",
        "HIGH",
        "HIGH",
        "MEDIUM",
        "MEDIUM",
        "LOW",
    ]
    assert severity_label("Unspecified") == "LOW" and severity_label("") == "LOW"  # a failed check is at least LOW
    assert severity_label("UNTRIAGED", floor="INFORMATIONAL") == "INFORMATIONAL"
    assert worst_severity(["Low", "Moderate", "Important"]) == "HIGH"
    assert worst_severity([]) == "LOW"


def test_non_compliant_instances_become_schema_valid_findings() -> None:
    patches = [patch("ALAS2023-2026-1134", "Critical", ["CVE-2026-21001"]), patch("ALAS2023-2026-1100", "Low")]
    found = build_findings(
        report(resource("i-1", "NON_COMPLIANT", patches), resource("i-2", "COMPLIANT")), None, ACCOUNT, REGION, NOW
    )
    (finding,) = found.findings
    assert_importable(found.findings)
    assert finding["Id"] == finding_id(ACCOUNT, REGION, "i-1", "patch-compliance")
    assert (
        finding["ProductArn"]
        == product_arn(ACCOUNT, REGION)
        == f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default"
    )
    assert finding["GeneratorId"] == PATCH_GENERATOR
    assert finding["Severity"] == {"Label": "CRITICAL", "Original": "Critical"}  # its worst missing patch
    assert finding["FindingProviderFields"] == {"Severity": finding["Severity"], "Types": finding["Types"]}
    assert finding["Compliance"] == {"Status": "FAILED"} and finding["RecordState"] == "ACTIVE"
    assert finding["Resources"] == [
        {
            "Type": "AwsEc2Instance",
            "Id": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1",
            "Partition": "aws",
            "Region": REGION,
        }
    ]
    assert (finding["CreatedAt"], finding["UpdatedAt"], finding["Workflow"]) == (NOW, NOW, {"Status": "NEW"})
    assert "CVE-2026-21001" in finding["Description"] and "ALAS2023-2026-1100" in finding["Description"]
    assert finding["PatchSummary"]["Id"] == "pb-0123456789abcdef0" and finding["PatchSummary"]["MissingCount"] == 2
    # The reason code travels as a product field, so Security Hub filters and counts by it, never by prose.
    assert finding["ProductFields"]["patchcycle/ReasonCode"] == "PATCHES_OUTSTANDING"
    assert "patchcycle/PrePatchSnapshots" not in finding["ProductFields"]  # none taken: left out, never ""
    assert found.fixed_ids == {finding_id(ACCOUNT, REGION, "i-2", "patch-compliance")}


def test_a_rolled_back_instance_s_finding_names_what_failed_and_its_pre_patch_snapshots() -> None:
    rolled_back = {
        **resource("i-1", "NON_COMPLIANT", [patch("ALAS2023-2026-1134", "Critical", ["CVE-2026-21001"])]),
        "verdict": "ROLLED_BACK",
        "reason_code": "ROLLED_BACK_AFTER_INSTALL",
        "reason": "rolled back (root volume restored from snap-1) after: Install Failed",
        "snapshot_ids": ["snap-1", "snap-2"],
    }
    (finding,) = build_findings(report(rolled_back), None, ACCOUNT, REGION, NOW).findings
    assert "rolled back (root volume restored from snap-1) after: Install Failed" in finding["Description"]
    fields = finding["ProductFields"]
    assert (fields["patchcycle/Verdict"], fields["patchcycle/ReasonCode"]) == (
        "ROLLED_BACK",
        "ROLLED_BACK_AFTER_INSTALL",
    )
    assert fields["patchcycle/PrePatchSnapshots"] == "snap-1;snap-2"


def test_long_descriptions_are_cut_to_the_asff_limit() -> None:
    patches = [patch(f"KB50{n:05d}", "Important", [f"CVE-2026-{n:05d}"]) for n in range(80)]
    (finding,) = build_findings(report(resource("i-1", "NON_COMPLIANT", patches)), None, ACCOUNT, REGION, NOW).findings
    assert len(finding["Description"]) == 1024 and finding["Description"].endswith("…")
    assert_importable([finding])


def test_ids_are_stable_and_an_update_keeps_created_at() -> None:
    source = report(resource("i-1", "NON_COMPLIANT", [patch("A", "Medium")]))
    first = build_findings(source, None, ACCOUNT, REGION, NOW)
    later = "2026-12-20T03:00:00Z"
    second = build_findings(source, None, ACCOUNT, REGION, later, created_at_of(first.findings))
    assert first.ids == second.ids
    (updated,) = second.findings
    assert (updated["CreatedAt"], updated["FirstObservedAt"], updated["UpdatedAt"]) == (NOW, NOW, later)
    assert "Workflow" not in updated  # BatchImportFindings cannot change a finding's workflow
    assert_importable(second.findings)


def test_only_this_target_is_published() -> None:
    other_region = resource("i-9", "NON_COMPLIANT", [patch("A", "Low")], region="eu-west-1")
    other_account = resource("i-8", "NON_COMPLIANT", [patch("A", "Low")], account_id="210987654321")
    # RDS DB instances get findings too (tests/core/test_rds_findings.py), of their own target only.
    rds = resource(
        "db-1", "NON_COMPLIANT", [patch("system-update", "")], resource_type="rds", patch_state=None, region="eu-west-1"
    )
    found = build_findings(report(other_region, other_account, rds), None, ACCOUNT, REGION, NOW)
    assert found.findings == [] and found.fixed_ids == set()


def test_still_active_cves_become_findings_and_unverified_neither_counts_nor_resolves() -> None:
    table = cves(
        ("i-1", "CVE-2026-21001", "STILL_ACTIVE", "CRITICAL"),
        ("i-1", "CVE-2026-23001", "REMEDIATED", "HIGH"),
        ("i-2", "CVE-2026-24001", "NOT_FOUND", "MEDIUM"),
        ("i-2", "CVE-2026-25001", "UNVERIFIED", "CRITICAL"),
    )
    found = build_findings(report(mode="install"), table, ACCOUNT, REGION, NOW)
    (finding,) = found.findings
    assert_importable(found.findings)
    assert finding["Id"] == finding_id(ACCOUNT, REGION, "i-1", "CVE-2026-21001")
    assert finding["GeneratorId"] == CVE_GENERATOR and finding["Severity"]["Label"] == "CRITICAL"
    assert (
        finding["Vulnerabilities"][0]["Id"] == "CVE-2026-21001"
        and finding["Vulnerabilities"][0]["FixAvailable"] == "YES"
    )
    assert finding["ProductFields"]["patchcycle/InspectorStatus"] == "STILL_ACTIVE"
    assert finding["ProductFields"]["patchcycle/LastScannedAt"] == "2026-11-20T04:00:00Z"
    assert found.fixed_ids == {
        finding_id(ACCOUNT, REGION, "i-1", "CVE-2026-23001"),
        finding_id(ACCOUNT, REGION, "i-2", "CVE-2026-24001"),
    }


def existing(fid: str, status: str) -> dict[str, Any]:
    return {"Id": fid, "ProductArn": product_arn(ACCOUNT, REGION), "Workflow": {"Status": status}, "CreatedAt": NOW}


def test_reconcile_resolves_only_on_evidence_and_reopens_what_fails_again() -> None:
    ids = {
        name: finding_id(ACCOUNT, REGION, name, "patch-compliance")
        for name in ("fixed", "again", "still", "quiet", "muted", "done")
    }
    current = FindingSet(
        findings=[{"Id": ids["again"]}, {"Id": ids["still"]}, {"Id": "new"}],
        fixed_ids={ids["fixed"], ids["muted"], ids["done"]},
    )
    plan = reconcile(
        [
            existing(ids["fixed"], "NEW"),
            existing(ids["again"], "RESOLVED"),
            existing(ids["still"], "NOTIFIED"),
            existing(ids["quiet"], "NEW"),  # not assessed in this run: left alone
            existing(ids["muted"], "SUPPRESSED"),  # a person's decision: left alone
            existing(ids["done"], "RESOLVED"),
        ],
        current,
    )
    arn = product_arn(ACCOUNT, REGION)
    assert plan.resolve == [{"Id": ids["fixed"], "ProductArn": arn}]
    assert plan.reopen == [{"Id": ids["again"], "ProductArn": arn}]
    assert plan.new_ids == {"new"} and plan.updated_ids == {ids["again"], ids["still"]}
    assert plan.left_alone == 2


def test_own_findings_filter_is_a_valid_get_findings_request() -> None:
    filters = own_findings_filter(ACCOUNT, REGION)
    validate_request("securityhub", "GetFindings", {"Filters": filters, "MaxResults": 100})
    assert {f["Value"] for f in filters["GeneratorId"]} == {PATCH_GENERATOR, CVE_GENERATOR}
    assert {f["Comparison"] for f in filters["GeneratorId"]} == {"EQUALS"}  # ORed: both generators, no other
    assert len(filters) <= 10 and "WorkflowStatus" not in filters  # RESOLVED ones may need reopening


@pytest.mark.parametrize("region, partition", [("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn")])
def test_partitions(region: str, partition: str) -> None:
    entry = resource("i-1", "NON_COMPLIANT", [patch("A", "Low")], region=region)
    (finding,) = build_findings(report(entry), None, ACCOUNT, region, NOW).findings
    assert finding["ProductArn"].startswith(f"arn:{partition}:securityhub:{region}:")
    assert finding["Resources"][0]["Partition"] == partition
    assert json.dumps(finding)  # plain JSON, nothing numpy

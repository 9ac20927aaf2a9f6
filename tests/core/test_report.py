"""report.json: valid against REPORT_SCHEMA, totals that add up, and its CSV form."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import jsonschema
import pytest

from patchcycle.core.report import REPORT_SCHEMA, build_report, report_csv
from patchcycle.core.verdicts import scan_verdicts
from tests.core.test_verdicts import Fleet, scan_fleet

GENERATED_AT = dt.datetime(2026, 11, 20, 3, 30, tzinfo=dt.UTC)
MISSING_PARTS = [
    {
        "aws_conn_id": "aws_prod",
        "region": "ap-south-1",
        "stage": "inventory",
        "error": "AccessDenied: ec2:DescribeInstances",
    }
]


def sample_report(name_of_ok: str = "web-1", drop: str = "") -> dict[str, Any]:
    """The scan report of the test fleet; `drop` removes one resource's verdict."""
    fleet: Fleet = scan_fleet(name_of_ok)
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    verdicts = verdicts[verdicts["resource_id"] != drop]
    return build_report(
        "scheduled__2026-11-20T03:00:00+00:00",
        "scan",
        fleet.inventory,
        verdicts,
        fleet.plan,
        fleet.compliance,
        MISSING_PARTS,
        GENERATED_AT,
    )


def test_report_is_valid_json_against_the_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    report = json.loads(json.dumps(sample_report()))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    assert report["generated_at"] == "2026-11-20T03:30:00Z"
    assert report["incomplete"] == MISSING_PARTS


def test_schema_rejects_a_report_without_accounting() -> None:
    report = sample_report()
    del report["accounting"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, REPORT_SCHEMA)


def test_totals_add_up() -> None:
    report = sample_report()
    totals = report["totals"]
    in_scope = totals["resources_in_scope"]
    assert in_scope == len(report["resources"]) == 11
    assert totals["out_of_scope"] == 1
    for name in ("by_verdict", "by_responsibility", "by_compliance_state"):
        assert sum(totals[name].values()) == in_scope, name
    assert sum(sum(states.values()) for states in totals["by_region"].values()) == in_scope
    assert totals["by_responsibility"] == {"aws": 1, "customer": 8, "shared": 2}
    assert totals["by_verdict"]["NON_COMPLIANT"] == 2
    assert totals["by_compliance_state"] == {"COMPLIANT": 2, "NON_COMPLIANT": 3, "NOT_APPLICABLE": 1, "UNKNOWN": 5}
    ec2_count = sum(1 for r in report["resources"] if r["resource_type"] == "ec2")
    assert sum(sum(states.values()) for states in totals["by_os"].values()) == ec2_count
    ec2_patches = [p for r in report["resources"] if r["resource_type"] == "ec2" for p in r["missing_patches"]]
    assert sum(totals["by_severity"].values()) == len(ec2_patches) == 5
    assert totals["by_severity"] == {"Critical": 1, "Important": 2, "Medium": 1, "Unspecified": 1}
    all_cves = sorted({cve for r in report["resources"] for cve in r["cve_ids"]})
    assert totals["cves"] == {"count": 3, "ids": all_cves}
    assert report["accounting"] == {"in_scope": 11, "sum_of_verdicts": 11, "ok": True, "problems": []}


def test_resource_entries_carry_patches_and_patch_state() -> None:
    resources = {r["resource_id"]: r for r in sample_report()["resources"]}
    missing = resources["i-missing"]
    assert [p["patch_id"] for p in missing["missing_patches"]] == [
        "curl-8.1",
        "kernel-6.1.1",
        "openssl-3.0.9",
        "tzdata",
    ]
    assert missing["cve_ids"] == ["CVE-2026-0001", "CVE-2026-0002", "CVE-2026-0003"]
    assert missing["patch_state"]["missing"] == 3 and missing["patch_state"]["baseline_id"] == "pb-web"
    assert resources["i-nodata"]["patch_state"] is None
    assert resources["orders-db"]["missing_patches"][0]["state"] == "PENDING_MAINTENANCE"
    assert resources["i-ok"]["name"] == "web-1" and resources["i-ok"]["environment"] == "production"


def test_report_states_broken_accounting() -> None:
    report = sample_report(drop="i-nodata")
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["accounting"]["ok"] is False
    assert report["accounting"]["sum_of_verdicts"] == 10
    assert "i-nodata" in report["accounting"]["problems"][0]


def test_unknown_mode_is_rejected() -> None:
    fleet = scan_fleet()
    with pytest.raises(ValueError, match="mode"):
        build_report("r", "yolo", fleet.inventory, fleet.inventory, fleet.plan, fleet.compliance, [], GENERATED_AT)


def test_csv_has_one_line_per_resource() -> None:
    report = sample_report(name_of_ok='=HYPERLINK("http://evil")\nsecond line')
    text = report_csv(report)
    lines = text.splitlines()
    assert len(lines) == 1 + len(report["resources"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["resource_id"] for row in rows] == [r["resource_id"] for r in report["resources"]]
    by_id = {row["resource_id"]: row for row in rows}
    assert by_id["i-missing"]["cve_ids"] == "CVE-2026-0001;CVE-2026-0002;CVE-2026-0003"
    assert by_id["i-missing"]["missing_patches"] == "4"
    assert by_id["i-ok"]["name"].startswith("'=HYPERLINK")  # no spreadsheet formula from a tag value

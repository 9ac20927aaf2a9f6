"""Scan-mode verdicts for every case, the taxonomy, and the accounting identity."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.inventory import combine, ec2_rows, rds_rows, s3_rows
from patchcycle.core.plan import combine_plan, instance_compliance, patch_plan, rds_plan
from patchcycle.core.scope import Scope, apply_scope
from patchcycle.core.verdicts import (
    INSTALL,
    SCAN,
    VERDICT_COLUMNS,
    VERDICTS,
    AccountingError,
    Verdict,
    check_accounting,
    scan_verdicts,
)

ACCOUNT, EAST, WEST = "123456789012", "us-east-1", "eu-west-1"
LAST_PING = dt.datetime(2026, 11, 18, 2, 30, tzinfo=dt.UTC)
SCAN_END = dt.datetime(2026, 11, 20, 3, 5, tzinfo=dt.UTC)


@dataclass
class Fleet:
    """A scanned fleet: the inputs of scan_verdicts and build_report."""

    inventory: pd.DataFrame
    compliance: pd.DataFrame
    plan: pd.DataFrame
    scan_failures: dict[str, str]


def _instance(iid: str, state: str = "running", **tags: str) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "State": {"Name": state},
        "PlatformDetails": "Linux/UNIX",
        "Tags": [{"Key": k, "Value": v} for k, v in {"Environment": "production", **tags}.items()],
    }


def _info(iid: str, ping: str = "Online") -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "PingStatus": ping,
        "LastPingDateTime": LAST_PING,
        "PlatformType": "Linux",
        "PlatformName": "Amazon Linux",
        "PlatformVersion": "2023",
        "AgentVersion": "3.3.987.0",
    }


def _state(iid: str, **counts: int) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "PatchGroup": "web",
        "BaselineId": "pb-web",
        "Operation": "Scan",
        "OperationEndTime": SCAN_END,
        "InstalledCount": 40,
        **counts,
    }


def scan_fleet(name_of_ok: str = "web-1") -> Fleet:
    """Every scan-mode case once, in two regions, plus one out-of-scope instance."""
    instances = [
        _instance("i-ok", Name=name_of_ok),
        _instance("i-missing"),
        _instance("i-reboot"),
        _instance("i-offline"),
        _instance("i-unmanaged"),
        _instance("i-stopped", state="stopped"),
        _instance("i-scanfail"),
        _instance("i-nodata"),
        _instance("i-staging", Environment="staging"),
    ]
    managed = [_info(i["InstanceId"]) for i in instances if i["InstanceId"] not in ("i-unmanaged", "i-offline")]
    managed.append(_info("i-offline", ping="ConnectionLost"))
    db_arn = f"arn:aws:rds:{WEST}:{ACCOUNT}:db:orders-db"
    pending = [{"ResourceIdentifier": db_arn, "PendingMaintenanceActionDetails": [{"Action": "system-update"}]}]
    dbs = [
        {
            "DBInstanceIdentifier": "orders-db",
            "DBInstanceArn": db_arn,
            "Engine": "postgres",
            "TagList": [{"Key": "Environment", "Value": "production"}],
        },
        {
            "DBInstanceIdentifier": "quiet-db",
            "Engine": "mysql",
            "TagList": [{"Key": "Environment", "Value": "production"}],
        },
    ]
    buckets = [{"Name": "assets", "BucketRegion": WEST, "Tags": {"Environment": "production"}}]
    inventory = combine(
        [
            ec2_rows(ACCOUNT, EAST, instances, managed),
            rds_rows(ACCOUNT, WEST, dbs, pending),
            s3_rows(ACCOUNT, WEST, buckets),
        ]
    )
    inventory = apply_scope(inventory, Scope(include_tags={"Environment": ["production"]}))
    states = [
        _state("i-ok"),
        _state("i-missing", MissingCount=3, FailedCount=1, CriticalNonCompliantCount=1),
        _state("i-reboot", InstalledPendingRebootCount=2),
        _state("i-scanfail"),
    ]
    patches = {
        "i-missing": [
            {
                "KBId": "kernel-6.1.1",
                "Title": "kernel",
                "Classification": "Security",
                "Severity": "Critical",
                "State": "MISSING",
                "CVEIds": "CVE-2026-0001,CVE-2026-0002",
            },
            {
                "KBId": "openssl-3.0.9",
                "Title": "openssl",
                "Classification": "Security",
                "Severity": "Important",
                "State": "MISSING",
                "CVEIds": "CVE-2026-0002",
            },
            {"KBId": "tzdata", "Title": "tzdata", "Classification": "Bugfix", "Severity": "", "State": "MISSING"},
            {
                "KBId": "curl-8.1",
                "Title": "curl",
                "Classification": "Security",
                "Severity": "Medium",
                "State": "FAILED",
                "CVEIds": "CVE-2026-0003",
            },
        ],
        "i-reboot": [
            {
                "KBId": "glibc",
                "Title": "glibc",
                "Classification": "Security",
                "Severity": "Important",
                "State": "INSTALLED_PENDING_REBOOT",
            },
        ],
    }
    plan = combine_plan([patch_plan(states, patches, inventory), rds_plan(pending)])
    return Fleet(inventory, instance_compliance(states), plan, {"i-scanfail": "exit code 1"})


EXPECTED = {
    "i-ok": (Verdict.ALREADY_COMPLIANT, "no missing patches (last Scan 2026-11-20T03:05:00Z)"),
    "i-missing": (Verdict.NON_COMPLIANT, "3 missing patches, 1 failed patch (1 critical), 3 CVEs"),
    "i-reboot": (Verdict.NON_COMPLIANT, "2 patches pending reboot"),
    "i-offline": (Verdict.SKIPPED_OFFLINE, "offline: SSM Agent ConnectionLost since 2026-11-18T02:30:00Z"),
    "i-unmanaged": (Verdict.SKIPPED_UNMANAGED, "unmanaged: not registered with Systems Manager"),
    "i-stopped": (Verdict.SKIPPED_STOPPED, "instance is stopped"),
    "i-scanfail": (Verdict.SCAN_FAILED, "scan command failed: exit code 1"),
    "i-nodata": (Verdict.NO_DATA, "managed and Online, but Patch Manager reported no patch state"),
    "orders-db": (Verdict.MAINTENANCE_PENDING, "1 pending maintenance action: system-update"),
    "quiet-db": (Verdict.ALREADY_COMPLIANT, "no pending maintenance actions"),
    "assets": (Verdict.AWS_MANAGED, "AWS-managed: patched by AWS, listed only"),
}


def test_scan_verdicts_cover_every_scan_mode_case() -> None:
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    assert list(verdicts.columns) == list(VERDICT_COLUMNS)
    got = {row.resource_id: (row.verdict, row.reason) for row in verdicts.itertuples()}
    assert got == {rid: (verdict.value, reason) for rid, (verdict, reason) in EXPECTED.items()}
    assert "i-staging" not in got  # out of scope: counted apart, no verdict
    by_id = verdicts.set_index("resource_id")
    assert by_id.loc["orders-db", "responsibility"] == "shared"
    assert by_id.loc["assets", "responsibility"] == "aws"
    assert by_id.loc["assets", "region"] == WEST
    check_accounting(fleet.inventory, verdicts)


def test_scan_failures_as_a_set_of_ids() -> None:
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, {"i-scanfail", "i-ok"})
    reasons = verdicts.set_index("resource_id")["reason"]
    assert reasons["i-scanfail"] == reasons["i-ok"] == "scan command failed"


def test_scan_verdicts_need_the_scope_applied() -> None:
    fleet = scan_fleet()
    with pytest.raises(ValueError, match="apply_scope"):
        scan_verdicts(fleet.inventory.drop(columns="in_scope"), fleet.compliance, fleet.plan, set())


def test_taxonomy_documents_every_verdict_and_scan_mode_cases() -> None:
    assert set(VERDICTS) == set(Verdict)
    assert all(info.meaning and info.modes <= {SCAN, INSTALL} for info in VERDICTS.values())
    scan_mode = {verdict for verdict, info in VERDICTS.items() if SCAN in info.modes}
    assert {verdict for verdict, _ in EXPECTED.values()} <= scan_mode
    assert Verdict.PATCHED not in scan_mode and Verdict.NON_COMPLIANT not in {
        v for v, info in VERDICTS.items() if INSTALL in info.modes
    }


def test_accounting_detects_a_dropped_and_a_duplicated_resource() -> None:
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    dropped = verdicts[verdicts["resource_id"] != "i-nodata"]
    with pytest.raises(AccountingError, match=r"without a verdict: \['123456789012/us-east-1/ec2/i-nodata'\]"):
        check_accounting(fleet.inventory, dropped)
    duplicated = pd.concat([verdicts, verdicts[verdicts["resource_id"] == "assets"]], ignore_index=True)
    with pytest.raises(AccountingError, match=r"more than one verdict.*assets"):
        check_accounting(fleet.inventory, duplicated)
    # Same count, wrong resources: one dropped and one duplicated still fails.
    swapped = pd.concat([dropped, verdicts[verdicts["resource_id"] == "i-ok"]], ignore_index=True)
    assert len(swapped) == len(verdicts)
    with pytest.raises(ValueError, match="i-nodata"):
        check_accounting(fleet.inventory, swapped)

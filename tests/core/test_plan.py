"""Patch matching: plan rows, CVE handling, RDS maintenance rows and per-instance compliance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.inventory import ec2_rows
from patchcycle.core.plan import (
    COMPLIANCE_COLUMNS,
    PLAN_COLUMNS,
    combine_plan,
    instance_compliance,
    parse_cve_ids,
    patch_plan,
    rds_plan,
    split_cve_ids,
)

ACCOUNT, REGION = "123456789012", "us-east-1"
END = dt.datetime(2026, 11, 20, 3, 5, tzinfo=dt.UTC)


def _inventory() -> pd.DataFrame:
    instances = [
        {"InstanceId": iid, "State": {"Name": "running"}, "Tags": [{"Key": "PatchGroup", "Value": "web"}]}
        for iid in ("i-a", "i-b")
    ]
    return ec2_rows(ACCOUNT, REGION, instances, [])


def patch(kb: str, state: str, severity: str = "Important", cves: Any = None, **extra: Any) -> dict[str, Any]:
    """A DescribeInstancePatches PatchComplianceData dict."""
    item = {"KBId": kb, "Title": f"{kb} title", "Classification": "Security", "Severity": severity, "State": state}
    if cves is not None:
        item["CVEIds"] = cves
    return {**item, **extra}


def state(instance_id: str, **counts: Any) -> dict[str, Any]:
    """A DescribeInstancePatchStates item."""
    return {
        "InstanceId": instance_id,
        "PatchGroup": "web",
        "BaselineId": "pb-0123456789abcdef0",
        "Operation": "Scan",
        "OperationStartTime": END - dt.timedelta(minutes=5),
        "OperationEndTime": END,
        **counts,
    }


def _check_schema(frame: pd.DataFrame, columns: dict[str, str]) -> None:
    assert list(frame.columns) == list(columns)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == columns


def test_patch_plan_keeps_outstanding_states_only() -> None:
    patches = {
        "i-a": [
            patch("kernel-6.1.1", "MISSING", "Critical", cves="CVE-2026-0002,CVE-2026-0001, CVE-2026-0002"),
            patch("openssl-3.0.9", "FAILED", cves="CVE-2026-0003"),
            patch("glibc-2.34", "INSTALLED_PENDING_REBOOT"),
            patch("curl-8.1", "INSTALLED"),
            patch("vim-9", "NOT_APPLICABLE"),
            patch("bash-5", "INSTALLED_OTHER"),
        ],
        "i-b": [patch("KB5031364", "MISSING", ReleaseDate="2026-11-11T18:00:00Z")],
    }
    plan = patch_plan([state("i-a", BaselineId="pb-web")], patches, _inventory())
    _check_schema(plan, dict(PLAN_COLUMNS))
    assert list(zip(plan["resource_id"], plan["patch_id"], plan["state"], strict=True)) == [
        ("i-a", "glibc-2.34", "INSTALLED_PENDING_REBOOT"),
        ("i-a", "kernel-6.1.1", "MISSING"),
        ("i-a", "openssl-3.0.9", "FAILED"),
        ("i-b", "KB5031364", "MISSING"),
    ]
    rows = plan.set_index("patch_id")
    assert rows.loc["kernel-6.1.1", "cve_ids"] == "CVE-2026-0001;CVE-2026-0002"
    assert rows.loc["glibc-2.34", "cve_ids"] == ""
    assert rows.loc["kernel-6.1.1", "severity"] == "Critical"
    assert set(plan["account_id"]) == {ACCOUNT} and set(plan["region"]) == {REGION}
    assert set(plan["resource_type"]) == {"ec2"}
    assert rows.loc["kernel-6.1.1", "baseline_id"] == "pb-web"
    assert rows.loc["KB5031364", "patch_group"] == "web"  # no patch state: the instance's tag
    assert rows.loc["KB5031364", "release_date"] == pd.Timestamp("2026-11-11T18:00:00Z")
    assert pd.isna(rows.loc["kernel-6.1.1", "release_date"])


def test_patch_plan_rejects_instances_the_inventory_does_not_know() -> None:
    with pytest.raises(ValueError, match="i-ghost"):
        patch_plan([], {"i-ghost": [patch("x", "MISSING")]}, _inventory())


def test_cve_parsing() -> None:
    assert parse_cve_ids("CVE-2026-2,CVE-2026-1 ,,CVE-2026-2") == ["CVE-2026-1", "CVE-2026-2"]
    assert parse_cve_ids(["CVE-2026-9", "CVE-2026-8"]) == ["CVE-2026-8", "CVE-2026-9"]
    assert parse_cve_ids(None) == [] and parse_cve_ids("") == []
    assert split_cve_ids("CVE-2026-1;CVE-2026-2") == ["CVE-2026-1", "CVE-2026-2"]
    assert split_cve_ids("") == []


def test_rds_plan_rows_from_pending_maintenance() -> None:
    pending: list[dict[str, Any]] = [
        {
            "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-db",
            "PendingMaintenanceActionDetails": [
                {
                    "Action": "system-update",
                    "Description": "New Operating System update is available",
                    "AutoAppliedAfterDate": dt.datetime(2026, 12, 15, tzinfo=dt.UTC),
                    "CurrentApplyDate": dt.datetime(2026, 12, 15, tzinfo=dt.UTC),
                },
                {"Action": "db-upgrade", "Description": "Upgrade to 16.4", "ForcedApplyDate": "2027-01-31T00:00:00Z"},
            ],
        },
        {
            "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:aurora-1",
            "PendingMaintenanceActionDetails": [{"Action": "system-update"}],
        },
    ]
    plan = rds_plan(pending)
    _check_schema(plan, dict(PLAN_COLUMNS))
    # an Aurora DB cluster's cluster-level action is a row of its own, named by the cluster's identifier
    assert list(zip(plan["resource_id"], plan["patch_id"], strict=True)) == [
        ("aurora-1", "system-update"),
        ("orders-db", "db-upgrade"),
        ("orders-db", "system-update"),
    ]
    assert set(plan["resource_type"]) == {"rds"}
    assert set(plan["classification"]) == {"rds-maintenance"}
    assert set(plan["state"]) == {"PENDING_MAINTENANCE"}
    rows = plan[plan["resource_id"] == "orders-db"].set_index("patch_id")
    assert rows.loc["system-update", "title"] == "New Operating System update is available"
    assert rows.loc["system-update", "auto_applied_after"] == pd.Timestamp("2026-12-15", tz="UTC")
    assert rows.loc["db-upgrade", "forced_apply_date"] == pd.Timestamp("2027-01-31", tz="UTC")
    assert pd.isna(rows.loc["db-upgrade", "auto_applied_after"])


def test_combined_plan_round_trips_through_parquet(tmp_path: Path) -> None:
    ec2 = patch_plan([], {"i-a": [patch("k", "MISSING", cves="CVE-2026-1,CVE-2026-2")]}, _inventory())
    rds = rds_plan(
        [
            {
                "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:db-1",
                "PendingMaintenanceActionDetails": [{"Action": "system-update"}],
            }
        ]
    )
    plan = combine_plan([ec2, rds])
    _check_schema(plan, dict(PLAN_COLUMNS))
    plan.to_parquet(tmp_path / "plan.parquet")
    back = pd.read_parquet(tmp_path / "plan.parquet")
    assert split_cve_ids(back.loc[back["patch_id"] == "k", "cve_ids"].item()) == ["CVE-2026-1", "CVE-2026-2"]
    assert str(back["release_date"].dtype) == "datetime64[us, UTC]"
    _check_schema(combine_plan([]), dict(PLAN_COLUMNS))


def test_instance_compliance_counts_and_latest_state_wins() -> None:
    states = [
        state(
            "i-a",
            MissingCount=3,
            FailedCount=1,
            InstalledPendingRebootCount=2,
            InstalledCount=40,
            CriticalNonCompliantCount=1,
            SecurityNonCompliantCount=3,
            OtherNonCompliantCount=2,
        ),
        state("i-b", InstalledCount=12, OperationEndTime=END - dt.timedelta(days=1), MissingCount=9),
        state("i-b", InstalledCount=21),
    ]
    compliance = instance_compliance(states)
    _check_schema(compliance, dict(COMPLIANCE_COLUMNS))
    rows = compliance.set_index("resource_id")
    assert rows.loc["i-a", ["missing", "failed", "installed_pending_reboot", "installed"]].tolist() == [3, 1, 2, 40]
    assert rows.loc["i-a", ["critical_non_compliant", "security_non_compliant", "other_non_compliant"]].tolist() == [
        1,
        3,
        2,
    ]
    assert rows.loc["i-b", "installed"] == 21 and rows.loc["i-b", "missing"] == 0
    assert rows.loc["i-a", "operation"] == "Scan"
    assert rows.loc["i-a", "operation_end_time"] == pd.Timestamp(END)
    assert rows.loc["i-a", "baseline_id"] == "pb-0123456789abcdef0"
    assert len(instance_compliance([])) == 0

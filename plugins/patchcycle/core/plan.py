"""Patch matching: which patches each resource still needs, and each instance's compliance counts.

The plan has one row per (resource, outstanding patch): EC2 patches Patch Manager reports as MISSING,
FAILED or INSTALLED_PENDING_REBOOT (`patch_plan`), and RDS pending maintenance actions (`rds_plan`).
Both return PLAN_COLUMNS, so `combine_plan` can stack them.

CVE ids are stored parquet-friendly as one `;`-joined string of distinct ids, sorted ("" when none):
`split_cve_ids` turns it back into a list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import UTC_TIMESTAMP, typed_frame
from patchcycle.core.timestamps import utc_timestamp

# Patch Manager patch states that leave an instance non-compliant and so belong in the plan.
OUTSTANDING_STATES: Final = ("MISSING", "FAILED", "INSTALLED_PENDING_REBOOT")
RDS_MAINTENANCE_CLASSIFICATION: Final = "rds-maintenance"
RDS_MAINTENANCE_STATE: Final = "PENDING_MAINTENANCE"

PLAN_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_type": "str",  # ec2 | rds
    "resource_id": "str",
    "patch_id": "str",  # EC2: KBId; RDS: the maintenance action (e.g. system-update)
    "title": "str",  # EC2: patch title; RDS: the action's description
    "classification": "str",  # e.g. Security, Bugfix, SecurityUpdates; RDS: rds-maintenance
    "severity": "str",  # e.g. Critical, Important, Medium; "" when not reported
    "state": "str",  # MISSING | FAILED | INSTALLED_PENDING_REBOOT | PENDING_MAINTENANCE
    "cve_ids": "str",  # distinct CVE ids, sorted, ";"-joined; "" when none (see split_cve_ids)
    "release_date": UTC_TIMESTAMP,  # NaT unless the patch record carries ReleaseDate
    "patch_group": "str",  # EC2: the instance's patch group (its patch state, else its tag)
    "baseline_id": "str",  # EC2: the baseline the instance was scanned against
    "auto_applied_after": UTC_TIMESTAMP,  # RDS: AutoAppliedAfterDate
    "forced_apply_date": UTC_TIMESTAMP,  # RDS: ForcedApplyDate
    "current_apply_date": UTC_TIMESTAMP,  # RDS: CurrentApplyDate
}

COMPLIANCE_COLUMNS: Final[Mapping[str, str]] = {
    "resource_id": "str",  # instance id
    "missing": "int64",
    "failed": "int64",
    "installed_pending_reboot": "int64",
    "installed": "int64",
    "installed_other": "int64",
    "installed_rejected": "int64",
    "not_applicable": "int64",
    "critical_non_compliant": "int64",
    "security_non_compliant": "int64",
    "other_non_compliant": "int64",
    "operation": "str",  # Scan | Install
    "operation_end_time": UTC_TIMESTAMP,
    "baseline_id": "str",
    "patch_group": "str",
}

# DescribeInstancePatchStates member -> compliance column.
_COUNTS: Final = {
    "MissingCount": "missing",
    "FailedCount": "failed",
    "InstalledPendingRebootCount": "installed_pending_reboot",
    "InstalledCount": "installed",
    "InstalledOtherCount": "installed_other",
    "InstalledRejectedCount": "installed_rejected",
    "NotApplicableCount": "not_applicable",
    "CriticalNonCompliantCount": "critical_non_compliant",
    "SecurityNonCompliantCount": "security_non_compliant",
    "OtherNonCompliantCount": "other_non_compliant",
}

_CVE_SEPARATORS = re.compile(r"[\s,;]+")


def parse_cve_ids(value: Any) -> list[str]:
    """Distinct CVE ids, sorted, from PatchComplianceData.CVEIds (a comma-separated string) or a list."""
    if value is None:
        return []
    parts = _CVE_SEPARATORS.split(value) if isinstance(value, str) else [str(part) for part in value]
    return sorted({part.strip() for part in parts if part.strip()})


def split_cve_ids(joined: str) -> list[str]:
    """The CVE ids of a plan row's `cve_ids` (";"-joined) as a list."""
    return [part for part in joined.split(";") if part] if joined else []


def patch_plan(
    states: list[dict[str, Any]], patches: Mapping[str, list[dict[str, Any]]], inventory: pd.DataFrame
) -> pd.DataFrame:
    """EC2 plan rows: one per (instance, patch) in state MISSING, FAILED or INSTALLED_PENDING_REBOOT.

    `states` are DescribeInstancePatchStates items (for patch group and baseline), `patches` maps
    instance id -> DescribeInstancePatches items (PatchComplianceData; an optional "ReleaseDate", e.g.
    joined from DescribeAvailablePatches, fills release_date). Account and region come from the
    inventory's ec2 rows; an instance the inventory does not know raises ValueError.
    """
    ec2 = inventory[inventory["resource_type"] == "ec2"]
    where = {
        str(rid): (str(acct), str(region), str(group))
        for rid, acct, region, group in zip(
            ec2["resource_id"], ec2["account_id"], ec2["region"], ec2["patch_group"], strict=True
        )
    }
    state_by_id = {str(state["InstanceId"]): state for state in states}
    unknown = sorted(set(patches) - set(where))
    if unknown:
        raise ValueError(f"patches reported for {len(unknown)} instance(s) not in the inventory: {unknown[:10]}")
    rows = []
    for instance_id, items in patches.items():
        account_id, region, tag_group = where[instance_id]
        state = state_by_id.get(instance_id, {})
        for patch in items:
            if patch.get("State") not in OUTSTANDING_STATES:
                continue
            rows.append(
                {
                    "account_id": account_id,
                    "region": region,
                    "resource_type": "ec2",
                    "resource_id": instance_id,
                    "patch_id": str(patch.get("KBId", "")),
                    "title": str(patch.get("Title", "")),
                    "classification": str(patch.get("Classification", "")),
                    "severity": str(patch.get("Severity", "")),
                    "state": str(patch["State"]),
                    "cve_ids": ";".join(parse_cve_ids(patch.get("CVEIds"))),
                    "release_date": utc_timestamp(patch.get("ReleaseDate")),
                    "patch_group": str(state.get("PatchGroup") or tag_group),
                    "baseline_id": str(state.get("BaselineId", "")),
                }
            )
    return _sorted(typed_frame(rows, PLAN_COLUMNS))


def rds_plan(pending: list[dict[str, Any]]) -> pd.DataFrame:
    """RDS plan rows: one per pending maintenance action of a DB instance or an Aurora DB cluster.

    `pending` is DescribePendingMaintenanceActions' ResourcePendingMaintenanceActions; account, region
    and DB instance (":db:") or DB cluster (":cluster:") identifier come from the ResourceIdentifier ARN.
    """
    rows = []
    for item in pending:
        arn_parts = str(item["ResourceIdentifier"]).split(":")
        if len(arn_parts) < 7 or arn_parts[5] not in ("db", "cluster"):
            continue
        region, account_id, identifier = arn_parts[3], arn_parts[4], ":".join(arn_parts[6:])
        for action in item.get("PendingMaintenanceActionDetails", []):
            rows.append(
                {
                    "account_id": account_id,
                    "region": region,
                    "resource_type": "rds",
                    "resource_id": identifier,
                    "patch_id": str(action.get("Action", "")),
                    "title": str(action.get("Description", "")),
                    "classification": RDS_MAINTENANCE_CLASSIFICATION,
                    "state": RDS_MAINTENANCE_STATE,
                    "auto_applied_after": utc_timestamp(action.get("AutoAppliedAfterDate")),
                    "forced_apply_date": utc_timestamp(action.get("ForcedApplyDate")),
                    "current_apply_date": utc_timestamp(action.get("CurrentApplyDate")),
                }
            )
    return _sorted(typed_frame(rows, PLAN_COLUMNS))


def empty_plan() -> pd.DataFrame:
    """A plan with no rows and the documented dtypes."""
    return typed_frame([], PLAN_COLUMNS)


def combine_plan(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One plan from several (e.g. patch_plan and rds_plan, per region), dtypes kept."""
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return empty_plan()
    return _sorted(pd.concat(frames, ignore_index=True).astype(dict(PLAN_COLUMNS)))


def _sorted(plan: pd.DataFrame) -> pd.DataFrame:
    return plan.sort_values(["account_id", "region", "resource_id", "patch_id"], ignore_index=True)


def instance_compliance(states: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per instance from DescribeInstancePatchStates items: patch counts and the last operation.

    An instance listed twice keeps the state with the latest OperationEndTime.
    """
    rows = []
    for state in states:
        row: dict[str, Any] = {column: int(state.get(member) or 0) for member, column in _COUNTS.items()}
        row.update(
            resource_id=str(state["InstanceId"]),
            operation=str(state.get("Operation", "")),
            operation_end_time=utc_timestamp(state.get("OperationEndTime")),
            baseline_id=str(state.get("BaselineId", "")),
            patch_group=str(state.get("PatchGroup", "")),
        )
        rows.append(row)
    frame = typed_frame(rows, COMPLIANCE_COLUMNS)
    frame = frame.sort_values(["resource_id", "operation_end_time"], na_position="first")
    return frame.drop_duplicates("resource_id", keep="last").reset_index(drop=True)

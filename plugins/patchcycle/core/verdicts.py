"""Every in-scope resource ends a run with exactly one verdict from VERDICTS.

The report checks `in scope = sum of verdicts` (check_accounting): nothing is silently dropped.
Resources out of scope get no verdict; they are counted apart (inventory `in_scope` False).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from patchcycle.core.inventory import KEY_COLUMNS, UNMANAGED_REASON, iso_utc, typed_frame
from patchcycle.core.plan import split_cve_ids


class Verdict(StrEnum):
    """The verdict vocabulary; VERDICTS documents each."""

    ALREADY_COMPLIANT = "ALREADY_COMPLIANT"
    NON_COMPLIANT = "NON_COMPLIANT"
    PATCHED = "PATCHED"
    PATCHED_PENDING_REBOOT = "PATCHED_PENDING_REBOOT"
    FAILED = "FAILED"
    SKIPPED_OFFLINE = "SKIPPED_OFFLINE"
    SKIPPED_UNMANAGED = "SKIPPED_UNMANAGED"
    SKIPPED_STOPPED = "SKIPPED_STOPPED"
    SKIPPED_EXCLUDED = "SKIPPED_EXCLUDED"
    SKIPPED_HALTED = "SKIPPED_HALTED"
    SKIPPED_REJECTED = "SKIPPED_REJECTED"
    SCAN_FAILED = "SCAN_FAILED"
    MAINTENANCE_PENDING = "MAINTENANCE_PENDING"
    AWS_MANAGED = "AWS_MANAGED"
    NO_DATA = "NO_DATA"


class ComplianceState(StrEnum):
    """What a verdict says about a resource's compliance, for the report's totals."""

    COMPLIANT = "COMPLIANT"
    NON_COMPLIANT = "NON_COMPLIANT"
    UNKNOWN = "UNKNOWN"  # not assessed in this run
    NOT_APPLICABLE = "NOT_APPLICABLE"  # AWS-managed: nothing for the customer to patch


@dataclass(frozen=True)
class VerdictInfo:
    """One verdict's meaning, the run modes that give it, and the compliance state it implies."""

    meaning: str
    modes: frozenset[str]
    compliance: ComplianceState


SCAN, INSTALL = "scan", "install"
_BOTH = frozenset({SCAN, INSTALL})
_C, _N, _U, _NA = (
    ComplianceState.COMPLIANT,
    ComplianceState.NON_COMPLIANT,
    ComplianceState.UNKNOWN,
    ComplianceState.NOT_APPLICABLE,
)

VERDICTS: Final[Mapping[Verdict, VerdictInfo]] = {
    Verdict.ALREADY_COMPLIANT: VerdictInfo("nothing missing: no patch (or RDS maintenance) outstanding", _BOTH, _C),
    Verdict.NON_COMPLIANT: VerdictInfo(
        "patches missing, failed or pending reboot; scan mode reports, does not install", frozenset({SCAN}), _N
    ),
    Verdict.PATCHED: VerdictInfo("this run installed the planned patches and verified them", frozenset({INSTALL}), _C),
    Verdict.PATCHED_PENDING_REBOOT: VerdictInfo(
        "this run installed the patches; a reboot is still needed for them to take effect", frozenset({INSTALL}), _N
    ),
    Verdict.FAILED: VerdictInfo("this run's patch install failed (reason says why)", frozenset({INSTALL}), _N),
    Verdict.SKIPPED_OFFLINE: VerdictInfo("SSM Agent not Online (ConnectionLost/Inactive): not reachable", _BOTH, _U),
    Verdict.SKIPPED_UNMANAGED: VerdictInfo("not registered with Systems Manager: cannot be scanned", _BOTH, _U),
    Verdict.SKIPPED_STOPPED: VerdictInfo("instance stopped: cannot be scanned or patched", _BOTH, _U),
    Verdict.SKIPPED_EXCLUDED: VerdictInfo(
        "in scope but excluded from installing during the run (e.g. by the approver)", frozenset({INSTALL}), _U
    ),
    Verdict.SKIPPED_HALTED: VerdictInfo(
        "its wave never ran: an earlier wave passed the error threshold", frozenset({INSTALL}), _U
    ),
    Verdict.SKIPPED_REJECTED: VerdictInfo(
        "the approval gate rejected (or timed out) before its wave", frozenset({INSTALL}), _U
    ),
    Verdict.SCAN_FAILED: VerdictInfo("the Patch Manager scan command failed on it (reason says how)", _BOTH, _U),
    Verdict.MAINTENANCE_PENDING: VerdictInfo(
        "RDS: AWS has maintenance actions pending, for the customer to schedule", _BOTH, _N
    ),
    Verdict.AWS_MANAGED: VerdictInfo("fully AWS-managed (S3): listed, never patched by the customer", _BOTH, _NA),
    Verdict.NO_DATA: VerdictInfo("managed and Online but Patch Manager reported no patch state", _BOTH, _U),
}

VERDICT_COLUMNS: Final[Mapping[str, str]] = {
    "resource_id": "str",
    "resource_type": "str",
    "account_id": "str",
    "region": "str",
    "responsibility": "str",
    "verdict": "str",  # a Verdict value
    "reason": "str",  # human-readable, e.g. "3 missing patches (1 critical), 5 CVEs"
}


class AccountingError(ValueError):
    """In-scope resources and verdicts do not match one to one."""


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _non_compliant_reason(compliance: Mapping[str, Any], cve_count: int) -> str:
    """E.g. "3 missing patches (1 critical), 1 failed patch, 5 CVEs"."""
    parts = []
    if compliance["missing"]:
        parts.append(_plural(int(compliance["missing"]), "missing patch", "missing patches"))
    if compliance["failed"]:
        parts.append(_plural(int(compliance["failed"]), "failed patch", "failed patches"))
    if compliance["installed_pending_reboot"]:
        parts.append(_plural(int(compliance["installed_pending_reboot"]), "patch", "patches") + " pending reboot")
    text = ", ".join(parts)
    if compliance["critical_non_compliant"]:
        text += f" ({int(compliance['critical_non_compliant'])} critical)"
    if cve_count:
        text += f", {_plural(cve_count, 'CVE')}"
    return text


def _ec2_verdict(
    resource: Mapping[str, Any],
    compliance: Mapping[str, Any] | None,
    patches: list[Mapping[str, Any]],
    scan_failures: Mapping[str, str],
) -> tuple[Verdict, str]:
    """The scan-mode verdict of one EC2 instance; the first matching rule wins."""
    resource_id = str(resource["resource_id"])
    if resource["state"] in ("stopped", "stopping"):
        return Verdict.SKIPPED_STOPPED, f"instance is {resource['state']}"
    if not resource["managed"]:
        return Verdict.SKIPPED_UNMANAGED, UNMANAGED_REASON
    if resource["ping_status"] != "Online":
        return Verdict.SKIPPED_OFFLINE, str(resource["skip_reason"]) or f"SSM Agent {resource['ping_status']}"
    if resource_id in scan_failures:
        detail = scan_failures[resource_id]
        return Verdict.SCAN_FAILED, f"scan command failed: {detail}" if detail else "scan command failed"
    if compliance is None:
        return Verdict.NO_DATA, "managed and Online, but Patch Manager reported no patch state"
    if compliance["missing"] or compliance["failed"] or compliance["installed_pending_reboot"]:
        cves = {cve for patch in patches for cve in split_cve_ids(str(patch["cve_ids"]))}
        return Verdict.NON_COMPLIANT, _non_compliant_reason(compliance, len(cves))
    last = iso_utc(compliance["operation_end_time"])
    return Verdict.ALREADY_COMPLIANT, "no missing patches" + (
        f" (last {compliance['operation']} {last})" if last else ""
    )


def _rds_verdict(resource: Mapping[str, Any], actions: list[Mapping[str, Any]]) -> tuple[Verdict, str]:
    """MAINTENANCE_PENDING when the DB instance has pending actions, else ALREADY_COMPLIANT."""
    count = int(resource["pending_actions"])
    if not count:
        return Verdict.ALREADY_COMPLIANT, "no pending maintenance actions"
    names = sorted({str(action["patch_id"]) for action in actions})
    listed = f": {', '.join(names)}" if names else ""
    return Verdict.MAINTENANCE_PENDING, _plural(count, "pending maintenance action") + listed


def scan_verdicts(
    inventory: pd.DataFrame,
    compliance: pd.DataFrame,
    plan: pd.DataFrame,
    scan_failures: Set[str] | Mapping[str, str],
) -> pd.DataFrame:
    """Scan-mode verdicts (VERDICT_COLUMNS): one row per in-scope resource of the inventory.

    inventory: with `in_scope` (scope.apply_scope); compliance: plan.instance_compliance; plan:
    patch_plan + rds_plan rows; scan_failures: instance ids whose scan command failed, or
    {instance id: detail} (e.g. "exit code 1") to name how.
    """
    if "in_scope" not in inventory.columns:
        raise ValueError("inventory has no in_scope column: apply the scope first (scope.apply_scope)")
    failures = dict(scan_failures) if isinstance(scan_failures, Mapping) else dict.fromkeys(scan_failures, "")
    compliance_by_id = {str(row["resource_id"]): row for row in compliance.to_dict("records")}
    plan_by_key: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for row in plan.to_dict("records"):
        key = (str(row["account_id"]), str(row["region"]), str(row["resource_type"]), str(row["resource_id"]))
        plan_by_key.setdefault(key, []).append(row)
    rows = []
    for resource in inventory[inventory["in_scope"]].to_dict("records"):
        key = (
            str(resource["account_id"]),
            str(resource["region"]),
            str(resource["resource_type"]),
            str(resource["resource_id"]),
        )
        planned = plan_by_key.get(key, [])
        if resource["resource_type"] == "ec2":
            verdict, reason = _ec2_verdict(resource, compliance_by_id.get(key[3]), planned, failures)
        elif resource["resource_type"] == "rds":
            verdict, reason = _rds_verdict(resource, planned)
        elif resource["resource_type"] == "s3":
            verdict, reason = Verdict.AWS_MANAGED, "AWS-managed: patched by AWS, listed only"
        else:
            raise ValueError(f"unknown resource_type {resource['resource_type']!r} for {key[3]}")
        rows.append({column: resource[column] for column in VERDICT_COLUMNS if column in resource})
        rows[-1].update(verdict=verdict.value, reason=reason)
    return typed_frame(rows, VERDICT_COLUMNS)


def accounting_problems(inventory: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """What breaks `in scope = sum of verdicts`: missing, duplicated and out-of-scope verdicts ([] if none)."""
    in_scope = inventory[inventory["in_scope"]] if "in_scope" in inventory.columns else inventory
    scoped = {"/".join(map(str, key)) for key in in_scope[list(KEY_COLUMNS)].itertuples(index=False)}
    counts = Counter("/".join(map(str, key)) for key in verdicts[list(KEY_COLUMNS)].itertuples(index=False))
    problems = []
    missing = sorted(scoped - set(counts))
    if missing:
        problems.append(f"{len(missing)} in-scope resource(s) without a verdict: {missing[:10]}")
    duplicated = sorted(key for key, count in counts.items() if count > 1)
    if duplicated:
        problems.append(f"{len(duplicated)} resource(s) with more than one verdict: {duplicated[:10]}")
    extra = sorted(set(counts) - scoped)
    if extra:
        problems.append(f"{len(extra)} verdict(s) for resources not in scope: {extra[:10]}")
    unknown = sorted(set(verdicts["verdict"]) - {verdict.value for verdict in Verdict})
    if unknown:
        problems.append(f"unknown verdict(s): {unknown}")
    return problems


def check_accounting(inventory: pd.DataFrame, verdicts: pd.DataFrame) -> None:
    """Raise AccountingError (a ValueError) unless every in-scope resource has exactly one verdict."""
    problems = accounting_problems(inventory, verdicts)
    if problems:
        in_scope = int(inventory["in_scope"].sum()) if "in_scope" in inventory.columns else len(inventory)
        raise AccountingError(
            f"accounting failed (in scope {in_scope}, sum of verdicts {len(verdicts)}): " + "; ".join(problems)
        )

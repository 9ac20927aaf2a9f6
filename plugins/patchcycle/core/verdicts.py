"""Every in-scope resource ends a run with exactly one verdict from VERDICTS.

The report checks `in scope = sum of verdicts` (check_accounting): nothing is silently dropped.
Resources out of scope get no verdict; they are counted apart (inventory `in_scope` False).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.inventory import KEY_COLUMNS, UNMANAGED_REASON
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.timestamps import iso_utc


class Verdict(StrEnum):
    """The verdict vocabulary; VERDICTS documents each."""

    ALREADY_COMPLIANT = "ALREADY_COMPLIANT"
    NON_COMPLIANT = "NON_COMPLIANT"
    PATCHED = "PATCHED"
    PATCHED_PENDING_REBOOT = "PATCHED_PENDING_REBOOT"
    REPLACED = "REPLACED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    SKIPPED_OFFLINE = "SKIPPED_OFFLINE"
    SKIPPED_UNMANAGED = "SKIPPED_UNMANAGED"
    SKIPPED_STOPPED = "SKIPPED_STOPPED"
    SKIPPED_EXCLUDED = "SKIPPED_EXCLUDED"
    SKIPPED_HALTED = "SKIPPED_HALTED"
    SKIPPED_REJECTED = "SKIPPED_REJECTED"
    SKIPPED_STAGING_FAILED = "SKIPPED_STAGING_FAILED"
    SKIPPED_NO_SNAPSHOT = "SKIPPED_NO_SNAPSHOT"
    SCAN_FAILED = "SCAN_FAILED"
    MAINTENANCE_PENDING = "MAINTENANCE_PENDING"
    MAINTENANCE_APPLIED = "MAINTENANCE_APPLIED"
    MAINTENANCE_SCHEDULED = "MAINTENANCE_SCHEDULED"
    AWS_MANAGED = "AWS_MANAGED"
    NO_DATA = "NO_DATA"


class ComplianceState(StrEnum):
    """What a verdict says about a resource's compliance, for the report's totals."""

    COMPLIANT = "COMPLIANT"
    NON_COMPLIANT = "NON_COMPLIANT"
    UNKNOWN = "UNKNOWN"  # not assessed in this run
    NOT_APPLICABLE = "NOT_APPLICABLE"  # AWS-managed: nothing for the customer to patch


class ReasonCode(StrEnum):
    """Why a resource got its verdict, for programs (KPIs, metrics, findings count these); `reason` says it for
    people. REASON_CODES documents each and the verdict it goes with."""

    NO_MISSING_PATCHES = "NO_MISSING_PATCHES"
    NO_PENDING_MAINTENANCE = "NO_PENDING_MAINTENANCE"
    PATCHES_OUTSTANDING = "PATCHES_OUTSTANDING"
    INSTALLED = "INSTALLED"
    INSTALLED_PENDING_REBOOT = "INSTALLED_PENDING_REBOOT"
    INSTALL_FAILED = "INSTALL_FAILED"
    INSTALL_TIMEOUT = "INSTALL_TIMEOUT"
    NOT_VERIFIED = "NOT_VERIFIED"
    PATCHES_NOT_INSTALLED = "PATCHES_NOT_INSTALLED"
    HEALTH_CHECK_FAILED = "HEALTH_CHECK_FAILED"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    ROLLED_BACK_AFTER_INSTALL = "ROLLED_BACK_AFTER_INSTALL"
    ROLLED_BACK_AFTER_VALIDATION = "ROLLED_BACK_AFTER_VALIDATION"
    RESTORE_FAILED = "RESTORE_FAILED"
    SNAPSHOT_FAILED = "SNAPSHOT_FAILED"
    NOT_ATTEMPTED = "NOT_ATTEMPTED"
    NO_OUTCOME = "NO_OUTCOME"
    STOPPED = "STOPPED"
    UNMANAGED = "UNMANAGED"
    AGENT_OFFLINE = "AGENT_OFFLINE"
    NOT_STAGED = "NOT_STAGED"
    HALTED = "HALTED"
    HALTED_BY_ALARM = "HALTED_BY_ALARM"
    HALTED_BY_CALENDAR = "HALTED_BY_CALENDAR"
    NOT_REHEARSED = "NOT_REHEARSED"
    HALTED_BY_ROLLBACK_FAILURE = "HALTED_BY_ROLLBACK_FAILURE"
    REJECTED = "REJECTED"
    APPROVAL_TIMEOUT = "APPROVAL_TIMEOUT"
    STAGING_FAILED = "STAGING_FAILED"
    SCAN_FAILED = "SCAN_FAILED"
    SCAN_TIMEOUT = "SCAN_TIMEOUT"
    NO_PATCH_STATE = "NO_PATCH_STATE"
    MAINTENANCE_PENDING = "MAINTENANCE_PENDING"
    MAINTENANCE_APPLIED = "MAINTENANCE_APPLIED"
    MAINTENANCE_SCHEDULED = "MAINTENANCE_SCHEDULED"
    MAINTENANCE_FAILED = "MAINTENANCE_FAILED"
    MAINTENANCE_TIMEOUT = "MAINTENANCE_TIMEOUT"
    AWS_MANAGED = "AWS_MANAGED"
    REPLACED = "REPLACED"
    REFRESH_ROLLED_BACK = "REFRESH_ROLLED_BACK"
    REFRESH_FAILED = "REFRESH_FAILED"
    HALTED_BY_REFRESH = "HALTED_BY_REFRESH"
    REFRESH_IRREVERSIBLE = "REFRESH_IRREVERSIBLE"
    REFRESH_REPLACES_EXCLUDED = "REFRESH_REPLACES_EXCLUDED"
    REFRESH_NO_LAUNCH_TEMPLATE = "REFRESH_NO_LAUNCH_TEMPLATE"
    BAKE_FAILED = "BAKE_FAILED"


@dataclass(frozen=True)
class VerdictInfo:
    """One verdict's meaning, the run modes that give it, and the compliance state it implies."""

    meaning: str
    modes: frozenset[str]
    compliance: ComplianceState


SCAN, INSTALL = "scan", "install"
MODES: Final = (SCAN, INSTALL)  # what a run does: report only, or install behind the gates
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
    Verdict.REPLACED: VerdictInfo(
        "an Auto Scaling group's instance refresh replaced it with an instance of the baked, patched AMI",
        frozenset({INSTALL}),
        _C,
    ),
    Verdict.FAILED: VerdictInfo("this run's patch install failed (reason says why)", frozenset({INSTALL}), _N),
    Verdict.ROLLED_BACK: VerdictInfo(
        "the install or its validation failed and the run restored the pre-patch root volume, or its Auto Scaling "
        "group's instance refresh rolled back to the old AMI: as it was before the run, patches still missing",
        frozenset({INSTALL}),
        _N,
    ),
    Verdict.ROLLBACK_FAILED: VerdictInfo(
        "the install or its validation failed and restoring the pre-patch root volume failed too: look at the "
        "instance (it halted the rollout)",
        frozenset({INSTALL}),
        _N,
    ),
    Verdict.SKIPPED_OFFLINE: VerdictInfo("SSM Agent not Online (ConnectionLost/Inactive): not reachable", _BOTH, _U),
    Verdict.SKIPPED_UNMANAGED: VerdictInfo("not registered with Systems Manager: cannot be scanned", _BOTH, _U),
    Verdict.SKIPPED_STOPPED: VerdictInfo("instance stopped: cannot be scanned or patched", _BOTH, _U),
    Verdict.SKIPPED_EXCLUDED: VerdictInfo(
        "in scope but excluded from installing during the run (e.g. by the approver)", frozenset({INSTALL}), _U
    ),
    Verdict.SKIPPED_HALTED: VerdictInfo(
        "its wave never ran: the rollout halted (an earlier wave's failures or failed rollback, a health alarm, a "
        "closed change calendar)",
        frozenset({INSTALL}),
        _U,
    ),
    Verdict.SKIPPED_REJECTED: VerdictInfo(
        "the approval gate rejected (or timed out) before its wave", frozenset({INSTALL}), _U
    ),
    Verdict.SKIPPED_STAGING_FAILED: VerdictInfo(
        "staging did not pass or could not run (stack creation, staging install or health checks failed), "
        "and the approval policy did not let production go ahead",
        frozenset({INSTALL}),
        _U,
    ),
    Verdict.SKIPPED_NO_SNAPSHOT: VerdictInfo(
        "its pre-patch snapshot failed, so it was not patched (there would be no way back)", frozenset({INSTALL}), _U
    ),
    Verdict.SCAN_FAILED: VerdictInfo("the Patch Manager scan command failed on it (reason says how)", _BOTH, _U),
    Verdict.MAINTENANCE_PENDING: VerdictInfo(
        "RDS: AWS has maintenance actions pending, for the customer to schedule", _BOTH, _N
    ),
    Verdict.MAINTENANCE_APPLIED: VerdictInfo(
        "RDS: this run applied the pending maintenance actions it planned (rehearsed, approved, in its wave)",
        frozenset({INSTALL}),
        _C,
    ),
    Verdict.MAINTENANCE_SCHEDULED: VerdictInfo(
        "RDS: this run opted the planned maintenance actions in for the database's next maintenance window",
        frozenset({INSTALL}),
        _N,
    ),
    Verdict.AWS_MANAGED: VerdictInfo("fully AWS-managed (S3): listed, never patched by the customer", _BOTH, _NA),
    Verdict.NO_DATA: VerdictInfo("managed and Online but Patch Manager reported no patch state", _BOTH, _U),
}

_R = ReasonCode
# Each code, the verdict it goes with, and what it means.
REASON_CODES: Final[Mapping[ReasonCode, tuple[Verdict, str]]] = {
    _R.NO_MISSING_PATCHES: (Verdict.ALREADY_COMPLIANT, "Patch Manager reports no missing, failed or pending patch"),
    _R.NO_PENDING_MAINTENANCE: (Verdict.ALREADY_COMPLIANT, "RDS reports no pending maintenance action"),
    _R.PATCHES_OUTSTANDING: (Verdict.NON_COMPLIANT, "patches missing, failed or pending reboot (scan mode)"),
    _R.INSTALLED: (Verdict.PATCHED, "every pinned patch reported installed after the install"),
    _R.INSTALLED_PENDING_REBOOT: (Verdict.PATCHED_PENDING_REBOOT, "installed; some need a reboot to take effect"),
    _R.INSTALL_FAILED: (Verdict.FAILED, "the install command ended other than Success"),
    _R.INSTALL_TIMEOUT: (Verdict.FAILED, "the install command did not finish within command_timeout_minutes"),
    _R.NOT_VERIFIED: (Verdict.FAILED, "the patch state could not be read after the install"),
    _R.PATCHES_NOT_INSTALLED: (Verdict.FAILED, "the install succeeded but pinned patches are still not installed"),
    _R.HEALTH_CHECK_FAILED: (Verdict.FAILED, "the health checks failed on it after a good install (its validation)"),
    _R.VALIDATION_FAILED: (Verdict.FAILED, "its validation after the install failed (PatchCycle-ValidateInstance)"),
    _R.ROLLED_BACK_AFTER_INSTALL: (Verdict.ROLLED_BACK, "the install failed; the pre-patch root volume was restored"),
    _R.ROLLED_BACK_AFTER_VALIDATION: (
        Verdict.ROLLED_BACK,
        "the validation after the install failed; the pre-patch root volume was restored",
    ),
    _R.RESTORE_FAILED: (Verdict.ROLLBACK_FAILED, "restoring the pre-patch root volume failed"),
    _R.SNAPSHOT_FAILED: (Verdict.SKIPPED_NO_SNAPSHOT, "its pre-patch snapshot failed or did not complete"),
    _R.NOT_ATTEMPTED: (Verdict.FAILED, "its wave was due but did not run (the task failed or did not finish)"),
    _R.NO_OUTCOME: (Verdict.FAILED, "patches were outstanding but the install recorded nothing for it"),
    _R.STOPPED: (Verdict.SKIPPED_STOPPED, "the instance is stopped or stopping"),
    _R.UNMANAGED: (Verdict.SKIPPED_UNMANAGED, "the instance is not registered with Systems Manager"),
    _R.AGENT_OFFLINE: (Verdict.SKIPPED_OFFLINE, "its SSM Agent is not Online"),
    _R.NOT_STAGED: (Verdict.SKIPPED_EXCLUDED, "its profile was over staging_max_instances and got no rehearsal"),
    _R.HALTED: (Verdict.SKIPPED_HALTED, "an earlier wave passed the halt threshold"),
    _R.HALTED_BY_ALARM: (Verdict.SKIPPED_HALTED, "a health alarm was in ALARM before its wave"),
    _R.HALTED_BY_CALENDAR: (Verdict.SKIPPED_HALTED, "the change calendar stayed CLOSED past the wait before its wave"),
    _R.HALTED_BY_ROLLBACK_FAILURE: (Verdict.SKIPPED_HALTED, "an earlier wave could not roll an instance back"),
    _R.REJECTED: (Verdict.SKIPPED_REJECTED, "a person rejected the rollout at the approval gate"),
    _R.APPROVAL_TIMEOUT: (Verdict.SKIPPED_REJECTED, "no answer at the approval gate in time: rejected by default"),
    _R.STAGING_FAILED: (Verdict.SKIPPED_STAGING_FAILED, "staging failed or did not finish, so it was not rolled out"),
    _R.NOT_REHEARSED: (
        Verdict.SKIPPED_STAGING_FAILED,
        "RDS: an Aurora DB instance's own action, which staging does not rehearse (a restored cluster's new "
        "instance has none pending): the auto approval policy does not apply it",
    ),
    _R.SCAN_FAILED: (Verdict.SCAN_FAILED, "the Patch Manager scan command failed on it"),
    _R.SCAN_TIMEOUT: (Verdict.SCAN_FAILED, "the scan did not finish within command_timeout_minutes"),
    _R.NO_PATCH_STATE: (Verdict.NO_DATA, "managed and Online, but Patch Manager reported no patch state"),
    _R.MAINTENANCE_PENDING: (Verdict.MAINTENANCE_PENDING, "RDS has pending maintenance actions to schedule"),
    _R.MAINTENANCE_APPLIED: (
        Verdict.MAINTENANCE_APPLIED,
        "RDS: the actions were applied; the database is available and they left the pending list",
    ),
    _R.MAINTENANCE_SCHEDULED: (
        Verdict.MAINTENANCE_SCHEDULED,
        "RDS: opted in for the next maintenance window (rds_apply next-maintenance)",
    ),
    _R.MAINTENANCE_FAILED: (
        Verdict.FAILED,
        "RDS: applying a maintenance action failed (the database is available with it still pending) or was refused",
    ),
    _R.MAINTENANCE_TIMEOUT: (Verdict.FAILED, "RDS: the database was not available again within rds_timeout_minutes"),
    _R.AWS_MANAGED: (Verdict.AWS_MANAGED, "fully AWS-managed (S3): listed, never patched by the customer"),
    _R.REPLACED: (Verdict.REPLACED, "its group's instance refresh onto the baked AMI succeeded"),
    _R.REFRESH_ROLLED_BACK: (
        Verdict.ROLLED_BACK,
        "its group's instance refresh failed or a health alarm fired, and the refresh rolled back to the old AMI",
    ),
    _R.REFRESH_FAILED: (
        Verdict.FAILED,
        "its group's instance refresh failed and did not roll back cleanly (Failed, Cancelled or RollbackFailed)",
    ),
    _R.HALTED_BY_REFRESH: (Verdict.SKIPPED_HALTED, "an earlier group's instance refresh failed or rolled back"),
    _R.REFRESH_IRREVERSIBLE: (
        Verdict.SKIPPED_EXCLUDED,
        "its group launches $Latest or $Default of its launch template: a refresh could not roll back",
    ),
    _R.REFRESH_REPLACES_EXCLUDED: (
        Verdict.SKIPPED_EXCLUDED,
        "its group has an instance the scope excludes, which an instance refresh would replace too",
    ),
    _R.REFRESH_NO_LAUNCH_TEMPLATE: (
        Verdict.SKIPPED_EXCLUDED,
        "its group launches from a launch configuration (or a mixed instances policy), not a launch template: the "
        "immutable path refreshes only onto a new launch template version",
    ),
    _R.BAKE_FAILED: (Verdict.SKIPPED_STAGING_FAILED, "no patched AMI could be baked for its group"),
}


@dataclass(frozen=True)
class ScanFailure:
    """Why one instance's scan failed: SCAN_FAILED or SCAN_TIMEOUT, and what Systems Manager said."""

    reason_code: ReasonCode
    detail: str


VERDICT_COLUMNS: Final[Mapping[str, str]] = {
    "resource_id": "str",
    "resource_type": "str",
    "account_id": "str",
    "region": "str",
    "responsibility": "str",
    "verdict": "str",  # a Verdict value
    "reason_code": "str",  # a ReasonCode value
    "reason": "str",  # human-readable, e.g. "3 missing patches (1 critical), 5 CVEs"
}


class Outcome(StrEnum):
    """What install mode did with one production instance (OUTCOME_COLUMNS' `outcome`)."""

    NOT_STAGED = "NOT_STAGED"  # its profile was over the staging cap
    STAGING_FAILED = "STAGING_FAILED"  # its profile's staging failed and the approval policy stopped it
    REJECTED = "REJECTED"  # the approval gate rejected or timed out
    HALTED = "HALTED"  # an earlier wave passed the halt threshold
    NOT_RUN = "NOT_RUN"  # its wave was due but the install was not attempted
    NO_SNAPSHOT = "NO_SNAPSHOT"  # its pre-patch snapshot failed: not patched
    SENT = "SENT"  # the install command was sent
    REFRESH = "REFRESH"  # an Auto Scaling instance, on the immutable path: its reason code says what happened


# One row per production instance, built by core.outcomes and read by install_verdicts.
OUTCOME_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "outcome": "str",  # an Outcome value
    "reason_code": "str",  # a ReasonCode: why it was skipped, or (SENT) how its install failed; "" when it did not
    "wave": "int64",  # the wave it was planned in (1 = canary), 0 if none
    "detail": "str",  # why it was skipped; for SENT the invocation's StatusDetails or stderr
    "invocation_status": "str",  # SENT: the SSM invocation Status (Success, Failed, TimedOut, ...); else ""
    "validation_failure": "str",  # SENT: why its validation failed after a good install; else ""
    "validation_code": "str",  # SENT: HEALTH_CHECK_FAILED or VALIDATION_FAILED when it failed; else ""
    "rollback": "str",  # SENT: rolled_back | failed when it was restored from its snapshot; else ""
    "rollback_detail": "str",  # the snapshot restored, or why the restore failed
    "snapshot_ids": "str",  # its pre-patch snapshots, ";"-joined
    "pinned": "int64",  # pinned patches
    "installed": "int64",  # pinned patches INSTALLED or INSTALLED_OTHER after the install
    "pending_reboot": "int64",  # pinned patches INSTALLED_PENDING_REBOOT after the install
    "not_installed": "str",  # pinned patch ids still missing, failed or not reported, sorted, ";"-joined
    "verified": "bool",  # the instance's patch state was read after the install
}

# Skipped outcomes: the reason used when the outcome has no detail.
_SKIPPED_REASONS: Final[Mapping[str, str]] = {
    Outcome.NOT_STAGED: "its profile was not staged (over the staging cap)",
    Outcome.STAGING_FAILED: "staging failed",
    Outcome.REJECTED: "rejected at the approval gate",
    Outcome.HALTED: "halted by an earlier wave",
    Outcome.NO_SNAPSHOT: "its pre-patch snapshot failed",
}


@dataclass(frozen=True)
class Decision:
    """One resource's verdict: the verdict, its code (REASON_CODES) and the reason for people."""

    verdict: Verdict
    code: ReasonCode
    reason: str

    @classmethod
    def of(cls, code: ReasonCode, reason: str) -> Decision:
        """The decision a code implies (each code goes with one verdict)."""
        return cls(REASON_CODES[code][0], code, reason)


Ec2Rule = Callable[[Mapping[str, Any], Mapping[str, Any] | None, list[Mapping[str, Any]]], Decision]


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
    scan_failures: Mapping[str, ScanFailure],
) -> Decision:
    """The scan-mode verdict of one EC2 instance; the first matching rule wins."""
    resource_id = str(resource["resource_id"])
    if resource["state"] in ("stopped", "stopping"):
        return Decision.of(_R.STOPPED, f"instance is {resource['state']}")
    if not resource["managed"]:
        return Decision.of(_R.UNMANAGED, UNMANAGED_REASON)
    if resource["ping_status"] != "Online":
        return Decision.of(_R.AGENT_OFFLINE, str(resource["skip_reason"]) or f"SSM Agent {resource['ping_status']}")
    if resource_id in scan_failures:
        failure = scan_failures[resource_id]
        detail = f"scan command failed: {failure.detail}" if failure.detail else "scan command failed"
        return Decision.of(failure.reason_code, detail)
    if compliance is None:
        return Decision.of(_R.NO_PATCH_STATE, "managed and Online, but Patch Manager reported no patch state")
    if compliance["missing"] or compliance["failed"] or compliance["installed_pending_reboot"]:
        cves = {cve for patch in patches for cve in split_cve_ids(str(patch["cve_ids"]))}
        return Decision.of(_R.PATCHES_OUTSTANDING, _non_compliant_reason(compliance, len(cves)))
    last = iso_utc(compliance["operation_end_time"])
    return Decision.of(
        _R.NO_MISSING_PATCHES, "no missing patches" + (f" (last {compliance['operation']} {last})" if last else "")
    )


def _rds_verdict(resource: Mapping[str, Any], actions: list[Mapping[str, Any]]) -> Decision:
    """MAINTENANCE_PENDING when the DB instance has pending actions, else ALREADY_COMPLIANT."""
    count = int(resource["pending_actions"])
    if not count:
        return Decision.of(_R.NO_PENDING_MAINTENANCE, "no pending maintenance actions")
    names = sorted({str(action["patch_id"]) for action in actions})
    listed = f": {', '.join(names)}" if names else ""
    return Decision.of(_R.MAINTENANCE_PENDING, _plural(count, "pending maintenance action") + listed)


def _require_scope(inventory: pd.DataFrame) -> None:
    if "in_scope" not in inventory.columns:
        raise ValueError("inventory has no in_scope column: apply the scope first (scope.apply_scope)")


RdsRule = Callable[[Mapping[str, Any], list[Mapping[str, Any]]], Decision]


def _verdicts(
    inventory: pd.DataFrame,
    compliance: pd.DataFrame,
    plan: pd.DataFrame,
    ec2_rule: Ec2Rule,
    rds_rule: RdsRule = _rds_verdict,
) -> pd.DataFrame:
    """One VERDICT_COLUMNS row per in-scope resource: EC2 by `ec2_rule`, RDS by `rds_rule`, S3 as in every mode."""
    _require_scope(inventory)
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
            decision = ec2_rule(resource, compliance_by_id.get(key[3]), planned)
        elif resource["resource_type"] == "rds":
            decision = rds_rule(resource, planned)
        elif resource["resource_type"] == "s3":
            decision = Decision.of(_R.AWS_MANAGED, "AWS-managed: patched by AWS, listed only")
        else:
            raise ValueError(f"unknown resource_type {resource['resource_type']!r} for {key[3]}")
        rows.append({column: resource[column] for column in VERDICT_COLUMNS if column in resource})
        rows[-1].update(verdict=decision.verdict.value, reason_code=decision.code.value, reason=decision.reason)
    return typed_frame(rows, VERDICT_COLUMNS)


def scan_verdicts(
    inventory: pd.DataFrame,
    compliance: pd.DataFrame,
    plan: pd.DataFrame,
    scan_failures: Mapping[str, ScanFailure],
) -> pd.DataFrame:
    """Scan-mode verdicts (VERDICT_COLUMNS): one row per in-scope resource of the inventory.

    inventory: with `in_scope` (scope.apply_scope); compliance: plan.instance_compliance; plan:
    patch_plan + rds_plan rows; scan_failures: {instance id: ScanFailure} for the instances whose scan failed.
    """
    return _verdicts(
        inventory,
        compliance,
        plan,
        lambda resource, state, planned: _ec2_verdict(resource, state, planned, scan_failures),
    )


def _listed(ids: list[str], limit: int = 10) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _install_verdict(outcome: Mapping[str, Any]) -> Decision:
    """The verdict of one production instance from its install outcome."""
    kind, detail, code = str(outcome["outcome"]), str(outcome["detail"]), str(outcome["reason_code"])
    if kind in _SKIPPED_REASONS:
        return Decision.of(ReasonCode(code), detail or _SKIPPED_REASONS[kind])
    if kind == Outcome.REFRESH:
        return Decision.of(ReasonCode(code), detail)
    if kind == Outcome.NOT_RUN:
        return Decision.of(_R.NOT_ATTEMPTED, "install not attempted" + (f": {detail}" if detail else ""))
    if kind != Outcome.SENT:
        raise ValueError(f"unknown install outcome {kind!r} for {outcome['resource_id']}")
    status = str(outcome["invocation_status"])
    not_installed = [pid for pid in str(outcome["not_installed"]).split(";") if pid]
    rollback = str(outcome["rollback"])
    # Every problem is told, in this order; the first one is the code.
    problems: list[tuple[ReasonCode, str]] = []
    if status != "Success":
        problems.append((ReasonCode(code) if code else _R.INSTALL_FAILED, detail))
    if outcome.get("validation_failure"):
        validation = ReasonCode(str(outcome["validation_code"]) or _R.VALIDATION_FAILED)
        problems.append((validation, f"validation failed: {outcome['validation_failure']}"))
    if rollback:
        # The instance went back to its snapshot: what counts is what made it go back, not its patch state now.
        head = f"Install {status or 'status unknown'}" if status != "Success" else ""
        told = ": ".join(part for part in (head, "; ".join(text for _, text in problems if text)) if part)
        if rollback == "rolled_back":
            code_of = _R.ROLLED_BACK_AFTER_INSTALL if status != "Success" else _R.ROLLED_BACK_AFTER_VALIDATION
            return Decision.of(code_of, f"rolled back ({outcome['rollback_detail']}) after: {told}")
        return Decision.of(_R.RESTORE_FAILED, f"rollback failed ({outcome['rollback_detail']}) after: {told}")
    if not outcome["verified"]:
        problems.append((_R.NOT_VERIFIED, "patch state not read after the install"))
    if not_installed:
        count = _plural(len(not_installed), "planned patch", "planned patches")
        problems.append((_R.PATCHES_NOT_INSTALLED, f"{count} not installed: {_listed(not_installed)}"))
    if problems:
        head = f"Install {status or 'status unknown'}" if status != "Success" else ""
        told = "; ".join(text for _, text in problems if text)
        return Decision.of(problems[0][0], ": ".join(part for part in (head, told) if part))
    installed, pending = int(outcome["installed"]), int(outcome["pending_reboot"])
    if pending:
        return Decision.of(
            _R.INSTALLED_PENDING_REBOOT,
            f"{_plural(installed + pending, 'patch', 'patches')} installed, {pending} pending reboot",
        )
    return Decision.of(_R.INSTALLED, f"{_plural(installed, 'planned patch', 'planned patches')} installed and verified")


def install_verdicts(
    inventory: pd.DataFrame,
    compliance: pd.DataFrame,
    plan: pd.DataFrame,
    scan_failures: Mapping[str, ScanFailure],
    outcomes: pd.DataFrame,
    rds_outcomes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Install-mode verdicts (VERDICT_COLUMNS): one row per in-scope resource of the inventory.

    An EC2 instance with an install outcome (OUTCOME_COLUMNS) gets its verdict from it; any other keeps
    its scan-mode verdict, except that outstanding patches without an outcome are FAILED (NO_OUTCOME), so an
    instance the install left out is never silent. RDS and S3 are as in scan mode. ValueError when an
    outcome names an instance that is not an in-scope EC2 instance.
    """
    by_key = {
        (str(row["account_id"]), str(row["region"]), str(row["resource_id"])): row
        for row in outcomes.to_dict("records")
    }
    _require_scope(inventory)
    ec2 = inventory[inventory["in_scope"] & (inventory["resource_type"] == "ec2")]
    known = set(zip(ec2["account_id"], ec2["region"], ec2["resource_id"], strict=True))
    unknown = sorted("/".join(key) for key in set(by_key) - known)
    if unknown:
        raise ValueError(f"outcomes: {len(unknown)} instance(s) are not in-scope EC2 instances: {unknown[:10]}")

    def ec2_rule(
        resource: Mapping[str, Any], state: Mapping[str, Any] | None, planned: list[Mapping[str, Any]]
    ) -> Decision:
        outcome = by_key.get((str(resource["account_id"]), str(resource["region"]), str(resource["resource_id"])))
        if outcome is not None:
            return _install_verdict(outcome)
        decision = _ec2_verdict(resource, state, planned, scan_failures)
        if decision.verdict == Verdict.NON_COMPLIANT:
            return Decision.of(_R.NO_OUTCOME, f"no install outcome recorded ({decision.reason})")
        return decision

    rds_by_key = {
        (str(row["account_id"]), str(row["region"]), str(row["resource_id"])): row
        for row in (rds_outcomes.to_dict("records") if rds_outcomes is not None else [])
    }

    def rds_rule(resource: Mapping[str, Any], planned: list[Mapping[str, Any]]) -> Decision:
        outcome = rds_by_key.get((str(resource["account_id"]), str(resource["region"]), str(resource["resource_id"])))
        return rds_install_decision(outcome) if outcome is not None else _rds_verdict(resource, planned)

    return _verdicts(inventory, compliance, plan, ec2_rule, rds_rule)


# RDS rollout outcome (core.rds_rollout.RolloutOutcome values) -> its code.
_RDS_CODES: Final[Mapping[str, ReasonCode]] = {
    "applied": _R.MAINTENANCE_APPLIED,
    "scheduled": _R.MAINTENANCE_SCHEDULED,
    "failed": _R.MAINTENANCE_FAILED,
    "timeout": _R.MAINTENANCE_TIMEOUT,
    "halted": _R.HALTED,
    "halted_by_alarm": _R.HALTED_BY_ALARM,
    "halted_by_calendar": _R.HALTED_BY_CALENDAR,
    "not_rehearsed": _R.NOT_REHEARSED,
    "staging_failed": _R.STAGING_FAILED,
    "rejected": _R.REJECTED,
    "not_run": _R.NOT_ATTEMPTED,
}


def rds_install_decision(outcome: Mapping[str, Any]) -> Decision:
    """The verdict of one planned DB instance from its RDS rollout outcome (core.rds_rollout.ROLLOUT_COLUMNS; the
    report's install.rds gives each database the verdict its resource entry has)."""
    kind = str(outcome["outcome"])
    if kind not in _RDS_CODES:
        raise ValueError(f"unknown RDS rollout outcome {kind!r} for {outcome['resource_id']}")
    code = _RDS_CODES[kind]
    if kind == "rejected" and "no answer" in str(outcome["detail"]):
        code = _R.APPROVAL_TIMEOUT
    actions = ", ".join(part for part in str(outcome["actions"]).split(";") if part)
    detail = str(outcome["detail"])
    reasons = {
        "applied": f"applied {actions}" + (f" ({detail})" if detail else ""),
        "scheduled": f"{actions} scheduled for the next maintenance window" + (f" ({detail})" if detail else ""),
        "failed": f"applying {actions} failed" + (f": {detail}" if detail else ""),
        "timeout": f"applying {actions} did not finish in time" + (f": {detail}" if detail else ""),
    }
    return Decision.of(code, reasons.get(kind, f"{actions} not applied: {detail}"))


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
    mismatched = sorted(
        {
            f"{verdict}/{code}"
            for verdict, code in zip(verdicts["verdict"], verdicts["reason_code"], strict=True)
            if code not in REASON_CODES or REASON_CODES[ReasonCode(code)][0] != verdict
        }
    )
    if mismatched:
        problems.append(f"reason code(s) that do not go with their verdict: {mismatched}")
    return problems


def check_accounting(inventory: pd.DataFrame, verdicts: pd.DataFrame) -> None:
    """Raise AccountingError (a ValueError) unless every in-scope resource has exactly one verdict."""
    problems = accounting_problems(inventory, verdicts)
    if problems:
        in_scope = int(inventory["in_scope"].sum()) if "in_scope" in inventory.columns else len(inventory)
        raise AccountingError(
            f"accounting failed (in scope {in_scope}, sum of verdicts {len(verdicts)}): " + "; ".join(problems)
        )

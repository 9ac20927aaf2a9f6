"""Every in-scope resource ends a run with exactly one verdict from VERDICTS.

The report checks `in scope = sum of verdicts` (check_accounting): nothing is silently dropped.
Resources out of scope get no verdict; they are counted apart (inventory `in_scope` False).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Set
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
    SKIPPED_STAGING_FAILED = "SKIPPED_STAGING_FAILED"
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
    Verdict.SKIPPED_STAGING_FAILED: VerdictInfo(
        "staging did not pass or could not run (stack creation, staging install or health checks failed), "
        "and the approval policy did not let production go ahead",
        frozenset({INSTALL}),
        _U,
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


class Outcome(StrEnum):
    """What install mode did with one production instance (OUTCOME_COLUMNS' `outcome`)."""

    NOT_STAGED = "NOT_STAGED"  # its profile was over the staging cap
    STAGING_FAILED = "STAGING_FAILED"  # its profile's staging failed and the approval policy stopped it
    REJECTED = "REJECTED"  # the approval gate rejected or timed out
    HALTED = "HALTED"  # an earlier wave passed the halt threshold
    NOT_RUN = "NOT_RUN"  # its wave was due but the install was not attempted
    SENT = "SENT"  # the install command was sent


# One row per production instance, built by the install operators and read by install_verdicts.
OUTCOME_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "outcome": "str",  # an Outcome value
    "wave": "int64",  # the wave it was planned in (1 = canary), 0 if none
    "detail": "str",  # why it was skipped; for SENT the invocation's StatusDetails or stderr
    "invocation_status": "str",  # SENT: the SSM invocation Status (Success, Failed, TimedOut, ...); else ""
    "health_failure": "str",  # SENT, canary: why its health check failed after a good install; else ""
    "pinned": "int64",  # pinned patches
    "installed": "int64",  # pinned patches INSTALLED or INSTALLED_OTHER after the install
    "pending_reboot": "int64",  # pinned patches INSTALLED_PENDING_REBOOT after the install
    "not_installed": "str",  # pinned patch ids still missing, failed or not reported, sorted, ";"-joined
    "verified": "bool",  # the instance's patch state was read after the install
}

# Skipped outcomes -> verdict, and the reason used when the outcome has no detail.
_SKIPPED: Final[Mapping[str, tuple[Verdict, str]]] = {
    Outcome.NOT_STAGED: (Verdict.SKIPPED_EXCLUDED, "its profile was not staged (over the staging cap)"),
    Outcome.STAGING_FAILED: (Verdict.SKIPPED_STAGING_FAILED, "staging failed"),
    Outcome.REJECTED: (Verdict.SKIPPED_REJECTED, "rejected at the approval gate"),
    Outcome.HALTED: (Verdict.SKIPPED_HALTED, "halted by an earlier wave"),
}

Ec2Rule = Callable[[Mapping[str, Any], Mapping[str, Any] | None, list[Mapping[str, Any]]], tuple[Verdict, str]]


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


def _require_scope(inventory: pd.DataFrame) -> None:
    if "in_scope" not in inventory.columns:
        raise ValueError("inventory has no in_scope column: apply the scope first (scope.apply_scope)")


def _verdicts(inventory: pd.DataFrame, compliance: pd.DataFrame, plan: pd.DataFrame, ec2_rule: Ec2Rule) -> pd.DataFrame:
    """One VERDICT_COLUMNS row per in-scope resource: EC2 by `ec2_rule`, RDS and S3 as in every mode."""
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
            verdict, reason = ec2_rule(resource, compliance_by_id.get(key[3]), planned)
        elif resource["resource_type"] == "rds":
            verdict, reason = _rds_verdict(resource, planned)
        elif resource["resource_type"] == "s3":
            verdict, reason = Verdict.AWS_MANAGED, "AWS-managed: patched by AWS, listed only"
        else:
            raise ValueError(f"unknown resource_type {resource['resource_type']!r} for {key[3]}")
        rows.append({column: resource[column] for column in VERDICT_COLUMNS if column in resource})
        rows[-1].update(verdict=verdict.value, reason=reason)
    return typed_frame(rows, VERDICT_COLUMNS)


def _failures(scan_failures: Set[str] | Mapping[str, str]) -> dict[str, str]:
    return dict(scan_failures) if isinstance(scan_failures, Mapping) else dict.fromkeys(scan_failures, "")


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
    failures = _failures(scan_failures)
    return _verdicts(
        inventory,
        compliance,
        plan,
        lambda resource, state, planned: _ec2_verdict(resource, state, planned, failures),
    )


def _listed(ids: list[str], limit: int = 10) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _install_verdict(outcome: Mapping[str, Any]) -> tuple[Verdict, str]:
    """The verdict of one production instance from its install outcome."""
    kind, detail = str(outcome["outcome"]), str(outcome["detail"])
    if kind in _SKIPPED:
        verdict, default = _SKIPPED[kind]
        return verdict, detail or default
    if kind == Outcome.NOT_RUN:
        return Verdict.FAILED, "install not attempted" + (f": {detail}" if detail else "")
    if kind != Outcome.SENT:
        raise ValueError(f"unknown install outcome {kind!r} for {outcome['resource_id']}")
    status = str(outcome["invocation_status"])
    not_installed = [pid for pid in str(outcome["not_installed"]).split(";") if pid]
    problems = []
    if status != "Success" and detail:
        problems.append(detail)
    if not outcome["verified"]:
        problems.append("patch state not read after the install")
    if not_installed:
        count = _plural(len(not_installed), "planned patch", "planned patches")
        problems.append(f"{count} not installed: {_listed(not_installed)}")
    if outcome.get("health_failure"):
        problems.append(str(outcome["health_failure"]))
    if status != "Success" or problems:
        head = f"Install {status or 'status unknown'}" if status != "Success" else ""
        return Verdict.FAILED, ": ".join(part for part in (head, "; ".join(problems)) if part)
    installed, pending = int(outcome["installed"]), int(outcome["pending_reboot"])
    if pending:
        return (
            Verdict.PATCHED_PENDING_REBOOT,
            f"{_plural(installed + pending, 'patch', 'patches')} installed, {pending} pending reboot",
        )
    return Verdict.PATCHED, f"{_plural(installed, 'planned patch', 'planned patches')} installed and verified"


def install_verdicts(
    inventory: pd.DataFrame,
    compliance: pd.DataFrame,
    plan: pd.DataFrame,
    scan_failures: Set[str] | Mapping[str, str],
    outcomes: pd.DataFrame,
) -> pd.DataFrame:
    """Install-mode verdicts (VERDICT_COLUMNS): one row per in-scope resource of the inventory.

    An EC2 instance with an install outcome (OUTCOME_COLUMNS) gets its verdict from it; any other keeps
    its scan-mode verdict, except that outstanding patches without an outcome are FAILED, so an
    instance the install left out is never silent. RDS and S3 are as in scan mode. ValueError when an
    outcome names an instance that is not an in-scope EC2 instance.
    """
    failures = _failures(scan_failures)
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
    ) -> tuple[Verdict, str]:
        outcome = by_key.get((str(resource["account_id"]), str(resource["region"]), str(resource["resource_id"])))
        if outcome is not None:
            return _install_verdict(outcome)
        verdict, reason = _ec2_verdict(resource, state, planned, failures)
        if verdict == Verdict.NON_COMPLIANT:
            return Verdict.FAILED, f"no install outcome recorded ({reason})"
        return verdict, reason

    return _verdicts(inventory, compliance, plan, ec2_rule)


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

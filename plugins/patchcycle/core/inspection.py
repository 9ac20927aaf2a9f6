"""Inspect: are the CVEs the install set out to fix really closed? Per instance, as Amazon Inspector sees it.

The CVEs an instance was meant to be rid of are those of its pinned patches (the match stage's outstanding
patches of the instance; their CVE ids come from the match plan, see `patch_cves`). Inspector vouches for
an instance's state after the install only once it has rescanned it: its coverage's lastScannedAt is at or
after the instance's install time (Patch Manager's OperationEndTime of the install, as verify read it). An
instance the install never reached (Patch Manager's last operation is still a Scan) is unchanged: Inspector's
last scan of it stands.
Each (instance, CVE) then gets one CveStatus; `residual_findings` lists the ACTIVE critical and high
findings on the same instances that the cycle did not set out to fix.

Inputs are plain frames and mappings: Inspector's findings and coverage as the API returns them
(`findings_frame`, `coverage_frame`), the install plan's production instances and the match plan.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.timestamps import iso_utc, utc_timestamp


class CveStatus(StrEnum):
    REMEDIATED = "REMEDIATED"
    STILL_ACTIVE = "STILL_ACTIVE"
    NOT_FOUND = "NOT_FOUND"
    UNVERIFIED = "UNVERIFIED"


# For the report's documentation: what each status proves.
CVE_STATUS_MEANINGS: Final[Mapping[str, str]] = {
    CveStatus.REMEDIATED: "Inspector's scan of the instance after the install has CLOSED its finding for the CVE.",
    CveStatus.STILL_ACTIVE: (
        "Inspector's scan of the instance after the install (or its last scan, where the install never ran) "
        "still reports the CVE (ACTIVE, or SUPPRESSED by a rule); the reason names the likely cause from "
        "Patch Manager's patch states after the install."
    ),
    CveStatus.NOT_FOUND: (
        "Inspector's scan of the instance after the install has no finding for the CVE on it: it never "
        "detected it there (for example, the vulnerable package is not installed)."
    ),
    CveStatus.UNVERIFIED: (
        "Inspector cannot vouch for the instance after the install: it did not rescan it within the wait, "
        "does not cover it (no working SSM agent, stopped), or the install time is unknown."
    ),
}

CVE_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",  # instance id
    "cve_id": "str",
    "patch_ids": "str",  # the instance's pinned patches carrying the CVE, sorted, ";"-joined
    "severity": "str",  # Inspector's (CRITICAL, HIGH, ...) from the finding, else mapped from the catalog's
    "status": "str",  # CveStatus
    "reason": "str",
    "finding_arn": "str",  # "" when Inspector has no finding
    "last_scanned_at": "str",  # the instance's lastScannedAt, ISO 8601 UTC; "" when never scanned
}

RESIDUAL_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "cve_id": "str",
    "severity": "str",  # CRITICAL | HIGH
    "title": "str",
    "finding_arn": "str",
    "fixed_in": "str",  # fixedInVersion of the vulnerable packages, ";"-joined ("NotAvailable": no fix yet)
    "first_observed_at": "str",  # ISO 8601 UTC
}

# What the cycle set out to fix: one row per (instance, CVE of its pinned patches).
EXPECTED_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "cve_id": "str",
    "patch_ids": "str",
    "severity": "str",  # mapped from the patches' catalog severities (the highest)
}

FINDING_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "cve_id": "str",
    "status": "str",  # ACTIVE | SUPPRESSED | CLOSED
    "severity": "str",
    "title": "str",
    "finding_arn": "str",
    "fixed_in": "str",
    "first_observed_at": "str",
    "updated_at": "str",
}

COVERAGE_COLUMNS: Final[Mapping[str, str]] = {
    "resource_id": "str",
    "scan_status": "str",  # ACTIVE | INACTIVE
    "scan_reason": "str",  # e.g. SUCCESSFUL, PENDING_INITIAL_SCAN, UNMANAGED_EC2_INSTANCE
    "last_scanned_at": "str",  # ISO 8601 UTC, "" when never scanned
}

# Patch Manager's severities (Amazon Linux, Red Hat, Ubuntu priorities, MSRC) on Inspector's scale.
CATALOG_SEVERITIES: Final[Mapping[str, str]] = {
    "Critical": "CRITICAL",
    "Important": "HIGH",
    "High": "HIGH",
    "Medium": "MEDIUM",
    "Moderate": "MEDIUM",
    "Low": "LOW",
}
UNTRIAGED: Final = "UNTRIAGED"
SEVERITY_RANK: Final[Mapping[str, int]] = {
    "CRITICAL": 5,
    "HIGH": 4,
    "MEDIUM": 3,
    "LOW": 2,
    "INFORMATIONAL": 1,
    UNTRIAGED: 0,
}
RESIDUAL_SEVERITIES: Final = frozenset({"CRITICAL", "HIGH"})

PENDING_REBOOT, FAILED, MISSING = "INSTALLED_PENDING_REBOOT", "FAILED", "MISSING"


def catalog_severity(severity: str) -> str:
    """A patch's catalog severity (Critical, Important, Moderate, ...) on Inspector's scale."""
    return CATALOG_SEVERITIES.get(severity, UNTRIAGED)


def patch_cves(plan: pd.DataFrame) -> dict[str, tuple[list[str], str]]:
    """Patch id -> (its CVE ids, its catalog severity), from match plans (PLAN_COLUMNS).

    Patch Manager lists CVE ids only on MISSING and FAILED patches, so a patch's CVEs are the union over
    every plan row of it: an instance where it was pending a reboot borrows them from one where it was missing.
    """
    cves: dict[str, set[str]] = {}
    severity: dict[str, str] = {}
    ec2 = plan[plan["resource_type"] == "ec2"] if "resource_type" in plan.columns else plan
    for patch_id, cve_ids, sev in zip(ec2["patch_id"], ec2["cve_ids"], ec2["severity"], strict=True):
        cves.setdefault(str(patch_id), set()).update(split_cve_ids(str(cve_ids)))
        severity[str(patch_id)] = severity.get(str(patch_id)) or str(sev)
    return {patch_id: (sorted(ids), severity.get(patch_id, "")) for patch_id, ids in cves.items()}


def expected_cves(production: pd.DataFrame, plan: pd.DataFrame, instance_ids: Iterable[str]) -> pd.DataFrame:
    """EXPECTED_COLUMNS: one row per (instance in `instance_ids`, CVE of its pinned patches).

    `production` is the install plan's PRODUCTION_COLUMNS (account, region, pinned patch_ids per instance);
    `plan` the match plans (PLAN_COLUMNS) the CVE ids come from. An instance without a production row, or
    whose pinned patches carry no CVE, has no rows.
    """
    by_patch = patch_cves(plan)
    wanted = set(instance_ids)
    rows = []
    for row in production.to_dict("records"):
        instance_id = str(row["resource_id"])
        if instance_id not in wanted:
            continue
        carriers: dict[str, list[str]] = {}
        for patch_id in split_cve_ids(str(row["patch_ids"])):
            for cve in by_patch.get(patch_id, ([], ""))[0]:
                carriers.setdefault(cve, []).append(patch_id)
        for cve, patch_ids in carriers.items():
            severities = [catalog_severity(by_patch[p][1]) for p in patch_ids]
            rows.append(
                {
                    "account_id": str(row["account_id"]),
                    "region": str(row["region"]),
                    "resource_id": instance_id,
                    "cve_id": cve,
                    "patch_ids": ";".join(sorted(patch_ids)),
                    "severity": max(severities, key=lambda s: SEVERITY_RANK.get(s, 0)),
                }
            )
    frame = typed_frame(rows, EXPECTED_COLUMNS)
    return frame.sort_values(["account_id", "region", "resource_id", "cve_id"], ignore_index=True)


def findings_frame(findings: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """FINDING_COLUMNS from ListFindings' findings (package vulnerabilities; one row per finding)."""
    rows = []
    for finding in findings:
        details = finding.get("packageVulnerabilityDetails") or {}
        resources = finding.get("resources") or [{}]
        packages = details.get("vulnerablePackages") or []
        rows.append(
            {
                "account_id": str(finding.get("awsAccountId", "")),
                "region": str(resources[0].get("region", "")),
                "resource_id": str(resources[0].get("id", "")),
                "cve_id": str(details.get("vulnerabilityId", "")),
                "status": str(finding.get("status", "")),
                "severity": str(finding.get("severity", "")),
                "title": str(finding.get("title", "")),
                "finding_arn": str(finding.get("findingArn", "")),
                "fixed_in": ";".join(str(p["fixedInVersion"]) for p in packages if p.get("fixedInVersion")),
                "first_observed_at": iso_utc(finding.get("firstObservedAt")),
                "updated_at": iso_utc(finding.get("updatedAt")),
            }
        )
    return typed_frame(rows, FINDING_COLUMNS)


def coverage_frame(coverage: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """COVERAGE_COLUMNS from ListCoverage's coveredResources."""
    rows = [
        {
            "resource_id": str(item.get("resourceId", "")),
            "scan_status": str((item.get("scanStatus") or {}).get("statusCode", "")),
            "scan_reason": str((item.get("scanStatus") or {}).get("reason", "")),
            "last_scanned_at": iso_utc(item.get("lastScannedAt")),
        }
        for item in coverage
    ]
    return typed_frame(rows, COVERAGE_COLUMNS)


def rescanned_after(last_scanned_at: str, installed_at: str) -> bool:
    """Whether a scan at `last_scanned_at` saw the instance after its install at `installed_at` (ISO strings)."""
    scanned, installed = utc_timestamp(last_scanned_at), utc_timestamp(installed_at)
    return scanned is not None and installed is not None and scanned >= installed


def _minutes(value: float) -> str:
    return f"{value:g}"


def still_active_reason(instance_id: str, patch_ids: Sequence[str], states: Mapping[str, str] | None) -> str:
    """The likely reason a CVE is still active, from verify's patch states of its pinned patches."""
    if states is None:
        return f"no patch states from verify for {instance_id}"
    pending = [p for p in patch_ids if states.get(p) == PENDING_REBOOT]
    if pending:
        return "pending reboot: " + ", ".join(f"{p} is {PENDING_REBOOT}" for p in pending)
    failed = [p for p in patch_ids if states.get(p) == FAILED]
    if failed:
        return "install failed: " + ", ".join(f"{p} {FAILED}" for p in failed)
    missing = [p for p in patch_ids if states.get(p) in (None, MISSING)]
    if missing:
        return "patch not installed: " + ", ".join(
            f"{p} is {states[p]}" if p in states else f"{p} is not reported by Patch Manager" for p in missing
        )
    installed = ", ".join(f"{p} ({states[p]})" for p in patch_ids)
    return f"still reported after the install of {installed}"


def classify_cves(
    expected: pd.DataFrame,
    findings: pd.DataFrame,
    coverage: pd.DataFrame,
    installed_at: Mapping[str, str],
    patch_states: Mapping[str, Mapping[str, str]],
    wait_minutes: float,
    unchanged: Collection[str] = (),
) -> pd.DataFrame:
    """CVE_COLUMNS: each expected (instance, CVE) with its CveStatus and why.

    `installed_at` maps instance id -> ISO time of its install (Patch Manager's OperationEndTime after the
    install); `patch_states` instance id -> {patch id: Patch Manager state} after the install (verify's).
    An instance counts as rescanned when its coverage's lastScannedAt is at or after its install time. The
    `unchanged` instances were sent the install but never ran it: any scan of theirs shows their state.
    """
    cover = {str(row["resource_id"]): row for row in coverage.to_dict("records")}
    by_key = current_findings(findings)
    rows = []
    for row in expected.to_dict("records"):
        instance_id, cve = str(row["resource_id"]), str(row["cve_id"])
        patch_ids = split_cve_ids(str(row["patch_ids"]))
        scan = cover.get(instance_id)
        finding = by_key.get((instance_id, cve))
        last_scanned = str(scan["last_scanned_at"]) if scan is not None else ""
        if scan is None:
            status, reason = CveStatus.UNVERIFIED, f"not covered by Inspector: no coverage record for {instance_id}"
        elif scan["scan_status"] != "ACTIVE":
            status, reason = CveStatus.UNVERIFIED, f"not covered by Inspector: {scan['scan_reason']}"
        elif instance_id in unchanged and not last_scanned:
            status, reason = CveStatus.UNVERIFIED, f"Inspector has not scanned {instance_id} yet"
        elif instance_id in unchanged:  # the install never ran: Inspector's last scan shows it as it is
            status, reason = _by_finding(instance_id, patch_ids, finding, patch_states)
        elif instance_id not in installed_at:
            status, reason = CveStatus.UNVERIFIED, f"no install time for {instance_id} from Patch Manager"
        elif not rescanned_after(last_scanned, installed_at[instance_id]):
            status = CveStatus.UNVERIFIED
            reason = f"Inspector did not rescan {instance_id} within {_minutes(wait_minutes)} minutes"
        else:
            status, reason = _by_finding(instance_id, patch_ids, finding, patch_states)
        rows.append(
            {
                "account_id": row["account_id"],
                "region": row["region"],
                "resource_id": instance_id,
                "cve_id": cve,
                "patch_ids": row["patch_ids"],
                "severity": str(finding["severity"]) if finding is not None else str(row["severity"]),
                "status": str(status),
                "reason": reason,
                "finding_arn": str(finding["finding_arn"]) if finding is not None else "",
                "last_scanned_at": last_scanned,
            }
        )
    frame = typed_frame(rows, CVE_COLUMNS)
    return frame.sort_values(["account_id", "region", "resource_id", "cve_id"], ignore_index=True)


def _by_finding(
    instance_id: str,
    patch_ids: Sequence[str],
    finding: Mapping[str, Any] | None,
    patch_states: Mapping[str, Mapping[str, str]],
) -> tuple[CveStatus, str]:
    """The status a scan showing the instance as it is now gives: from the CVE's finding, if Inspector has one."""
    if finding is None:
        return CveStatus.NOT_FOUND, "Inspector reported no finding for it on this instance"
    if finding["status"] == "CLOSED":
        return CveStatus.REMEDIATED, f"finding closed at {finding['updated_at']}"
    reason = still_active_reason(instance_id, patch_ids, patch_states.get(instance_id))
    if finding["status"] != "ACTIVE":
        reason += f" (finding {finding['status']})"
    return CveStatus.STILL_ACTIVE, reason


# When Inspector holds several findings for one (instance, CVE) (a recurrence after the 7-day reopen window
# gets a new finding while the closed one is kept), the open one is the truth.
_STATUS_PRECEDENCE: Final[Mapping[str, int]] = {"ACTIVE": 0, "SUPPRESSED": 1, "CLOSED": 2}


def current_findings(findings: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """(instance, CVE) -> the finding that says where it stands now: ACTIVE before SUPPRESSED before CLOSED,
    then the most recently updated."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in findings.to_dict("records"):
        key = (str(row["resource_id"]), str(row["cve_id"]))
        rank = (_STATUS_PRECEDENCE.get(str(row["status"]), 3), _negated_time(str(row["updated_at"])))
        held = chosen.get(key)
        if held is None or rank < (
            _STATUS_PRECEDENCE.get(str(held["status"]), 3),
            _negated_time(str(held["updated_at"])),
        ):
            chosen[key] = row
    return chosen


def _negated_time(iso: str) -> float:
    """Sort key putting the latest time first (unknown times last)."""
    stamp = pd.Timestamp(iso) if iso else None
    return -stamp.timestamp() if stamp is not None and not pd.isna(stamp) else float("inf")


def residual_findings(findings: pd.DataFrame, expected: pd.DataFrame, instance_ids: Collection[str]) -> pd.DataFrame:
    """RESIDUAL_COLUMNS: ACTIVE critical and high findings on these instances for CVEs the cycle did not target.

    Most severe first, then by instance and CVE.
    """
    targeted = set(zip(expected["resource_id"], expected["cve_id"], strict=True))
    wanted = set(instance_ids)
    rows = [
        {column: row[column] for column in RESIDUAL_COLUMNS}
        for row in current_findings(findings).values()
        if row["status"] == "ACTIVE"
        and row["severity"] in RESIDUAL_SEVERITIES
        and row["resource_id"] in wanted
        and (row["resource_id"], row["cve_id"]) not in targeted
    ]
    rows.sort(
        key=lambda r: (-SEVERITY_RANK[r["severity"]], r["account_id"], r["region"], r["resource_id"], r["cve_id"])
    )
    return typed_frame(rows, RESIDUAL_COLUMNS)


def status_counts(cves: pd.DataFrame) -> dict[str, int]:
    """Rows per CveStatus, every status present (0 when none)."""
    counts = cves["status"].value_counts()
    return {str(status): int(counts.get(str(status), 0)) for status in CveStatus}

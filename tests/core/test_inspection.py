"""Inspection: the CVEs each patched instance was meant to be rid of, their status from Inspector's findings and
coverage after the install, and the residual critical and high findings."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.inspection import (
    CVE_COLUMNS,
    CVE_STATUS_MEANINGS,
    RESIDUAL_COLUMNS,
    CveStatus,
    catalog_severity,
    classify_cves,
    coverage_frame,
    current_findings,
    expected_cves,
    findings_frame,
    patch_cves,
    residual_findings,
    status_counts,
    still_active_reason,
)
from patchcycle.core.plan import PLAN_COLUMNS
from patchcycle.core.staging import PRODUCTION_COLUMNS
from patchcycle.core.timestamps import iso_utc

ACCOUNT, REGION = "123456789012", "us-east-1"
INSTALLED_AT = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
WAIT_MINUTES = 30
# Five instances; what happened to each, and which patches it was pinned to.
REMEDIATED, REBOOT, FAILS, LATE, UNCOVERED = (f"i-{n:017x}" for n in range(1, 6))
KERNEL, OPENSSL, CURL, SUDO = "ALAS2023-2026-1108", "ALAS2023-2026-1134", "ALAS2023-2026-1101", "ALAS2023-2026-1089"
CVES = {
    KERNEL: ("Critical", ["CVE-2026-22190"]),
    OPENSSL: ("Critical", ["CVE-2026-21040"]),
    CURL: ("Important", ["CVE-2026-23014", "CVE-2026-23015"]),
    SUDO: ("Important", ["CVE-2026-26001"]),
}
PINNED = {
    REMEDIATED: [KERNEL, CURL],
    REBOOT: [KERNEL, SUDO],
    FAILS: [OPENSSL],
    LATE: [CURL],
    UNCOVERED: [SUDO],
}


def frame(rows: list[dict[str, Any]], columns: Any) -> pd.DataFrame:
    return typed_frame(rows, columns)


def production() -> pd.DataFrame:
    rows = [
        {
            "account_id": ACCOUNT,
            "region": REGION,
            "resource_id": iid,
            "patch_ids": ";".join(sorted(pids)),
            "pinned": len(pids),
        }
        for iid, pids in PINNED.items()
    ]
    return frame(rows, PRODUCTION_COLUMNS)


def plan() -> pd.DataFrame:
    """The match plan: Patch Manager lists CVE ids on MISSING patches only (none on the pending reboot)."""
    rows = []
    for iid, pids in PINNED.items():
        for pid in pids:
            pending = iid == REBOOT and pid == KERNEL
            severity, cves = CVES[pid]
            rows.append(
                {
                    "account_id": ACCOUNT,
                    "region": REGION,
                    "resource_type": "ec2",
                    "resource_id": iid,
                    "patch_id": pid,
                    "severity": severity,
                    "state": "INSTALLED_PENDING_REBOOT" if pending else "MISSING",
                    "cve_ids": "" if pending else ";".join(sorted(cves)),
                }
            )
    return frame(rows, PLAN_COLUMNS)


def finding(iid: str, cve: str, status: str, severity: str, updated: datetime, fixed_in: str = "1.2") -> dict[str, Any]:
    """A ListFindings finding as boto3 returns it."""
    digest = hashlib.md5(f"{iid}/{cve}".encode()).hexdigest()
    return {
        "findingArn": f"arn:aws:inspector2:{REGION}:{ACCOUNT}:finding/{digest}",
        "awsAccountId": ACCOUNT,
        "type": "PACKAGE_VULNERABILITY",
        "title": f"{cve} - pkg",
        "severity": severity,
        "status": status,
        "firstObservedAt": INSTALLED_AT - timedelta(days=3),
        "lastObservedAt": updated,
        "updatedAt": updated,
        "resources": [{"type": "AWS_EC2_INSTANCE", "id": iid, "region": REGION}],
        "packageVulnerabilityDetails": {
            "vulnerabilityId": cve,
            "source": "AMAZON_CVE",
            "vulnerablePackages": [{"name": "pkg", "version": "1.1", "fixedInVersion": fixed_in}],
        },
    }


RESCAN = INSTALLED_AT + timedelta(minutes=5)
FINDINGS = [
    # REMEDIATED: every pinned CVE closed by the rescan, except one Inspector never reported (NOT_FOUND).
    finding(REMEDIATED, "CVE-2026-22190", "CLOSED", "CRITICAL", RESCAN),
    finding(REMEDIATED, "CVE-2026-23014", "CLOSED", "HIGH", RESCAN),
    # REBOOT: the kernel is pending a reboot, sudo installed fine.
    finding(REBOOT, "CVE-2026-22190", "ACTIVE", "CRITICAL", RESCAN),
    finding(REBOOT, "CVE-2026-26001", "CLOSED", "HIGH", RESCAN),
    # FAILS: the OpenSSL install failed.
    finding(FAILS, "CVE-2026-21040", "ACTIVE", "CRITICAL", RESCAN),
    # Not targeted by the cycle: residual when ACTIVE and critical or high.
    finding(FAILS, "CVE-2026-40117", "ACTIVE", "HIGH", RESCAN, fixed_in="NotAvailable"),
    finding(REMEDIATED, "CVE-2026-22230", "ACTIVE", "HIGH", RESCAN),
    finding(REMEDIATED, "CVE-2026-27102", "ACTIVE", "LOW", RESCAN),
    finding(REBOOT, "CVE-2026-25001", "CLOSED", "CRITICAL", RESCAN),
    finding(LATE, "CVE-2026-40999", "ACTIVE", "CRITICAL", INSTALLED_AT - timedelta(days=1)),
    finding("i-0000000000000000f", "CVE-2026-40998", "ACTIVE", "CRITICAL", RESCAN),  # not inspected here
    # LATE: still as before the install (no rescan yet).
    finding(LATE, "CVE-2026-23014", "ACTIVE", "HIGH", INSTALLED_AT - timedelta(days=1)),
]


def coverage() -> list[dict[str, Any]]:
    def item(iid: str, code: str, reason: str, scanned: datetime | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"resourceId": iid, "scanStatus": {"statusCode": code, "reason": reason}}
        if scanned is not None:
            entry["lastScannedAt"] = scanned
        return entry

    return [
        item(REMEDIATED, "ACTIVE", "SUCCESSFUL", RESCAN),
        item(REBOOT, "ACTIVE", "SUCCESSFUL", RESCAN),
        item(FAILS, "ACTIVE", "SUCCESSFUL", INSTALLED_AT),  # rescanned exactly at the install: counts
        item(LATE, "ACTIVE", "SUCCESSFUL", INSTALLED_AT - timedelta(seconds=1)),
        item(UNCOVERED, "INACTIVE", "UNMANAGED_EC2_INSTANCE", INSTALLED_AT - timedelta(days=1)),
    ]


PATCH_STATES = {
    REMEDIATED: {KERNEL: "INSTALLED", CURL: "INSTALLED"},
    REBOOT: {KERNEL: "INSTALLED_PENDING_REBOOT", SUDO: "INSTALLED"},
    FAILS: {OPENSSL: "FAILED"},
    LATE: {CURL: "INSTALLED"},
    UNCOVERED: {SUDO: "INSTALLED"},
}


def classified() -> pd.DataFrame:
    expected = expected_cves(production(), plan(), PINNED)
    return classify_cves(
        expected,
        findings_frame(FINDINGS),
        coverage_frame(coverage()),
        {iid: iso_utc(INSTALLED_AT) for iid in PINNED},
        PATCH_STATES,
        WAIT_MINUTES,
    )


def by_key(cves: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["resource_id"], r["cve_id"]): r for r in cves.to_dict("records")}


def test_expected_cves_are_the_pinned_patches_cves_borrowed_across_instances() -> None:
    expected = expected_cves(production(), plan(), [REMEDIATED, REBOOT, "i-0ffffffffffffffff"])
    want = {(iid, cve) for iid in (REMEDIATED, REBOOT) for pid in PINNED[iid] for cve in CVES[pid][1]}
    assert set(zip(expected["resource_id"], expected["cve_id"], strict=True)) == want
    # REBOOT's kernel row had no CVE ids (pending reboot): they come from REMEDIATED's MISSING row.
    kernel = expected[(expected["resource_id"] == REBOOT) & (expected["cve_id"] == "CVE-2026-22190")]
    assert kernel["patch_ids"].tolist() == [KERNEL] and kernel["severity"].tolist() == ["CRITICAL"]
    assert patch_cves(plan())[KERNEL] == (CVES[KERNEL][1], "Critical")
    assert set(expected["severity"]) == {
        catalog_severity(CVES[pid][0]) for iid in (REMEDIATED, REBOOT) for pid in PINNED[iid]
    }


def test_a_cve_carried_by_two_pinned_patches_is_one_row_naming_both() -> None:
    both = {"ALAS-A": ("Medium", ["CVE-2026-1"]), "ALAS-B": ("Critical", ["CVE-2026-1", "CVE-2026-2"])}
    rows = [
        {"resource_type": "ec2", "resource_id": REMEDIATED, "patch_id": pid, "severity": sev, "cve_ids": ";".join(cves)}
        for pid, (sev, cves) in both.items()
    ]
    prod = frame(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "resource_id": REMEDIATED,
                "patch_ids": "ALAS-A;ALAS-B",
                "pinned": 2,
            }
        ],
        PRODUCTION_COLUMNS,
    )
    expected = expected_cves(prod, frame(rows, PLAN_COLUMNS), [REMEDIATED])
    row = expected[expected["cve_id"] == "CVE-2026-1"].iloc[0]
    assert (row["patch_ids"], row["severity"]) == ("ALAS-A;ALAS-B", "CRITICAL")  # the more severe patch's


@pytest.mark.parametrize(
    ("catalog", "inspector"),
    [
        ("Critical", "CRITICAL"),
        ("Important", "HIGH"),
        ("High", "HIGH"),
        ("Moderate", "MEDIUM"),
        ("Low", "LOW"),
        ("None", "UNTRIAGED"),
    ],
)
def test_catalog_severities_on_inspectors_scale(catalog: str, inspector: str) -> None:
    assert catalog_severity(catalog) == inspector


def test_each_status_with_its_reason() -> None:
    cves = classified()
    assert list(cves.columns) == list(CVE_COLUMNS)
    rows = by_key(cves)
    assert len(rows) == sum(len(CVES[pid][1]) for pids in PINNED.values() for pid in pids)

    closed = rows[(REMEDIATED, "CVE-2026-22190")]
    assert closed["status"] == CveStatus.REMEDIATED and closed["reason"] == f"finding closed at {iso_utc(RESCAN)}"
    assert closed["finding_arn"] and closed["last_scanned_at"] == iso_utc(RESCAN) and closed["severity"] == "CRITICAL"

    never = rows[(REMEDIATED, "CVE-2026-23015")]
    assert never["status"] == CveStatus.NOT_FOUND and never["finding_arn"] == ""
    assert never["reason"] == "Inspector reported no finding for it on this instance"
    assert never["severity"] == "HIGH"  # no finding: the catalog's Important

    reboot = rows[(REBOOT, "CVE-2026-22190")]
    assert reboot["status"] == CveStatus.STILL_ACTIVE
    assert reboot["reason"] == f"pending reboot: {KERNEL} is INSTALLED_PENDING_REBOOT"
    assert rows[(REBOOT, "CVE-2026-26001")]["status"] == CveStatus.REMEDIATED

    failed = rows[(FAILS, "CVE-2026-21040")]
    assert (failed["status"], failed["reason"]) == (CveStatus.STILL_ACTIVE, f"install failed: {OPENSSL} FAILED")

    for cve in CVES[CURL][1]:
        late = rows[(LATE, cve)]
        assert late["status"] == CveStatus.UNVERIFIED
        assert late["reason"] == f"Inspector did not rescan {LATE} within {WAIT_MINUTES} minutes"
    uncovered = rows[(UNCOVERED, "CVE-2026-26001")]
    assert uncovered["status"] == CveStatus.UNVERIFIED
    assert uncovered["reason"] == "not covered by Inspector: UNMANAGED_EC2_INSTANCE"

    assert status_counts(cves) == {
        "REMEDIATED": 3,
        "STILL_ACTIVE": 2,
        "NOT_FOUND": 1,
        "UNVERIFIED": 3,
    }
    assert set(CVE_STATUS_MEANINGS) == set(CveStatus)


def test_unknown_install_time_or_coverage_leaves_cves_unverified() -> None:
    expected = expected_cves(production(), plan(), [REMEDIATED, REBOOT])
    no_time = classify_cves(expected, findings_frame(FINDINGS), coverage_frame(coverage()), {}, PATCH_STATES, 5)
    assert set(no_time["status"]) == {CveStatus.UNVERIFIED}
    assert set(no_time["reason"]) == {f"no install time for {i} from Patch Manager" for i in (REMEDIATED, REBOOT)}
    installed = {iid: iso_utc(INSTALLED_AT) for iid in PINNED}
    no_cover = classify_cves(expected, findings_frame(FINDINGS), coverage_frame([]), installed, PATCH_STATES, 5)
    assert set(no_cover["reason"]) == {
        f"not covered by Inspector: no coverage record for {i}" for i in (REMEDIATED, REBOOT)
    }


def test_an_instance_the_install_never_reached_is_judged_by_its_last_scan() -> None:
    expected = expected_cves(production(), plan(), [LATE, UNCOVERED])
    never_scanned = {"resourceId": UNCOVERED, "scanStatus": {"statusCode": "ACTIVE", "reason": "PENDING_INITIAL_SCAN"}}
    late_only = [c for c in coverage() if c["resourceId"] == LATE]
    states = {LATE: {CURL: "MISSING"}, UNCOVERED: {SUDO: "MISSING"}}
    cves = classify_cves(
        expected,
        findings_frame(FINDINGS),
        coverage_frame([*late_only, never_scanned]),
        {},
        states,
        5,
        {LATE, UNCOVERED},
    )
    rows = by_key(cves)
    active = rows[(LATE, "CVE-2026-23014")]  # scanned before the install time, but nothing was installed
    assert (active["status"], active["reason"]) == (CveStatus.STILL_ACTIVE, f"patch not installed: {CURL} is MISSING")
    assert rows[(LATE, "CVE-2026-23015")]["status"] == CveStatus.NOT_FOUND
    pending = rows[(UNCOVERED, "CVE-2026-26001")]
    assert (pending["status"], pending["reason"]) == (
        CveStatus.UNVERIFIED,
        f"Inspector has not scanned {UNCOVERED} yet",
    )


@pytest.mark.parametrize(
    ("states", "reason"),
    [
        (None, "no patch states from verify for i-1"),
        ({"P1": "MISSING", "P2": "INSTALLED"}, "patch not installed: P1 is MISSING"),
        ({"P2": "INSTALLED"}, "patch not installed: P1 is not reported by Patch Manager"),
        ({"P1": "FAILED", "P2": "INSTALLED_PENDING_REBOOT"}, "pending reboot: P2 is INSTALLED_PENDING_REBOOT"),
        (
            {"P1": "INSTALLED", "P2": "INSTALLED_OTHER"},
            "still reported after the install of P1 (INSTALLED), P2 (INSTALLED_OTHER)",
        ),
    ],
)
def test_still_active_reasons(states: dict[str, str] | None, reason: str) -> None:
    assert still_active_reason("i-1", ["P1", "P2"], states) == reason


def test_a_suppressed_finding_is_still_active_and_says_so() -> None:
    expected = expected_cves(production(), plan(), [FAILS])
    suppressed = [finding(FAILS, "CVE-2026-21040", "SUPPRESSED", "CRITICAL", RESCAN)]
    installed = {FAILS: iso_utc(INSTALLED_AT)}
    cves = classify_cves(expected, findings_frame(suppressed), coverage_frame(coverage()), installed, PATCH_STATES, 5)
    (row,) = cves.to_dict("records")
    assert row["status"] == CveStatus.STILL_ACTIVE and row["reason"].endswith("(finding SUPPRESSED)")


def test_residual_findings_are_active_critical_and_high_ones_the_cycle_did_not_target() -> None:
    expected = expected_cves(production(), plan(), PINNED)
    residual = residual_findings(findings_frame(FINDINGS), expected, list(PINNED))
    assert list(residual.columns) == list(RESIDUAL_COLUMNS)
    targeted = set(zip(expected["resource_id"], expected["cve_id"], strict=True))
    want = [
        f
        for f in FINDINGS
        if f["status"] == "ACTIVE"
        and f["severity"] in ("CRITICAL", "HIGH")
        and f["resources"][0]["id"] in PINNED
        and (f["resources"][0]["id"], f["packageVulnerabilityDetails"]["vulnerabilityId"]) not in targeted
    ]
    assert len(want) == 3
    assert sorted(residual["finding_arn"]) == sorted(f["findingArn"] for f in want)
    assert residual["severity"].tolist() == sorted(residual["severity"], key=lambda s: s != "CRITICAL")
    unfixed = residual[residual["cve_id"] == "CVE-2026-40117"].iloc[0]
    assert (unfixed["fixed_in"], unfixed["resource_id"], unfixed["title"]) == (
        "NotAvailable",
        FAILS,
        "CVE-2026-40117 - pkg",
    )
    assert unfixed["first_observed_at"] == iso_utc(INSTALLED_AT - timedelta(days=3))


def test_empty_inputs_give_empty_typed_frames() -> None:
    empty = expected_cves(frame([], PRODUCTION_COLUMNS), frame([], PLAN_COLUMNS), [])
    cves = classify_cves(empty, findings_frame([]), coverage_frame([]), {}, {}, 5)
    assert cves.empty and list(cves.columns) == list(CVE_COLUMNS)
    assert status_counts(cves) == dict.fromkeys(CveStatus, 0)
    assert residual_findings(findings_frame([]), empty, []).empty


def test_the_open_finding_wins_when_inspector_holds_several_for_one_cve() -> None:
    # A recurrence after the reopen window is a new finding while the closed one is kept: whichever order
    # ListFindings returns them in, the CVE is where the open one says.
    old = INSTALLED_AT - timedelta(days=40)
    closed = finding("i-1", "CVE-2026-1", "CLOSED", "HIGH", INSTALLED_AT + timedelta(hours=1))
    reopened = {
        **finding("i-1", "CVE-2026-1", "ACTIVE", "HIGH", old),
        "findingArn": "arn:aws:inspector2:x:y:finding/new",
    }
    for order in ([closed, reopened], [reopened, closed]):
        (chosen,) = current_findings(findings_frame(order)).values()
        assert chosen["status"] == "ACTIVE" and chosen["finding_arn"].endswith("/new")
    newer = finding("i-1", "CVE-2026-1", "CLOSED", "HIGH", INSTALLED_AT + timedelta(hours=2))
    (latest,) = current_findings(findings_frame([newer, closed])).values()
    assert latest["updated_at"] == iso_utc(INSTALLED_AT + timedelta(hours=2))

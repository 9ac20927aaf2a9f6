"""Drift since the last cycle: each kind is found, and what the cycle already knew is not drift."""

from __future__ import annotations

from typing import Any

import pandas as pd

from patchcycle.core.drift import DRIFT_COLUMNS, DriftKind, detect_drift, drift_summary, watched_instances

ACCOUNT, REGION = "111122223333", "us-east-1"


def ec2(resource_id: str, verdict: str, compliance: str, patches: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "resource_id": resource_id,
        "resource_type": "ec2",
        "account_id": extra.get("account_id", ACCOUNT),
        "region": extra.get("region", REGION),
        "verdict": verdict,
        "compliance_state": compliance,
        "missing_patches": [{"patch_id": p} for p in patches],
        "patch_state": None if extra.get("no_state") else {"operation": "Install"},
    }


REPORT: dict[str, Any] = {
    "generated_at": "2026-11-20T04:00:00Z",
    "resources": [
        ec2("i-patched", "PATCHED", "COMPLIANT", ["P-1", "P-2"]),
        ec2("i-failed", "FAILED", "NON_COMPLIANT", ["P-3"]),
        ec2("i-clean", "COMPLIANT", "COMPLIANT", []),
        ec2("i-nostate", "NO_DATA", "UNKNOWN", [], no_state=True),
        ec2("i-other-region", "PATCHED", "COMPLIANT", ["P-1"], region="eu-west-1"),
        {"resource_id": "db", "resource_type": "rds", "account_id": ACCOUNT, "region": REGION},
    ],
    "inspection": {
        "cves": [
            {"resource_id": "i-patched", "cve_id": "CVE-KNOWN", "status": "STILL_ACTIVE"},
            {"resource_id": "i-patched", "cve_id": "CVE-FIXED", "status": "REMEDIATED"},
        ],
        "residual": [{"resource_id": "i-clean", "cve_id": "CVE-RESIDUAL"}],
    },
}


def kinds(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {(row.resource_id, row.kind, row.subject) for row in frame.itertuples()}


def test_watched_instances_are_the_target_s_ec2_entries_with_a_patch_state() -> None:
    ids = [entry["resource_id"] for entry in watched_instances(REPORT, ACCOUNT, REGION)]
    assert ids == ["i-patched", "i-failed", "i-clean"]


def test_nothing_changed_is_no_drift() -> None:
    # i-failed's P-3 was already reported outstanding by the cycle: still missing is not a change.
    absent = {"i-failed": [{"KBId": "P-3", "State": "FAILED", "Severity": "Critical"}]}
    drift = detect_drift(REPORT, ACCOUNT, REGION, absent, None, [])
    assert drift.empty and list(drift.columns) == list(DRIFT_COLUMNS)
    assert drift_summary(drift, 3) == {
        "instances_watched": 3,
        "instances_drifted": 0,
        "drift": 0,
        "by_kind": {kind.value: 0 for kind in DriftKind},
    }


def test_each_kind_of_drift_is_found() -> None:
    absent = {
        "i-patched": [
            {"KBId": "P-2", "State": "MISSING", "Severity": "Important"},
            {"KBId": "P-9", "State": "MISSING"},
        ],
        "i-clean": [{"KBId": "P-8", "State": "MISSING"}],
        "i-unknown": [{"KBId": "P-1", "State": "MISSING"}],  # not in the cycle's report: not watched
    }
    config = pd.DataFrame(
        [
            {"resource_id": "i-clean", "compliance": "NON_COMPLIANT", "annotation": "1 missing"},
            {"resource_id": "i-failed", "compliance": "NON_COMPLIANT", "annotation": ""},  # the cycle knew it
            {"resource_id": "i-patched", "compliance": "COMPLIANT", "annotation": ""},
        ]
    )
    before, after = "2026-11-19T00:00:00Z", "2026-11-21T00:00:00Z"  # the report was written in between
    findings = [
        {
            "resource_id": "i-patched",
            "cve_id": "CVE-NEW",
            "severity": "CRITICAL",
            "title": "t",
            "first_observed_at": after,
        },
        {
            "resource_id": "i-patched",
            "cve_id": "CVE-NEW",
            "severity": "CRITICAL",
            "title": "twice",
            "first_observed_at": after,
        },
        # Older than the report and not proved closed: the cycle saw it (still active), not drift.
        {
            "resource_id": "i-patched",
            "cve_id": "CVE-KNOWN",
            "severity": "CRITICAL",
            "title": "t",
            "first_observed_at": before,
        },
        # The cycle proved it closed; open again, whatever its first sighting.
        {
            "resource_id": "i-patched",
            "cve_id": "CVE-FIXED",
            "severity": "CRITICAL",
            "title": "t",
            "first_observed_at": before,
        },
        {
            "resource_id": "i-clean",
            "cve_id": "CVE-RESIDUAL",
            "severity": "CRITICAL",
            "title": "t",
            "first_observed_at": before,
        },
        # On an instance the cycle did not inspect, there before the report: not drift either.
        {
            "resource_id": "i-clean",
            "cve_id": "CVE-OLD",
            "severity": "CRITICAL",
            "title": "t",
            "first_observed_at": before,
        },
    ]
    drift = detect_drift(REPORT, ACCOUNT, REGION, absent, config, findings, config_rule="rule-x")
    assert kinds(drift) == {
        ("i-patched", DriftKind.PATCH_UNINSTALLED, "P-2"),
        ("i-patched", DriftKind.NEW_MISSING, "P-9"),
        ("i-clean", DriftKind.NEW_MISSING, "P-8"),
        ("i-clean", DriftKind.CONFIG_NON_COMPLIANT, "rule-x"),
        ("i-patched", DriftKind.NEW_CRITICAL_FINDING, "CVE-NEW"),
        # A CVE the cycle saw closed and now active again is new to it.
        ("i-patched", DriftKind.NEW_CRITICAL_FINDING, "CVE-FIXED"),
    }
    uninstalled = drift[drift["kind"] == DriftKind.PATCH_UNINSTALLED].iloc[0]
    assert (uninstalled["severity"], uninstalled["state"]) == ("Important", "MISSING")
    assert "installed by the cycle" in uninstalled["detail"]
    assert drift_summary(drift, 3)["instances_drifted"] == 2
    assert drift_summary(drift, 3)["by_kind"][DriftKind.NEW_CRITICAL_FINDING] == 2


def test_the_instances_a_refresh_launched_are_watched_as_left_with_their_pinned_patches() -> None:
    from patchcycle.core.drift import detect_drift, watched_instances

    group = {
        "account_id": "123456789012",
        "region": "us-east-1",
        "group": "web-asg",
        "status": "Successful",
        "pinned_patches": ["ALAS-1"],
        "new_instances": [{"instance_id": "i-new", "compliant": True, "cves_closed": True}],
    }
    # The instance it replaced: in the report with the patch state it had, but terminated since.
    replaced = {
        "resource_id": "i-old",
        "resource_type": "ec2",
        "account_id": "123456789012",
        "region": "us-east-1",
        "verdict": "REPLACED",
        "compliance_state": "NON_COMPLIANT",
        "patch_state": {"missing": 1},
        "missing_patches": [{"patch_id": "ALAS-1"}],
    }
    report = {
        "resources": [replaced],
        "install": {"auto_scaling_groups": [group]},
        "generated_at": "2026-11-20T03:00:00Z",
    }
    watched = watched_instances(report, "123456789012", "us-east-1")
    assert [entry["resource_id"] for entry in watched] == ["i-new"]  # not the terminated i-old
    assert watched_instances(report, "123456789012", "eu-west-1") == []
    absent = {"i-new": [{"KBId": "ALAS-1", "State": "MISSING"}, {"KBId": "ALAS-9", "State": "MISSING"}]}
    drift = detect_drift(report, "123456789012", "us-east-1", absent, None, [])
    assert dict(zip(drift["subject"], drift["kind"], strict=True)) == {
        "ALAS-1": "PATCH_UNINSTALLED",
        "ALAS-9": "NEW_MISSING",
    }
    # Nothing missing on it: expected, no drift.
    assert detect_drift(report, "123456789012", "us-east-1", {}, None, []).empty

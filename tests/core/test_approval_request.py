"""The approval request's body: each section over a small fleet of two operating systems in two accounts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from patchcycle.core.approval_request import (
    SECTIONS,
    ApprovalInputs,
    approval_body,
    patches_section,
    pinned_patches,
    severity_label,
    staging_passed,
    where_section,
)
from patchcycle.core.frames import typed_frame
from patchcycle.core.plan import PLAN_COLUMNS
from patchcycle.core.staging import PLANNED_PRODUCTION_COLUMNS, PROFILE_COLUMNS, STAGING_RESULT_COLUMNS
from patchcycle.core.waves import WAVE_PLAN_COLUMNS

ACCOUNT, OTHER, EAST, WEST = "111111111111", "222222222222", "us-east-1", "eu-west-1"
AL, WIN = "Amazon Linux 2023", "Windows Server 2022 Datacenter"
# (patch, severity, CVEs, title) per operating system
PATCHES = {
    AL: [
        ("ALAS2023-2026-1134", "Critical", "CVE-2026-21040", "openssl: buffer overflow"),
        ("ALAS2023-2026-1101", "Important", "CVE-2026-22101;CVE-2026-22140", "kernel | two fixes"),
        ("ALAS2023-2026-1120", "", "", "tzdata update"),
    ],
    WIN: [
        ("KB5044281", "CRITICAL", "CVE-2026-30001;CVE-2026-30002;CVE-2026-30003;CVE-2026-30004", "2026-11 rollup"),
        ("KB5044099", "Moderate", "CVE-2026-30001", ".NET update"),
    ],
}
# (account, region, instance, OS, patch group, profile)
INSTANCES = [
    (ACCOUNT, EAST, "i-0a1", AL, "web", "p01"),
    (ACCOUNT, EAST, "i-0a2", AL, "web", "p01"),
    (OTHER, WEST, "i-0w1", WIN, "windows", "p02"),
    (OTHER, WEST, "i-0n1", AL, "", "p03"),  # its profile is over the staging cap: not in the rollout
]
WAVES = {"i-0a1": 1, "i-0a2": 2, "i-0w1": 2}


def _plan() -> pd.DataFrame:
    rows = [
        {
            "account_id": account,
            "region": region,
            "resource_type": "ec2",
            "resource_id": instance,
            "patch_id": patch,
            "title": title,
            "classification": "Security",
            "severity": severity,
            "state": "MISSING",
            "cve_ids": cves,
            "patch_group": group,
        }
        for account, region, instance, platform, group, _ in INSTANCES
        for patch, severity, cves, title in PATCHES[platform]
    ]
    return typed_frame(rows, PLAN_COLUMNS)


def _production() -> pd.DataFrame:
    rows = []
    for account, region, instance, platform, group, profile in INSTANCES:
        patch_ids = sorted(patch for patch, *_ in PATCHES[platform])
        rows.append(
            {
                "account_id": account,
                "region": region,
                "resource_id": instance,
                "platform_name": platform,
                "patch_group": group,
                "patch_ids": ";".join(patch_ids),
                "pinned": len(patch_ids),
                "profile_id": profile,
            }
        )
    return typed_frame(rows, PLANNED_PRODUCTION_COLUMNS)


def _profiles() -> pd.DataFrame:
    rows = [
        {"profile_id": "p01", "account_id": ACCOUNT, "region": EAST, "platform_name": AL, "patch_group": "web"},
        {"profile_id": "p02", "account_id": OTHER, "region": WEST, "platform_name": WIN, "patch_group": "windows"},
        {"profile_id": "p03", "account_id": OTHER, "region": WEST, "platform_name": AL, "patch_group": ""},
    ]
    counts = {"p01": 2, "p02": 1, "p03": 1}
    return typed_frame(
        [
            {**row, "production_instances": counts[row["profile_id"]], "staged": row["profile_id"] != "p03"}
            for row in rows
        ],
        PROFILE_COLUMNS,
    )


def _waves() -> pd.DataFrame:
    rows = [
        {"account_id": a, "region": r, "resource_id": i, "patch_group": g, "profile_id": p, "wave": WAVES[i]}
        for a, r, i, _, g, p in INSTANCES
        if i in WAVES
    ]
    return typed_frame(rows, WAVE_PLAN_COLUMNS)


def _staging(windows_passes: bool = False) -> pd.DataFrame:
    def row(profile: str, region: str, instance: str, platform: str, passed: bool, reason: str = "") -> dict[str, Any]:
        patches = sorted(patch for patch, *_ in PATCHES[platform])
        return {
            "account_id": ACCOUNT if region == EAST else OTHER,
            "region": region,
            "profile_id": profile,
            "instance_id": instance,
            "patch_group": "web" if platform == AL else "windows",
            "platform_name": platform,
            "patch_ids": ";".join(patches),
            "install_status": "Success",
            "installed": len(patches) - (0 if passed else 1),
            "health_status": "Success" if passed else "Failed",
            "passed": passed,
            "reason": reason,
        }

    why = "1 planned patch not installed: KB5044099; health check Failed (exit 1): FAIL: W3SVC stopped"
    return typed_frame(
        [
            row("p01", EAST, "i-0stage1", AL, True),
            row("p02", WEST, "i-0stage2", WIN, windows_passes, "" if windows_passes else why),
        ],
        STAGING_RESULT_COLUMNS,
    )


STACKS = [
    {"stack_name": "patchcycle-staging-x", "account_id": ACCOUNT, "region": EAST, "created": True, "error": ""},
    {"stack_name": "patchcycle-staging-x", "account_id": OTHER, "region": WEST, "created": True, "error": ""},
]
LINKS = [
    ("Run page", "https://airflow.example.com/patchcycle/runs/patch_cycle/manual__1"),
    ("Staging results (aws_default, us-east-1)", "/patchcycle/runs/patch_cycle/manual__1/artifacts/staging%2Fx"),
]


def inputs(**changes: Any) -> ApprovalInputs:
    fields: dict[str, Any] = {
        "plan": _plan(),
        "production": _production(),
        "profiles": _profiles(),
        "waves": _waves(),
        "staging": _staging(),
        "stacks": STACKS,
        "halt_threshold": "10%",
        "staging_cap": 2,
        "links": LINKS,
    }
    return ApprovalInputs(**{**fields, **changes})


def test_pinned_patches_are_the_rollout_s_by_os_most_severe_first_with_their_cves() -> None:
    pinned = pinned_patches(_production(), _waves(), _plan())
    assert list(zip(pinned["platform_name"], pinned["patch_id"], pinned["severity"], strict=True)) == [
        (AL, "ALAS2023-2026-1134", "Critical"),
        (WIN, "KB5044281", "Critical"),  # CRITICAL as Windows spells it
        (AL, "ALAS2023-2026-1101", "Important"),
        (WIN, "KB5044099", "Moderate"),
        (AL, "ALAS2023-2026-1120", "Unrated"),
    ]
    # i-0n1 (not staged) is not counted: two Amazon Linux instances install each Amazon Linux patch
    assert dict(zip(pinned["patch_id"], pinned["instances"], strict=True))["ALAS2023-2026-1134"] == 2
    assert pinned.set_index("patch_id").loc["ALAS2023-2026-1101", "cve_ids"] == "CVE-2026-22101;CVE-2026-22140"
    assert [severity_label(s) for s in ("HIGH", "medium", "", "Unspecified", "Urgent")] == [
        "High",
        "Medium",
        "Unrated",
        "Unrated",
        "Urgent",
    ]


def test_the_body_says_what_approve_installs_where_and_what_staging_found() -> None:
    body = approval_body(inputs())

    assert body.startswith("# Staging FAILED: 1 of 2 replicas failed\n")
    # 5 distinct patches, 2 critical; CVEs: 1 + 2 (Amazon Linux) + 4 (Windows, one shared with KB5044099)
    assert (
        "**Approve** installs 5 pinned patches (2 critical, fixing 7 CVEs) on 3 production instances in 2 accounts "
        "and 2 regions, in 2 waves (the canary first)." in body
    )
    assert (
        "| Operating system | Instances | Pinned patches | Critical | Important | Moderate | Unrated | CVEs fixed |"
        in (body)
    )
    assert "**Staging did not pass**: approving rolls these patches out all the same, and the run ends failed" in body
    assert f"| {AL} | 2 | 3 | 1 | 1 | 0 | 1 | 3 |" in body
    assert f"| {WIN} | 1 | 2 | 1 | 0 | 1 | 0 | 4 |" in body
    assert "### Critical patches (2)" in body
    assert f"| ALAS2023-2026-1134 | openssl: buffer overflow | {AL} | CVE-2026-21040 | 2 |" in body
    assert (
        f"| KB5044281 | 2026-11 rollup | {WIN} | CVE-2026-30001, CVE-2026-30002, CVE-2026-30003 and 1 more | 1 |"
        in body
    )
    assert "kernel \\| two fixes" not in body  # not critical: counted, not listed
    assert f"| {ACCOUNT} | {EAST} | web | 2 | {AL} |" in body
    assert f"| {OTHER} | {WEST} | windows | 1 | {WIN} |" in body
    assert "Not in this rollout: 1 instance of 1 profile that staging did not rehearse (at most 2 replicas" in body
    assert f"| p01 | {AL} | {ACCOUNT} {EAST} | web | 2 | i-0stage1 | 3 of 3 | passed | passed |" in body
    assert f"| p02 | {WIN} | {OTHER} {WEST} | windows | 1 | i-0stage2 | 1 of 2 | failed | **FAILED** |" in body
    assert "| p02 | i-0stage2 | 1 planned patch not installed: KB5044099; health check Failed" in body
    assert "| 1 (canary) | 1 |" in body and "| 2 | 2 |" in body
    assert "3 production instances in 2 waves; a wave with more than 10% failed instance(s) halts the rest." in body
    assert "- [Run page](https://airflow.example.com/patchcycle/runs/patch_cycle/manual__1)" in body
    assert "- [Staging results (aws_default, us-east-1)](/patchcycle/runs/patch_cycle/manual__1/artifacts/" in body
    assert "s3://" not in body
    headings = [line for line in body.splitlines() if line.startswith("## ")]
    assert headings == [
        "## What will be installed",
        "## Where",
        "## Staging results by profile",
        "## Production waves",
        "## Links",
    ]


def test_staging_passed_needs_every_replica_and_every_stack() -> None:
    good = inputs(staging=_staging(windows_passes=True))
    assert staging_passed(good)
    assert approval_body(good).startswith("# Staging passed: 2 replicas patched and healthy\n")
    assert "Why staging failed" not in approval_body(good) and "Staging did not pass" not in approval_body(good)
    not_needed = [STACKS[0], {**STACKS[1], "created": False, "status": "NOT_NEEDED"}]
    assert staging_passed(inputs(staging=_staging(windows_passes=True), stacks=not_needed))
    broken = [STACKS[0], {**STACKS[1], "created": False, "error": "CREATE_FAILED | subnet not found"}]
    failed_stack = inputs(staging=_staging(windows_passes=True), stacks=broken)
    assert not staging_passed(failed_stack)
    body = approval_body(failed_stack)
    assert body.startswith("# Staging FAILED: 0 of 2 replicas failed, 1 stack not created\n")
    assert "CREATE_FAILED \\| subnet not found" in body  # pipes escaped in tables
    empty = inputs(staging=typed_frame([], STAGING_RESULT_COLUMNS))
    assert not staging_passed(empty)
    assert approval_body(empty).startswith("# Staging FAILED: no replica was patched\n")


def test_sections_say_nothing_when_they_have_nothing_to_say() -> None:
    none_critical = _plan().assign(severity=lambda f: f["severity"].str.replace("(?i)critical", "Low", regex=True))
    assert patches_section(inputs(plan=none_critical))[-1] == "No critical patch is pinned."
    nothing = inputs(waves=typed_frame([], WAVE_PLAN_COLUMNS))
    assert patches_section(nothing) == [] and where_section(nothing) == []
    assert "## Links" not in approval_body(inputs(links=[]))


def test_a_stage_adds_its_own_section() -> None:
    def rds_section(_: ApprovalInputs) -> list[str]:
        return ["## RDS maintenance", "", "2 databases get system-update in their maintenance window."]

    sections = (*SECTIONS[:-1], rds_section, SECTIONS[-1])
    body = approval_body(inputs(), sections)
    assert body.index("## Production waves") < body.index("## RDS maintenance") < body.index("## Links")


def test_one_account_shows_regions_only_and_long_titles_are_cut() -> None:
    staging = _staging()
    one_account = inputs(staging=staging[staging["account_id"] == ACCOUNT].reset_index(drop=True))
    body = approval_body(one_account)
    assert "| Profile | Operating system | Region | Patch group |" in body
    assert f"| p01 | {AL} | {EAST} | web | 2 | i-0stage1 |" in body
    rollup = "2026-11 Cumulative Update for Microsoft server operating system version 21H2 for x64-based Systems (KB1)"
    plan = _plan().assign(title=lambda f: f["title"].where(f["patch_id"] != "KB5044281", rollup))
    row = next(line for line in approval_body(inputs(plan=plan)).splitlines() if line.startswith("| KB5044281 |"))
    title = row.split(" | ")[1]
    assert 70 < len(title) <= 80 and title.endswith("...") and rollup.startswith(title[:-3])

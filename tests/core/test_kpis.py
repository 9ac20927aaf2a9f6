"""compute_kpis on reports built by build_report: install mode with each failure cause, nothing attempted, scan."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import jsonschema
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.kpis import (
    BASIS_INSTALL_START,
    BASIS_RUN_START,
    FAILURE_REASONS,
    INSTALL_ONLY_REASONS,
    KPIS_SCHEMA,
    compute_kpis,
    failure_reason,
    target_kpis,
)
from patchcycle.core.report import build_report
from patchcycle.core.verdicts import OUTCOME_COLUMNS, Outcome, Verdict, install_verdicts
from tests.core.test_report import GENERATED_AT, RUN_ID, install_section, sample_report
from tests.core.test_verdicts import ACCOUNT, EAST, WEST, scan_fleet

SENT_OK = {"invocation_status": "Success", "installed": 2}
HEALTH = "health check Failed (exit 1) after the install: FAIL: nginx"
# What the install did to each in-scope EC2 instance of the scan fleet (all in EAST): (wave, outcome, fields), and
# the failures_by_reason key it must land in (None: not a failure). i-reboot has no outcome: its outstanding
# patches make it FAILED ("no install outcome recorded"); i-scanfail keeps its scan verdict.
INSTALL: dict[str, tuple[int, Outcome, dict[str, Any], str | None]] = {
    "i-missing": (1, Outcome.SENT, SENT_OK, None),
    "i-ok": (2, Outcome.SENT, {"invocation_status": "Success", "installed": 1, "pending_reboot": 1}, None),
    "i-nodata": (
        1,
        Outcome.SENT,
        {**SENT_OK, "validation_failure": HEALTH, "validation_code": "HEALTH_CHECK_FAILED"},
        "HEALTH_CHECK_FAILED",
    ),
    "i-offline": (2, Outcome.NOT_RUN, {"detail": "wave 2 did not run: stopped"}, "NOT_ATTEMPTED"),
    "i-unmanaged": (2, Outcome.HALTED, {"detail": "halted after wave 1"}, None),
    "i-stopped": (2, Outcome.SENT, {"invocation_status": "TimedOut", "detail": "x"}, "INSTALL_FAILED"),
}
NO_OUTCOME = {"i-reboot": "NO_OUTCOME", "i-scanfail": "SCAN_FAILED"}


SKIP_CODES = {Outcome.NOT_RUN: "NOT_ATTEMPTED", Outcome.HALTED: "HALTED", Outcome.REJECTED: "REJECTED"}


def outcome_row(resource_id: str, wave: int, outcome: Outcome, fields: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"account_id": ACCOUNT, "region": EAST, "resource_id": resource_id, "wave": wave}
    row |= {"reason_code": SKIP_CODES.get(outcome, "")}
    row |= {"outcome": outcome.value, "detail": "", "pinned": 2, "installed": 0, "pending_reboot": 0}
    row |= {"validation_failure": "", "validation_code": "", "rollback": "", "rollback_detail": "", "snapshot_ids": ""}
    return row | {"verified": outcome == Outcome.SENT} | fields


def install_report(plan: dict[str, tuple[int, Outcome, dict[str, Any], str | None]] = INSTALL) -> dict[str, Any]:
    """The install-mode report of the scan fleet with `plan`'s outcomes and install_section()'s waves."""
    fleet = scan_fleet()
    outcomes = typed_frame(
        [outcome_row(rid, wave, outcome, fields) for rid, (wave, outcome, fields, _) in plan.items()], OUTCOME_COLUMNS
    )
    verdicts = install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
    return build_report(
        RUN_ID,
        "install",
        fleet.inventory,
        verdicts,
        fleet.plan,
        fleet.compliance,
        [],
        GENERATED_AT,
        install=install_section(),
        waves_by_resource={rid: wave for rid, (wave, *_) in plan.items()},
    )


def stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def by_target(kpis: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["account_id"], t["region"]): t for t in kpis["targets"]}


def test_install_kpis_per_target_and_fleet() -> None:
    report = install_report()
    kpis = compute_kpis(report)
    jsonschema.validate(json.loads(json.dumps(kpis)), KPIS_SCHEMA)
    verdicts = {r["resource_id"]: r["verdict"] for r in report["resources"]}
    east = by_target(kpis)[(ACCOUNT, EAST)]
    east_ids = [r["resource_id"] for r in report["resources"] if r["region"] == EAST]

    patched = [rid for rid, (_, outcome, fields, reason) in INSTALL.items() if outcome == Outcome.SENT and not reason]
    failed = [rid for rid, (*_, reason) in INSTALL.items() if reason] + ["i-reboot"]
    assert east["in_scope"] == len(east_ids)
    assert east["patched"] == len(patched) == 2
    assert east["pending_reboot"] == sum(1 for rid in patched if INSTALL[rid][2].get("pending_reboot"))
    assert east["failed"] == len(failed)
    assert east["attempted"] == len(patched) + len(failed)
    assert east["success_rate"] == pytest.approx(100 * len(patched) / (len(patched) + len(failed)))
    assert east["skipped"] == sum(1 for rid in east_ids if verdicts[rid].startswith("SKIPPED_"))

    expected_reasons = Counter(reason for *_, reason in INSTALL.values() if reason) + Counter(NO_OUTCOME.values())
    assert east["failures_by_reason"] == {reason: expected_reasons[reason] for reason in FAILURE_REASONS}

    # Time to patch: from the install's first recorded time (the staging stack's creation) to its wave's end.
    section = report["install"]
    start = min(
        stamp(section["staging"]["stacks"][0]["created_at"]), *(stamp(w["started_at"]) for w in section["waves"])
    )
    ends = {w["wave"]: stamp(w["finished_at"]) for w in section["waves"]}
    seconds = sorted((ends[INSTALL[rid][0]] - start).total_seconds() for rid in patched)
    assert kpis["time_to_patch_basis"] == BASIS_INSTALL_START
    assert kpis["run_started_at"] == start.isoformat().replace("+00:00", "Z")
    ttp = east["time_to_patch"]
    assert ttp["count"] == len(seconds) and ttp["samples"] == [[s, seconds.count(s)] for s in sorted(set(seconds))]
    assert (ttp["min_seconds"], ttp["max_seconds"]) == (seconds[0], seconds[-1])
    assert ttp["mean_seconds"] == pytest.approx(sum(seconds) / len(seconds))

    # RDS and S3 in WEST: nothing attempted there.
    west = by_target(kpis)[(ACCOUNT, WEST)]
    assert west["attempted"] == 0 and west["success_rate"] is None and west["time_to_patch"] is None
    assert west["in_scope"] == sum(1 for r in report["resources"] if r["region"] == WEST)

    # The fleet is the union of its targets.
    fleet = kpis["fleet"]
    for name in ("in_scope", "patched", "failed", "skipped", "attempted", "already_compliant", "non_compliant"):
        assert fleet[name] == east[name] + west[name], name
    assert fleet["success_rate"] == east["success_rate"]
    assert fleet["time_to_patch"] == east["time_to_patch"]
    assert kpis["fleet"]["in_scope"] == report["totals"]["resources_in_scope"]
    assert kpis["fleet"]["cves"] is None and kpis["fleet"]["residual_findings"] is None  # no inspection section


def test_nothing_attempted_has_no_success_rate() -> None:
    rejected = {
        rid: (1, Outcome.REJECTED, {"detail": "rejected by bob"}, None) for rid in ("i-missing", "i-reboot", "i-ok")
    }
    kpis = compute_kpis(install_report(rejected))
    for block in (kpis["fleet"], *kpis["targets"]):
        assert block["patched"] == block["failed"] == block["attempted"] == 0
        assert block["success_rate"] is None and block["time_to_patch"] is None
    assert kpis["fleet"]["skipped"] >= len(rejected)


def test_all_failed_is_a_zero_success_rate() -> None:
    failing = {"i-missing": (1, Outcome.SENT, {"invocation_status": "Failed"}, "INSTALL_FAILED")}
    fleet = compute_kpis(install_report(failing))["fleet"]
    assert fleet["patched"] == 0 and fleet["failed"] >= 1 and fleet["success_rate"] == 0.0


def test_scan_mode_kpis() -> None:
    report = sample_report()
    kpis = compute_kpis(report)
    jsonschema.validate(kpis, KPIS_SCHEMA)
    fleet = kpis["fleet"]
    totals = report["totals"]
    assert kpis["mode"] == "scan" and kpis["time_to_patch_basis"] == "" and kpis["run_started_at"] == ""
    assert fleet["in_scope"] == totals["resources_in_scope"]
    assert fleet["already_compliant"] == totals["by_verdict"].get("ALREADY_COMPLIANT", 0)
    assert fleet["non_compliant"] == totals["by_compliance_state"]["NON_COMPLIANT"]
    assert fleet["skipped"] == sum(n for v, n in totals["by_verdict"].items() if v.startswith("SKIPPED_"))
    assert fleet["patched"] == fleet["failed"] == fleet["attempted"] == 0
    assert fleet["success_rate"] is None and fleet["time_to_patch"] is None and fleet["cves"] is None
    # Install-only causes are not counted in scan mode; scan failures and missing patch states are.
    assert set(fleet["failures_by_reason"]) == set(FAILURE_REASONS) - INSTALL_ONLY_REASONS
    assert fleet["failures_by_reason"]["SCAN_FAILED"] == totals["by_verdict"]["SCAN_FAILED"]
    assert fleet["failures_by_reason"]["NO_PATCH_STATE"] == totals["by_verdict"]["NO_DATA"]
    assert kpis["incomplete_parts"] == len(report["incomplete"])


def test_inspection_section_counts_cves_and_residual_findings() -> None:
    report = install_report()
    statuses = ["REMEDIATED", "REMEDIATED", "STILL_ACTIVE", "NOT_FOUND", "UNVERIFIED", "REMEDIATED"]
    cves = [
        {
            "account_id": ACCOUNT,
            "region": EAST if n % 2 else WEST,
            "resource_id": f"i-{n}",
            "cve_id": f"CVE-2026-{n:04d}",
            "patch_ids": ["kernel"],
            "severity": "HIGH",
            "status": status,
            "reason": "",
            "finding_arn": "",
            "last_scanned_at": "2026-11-20T04:00:00Z",
        }
        for n, status in enumerate(statuses)
    ]
    severities = ["CRITICAL", "HIGH", "HIGH", "MEDIUM", "critical"]
    residual = [{"account_id": ACCOUNT, "region": EAST, "severity": s} for s in severities]
    kpis = compute_kpis(report | {"inspection": {"cves": cves, "residual": residual}})
    jsonschema.validate(kpis, KPIS_SCHEMA)
    names = {"REMEDIATED": "remediated", "STILL_ACTIVE": "still_active", "NOT_FOUND": "not_found"}
    names["UNVERIFIED"] = "unverified"
    for region in (EAST, WEST):
        counts = Counter(names[row["status"]] for row in cves if row["region"] == region)
        assert by_target(kpis)[(ACCOUNT, region)]["cves"] == {name: counts[name] for name in names.values()}
    assert kpis["fleet"]["cves"] == {name: Counter(names[s] for s in statuses)[name] for name in names.values()}
    upper = Counter(s.upper() for s in severities)
    assert kpis["fleet"]["residual_findings"] == {"critical": upper["CRITICAL"], "high": upper["HIGH"]}
    assert by_target(kpis)[(ACCOUNT, WEST)]["residual_findings"] == {"critical": 0, "high": 0}


def test_inspection_only_target_and_empty_inspection() -> None:
    report = install_report()
    elsewhere = {"account_id": "210987654321", "region": "ap-south-1", "status": "STILL_ACTIVE"}
    kpis = compute_kpis(report | {"inspection": {"cves": [elsewhere], "residual": []}})
    other = by_target(kpis)[("210987654321", "ap-south-1")]
    assert other["in_scope"] == 0 and other["cves"]["still_active"] == 1
    empty = compute_kpis(report | {"inspection": {"cves": [], "residual": []}})
    assert empty["fleet"]["cves"] == {"remediated": 0, "still_active": 0, "not_found": 0, "unverified": 0}


def test_run_start_is_used_when_the_report_has_it() -> None:
    report = install_report()
    started = "2026-11-20T02:00:00Z"
    kpis = compute_kpis(report | {"started_at": started})
    assert kpis["time_to_patch_basis"] == BASIS_RUN_START and kpis["run_started_at"] == started
    ends = {w["wave"]: stamp(w["finished_at"]) for w in report["install"]["waves"]}
    expected = sorted((ends[INSTALL[rid][0]] - stamp(started)).total_seconds() for rid in ("i-missing", "i-ok"))
    assert [value for value, count in kpis["fleet"]["time_to_patch"]["samples"] for _ in range(count)] == expected


def test_deterministic_and_independent_of_an_existing_kpis_section() -> None:
    report = install_report()
    first = compute_kpis(report)
    assert compute_kpis(json.loads(json.dumps(report | {"kpis": first}))) == first
    assert [(t["account_id"], t["region"]) for t in first["targets"]] == sorted(by_target(first))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"invocation_status": "Failed", "not_installed": "kernel-6.1.1"}, "INSTALL_FAILED"),
        ({"invocation_status": "", "verified": False}, "INSTALL_FAILED"),
        ({"invocation_status": "Success", "not_installed": "tzdata"}, "PATCHES_NOT_INSTALLED"),
        ({"invocation_status": "Success", "not_installed": "a;b"}, "PATCHES_NOT_INSTALLED"),
        ({**SENT_OK, "verified": False}, "NOT_VERIFIED"),
        ({**SENT_OK, "validation_failure": HEALTH, "validation_code": "HEALTH_CHECK_FAILED"}, "HEALTH_CHECK_FAILED"),
        (
            {**SENT_OK, "validation_failure": HEALTH, "rollback": "rolled_back", "rollback_detail": "x"},
            "ROLLED_BACK_AFTER_VALIDATION",
        ),
        ({"invocation_status": "Failed", "rollback": "failed", "rollback_detail": "x"}, "RESTORE_FAILED"),
    ],
)
def test_failed_reasons_from_install_verdicts_map_to_their_cause(fields: dict[str, Any], expected: str) -> None:
    """KPIs count the code install_verdicts gives each failure (never its wording)."""
    report = install_report({"i-missing": (1, Outcome.SENT, fields, expected)})
    entry = next(r for r in report["resources"] if r["resource_id"] == "i-missing")
    assert entry["verdict"] in ("FAILED", "ROLLED_BACK", "ROLLBACK_FAILED")
    assert failure_reason(entry["verdict"], entry["reason_code"]) == expected
    assert compute_kpis(report)["fleet"]["failures_by_reason"][expected] == 1  # i-missing alone has this cause


def test_failure_reason_of_verdicts() -> None:
    assert failure_reason(Verdict.PATCHED.value, "INSTALLED") is None
    assert failure_reason(Verdict.SKIPPED_HALTED.value, "HALTED") is None
    assert failure_reason(Verdict.SCAN_FAILED.value, "SCAN_TIMEOUT") == "SCAN_TIMEOUT"
    assert failure_reason(Verdict.NO_DATA.value, "NO_PATCH_STATE") == "NO_PATCH_STATE"


def test_failure_reasons_are_the_codes_of_the_failure_verdicts() -> None:
    assert set(FAILURE_REASONS) == {
        "INSTALL_FAILED",
        "INSTALL_TIMEOUT",
        "NOT_VERIFIED",
        "PATCHES_NOT_INSTALLED",
        "HEALTH_CHECK_FAILED",
        "VALIDATION_FAILED",
        "NOT_ATTEMPTED",
        "NO_OUTCOME",
        "ROLLED_BACK_AFTER_INSTALL",
        "ROLLED_BACK_AFTER_VALIDATION",
        "RESTORE_FAILED",
        "SCAN_FAILED",
        "SCAN_TIMEOUT",
        "NO_PATCH_STATE",
        "MAINTENANCE_FAILED",  # RDS: counted like the EC2 install failures
        "MAINTENANCE_TIMEOUT",
        "REFRESH_ROLLED_BACK",
        "REFRESH_FAILED",
    }
    assert set(FAILURE_REASONS) - INSTALL_ONLY_REASONS == {"SCAN_FAILED", "SCAN_TIMEOUT", "NO_PATCH_STATE"}


def test_target_kpis_of_a_target_without_resources_is_zeros() -> None:
    kpis = compute_kpis(install_report())
    empty = target_kpis(kpis, "210987654321", "ap-south-1")
    assert empty["in_scope"] == empty["patched"] == 0 and empty["success_rate"] is None
    assert set(empty["failures_by_reason"]) == set(FAILURE_REASONS)
    assert target_kpis(kpis, ACCOUNT, EAST)["in_scope"] == by_target(kpis)[(ACCOUNT, EAST)]["in_scope"]


def test_rollbacks_are_attempts_that_did_not_stick() -> None:
    plan = {
        "i-missing": (1, Outcome.SENT, SENT_OK, None),
        "i-ok": (
            1,
            Outcome.SENT,
            {"invocation_status": "Failed", "rollback": "rolled_back", "rollback_detail": "x"},
            "r",
        ),
        "i-nodata": (
            1,
            Outcome.SENT,
            {"invocation_status": "Failed", "rollback": "failed", "rollback_detail": "y"},
            "r",
        ),
    }
    fleet = compute_kpis(install_report(plan))["fleet"]
    assert (fleet["rolled_back"], fleet["rollback_failed"]) == (1, 1)
    assert fleet["patched"] == 1 and fleet["attempted"] == fleet["patched"] + fleet["failed"] + 2
    assert fleet["failures_by_reason"]["ROLLED_BACK_AFTER_INSTALL"] == 1
    assert fleet["failures_by_reason"]["RESTORE_FAILED"] == 1

"""Scan- and install-mode verdicts for every case, the taxonomy, and the accounting identity."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.inventory import combine, ec2_rows, rds_rows, s3_rows
from patchcycle.core.plan import combine_plan, instance_compliance, patch_plan, rds_plan
from patchcycle.core.scope import Scope, apply_scope
from patchcycle.core.verdicts import (
    INSTALL,
    OUTCOME_COLUMNS,
    REASON_CODES,
    SCAN,
    VERDICT_COLUMNS,
    VERDICTS,
    AccountingError,
    ComplianceState,
    Outcome,
    ReasonCode,
    ScanFailure,
    Verdict,
    accounting_problems,
    check_accounting,
    install_verdicts,
    scan_verdicts,
)

ACCOUNT, EAST, WEST = "123456789012", "us-east-1", "eu-west-1"
LAST_PING = dt.datetime(2026, 11, 18, 2, 30, tzinfo=dt.UTC)
SCAN_END = dt.datetime(2026, 11, 20, 3, 5, tzinfo=dt.UTC)


@dataclass
class Fleet:
    """A scanned fleet: the inputs of scan_verdicts and build_report."""

    inventory: pd.DataFrame
    compliance: pd.DataFrame
    plan: pd.DataFrame
    scan_failures: dict[str, ScanFailure]


def _instance(iid: str, state: str = "running", **tags: str) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "State": {"Name": state},
        "PlatformDetails": "Linux/UNIX",
        "Tags": [{"Key": k, "Value": v} for k, v in {"Environment": "production", **tags}.items()],
    }


def _info(iid: str, ping: str = "Online") -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "PingStatus": ping,
        "LastPingDateTime": LAST_PING,
        "PlatformType": "Linux",
        "PlatformName": "Amazon Linux",
        "PlatformVersion": "2023",
        "AgentVersion": "3.3.987.0",
    }


def _state(iid: str, **counts: int) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "PatchGroup": "web",
        "BaselineId": "pb-web",
        "Operation": "Scan",
        "OperationEndTime": SCAN_END,
        "InstalledCount": 40,
        **counts,
    }


def scan_fleet(name_of_ok: str = "web-1") -> Fleet:
    """Every scan-mode case once, in two regions, plus one out-of-scope instance."""
    instances = [
        _instance("i-ok", Name=name_of_ok),
        _instance("i-missing"),
        _instance("i-reboot"),
        _instance("i-offline"),
        _instance("i-unmanaged"),
        _instance("i-stopped", state="stopped"),
        _instance("i-scanfail"),
        _instance("i-nodata"),
        _instance("i-staging", Environment="staging"),
    ]
    managed = [_info(i["InstanceId"]) for i in instances if i["InstanceId"] not in ("i-unmanaged", "i-offline")]
    managed.append(_info("i-offline", ping="ConnectionLost"))
    db_arn = f"arn:aws:rds:{WEST}:{ACCOUNT}:db:orders-db"
    pending = [{"ResourceIdentifier": db_arn, "PendingMaintenanceActionDetails": [{"Action": "system-update"}]}]
    dbs = [
        {
            "DBInstanceIdentifier": "orders-db",
            "DBInstanceArn": db_arn,
            "Engine": "postgres",
            "TagList": [{"Key": "Environment", "Value": "production"}],
        },
        {
            "DBInstanceIdentifier": "quiet-db",
            "Engine": "mysql",
            "TagList": [{"Key": "Environment", "Value": "production"}],
        },
    ]
    buckets = [{"Name": "assets", "BucketRegion": WEST, "Tags": {"Environment": "production"}}]
    inventory = combine(
        [
            ec2_rows(ACCOUNT, EAST, instances, managed),
            rds_rows(ACCOUNT, WEST, dbs, pending),
            s3_rows(ACCOUNT, WEST, buckets),
        ]
    )
    inventory = apply_scope(inventory, Scope(include_tags={"Environment": ["production"]}))
    states = [
        _state("i-ok"),
        _state("i-missing", MissingCount=3, FailedCount=1, CriticalNonCompliantCount=1),
        _state("i-reboot", InstalledPendingRebootCount=2),
        _state("i-scanfail"),
    ]
    patches = {
        "i-missing": [
            {
                "KBId": "kernel-6.1.1",
                "Title": "kernel",
                "Classification": "Security",
                "Severity": "Critical",
                "State": "MISSING",
                "CVEIds": "CVE-2026-0001,CVE-2026-0002",
            },
            {
                "KBId": "openssl-3.0.9",
                "Title": "openssl",
                "Classification": "Security",
                "Severity": "Important",
                "State": "MISSING",
                "CVEIds": "CVE-2026-0002",
            },
            {"KBId": "tzdata", "Title": "tzdata", "Classification": "Bugfix", "Severity": "", "State": "MISSING"},
            {
                "KBId": "curl-8.1",
                "Title": "curl",
                "Classification": "Security",
                "Severity": "Medium",
                "State": "FAILED",
                "CVEIds": "CVE-2026-0003",
            },
        ],
        "i-reboot": [
            {
                "KBId": "glibc",
                "Title": "glibc",
                "Classification": "Security",
                "Severity": "Important",
                "State": "INSTALLED_PENDING_REBOOT",
            },
        ],
    }
    plan = combine_plan([patch_plan(states, patches, inventory), rds_plan(pending)])
    failures = {"i-scanfail": ScanFailure(ReasonCode.SCAN_FAILED, "exit code 1")}
    return Fleet(inventory, instance_compliance(states), plan, failures)


EXPECTED = {
    "i-ok": (
        Verdict.ALREADY_COMPLIANT,
        ReasonCode.NO_MISSING_PATCHES,
        "no missing patches (last Scan 2026-11-20T03:05:00Z)",
    ),
    "i-missing": (
        Verdict.NON_COMPLIANT,
        ReasonCode.PATCHES_OUTSTANDING,
        "3 missing patches, 1 failed patch (1 critical), 3 CVEs",
    ),
    "i-reboot": (Verdict.NON_COMPLIANT, ReasonCode.PATCHES_OUTSTANDING, "2 patches pending reboot"),
    "i-offline": (
        Verdict.SKIPPED_OFFLINE,
        ReasonCode.AGENT_OFFLINE,
        "offline: SSM Agent ConnectionLost since 2026-11-18T02:30:00Z",
    ),
    "i-unmanaged": (Verdict.SKIPPED_UNMANAGED, ReasonCode.UNMANAGED, "unmanaged: not registered with Systems Manager"),
    "i-stopped": (Verdict.SKIPPED_STOPPED, ReasonCode.STOPPED, "instance is stopped"),
    "i-scanfail": (Verdict.SCAN_FAILED, ReasonCode.SCAN_FAILED, "scan command failed: exit code 1"),
    "i-nodata": (
        Verdict.NO_DATA,
        ReasonCode.NO_PATCH_STATE,
        "managed and Online, but Patch Manager reported no patch state",
    ),
    "orders-db": (
        Verdict.MAINTENANCE_PENDING,
        ReasonCode.MAINTENANCE_PENDING,
        "1 pending maintenance action: system-update",
    ),
    "quiet-db": (Verdict.ALREADY_COMPLIANT, ReasonCode.NO_PENDING_MAINTENANCE, "no pending maintenance actions"),
    "assets": (Verdict.AWS_MANAGED, ReasonCode.AWS_MANAGED, "AWS-managed: patched by AWS, listed only"),
}


def test_scan_verdicts_cover_every_scan_mode_case() -> None:
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    assert list(verdicts.columns) == list(VERDICT_COLUMNS)
    got = {row.resource_id: (row.verdict, row.reason_code, row.reason) for row in verdicts.itertuples()}
    assert got == {rid: (verdict.value, code.value, reason) for rid, (verdict, code, reason) in EXPECTED.items()}
    assert "i-staging" not in got  # out of scope: counted apart, no verdict
    by_id = verdicts.set_index("resource_id")
    assert by_id.loc["orders-db", "responsibility"] == "shared"
    assert by_id.loc["assets", "responsibility"] == "aws"
    assert by_id.loc["assets", "region"] == WEST
    check_accounting(fleet.inventory, verdicts)


def test_a_scan_cut_at_the_time_limit_is_a_scan_timeout() -> None:
    fleet = scan_fleet()
    late = ScanFailure(ReasonCode.SCAN_TIMEOUT, "scan did not finish within 2 minutes (cancelled)")
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, {"i-scanfail": late, "i-ok": late})
    by_id = verdicts.set_index("resource_id")
    for resource_id in ("i-scanfail", "i-ok"):
        assert (by_id.loc[resource_id, "verdict"], by_id.loc[resource_id, "reason_code"]) == (
            "SCAN_FAILED",
            "SCAN_TIMEOUT",
        )
        assert (
            by_id.loc[resource_id, "reason"] == "scan command failed: scan did not finish within 2 minutes (cancelled)"
        )


def test_every_reason_code_goes_with_one_verdict_and_is_explained() -> None:
    assert set(REASON_CODES) == set(ReasonCode)
    for code, (verdict, meaning) in REASON_CODES.items():
        assert isinstance(verdict, Verdict) and meaning, code
    assert {verdict for verdict, _ in REASON_CODES.values()} == set(Verdict)  # every verdict has a code


def test_accounting_refuses_a_code_that_does_not_go_with_its_verdict() -> None:
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    verdicts.loc[verdicts["resource_id"] == "i-ok", "reason_code"] = "INSTALL_FAILED"
    assert accounting_problems(fleet.inventory, verdicts) == [
        "reason code(s) that do not go with their verdict: ['ALREADY_COMPLIANT/INSTALL_FAILED']"
    ]


def test_scan_verdicts_need_the_scope_applied() -> None:
    fleet = scan_fleet()
    with pytest.raises(ValueError, match="apply_scope"):
        scan_verdicts(fleet.inventory.drop(columns="in_scope"), fleet.compliance, fleet.plan, set())


def test_taxonomy_documents_every_verdict_and_scan_mode_cases() -> None:
    assert set(VERDICTS) == set(Verdict)
    assert all(info.meaning and info.modes <= {SCAN, INSTALL} for info in VERDICTS.values())
    scan_mode = {verdict for verdict, info in VERDICTS.items() if SCAN in info.modes}
    assert {verdict for verdict, _, _ in EXPECTED.values()} <= scan_mode
    assert Verdict.PATCHED not in scan_mode and Verdict.NON_COMPLIANT not in {
        v for v, info in VERDICTS.items() if INSTALL in info.modes
    }


def test_accounting_detects_a_dropped_and_a_duplicated_resource() -> None:
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    dropped = verdicts[verdicts["resource_id"] != "i-nodata"]
    with pytest.raises(AccountingError, match=r"without a verdict: \['123456789012/us-east-1/ec2/i-nodata'\]"):
        check_accounting(fleet.inventory, dropped)
    duplicated = pd.concat([verdicts, verdicts[verdicts["resource_id"] == "assets"]], ignore_index=True)
    with pytest.raises(AccountingError, match=r"more than one verdict.*assets"):
        check_accounting(fleet.inventory, duplicated)
    # Same count, wrong resources: one dropped and one duplicated still fails.
    swapped = pd.concat([dropped, verdicts[verdicts["resource_id"] == "i-ok"]], ignore_index=True)
    assert len(swapped) == len(verdicts)
    with pytest.raises(ValueError, match="i-nodata"):
        check_accounting(fleet.inventory, swapped)


SKIP_CODES = {
    Outcome.NOT_STAGED: "NOT_STAGED",
    Outcome.STAGING_FAILED: "STAGING_FAILED",
    Outcome.REJECTED: "REJECTED",
    Outcome.HALTED: "HALTED",
    Outcome.NOT_RUN: "NOT_ATTEMPTED",
}


def _outcome(resource_id: str, outcome: Outcome, detail: str = "", **fields: Any) -> dict[str, Any]:
    """An OUTCOME_COLUMNS row in the east region of the scan fleet (a SENT one's code is "": it succeeded)."""
    row: dict[str, Any] = {"account_id": ACCOUNT, "region": EAST, "resource_id": resource_id, "wave": 1}
    row |= {"reason_code": SKIP_CODES.get(outcome, "")}
    row |= {"outcome": outcome.value, "detail": detail, "pinned": 2, "installed": 0, "pending_reboot": 0}
    row |= {"validation_failure": "", "validation_code": "", "rollback": "", "rollback_detail": "", "snapshot_ids": ""}
    return row | {"verified": outcome == Outcome.SENT} | fields


SENT_OK = {"invocation_status": "Success", "installed": 2}


def test_install_verdicts_map_every_outcome() -> None:
    fleet = scan_fleet()
    # Outcomes for instances the scan found healthy too, so that every outcome appears once.
    outcomes = typed_frame(
        [
            _outcome("i-missing", Outcome.SENT, **SENT_OK),
            _outcome("i-reboot", Outcome.SENT, invocation_status="Success", installed=1, pending_reboot=1),
            _outcome("i-ok", Outcome.NOT_STAGED, "its profile p07 was not staged (cap 5 per target)", wave=0),
            _outcome("i-nodata", Outcome.STAGING_FAILED, "staging of p02 failed: health check Failed (exit 1)"),
            _outcome("i-offline", Outcome.REJECTED, "rejected by alice at 2026-11-20T03:10:00Z"),
            _outcome("i-unmanaged", Outcome.HALTED, "halted after wave 1: 2 of 5 failed, threshold 0", wave=2),
            _outcome("i-stopped", Outcome.NOT_RUN, "wave 2 did not run: the DAG was stopped", wave=2),
        ],
        OUTCOME_COLUMNS,
    )
    verdicts = install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
    assert list(verdicts.columns) == list(VERDICT_COLUMNS)
    got = {row.resource_id: (row.verdict, row.reason) for row in verdicts.itertuples()}
    codes = dict(zip(verdicts["resource_id"], verdicts["reason_code"], strict=True))
    assert {rid: codes[rid] for rid in ("i-missing", "i-reboot", "i-ok", "i-nodata", "i-offline", "i-unmanaged")} == {
        "i-missing": "INSTALLED",
        "i-reboot": "INSTALLED_PENDING_REBOOT",
        "i-ok": "NOT_STAGED",
        "i-nodata": "STAGING_FAILED",
        "i-offline": "REJECTED",
        "i-unmanaged": "HALTED",
    }
    assert codes["i-stopped"] == "NOT_ATTEMPTED"
    assert got["i-missing"] == (Verdict.PATCHED, "2 planned patches installed and verified")
    assert got["i-reboot"] == (Verdict.PATCHED_PENDING_REBOOT, "2 patches installed, 1 pending reboot")
    assert got["i-ok"] == (Verdict.SKIPPED_EXCLUDED, "its profile p07 was not staged (cap 5 per target)")
    assert got["i-nodata"] == (Verdict.SKIPPED_STAGING_FAILED, "staging of p02 failed: health check Failed (exit 1)")
    assert got["i-offline"] == (Verdict.SKIPPED_REJECTED, "rejected by alice at 2026-11-20T03:10:00Z")
    assert got["i-unmanaged"] == (Verdict.SKIPPED_HALTED, "halted after wave 1: 2 of 5 failed, threshold 0")
    assert got["i-stopped"] == (Verdict.FAILED, "install not attempted: wave 2 did not run: the DAG was stopped")
    # Resources without an outcome keep their scan verdict; RDS and S3 are as in scan mode.
    for resource_id in ("i-scanfail", "orders-db", "quiet-db", "assets"):
        assert got[resource_id] == (EXPECTED[resource_id][0].value, EXPECTED[resource_id][2])
    check_accounting(fleet.inventory, verdicts)
    assert all(INSTALL in VERDICTS[Verdict(verdict)].modes for verdict in verdicts["verdict"])


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        (
            {"invocation_status": "Failed", "reason_code": "INSTALL_FAILED", "installed": 1, "not_installed": "k-6.1"},
            "INSTALL_FAILED",
            "Install Failed: 1 planned patch not installed: k-6.1",
        ),
        (
            {"invocation_status": "TimedOut", "detail": "Delivery Timed Out", "not_installed": "a;b"},
            "INSTALL_FAILED",  # a failed send with no code of its own is an install failure
            "Install TimedOut: Delivery Timed Out; 2 planned patches not installed: a, b",
        ),
        (
            {
                "invocation_status": "Cancelled",
                "reason_code": "INSTALL_TIMEOUT",
                "detail": "did not finish (cancelled)",
            },
            "INSTALL_TIMEOUT",
            "Install Cancelled: did not finish (cancelled)",
        ),
        (
            {"invocation_status": "Success", "not_installed": "tzdata"},
            "PATCHES_NOT_INSTALLED",
            "1 planned patch not installed: tzdata",
        ),
        ({**SENT_OK, "verified": False}, "NOT_VERIFIED", "patch state not read after the install"),
        (
            {"invocation_status": "", "verified": False},
            "INSTALL_FAILED",
            "Install status unknown: patch state not read after the install",
        ),
        (
            {
                **SENT_OK,
                "validation_failure": "Failed at step linuxHealthCheck: FAIL: nginx",
                "validation_code": "HEALTH_CHECK_FAILED",
            },
            "HEALTH_CHECK_FAILED",
            "validation failed: Failed at step linuxHealthCheck: FAIL: nginx",
        ),
        (
            {**SENT_OK, "validation_failure": "Failed at step checkNoMissingPatch: 2 missing"},
            "VALIDATION_FAILED",  # a validation failure without a code of its own
            "validation failed: Failed at step checkNoMissingPatch: 2 missing",
        ),
    ],
)
def test_install_verdicts_fail_what_was_not_installed_and_verified(
    fields: dict[str, Any], code: str, reason: str
) -> None:
    fleet = scan_fleet()
    outcomes = typed_frame([_outcome("i-missing", Outcome.SENT, **fields)], OUTCOME_COLUMNS)
    verdicts = install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
    row = verdicts.set_index("resource_id").loc["i-missing"]
    assert (row["verdict"], row["reason_code"]) == (Verdict.FAILED.value, code)
    assert row["reason"] == reason


def test_install_verdicts_never_leave_outstanding_patches_silent() -> None:
    fleet = scan_fleet()
    outcomes = typed_frame([_outcome("i-missing", Outcome.SENT, **SENT_OK)], OUTCOME_COLUMNS)
    verdicts = install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
    by_id = verdicts.set_index("resource_id")
    # i-reboot had outstanding patches but no outcome: FAILED, not NON_COMPLIANT (a scan-only verdict).
    assert by_id.loc["i-reboot", "verdict"] == Verdict.FAILED
    assert by_id.loc["i-reboot", "reason"] == "no install outcome recorded (2 patches pending reboot)"
    assert by_id.loc["i-reboot", "reason_code"] == "NO_OUTCOME"
    assert Verdict.NON_COMPLIANT not in set(verdicts["verdict"])
    assert by_id.loc["i-ok", "verdict"] == Verdict.ALREADY_COMPLIANT
    check_accounting(fleet.inventory, verdicts)


def test_install_verdicts_refuse_outcomes_of_unknown_instances() -> None:
    fleet = scan_fleet()
    for resource_id in ("i-gone", "i-staging", "orders-db"):  # unknown, out of scope, not EC2
        outcomes = typed_frame([_outcome(resource_id, Outcome.SENT, **SENT_OK)], OUTCOME_COLUMNS)
        with pytest.raises(ValueError, match=f"^outcomes: .*{resource_id}"):
            install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
    unknown = typed_frame([_outcome("i-missing", Outcome.SENT) | {"outcome": "LOST"}], OUTCOME_COLUMNS)
    with pytest.raises(ValueError, match="unknown install outcome 'LOST'"):
        install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, unknown)


def test_staging_failed_verdict_is_install_only_and_unknown() -> None:
    info = VERDICTS[Verdict.SKIPPED_STAGING_FAILED]
    assert info.modes == {INSTALL}
    assert info.compliance == ComplianceState.UNKNOWN
    assert {outcome.value for outcome in Outcome} == {
        "NOT_STAGED",
        "STAGING_FAILED",
        "REJECTED",
        "HALTED",
        "NOT_RUN",
        "NO_SNAPSHOT",
        "SENT",
        "REFRESH",
    }


@pytest.mark.parametrize(
    ("fields", "verdict", "code", "reason"),
    [
        (
            {
                "invocation_status": "Failed",
                "reason_code": "INSTALL_FAILED",
                "detail": "Failed: ALAS-1",
                "rollback": "rolled_back",
                "rollback_detail": "root volume restored from snap-1",
                "not_installed": "a;b",
            },
            Verdict.ROLLED_BACK,
            "ROLLED_BACK_AFTER_INSTALL",
            "rolled back (root volume restored from snap-1) after: Install Failed: Failed: ALAS-1",
        ),
        (
            {
                **SENT_OK,
                "validation_failure": "Failed at step linuxHealthCheck: nginx",
                "validation_code": "HEALTH_CHECK_FAILED",
                "rollback": "rolled_back",
                "rollback_detail": "root volume restored from snap-2",
            },
            Verdict.ROLLED_BACK,
            "ROLLED_BACK_AFTER_VALIDATION",
            "rolled back (root volume restored from snap-2) after: validation failed: Failed at step linuxHealthCheck: "
            "nginx",
        ),
        (
            {
                "invocation_status": "Failed",
                "detail": "Failed: boom",
                "rollback": "failed",
                "rollback_detail": "Failed at step assertReplaced: failed",
            },
            Verdict.ROLLBACK_FAILED,
            "RESTORE_FAILED",
            "rollback failed (Failed at step assertReplaced: failed) after: Install Failed: Failed: boom",
        ),
    ],
)
def test_a_rolled_back_instance_is_judged_by_what_made_it_go_back(
    fields: dict[str, Any], verdict: Verdict, code: str, reason: str
) -> None:
    """After a restore the patches are missing again by design: the verdict names the failure, not that."""
    fleet = scan_fleet()
    outcomes = typed_frame([_outcome("i-missing", Outcome.SENT, **fields)], OUTCOME_COLUMNS)
    verdicts = install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
    row = verdicts.set_index("resource_id").loc["i-missing"]
    assert (row["verdict"], row["reason_code"], row["reason"]) == (verdict.value, code, reason)
    assert VERDICTS[verdict].compliance == ComplianceState.NON_COMPLIANT
    check_accounting(fleet.inventory, verdicts)


def test_an_instance_without_its_snapshot_is_skipped_and_unknown() -> None:
    fleet = scan_fleet()
    outcome = _outcome("i-missing", Outcome.NO_SNAPSHOT, "not patched: its pre-patch snapshot failed (x)")
    outcomes = typed_frame([outcome | {"reason_code": "SNAPSHOT_FAILED"}], OUTCOME_COLUMNS)
    row = (
        install_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures, outcomes)
        .set_index("resource_id")
        .loc["i-missing"]
    )
    assert (row["verdict"], row["reason_code"]) == ("SKIPPED_NO_SNAPSHOT", "SNAPSHOT_FAILED")
    assert row["reason"] == "not patched: its pre-patch snapshot failed (x)"
    assert VERDICTS[Verdict.SKIPPED_NO_SNAPSHOT].compliance == ComplianceState.UNKNOWN

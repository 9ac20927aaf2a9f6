"""install_outcomes: where each production instance stopped (staging, the gate, a halt, its wave, or sent and
verified), and halted_after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.outcomes import (
    ApprovalRecord,
    RolloutRecord,
    StagingRecord,
    halted_after,
    install_outcomes,
)
from patchcycle.core.verdicts import OUTCOME_COLUMNS, Outcome
from patchcycle.core.wave_results import WAVE_RESULT_COLUMNS, WaveRecord, new_result

ACCOUNT, REGION = "123456789012", "us-east-1"
PASSED = StagingRecord(ran=True, passed=True)
FAILED = StagingRecord(ran=True, passed=False, error="p01 i-staging1: install Failed")
APPROVED = ApprovalRecord(decision="Approve", mode="manual", by="alice", at="2026-11-20T04:00:00+00:00")
AT = "2026-11-20T05:00:00+00:00"


def production(*instances: tuple[str, str, str]) -> pd.DataFrame:
    """(resource_id, profile_id, patch_ids) rows."""
    return pd.DataFrame(
        [
            {"account_id": ACCOUNT, "region": REGION, "resource_id": rid, "profile_id": pid, "patch_ids": patches}
            for rid, pid, patches in instances
        ]
    )


FLEET = production(
    ("i-canary", "p01", "P-1;P-2"),
    ("i-second", "p01", "P-1;P-2"),
    ("i-third", "p02", "P-3"),
    ("i-unstaged", "p03", "P-4;P-5;P-6"),
)
WAVE_OF = {"i-canary": 1, "i-second": 2, "i-third": 3}  # plan_install puts no unstaged instance in a wave


def outcomes(
    *,
    staging: StagingRecord = PASSED,
    approval: ApprovalRecord | None = APPROVED,
    rollout: RolloutRecord | None = None,
    verified: Mapping[str, Mapping[str, str]] | None = None,
    fleet: pd.DataFrame = FLEET,
) -> dict[str, dict[str, Any]]:
    frame = install_outcomes(
        fleet,
        staged_profiles={"p01", "p02"},
        wave_of=WAVE_OF,
        staging=staging,
        approval=approval,
        rollout=rollout or RolloutRecord(),
        verified=verified or {},
        staging_cap=2,
    )
    assert list(frame.columns) == list(OUTCOME_COLUMNS)
    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == dict(OUTCOME_COLUMNS)
    assert list(frame["resource_id"]) == list(fleet["resource_id"])  # one row per production instance, in order
    return {str(row["resource_id"]): row for row in frame.to_dict("records")}


def results(*rows: tuple[str, int, str, str], **fields: Any) -> pd.DataFrame:
    """Wave results: (resource_id, wave, status, detail), snapshotted first; `fields` set on every row."""
    return typed_frame(
        [
            {
                **new_result((ACCOUNT, REGION), rid, wave),
                "snapshot": "completed",
                "snapshot_ids": f"snap-{rid}",
                "command_id": f"cmd-{wave}" if status else "",
                "status": status,
                "reason_code": "" if status == "Success" else "INSTALL_FAILED",
                "detail": detail,
                "ok": status == "Success",
                **fields,
            }
            for rid, wave, status, detail in rows
        ],
        WAVE_RESULT_COLUMNS,
    )


def halted_wave(wave: int) -> WaveRecord:
    return WaveRecord(wave=wave, instances=4, started_at=AT, failed=2, allowed_failures=1, threshold="1", halted=True)


def done_wave(wave: int) -> WaveRecord:
    return WaveRecord(wave=wave, instances=1, started_at=AT, status="done")


# -- where the instance stopped ---------------------------------------------------------------------------


def test_an_instance_whose_profile_got_no_replica_is_not_staged_whatever_happened_later() -> None:
    rollout = RolloutRecord(results=results(("i-canary", 1, "Success", "")))
    for approval in (APPROVED, None, ApprovalRecord(decision="Reject", mode="manual", by="bob", at=AT)):
        row = outcomes(approval=approval, rollout=rollout)["i-unstaged"]
        assert (row["outcome"], row["reason_code"]) == (Outcome.NOT_STAGED, "NOT_STAGED")
        assert row["detail"] == "its profile p03 got no staging replica (over staging_max_instances=2 per region)"
        assert (row["wave"], row["pinned"], row["invocation_status"], row["verified"]) == (0, 3, "", False)


@pytest.mark.parametrize(
    ("staging", "detail"),
    [
        (StagingRecord(ran=False, passed=False), "staging did not finish"),
        (StagingRecord(ran=False, passed=False, error="create_staging: stack rolled back"), "create_staging: stack"),
        (FAILED, "p01 i-staging1: install Failed"),
    ],
)
def test_staging_failed_and_no_decision_is_staging_failed_with_the_staging_error(
    staging: StagingRecord, detail: str
) -> None:
    rows = outcomes(staging=staging, approval=None)
    for instance_id in WAVE_OF:
        assert (rows[instance_id]["outcome"], rows[instance_id]["reason_code"]) == (
            Outcome.STAGING_FAILED,
            "STAGING_FAILED",
        )
        assert rows[instance_id]["detail"].startswith(detail)
    assert rows["i-second"]["wave"] == 2 and rows["i-second"]["pinned"] == 2


def test_staging_passed_but_no_decision_is_not_run() -> None:
    row = outcomes(staging=PASSED, approval=None)["i-canary"]
    assert (row["outcome"], row["detail"]) == (Outcome.NOT_RUN, "the approval gate did not decide")
    assert row["reason_code"] == "NOT_ATTEMPTED"


def test_the_auto_policy_rejecting_after_a_staging_failure_is_staging_failed() -> None:
    auto = ApprovalRecord(decision="Reject", mode="auto", by="approval policy: auto", at=AT)
    rows = outcomes(staging=FAILED, approval=auto)
    for instance_id in WAVE_OF:
        assert (rows[instance_id]["outcome"], rows[instance_id]["reason_code"]) == (
            Outcome.STAGING_FAILED,
            "STAGING_FAILED",
        )
        assert rows[instance_id]["detail"] == "staging failed, the auto policy rejected: p01 i-staging1: install Failed"


def test_a_person_rejecting_is_rejected_by_them_at_that_time() -> None:
    manual = ApprovalRecord(decision="Reject", mode="manual", by="bob", at=AT)
    # Even when staging failed: a person saw it and said no.
    for staging in (PASSED, FAILED):
        rows = outcomes(staging=staging, approval=manual)
        for instance_id in WAVE_OF:
            assert (rows[instance_id]["outcome"], rows[instance_id]["reason_code"]) == (Outcome.REJECTED, "REJECTED")
            assert rows[instance_id]["detail"] == f"rejected by bob at {AT}"
    anonymous = ApprovalRecord(decision="Reject", mode="manual", by="", at=AT)
    assert outcomes(approval=anonymous)["i-third"]["detail"] == f"rejected by unknown at {AT}"


def test_no_answer_in_time_is_rejected_by_default() -> None:
    timeout = ApprovalRecord(decision="Reject", mode="manual", by="", at=AT, timed_out=True)
    rows = outcomes(approval=timeout)
    for instance_id in WAVE_OF:
        assert (rows[instance_id]["outcome"], rows[instance_id]["reason_code"]) == (
            Outcome.REJECTED,
            "APPROVAL_TIMEOUT",
        )
        assert rows[instance_id]["detail"] == f"no answer in time: rejected by default at {AT}"


def test_instances_of_the_waves_after_the_halting_wave_are_halted() -> None:
    rollout = RolloutRecord(
        waves={1: done_wave(1), 2: halted_wave(2)},
        results=results(("i-canary", 1, "Success", ""), ("i-second", 2, "Failed", "Failed: boom")),
    )
    rows = outcomes(rollout=rollout)
    assert rows["i-canary"]["outcome"] == rows["i-second"]["outcome"] == Outcome.SENT
    assert (rows["i-third"]["outcome"], rows["i-third"]["reason_code"]) == (Outcome.HALTED, "HALTED")
    assert rows["i-third"]["detail"] == (
        "halted after wave 2: 2 of 4 failed, more than the 1 allowed by halt_threshold 1"
    )


def test_an_instance_of_the_halting_wave_that_was_never_sent_is_not_halted_but_not_run() -> None:
    rollout = RolloutRecord(waves={1: halted_wave(1)}, results=results(("i-second", 2, "Success", "")))
    rows = outcomes(rollout=rollout, fleet=production(("i-canary", "p01", "P-1"), ("i-third", "p02", "P-3")))
    assert rows["i-canary"]["outcome"] == Outcome.NOT_RUN
    assert rows["i-canary"]["detail"] == "wave 1 did not run: its task did not finish"
    assert rows["i-third"]["outcome"] == Outcome.HALTED


def test_a_wave_that_did_not_run_names_its_task_error() -> None:
    rollout = RolloutRecord(
        waves={1: done_wave(1)},
        results=results(("i-canary", 1, "Success", "")),
        errors={2: "AirflowFailException: no wave plan: plan_install did not finish"},
    )
    rows = outcomes(rollout=rollout)
    assert rows["i-second"]["outcome"] == Outcome.NOT_RUN
    assert rows["i-second"]["detail"] == (
        "wave 2 did not run: AirflowFailException: no wave plan: plan_install did not finish"
    )
    assert rows["i-third"]["outcome"] == Outcome.NOT_RUN
    assert rows["i-third"]["detail"] == "wave 3 did not run: its task did not finish"


# -- sent, then verified --------------------------------------------------------------------------------


def test_sent_counts_installed_pending_reboot_and_missing_pinned_patches() -> None:
    fleet = production(("i-canary", "p01", "P-1;P-2;P-3;P-4;P-5"), ("i-second", "p01", "P-1"))
    rollout = RolloutRecord(
        waves={1: done_wave(1)},
        results=results(("i-canary", 1, "Failed", "Failed: Failed to install: P-4"), ("i-second", 2, "Success", "")),
    )
    verified = {
        "i-canary": {
            "P-1": "INSTALLED",
            "P-2": "INSTALLED_OTHER",
            "P-3": "INSTALLED_PENDING_REBOOT",
            "P-4": "MISSING",  # and P-5 not reported at all
            "P-9": "INSTALLED",  # not pinned: not counted
        }
    }
    rows = outcomes(rollout=rollout, verified=verified, fleet=fleet)
    canary = rows["i-canary"]
    assert canary == {
        "account_id": ACCOUNT,
        "region": REGION,
        "resource_id": "i-canary",
        "outcome": Outcome.SENT,
        "reason_code": "INSTALL_FAILED",
        "wave": 1,
        "detail": "Failed: Failed to install: P-4",
        "invocation_status": "Failed",
        "validation_failure": "",
        "validation_code": "",
        "rollback": "",
        "rollback_detail": "",
        "snapshot_ids": "snap-i-canary",
        "pinned": 5,
        "installed": 2,
        "pending_reboot": 1,
        "not_installed": "P-4;P-5",
        "verified": True,
    }
    # Sent but its patch state was never read back (verify did not run for it).
    second = rows["i-second"]
    assert (second["outcome"], second["invocation_status"], second["verified"]) == (Outcome.SENT, "Success", False)
    assert (second["installed"], second["pending_reboot"], second["not_installed"]) == (0, 0, "P-1")


def test_a_sent_instance_stays_sent_even_if_a_later_wave_halted() -> None:
    rollout = RolloutRecord(waves={1: halted_wave(1)}, results=results(("i-third", 3, "Success", "")))
    row = outcomes(rollout=rollout, verified={"i-third": {"P-3": "INSTALLED"}})["i-third"]
    assert (row["outcome"], row["installed"], row["not_installed"], row["verified"]) == (Outcome.SENT, 1, "", True)


def test_halted_after_is_the_first_halted_wave_or_none() -> None:
    assert halted_after(RolloutRecord()) is None
    assert halted_after(RolloutRecord(waves={1: done_wave(1), 2: done_wave(2)})) is None
    assert halted_after(RolloutRecord(waves={3: halted_wave(3), 1: done_wave(1), 2: halted_wave(2)})) == 2


def test_a_failed_validation_travels_with_the_sent_outcome() -> None:
    why = "Failed at step linuxHealthCheck: FAIL: 1 failed systemd unit(s)"
    frame = results(
        ("i-canary", 1, "Success", ""), validation="failed", validation_detail=why, reason_code="HEALTH_CHECK_FAILED"
    )
    frame["ok"] = False
    rollout = RolloutRecord(waves={1: done_wave(1)}, results=frame)
    row = outcomes(rollout=rollout, verified={"i-canary": {"P-1": "INSTALLED"}})["i-canary"]
    assert (row["outcome"], row["invocation_status"]) == (Outcome.SENT, "Success")
    assert (row["validation_failure"], row["validation_code"], row["rollback"]) == (why, "HEALTH_CHECK_FAILED", "")


def test_a_rollback_travels_with_the_sent_outcome() -> None:
    frame = results(
        ("i-canary", 1, "Failed", "Failed: boom"),
        rollback="rolled_back",
        rollback_detail="root volume restored from snap-9",
    )
    row = outcomes(rollout=RolloutRecord(waves={1: done_wave(1)}, results=frame))["i-canary"]
    assert (row["outcome"], row["rollback"], row["rollback_detail"]) == (
        Outcome.SENT,
        "rolled_back",
        "root volume restored from snap-9",
    )
    assert row["snapshot_ids"] == "snap-i-canary"


def test_an_instance_whose_snapshot_failed_is_not_patched() -> None:
    frame = results(("i-canary", 1, "", ""), snapshot="failed", snapshot_ids="", snapshot_detail="Failed at step x")
    row = outcomes(rollout=RolloutRecord(waves={1: done_wave(1)}, results=frame))["i-canary"]
    assert (row["outcome"], row["reason_code"]) == (Outcome.NO_SNAPSHOT, "SNAPSHOT_FAILED")
    assert row["detail"] == "not patched: its pre-patch snapshot failed (Failed at step x)"


def test_a_gate_halt_stops_its_own_wave_too() -> None:
    gate = WaveRecord(
        wave=2,
        instances=1,
        started_at=AT,
        halted=True,
        halted_before=True,
        halt_code="HALTED_BY_ALARM",
        halt_reason="halted before wave 2: health alarm(s) in ALARM: web-5xx",
    )
    rollout = RolloutRecord(waves={1: done_wave(1), 2: gate}, results=results(("i-canary", 1, "Success", "")))
    rows = outcomes(rollout=rollout)
    for instance_id in ("i-second", "i-third"):  # waves 2 and 3
        assert (rows[instance_id]["outcome"], rows[instance_id]["reason_code"]) == (Outcome.HALTED, "HALTED_BY_ALARM")
        assert rows[instance_id]["detail"] == "halted before wave 2: health alarm(s) in ALARM: web-5xx"
    assert rows["i-canary"]["outcome"] == Outcome.SENT

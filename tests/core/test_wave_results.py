"""core.wave_results: what each phase of a wave means for an instance (snapshot, install, validation, rollback)."""

from __future__ import annotations

from typing import Any

from patchcycle.core.frames import typed_frame
from patchcycle.core.wave_results import (
    FAILED_STEP,
    WAVE_RESULT_COLUMNS,
    automation_failure,
    by_instance,
    install_result,
    installed_for_validation,
    needs_rollback,
    new_result,
    rollback_result,
    snapshot_result,
    to_install,
    to_snapshot,
    validation_result,
)

ROW = new_result(("111122223333", "us-east-1"), "i-1", 2)


def execution(status: str, **fields: Any) -> dict[str, Any]:
    return {"AutomationExecutionId": "e-1", "AutomationExecutionStatus": status, "Target": "i-1", **fields}


def test_a_new_row_is_untouched_and_ok() -> None:
    assert (ROW["resource_id"], ROW["wave"], ROW["snapshot"], ROW["command_id"], ROW["ok"]) == ("i-1", 2, "", "", True)
    assert typed_frame([ROW], WAVE_RESULT_COLUMNS).dtypes.astype(str).to_dict() == dict(WAVE_RESULT_COLUMNS)


def test_a_completed_snapshot_keeps_its_ids_and_a_failed_one_stops_the_instance() -> None:
    done = snapshot_result(ROW, execution("Success", Outputs={"createSnapshots.SnapshotIds": ["snap-a", "snap-b"]}))
    assert (done["snapshot"], done["snapshot_ids"], done["ok"], done["reason_code"]) == (
        "completed",
        "snap-a;snap-b",
        True,
        "",
    )
    failed = snapshot_result(
        ROW, execution("Failed", CurrentStepName="assertSnapshotsCompleted", FailureMessage="  State is   error ")
    )
    assert (failed["snapshot"], failed["ok"], failed["reason_code"]) == ("failed", False, "SNAPSHOT_FAILED")
    assert failed["snapshot_detail"] == "Failed at step assertSnapshotsCompleted: State is error"
    lost = snapshot_result(ROW, None)
    assert (lost["snapshot"], lost["snapshot_detail"]) == ("failed", "no snapshot execution ran for it")


def test_install_result_names_the_status_and_a_timeout() -> None:
    good = install_result(ROW, "c-1", {"Status": "Success", "StatusDetails": "Success"}, False, 60)
    assert (good["status"], good["ok"], good["reason_code"], good["detail"]) == ("Success", True, "", "")
    plugins = [{"ResponseCode": 1, "Output": "x\n----------ERROR-------\nFailed to install ALAS-1"}]
    bad = install_result(
        ROW, "c-1", {"Status": "Failed", "StatusDetails": "Failed", "CommandPlugins": plugins}, False, 60
    )
    assert (bad["ok"], bad["reason_code"], bad["detail"]) == (
        False,
        "INSTALL_FAILED",
        "Failed: Failed to install ALAS-1",
    )
    late = install_result(ROW, "c-1", {"Status": "InProgress"}, True, 2.5)
    assert (late["reason_code"], late["detail"]) == ("INSTALL_TIMEOUT", "did not finish within 2.5 minutes (cancelled)")
    gone = install_result(ROW, "c-1", None, False, 60)
    assert (gone["status"], gone["reason_code"]) == ("NoInvocation", "INSTALL_FAILED")


def test_a_failed_health_check_step_is_a_health_check_failure_and_anything_else_a_validation_failure() -> None:
    installed = {**ROW, "status": "Success", "command_id": "c-1"}
    assert validation_result(installed, execution("Success"))["validation"] == "passed"
    health = validation_result(installed, execution("Failed", CurrentStepName="linuxHealthCheck", FailureMessage="x"))
    assert (health["validation"], health["reason_code"], health["ok"]) == ("failed", "HEALTH_CHECK_FAILED", False)
    patches = validation_result(installed, execution("Failed", CurrentStepName="checkNoMissingPatch"))
    assert patches["reason_code"] == "VALIDATION_FAILED"
    assert validation_result(installed, None)["validation_detail"] == "no validation execution ran for it"


def test_the_step_automation_reports_failed_wins_over_the_executions_current_step() -> None:
    installed = {**ROW, "status": "Success", "command_id": "c-1"}
    step = {"StepName": "windowsHealthCheck", "FailureMessage": "exit status 1"}
    failed = execution("Failed", CurrentStepName="", FailureMessage="Step fails", **{FAILED_STEP: step})
    result = validation_result(installed, failed)
    assert result["reason_code"] == "HEALTH_CHECK_FAILED"
    assert result["validation_detail"] == "Failed at step windowsHealthCheck: exit status 1"


def test_a_restore_reports_the_snapshot_it_used_or_why_it_failed() -> None:
    done = rollback_result(ROW, execution("Success", Outputs={"findSnapshot.SnapshotId": ["snap-root"]}))
    assert (done["rollback"], done["rollback_detail"]) == ("rolled_back", "root volume restored from snap-root")
    failed = rollback_result(ROW, execution("Failed", CurrentStepName="assertReplaced", FailureMessage="failed"))
    assert (failed["rollback"], failed["rollback_detail"]) == ("failed", "Failed at step assertReplaced: failed")


def test_the_phases_pick_their_instances() -> None:
    rows = [
        {**new_result(("a", "r"), "i-new", 1)},
        {**new_result(("a", "r"), "i-snap", 1), "snapshot": "completed"},
        {**new_result(("a", "r"), "i-nosnap", 1), "snapshot": "failed", "ok": False},
        {**new_result(("a", "r"), "i-good", 1), "snapshot": "completed", "command_id": "c", "status": "Success"},
        {
            **new_result(("a", "r"), "i-bad", 1),
            "snapshot": "completed",
            "command_id": "c",
            "status": "Failed",
            "ok": False,
        },
        {
            **new_result(("a", "r"), "i-invalid", 1),
            "snapshot": "completed",
            "command_id": "c",
            "status": "Success",
            "validation": "failed",
            "ok": False,
        },
        {**new_result(("a", "r"), "i-unsnapped-bad", 1), "command_id": "c", "status": "Failed", "ok": False},
    ]
    frame = typed_frame(rows, WAVE_RESULT_COLUMNS)
    assert to_snapshot(frame) == ["i-new", "i-unsnapped-bad"]
    assert sorted(to_install(frame, snapshots=True)["resource_id"]) == ["i-snap"]
    assert sorted(to_install(frame, snapshots=False)["resource_id"]) == ["i-new", "i-nosnap", "i-snap"]
    assert installed_for_validation(frame) == ["i-good"]
    # Only what failed and has a snapshot to go back to.
    assert sorted(frame.loc[needs_rollback(frame), "resource_id"]) == ["i-bad", "i-invalid"]


def test_child_executions_by_instance_keep_the_latest() -> None:
    first = {"Target": "i-1", "ExecutionStartTime": "2026-11-20T03:00:00Z", "AutomationExecutionId": "old"}
    second = {"Target": "i-1", "ExecutionStartTime": "2026-11-20T03:05:00Z", "AutomationExecutionId": "new"}
    assert by_instance([second, first])["i-1"]["AutomationExecutionId"] == "new"
    assert automation_failure({"AutomationExecutionStatus": "TimedOut"}) == "TimedOut"
    aws = (
        "Step fails when it is polling the command status. Command c-1 returns unexpected invocation result: "
        "{Status=[Failed], ResponseCode=[1]}. Please refer to Automation Service Troubleshooting Guide for more "
        "diagnosis details."
    )
    told = automation_failure({"AutomationExecutionStatus": "Failed", "FailureMessage": aws})
    assert told.endswith("ResponseCode=[1]}.") and "Troubleshooting" not in told

"""What a production wave did to each of its instances: the pre-patch snapshot, the install, the validation, the
rollback; and the wave's own record. The wave operator runs the phases; this module decides what each phase's
answer means for an instance.

Each instance has one WAVE_RESULT_COLUMNS row, written after every phase. `reason_code` is the first thing that
went wrong (SNAPSHOT_FAILED, INSTALL_FAILED, INSTALL_TIMEOUT, HEALTH_CHECK_FAILED, VALIDATION_FAILED), "" while
nothing did; `ok` is whether the instance counts as patched for the halt threshold (a rolled-back instance
does not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from patchcycle.core.invocations import UNFINISHED, invocation_error, plugin_output
from patchcycle.core.verdicts import ReasonCode

WAVE_RESULT_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "wave": "int64",
    "snapshot": "str",  # "" (none taken) | completed | failed
    "snapshot_ids": "str",  # the pre-patch snapshots, ";"-joined
    "snapshot_detail": "str",  # why the snapshot failed
    "command_id": "str",  # the install command; "" when it was not sent (no snapshot)
    "status": "str",  # the install's SSM invocation status (Success, Failed, TimedOut, ...); "" when not sent
    "detail": "str",  # StatusDetails and the output's tail, for a failed install
    "validation": "str",  # "" (not validated) | passed | failed
    "validation_detail": "str",  # the runbook step that failed, and why
    "rollback": "str",  # "" (none) | rolled_back | failed
    "rollback_detail": "str",  # the snapshot restored, or why the restore failed
    "reason_code": "str",  # the first failure's code (module docstring); "" when none
    "ok": "bool",  # patched and validated (or not validated yet)
}
SNAPSHOT_COMPLETED, SNAPSHOT_FAILED = "completed", "failed"
VALIDATION_PASSED, VALIDATION_FAILED = "passed", "failed"
ROLLED_BACK, ROLLBACK_FAILED = "rolled_back", "failed"
# The steps of PatchCycle-ValidateInstance (include/automation) that run the health checks: a failure there is a
# broken service (HEALTH_CHECK_FAILED); a failure elsewhere is the patch state or the runbook (VALIDATION_FAILED).
HEALTH_CHECK_STEPS: Final = frozenset({"linuxHealthCheck", "windowsHealthCheck"})
# Automation's pointer to its troubleshooting guide, at the end of its failure messages: noise in a report.
_BOILERPLATE: Final = re.compile(r"\s*Please refer to Automation Service Troubleshooting Guide[^.]*\.")
# The key under which the wave adds, to a failed child execution, the step it failed at (StepName, FailureMessage).
FAILED_STEP: Final = "FailedStep"
# Automation execution statuses that end it well.
AUTOMATION_SUCCESS: Final = frozenset({"Success", "CompletedWithSuccess"})


@dataclass(frozen=True, kw_only=True)
class WaveRecord:
    """One production wave: its size, and once it ended its outcome against the halt threshold and its gates."""

    wave: int
    instances: int
    started_at: str
    status: str = "running"  # running, done or halted
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    threshold: str = ""
    allowed_failures: int = 0
    halted: bool = False
    halted_before: bool = False  # a gate (alarm, change calendar) halted it before it installed anything
    halt_code: str = ""  # HALTED, HALTED_BY_ALARM, HALTED_BY_CALENDAR or HALTED_BY_ROLLBACK_FAILURE
    halt_reason: str = ""  # for people
    no_snapshot: int = 0
    rolled_back: int = 0
    rollback_failed: int = 0
    finished_at: str = ""


def new_result(where: tuple[str, str], instance_id: str, wave: int) -> dict[str, Any]:
    """An instance's row before any phase ran (where: its account and region)."""
    row: dict[str, Any] = dict.fromkeys(WAVE_RESULT_COLUMNS, "")
    row.update(account_id=where[0], region=where[1], resource_id=instance_id, wave=wave, ok=True)
    return row


def install_result(
    row: Mapping[str, Any],
    command_id: str,
    invocation: Mapping[str, Any] | None,
    cancelled: bool,
    timeout_minutes: float,
) -> dict[str, Any]:
    """The row after the install: its invocation's status, and why it failed.

    cancelled: its command was still running at the time limit and was cancelled (INSTALL_TIMEOUT).
    """
    code = ReasonCode.INSTALL_FAILED
    if invocation is None:
        status, detail = "NoInvocation", "Systems Manager reported no invocation for this instance"
    else:
        status = str(invocation["Status"])
        error = invocation_error(plugin_output(invocation)[1])
        detail = str(invocation.get("StatusDetails", "")) + (f": {error}" if status != "Success" and error else "")
    if cancelled and status in UNFINISHED:
        code, detail = ReasonCode.INSTALL_TIMEOUT, f"did not finish within {timeout_minutes:g} minutes (cancelled)"
    ok = status == "Success"
    return {
        **row,
        "command_id": command_id,
        "status": status,
        "detail": detail if not ok else "",
        "reason_code": "" if ok else code.value,
        "ok": ok,
    }


def failed_step(execution: Mapping[str, Any]) -> str:
    """The step a failed execution stopped at: FAILED_STEP (what DescribeAutomationStepExecutions said, added by the
    wave), else the execution's CurrentStepName."""
    step = execution.get(FAILED_STEP) or {}
    return str(step.get("StepName") or execution.get("CurrentStepName") or "")


def automation_failure(execution: Mapping[str, Any]) -> str:
    """Why an Automation execution did not succeed, for people: its step and AWS's message, in one line."""
    status = str(execution.get("AutomationExecutionStatus") or execution.get("Status") or "unknown")
    step = failed_step(execution)
    why = (execution.get(FAILED_STEP) or {}).get("FailureMessage") or execution.get("FailureMessage") or ""
    message = _BOILERPLATE.sub("", " ".join(str(why).split())).strip()[:300]
    where = f"{status} at step {step}" if step else status
    return where + (f": {message}" if message else "")


def snapshot_result(row: Mapping[str, Any], execution: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row after PatchCycle-PrePatchSnapshot: completed with its snapshot ids, or failed (not to be patched)."""
    if execution is None:
        return {
            **row,
            "snapshot": SNAPSHOT_FAILED,
            "snapshot_detail": "no snapshot execution ran for it",
            "reason_code": ReasonCode.SNAPSHOT_FAILED.value,
            "ok": False,
        }
    if execution.get("AutomationExecutionStatus") in AUTOMATION_SUCCESS:
        ids = _output(execution, "createSnapshots.SnapshotIds")
        return {**row, "snapshot": SNAPSHOT_COMPLETED, "snapshot_ids": ";".join(ids)}
    return {
        **row,
        "snapshot": SNAPSHOT_FAILED,
        "snapshot_detail": automation_failure(execution),
        "reason_code": ReasonCode.SNAPSHOT_FAILED.value,
        "ok": False,
    }


def validation_result(row: Mapping[str, Any], execution: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row after PatchCycle-ValidateInstance: passed, or failed with the step and why (and its code)."""
    if execution is not None and execution.get("AutomationExecutionStatus") in AUTOMATION_SUCCESS:
        return {**row, "validation": VALIDATION_PASSED}
    if execution is None:
        detail, code = "no validation execution ran for it", ReasonCode.VALIDATION_FAILED
    else:
        detail = automation_failure(execution)
        step = failed_step(execution)
        code = ReasonCode.HEALTH_CHECK_FAILED if step in HEALTH_CHECK_STEPS else ReasonCode.VALIDATION_FAILED
    return {**row, "validation": VALIDATION_FAILED, "validation_detail": detail, "reason_code": code.value, "ok": False}


def rollback_result(row: Mapping[str, Any], execution: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row after PatchCycle-RestoreRootVolume: rolled back from its snapshot, or the restore failed."""
    if execution is not None and execution.get("AutomationExecutionStatus") in AUTOMATION_SUCCESS:
        snapshot = next(iter(_output(execution, "findSnapshot.SnapshotId")), "")
        return {**row, "rollback": ROLLED_BACK, "rollback_detail": f"root volume restored from {snapshot}".strip()}
    detail = automation_failure(execution) if execution is not None else "no restore execution ran for it"
    return {**row, "rollback": ROLLBACK_FAILED, "rollback_detail": detail}


def needs_rollback(results: pd.DataFrame) -> pd.Series:
    """The instances to restore: their install or validation failed, and a pre-patch snapshot completed."""
    failed = (results["command_id"] != "") & ~results["ok"]
    return failed & (results["snapshot"] == SNAPSHOT_COMPLETED) & (results["rollback"] == "")


def installed_for_validation(results: pd.DataFrame) -> list[str]:
    """The instances to validate: installed successfully and not validated yet."""
    chosen = results[(results["status"] == "Success") & (results["validation"] == "")]
    return sorted(chosen["resource_id"])


def to_snapshot(results: pd.DataFrame) -> list[str]:
    return sorted(results.loc[results["snapshot"] == "", "resource_id"])


def to_install(results: pd.DataFrame, snapshots: bool) -> pd.DataFrame:
    """The rows whose install can be sent: not sent yet, and (with snapshots) a completed snapshot."""
    ready = results["command_id"] == ""
    if snapshots:
        ready &= results["snapshot"] == SNAPSHOT_COMPLETED
    return results[ready]


def _output(execution: Mapping[str, Any], name: str) -> list[str]:
    values = (execution.get("Outputs") or {}).get(name) or []
    return [
        str(value)
        for value in values
        if str(value) not in ("", "No output available yet because the step is not successfully executed")
    ]


def by_instance(executions: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Child executions by their target instance (the latest when one was started twice)."""
    found: dict[str, Mapping[str, Any]] = {}
    for execution in sorted(executions, key=lambda e: str(e.get("ExecutionStartTime") or "")):
        target = str(execution.get("Target") or "")
        if target:
            found[target] = execution
    return found

"""Reading an install run's records back (plan, staging, approval, waves, verify) for the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from patchcycle.config import MAX_WAVES, InstallSettings, RolloutSafety, Target
from patchcycle.core.frames import concat_frames
from patchcycle.core.outcomes import ApprovalRecord, RolloutRecord, StagingRecord, halted_after, install_outcomes
from patchcycle.core.plan import COMPLIANCE_COLUMNS, split_cve_ids
from patchcycle.core.staging import (
    STAGING_RESULT_COLUMNS,
    assign_profiles,
    production_instances,
    staging_profiles,
    staging_summary,
)
from patchcycle.core.verdicts import OUTCOME_COLUMNS
from patchcycle.core.wave_results import WAVE_RESULT_COLUMNS, WaveRecord
from patchcycle.readback.immutable import immutable_report
from patchcycle.readback.match import MatchTables
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    PRODUCTION,
    PROFILES,
    RUN_ERROR,
    SNAPSHOT_RETENTION,
    STACK,
    STAGING_RESULTS,
    TARGET_ERROR,
    VERIFIED_PATCHES,
    VERIFY_COMPLIANCE,
    WAVE,
    WAVE_PLAN,
    WAVE_RESULTS,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import StackRecord

NOTHING_TO_ROLL_OUT = "nothing to roll out: no instance needs patches"


@dataclass
class InstallRecord:
    outcomes: pd.DataFrame  # OUTCOME_COLUMNS
    section: dict[str, Any]  # the report's `install` section
    waves_by_resource: dict[str, int]
    snapshots_by_resource: dict[str, list[str]]
    compliance: pd.DataFrame  # the match compliance, with verified instances' state after the install


def read_install_record(
    artifacts: RunArtifacts,
    targets: Sequence[Target],
    tables: MatchTables,
    settings: InstallSettings,
    safety: RolloutSafety,
) -> InstallRecord:
    production = artifacts.find(PRODUCTION)
    profiles = artifacts.find(PROFILES)
    plan_error = ""
    if production is None or profiles is None:
        # plan_install did not run: the report still accounts for every instance the cycle would have patched.
        production = production_instances(tables.inventory, tables.plan, tables.scan_failures)
        profiles = staging_profiles(production, settings.staging_max_instances)
        production = assign_profiles(production, profiles)
        error = artifacts.find(RUN_ERROR, step=Step.PLAN_INSTALL)
        plan_error = error.error if error else "plan_install did not finish"
    waves = artifacts.find(WAVE_PLAN)
    wave_of = (
        {str(r): int(w) for r, w in zip(waves["resource_id"], waves["wave"], strict=True)} if waves is not None else {}
    )

    stacks, results_frames, staging_errors = [], [], []
    for target in targets:
        stack = artifacts.find(STACK, target=target)
        if stack is None:
            failure = _task_error(artifacts, target, (Step.STAGING,))
            staging_errors.append(f"{target.key}: no staging stack: {failure}")
            stack = StackRecord(stack_name="", account_id="", region=target.region_name, error=failure)
        elif stack.error:
            staging_errors.append(f"{target.key}: stack {stack.stack_name}: {stack.error}")
        stacks.append(_stack_entry(target, stack))
        results = artifacts.find(STAGING_RESULTS, target=target)
        if results is not None:
            results_frames.append(results)
        steps = (Step.STAGING_PATCH, Step.STAGING_CHECKS)
        failed_task = any(artifacts.exists(TARGET_ERROR, step=step, target=target) for step in steps)
        if failed_task or (results is None and (stack.created or stack.status == "NOT_NEEDED")):
            failure = _task_error(artifacts, target, steps)
            staging_errors.append(f"{target.key}: staging checks did not finish: {failure}")
    results = concat_frames(results_frames, STAGING_RESULT_COLUMNS)
    summary = staging_summary(results)
    failures = [f"{f['instance_id']} ({f['profile_id']}): {f['reason']}" for f in summary["failures"]]
    ran = not staging_errors and not plan_error
    staging = StagingRecord(
        ran=ran,
        passed=ran and summary["failed"] == 0,
        error="; ".join([plan_error, *staging_errors, *failures][:5]).strip("; "),
    )
    approval: ApprovalRecord | None = artifacts.find(APPROVAL_DECISION)

    records, errors, result_frames = {}, {}, []
    for wave in range(1, MAX_WAVES + 1):
        record = artifacts.find(WAVE, wave=wave)
        if record is not None:
            records[wave] = record
        result = artifacts.find(WAVE_RESULTS, wave=wave)
        if result is not None:
            result_frames.append(result)
        error = artifacts.find(RUN_ERROR, step=Step.wave(wave))
        if error is not None:
            errors[wave] = error.error
    wave_results = concat_frames(result_frames, WAVE_RESULT_COLUMNS)
    rollout = RolloutRecord(waves=records, results=wave_results if result_frames else None, errors=errors)
    verified: dict[str, dict[str, str]] = {}
    compliance_frames = [tables.compliance]
    for target in targets:
        patches = artifacts.find(VERIFIED_PATCHES, target=target)
        verified.update(patches or {})
        after = artifacts.find(VERIFY_COMPLIANCE, target=target)
        if after is not None:
            compliance_frames.append(after)
    # The state after the install wins over the scan's (instance_compliance keeps the latest per instance).
    compliance = concat_frames(compliance_frames, COMPLIANCE_COLUMNS)
    compliance = compliance.sort_values(["resource_id", "operation_end_time"], na_position="first")
    compliance = compliance.drop_duplicates("resource_id", keep="last").reset_index(drop=True)

    staged = set(profiles.loc[profiles["staged"], "profile_id"])
    outcomes = install_outcomes(
        production, staged, wave_of, staging, approval, rollout, verified, settings.staging_max_instances
    )
    # The Auto Scaling instances replaced (or not) by their group's instance refresh.
    replaced, groups = immutable_report(artifacts, targets, approval, staging)
    outcomes = concat_frames([outcomes, replaced], OUTCOME_COLUMNS)
    section: dict[str, Any] = {
        "staging": {
            "stacks": stacks,
            "instances": [_staging_entry(row) for row in results.to_dict("records")],
            "passed": staging.passed,
            "summary": {k: int(summary[k]) for k in ("instances", "passed", "failed", "patches")},
        },
        "approval": {
            "mode": approval.mode if approval else settings.approval_mode,
            "decision": approval.decision if approval else "",
            "by": approval.by if approval else "",
            "at": approval.at if approval else "",
            "timed_out": approval.timed_out if approval else False,
            "reason": _approval_reason(approval, staging) if wave_of else NOTHING_TO_ROLL_OUT,
        },
        "waves": _wave_entries(wave_of, rollout, approval),
        "halted_after_wave": halted_after(rollout),
        "rollback": _rollback_section(artifacts, targets, wave_results, safety),
        "pinned_patches": len(
            {p for ids in profiles.loc[profiles["staged"], "patch_ids"] for p in split_cve_ids(str(ids))}
        ),
        "settings": {
            "reboot_option": settings.reboot_option,
            "canary": str(settings.canary),
            "wave_percentages": list(settings.wave_percentages),
            "halt_threshold": str(settings.halt_threshold),
            "staging_max_instances": settings.staging_max_instances,
        },
    }
    if groups:
        section["auto_scaling_groups"] = groups
    snapshots = {
        str(row["resource_id"]): split_cve_ids(str(row["snapshot_ids"]))
        for row in wave_results.to_dict("records")
        if row["snapshot_ids"]
    }
    return InstallRecord(outcomes, section, wave_of, snapshots, compliance)


def _task_error(artifacts: RunArtifacts, target: Target, steps: Sequence[str]) -> str:
    for step in steps:
        error = artifacts.find(TARGET_ERROR, step=step, target=target)
        if error:
            return error.error
    return "the task did not finish"


def _stack_entry(target: Target, stack: StackRecord) -> dict[str, Any]:
    return {
        "account_id": stack.account_id,
        "region": target.region_name,
        "stack_name": stack.stack_name,
        "created": stack.created,
        "created_at": stack.created_at,
        "deleted": stack.deleted,
        "deleted_at": stack.deleted_at,
        "status": stack.status,
        "error": stack.error,
    }


def _staging_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": str(row["account_id"]),
        "region": str(row["region"]),
        "profile_id": str(row["profile_id"]),
        "instance_id": str(row["instance_id"]),
        "patch_group": str(row["patch_group"]),
        "platform_name": str(row["platform_name"]),
        "patch_ids": split_cve_ids(str(row["patch_ids"])),
        "install_status": str(row["install_status"]),
        "installed": int(row["installed"]),
        "not_installed": split_cve_ids(str(row["not_installed"])),
        "health_status": str(row["health_status"]),
        "health_output": str(row["health_output"]),
        "passed": bool(row["passed"]),
        "reason": str(row["reason"]),
    }


def _approval_reason(approval: ApprovalRecord | None, staging: StagingRecord) -> str:
    if approval is None:
        return "the gate did not decide: " + (staging.error or "it did not run")
    if approval.mode == "auto":
        return "staging passed every check" if staging.passed else f"staging failed: {staging.error}"
    if approval.timed_out:
        return "no answer before the response timeout: rejected by default"
    return f"decided by {approval.by}"


def _wave_entries(
    wave_of: dict[str, int], rollout: RolloutRecord, approval: ApprovalRecord | None
) -> list[dict[str, Any]]:
    sizes: dict[int, int] = {}
    for wave in wave_of.values():
        sizes[wave] = sizes.get(wave, 0) + 1
    halt = halted_after(rollout)
    entries = []
    for wave in sorted(sizes):
        record = rollout.waves.get(wave) or WaveRecord(wave=wave, instances=sizes[wave], started_at="")
        if record.finished_at:
            status = "halted" if record.halted else "done"
        elif (halt is not None and wave > halt) or (approval is not None and not approval.approved):
            status = "skipped"
        else:
            status = "not_run"
        entries.append(
            {
                "wave": wave,
                "instances": sizes[wave],
                "sent": record.sent,
                "succeeded": record.succeeded,
                "failed": record.failed,
                "threshold": record.threshold,
                "allowed_failures": record.allowed_failures,
                "halted": record.halted,
                "halt_reason": record.halt_reason if record.halted else "",
                "status": status,
                "started_at": record.started_at,
                "finished_at": record.finished_at,
            }
        )
    return entries


def _rollback_section(
    artifacts: RunArtifacts, targets: Sequence[Target], results: pd.DataFrame, safety: RolloutSafety
) -> dict[str, Any]:
    """The report's install.rollback: every snapshot, failed validation and restore of the waves, and what the
    snapshot retention deleted."""
    rows = results.sort_values(["wave", "account_id", "region", "resource_id"]).to_dict("records")

    def where(row: dict[str, Any]) -> dict[str, Any]:
        keys = ("account_id", "region", "resource_id")
        return {**{key: str(row[key]) for key in keys}, "wave": int(row["wave"])}

    snapshots = [
        {
            **where(row),
            "status": str(row["snapshot"]),
            "snapshot_ids": split_cve_ids(str(row["snapshot_ids"])),
            "detail": str(row["snapshot_detail"]),
        }
        for row in rows
        if row["snapshot"]
    ]
    validations = [
        {**where(row), "detail": str(row["validation_detail"])} for row in rows if row["validation"] == "failed"
    ]
    restores = [
        {**where(row), "status": str(row["rollback"]), "detail": str(row["rollback_detail"])}
        for row in rows
        if row["rollback"]
    ]
    retention = []
    for target in targets:
        record = artifacts.find(SNAPSHOT_RETENTION, target=target)
        if record is not None:
            retention.append(
                {
                    "account_id": record.account_id,
                    "region": target.region_name,
                    "cutoff": record.cutoff,
                    "deleted": list(record.deleted),
                    "error": "",
                }
            )
        else:
            error = artifacts.find(TARGET_ERROR, step=Step.SNAPSHOT_RETENTION, target=target)
            if error is not None:
                retention.append(
                    {"account_id": "", "region": target.region_name, "cutoff": "", "deleted": [], "error": error.error}
                )
    return {
        "settings": {
            "snapshot": safety.snapshot,
            "rollback": safety.rollback,
            "snapshot_retention_days": safety.snapshot_retention_days,
            "change_calendar": safety.change_calendar,
            "health_alarms": list(safety.health_alarms),
        },
        "snapshots": snapshots,
        "validations": validations,
        "restores": restores,
        "retention": retention,
        "summary": {
            "snapshotted": sum(1 for s in snapshots if s["status"] == "completed"),
            "snapshot_failures": sum(1 for s in snapshots if s["status"] == "failed"),
            "validated": sum(1 for row in rows if row["validation"]),
            "validation_failures": len(validations),
            "rolled_back": sum(1 for r in restores if r["status"] == "rolled_back"),
            "rollback_failures": sum(1 for r in restores if r["status"] == "failed"),
            "snapshots_deleted": sum(len(r["deleted"]) for r in retention),
        },
    }

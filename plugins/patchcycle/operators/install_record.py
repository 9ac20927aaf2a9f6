"""Reading an install run's records back (plan, staging, approval, waves, verify) for the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import MAX_WAVES, InstallSettings, Target
from patchcycle.core.inventory import typed_frame
from patchcycle.core.outcomes import ApprovalRecord, RolloutRecord, StagingRecord, halted_after, install_outcomes
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.staging import (
    STAGING_RESULT_COLUMNS,
    assign_profiles,
    production_instances,
    staging_profiles,
    staging_summary,
)
from patchcycle.operators.match_tables import MatchTables, read_frame, read_json

NOTHING_TO_ROLL_OUT = "nothing to roll out: no instance needs patches"


@dataclass
class InstallRecord:
    outcomes: pd.DataFrame  # OUTCOME_COLUMNS
    section: dict[str, Any]  # the report's `install` section
    waves_by_resource: dict[str, int]
    compliance: pd.DataFrame  # the match compliance, with verified instances' state after the install


def read_install_record(
    store: ArtifactStore, targets: Sequence[Target], tables: MatchTables, settings_value: Any
) -> InstallRecord:
    settings = InstallSettings.from_dict(settings_value) if settings_value else InstallSettings()
    production = read_frame(store, "install", "production.parquet")
    profiles = read_frame(store, "install", "profiles.parquet")
    plan_error = ""
    if production is None or profiles is None:
        # plan_install did not run: the report still accounts for every instance the cycle would have patched.
        production = production_instances(tables.inventory, tables.plan, tables.scan_failures)
        profiles = staging_profiles(production, settings.staging_max_instances)
        production = assign_profiles(production, profiles)
        error = read_json(store, "errors", "plan_install.json")
        plan_error = error["error"] if error else "plan_install did not finish"
    waves = read_frame(store, "install", "waves.parquet")
    wave_of = (
        {str(r): int(w) for r, w in zip(waves["resource_id"], waves["wave"], strict=True)} if waves is not None else {}
    )

    stacks, results_frames, staging_errors = [], [], []
    for target in targets:
        stack = read_json(store, "staging", f"{target.key}.stack.json")
        if stack is None:
            failure = _task_error(store, target, ("staging",))
            staging_errors.append(f"{target.key}: no staging stack: {failure}")
            stack = {"stack_name": "", "created": False, "status": "", "error": failure}
        elif stack.get("error"):
            staging_errors.append(f"{target.key}: stack {stack.get('stack_name')}: {stack['error']}")
        stacks.append(_stack_entry(target, stack))
        results = read_frame(store, "staging", f"{target.key}.results.parquet")
        if results is not None:
            results_frames.append(results)
        failed_task = any(
            read_json(store, "errors", f"{stage}.{target.key}.json") for stage in ("staging_patch", "staging_checks")
        )
        if failed_task or (results is None and (stack.get("created") or stack.get("status") == "NOT_NEEDED")):
            failure = _task_error(store, target, ("staging_patch", "staging_checks"))
            staging_errors.append(f"{target.key}: staging checks did not finish: {failure}")
    results = (
        pd.concat(results_frames, ignore_index=True) if results_frames else typed_frame([], STAGING_RESULT_COLUMNS)
    )
    summary = staging_summary(results)
    failures = [f"{f['instance_id']} ({f['profile_id']}): {f['reason']}" for f in summary["failures"]]
    ran = not staging_errors and not plan_error
    staging = StagingRecord(
        ran=ran,
        passed=ran and summary["failed"] == 0,
        error="; ".join([plan_error, *staging_errors, *failures][:5]).strip("; "),
    )
    decision = read_json(store, "approval", "decision.json")
    approval = (
        ApprovalRecord(**{k: decision[k] for k in ("decision", "mode", "by", "at", "timed_out")}) if decision else None
    )

    records, errors, result_frames = {}, {}, []
    for wave in range(1, MAX_WAVES + 1):
        record = read_json(store, "waves", f"wave_{wave}.json")
        if record is not None:
            records[wave] = record
        result = read_frame(store, "waves", f"wave_{wave}.results.parquet")
        if result is not None:
            result_frames.append(result)
        error = read_json(store, "errors", f"wave_{wave}.json")
        if error is not None:
            errors[wave] = error["error"]
    rollout = RolloutRecord(
        waves=records, results=pd.concat(result_frames, ignore_index=True) if result_frames else None, errors=errors
    )
    verified: dict[str, dict[str, str]] = {}
    compliance_frames = [tables.compliance]
    for target in targets:
        patches = read_json(store, "verify", f"{target.key}.patches.json") or {}
        for instance_id, items in patches.items():
            verified[instance_id] = {str(p["KBId"]): str(p["State"]) for p in items}
        after = read_frame(store, "verify", f"{target.key}.compliance.parquet")
        if after is not None:
            compliance_frames.append(after)
    # The state after the install wins over the scan's (instance_compliance keeps the latest per instance).
    compliance = pd.concat(compliance_frames, ignore_index=True)
    compliance = compliance.sort_values(["resource_id", "operation_end_time"], na_position="first")
    compliance = compliance.drop_duplicates("resource_id", keep="last").reset_index(drop=True)

    staged = set(profiles.loc[profiles["staged"], "profile_id"])
    outcomes = install_outcomes(
        production, staged, wave_of, staging, approval, rollout, verified, settings.staging_max_instances
    )
    section = {
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
        "pinned_patches": len(
            {p for ids in profiles.loc[profiles["staged"], "patch_ids"] for p in split_cve_ids(str(ids))}
        ),
        "settings": {
            "reboot_option": settings.reboot_option,
            "canary": settings.canary,
            "wave_percentages": list(settings.wave_percentages),
            "halt_threshold": settings.halt_threshold,
            "staging_max_instances": settings.staging_max_instances,
        },
    }
    return InstallRecord(outcomes, section, wave_of, compliance)


def _task_error(store: ArtifactStore, target: Target, stages: Sequence[str]) -> str:
    for stage in stages:
        error = read_json(store, "errors", f"{stage}.{target.key}.json")
        if error:
            return str(error["error"])
    return "the task did not finish"


def _stack_entry(target: Target, stack: dict[str, Any]) -> dict[str, Any]:
    accounts = stack.get("account_ids") or [""]
    return {
        "account_id": str(accounts[0]),
        "region": target.region_name,
        "stack_name": str(stack.get("stack_name", "")),
        "created": bool(stack.get("created")),
        "created_at": str(stack.get("created_at", "")),
        "deleted": bool(stack.get("deleted")),
        "deleted_at": str(stack.get("deleted_at", "")),
        "status": str(stack.get("status", "")),
        "error": str(stack.get("error", "")),
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
        record = rollout.waves.get(wave, {})
        if record.get("finished_at"):
            status = "halted" if record.get("halted") else "done"
        elif (halt is not None and wave > halt) or (approval is not None and approval.decision != "Approve"):
            status = "skipped"
        else:
            status = "not_run"
        entries.append(
            {
                "wave": wave,
                "instances": sizes[wave],
                "sent": int(record.get("sent", 0)),
                "succeeded": int(record.get("succeeded", 0)),
                "failed": int(record.get("failed", 0)),
                "threshold": str(record.get("threshold", "")),
                "allowed_failures": int(record.get("allowed_failures", 0)),
                "halted": bool(record.get("halted")),
                "status": status,
                "started_at": str(record.get("started_at", "")),
                "finished_at": str(record.get("finished_at", "")),
            }
        )
    return entries

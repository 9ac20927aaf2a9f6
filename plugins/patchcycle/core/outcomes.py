"""What happened to each production instance in install mode (OUTCOME_COLUMNS), from the run's records.

Where the instance stopped decides: not staged, staging failed, rejected at the approval gate, halted by
an earlier wave, its wave never ran, or sent (then verify says which pinned patches went in).
`verdicts.install_verdicts` turns these into verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.verdicts import OUTCOME_COLUMNS, Outcome, ReasonCode
from patchcycle.core.wave_results import SNAPSHOT_FAILED, WaveRecord

# DescribeInstancePatches' PatchComplianceData.State values.
INSTALLED_STATES: Final = frozenset({"INSTALLED", "INSTALLED_OTHER"})
PENDING_REBOOT_STATE: Final = "INSTALLED_PENDING_REBOOT"


@dataclass(frozen=True)
class StagingRecord:
    """Did staging run to the end, did it pass, and if not, why (the first failures)."""

    ran: bool
    passed: bool
    error: str = ""


APPROVE: Final = "Approve"
REJECT: Final = "Reject"


@dataclass(frozen=True, kw_only=True)
class ApprovalRecord:
    """The gate's decision, by whom and when, and whether staging had passed."""

    decision: str  # APPROVE | REJECT
    mode: str  # manual | auto
    by: str = ""
    at: str = ""
    timed_out: bool = False
    staging_passed: bool = False

    @property
    def approved(self) -> bool:
        return self.decision == APPROVE


@dataclass(frozen=True)
class RolloutRecord:
    """The waves as they ran: each wave's record (wave_N.json), the per-instance results, and task errors."""

    waves: Mapping[int, WaveRecord] = field(default_factory=dict)
    results: pd.DataFrame | None = None  # WAVE_RESULT_COLUMNS of every wave
    errors: Mapping[int, str] = field(default_factory=dict)  # wave -> its task's recorded error


def halted_after(rollout: RolloutRecord) -> int | None:
    """The wave whose failures (or gates) halted the rollout, if one did."""
    halted = [wave for wave, record in rollout.waves.items() if record.halted]
    return min(halted) if halted else None


def halted_waves(rollout: RolloutRecord) -> Callable[[int], bool]:
    """Whether a wave was halted: those after the halting wave, and the halting wave itself when a gate stopped
    it before it installed anything."""
    halt = halted_after(rollout)
    if halt is None:
        return lambda wave: False
    first = halt if rollout.waves[halt].halted_before else halt + 1
    return lambda wave: wave >= first


def install_outcomes(
    production: pd.DataFrame,
    staged_profiles: set[str],
    wave_of: Mapping[str, int],
    staging: StagingRecord,
    approval: ApprovalRecord | None,
    rollout: RolloutRecord,
    verified: Mapping[str, Mapping[str, str]],
    staging_cap: int,
) -> pd.DataFrame:
    """OUTCOME_COLUMNS, one row per production instance (production: account_id, region, resource_id,
    profile_id, patch_ids). verified: instance id -> {patch id: DescribeInstancePatches State} after the install.
    """
    halt = halted_after(rollout)
    is_halted = halted_waves(rollout)
    results = {}
    if rollout.results is not None:
        results = {str(row["resource_id"]): row for row in rollout.results.to_dict("records")}
    rows = []
    for instance in production.to_dict("records"):
        instance_id = str(instance["resource_id"])
        pinned = split_cve_ids(str(instance["patch_ids"]))
        wave = int(wave_of.get(instance_id, 0))
        row: dict[str, Any] = {
            **_EMPTY_OUTCOME,
            "account_id": instance["account_id"],
            "region": instance["region"],
            "resource_id": instance_id,
            "wave": wave,
            "pinned": len(pinned),
        }
        if str(instance["profile_id"]) not in staged_profiles:
            row.update(
                outcome=Outcome.NOT_STAGED,
                reason_code=ReasonCode.NOT_STAGED,
                detail=f"its profile {instance['profile_id']} got no staging replica "
                f"(over staging_max_instances={staging_cap} per region)",
            )
        elif instance_id in results and results[instance_id]["command_id"]:
            row.update(_sent(results[instance_id], pinned, verified.get(instance_id)))
        elif instance_id in results and results[instance_id]["snapshot"] == SNAPSHOT_FAILED:
            row.update(
                outcome=Outcome.NO_SNAPSHOT,
                reason_code=ReasonCode.SNAPSHOT_FAILED,
                detail=f"not patched: its pre-patch snapshot failed ({results[instance_id]['snapshot_detail']})",
            )
        elif approval is None:
            if not staging.ran or not staging.passed:
                row.update(
                    outcome=Outcome.STAGING_FAILED,
                    reason_code=ReasonCode.STAGING_FAILED,
                    detail=staging.error or "staging did not finish",
                )
            else:
                row.update(_not_run("the approval gate did not decide"))
        elif not approval.approved:
            row.update(_rejected(approval, staging))
        elif halt is not None and is_halted(wave):
            record = rollout.waves[halt]
            row.update(outcome=Outcome.HALTED, reason_code=record.halt_code or ReasonCode.HALTED, detail=_halt(record))
        else:
            why = rollout.errors.get(wave) or "its task did not finish"
            row.update(_not_run(f"wave {wave} did not run: {why}"))
        rows.append(row)
    return typed_frame(rows, OUTCOME_COLUMNS)


_EMPTY_OUTCOME: Final[Mapping[str, Any]] = {
    "reason_code": "",
    "invocation_status": "",
    "validation_failure": "",
    "validation_code": "",
    "rollback": "",
    "rollback_detail": "",
    "snapshot_ids": "",
    "installed": 0,
    "pending_reboot": 0,
    "not_installed": "",
    "verified": False,
    "detail": "",
}


def _halt(record: WaveRecord) -> str:
    """Why the rollout stopped, as the halting wave recorded it."""
    if record.halt_reason:
        return record.halt_reason
    return (
        f"halted after wave {record.wave}: {record.failed} of {record.instances} failed, "
        f"more than the {record.allowed_failures} allowed by halt_threshold {record.threshold}"
    )


def _not_run(detail: str) -> dict[str, Any]:
    return {"outcome": Outcome.NOT_RUN, "reason_code": ReasonCode.NOT_ATTEMPTED, "detail": detail}


def _rejected(approval: ApprovalRecord, staging: StagingRecord) -> dict[str, Any]:
    if approval.mode == "auto" and not (staging.ran and staging.passed):
        return {
            "outcome": Outcome.STAGING_FAILED,
            "reason_code": ReasonCode.STAGING_FAILED,
            "detail": f"staging failed, the auto policy rejected: {staging.error}",
        }
    if approval.timed_out:
        return {
            "outcome": Outcome.REJECTED,
            "reason_code": ReasonCode.APPROVAL_TIMEOUT,
            "detail": f"no answer in time: rejected by default at {approval.at}",
        }
    return {
        "outcome": Outcome.REJECTED,
        "reason_code": ReasonCode.REJECTED,
        "detail": f"rejected by {approval.by or 'unknown'} at {approval.at}",
    }


def _sent(result: Mapping[str, Any], pinned: list[str], states: Mapping[str, str] | None) -> dict[str, Any]:
    reported = states or {}
    installed = [p for p in pinned if reported.get(p) in INSTALLED_STATES]
    pending = [p for p in pinned if reported.get(p) == PENDING_REBOOT_STATE]
    missing = sorted(set(pinned) - set(installed) - set(pending))
    return {
        "outcome": Outcome.SENT,
        "reason_code": str(result["reason_code"]),
        "detail": str(result["detail"]),
        "invocation_status": str(result["status"]),
        "validation_failure": str(result["validation_detail"]) if result["validation"] == "failed" else "",
        "validation_code": str(result["reason_code"]) if result["validation"] == "failed" else "",
        "rollback": str(result["rollback"]),
        "rollback_detail": str(result["rollback_detail"]),
        "snapshot_ids": str(result["snapshot_ids"]),
        "installed": len(installed),
        "pending_reboot": len(pending),
        "not_installed": ";".join(missing),
        "verified": states is not None,
    }

"""The approval gate's RDS part: its section of the body, and whether the RDS rehearsals passed."""

from __future__ import annotations

from dataclasses import dataclass

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames
from patchcycle.core.rds_approval import rds_approval_section, rds_rehearsals_passed
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS
from patchcycle.run_artifacts import RDS_INSTALL_PLAN, RDS_REHEARSAL_RESULTS, RunArtifacts


@dataclass(frozen=True)
class RdsApproval:
    """What the gate shows and decides about RDS: the body's section, the rehearsals' result, the DBs planned."""

    section: str
    passed: bool
    databases: int


def rds_approval(artifacts: RunArtifacts, config: CycleConfig) -> RdsApproval:
    plan = artifacts.find(RDS_INSTALL_PLAN)
    if plan is None or plan.empty:
        return RdsApproval("", True, 0)
    results = concat_frames(
        [artifacts.find(RDS_REHEARSAL_RESULTS, target=t) for t in config.targets], REHEARSAL_RESULT_COLUMNS
    )
    return RdsApproval(
        rds_approval_section(plan, results, config.rds.rds_apply),
        rds_rehearsals_passed(plan, results),
        int(plan["resource_id"].nunique()),
    )

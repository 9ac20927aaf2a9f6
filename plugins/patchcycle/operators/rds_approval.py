"""The approval gate's RDS inputs: the maintenance planned and what its staging rehearsals showed."""

from __future__ import annotations

from typing import Any

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS
from patchcycle.run_artifacts import RDS_INSTALL_PLAN, RDS_REHEARSAL_RESULTS, RunArtifacts


def rds_approval_inputs(artifacts: RunArtifacts, config: CycleConfig) -> dict[str, Any]:
    """The ApprovalInputs fields about RDS (none when no RDS maintenance is planned)."""
    plan = artifacts.find(RDS_INSTALL_PLAN)
    if plan is None or plan.empty:
        return {}
    results = concat_frames(
        [artifacts.find(RDS_REHEARSAL_RESULTS, target=t) for t in config.targets], REHEARSAL_RESULT_COLUMNS
    )
    return {"rds_plan": plan, "rds_rehearsals": results, "rds_apply": config.rds.rds_apply}

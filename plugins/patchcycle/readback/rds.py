"""The RDS rollout read back for the report: every planned DB instance's outcome (core.rds_rollout.rds_outcomes)."""

from __future__ import annotations

import pandas as pd

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames
from patchcycle.core.outcomes import APPROVE
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS, rds_outcomes
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    RDS_INSTALL_PLAN,
    RDS_REHEARSAL_RESULTS,
    RDS_ROLLOUT,
    RunArtifacts,
)


def read_rds_outcomes(artifacts: RunArtifacts, config: CycleConfig) -> pd.DataFrame | None:
    """One row per planned DB instance (ROLLOUT_COLUMNS), or None when plan_install wrote no RDS plan."""
    plan = artifacts.find(RDS_INSTALL_PLAN)
    if plan is None:
        return None
    results = concat_frames(
        [artifacts.find(RDS_REHEARSAL_RESULTS, target=t) for t in config.targets], REHEARSAL_RESULT_COLUMNS
    )
    passed = {
        (str(a), str(r), str(i)): bool(ok)
        for a, r, i, ok in zip(
            results["account_id"], results["region"], results["rehearsal_id"], results["passed"], strict=True
        )
    }
    decision = artifacts.find(APPROVAL_DECISION)
    approved = None if decision is None else decision.decision == APPROVE
    timed_out = bool(decision and decision.timed_out)
    return rds_outcomes(plan, artifacts.find(RDS_ROLLOUT), passed, approved, timed_out)

"""The RDS rollout read back for the report: every planned DB instance's outcome (core.rds_rollout.rds_outcomes),
and the report's install.rds (core.rds_report.rds_section): the rehearsals, their stacks and the databases."""

from __future__ import annotations

from typing import Any

import pandas as pd

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames
from patchcycle.core.outcomes import APPROVE
from patchcycle.core.rds_plan import REHEARSAL_COLUMNS
from patchcycle.core.rds_report import rds_section, stack_entry
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS, rds_outcomes
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    RDS_INSTALL_PLAN,
    RDS_REHEARSAL_RESULTS,
    RDS_REHEARSALS,
    RDS_ROLLOUT,
    RDS_STAGING_STACK,
    TARGET_ERROR,
    RunArtifacts,
    Step,
)


def _results(artifacts: RunArtifacts, config: CycleConfig) -> pd.DataFrame:
    return concat_frames(
        [artifacts.find(RDS_REHEARSAL_RESULTS, target=t) for t in config.targets], REHEARSAL_RESULT_COLUMNS
    )


def _outcomes(artifacts: RunArtifacts, plan: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
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


def read_rds_outcomes(artifacts: RunArtifacts, config: CycleConfig) -> pd.DataFrame | None:
    """One row per planned DB instance (ROLLOUT_COLUMNS), or None when plan_install wrote no RDS plan."""
    plan = artifacts.find(RDS_INSTALL_PLAN)
    if plan is None:
        return None
    return _outcomes(artifacts, plan, _results(artifacts, config))


def read_rds_report(artifacts: RunArtifacts, config: CycleConfig) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """Every planned database's outcome (as read_rds_outcomes) and the report's install.rds; (None, None) when
    plan_install wrote no RDS plan, and no section when it planned no database."""
    plan = artifacts.find(RDS_INSTALL_PLAN)
    if plan is None:
        return None, None
    results = _results(artifacts, config)
    outcomes = _outcomes(artifacts, plan, results)
    if plan.empty:
        return outcomes, None
    rehearsals = artifacts.find(RDS_REHEARSALS)
    if rehearsals is None:
        rehearsals = concat_frames([], REHEARSAL_COLUMNS)
    regions = set(rehearsals["region"])
    stacks = []
    for target in config.targets:
        record = artifacts.find(RDS_STAGING_STACK, target=target)
        if record is not None and record.status != "NOT_NEEDED":
            stacks.append(stack_entry(record.account_id, target.region_name, record))
        elif record is None and target.region_name in regions:
            error = artifacts.find(TARGET_ERROR, step=Step.RDS_STAGING, target=target)
            why = (
                f"no RDS staging stack: {error.error}"
                if error
                else "no RDS staging stack: create_rds_staging did not run"
            )
            stacks.append(stack_entry("", target.region_name, None, why))
    return outcomes, rds_section(plan, rehearsals, results, stacks, outcomes, config.rds.rds_apply)

"""plan_install's RDS part: the DB instances and Aurora DB clusters install mode maintains, their staging
rehearsals and waves."""

from __future__ import annotations

from typing import Any

import pandas as pd

from patchcycle.config import MAX_WAVES, CycleConfig
from patchcycle.core.rds_plan import (
    assign_waves,
    clusters_of,
    databases_of,
    plan_rds_waves,
    plan_summary,
    rds_install_plan,
    rehearsals,
)
from patchcycle.run_artifacts import RDS_INSTALL_PLAN, RDS_REHEARSALS, RunArtifacts


def write_rds_plan(
    artifacts: RunArtifacts, inventory: pd.DataFrame, plan: pd.DataFrame, config: CycleConfig
) -> dict[str, Any]:
    """Write the RDS plan and its rehearsals (the match tables' in-scope DB instances with pending actions of the
    types `rds_actions` names); returns counts for the task's summary."""
    planned = rds_install_plan(inventory, plan, config.rds.rds_actions)
    install = config.install
    waves = plan_rds_waves(
        databases_of(planned), install.canary, install.wave_percentages, MAX_WAVES, clusters_of(planned)
    )
    planned = assign_waves(planned, waves)
    artifacts.write(RDS_INSTALL_PLAN, planned)
    artifacts.write(RDS_REHEARSALS, rehearsals(planned, artifacts.run_id))
    return plan_summary(planned)

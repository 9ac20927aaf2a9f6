"""The fleet as the match stage left it, over every target that got that far."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from patchcycle.config import MAX_WAVES, Target
from patchcycle.core.frames import concat_frames
from patchcycle.core.inventory import INVENTORY_COLUMNS, combine
from patchcycle.core.plan import COMPLIANCE_COLUMNS, combine_plan, empty_plan
from patchcycle.core.scope import SCOPE_COLUMNS
from patchcycle.core.verdicts import ScanFailure
from patchcycle.run_artifacts import (
    INVENTORY,
    MATCH_COMPLIANCE,
    MATCH_PLAN,
    SCAN_FAILURES,
    TARGET_ERROR,
    WAVE_SENT,
    RunArtifacts,
    Step,
)


@dataclass
class MatchTables:
    """The fleet as the match stage left it, over every target that got that far."""

    inventory: pd.DataFrame
    plan: pd.DataFrame
    compliance: pd.DataFrame
    scan_failures: dict[str, ScanFailure]
    missing: list[dict[str, Any]] = field(default_factory=list)  # {aws_conn_id, region, stage, error}


def missing_part(artifacts: RunArtifacts, target: Target, step: str) -> dict[str, Any]:
    """Which part is missing and why: the failed task's recorded error, if it left one."""
    error = artifacts.find(TARGET_ERROR, step=step, target=target)
    reason = error.error if error else "the task did not finish"
    return {"aws_conn_id": target.aws_conn_id, "region": target.region_name, "stage": step, "error": reason}


def read_match_tables(artifacts: RunArtifacts, targets: Iterable[Target]) -> MatchTables:
    inventories, plans, compliances, missing = [], [], [], []
    failures: dict[str, ScanFailure] = {}
    for target in targets:
        inventory = artifacts.find(INVENTORY, target=target)
        if inventory is None:
            missing.append(missing_part(artifacts, target, Step.INVENTORY))
            continue
        inventories.append(inventory)
        plan = artifacts.find(MATCH_PLAN, target=target)
        if plan is None:
            missing.append(missing_part(artifacts, target, Step.MATCH))
            continue
        plans.append(plan)
        compliance = artifacts.find(MATCH_COMPLIANCE, target=target)
        if compliance is not None:
            compliances.append(compliance)
        scan_failures = artifacts.find(SCAN_FAILURES, target=target)
        failures.update(scan_failures or {})
    return MatchTables(
        inventory=combine(inventories) if inventories else concat_frames([], {**INVENTORY_COLUMNS, **SCOPE_COLUMNS}),
        plan=combine_plan(plans) if plans else empty_plan(),
        compliance=concat_frames(compliances, COMPLIANCE_COLUMNS),
        scan_failures=failures,
        missing=missing,
    )


def sent_instances(artifacts: RunArtifacts, target: Target) -> list[str]:
    """The instances of a target that a production wave sent the install to (the waves' sent records), sorted."""
    return sorted(
        {
            instance
            for wave in range(1, MAX_WAVES + 1)
            for command in artifacts.find(WAVE_SENT, wave=wave, target=target) or []
            for instance in command.instance_ids
        }
    )

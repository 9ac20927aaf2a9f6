"""Reading every target's inventory and match artifacts back as one set of tables (plan_install, report)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import MAX_WAVES, Target
from patchcycle.core.inventory import combine, empty_inventory
from patchcycle.core.plan import COMPLIANCE_COLUMNS, combine_plan, empty_plan


@dataclass
class MatchTables:
    """The fleet as the match stage left it, over every target that got that far."""

    inventory: pd.DataFrame
    plan: pd.DataFrame
    compliance: pd.DataFrame
    scan_failures: dict[str, str]
    missing: list[dict[str, Any]] = field(default_factory=list)  # {aws_conn_id, region, stage, error}


def read_frame(store: ArtifactStore, stage: str, name: str) -> pd.DataFrame | None:
    path = store.path(stage, name)
    return store.read_frame(str(path)) if path.exists() else None


def read_json(store: ArtifactStore, stage: str, name: str) -> Any:
    path = store.path(stage, name)
    return store.read_json(str(path)) if path.exists() else None


def sent_instances(store: ArtifactStore, target: Target) -> list[str]:
    """The instances of a target that a production wave sent the install to (the waves' sent records), sorted."""
    return sorted(
        {
            instance
            for wave in range(1, MAX_WAVES + 1)
            for command in read_json(store, "waves", f"wave_{wave}.{target.key}.sent.json") or []
            for instance in command["instance_ids"]
        }
    )


def missing_part(store: ArtifactStore, target: Target, stage: str) -> dict[str, Any]:
    """Which part is missing and why: the failed task's recorded error, if it left one."""
    error = read_json(store, "errors", f"{stage}.{target.key}.json")
    reason = error["error"] if error else "the task did not finish"
    return {"aws_conn_id": target.aws_conn_id, "region": target.region_name, "stage": stage, "error": reason}


def empty_compliance() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in COMPLIANCE_COLUMNS.items()})


def read_match_tables(store: ArtifactStore, targets: Iterable[Target]) -> MatchTables:
    inventories, plans, compliances, missing = [], [], [], []
    failures: dict[str, str] = {}
    for target in targets:
        inventory = read_frame(store, "inventory", f"{target.key}.parquet")
        if inventory is None:
            missing.append(missing_part(store, target, "inventory"))
            continue
        inventories.append(inventory)
        plan = read_frame(store, "match", f"{target.key}.plan.parquet")
        if plan is None:
            missing.append(missing_part(store, target, "match"))
            continue
        plans.append(plan)
        compliance = read_frame(store, "match", f"{target.key}.compliance.parquet")
        if compliance is not None:
            compliances.append(compliance)
        failures.update(read_json(store, "match", f"{target.key}.scan_failures.json") or {})
    return MatchTables(
        inventory=(
            combine(inventories)
            if inventories
            else empty_inventory().assign(in_scope=pd.Series(dtype=bool), scope_reason=pd.Series(dtype="str"))
        ),
        plan=combine_plan(plans) if plans else empty_plan(),
        compliance=pd.concat(compliances, ignore_index=True) if compliances else empty_compliance(),
        scan_failures=failures,
        missing=missing,
    )


def targets_of(value: Any) -> list[Target]:
    """Targets from validate_params' `targets` XCom ([{aws_conn_id, region_name}])."""
    return [Target(t["aws_conn_id"], t["region_name"]) for t in value or []]

"""The report's RDS part (install.rds): each staging rehearsal with its copy, source, snapshot, actions, result and
stack, and each planned database with its actions, their dates and impact, its role, wave and outcome.

Built from the run's own tables: the RDS plan (core.rds_plan.RDS_PLAN_COLUMNS), the rehearsals planned
(REHEARSAL_COLUMNS), what the staging copies showed (rds_rollout.REHEARSAL_RESULT_COLUMNS), the RDS staging stacks
(StackRecord, as the report's staging stacks) and every planned database's outcome (rds_rollout.rds_outcomes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pandas as pd

from patchcycle.core.json_schemas import closed_record
from patchcycle.core.rds_plan import CLUSTER, DB_CLUSTER, FAILOVER
from patchcycle.core.rds_rollout import RolloutOutcome
from patchcycle.core.timestamps import iso_utc
from patchcycle.core.verdicts import rds_install_decision

_TEXT: Final[dict[str, Any]] = {"type": "string"}
_TEXTS: Final[dict[str, Any]] = {"type": "array", "items": _TEXT}
_BOOL: Final[dict[str, Any]] = {"type": "boolean"}
_COUNT: Final[dict[str, Any]] = {"type": "integer", "minimum": 0}

# A database's role in the rollout (RDS_DATABASE_SCHEMA's `role`).
PRIMARY, REPLICA, CLUSTER_ROLE, CLUSTER_MEMBER = "primary", "replica", "cluster", "cluster member"
ROLES: Final = (PRIMARY, REPLICA, CLUSTER_ROLE, CLUSTER_MEMBER)


RDS_STACK_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "account_id": _TEXT,
        "region": _TEXT,
        "stack_name": _TEXT,
        "created": _BOOL,
        "created_at": {**_TEXT, "description": "ISO 8601 UTC; empty when not created"},
        "deleted": _BOOL,
        "deleted_at": {**_TEXT, "description": "ISO 8601 UTC; empty when not deleted"},
        "status": {**_TEXT, "description": "the stack's last CloudFormation status (NOT_NEEDED: nothing to rehearse)"},
        "error": {**_TEXT, "description": "why creation or deletion failed; empty when neither did"},
    },
    "one RDS staging stack per account and region: the restored copies",
)
RDS_REHEARSAL_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "account_id": _TEXT,
        "region": _TEXT,
        "rehearsal_id": {**_TEXT, "description": "e.g. postgres-16-3-db-r6g: engine, version and class family"},
        "kind": {"enum": ["db-instance", "db-cluster"], "description": "what the copy is: a DB instance or cluster"},
        "staging_db": {**_TEXT, "description": "the staging copy's identifier"},
        "source_db": {**_TEXT, "description": "the production database it was restored from"},
        "snapshot_id": {**_TEXT, "description": "the snapshot it was restored from; empty when none was reached"},
        "engine": _TEXT,
        "engine_version": _TEXT,
        "instance_class": _TEXT,
        "actions": {**_TEXTS, "description": "the maintenance actions applied to the copy"},
        "databases": {**_COUNT, "description": "the planned databases this rehearsal stands for"},
        "ran": {**_BOOL, "description": "false: no result was recorded (its staging task did not run or finish)"},
        "passed": _BOOL,
        "step": {**_TEXT, "description": "where it stopped: restore, apply, check or done; empty when it did not run"},
        "detail": {**_TEXT, "description": "why it failed, or what the check saw"},
        "engine_version_after": _TEXT,
        "stack_name": {**_TEXT, "description": "the RDS staging stack of its account and region"},
        "stack_deleted": {**_BOOL, "description": "that stack was deleted after the rehearsal"},
    }
)
RDS_ACTION_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "action": {**_TEXT, "description": "e.g. system-update"},
        "description": {**_TEXT, "description": "the action's Description"},
        "auto_applied_after": {**_TEXT, "description": "AutoAppliedAfterDate, ISO 8601 UTC; empty when none"},
        "forced_apply_date": {**_TEXT, "description": "ForcedApplyDate, ISO 8601 UTC; empty when none"},
        "impact": {"enum": ["failover", "downtime", "cluster"]},
        "impact_words": {**_TEXT, "description": "what applying it means for the database's clients"},
    }
)
RDS_DATABASE_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "account_id": _TEXT,
        "region": _TEXT,
        "resource_id": {**_TEXT, "description": "the DB instance or Aurora DB cluster identifier"},
        "kind": {"enum": ["db-instance", "db-cluster"]},
        "role": {"enum": list(ROLES)},
        "replica_of": {**_TEXT, "description": "a read replica's source; empty when none"},
        "members": {**_TEXTS, "description": "an Aurora DB cluster's member DB instances"},
        "multi_az": _BOOL,
        "engine": _TEXT,
        "engine_version": _TEXT,
        "instance_class": _TEXT,
        "rehearsal_id": {**_TEXT, "description": "the rehearsal that proves its actions; empty: not rehearsed"},
        "wave": {"type": "integer", "minimum": 1, "description": "its RDS wave (1 first); the EC2 waves are apart"},
        "actions": {"type": "array", "items": RDS_ACTION_SCHEMA},
        "outcome": {"enum": [outcome.value for outcome in RolloutOutcome]},
        "detail": {**_TEXT, "description": "the outcome's detail, e.g. the RDS event of a failure"},
        "status_after": {**_TEXT, "description": "its status when the rollout's wait ended"},
        "engine_version_after": _TEXT,
        "verdict": {**_TEXT, "description": "as in resources (MAINTENANCE_APPLIED, SKIPPED_HALTED, ...)"},
        "reason_code": _TEXT,
        "reason": {**_TEXT, "description": "as in resources: why, for people"},
    }
)
RDS_SECTION_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "apply": {"enum": ["immediate", "next-maintenance"], "description": "the run's rds_apply"},
        "stacks": {"type": "array", "items": RDS_STACK_SCHEMA},
        "rehearsals": {"type": "array", "items": RDS_REHEARSAL_SCHEMA},
        "databases": {"type": "array", "items": RDS_DATABASE_SCHEMA},
    },
    "install mode's RDS maintenance: the staging rehearsals on restored copies, and each planned database",
)

_IMPACT: Final[Mapping[str, str]] = {
    FAILOVER: "Multi-AZ: brief failover",
    CLUSTER: "Aurora: applied to every member at once, brief downtime or failover",
}


def impact_words(impact: str, multi_az: bool, action: str) -> str:
    """What applying `action` means for the database's clients, in words (docs/rds.md, Downtime per action)."""
    if impact in _IMPACT:
        return _IMPACT[impact]
    if multi_az:  # a db-upgrade (rds_plan.ALWAYS_DOWNTIME)
        return f"Multi-AZ, but a {action} upgrades both copies at once: downtime while applied"
    return "Single-AZ: downtime while applied"


def role(row: Mapping[str, Any]) -> str:
    """A planned database's role: an Aurora DB cluster, an Aurora member (its own action), a read replica, or a
    primary (a DB instance replicating from none)."""
    if row["kind"] == DB_CLUSTER:
        return CLUSTER_ROLE
    if not row["rehearsal_id"]:
        return CLUSTER_MEMBER
    return REPLICA if row["replica_of"] else PRIMARY


def _joined(value: Any) -> list[str]:
    return [part for part in str(value).split(";") if part]


def _key(row: Mapping[str, Any], name: str = "resource_id") -> tuple[str, str, str]:
    return str(row["account_id"]), str(row["region"]), str(row[name])


def stack_entry(account_id: str, region: str, stack: Any | None, error: str = "") -> dict[str, Any]:
    """One RDS staging stack (a StackRecord, or None: no record, `error` says why)."""
    if stack is None:
        return {
            "account_id": account_id,
            "region": region,
            "stack_name": "",
            "created": False,
            "created_at": "",
            "deleted": False,
            "deleted_at": "",
            "status": "",
            "error": error or "no RDS staging stack was recorded",
        }
    return {
        "account_id": str(stack.account_id or account_id),
        "region": region,
        "stack_name": str(stack.stack_name),
        "created": bool(stack.created),
        "created_at": str(stack.created_at),
        "deleted": bool(stack.deleted),
        "deleted_at": str(stack.deleted_at),
        "status": str(stack.status),
        "error": str(stack.error),
    }


def _stack_of(stacks: Sequence[Mapping[str, Any]], account_id: str, region: str) -> Mapping[str, Any] | None:
    """The stack of (account, region); a stack without a known account (never recorded) matches its region."""
    exact = [s for s in stacks if (s["account_id"], s["region"]) == (account_id, region)]
    loose = [s for s in stacks if not s["account_id"] and s["region"] == region]
    return next(iter(exact or loose), None)


def rds_section(
    plan: pd.DataFrame,
    rehearsals: pd.DataFrame,
    results: pd.DataFrame,
    stacks: Sequence[Mapping[str, Any]],
    outcomes: pd.DataFrame,
    apply: str,
) -> dict[str, Any]:
    """The report's install.rds (RDS_SECTION_SCHEMA).

    plan: RDS_PLAN_COLUMNS; rehearsals: REHEARSAL_COLUMNS (the copies planned); results: REHEARSAL_RESULT_COLUMNS
    (what the copies showed; a planned copy without a row did not run); stacks: stack_entry's, one per target;
    outcomes: ROLLOUT_COLUMNS for every planned database (rds_outcomes); apply: the run's rds_apply.
    """
    shown = {_key(r, "rehearsal_id"): r for r in results.to_dict("records")}
    planned = {_key(r, "rehearsal_id"): r for r in rehearsals.to_dict("records")}
    rehearsal_entries = []
    for key in sorted(set(planned) | set(shown)):
        plan_row, result = planned.get(key, {}), shown.get(key)
        stack = _stack_of(stacks, key[0], key[1])
        detail = str(result["detail"]) if result else ""
        if result is None:
            why = str(stack["error"]) if stack and stack["error"] else "its staging task did not run or finish"
            detail = f"no result: {why}"
        rehearsal_entries.append(
            {
                "account_id": key[0],
                "region": key[1],
                "rehearsal_id": key[2],
                "kind": str((result or plan_row).get("kind") or plan_row.get("kind") or "db-instance"),
                "staging_db": str((result or plan_row).get("staging_db", "")),
                "source_db": str((result or plan_row).get("source_db", "")),
                "snapshot_id": str(result["snapshot_id"]) if result else "",
                "engine": str(plan_row.get("engine", "")),
                "engine_version": str(plan_row.get("engine_version", "")),
                "instance_class": str(plan_row.get("instance_class", "")),
                "actions": _joined((result or plan_row).get("actions", "")),
                "databases": int(plan_row.get("databases", 0)),
                "ran": result is not None,
                "passed": bool(result["passed"]) if result else False,
                "step": str(result["step"]) if result else "",
                "detail": detail,
                "engine_version_after": str(result["engine_version_after"]) if result else "",
                "stack_name": str(stack["stack_name"]) if stack else "",
                "stack_deleted": bool(stack and stack["deleted"]),
            }
        )
    reached = {_key(r): r for r in outcomes.to_dict("records")}
    databases = []
    for (account_id, region, resource_id), rows in plan.groupby(["account_id", "region", "resource_id"], sort=True):
        rows = rows.sort_values("action")
        first = rows.iloc[0].to_dict()
        key = (str(account_id), str(region), str(resource_id))
        outcome = reached.get(key) or {
            "outcome": RolloutOutcome.NOT_RUN.value,
            "detail": "the RDS rollout did not reach it",
            "actions": ";".join(rows["action"]),
            "resource_id": resource_id,
        }
        decision = rds_install_decision(outcome)
        databases.append(
            {
                "account_id": key[0],
                "region": key[1],
                "resource_id": key[2],
                "kind": str(first["kind"]),
                "role": role(first),
                "replica_of": str(first["replica_of"]),
                "members": _joined(first["members"]),
                "multi_az": bool(first["multi_az"]),
                "engine": str(first["engine"]),
                "engine_version": str(first["engine_version"]),
                "instance_class": str(first["instance_class"]),
                "rehearsal_id": str(first["rehearsal_id"]),
                "wave": int(first["wave"]),
                "actions": [
                    {
                        "action": str(row["action"]),
                        "description": str(row["description"]),
                        "auto_applied_after": iso_utc(row["auto_applied_after"]),
                        "forced_apply_date": iso_utc(row["forced_apply_date"]),
                        "impact": str(row["impact"]),
                        "impact_words": impact_words(str(row["impact"]), bool(row["multi_az"]), str(row["action"])),
                    }
                    for row in rows.to_dict("records")
                ],
                "outcome": str(outcome["outcome"]),
                "detail": str(outcome.get("detail", "")),
                "status_after": str(outcome.get("status_after", "") or ""),
                "engine_version_after": str(outcome.get("engine_version_after", "") or ""),
                "verdict": decision.verdict.value,
                "reason_code": decision.code.value,
                "reason": decision.reason,
            }
        )
    databases.sort(key=lambda d: (d["wave"], d["account_id"], d["region"], d["resource_id"]))
    return {"apply": apply, "stacks": list(stacks), "rehearsals": rehearsal_entries, "databases": databases}


def rds_waves(section: Mapping[str, Any] | None) -> dict[tuple[str, str, str], int]:
    """{(account, region, database): its RDS wave} from an install.rds section ({} when there is none)."""
    if not section:
        return {}
    return {_key(db): int(db["wave"]) for db in section["databases"]}

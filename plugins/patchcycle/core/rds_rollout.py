"""What applying RDS maintenance did: the states a wait reads, the staging rehearsals' results, the waves' rows,
and each planned DB instance's outcome for its verdict.

The waits (triggers/rds_maintenance.py) read DescribeDBInstances (DescribeDBClusters for an Aurora DB cluster) and
DescribePendingMaintenanceActions and ask `maintenance_state` where each DB instance (cluster) stands. A DB
instance whose action was applied is `available` with the
action gone from the pending list; one whose application failed is `available` with the action still pending and
its opt-in gone (RDS starts it again in a later window); an opt-in for next-maintenance shows as OptInStatus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame

AVAILABLE: Final = "available"
# DB instance statuses that will not become available on their own (RDS's status table).
DEAD_STATUSES: Final = frozenset(
    {"failed", "incompatible-restore", "incompatible-parameters", "incompatible-network", "storage-full", "stopped"}
)


class WaitState(StrEnum):
    """Where one DB instance stands in a wait."""

    WAITING = "waiting"  # still creating, upgrading, modifying, ... or the opt-in not started yet
    READY = "ready"  # available (a restore's wait)
    APPLIED = "applied"  # available and the actions gone from the pending list
    SCHEDULED = "scheduled"  # opted in for the next maintenance window
    FAILED = "failed"  # available with an action still pending and no opt-in, a dead status, or gone
    TIMEOUT = "timeout"  # still waiting at the wait's limit


FINAL_STATES: Final = frozenset({WaitState.READY, WaitState.APPLIED, WaitState.SCHEDULED, WaitState.FAILED})
# What a wait is for: the DB instance to be available, an action applied now, or opted in for the next window.
WAIT_AVAILABLE, WAIT_IMMEDIATE, WAIT_NEXT_MAINTENANCE = "available", "immediate", "next-maintenance"
WAIT_KINDS: Final = (WAIT_AVAILABLE, WAIT_IMMEDIATE, WAIT_NEXT_MAINTENANCE)


def maintenance_state(
    kind: str, status: str | None, actions: Sequence[str], pending: Mapping[str, Mapping[str, Any]]
) -> WaitState:
    """One DB instance's state in a wait of `kind` (WAIT_KINDS).

    status: its DBInstanceStatus (None: DescribeDBInstances does not know it); actions: the actions applied;
    pending: its PendingMaintenanceActionDetails by action.
    """
    if kind not in WAIT_KINDS:
        raise ValueError(f"kind must be one of {list(WAIT_KINDS)}, got {kind!r}")
    if status is None or status in DEAD_STATUSES or status == "deleting":
        return WaitState.FAILED
    if kind == WAIT_AVAILABLE:
        return WaitState.READY if status == AVAILABLE else WaitState.WAITING
    left = [action for action in actions if action in pending]
    if kind == WAIT_NEXT_MAINTENANCE:
        if all(pending[a].get("OptInStatus") == WAIT_NEXT_MAINTENANCE for a in left):
            return WaitState.SCHEDULED if left else WaitState.APPLIED
        return WaitState.WAITING if status != AVAILABLE else WaitState.FAILED
    if status != AVAILABLE:
        return WaitState.WAITING
    if not left:
        return WaitState.APPLIED
    # Available with an action pending: not started yet while its immediate opt-in stands; failed once it is gone.
    return WaitState.WAITING if all(pending[a].get("OptInStatus") == WAIT_IMMEDIATE for a in left) else WaitState.FAILED


# One row per staging rehearsal (per target): what its staging copy showed.
REHEARSAL_RESULT_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "rehearsal_id": "str",
    "staging_db": "str",  # the staging DB instance (DB cluster)
    "source_db": "str",
    "kind": "str",  # db-instance | db-cluster (an Aurora DB cluster's copy: the cluster and one DB instance in it)
    "snapshot_id": "str",  # the snapshot (DB cluster snapshot) the copy was restored from
    "actions": "str",  # the actions applied, ";"-joined
    "passed": "bool",
    "step": "str",  # where it stopped: restore | apply | check | done
    "detail": "str",  # why it failed, or what the check saw
    "engine_version_after": "str",
}

# One row per planned DB instance the rollout reached (rds_rollout's table).
ROLLOUT_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "wave": "int64",
    "actions": "str",  # the actions applied or scheduled, ";"-joined
    "outcome": "str",  # a RolloutOutcome value
    "detail": "str",
    "status_after": "str",  # DBInstanceStatus when the wait ended
    "engine_version_after": "str",
}


class RolloutOutcome(StrEnum):
    """Where one planned DB instance stopped (ROLLOUT_COLUMNS' `outcome`, and `rds_outcomes`)."""

    APPLIED = "applied"
    SCHEDULED = "scheduled"
    FAILED = "failed"  # applying failed (or ApplyPendingMaintenanceAction was refused)
    TIMEOUT = "timeout"
    HALTED = "halted"  # an earlier wave passed the halt threshold
    HALTED_BY_ALARM = "halted_by_alarm"  # a health alarm was in ALARM before its wave
    HALTED_BY_CALENDAR = "halted_by_calendar"  # the change calendar stayed CLOSED past the wait before its wave
    NOT_REHEARSED = "not_rehearsed"  # an Aurora member's own action (never rehearsed) under the auto approval policy
    STAGING_FAILED = "staging_failed"  # its rehearsal did not pass
    REJECTED = "rejected"  # the approval gate rejected (or timed out)
    NOT_RUN = "not_run"  # the rollout did not reach it (its task failed or did not run)


FAILURE_OUTCOMES: Final = frozenset({RolloutOutcome.FAILED, RolloutOutcome.TIMEOUT})
# A halt (the threshold or a wave gate) kept the database from its maintenance.
HALT_OUTCOMES: Final = frozenset(
    {RolloutOutcome.HALTED, RolloutOutcome.HALTED_BY_ALARM, RolloutOutcome.HALTED_BY_CALENDAR}
)


def rollout_rows(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return typed_frame(rows, ROLLOUT_COLUMNS)


def rehearsal_rows(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return typed_frame(rows, REHEARSAL_RESULT_COLUMNS)


def rehearsal_check(
    db: Mapping[str, Any] | None, actions: Sequence[str], pending: Mapping[str, Any], upgrade_to: str | None
) -> str:
    """Why the staging copy fails its check after the actions ("" when it passes): it must be available, answer
    with an endpoint (address and port), have none of the actions pending, and run `upgrade_to` after a
    db-upgrade."""
    if db is None:
        return "the staging copy is gone"
    status = str(db.get("DBInstanceStatus", ""))
    if status != AVAILABLE:
        return f"the staging copy is {status}, not available"
    endpoint = db.get("Endpoint") or {}
    if not endpoint.get("Address") or not endpoint.get("Port"):
        return "the staging copy has no endpoint to connect to"
    left = sorted(action for action in actions if action in pending)
    if left:
        return f"still pending on the staging copy: {', '.join(left)}"
    version = str(db.get("EngineVersion", ""))
    if upgrade_to and version != upgrade_to:
        return f"engine version {version} after the db-upgrade, not {upgrade_to}"
    return ""


def cluster_as_copy(cluster: Mapping[str, Any] | None, member: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A staging DB cluster (DescribeDBClusters item) in the shape `rehearsal_check` reads (DescribeDBInstances'):
    its Status, its endpoint (address and port) and engine version. Its one DB instance (`member`) must be
    available too: a cluster without an available instance serves no connection."""
    if cluster is None:
        return None
    status = str(cluster.get("Status", ""))
    if status == AVAILABLE and (member is None or member.get("DBInstanceStatus") != AVAILABLE):
        status = f"{AVAILABLE} but its DB instance is {member.get('DBInstanceStatus') if member else 'missing'}"
    return {
        "DBInstanceStatus": status,
        "Endpoint": {"Address": cluster.get("Endpoint", ""), "Port": cluster.get("Port")},
        "EngineVersion": cluster.get("EngineVersion", ""),
    }


def rds_outcomes(
    plan: pd.DataFrame,
    rollout: pd.DataFrame | None,
    rehearsals_passed: Mapping[tuple[str, str, str], bool],
    approved: bool | None,
    timed_out: bool = False,
) -> pd.DataFrame:
    """ROLLOUT_COLUMNS for every planned DB instance: the rollout's row, else why it was not reached.

    rehearsals_passed: {(account, region, rehearsal_id): passed}; approved: the gate's decision (None: no
    decision recorded); timed_out: the gate rejected for want of an answer. A DB cluster has no rehearsal
    (rehearsal_id ""): only the gate's decision counts for it.
    """
    reached = {}
    if rollout is not None:
        reached = {
            (str(r["account_id"]), str(r["region"]), str(r["resource_id"])): r for r in rollout.to_dict("records")
        }
    rows = []
    for (account_id, region, resource_id), group in plan.groupby(["account_id", "region", "resource_id"], sort=True):
        key = (str(account_id), str(region), str(resource_id))
        if key in reached:
            rows.append(reached[key])
            continue
        first = group.iloc[0]
        base = {
            "account_id": key[0],
            "region": key[1],
            "resource_id": key[2],
            "wave": int(first["wave"]),
            "actions": ";".join(sorted(group["action"])),
        }
        rehearsal = str(first["rehearsal_id"])
        if rehearsal and not rehearsals_passed.get((key[0], key[1], rehearsal), False):
            rows.append({**base, "outcome": RolloutOutcome.STAGING_FAILED, "detail": "its staging rehearsal failed"})
        elif approved is False:
            detail = "no answer at the approval gate in time" if timed_out else "rejected at the approval gate"
            rows.append({**base, "outcome": RolloutOutcome.REJECTED, "detail": detail})
        else:
            rows.append({**base, "outcome": RolloutOutcome.NOT_RUN, "detail": "the RDS rollout did not reach it"})
    return rollout_rows(rows)

"""Waits, in the triggerer, until RDS DB instances are available (a restore) or their maintenance is applied or
scheduled, across (connection, region) targets; Aurora DB clusters' cluster-level maintenance alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import TriggerEvent

from patchcycle.core.rds_rollout import FINAL_STATES, WAIT_KINDS, WaitState, maintenance_state
from patchcycle.hooks.rds_maintenance import RdsMaintenanceHook
from patchcycle.triggers.fleet_wait import FleetWaitTrigger

CLUSTER_PREFIX = "cluster:"  # a wait id of an Aurora DB cluster (an identifier never holds a colon)


def wait_id(
    identifier: str, actions: Sequence[str] = (), cluster: bool = False, place: tuple[str, str] | None = None
) -> str:
    """The id a wait keeps for one DB instance and the actions applied to it: "orders-db/system-update;os-upgrade";
    for an Aurora DB cluster "cluster:ledger/system-update". A wait across targets keys each DB by its place too,
    (account, region), "123456789012/eu-west-1/orders-db/system-update": an identifier is unique only within its
    account and region, and a wave's ids must be unique across its targets. Account ids, regions, identifiers and
    action names hold no "/"."""
    key = f"{CLUSTER_PREFIX if cluster else ''}{identifier}/{';'.join(actions)}"
    return f"{place[0]}/{place[1]}/{key}" if place is not None else key


def parse_wait_id(value: str) -> tuple[str, list[str]]:
    """(the identifier, with CLUSTER_PREFIX for a DB cluster; the actions) of a wait id, with or without its
    place (wait_place)."""
    if "/" not in value:
        return value, []
    head, _, actions = value.rpartition("/")
    return head.rpartition("/")[2], [action for action in actions.split(";") if action]


def wait_place(value: str) -> tuple[str, str] | None:
    """The (account id, region) a wait id names, or None for one without (a wait in one target, as staging's)."""
    parts = value.split("/")
    return (parts[0], parts[1]) if len(parts) == 4 else None


def cluster_identifier(identifier: str) -> str | None:
    """The DB cluster identifier of a parsed wait id's identifier, or None for a DB instance's."""
    return identifier.removeprefix(CLUSTER_PREFIX) if identifier.startswith(CLUSTER_PREFIX) else None


class RdsMaintenanceTrigger(FleetWaitTrigger):
    """Polls DescribeDBInstances (DescribeDBClusters for a cluster's wait id) and DescribePendingMaintenanceActions
    until every DB instance (cluster) waited on is final for `kind` (core.rds_rollout.maintenance_state), or until
    `timeout` seconds after `started_at`.

    Targets: {"aws_conn_id", "region_name", "databases": [wait_id(...)]}; the ids are unique across targets (a wait
    across targets gives each its place; a placed id's region is its target's). Event: {"status": "done" |
    "timeout", "databases": {wait id: {"aws_conn_id", "region_name", "state", "status", "engine_version"}}}; at the
    timeout the ones not final are "timeout".
    """

    IDS_KEY = "databases"
    NOUN = "DB instance wait id"

    def __init__(self, targets: Sequence[Mapping[str, Any]], kind: str, **kwargs: Any) -> None:
        if kind not in WAIT_KINDS:
            raise ValueError(f"kind must be one of {list(WAIT_KINDS)}, got {kind!r}")
        super().__init__(targets, **kwargs)
        for target in self.targets:
            elsewhere = [
                i for i in target[self.IDS_KEY] if (place := wait_place(i)) and place[1] != target["region_name"]
            ]
            if elsewhere:
                raise ValueError(f"wait ids of another region than {target['region_name']}'s target: {elsewhere}")
        self.kind = kind

    def serialize(self) -> tuple[str, dict[str, Any]]:
        path, kwargs = super().serialize()
        return path, {**kwargs, "kind": self.kind}

    def _poll(self, target: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        hook = RdsMaintenanceHook(
            aws_conn_id=target["aws_conn_id"],
            region_name=target["region_name"],
            verify=self.verify,
            config=self.botocore_config,
        )
        waits = {wid: parse_wait_id(wid) for wid in target[self.IDS_KEY]}
        identifiers = sorted({i for i, _ in waits.values() if cluster_identifier(i) is None})
        clusters = sorted({c for i, _ in waits.values() if (c := cluster_identifier(i)) is not None})
        dbs = hook.db_instances(identifiers) if identifiers else {}
        found_clusters = hook.db_clusters(clusters) if clusters else {}
        pending = hook.pending_actions(identifiers) if identifiers and self.kind != "available" else {}
        cluster_pending = hook.pending_actions(clusters, clusters=True) if clusters and self.kind != "available" else {}
        found = {}
        for wid, (identifier, actions) in waits.items():
            name = cluster_identifier(identifier)
            if name is None:
                db = dbs.get(identifier)
                status = str(db["DBInstanceStatus"]) if db else None
                waiting = pending.get(identifier, {})
            else:
                db = found_clusters.get(name)
                status = str(db["Status"]) if db else None
                waiting = cluster_pending.get(name, {})
            state = maintenance_state(self.kind, status, actions, waiting)
            found[wid] = {
                "aws_conn_id": target["aws_conn_id"],
                "region_name": target["region_name"],
                "state": state.value,
                "status": status or "not found",
                "engine_version": str(db.get("EngineVersion", "")) if db else "",
            }
        return found

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.poll_interval)  # nothing is done at once (and see CommandCompletionTrigger)
        states: dict[str, dict[str, Any]] = {}
        while True:
            pending_targets = [
                {
                    **target,
                    self.IDS_KEY: [
                        i for i in target[self.IDS_KEY] if states.get(i, {}).get("state") not in FINAL_STATES
                    ],
                }
                for target in self.targets
            ]
            polled = await asyncio.gather(
                *(asyncio.to_thread(self._poll, target) for target in pending_targets if target[self.IDS_KEY])
            )
            for found in polled:
                states.update(found)
            waiting = [i for i in self.ids if states.get(i, {}).get("state") not in FINAL_STATES]
            if not waiting:
                yield TriggerEvent({"status": "done", "databases": states})
                return
            if self.timed_out():
                for wid in waiting:
                    states[wid] = {
                        **states.get(wid, {"status": "unknown", "engine_version": ""}),
                        "state": WaitState.TIMEOUT.value,
                    }
                yield TriggerEvent({"status": "timeout", "databases": states})
                return
            self.log.info("%d of %d DB instances not %s yet", len(waiting), len(self.ids), self.kind)
            await asyncio.sleep(self.poll_interval)

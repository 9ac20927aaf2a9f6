"""Waits, in the triggerer, until an Auto Scaling instance refresh ends: replaced, rolled back, failed or cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.auto_scaling import AutoScalingHook

# InstanceRefreshStatus values after which nothing changes any more.
FINAL_STATUSES = frozenset({"Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"})


def refresh_state(refresh: dict[str, Any]) -> dict[str, Any]:
    """What a resumed task needs of a DescribeInstanceRefreshes entry, as JSON (it travels through the database)."""
    rollback = refresh.get("RollbackDetails") or {}
    return {
        "refresh_id": str(refresh["InstanceRefreshId"]),
        "status": str(refresh["Status"]),
        "status_reason": str(refresh.get("StatusReason", "")),
        "percentage_complete": int(refresh.get("PercentageComplete", 0)),
        "instances_to_update": int(refresh.get("InstancesToUpdate", 0)),
        "started_at": iso_utc(refresh.get("StartTime")),
        "ended_at": iso_utc(refresh.get("EndTime")),
        "rollback_reason": str(rollback.get("RollbackReason", "")),
    }


class InstanceRefreshTrigger(BaseTrigger):
    """Polls DescribeInstanceRefreshes (one call per poll) for one refresh of one group until its status is final,
    or until `timeout` seconds after `started_at`.

    Event: {"status": "done" | "timeout", "group": name, "refresh": refresh_state(...), "polls": calls made}.
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        region_name: str | None,
        group: str,
        refresh_id: str,
        poll_interval: float = 30.0,
        timeout: float = 8 * 3600.0,
        started_at: float | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not group or not refresh_id:
            raise ValueError(f"an instance refresh needs a group and an id, got {group!r} and {refresh_id!r}")
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.group = group
        self.refresh_id = refresh_id
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.started_at = started_at if started_at is not None else time.time()
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "group": self.group,
                "refresh_id": self.refresh_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "started_at": self.started_at,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = AutoScalingHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        polls = 0
        async with await hook.get_async_conn() as client:
            while True:
                await asyncio.sleep(self.poll_interval)
                polls += 1
                found = await client.describe_instance_refreshes(
                    AutoScalingGroupName=self.group, InstanceRefreshIds=[self.refresh_id]
                )
                if not found["InstanceRefreshes"]:
                    raise LookupError(f"Auto Scaling group {self.group} has no instance refresh {self.refresh_id}")
                state = refresh_state(found["InstanceRefreshes"][0])
                if state["status"] in FINAL_STATUSES:
                    yield TriggerEvent({"status": "done", "group": self.group, "refresh": state, "polls": polls})
                    return
                if time.time() - self.started_at > self.timeout:
                    yield TriggerEvent({"status": "timeout", "group": self.group, "refresh": state, "polls": polls})
                    return
                self.log.info(
                    "Instance refresh %s of %s: %s, %d%% complete",
                    self.refresh_id,
                    self.group,
                    state["status"],
                    state["percentage_complete"],
                )

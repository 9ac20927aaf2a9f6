"""Waits, in the triggerer, until Amazon Inspector has rescanned instances after their install."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.inspector import MAX_COVERAGE_PER_PAGE, InspectorHook, coverage_criteria, select_coverage


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class InspectorRescanTrigger(BaseTrigger):
    """Polls ListCoverage until every instance's lastScannedAt is at or after its install time, or the deadline.

    `installed_at` maps instance id -> ISO 8601 time of its install (AWS's clock, as Patch Manager reported
    it); `deadline` is an ISO 8601 UTC wall-clock time. An instance Inspector reports INACTIVE (no working
    SSM agent, stopped) will not be rescanned, so it is not waited for.

    Event: {"status": "rescanned" (none left to wait for) | "deadline",
            "rescanned": {instance id: lastScannedAt}, "not_rescanned": {instance id: lastScannedAt or ""},
            "not_covered": {instance id: Inspector's scan status reason}}.
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        region_name: str | None,
        installed_at: Mapping[str, str],
        deadline: str,
        poll_seconds: float = 60.0,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for instance_id, when in installed_at.items():
            _instant(when)  # a bad time fails here, in the worker, not in the triggerer
            if not isinstance(instance_id, str):
                raise ValueError(f"installed_at keys are instance ids, got {instance_id!r}")
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.installed_at = dict(installed_at)
        self.deadline = iso_utc(_instant(deadline))
        self.poll_seconds = float(poll_seconds)
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "installed_at": dict(self.installed_at),
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        waiting = {instance_id: _instant(when) for instance_id, when in self.installed_at.items()}
        rescanned: dict[str, str] = {}
        not_covered: dict[str, str] = {}
        last_seen: dict[str, str] = {}
        deadline = _instant(self.deadline)
        # First look after one interval, as CommandCompletionTrigger does (the Airflow 3.3.2 race it avoids).
        await asyncio.sleep(self.poll_seconds)
        hook = InspectorHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        async with await hook.get_async_conn() as client:
            while True:
                # ListCoverage of the instances still waited for, all pages, batched as InspectorHook.coverage is.
                listed: list[dict[str, Any]] = []
                for criteria in coverage_criteria(sorted(waiting)):
                    pages = client.get_paginator("list_coverage").paginate(
                        filterCriteria=criteria, PaginationConfig={"PageSize": MAX_COVERAGE_PER_PAGE}
                    )
                    async for page in pages:
                        listed.extend(page["coveredResources"])
                for instance_id, item in select_coverage(listed, sorted(waiting)).items():
                    scanned = item.get("lastScannedAt")
                    last_seen[instance_id] = iso_utc(scanned)
                    status = item.get("scanStatus") or {}
                    if status.get("statusCode") != "ACTIVE":
                        not_covered[instance_id] = str(status.get("reason", ""))
                        del waiting[instance_id]
                    elif scanned is not None and scanned >= waiting[instance_id]:
                        rescanned[instance_id] = iso_utc(scanned)
                        del waiting[instance_id]
                if not waiting or datetime.now(UTC) >= deadline:
                    yield TriggerEvent(
                        {
                            "status": "deadline" if waiting else "rescanned",
                            "rescanned": rescanned,
                            "not_rescanned": {instance_id: last_seen.get(instance_id, "") for instance_id in waiting},
                            "not_covered": not_covered,
                        }
                    )
                    return
                self.log.info("%d of %d instances not rescanned by Inspector yet", len(waiting), len(self.installed_at))
                await asyncio.sleep(self.poll_seconds)

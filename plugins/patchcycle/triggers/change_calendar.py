"""Waits, in the triggerer, until an SSM Change Calendar is OPEN, or until a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from patchcycle.core.timestamps import iso_utc, parse_utc
from patchcycle.hooks.automation import AutomationHook


class ChangeCalendarTrigger(BaseTrigger):
    """Polls GetCalendarState every `poll_seconds` until the calendar is OPEN or `deadline` (ISO 8601 UTC
    wall-clock time) has passed.

    Event: {"status": "open" | "closed", "state": the last State, "checked_at": ISO,
            "next_transition": ISO or ""}.
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        region_name: str | None,
        calendar: str,
        deadline: str,
        poll_seconds: float = 60.0,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        when = parse_utc(deadline)
        if when is None:
            raise ValueError(f"deadline must be an ISO 8601 time, got {deadline!r}")  # fails in the worker
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.calendar = calendar
        self.deadline = iso_utc(when)
        self.poll_seconds = float(poll_seconds)
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "calendar": self.calendar,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = parse_utc(self.deadline)
        assert deadline is not None  # checked in __init__
        hook = AutomationHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        async with await hook.get_async_conn() as client:
            while True:
                await asyncio.sleep(self.poll_seconds)
                response = await client.get_calendar_state(CalendarNames=[self.calendar])
                state = str(response["State"])
                now = datetime.now(UTC)
                event = {
                    "state": state,
                    "checked_at": iso_utc(now),
                    "next_transition": iso_utc(response.get("NextTransitionTime")),
                }
                if state == "OPEN":
                    yield TriggerEvent({"status": "open", **event})
                    return
                if now >= deadline:
                    yield TriggerEvent({"status": "closed", **event})
                    return
                self.log.info("Change calendar %s is %s; waiting until %s", self.calendar, state, self.deadline)

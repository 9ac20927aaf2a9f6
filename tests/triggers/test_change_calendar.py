"""ChangeCalendarTrigger: serializes for the triggerer, refuses a deadline that is not a time, and polls
GetCalendarState (aiobotocore, against the sandbox's Change Calendar on its simulated clock) until the calendar is
OPEN, or until its wall-clock deadline has passed while it is CLOSED."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.core.timestamps import iso_utc, parse_utc
from patchcycle.triggers.change_calendar import ChangeCalendarTrigger
from tests.conftest import advance_clock, first_trigger_payload, sandbox_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SCENARIO: dict[str, Any] = {
    "name": "change-calendar-trigger",
    # Nearly frozen: only advance_clock moves simulated time.
    "clock": {"start": START.isoformat(), "speed": 1e-9},
    "accounts": [{"id": ACCOUNT, "regions": {REGION: {}}}],
    "change_calendars": [
        {"name": "no-freeze", "type": "DEFAULT_OPEN", "events": []},
        # Closed for a day from a minute before the start: no test moves the clock that far.
        {
            "name": "long-freeze",
            "type": "DEFAULT_OPEN",
            "events": [{"start_after_seconds": -60, "duration_seconds": 86400}],
        },
        # Closed until ten minutes after the start.
        {
            "name": "short-freeze",
            "type": "DEFAULT_OPEN",
            "events": [{"start_after_seconds": -60, "duration_seconds": 660, "summary": "Deploy freeze"}],
        },
    ],
}
SANDBOX_DROP_FAULTS = True
pytestmark = pytest.mark.usefixtures("server")
POLLS = "ssm:GetCalendarState"


def trigger(calendar: str, deadline: str, poll_seconds: float = 0.1) -> ChangeCalendarTrigger:
    return ChangeCalendarTrigger(
        aws_conn_id="aws_default", region_name=REGION, calendar=calendar, deadline=deadline, poll_seconds=poll_seconds
    )


def in_an_hour() -> str:
    return iso_utc(datetime.now(UTC) + timedelta(hours=1))


async def first_event(waiting: ChangeCalendarTrigger) -> TriggerEvent:
    events = cast(AsyncGenerator[TriggerEvent, None], waiting.run())  # run() is an async generator
    try:
        return await anext(events)
    finally:
        await events.aclose()


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    built = ChangeCalendarTrigger(
        aws_conn_id="aws_prod",
        region_name="eu-west-1",
        calendar="arn:aws:ssm:eu-west-1:111122223333:document/release-freeze",
        deadline="2026-12-07T10:30:00+02:00",
        poll_seconds=30,
        verify=False,
        botocore_config={"retries": {"mode": "standard", "max_attempts": 5}},
    )
    path, kwargs = built.serialize()
    # The triggerer imports it from sys.path: plugins/ is there, the DAG bundle is not.
    assert path == "patchcycle.triggers.change_calendar.ChangeCalendarTrigger"
    assert kwargs == {
        "aws_conn_id": "aws_prod",
        "region_name": "eu-west-1",
        "calendar": "arn:aws:ssm:eu-west-1:111122223333:document/release-freeze",
        "deadline": "2026-12-07T08:30:00Z",  # normalized to UTC
        "poll_seconds": 30.0,
        "verify": False,
        "botocore_config": {"retries": {"mode": "standard", "max_attempts": 5}},
    }
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)


@pytest.mark.parametrize("deadline", ["", "soon", "2026-13-01T00:00:00Z", "07/12/2026 10:00"])
def test_a_deadline_that_is_not_an_iso_time_is_refused_when_the_trigger_is_built(deadline: str) -> None:
    with pytest.raises(ValueError, match=r"deadline must be an ISO 8601 time, got "):
        trigger("no-freeze", deadline)


def test_an_open_calendar_yields_open_at_the_first_poll() -> None:
    before = time.time()
    payload = first_trigger_payload(trigger("no-freeze", in_an_hour()), timeout=30)

    assert payload == {
        "status": "open",
        "state": "OPEN",
        "checked_at": payload["checked_at"],
        "next_transition": "",  # no event: it never changes
    }
    checked = parse_utc(payload["checked_at"])
    assert checked is not None and before - 1 <= checked.timestamp() <= time.time() + 1  # the wall clock


def test_a_closed_calendar_past_the_deadline_yields_closed(server: SandboxServer) -> None:
    before = sandbox_calls(server.url, POLLS)
    passed = iso_utc(datetime.now(UTC) - timedelta(seconds=1))

    payload = first_trigger_payload(trigger("long-freeze", passed), timeout=30)

    assert payload["status"] == "closed" and payload["state"] == "CLOSED"
    assert payload["next_transition"] == iso_utc(START + timedelta(seconds=86400 - 60))  # simulated time
    assert sandbox_calls(server.url, POLLS) - before == 1  # one look, then the deadline decides


def test_a_closed_calendar_before_the_deadline_keeps_polling_until_the_bound(server: SandboxServer) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    before = sandbox_calls(server.url, POLLS)

    payload = first_trigger_payload(trigger("long-freeze", iso_utc(deadline), poll_seconds=0.2), timeout=30)

    assert (payload["status"], payload["state"]) == ("closed", "CLOSED")
    assert sandbox_calls(server.url, POLLS) - before >= 3  # not at the first poll: the deadline was still ahead
    checked = parse_utc(payload["checked_at"])
    assert checked is not None and checked >= deadline


def test_the_calendar_opening_while_the_trigger_polls_yields_open(server: SandboxServer) -> None:
    waiting_on = trigger("short-freeze", in_an_hour())
    before = sandbox_calls(server.url, POLLS)

    async def scenario() -> TriggerEvent:
        waiting = asyncio.ensure_future(first_event(waiting_on))
        deadline = time.monotonic() + 30
        # Two polls while the freeze lasts: it must keep waiting.
        while await asyncio.to_thread(sandbox_calls, server.url, POLLS) - before < 2:
            assert not waiting.done(), f"yielded while the calendar is closed: {waiting.result().payload}"
            assert time.monotonic() < deadline, "the trigger does not poll"
            await asyncio.sleep(0.05)
        assert not waiting.done(), f"yielded while the calendar is closed: {waiting.result().payload}"
        await asyncio.to_thread(advance_clock, server.url, 600 + 1)  # past the freeze's end
        return await asyncio.wait_for(waiting, timeout=30)

    payload = asyncio.run(scenario()).payload
    json.dumps(payload)

    assert (payload["status"], payload["state"]) == ("open", "OPEN")
    assert payload["next_transition"] == ""  # the freeze does not come back


def test_an_unknown_calendar_fails_the_trigger() -> None:
    with pytest.raises(ClientError, match="InvalidDocument"):
        first_trigger_payload(trigger("no-such-calendar", in_an_hour()), timeout=30)

"""The gates every production wave passes before it acts, EC2 waves (patch_wave) and RDS waves (rds_rollout) alike:
the change calendar must be OPEN in each target the wave touches (a CLOSED one is waited for in the triggerer, up to
change_calendar_wait_minutes, then the rollout halts), and no health alarm may be in ALARM there."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig, RolloutSafety, Target
from patchcycle.core.notifications import rollout_halted
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.automation import AutomationHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_alarms import CloudWatchAlarmsHook
from patchcycle.notifications.cycle_events import notify, page_of_run
from patchcycle.operators.base import FleetOperator
from patchcycle.triggers.change_calendar import ChangeCalendarTrigger

OPEN = "OPEN"


class WaveHalted(AirflowFailException):
    """The rollout halts at this wave (the message says why): later waves never start, the task fails (no retry)."""

    def __init__(self, message: str, reason: str, wave: int, rollout: str = "", step: str = "wave") -> None:
        super().__init__(message)
        self.reason = reason  # why, for people (the SNS message)
        self.wave = wave
        self.rollout = rollout  # which rollout, for people: "" (the EC2 instances'), "RDS", "Auto Scaling"
        self.step = step  # what it proceeds by, for people: "wave", or "group" (refreshes go group by group)


R = TypeVar("R")


def telling_halts(method: Callable[..., R]) -> Callable[..., R]:
    """A wave task's entry point (execute, or a method a trigger resumes) that tells the run's SNS topic when it
    halts, then fails the task."""

    @functools.wraps(method)
    def run(self: FleetOperator[CycleConfig], context: Context, *args: Any, **kwargs: Any) -> R:
        try:
            return method(self, context, *args, **kwargs)  # Airflow resumes with event= as a keyword
        except WaveHalted as halted:
            run_id, page = str(context["run_id"]), page_of_run(context)
            message = rollout_halted(run_id, halted.wave, halted.reason, page, halted.rollout, halted.step)
            notify(context, self.settings().notifications, message, self.log)
            raise

    return run


def calendar_look(placed: Iterable[tuple[Target, str]], calendar: str) -> tuple[Target | None, str]:
    """(the first target, of (target, account) pairs, where `calendar` is not OPEN, or None; the last State read).
    GetCalendarState in each target until one is not OPEN."""
    state = ""
    for target, account in placed:
        hook = AutomationHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
        with aws_call("ssm:GetCalendarState", account, target.region_name):
            state = str(hook.calendar_state(calendar)["State"])
        if state != OPEN:
            return target, state
    return None, state


def calendar_wait(target: Target, safety: RolloutSafety, since: datetime, poll_seconds: float) -> ChangeCalendarTrigger:
    """The trigger that waits for the calendar to open in `target`, until change_calendar_wait after `since`."""
    return ChangeCalendarTrigger(
        aws_conn_id=target.aws_conn_id,
        region_name=target.region_name,
        calendar=safety.change_calendar,
        deadline=iso_utc(since + safety.change_calendar_wait),
        poll_seconds=poll_seconds,
    )


def calendar_halt_reason(wave: str, safety: RolloutSafety, since: str) -> str:
    """Why `wave` ("wave 2", "RDS wave 1") halted: the calendar stayed CLOSED for the whole wait."""
    return (
        f"halted before {wave}: change calendar {safety.change_calendar} stayed CLOSED for "
        f"{safety.change_calendar_wait_minutes:g} minutes (since {since})"
    )


def alarms_in_alarm(placed: Iterable[tuple[Target, str]], watched: Sequence[str]) -> list[str]:
    """The watched alarms (names, or prefixes ending in '*') in ALARM in the targets, as
    "name (account/region: state reason)"."""
    names = [alarm for alarm in watched if not alarm.endswith("*")]
    prefixes = [alarm[:-1] for alarm in watched if alarm.endswith("*")]
    firing = []
    for target, account in placed if watched else []:
        hook = CloudWatchAlarmsHook(aws_conn_id=target.aws_conn_id, region_name=target.region_name)
        with aws_call("cloudwatch:DescribeAlarms", account, target.region_name):
            for alarm in hook.alarms_in_alarm(names, prefixes):
                why = " ".join(str(alarm.get("StateReason", "")).split())[:200]
                firing.append(f"{alarm['AlarmName']} ({account}/{target.region_name}: {why})")
    return firing


def alarm_halt_reason(wave: str, firing: Sequence[str]) -> str:
    return f"halted before {wave}: health alarm(s) in ALARM: {'; '.join(firing)}"

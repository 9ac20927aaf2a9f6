"""refresh_groups passes the EC2 and RDS waves' gates (operators.wave_gates) before each group's refresh: a health
alarm in ALARM halts the rollout naming it, a change calendar CLOSED past the wait halts it naming the calendar; the
group and the later ones are not refreshed (HALTED_BY_ALARM, HALTED_BY_CALENDAR), the task fails and the run's SNS
topic is told. A refresh an earlier attempt started is resumed, not gated again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.operators.wave_gates import WaveHalted
from patchcycle.triggers.change_calendar import ChangeCalendarTrigger
from patchcycle.triggers.instance_refresh import InstanceRefreshTrigger
from tests.conftest import first_trigger_payload, sandbox_calls, subscribed_topic
from tests.operators.immutable_helpers import client, refresh_operator, refreshes_by_group
from tests.operators.install_helpers import ACCOUNT, REGION, context
from tests.operators.test_patch_wave_way_back import create_calendar
from tests.operators.test_refresh_groups import ALARM, GROUPS, SANDBOX_DROP_FAULTS, SCENARIO, planned_refresh

__all__ = ["SANDBOX_DROP_FAULTS", "SCENARIO"]  # the module's sandbox: test_refresh_groups' four groups and alarm

STARTS = ("autoscaling:StartInstanceRefresh", "ec2:CreateLaunchTemplateVersion")


def _calls(server: SandboxServer) -> list[int]:
    return [sandbox_calls(server.url, api) for api in STARTS]


def _set_alarm(server: SandboxServer, state: str) -> None:
    client(server, "cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue=state, StateReason="Threshold Crossed")


def test_a_health_alarm_in_alarm_halts_the_refreshes_before_the_first_group(server: SandboxServer) -> None:
    run_id = "manual__refresh-gate-alarm"
    topic, inbox = subscribed_topic(server.url, "refresh-halts")
    config = planned_refresh(server, run_id, notify_topic_arn=topic)
    before = _calls(server)
    _set_alarm(server, "ALARM")
    try:
        with pytest.raises(
            WaveHalted, match=rf"^halted before the refresh of aaa-latest: health alarm\(s\) in ALARM: {ALARM} \("
        ):
            refresh_operator(config).execute(context(run_id))
    finally:
        _set_alarm(server, "OK")

    assert _calls(server) == before  # no launch template version, no refresh
    refreshes = refreshes_by_group(config, run_id)
    assert set(refreshes) == set(GROUPS)
    assert {(r.state, r.halt_code) for r in refreshes.values()} == {("halted", "HALTED_BY_ALARM")}
    assert all(f"{ALARM} ({ACCOUNT}/{REGION}: Threshold Crossed)" in r.reason for r in refreshes.values())
    (told,) = inbox()  # the run's topic learned why, once
    assert told["Subject"] == f"Patch cycle {run_id}: Auto Scaling rollout halted at group 1"
    assert f"health alarm(s) in ALARM: {ALARM} (" in told["Message"]


def test_a_change_calendar_closed_past_the_wait_halts_the_refreshes_naming_it(server: SandboxServer) -> None:
    run_id = "manual__refresh-gate-calendar"
    create_calendar(server, "asg-freeze", timedelta(days=2))
    topic, inbox = subscribed_topic(server.url, "refresh-calendar")
    config = planned_refresh(
        server, run_id, change_calendar="asg-freeze", change_calendar_wait_minutes=45, notify_topic_arn=topic
    )
    before = _calls(server)
    operator = refresh_operator(config)

    with pytest.raises(TaskDeferred) as waiting:
        operator.execute(context(run_id))

    deferred = waiting.value
    assert deferred.method_name == "calendar_done" and deferred.timeout == timedelta(minutes=55)
    assert isinstance(deferred.trigger, ChangeCalendarTrigger) and deferred.trigger.calendar == "asg-freeze"
    assert deferred.kwargs is not None and deferred.kwargs["group"] == f"{ACCOUNT}/{REGION}/aaa-latest"
    closed = {"status": "closed", "state": "CLOSED", "checked_at": "", "next_transition": ""}
    with pytest.raises(
        WaveHalted, match=r"^halted before the refresh of aaa-latest: change calendar asg-freeze stayed"
    ):
        operator.calendar_done(context(run_id), closed, **deferred.kwargs)

    assert _calls(server) == before
    refreshes = refreshes_by_group(config, run_id)
    assert {(r.state, r.halt_code) for r in refreshes.values()} == {("halted", "HALTED_BY_CALENDAR")}
    assert set(refreshes) == set(GROUPS) and "CLOSED for 45 minutes" in refreshes["zzz-asg"].reason
    (told,) = inbox()
    assert "change calendar asg-freeze stayed CLOSED" in told["Message"]


@pytest.mark.slow
def test_a_refresh_an_earlier_attempt_started_is_resumed_ungated_and_the_next_group_is_gated(
    server: SandboxServer,
) -> None:
    run_id = "manual__refresh-gate-retry"
    config = planned_refresh(server, run_id)
    before = _calls(server)
    with pytest.raises(TaskDeferred) as waiting:
        refresh_operator(config).execute(context(run_id))
    trigger = waiting.value.trigger
    assert isinstance(trigger, InstanceRefreshTrigger) and trigger.group == "aaa-latest"
    # The first group's refresh ends, but the worker is lost before the task resumes; then an alarm fires.
    assert first_trigger_payload(trigger, timeout=120)["refresh"]["status"] == "Successful"
    _set_alarm(server, "ALARM")
    try:
        with pytest.raises(WaveHalted, match=r"^halted before the refresh of api-asg: health alarm"):
            refresh_operator(config).execute(context(run_id))
    finally:
        _set_alarm(server, "OK")

    assert [now - then for now, then in zip(_calls(server), before, strict=True)] == [1, 1]  # aaa-latest's only
    refreshes = refreshes_by_group(config, run_id)
    assert (refreshes["aaa-latest"].state, refreshes["aaa-latest"].status) == ("done", "Successful")
    assert refreshes["aaa-latest"].default_version_set and not refreshes["aaa-latest"].halt_code
    later = [refreshes[g] for g in ("api-asg", "web-asg", "zzz-asg")]
    assert {(r.state, r.halt_code, r.refresh_id) for r in later} == {("halted", "HALTED_BY_ALARM", "")}

"""PatchWaveOperator's way back and gates against the sandbox: the pre-patch snapshot, the validation, the rollback of
what failed (PatchCycle-* runbooks run by the sandbox's Automation engine), the health alarm and change calendar
gates, and a wave retried in any phase starting nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.core.verdicts import ReasonCode
from patchcycle.hooks.automation import AutomationHook
from patchcycle.operators.patch_wave import PatchWaveOperator, WaveHalted
from patchcycle.run_artifacts import WAVE, WAVE_AUTOMATIONS, WAVE_GATE, WAVE_RESULTS, WAVE_SENT, RunArtifacts
from patchcycle.triggers.automation_completion import AutomationCompletionTrigger
from patchcycle.triggers.change_calendar import ChangeCalendarTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls, subscribed_topic
from tests.operators.install_helpers import (
    ACCOUNT,
    FAILING_PATCH,
    REGION,
    TARGET,
    context,
    cycle_config,
    deferral,
    plan_run,
    register_runbooks,
    run_artifacts,
    s3_root,
    scenario,
    wave_run,
)


def way_back_scenario() -> dict[str, Any]:
    """The install tests' fleet with more web servers (two still fail FAILING_PATCH), plus instances that break
    the way back: two whose health checks fail once patched, one whose snapshots fail, one whose install fails
    and whose root volume cannot be restored. Snapshots and restores take seconds."""
    document = scenario("way-back", ebs={"snapshot_seconds": 5, "restore_pending_seconds": 2})
    groups = document["accounts"][0]["regions"][REGION]["instance_groups"]
    web = groups[0]
    web["count"] = 10
    groups += [{**web, "name": name, "count": count} for name, count in (("fragile", 2), ("nosnap", 1), ("stuck", 1))]
    document["failures"] += [
        {"group": "fragile", "count": 2, "breaks_after_install": True},
        {"group": "nosnap", "count": 1, "snapshot_fails": True},
        {"group": "stuck", "count": 1, "install_fails": [FAILING_PATCH], "restore_fails": True},
    ]
    return document


SCENARIO = way_back_scenario()
ROOT = s3_root("way-back")
BASE_RUN = "scheduled__way_back_base"
# Every test starts from `base` and runs runbooks through several simulated phases: not in test-fast.
pytestmark = pytest.mark.slow


def config(**settings: Any) -> dict[str, Any]:
    return cycle_config(ROOT, command_timeout_minutes=5, **settings)


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> RunArtifacts:
    plan_run(server, config(), BASE_RUN)
    register_runbooks(config(), BASE_RUN)
    return run_artifacts(config(), BASE_RUN)


@pytest.fixture(scope="module")
def fleet(server: SandboxServer, base: RunArtifacts) -> dict[str, list[str]]:
    """The planned production instances by scenario group; "web" are the good ones, "failing" fail to install."""
    instances = server.world.instances(ACCOUNT, REGION)
    groups: dict[str, list[str]] = {}
    for instance_id, instance in sorted(instances.items()):
        name = "failing" if instance.group == "web" and instance.faults.install_fails else str(instance.group)
        groups.setdefault(name, []).append(instance_id)
    return groups


def wave_operator(wave: int = 1, **settings: Any) -> PatchWaveOperator:
    return PatchWaveOperator(task_id=f"wave_{wave}", wave=wave, config=config(**settings))


def drive(server: SandboxServer, operator: PatchWaveOperator, run_id: str, resumed: list[str]) -> Any:
    """Run a wave as the scheduler and triggerer would: execute, then each deferral's trigger (after moving the
    simulated clock on) and the method it resumes, until the wave returns or raises. `resumed` collects the
    methods, in order."""
    try:
        return operator.execute(context(run_id))
    except TaskDeferred as deferred:
        waiting = deferred
    while True:
        resumed.append(waiting.method_name)
        advance_clock(server.url, 300)
        payload = first_trigger_payload(waiting.trigger)
        try:
            return getattr(operator, waiting.method_name)(context(run_id), event=payload)  # as Airflow resumes
        except TaskDeferred as deferred:
            waiting = deferred


def ec2(server: SandboxServer) -> Any:
    return client_factory(server.url)("ec2", region=REGION)


def root_volume(server: SandboxServer, instance_id: str) -> str:
    (reservation,) = ec2(server).describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance = reservation["Instances"][0]
    return next(
        str(device["Ebs"]["VolumeId"])
        for device in instance["BlockDeviceMappings"]
        if device["DeviceName"] == instance["RootDeviceName"]
    )


def patch_operation(server: SandboxServer, instance_id: str) -> str:
    ssm = client_factory(server.url)("ssm", region=REGION)
    (state,) = ssm.describe_instance_patch_states(InstanceIds=[instance_id])["InstancePatchStates"]
    return str(state["Operation"])


def test_a_wave_snapshots_installs_and_validates_its_instances(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__snapshots"
    members = fleet["web"][:2]
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: members})
    resumed: list[str] = []

    summary = drive(server, wave_operator(), run_id, resumed)

    assert resumed == ["snapshot_complete", "execute_complete", "validate_complete"]  # nothing to roll back
    assert summary["succeeded"] == 2 and not summary["halted"]
    results = artifacts.read(WAVE_RESULTS, wave=1).set_index("resource_id")
    assert set(results["snapshot"]) == {"completed"} and set(results["validation"]) == {"passed"}
    assert set(results["rollback"]) == {""} and results["ok"].all()
    # One snapshot per EBS volume, tagged so retention and the restore find them.
    for instance_id in members:
        ids = results.loc[instance_id, "snapshot_ids"].split(";")
        snapshots = ec2(server).describe_snapshots(SnapshotIds=ids)["Snapshots"]
        assert {s["State"] for s in snapshots} == {"completed"}
        for snapshot in snapshots:
            tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
            assert tags["patchcycle:managed"] == "true" and tags["patchcycle:run-id"] == run_id
            assert (tags["patchcycle:wave"], tags["patchcycle:instance-id"]) == ("1", instance_id)
    started = artifacts.read(WAVE_AUTOMATIONS, wave=1, target=TARGET)
    assert [(run.phase, run.runbook) for run in started] == [
        ("snapshot", "PatchCycle-PrePatchSnapshot"),
        ("validate", "PatchCycle-ValidateInstance"),
    ]
    execution = AutomationHook(aws_conn_id="aws_default", region_name=REGION).execution(started[0].execution_id)
    assert execution["Parameters"]["RunId"] == [run_id] and execution["Parameters"]["Wave"] == ["1"]
    assert execution["MaxErrors"] == "100%"  # every instance gets its own answer; the halt threshold judges
    gate = artifacts.read(WAVE_GATE, wave=1)
    assert gate.passed and (gate.calendar, gate.alarms_in_alarm) == ("", [])


def test_failed_installs_and_validations_are_rolled_back_to_their_pre_patch_root_volume(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__rollback"
    failing, fragile, good = fleet["failing"][0], fleet["fragile"][0], fleet["web"][2]
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: [failing, fragile, good]})
    roots = {instance: root_volume(server, instance) for instance in (failing, fragile, good)}
    resumed: list[str] = []

    summary = drive(server, wave_operator(halt_threshold="2"), run_id, resumed)

    assert resumed == ["snapshot_complete", "execute_complete", "validate_complete", "rollback_complete"]
    assert (summary["succeeded"], summary["failed"], summary["rolled_back"], summary["halted"]) == (1, 2, 2, False)
    results = artifacts.read(WAVE_RESULTS, wave=1).set_index("resource_id")
    assert results.loc[failing, "reason_code"] == ReasonCode.INSTALL_FAILED
    assert results.loc[failing, "validation"] == ""  # a failed install is not validated
    assert results.loc[fragile, "reason_code"] == ReasonCode.HEALTH_CHECK_FAILED
    assert results.loc[fragile, "validation_detail"].startswith("Failed at step linuxHealthCheck")
    for instance in (failing, fragile):
        assert results.loc[instance, "rollback"] == "rolled_back" and not results.loc[instance, "ok"]
        root_snapshot = results.loc[instance, "rollback_detail"].removeprefix("root volume restored from ")
        assert root_snapshot in results.loc[instance, "snapshot_ids"].split(";")
        assert root_volume(server, instance) != roots[instance]  # the root volume was replaced
    # The restored instance is as it was before the install: Patch Manager shows its pre-patch scan again.
    assert patch_operation(server, fragile) == "Scan"
    assert (results.loc[good, "rollback"], root_volume(server, good)) == ("", roots[good])
    assert patch_operation(server, good) == "Install"
    record = artifacts.read(WAVE, wave=1)
    assert (record.rolled_back, record.rollback_failed, record.status) == (2, 0, "done")


def test_with_rollback_none_failed_instances_stay_failed_on_their_patched_volume(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__no_rollback"
    failing, fragile = fleet["failing"][1], fleet["fragile"][1]
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: [failing, fragile]})
    roots = {instance: root_volume(server, instance) for instance in (failing, fragile)}
    resumed: list[str] = []

    summary = drive(server, wave_operator(halt_threshold="2", rollback="none"), run_id, resumed)

    assert resumed == ["snapshot_complete", "execute_complete", "validate_complete"]  # no restore phase
    assert (summary["failed"], summary["rolled_back"]) == (2, 0)
    results = artifacts.read(WAVE_RESULTS, wave=1).set_index("resource_id")
    assert results.loc[failing, "reason_code"] == ReasonCode.INSTALL_FAILED
    assert results.loc[fragile, "reason_code"] == ReasonCode.HEALTH_CHECK_FAILED
    assert set(results["rollback"]) == {""} and results["snapshot"].eq("completed").all()  # kept, not used
    assert {instance: root_volume(server, instance) for instance in roots} == roots
    assert patch_operation(server, fragile) == "Install"  # still the patched volume


def test_an_instance_whose_snapshot_failed_is_not_patched(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__no_snapshot"
    (nosnap,), good = fleet["nosnap"], fleet["web"][3]
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: [nosnap, good]})

    summary = drive(server, wave_operator(halt_threshold="1"), run_id, [])

    assert (summary["no_snapshot"], summary["failed"], summary["succeeded"]) == (1, 1, 1)
    results = artifacts.read(WAVE_RESULTS, wave=1).set_index("resource_id")
    assert (results.loc[nosnap, "snapshot"], results.loc[nosnap, "reason_code"]) == ("failed", "SNAPSHOT_FAILED")
    assert "not all among the desired values ['completed']" in results.loc[nosnap, "snapshot_detail"]
    assert results.loc[nosnap, "command_id"] == "" and results.loc[nosnap, "rollback"] == ""
    (sent,) = artifacts.read(WAVE_SENT, wave=1, target=TARGET)
    assert sent.instance_ids == [good]  # no install where there is no way back


def test_a_restore_that_fails_halts_the_rollout_whatever_the_threshold(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__restore_fails"
    (stuck,) = fleet["stuck"]
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: [stuck, fleet["web"][4]], 2: fleet["web"][5:6]})

    with pytest.raises(WaveHalted) as caught:
        drive(server, wave_operator(halt_threshold="100%"), run_id, [])

    assert str(caught.value) == (
        "wave 1 halted the rollout: 1 instance(s) could not be rolled back to their pre-patch snapshot; "
        "later waves will not run"
    )
    row = artifacts.read(WAVE_RESULTS, wave=1).set_index("resource_id").loc[stuck]
    assert (row["rollback"], row["reason_code"]) == ("failed", ReasonCode.INSTALL_FAILED)
    assert row["rollback_detail"].startswith("Failed at step ")
    record = artifacts.read(WAVE, wave=1)
    assert (record.halted, record.halt_code, record.rollback_failed) == (True, "HALTED_BY_ROLLBACK_FAILURE", 1)


@pytest.fixture
def alarm(server: SandboxServer) -> Iterator[Any]:
    """A health alarm, web-5xx, that the test may set to ALARM; it is deleted afterwards."""
    cloudwatch = client_factory(server.url)("cloudwatch", region=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="web-5xx",
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10,
        ComparisonOperator="GreaterThanThreshold",
    )
    yield cloudwatch
    cloudwatch.delete_alarms(AlarmNames=["web-5xx"])


def test_a_health_alarm_in_alarm_halts_the_rollout_before_the_wave_does_anything(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]], alarm: Any
) -> None:
    run_id = "scheduled__alarm"
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: fleet["web"][6:7], 2: fleet["web"][7:8]})
    alarm.set_alarm_state(AlarmName="web-5xx", StateValue="ALARM", StateReason="Threshold Crossed: 42 > 10")
    calls = [sandbox_calls(server.url, api) for api in ("ssm:SendCommand", "ssm:StartAutomationExecution")]
    topic, inbox = subscribed_topic(server.url, "wave-halts")

    with pytest.raises(WaveHalted, match=r"^halted before wave 2: health alarm\(s\) in ALARM: web-5xx \("):
        wave_operator(wave=2, health_alarms=["payments-5xx", "web-*"], notify_topic_arn=topic).execute(context(run_id))

    (told,) = inbox()  # the run's topic learned why, once
    assert told["Subject"] == f"Patch cycle {run_id}: rollout halted at wave 2"
    assert "at wave 2: halted before wave 2: health alarm(s) in ALARM: web-5xx (" in told["Message"]

    assert [sandbox_calls(server.url, api) for api in ("ssm:SendCommand", "ssm:StartAutomationExecution")] == calls
    gate = artifacts.read(WAVE_GATE, wave=2)
    assert gate.alarms_in_alarm == [f"web-5xx ({ACCOUNT}/{REGION}: Threshold Crossed: 42 > 10)"] and not gate.passed
    record = artifacts.read(WAVE, wave=2)
    assert (record.halted, record.halted_before, record.halt_code) == (True, True, "HALTED_BY_ALARM")
    assert record.halt_reason == gate.reason and record.sent == 0
    # An alarm back to OK lets the wave start (a listed name that does not exist is not an alarm in ALARM).
    alarm.set_alarm_state(AlarmName="web-5xx", StateValue="OK", StateReason="recovered")
    later = deferral(wave_operator(wave=1, health_alarms=["payments-5xx", "web-*"]), context(run_id))
    assert later.method_name == "snapshot_complete"


def create_calendar(server: SandboxServer, name: str, closed_for: timedelta) -> None:
    """A DEFAULT_OPEN change calendar with one event (closed) from now on the simulated clock, for `closed_for`."""
    start = server.world.now().strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//AWS//Change Calendar 1.0//EN",
        "VERSION:2.0",
        "X-CALENDAR-TYPE:DEFAULT_OPEN",
        "BEGIN:VEVENT",
        f"UID:{name}",
        "DTSTAMP:20261101T000000Z",
        f"DTSTART:{start}",
        f"DURATION:PT{int(closed_for.total_seconds())}S",
        "SUMMARY:Release freeze",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    ssm = client_factory(server.url)("ssm", region=REGION)
    content = "\r\n".join(lines) + "\r\n"
    ssm.create_document(Name=name, DocumentType="ChangeCalendar", DocumentFormat="TEXT", Content=content)


def test_a_wave_waits_in_the_triggerer_for_a_closed_change_calendar_to_open(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__calendar_opens"
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: fleet["web"][6:7]})
    create_calendar(server, "short-freeze", timedelta(minutes=30))
    operator = wave_operator(change_calendar="short-freeze", change_calendar_wait_minutes=45)

    waiting = deferral(operator, context(run_id))

    assert waiting.method_name == "calendar_complete"
    assert waiting.timeout == timedelta(minutes=45) + timedelta(minutes=10)
    trigger = waiting.trigger
    assert isinstance(trigger, ChangeCalendarTrigger) and trigger.calendar == "short-freeze"
    gate = artifacts.read(WAVE_GATE, wave=1)
    assert (gate.calendar, gate.calendar_state, gate.passed) == ("short-freeze", "CLOSED", False)
    assert gate.waiting_since and not artifacts.exists(WAVE_AUTOMATIONS, wave=1, target=TARGET)
    # Once the freeze is over, the trigger sees the calendar OPEN and the wave goes on to its snapshots.
    advance_clock(server.url, 31 * 60)
    payload = first_trigger_payload(trigger)
    assert (payload["status"], payload["state"]) == ("open", "OPEN")
    with pytest.raises(TaskDeferred) as resumed:
        operator.calendar_complete(context(run_id), payload)
    assert resumed.value.method_name == "snapshot_complete"
    gate = artifacts.read(WAVE_GATE, wave=1)
    assert (gate.calendar_state, gate.passed) == ("OPEN", True)


def test_a_change_calendar_still_closed_at_the_deadline_halts_the_rollout(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__calendar_closed"
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: fleet["web"][7:8]})
    create_calendar(server, "long-freeze", timedelta(days=2))
    operator = wave_operator(change_calendar="long-freeze", change_calendar_wait_minutes=45)
    assert deferral(operator, context(run_id)).method_name == "calendar_complete"

    closed = {"status": "closed", "state": "CLOSED", "checked_at": "", "next_transition": ""}
    with pytest.raises(WaveHalted, match=r"^halted before wave 1: change calendar long-freeze stayed CLOSED for 45"):
        operator.calendar_complete(context(run_id), closed)

    record = artifacts.read(WAVE, wave=1)
    assert (record.halted_before, record.halt_code, record.sent) == (True, "HALTED_BY_CALENDAR", 0)
    assert not artifacts.exists(WAVE_AUTOMATIONS, wave=1, target=TARGET)
    assert artifacts.read(WAVE_GATE, wave=1).calendar_state == "CLOSED"


def test_a_retried_wave_starts_no_second_execution_even_if_its_record_was_lost(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "scheduled__retried"
    members = fleet["web"][7:8]
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: members})
    # The worker dies between StartAutomationExecution and writing what it started.
    write = RunArtifacts.write

    def lost(self: RunArtifacts, artifact: Any, value: Any, **where: Any) -> None:
        if artifact is WAVE_AUTOMATIONS:
            raise RuntimeError("worker lost")
        write(self, artifact, value, **where)

    monkeypatch.setattr(RunArtifacts, "write", lost)
    starts = sandbox_calls(server.url, "ssm:StartAutomationExecution")
    with pytest.raises(RuntimeError, match="worker lost"):
        wave_operator().execute(context(run_id))
    monkeypatch.setattr(RunArtifacts, "write", write)
    assert sandbox_calls(server.url, "ssm:StartAutomationExecution") == starts + 1

    first = deferral(wave_operator(), context(run_id)).trigger  # the retry sends the same client token
    again = deferral(wave_operator(), context(run_id)).trigger  # and a second retry finds the record
    assert isinstance(first, AutomationCompletionTrigger)
    assert first.execution_ids == again.execution_ids and len(first.execution_ids) == 1
    advance_clock(server.url, 10)  # the parent starts its children
    hook = AutomationHook(aws_conn_id="aws_default", region_name=REGION)
    children = hook.children(first.execution_ids[0])
    assert [child["Target"] for child in children] == members  # one execution, not two
    (recorded,) = artifacts.read(WAVE_AUTOMATIONS, wave=1, target=TARGET)
    assert recorded.execution_id == first.execution_ids[0]


def test_executions_still_running_at_the_end_of_the_wait_are_stopped_and_their_instances_fail(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__late"
    members = fleet["web"][:2]  # patched by the first test: this one never gets past the snapshots
    artifacts = wave_run(config(), BASE_RUN, run_id, {1: members})
    trigger = deferral(wave_operator(), context(run_id)).trigger
    (execution_id,) = trigger.execution_ids
    timeout = {"status": "timeout", "executions": {execution_id: "InProgress"}, "pending": [execution_id]}

    summary = wave_operator(halt_threshold="100%").snapshot_complete(context(run_id), timeout)

    assert summary["no_snapshot"] == 2 and summary["succeeded"] == 0  # nothing installed without a snapshot
    assert sandbox_calls(server.url, "ssm:StopAutomationExecution") >= 1
    results = artifacts.read(WAVE_RESULTS, wave=1)
    assert set(results["snapshot_detail"]) == {
        "Cancelled: PatchCycle-PrePatchSnapshot was still running after 2 hours: stopped"
    }
    advance_clock(server.url, 30)
    execution = AutomationHook(aws_conn_id="aws_default", region_name=REGION).execution(execution_id)
    assert execution["AutomationExecutionStatus"] == "Cancelled"

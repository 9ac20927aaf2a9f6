"""PatchWaveOperator against the sandbox, its install and validation: Install pinned to each profile's override list,
sent once however often the task is retried, PatchCycle-ValidateInstance on what it installed, then the halt gate.
The snapshot, rollback and gates are in test_patch_wave_way_back.py; here they are off (snapshot false, rollback
none) so each test looks at the install alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.core.verdicts import ReasonCode
from patchcycle.core.wave_results import WAVE_RESULT_COLUMNS
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.links.ssm import AutomationExecutionLink, RunCommandLink
from patchcycle.operators.patch_wave import PatchWaveOperator
from patchcycle.run_artifacts import (
    OVERRIDES,
    PRODUCTION,
    RUN_ERROR,
    WAVE,
    WAVE_AUTOMATIONS,
    WAVE_RESULTS,
    WAVE_SENT,
    RunArtifacts,
    Step,
)
from patchcycle.triggers.command_completion import CommandCompletionTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls, sandbox_requests
from tests.operators.install_helpers import (
    ACCOUNT,
    FAILING_PATCH,
    REGION,
    TARGET,
    LinkTi,
    context,
    cycle_config,
    deferral,
    linked_context,
    plan_run,
    register_runbooks,
    run_artifacts,
    s3_root,
    scenario,
    wave_run,
)

BASE_RUN = "scheduled__base"
SCENARIO = scenario("waves")
ROOT = s3_root("patch-wave")
# Every test starts from `base`, an inventory, match and install plan (about 4 s), and sends installs: not in test-fast.
pytestmark = pytest.mark.slow


def config(**install: Any) -> dict[str, Any]:
    """The module's runs' config (a five-minute command time limit, no snapshot or rollback), with these install
    settings."""
    return cycle_config(ROOT, command_timeout_minutes=5, snapshot=False, rollback="none", **install)


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> RunArtifacts:
    """BASE_RUN's inventory and install plan (its override lists in the sandbox's S3); its artifacts."""
    plan_run(server, config(), BASE_RUN)
    register_runbooks(config(), BASE_RUN)
    return run_artifacts(config(), BASE_RUN)


@pytest.fixture
def fleet(server: SandboxServer, base: RunArtifacts) -> dict[str, list[str]]:
    """The production instances by what the scenario does to them."""
    production = base.read(PRODUCTION)
    failing = {i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.faults.install_fails}
    web = production[production["patch_group"] == "web"]["resource_id"]
    windows = production[production["patch_group"] == "windows"]["resource_id"]
    return {
        "failing": sorted(set(web) & failing),
        "web": sorted(set(web) - failing),
        "windows": sorted(windows),
    }


def new_run(run_id: str, waves: dict[int, list[str]]) -> RunArtifacts:
    return wave_run(config(), BASE_RUN, run_id, waves)


def wave_operator(wave: int = 1, **install: Any) -> PatchWaveOperator:
    return PatchWaveOperator(task_id=f"wave_{wave}", wave=wave, config=config(**install))


def commands(server: SandboxServer, command_ids: list[str]) -> dict[str, dict[str, Any]]:
    ssm = client_factory(server.url)("ssm", region=REGION)
    return {cid: ssm.list_commands(CommandId=cid)["Commands"][0] for cid in command_ids}


def profile_of(base: RunArtifacts) -> dict[str, str]:
    production = base.read(PRODUCTION)
    return dict(zip(production["resource_id"], production["profile_id"], strict=True))


def test_execute_sends_install_to_exactly_the_wave_with_each_profiles_override_list_and_defers(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__send"
    members = [*fleet["web"][:2], fleet["windows"][0]]
    artifacts = new_run(run_id, {1: members, 2: [*fleet["web"][2:], fleet["windows"][1]]})
    overrides = base.read(OVERRIDES)
    profiles = profile_of(base)
    sent_before = sandbox_calls(server.url, "ssm:SendCommand")

    deferred = deferral(wave_operator(), context(run_id))

    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(minutes=15)  # the trigger's own bound plus a margin
    trigger = deferred.trigger
    assert isinstance(trigger, CommandCompletionTrigger)
    assert (trigger.poll_interval, trigger.timeout) == (0.1, 300.0)
    (target,) = trigger.targets
    assert (target["aws_conn_id"], target["region_name"]) == ("aws_default", REGION)
    assert sandbox_calls(server.url, "ssm:SendCommand") - sent_before == 2  # one per profile
    sent = artifacts.read(WAVE_SENT, wave=1, target=TARGET)
    assert [c.command_id for c in sent] == target["command_ids"]

    by_profile = {}
    for command_id, command in commands(server, target["command_ids"]).items():
        (profile,) = {profiles[i] for i in command["InstanceIds"]}
        by_profile[profile] = sorted(command["InstanceIds"])
        assert command["DocumentName"] == "AWS-RunPatchBaseline"
        assert command["Parameters"]["Operation"] == ["Install"]
        assert command["Parameters"]["RebootOption"] == ["RebootIfNeeded"]
        assert command["Parameters"]["InstallOverrideList"] == [overrides[profile]]
        assert command["Comment"] == f"patchcycle wave 1 {run_id}"
        assert next(c.instance_ids for c in sent if c.command_id == command_id) == command["InstanceIds"]
    assert by_profile == {
        profiles[fleet["web"][0]]: sorted(fleet["web"][:2]),
        profiles[fleet["windows"][0]]: [fleet["windows"][0]],
    }
    record = artifacts.read(WAVE, wave=1)
    assert (record.wave, record.instances) == (1, 3) and record.started_at


def test_a_retried_wave_sends_nothing_twice(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__retry"
    artifacts = new_run(run_id, {1: [*fleet["web"][:2], *fleet["windows"]]})
    first = deferral(wave_operator(), context(run_id)).trigger
    started_at = artifacts.read(WAVE, wave=1).started_at
    sent_before = sandbox_calls(server.url, "ssm:SendCommand")

    again = deferral(wave_operator(), context(run_id)).trigger  # a fresh operator: the task's retry

    assert sandbox_calls(server.url, "ssm:SendCommand") == sent_before
    assert again.command_ids == first.command_ids and len(first.command_ids) == 2
    assert artifacts.read(WAVE, wave=1).started_at == started_at


def test_a_retry_after_a_partial_send_sends_only_to_the_rest(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "scheduled__partial"
    members = [*fleet["web"][:2], *fleet["windows"]]
    artifacts = new_run(run_id, {1: members})
    send = PatchManagerHook.send_patch_baseline
    calls = []

    def throttled_second_send(hook: PatchManagerHook, *args: Any, **kwargs: Any) -> str:
        calls.append(args)
        if len(calls) == 2:
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "SendCommand")
        return send(hook, *args, **kwargs)

    monkeypatch.setattr(PatchManagerHook, "send_patch_baseline", throttled_second_send)
    with pytest.raises(RuntimeError, match=r"ssm:SendCommand failed .*ThrottlingException.*\(retryable\)"):
        wave_operator().execute(context(run_id))
    monkeypatch.setattr(PatchManagerHook, "send_patch_baseline", send)
    (recorded,) = artifacts.read(WAVE_SENT, wave=1, target=TARGET)
    assert artifacts.read(RUN_ERROR, step=Step.wave(1)).stage == "wave_1"
    sent_before = sandbox_calls(server.url, "ssm:SendCommand")

    trigger = deferral(wave_operator(), context(run_id)).trigger

    assert sandbox_calls(server.url, "ssm:SendCommand") - sent_before == 1
    assert trigger.command_ids[0] == recorded.command_id and len(trigger.command_ids) == 2
    rest = commands(server, [trigger.command_ids[1]])[trigger.command_ids[1]]["InstanceIds"]
    assert sorted(rest) == sorted(set(members) - set(recorded.instance_ids))
    sent = artifacts.read(WAVE_SENT, wave=1, target=TARGET)
    assert sorted(i for command in sent for i in command.instance_ids) == sorted(members)


class WorkerKilled(BaseException):
    """The worker dies (kill -9): nothing after this point of the attempt runs, no handler records anything."""


class RetriedTi(LinkTi):
    def __init__(self, try_number: int) -> None:
        super().__init__()
        self.try_number = try_number


def test_a_retry_finds_the_command_its_killed_attempt_sent_but_never_recorded(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "scheduled__killed"
    members = [*fleet["web"][:2], *fleet["windows"]]
    artifacts = new_run(run_id, {1: members})
    send = PatchManagerHook.send_patch_baseline

    def sent_then_killed(hook: PatchManagerHook, *args: Any, **kwargs: Any) -> str:
        send(hook, *args, **kwargs)  # AWS has the command and its instances patch ...
        raise WorkerKilled  # ... but the worker dies before the answer is recorded

    monkeypatch.setattr(PatchManagerHook, "send_patch_baseline", sent_then_killed)
    with pytest.raises(WorkerKilled):
        wave_operator().execute(context(run_id, ti=RetriedTi(1)))
    monkeypatch.setattr(PatchManagerHook, "send_patch_baseline", send)
    assert artifacts.find(WAVE_SENT, wave=1, target=TARGET) is None  # no record of the command
    (orphan,) = [
        c for c in client_factory(server.url)("ssm").list_commands()["Commands"] if c["Comment"].endswith(run_id)
    ]
    listed_before = sandbox_calls(server.url, "ssm:ListCommands")

    trigger = deferral(wave_operator(), context(run_id, ti=RetriedTi(2))).trigger  # Airflow's retry

    mine = [r for r in sandbox_requests(server.url, "ssm:SendCommand") if r["comment"].endswith(run_id)]
    commanded = [i for r in mine if r["status"] == 200 for i in r["instance_ids"]]
    assert sorted(commanded) == sorted(members), "every instance commanded exactly once"
    assert len(mine) == 2  # the orphan, then the other profile's batch, which the killed attempt never sent
    assert trigger.command_ids[0] == orphan["CommandId"] and len(trigger.command_ids) == 2
    sent = artifacts.read(WAVE_SENT, wave=1, target=TARGET)
    assert [c.command_id for c in sent] == trigger.command_ids
    assert sorted(i for c in sent for i in c.instance_ids) == sorted(members)
    # One look-up per profile whose instances were still unrecorded: the orphan's, then the never-sent one's.
    assert sandbox_calls(server.url, "ssm:ListCommands") - listed_before == 2

    listed_before = sandbox_calls(server.url, "ssm:ListCommands")
    deferral(wave_operator(), context(run_id, ti=RetriedTi(3)))  # everything recorded: nothing to look up
    assert sandbox_calls(server.url, "ssm:ListCommands") == listed_before
    assert len([r for r in sandbox_requests(server.url, "ssm:SendCommand") if r["comment"].endswith(run_id)]) == 2


def finish_wave(
    server: SandboxServer, operator: PatchWaveOperator, run_id: str, payload: dict[str, Any], ti: LinkTi | None = None
) -> Any:
    """execute_complete, then PatchCycle-ValidateInstance on the good installs in the triggerer, then
    validate_complete."""
    with pytest.raises(TaskDeferred) as caught:
        operator.execute_complete(linked_context(run_id, ti) if ti else context(run_id), payload)
    assert caught.value.method_name == "validate_complete"
    advance_clock(server.url, 120)
    return operator.validate_complete(context(run_id), first_trigger_payload(caught.value.trigger))


def automation_starts(server: SandboxServer) -> int:
    return sandbox_calls(server.url, "ssm:StartAutomationExecution")


def test_execute_complete_validates_the_good_installs_writes_the_results_and_halts_past_the_threshold(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__halt"
    members = [*fleet["failing"], *fleet["web"][:2]]
    assert len(fleet["failing"]) == 2
    artifacts = new_run(run_id, {1: members, 2: fleet["web"][2:]})
    ti = LinkTi()
    trigger = deferral(wave_operator(halt_threshold="1"), linked_context(run_id, ti)).trigger
    # The wave links to its first install command while it waits.
    first_command = trigger.command_ids[0]
    assert ti.url(RunCommandLink()) == (
        f"https://console.aws.amazon.com/systems-manager/run-command/{first_command}?region={REGION}"
    )
    advance_clock(server.url, 120)  # install, reboot and report: all done in simulated time
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"

    starts = automation_starts(server)
    with pytest.raises(AirflowFailException) as caught:
        finish_wave(server, wave_operator(halt_threshold="1"), run_id, payload, ti)
    # The two good installs are validated, in one execution (one child each); the failed ones are not.
    assert automation_starts(server) == starts + 1
    (validation,) = artifacts.read(WAVE_AUTOMATIONS, wave=1, target=TARGET)
    # The wave links to the validation's execution too, and still to its install command.
    assert ti.url(AutomationExecutionLink()) == (
        f"https://console.aws.amazon.com/systems-manager/automation/execution/{validation.execution_id}?region={REGION}"
    )
    assert ti.xcom[RunCommandLink.key]["command_id"] == first_command
    assert (validation.phase, validation.runbook) == ("validate", "PatchCycle-ValidateInstance")
    assert sorted(validation.instance_ids) == sorted(fleet["web"][:2])

    assert str(caught.value) == (
        "wave 1 halted the rollout: 2 of 4 failed, more than the 1 allowed by halt_threshold 1; "
        "later waves will not run"
    )
    results = artifacts.read(WAVE_RESULTS, wave=1)
    assert list(results.columns) == list(WAVE_RESULT_COLUMNS)
    assert sorted(results["resource_id"]) == sorted(members)
    assert set(results["command_id"]) == set(trigger.command_ids)
    assert set(results["wave"]) == {1} and set(results["account_id"]) == {ACCOUNT}
    failed = results[~results["ok"]]
    assert sorted(failed["resource_id"]) == fleet["failing"]
    assert set(failed["status"]) == {"Failed"} and set(failed["reason_code"]) == {ReasonCode.INSTALL_FAILED}
    assert all(FAILING_PATCH in detail for detail in failed["detail"])
    assert set(failed["validation"]) == {""} and set(failed["rollback"]) == {""}  # rollback none
    good = results[results["ok"]]
    assert set(good["status"]) == {"Success"} and set(good["validation"]) == {"passed"}
    assert set(good["reason_code"]) == {""} and set(results["snapshot"]) == {""}  # snapshot false
    record = artifacts.read(WAVE, wave=1)
    assert (record.instances, record.sent, record.succeeded, record.failed, record.allowed_failures) == (4, 4, 2, 2, 1)
    assert (record.halted, record.threshold, record.status, record.halt_code) == (True, "1", "halted", "HALTED")
    assert record.halt_reason.startswith("halted after wave 1: 2 of 4 failed") and record.finished_at

    # The same outcome under a threshold it does not exceed: the rollout goes on, and a retried wave
    # neither validates again nor sends anything.
    starts, sends = automation_starts(server), sandbox_calls(server.url, "ssm:SendCommand")
    summary = finish_wave(server, wave_operator(halt_threshold="50%"), run_id, payload)
    assert (automation_starts(server), sandbox_calls(server.url, "ssm:SendCommand")) == (starts, sends)
    assert summary == {
        "wave": 1,
        "instances": 4,
        "succeeded": 2,
        "failed": 2,
        "no_snapshot": 0,
        "rolled_back": 0,
        "halted": False,
    }
    record = artifacts.read(WAVE, wave=1)
    assert (record.halted, record.status, record.allowed_failures, record.halt_reason) == (False, "done", 2, "")


def test_an_instance_failing_its_health_check_after_a_good_install_fails_its_validation(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__validation"
    members = fleet["web"][:2]
    artifacts = new_run(run_id, {1: members})
    trigger = deferral(wave_operator(), context(run_id)).trigger
    advance_clock(server.url, 120)
    payload = first_trigger_payload(trigger)
    # The health check of the first instance fails: the sandbox's script_fails is per instance.
    world = server.world
    world.instance(ACCOUNT, REGION, members[0]).faults.script_fails = True
    try:
        with pytest.raises(AirflowFailException, match="wave 1 halted the rollout: 1 of 2 failed"):
            finish_wave(server, wave_operator(halt_threshold="0"), run_id, payload)
    finally:
        world.instance(ACCOUNT, REGION, members[0]).faults.script_fails = False
    results = artifacts.read(WAVE_RESULTS, wave=1).set_index("resource_id")
    broken = results.loc[members[0]]
    assert (broken["status"], broken["validation"], broken["ok"]) == ("Success", "failed", False)
    assert broken["reason_code"] == ReasonCode.HEALTH_CHECK_FAILED
    assert broken["validation_detail"].startswith("Failed at step linuxHealthCheck")
    assert results.loc[members[1], "ok"] and results.loc[members[1], "validation"] == "passed"


def test_an_empty_wave_is_skipped_without_calling_aws(
    server: SandboxServer, base: RunArtifacts, fleet: dict[str, list[str]]
) -> None:
    run_id = "scheduled__empty"
    artifacts = new_run(run_id, {1: fleet["web"][:1], 2: fleet["web"][1:]})
    sent_before = sandbox_calls(server.url, "ssm:SendCommand")
    with pytest.raises(AirflowSkipException, match="wave 3 has no instances"):
        wave_operator(wave=3).execute(context(run_id))
    assert sandbox_calls(server.url, "ssm:SendCommand") == sent_before
    assert not artifacts.exists(WAVE, wave=3)

"""Automation's quotas and how its time passes: each test on a sandbox of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox import automation
from tests.conftest import advance_clock, client_factory, sandbox_calls
from tests.sandbox.automation_support import execution, instances, register, run_to_end, runbook, scenario, steps

NAP = {"name": "nap", "action": "aws:sleep", "inputs": {"Duration": "PT60S"}}


def _start(sandbox_factory: Callable[..., Any]) -> tuple[Any, Any, Any]:
    server = sandbox_factory(scenario())
    aws = client_factory(server.url)
    return server, aws("ssm"), aws("ec2")


def test_running_executions_are_capped_and_the_rest_queue(
    sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(automation, "MAX_RUNNING", 2)
    monkeypatch.setattr(automation, "MAX_QUEUED", 1)
    server, ssm, _ = _start(sandbox_factory)
    name = register(ssm, runbook([NAP]))
    started = [ssm.start_automation_execution(DocumentName=name)["AutomationExecutionId"] for _ in range(3)]
    with pytest.raises(ClientError) as raised:
        ssm.start_automation_execution(DocumentName=name)
    assert raised.value.response["Error"]["Code"] == "AutomationExecutionLimitExceededException"
    advance_clock(server.url, 5)
    assert [execution(ssm, e)["AutomationExecutionStatus"] for e in started] == ["InProgress", "InProgress", "Pending"]
    advance_clock(server.url, 60)  # the first two end at 61 s: the queued one starts then
    assert [execution(ssm, e)["AutomationExecutionStatus"] for e in started] == ["Success", "Success", "InProgress"]
    third = run_to_end(server.url, ssm, started[2])
    assert third["AutomationExecutionStatus"] == "Success"
    freed = steps(execution(ssm, started[0]))["nap"]["ExecutionEndTime"]  # then Pending 1 s, as after a start
    assert (steps(third)["nap"]["ExecutionStartTime"] - freed).total_seconds() == automation.PENDING_SECONDS


def test_steps_run_when_time_passes_whoever_asks(sandbox_factory: Callable[..., Any]) -> None:
    """A step's effect is there for a client that only calls EC2, at the simulated time it happened."""
    server, ssm, ec2 = _start(sandbox_factory)
    target = instances(ec2, "web")[0]
    stop = {
        "name": "stop",
        "action": "aws:executeAwsApi",
        "inputs": {"Service": "ec2", "Api": "StopInstances", "InstanceIds": [target]},
    }
    name = register(ssm, runbook([{**NAP, "inputs": {"Duration": "PT10S"}}, stop]))
    execution_id = ssm.start_automation_execution(DocumentName=name)["AutomationExecutionId"]

    def state() -> str:
        return str(ec2.describe_instances(InstanceIds=[target])["Reservations"][0]["Instances"][0]["State"]["Name"])

    advance_clock(server.url, 11)
    assert state() == "running"  # the call is made 12 s after the start
    advance_clock(server.url, 1)
    assert state() == "stopped"
    assert execution(ssm, execution_id)["AutomationExecutionStatus"] == "Success"
    assert sandbox_calls(server.url, "ec2:StopInstances") == 1


def test_what_the_sandbox_does_not_run_is_refused(sandbox_factory: Callable[..., Any]) -> None:
    _, ssm, _ = _start(sandbox_factory)
    name = register(ssm, runbook([NAP]))
    for kwargs in (
        {"Mode": "Interactive"},
        {"TargetLocations": [{"Accounts": ["123456789012"], "Regions": ["us-east-1"]}]},
        {"AlarmConfiguration": {"Alarms": [{"Name": "cpu"}]}},
    ):
        with pytest.raises(ClientError) as raised:
            ssm.start_automation_execution(DocumentName=name, **kwargs)
        assert raised.value.response["Error"]["Code"] == "InvalidAutomationExecutionParametersException"
        assert "not supported" in raised.value.response["Error"]["Message"]


def test_a_runbook_that_loops_forever_is_stopped(
    sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(automation, "MAX_STEP_EXECUTIONS", 20)
    server, ssm, _ = _start(sandbox_factory)
    name = register(ssm, runbook([{**NAP, "inputs": {"Duration": "PT1S"}, "nextStep": "nap"}]))
    found = run_to_end(server.url, ssm, ssm.start_automation_execution(DocumentName=name)["AutomationExecutionId"])
    assert found["AutomationExecutionStatus"] == "Failed"
    assert "20 steps" in found["FailureMessage"]
    assert len(found["StepExecutions"]) == 20
    assert len({s["StepExecutionId"] for s in found["StepExecutions"]}) == 20


def test_steps_that_take_no_time_can_loop_up_to_the_guard(sandbox_factory: Callable[..., Any]) -> None:
    server, ssm, _ = _start(sandbox_factory)
    spin = {
        "name": "spin",
        "action": "aws:branch",
        "inputs": {"Choices": [{"NextStep": "spin", "Variable": "a", "StringEquals": "a"}]},
    }
    name = register(ssm, runbook([spin]))
    found = run_to_end(server.url, ssm, ssm.start_automation_execution(DocumentName=name)["AutomationExecutionId"])
    assert found["AutomationExecutionStatus"] == "Failed"
    assert len(found["StepExecutions"]) == automation.MAX_STEP_EXECUTIONS
    assert found["ExecutionEndTime"] == found["StepExecutions"][0]["ExecutionStartTime"]  # all at one moment

"""Rate-controlled Automation in the sandbox: a parent per StartAutomationExecution, a child per target."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import advance_clock, client_factory
from tests.sandbox.automation_support import (
    TERMINAL,
    children,
    execution,
    instances,
    register,
    run_to_end,
    runbook,
    scenario,
)

SCENARIO = scenario()

IS_WEB = {
    "name": "isWeb",
    "action": "aws:assertAwsResourceProperty",
    "inputs": {
        "Service": "ec2",
        "Api": "DescribeInstances",
        "InstanceIds": ["{{ InstanceId }}"],
        "PropertySelector": "$.Reservations[0].Instances[0].Tags[?(@.Key == 'Role')].Value",
        "DesiredValues": ["web", "fleet"],
    },
}
PARAMETERS = {
    "InstanceId": {"type": "String", "allowedPattern": "^i-[0-9a-f]{8,17}$"},
    "RunId": {"type": "String", "default": "run-1"},
}


@pytest.fixture(scope="module")
def ssm(server: Any) -> Any:
    return client_factory(server.url)("ssm")


@pytest.fixture(scope="module")
def ec2(server: Any) -> Any:
    return client_factory(server.url)("ec2")


@pytest.fixture(scope="module")
def document(ssm: Any) -> str:
    return register(ssm, runbook([IS_WEB], parameters=PARAMETERS), prefix="Targeted")


def _start(ssm: Any, document: str, targets: list[str], **kwargs: Any) -> str:
    started: str = ssm.start_automation_execution(
        DocumentName=document,
        TargetParameterName="InstanceId",
        Targets=[{"Key": "ParameterValues", "Values": targets}],
        **kwargs,
    )["AutomationExecutionId"]
    return started


def _code(call: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return str(raised.value.response["Error"]["Code"])


def test_targets_are_limited_and_checked(ssm: Any, ec2: Any, document: str) -> None:
    fleet = instances(ec2, "fleet")
    assert len(fleet) == 60
    # The model: one target of at most 50 values per StartAutomationExecution.
    assert _code(lambda: _start(ssm, document, fleet[:51])) == "ValidationException"
    two = [{"Key": "ParameterValues", "Values": fleet[:2]}, {"Key": "InstanceIds", "Values": fleet[2:4]}]
    start = ssm.start_automation_execution
    assert _code(lambda: start(DocumentName=document, TargetParameterName="InstanceId", Targets=two)) == (
        "ValidationException"
    )
    one = [{"Key": "ParameterValues", "Values": fleet[:2]}]
    assert _code(lambda: start(DocumentName=document, Targets=one)) == "InvalidAutomationExecutionParametersException"
    assert _code(lambda: start(DocumentName=document, TargetParameterName="Colour", Targets=one)) == (
        "InvalidAutomationExecutionParametersException"
    )
    groups = [{"Key": "ResourceGroup", "Values": ["patching"]}]
    assert _code(lambda: start(DocumentName=document, TargetParameterName="InstanceId", Targets=groups)) == (
        "InvalidTarget"
    )
    maps = [{"InstanceId": [fleet[0]]}]
    assert _code(
        lambda: start(DocumentName=document, TargetParameterName="InstanceId", Targets=one, TargetMaps=maps)
    ) == ("InvalidAutomationExecutionParametersException")


def test_fifty_targets_one_child_each(server: Any, ssm: Any, ec2: Any, document: str) -> None:
    fleet = instances(ec2, "fleet")[:50]
    parent_id = _start(ssm, document, fleet, MaxConcurrency="10", MaxErrors="0", Parameters={"RunId": ["run-50"]})
    parent = run_to_end(server.url, ssm, parent_id)
    assert parent["AutomationExecutionStatus"] == "Success"
    assert parent["StepExecutions"] == []
    assert parent["TargetParameterName"] == "InstanceId"
    assert parent["Targets"] == [{"Key": "ParameterValues", "Values": fleet}]
    assert parent["ResolvedTargets"] == {"ParameterValues": fleet, "Truncated": False}
    assert (parent["MaxConcurrency"], parent["MaxErrors"]) == ("10", "0")
    listed = children(ssm, parent_id, page_size=20)  # three pages
    assert len(listed) == 50
    assert sorted(child["Target"] for child in listed) == sorted(fleet)
    assert {child["ParentAutomationExecutionId"] for child in listed} == {parent_id}
    assert {child["AutomationExecutionStatus"] for child in listed} == {"Success"}
    one = execution(ssm, listed[0]["AutomationExecutionId"])
    assert one["Parameters"] == {"InstanceId": [one["Target"]], "RunId": ["run-50"]}
    assert one["ParentAutomationExecutionId"] == parent_id


def test_max_concurrency_bounds_the_children_running_at_once(server: Any, ssm: Any, ec2: Any, document: str) -> None:
    targets = instances(ec2, "fleet")[:6]
    parent_id = _start(ssm, document, targets, MaxConcurrency="2", MaxErrors="0")
    most = 0
    for _ in range(40):
        active = [c for c in children(ssm, parent_id) if c["AutomationExecutionStatus"] not in TERMINAL]
        most = max(most, len(active))
        if execution(ssm, parent_id)["AutomationExecutionStatus"] in TERMINAL:
            break
        advance_clock(server.url, 1)
    assert most == 2
    assert execution(ssm, parent_id)["AutomationExecutionStatus"] == "Success"
    assert len(children(ssm, parent_id)) == 6


def test_more_than_max_errors_failures_stop_the_parent(server: Any, ssm: Any, ec2: Any, document: str) -> None:
    flaky, web = instances(ec2, "flaky"), instances(ec2, "web")
    targets = [flaky[0], web[0], flaky[1], web[1], web[2], web[3]]
    parent_id = _start(ssm, document, targets, MaxConcurrency="1", MaxErrors="1")
    parent = run_to_end(server.url, ssm, parent_id)
    assert parent["AutomationExecutionStatus"] == "Failed"
    assert "more than MaxErrors (1)" in parent["FailureMessage"]
    started = {child["Target"]: child["AutomationExecutionStatus"] for child in children(ssm, parent_id)}
    assert started == {flaky[0]: "Failed", web[0]: "Success", flaky[1]: "Failed"}  # the rest never started


def test_within_max_errors_the_parent_succeeds(server: Any, ssm: Any, ec2: Any, document: str) -> None:
    flaky, web = instances(ec2, "flaky"), instances(ec2, "web")
    parent_id = _start(ssm, document, [*web, flaky[0]], MaxConcurrency="50%", MaxErrors="20%")  # tolerates 1
    parent = run_to_end(server.url, ssm, parent_id)
    assert parent["AutomationExecutionStatus"] == "Success"
    statuses = sorted(child["AutomationExecutionStatus"] for child in children(ssm, parent_id))
    assert statuses == ["Failed", "Success", "Success", "Success", "Success"]


def test_tag_targets_resolve_instances(server: Any, ssm: Any, document: str) -> None:
    start = ssm.start_automation_execution
    parent_id = start(
        DocumentName=document,
        TargetParameterName="InstanceId",
        Targets=[{"Key": "tag:Role", "Values": ["fleet"]}],
        MaxConcurrency="100%",
        MaxErrors="0",
    )["AutomationExecutionId"]
    parent = run_to_end(server.url, ssm, parent_id)
    assert parent["AutomationExecutionStatus"] == "Success"
    assert len(parent["ResolvedTargets"]["ParameterValues"]) == 50
    assert parent["ResolvedTargets"]["Truncated"] is True
    assert len(children(ssm, parent_id)) == 60


def test_target_maps_give_each_child_its_parameters(server: Any, ssm: Any, ec2: Any, document: str) -> None:
    web = instances(ec2, "web")
    maps = [{"InstanceId": [web[0]], "RunId": ["a"]}, {"InstanceId": [web[1]], "RunId": ["b"]}]
    parent_id = ssm.start_automation_execution(DocumentName=document, TargetMaps=maps)["AutomationExecutionId"]
    assert run_to_end(server.url, ssm, parent_id)["AutomationExecutionStatus"] == "Success"
    parameters = sorted(
        (execution(ssm, c["AutomationExecutionId"])["Parameters"] for c in children(ssm, parent_id)),
        key=lambda p: p["RunId"],
    )
    assert parameters == [{"InstanceId": [web[0]], "RunId": ["a"]}, {"InstanceId": [web[1]], "RunId": ["b"]}]


def test_a_child_with_a_bad_target_value_fails(server: Any, ssm: Any, ec2: Any, document: str) -> None:
    web = instances(ec2, "web")
    parent_id = _start(ssm, document, ["not-an-instance", web[0]], MaxConcurrency="1", MaxErrors="1")
    assert run_to_end(server.url, ssm, parent_id)["AutomationExecutionStatus"] == "Success"
    failed = next(c for c in children(ssm, parent_id) if c["Target"] == "not-an-instance")
    assert failed["AutomationExecutionStatus"] == "Failed"
    assert "allowed pattern" in failed["FailureMessage"]


def test_stopping_a_parent_cancels_its_children(server: Any, ssm: Any, ec2: Any) -> None:
    slow = register(
        ssm,
        runbook([{"name": "nap", "action": "aws:sleep", "inputs": {"Duration": "PT10M"}}], parameters=PARAMETERS),
        prefix="Slow",
    )
    parent_id = _start(ssm, slow, instances(ec2, "web"), MaxConcurrency="2", MaxErrors="0")
    advance_clock(server.url, 5)
    running = children(ssm, parent_id)
    assert len(running) == 1  # the ramp-up: one child until the first one finishes
    ssm.stop_automation_execution(AutomationExecutionId=parent_id, Type="Cancel")
    assert execution(ssm, parent_id)["AutomationExecutionStatus"] == "Cancelling"
    advance_clock(server.url, 1)
    assert execution(ssm, parent_id)["AutomationExecutionStatus"] == "Cancelled"
    assert [c["AutomationExecutionStatus"] for c in children(ssm, parent_id)] == ["Cancelled"]
    advance_clock(server.url, 900)
    assert len(children(ssm, parent_id)) == 1  # nothing more was started

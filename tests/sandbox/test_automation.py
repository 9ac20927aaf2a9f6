"""SSM Automation executions in the sandbox: steps really run over the simulated clock, as AWS runs them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.sandbox.automation import NO_OUTPUT, ROLE_NOT_ASSUMABLE
from tests.conftest import advance_clock, client_factory
from tests.sandbox.automation_support import (
    OTHER_ACCOUNT,
    REGION,
    execution,
    instances,
    register,
    run_to_end,
    runbook,
    scenario,
    seconds,
    steps,
)

SCENARIO = scenario()
RUNBOOKS = Path(__file__).resolve().parents[2] / "include" / "automation"

DESCRIBE_ROOT = {
    "name": "describe",
    "action": "aws:executeAwsApi",
    "inputs": {"Service": "ec2", "Api": "DescribeInstances", "InstanceIds": ["{{ InstanceId }}"]},
    "outputs": [
        {"Name": "RootDeviceName", "Selector": "$.Reservations[0].Instances[0].RootDeviceName", "Type": "String"},
        {"Name": "Tags", "Selector": "$.Reservations..Tags[?(@.Key == 'Role')].Value", "Type": "StringList"},
        {"Name": "Code", "Selector": "$.Reservations[0].Instances[0].State.Code", "Type": "Integer"},
        {"Name": "Volumes", "Selector": "$..Ebs.VolumeId", "Type": "StringList"},
        {"Name": "State", "Selector": "$.Reservations[0].Instances[0].State", "Type": "StringMap"},
    ],
}
INSTANCE_PARAMETER = {"InstanceId": {"type": "String", "allowedPattern": "^i-[0-9a-f]{8,17}$"}}


@pytest.fixture(scope="module")
def aws(server: Any) -> Any:
    return client_factory(server.url)


@pytest.fixture(scope="module")
def ssm(aws: Any) -> Any:
    return aws("ssm")


@pytest.fixture(scope="module")
def ec2(aws: Any) -> Any:
    return aws("ec2")


@pytest.fixture(scope="module")
def web(ec2: Any) -> list[str]:
    return instances(ec2, "web")


def _start(ssm: Any, name: str, **parameters: list[str]) -> str:
    kwargs: dict[str, Any] = {"Parameters": parameters} if parameters else {}  # the model: 1 to 200 parameters
    started: str = ssm.start_automation_execution(DocumentName=name, **kwargs)["AutomationExecutionId"]
    return started


def _code(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return str(raised.value.response["Error"]["Code"]), str(raised.value.response["Error"]["Message"])


# -- aws:executeAwsApi -----------------------------------------------------------------------------


def test_a_runbook_calls_describe_instances_and_outputs_selected_values(
    server: Any, ssm: Any, ec2: Any, web: list[str]
) -> None:
    name = register(ssm, runbook([DESCRIBE_ROOT], parameters=INSTANCE_PARAMETER, outputs=["describe.RootDeviceName"]))
    execution_id = _start(ssm, name, InstanceId=[web[0]])
    pending = execution(ssm, execution_id)
    assert pending["AutomationExecutionStatus"] == "Pending"
    assert [(s["StepName"], s["StepStatus"]) for s in pending["StepExecutions"]] == [("describe", "Pending")]
    assert pending["Outputs"] == {"describe.RootDeviceName": [NO_OUTPUT]}
    assert pending["Parameters"] == {"InstanceId": [web[0]]}

    advance_clock(server.url, 1)
    running = execution(ssm, execution_id)
    assert running["AutomationExecutionStatus"] == "InProgress"
    assert running["CurrentStepName"] == "describe"
    assert running["CurrentAction"] == "aws:executeAwsApi"

    advance_clock(server.url, 1)
    done = execution(ssm, execution_id)
    assert done["AutomationExecutionStatus"] == "Success"
    assert seconds(done) == 2  # Pending 1 s, one API call 1 s
    expected = ec2.describe_instances(InstanceIds=[web[0]])["Reservations"][0]["Instances"][0]
    step = steps(done)["describe"]
    assert step["StepStatus"] == "Success"
    assert step["Outputs"]["RootDeviceName"] == [expected["RootDeviceName"]]
    assert step["Outputs"]["Tags"] == ["web"]
    assert step["Outputs"]["Code"] == ["16"]
    assert step["Outputs"]["Volumes"] == [m["Ebs"]["VolumeId"] for m in expected["BlockDeviceMappings"]]
    assert step["Outputs"]["State"] == ['{"Code":16,"Name":"running"}']
    assert step["Inputs"]["InstanceIds"] == f'["{web[0]}"]'
    assert done["Outputs"] == {"describe.RootDeviceName": [expected["RootDeviceName"]]}
    assert done["ExecutedBy"].startswith("arn:aws:")


def _calls(url: str, invoked_by: str = "") -> dict[str, int]:
    query = f"?invoked_by={invoked_by}" if invoked_by else ""
    with urllib.request.urlopen(f"{url}/_sandbox/calls{query}", timeout=10) as response:
        return {str(k): int(v) for k, v in json.load(response).items()}


def test_the_call_counts_tell_a_steps_calls_from_the_clients(server: Any, ssm: Any, web: list[str]) -> None:
    name = register(ssm, runbook([DESCRIBE_ROOT], parameters=INSTANCE_PARAMETER))
    before = {who: _calls(server.url, who) for who in ("", "client", "automation")}
    run_to_end(server.url, ssm, _start(ssm, name, InstanceId=[web[0]]))
    after = {who: _calls(server.url, who) for who in ("", "client", "automation")}

    def grew(who: str, api: str) -> int:
        return after[who].get(api, 0) - before[who].get(api, 0)

    assert grew("automation", "ec2:DescribeInstances") == 1  # the step's one call, made on AWS's side
    assert grew("client", "ec2:DescribeInstances") == 0
    assert grew("", "ec2:DescribeInstances") == 1  # no filter: every call served, as before
    assert grew("client", "ssm:StartAutomationExecution") == 1
    assert grew("automation", "ssm:StartAutomationExecution") == 0
    for api, total in after[""].items():  # the two parts add up to the whole
        assert after["client"].get(api, 0) + after["automation"].get(api, 0) == total
    with pytest.raises(urllib.error.HTTPError) as refused:
        _calls(server.url, "nobody")
    assert refused.value.code == 400


def test_api_errors_fail_the_step_with_awss_message(server: Any, ssm: Any) -> None:
    name = register(ssm, runbook([DESCRIBE_ROOT], parameters=INSTANCE_PARAMETER))
    found = run_to_end(server.url, ssm, _start(ssm, name, InstanceId=["i-0000000000000dead"]))
    assert found["AutomationExecutionStatus"] == "Failed"
    step = steps(found)["describe"]
    assert step["StepStatus"] == "Failed"
    assert "InvalidInstanceID.NotFound" in step["FailureMessage"]
    assert step["FailureDetails"]["Details"]["ErrorCode"] == ["InvalidInstanceID.NotFound"]
    assert found["FailureMessage"] == step["FailureMessage"]


def test_outputs_feed_later_steps_whole_lists_and_text(server: Any, ssm: Any, ec2: Any, web: list[str]) -> None:
    name = register(
        ssm,
        runbook(
            [
                {
                    "name": "find",
                    "action": "aws:executeAwsApi",
                    "inputs": {
                        "Service": "ec2",
                        "Api": "DescribeInstances",
                        "Filters": [{"Name": "tag:Role", "Values": ["web"]}],
                    },
                    "outputs": [{"Name": "Ids", "Selector": "$.Reservations..InstanceId", "Type": "StringList"}],
                },
                {
                    "name": "tag",
                    "action": "aws:executeAwsApi",
                    "inputs": {
                        "Service": "ec2",
                        "Api": "CreateTags",
                        "Resources": "{{ find.Ids }}",
                        "Tags": [
                            {"Key": "Checked", "Value": "by {{ automation:EXECUTION_ID }} in {{ global:REGION }}"}
                        ],
                    },
                },
            ]
        ),
    )
    execution_id = _start(ssm, name)
    assert run_to_end(server.url, ssm, execution_id)["AutomationExecutionStatus"] == "Success"
    described = ec2.describe_instances(InstanceIds=web)["Reservations"]
    tags = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]} for r in described for i in r["Instances"]}
    assert {tags[i]["Checked"] for i in web} == {f"by {execution_id} in {REGION}"}


def test_steps_reach_other_services_and_report_sdk_errors(server: Any, aws: Any, ssm: Any) -> None:
    s3 = aws("s3")
    s3.create_bucket(Bucket="automation-steps")
    s3.put_object(Bucket="automation-steps", Key="a.txt", Body=b"a")

    def api(name: str, service: str, operation: str, **inputs: Any) -> dict[str, Any]:
        return {"name": name, "action": "aws:executeAwsApi", "inputs": {"Service": service, "Api": operation, **inputs}}

    content = runbook(
        [
            {
                **api("listed", "s3", "ListObjectsV2", Bucket="automation-steps"),
                "outputs": [{"Name": "Keys", "Selector": "$.Contents..Key", "Type": "StringList"}],
            },
            api("put", "s3", "put_object", Bucket="automation-steps", Key="b.txt", Body="b"),
            {
                **api("whoami", "sts", "GetCallerIdentity"),
                "outputs": [{"Name": "Account", "Selector": "$.Account"}],
            },
            {**api("noService", "nosuch", "Foo"), "onFailure": "Continue"},
            {**api("noApi", "ec2", "DescribeUnicorns"), "onFailure": "Continue"},
            {**api("badParameter", "ec2", "DescribeInstances", Bogus=1), "onFailure": "Continue"},
            {**api("streaming", "s3", "GetObject", Bucket="automation-steps", Key="a.txt"), "onFailure": "Continue"},
        ]
    )
    found = run_to_end(server.url, ssm, _start(ssm, register(ssm, content)))
    assert found["AutomationExecutionStatus"] == "Success"
    ran = steps(found)
    assert ran["listed"]["Outputs"]["Keys"] == ["a.txt"]
    assert ran["whoami"]["Outputs"]["Account"] == ["123456789012"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="automation-steps")["Contents"]] == ["a.txt", "b.txt"]
    assert ran["noService"]["FailureMessage"] == "Service nosuch is not a service namespace of the AWS SDK."
    assert ran["noApi"]["FailureMessage"] == "DescribeUnicorns is not an API operation of ec2."
    assert ran["badParameter"]["FailureMessage"].startswith("Parameter validation failed:")
    assert "Streaming API operations" in ran["streaming"]["FailureMessage"]


# -- aws:waitForAwsResourceProperty, aws:assertAwsResourceProperty ----------------------------------


def _wait_for_state(desired: str, timeout: int) -> dict[str, Any]:
    return {
        "name": "waitForState",
        "action": "aws:waitForAwsResourceProperty",
        "timeoutSeconds": timeout,
        "inputs": {
            "Service": "ec2",
            "Api": "DescribeInstances",
            "InstanceIds": ["{{ InstanceId }}"],
            "PropertySelector": "$.Reservations[0].Instances[0].State.Name",
            "DesiredValues": [desired],
        },
    }


def test_a_wait_succeeds_once_the_instance_is_stopped(server: Any, ssm: Any, ec2: Any, web: list[str]) -> None:
    name = register(ssm, runbook([_wait_for_state("stopped", 600)], parameters=INSTANCE_PARAMETER))
    execution_id = _start(ssm, name, InstanceId=[web[1]])
    advance_clock(server.url, 30)
    waiting = execution(ssm, execution_id)
    assert waiting["AutomationExecutionStatus"] == "InProgress"
    assert steps(waiting)["waitForState"]["StepStatus"] == "InProgress"
    ec2.stop_instances(InstanceIds=[web[1]])  # 30 s after the start
    try:
        advance_clock(server.url, 10)
        found = execution(ssm, execution_id)
        assert found["AutomationExecutionStatus"] == "Success"
        step = steps(found)["waitForState"]
        # The first poll that can see the stop is the one after it: polls at 2, 7, ... 32 s after the start.
        assert seconds(found) == 32
        assert seconds(step) == 31
    finally:
        ec2.start_instances(InstanceIds=[web[1]])


def test_a_wait_times_out(server: Any, ssm: Any, web: list[str]) -> None:
    name = register(ssm, runbook([_wait_for_state("terminated", 30)], parameters=INSTANCE_PARAMETER))
    execution_id = _start(ssm, name, InstanceId=[web[2]])
    advance_clock(server.url, 25)
    assert execution(ssm, execution_id)["AutomationExecutionStatus"] == "InProgress"
    advance_clock(server.url, 10)
    found = execution(ssm, execution_id)
    assert found["AutomationExecutionStatus"] == "TimedOut"
    step = steps(found)["waitForState"]
    assert step["StepStatus"] == "TimedOut"
    assert step["TimeoutSeconds"] == 30
    assert seconds(step) == 30
    assert "['running']" in step["FailureMessage"]
    assert found["FailureMessage"] == step["FailureMessage"]


def test_an_assert_fails_at_once_unless_every_value_is_desired(server: Any, ssm: Any, web: list[str]) -> None:
    def check(desired: list[str]) -> dict[str, Any]:
        return {
            "name": "check",
            "action": "aws:assertAwsResourceProperty",
            "inputs": {
                "Service": "ec2",
                "Api": "DescribeInstances",
                "Filters": [{"Name": "tag:Role", "Values": ["web"]}],
                "PropertySelector": "$.Reservations..State.Code",
                "DesiredValues": desired,
            },
        }

    passing = run_to_end(server.url, ssm, _start(ssm, register(ssm, runbook([check(["16"])]))))
    assert passing["AutomationExecutionStatus"] == "Success"
    failing = run_to_end(server.url, ssm, _start(ssm, register(ssm, runbook([check(["80"])]))))
    assert failing["AutomationExecutionStatus"] == "Failed"
    step = steps(failing)["check"]
    assert step["StepStatus"] == "Failed"
    assert seconds(step) == 1
    assert step["FailureDetails"]["FailureType"] == "Verification"
    assert step["FailureDetails"]["Details"]["ActualValues"] == ["16"] * len(web)


# -- aws:runCommand ----------------------------------------------------------------------------------


def _shell(commands: str = "{{ Commands }}") -> dict[str, Any]:
    return {
        "name": "shell",
        "action": "aws:runCommand",
        "timeoutSeconds": 600,
        "inputs": {
            "DocumentName": "AWS-RunShellScript",
            "InstanceIds": ["{{ InstanceId }}"],
            "Parameters": {"commands": commands},
        },
    }


SHELL_PARAMETERS = {**INSTANCE_PARAMETER, "Commands": {"type": "StringList", "default": ["uptime"]}}


def test_run_command_runs_a_shell_script_on_a_managed_instance(server: Any, ssm: Any, ec2: Any, web: list[str]) -> None:
    name = register(ssm, runbook([_shell()], parameters=SHELL_PARAMETERS, outputs=["shell.Status", "shell.Output"]))
    execution_id = _start(ssm, name, InstanceId=[web[0]], Commands=["df -h", "uptime"])
    found = run_to_end(server.url, ssm, execution_id)
    assert found["AutomationExecutionStatus"] == "Success"
    step = steps(found)["shell"]
    command_id = step["Outputs"]["CommandId"][0]
    assert step["Outputs"]["Status"] == ["Success"]
    assert step["Outputs"]["ResponseCode"] == ["0"]
    assert found["Outputs"]["shell.Status"] == ["Success"]
    # Sent 1 s after the step started, done delivery + script seconds later, seen at the next poll (5 s).
    assert seconds(step) == 6
    command = ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert command["Parameters"]["commands"] == ["df -h", "uptime"]
    assert command["InstanceIds"] == [web[0]]


def test_run_command_fails_when_the_script_fails(server: Any, ssm: Any, ec2: Any) -> None:
    flaky = instances(ec2, "flaky")[0]
    name = register(ssm, runbook([_shell()], parameters=SHELL_PARAMETERS))
    found = run_to_end(server.url, ssm, _start(ssm, name, InstanceId=[flaky]))
    assert found["AutomationExecutionStatus"] == "Failed"
    step = steps(found)["shell"]
    assert "Outputs" not in step
    assert step["ResponseCode"] == "1"
    assert "returns unexpected invocation result" in step["FailureMessage"]
    assert "Status=[Failed]" in step["FailureMessage"]
    assert step["FailureDetails"]["Details"]["CommandStatus"] == ["Failed"]


# -- flow: aws:branch, aws:sleep, onFailure, maxAttempts ----------------------------------------------


def _sleep(name: str, duration: str = "PT1S", **props: Any) -> dict[str, Any]:
    return {"name": name, "action": "aws:sleep", "inputs": {"Duration": duration}, **props}


def test_sleep_takes_its_duration(server: Any, ssm: Any) -> None:
    name = register(ssm, runbook([_sleep("nap", "PT30S")]))
    execution_id = _start(ssm, name)
    advance_clock(server.url, 20)
    assert steps(execution(ssm, execution_id))["nap"]["StepStatus"] == "InProgress"
    advance_clock(server.url, 15)
    found = execution(ssm, execution_id)
    assert found["AutomationExecutionStatus"] == "Success"
    assert seconds(steps(found)["nap"]) == 30


def test_branch_chooses_by_parameter_and_default(server: Any, ssm: Any) -> None:
    content = runbook(
        [
            {
                "name": "choose",
                "action": "aws:branch",
                "inputs": {
                    "Choices": [
                        {"NextStep": "production", "Variable": "{{ Env }}", "StringEquals": "prod"},
                        {
                            "NextStep": "big",
                            "And": [
                                {"Variable": "{{ Count }}", "NumericGreater": 3},
                                {"Not": {"Variable": "{{ Env }}", "EqualsIgnoreCase": "DEV"}},
                            ],
                        },
                    ],
                    "Default": "other",
                },
            },
            _sleep("production", isEnd=True),
            _sleep("big", isEnd=True),
            _sleep("other"),
        ],
        parameters={
            "Env": {"type": "String", "allowedValues": ["prod", "staging", "dev"]},
            "Count": {"type": "Integer"},
        },
    )
    name = register(ssm, content)

    def ran(env: str, count: str) -> list[str]:
        found = run_to_end(server.url, ssm, _start(ssm, name, Env=[env], Count=[count]))
        assert found["AutomationExecutionStatus"] == "Success"
        assert steps(found)["choose"]["ValidNextSteps"] == ["production", "big", "other"]
        return [s["StepName"] for s in found["StepExecutions"] if s["StepStatus"] == "Success"]

    assert ran("prod", "1") == ["choose", "production"]
    assert ran("staging", "5") == ["choose", "big"]
    assert ran("dev", "5") == ["choose", "other"]
    assert ran("staging", "2") == ["choose", "other"]


def _failing(name: str, **props: Any) -> dict[str, Any]:
    return {
        "name": name,
        "action": "aws:assertAwsResourceProperty",
        "inputs": {
            "Service": "ec2",
            "Api": "DescribeVpcs",
            "PropertySelector": "$.Vpcs[0].State",
            "DesiredValues": ["melting"],
        },
        **props,
    }


def test_on_failure_continue_and_step(server: Any, ssm: Any) -> None:
    go_on = register(ssm, runbook([_failing("check", onFailure="Continue"), _sleep("after")]))
    found = run_to_end(server.url, ssm, _start(ssm, go_on))
    assert found["AutomationExecutionStatus"] == "Success"  # isCritical defaults to false with Continue
    assert [(s["StepName"], s["StepStatus"]) for s in found["StepExecutions"]] == [
        ("check", "Failed"),
        ("after", "Success"),
    ]

    jump = register(
        ssm,
        runbook([_failing("check", onFailure="step:cleanup"), _sleep("skipped", isEnd=True), _sleep("cleanup")]),
    )
    found = run_to_end(server.url, ssm, _start(ssm, jump))
    assert found["AutomationExecutionStatus"] == "Failed"  # a critical step failed, though cleanup ran
    assert [(s["StepName"], s["StepStatus"]) for s in found["StepExecutions"]] == [
        ("check", "Failed"),
        ("skipped", "Pending"),
        ("cleanup", "Success"),
    ]

    abort = register(ssm, runbook([_failing("check"), _sleep("never")]))
    found = run_to_end(server.url, ssm, _start(ssm, abort))
    assert found["AutomationExecutionStatus"] == "Failed"
    assert steps(found)["never"]["StepStatus"] == "Pending"
    assert "ExecutionStartTime" not in steps(found)["never"]


def test_max_attempts_retries_a_failing_step(server: Any, ssm: Any) -> None:
    name = register(ssm, runbook([_failing("check", maxAttempts=3)]))
    found = run_to_end(server.url, ssm, _start(ssm, name))
    step = steps(found)["check"]
    assert step["StepStatus"] == "Failed"
    assert step["MaxAttempts"] == 3
    assert seconds(step) == 3  # three calls of 1 s each


def test_an_unsupported_action_fails_the_execution_clearly(server: Any, ssm: Any) -> None:
    script = {
        "name": "script",
        "action": "aws:executeScript",
        "onFailure": "Continue",
        "inputs": {"Runtime": "python3.11", "Handler": "handler", "Script": "def handler(e, c): return {}"},
    }
    name = register(ssm, runbook([_sleep("first"), script, _sleep("after")]))
    found = run_to_end(server.url, ssm, _start(ssm, name))
    assert found["AutomationExecutionStatus"] == "Failed"
    assert found["FailureMessage"] == "aws:executeScript is not supported by the sandbox (step script)."
    assert steps(found)["after"]["StepStatus"] == "Pending"


# -- parameters, versions, idempotence -----------------------------------------------------------------


def test_parameters_are_checked_against_the_document(ssm: Any) -> None:
    name = register(
        ssm,
        runbook(
            [_sleep("nap")],
            parameters={
                **INSTANCE_PARAMETER,
                "Env": {"type": "String", "allowedValues": ["prod", "staging"], "default": "staging"},
                "Count": {"type": "Integer", "default": 1},
                "Flag": {"type": "Boolean", "default": False},
                "Names": {"type": "StringList", "maxItems": 2, "default": []},
                "Maps": {"type": "MapList", "default": []},
                "Settings": {"type": "StringMap", "default": {}},
            },
        ),
    )

    def refused(**parameters: list[str]) -> str:
        code, message = _code(lambda: ssm.start_automation_execution(DocumentName=name, Parameters=parameters))
        assert code == "InvalidAutomationExecutionParametersException"
        return message

    assert "InstanceId is required" in refused(Env=["prod"])
    assert "allowed pattern" in refused(InstanceId=["web-1"])
    assert "allowed values" in refused(InstanceId=["i-0123456789abcdef0"], Env=["qa"])
    assert "exactly one value" in refused(InstanceId=["i-0123456789abcdef0", "i-0123456789abcdef1"])
    assert "not one" in refused(InstanceId=["i-0123456789abcdef0"], Count=["three"])
    assert "Boolean" in refused(InstanceId=["i-0123456789abcdef0"], Flag=["yes"])
    assert "at most 2" in refused(InstanceId=["i-0123456789abcdef0"], Names=["a", "b", "c"])
    assert "JSON object" in refused(InstanceId=["i-0123456789abcdef0"], Maps=["[1]"])
    assert "[Colour]" in refused(InstanceId=["i-0123456789abcdef0"], Colour=["red"])
    started = _start(ssm, name, InstanceId=["i-0123456789abcdef0"], Maps=['{"a": 1}'], Settings=['{"k": "v"}'])
    assert execution(ssm, started)["Parameters"] == {
        "InstanceId": ["i-0123456789abcdef0"],
        "Env": ["staging"],
        "Count": ["1"],
        "Flag": ["false"],
        "Names": [],
        "Maps": ['{"a": 1}'],
        "Settings": ['{"k": "v"}'],
    }


def test_document_versions_and_unknown_documents(server: Any, ssm: Any) -> None:
    name = register(ssm, runbook([_sleep("one")]))
    ssm.update_document(Name=name, Content=runbook([_sleep("two")]), DocumentFormat="YAML", DocumentVersion="$LATEST")

    def first_step(version: str | None = None) -> tuple[str, str]:
        kwargs = {"DocumentVersion": version} if version else {}
        execution_id = ssm.start_automation_execution(DocumentName=name, **kwargs)["AutomationExecutionId"]
        found = execution(ssm, execution_id)
        return found["DocumentVersion"], found["StepExecutions"][0]["StepName"]

    assert first_step() == ("1", "one")
    assert first_step("$DEFAULT") == ("1", "one")
    assert first_step("$LATEST") == ("2", "two")
    assert first_step("2") == ("2", "two")
    assert _code(lambda: ssm.start_automation_execution(DocumentName=name, DocumentVersion="7"))[0] == (
        "AutomationDefinitionVersionNotFoundException"
    )
    assert _code(lambda: ssm.start_automation_execution(DocumentName="No-Such-Runbook"))[0] == (
        "AutomationDefinitionNotFoundException"
    )
    command = '{"schemaVersion": "2.2", "mainSteps": [{"name": "s", "action": "aws:runShellScript", "inputs": {}}]}'
    ssm.create_document(Name="A-Command-Document", Content=command, DocumentType="Command")
    assert _code(lambda: ssm.start_automation_execution(DocumentName="A-Command-Document"))[0] == (
        "AutomationDefinitionNotFoundException"
    )
    assert _code(lambda: execution(ssm, str(uuid.uuid4())))[0] == "AutomationExecutionNotFoundException"


def test_client_token_makes_a_start_idempotent(ssm: Any) -> None:
    name = register(ssm, runbook([_sleep("nap")], parameters={"Env": {"type": "String", "default": "a"}}))
    token = str(uuid.uuid4())
    first = ssm.start_automation_execution(DocumentName=name, ClientToken=token)["AutomationExecutionId"]
    again = ssm.start_automation_execution(DocumentName=name, ClientToken=token.upper())["AutomationExecutionId"]
    assert again == first
    other = ssm.start_automation_execution(DocumentName=name, ClientToken=str(uuid.uuid4()))["AutomationExecutionId"]
    assert other != first
    code, _ = _code(
        lambda: ssm.start_automation_execution(DocumentName=name, ClientToken=token, Parameters={"Env": ["b"]})
    )
    assert code == "IdempotentParameterMismatch"


# -- stopping, listing ---------------------------------------------------------------------------------


def test_stop_cancels_an_execution(server: Any, ssm: Any) -> None:
    name = register(ssm, runbook([_sleep("nap", "PT1H"), _sleep("after")]))
    execution_id = _start(ssm, name)
    advance_clock(server.url, 10)
    ssm.stop_automation_execution(AutomationExecutionId=execution_id)
    cancelling = execution(ssm, execution_id)
    assert cancelling["AutomationExecutionStatus"] == "Cancelling"
    assert steps(cancelling)["nap"]["StepStatus"] == "Cancelled"
    advance_clock(server.url, 1)
    cancelled = execution(ssm, execution_id)
    assert cancelled["AutomationExecutionStatus"] == "Cancelled"
    assert steps(cancelled)["after"]["StepStatus"] == "Pending"
    code, _ = _code(lambda: ssm.stop_automation_execution(AutomationExecutionId=execution_id))
    assert code == "InvalidAutomationStatusUpdateException"


def test_describe_filters_and_step_executions(server: Any, ssm: Any) -> None:
    name = register(ssm, runbook([_sleep("a"), _sleep("b"), _sleep("c")]), prefix="Listed-Runbook")
    tagged = ssm.start_automation_execution(DocumentName=name, Tags=[{"Key": "Wave", "Value": "1"}])[
        "AutomationExecutionId"
    ]
    untagged = _start(ssm, name)
    run_to_end(server.url, ssm, tagged)

    def ids(*filters: dict[str, Any]) -> list[str]:
        listed = ssm.describe_automation_executions(Filters=list(filters))["AutomationExecutionMetadataList"]
        return [e["AutomationExecutionId"] for e in listed]

    assert ids({"Key": "DocumentNamePrefix", "Values": ["Listed-Runbook"]}) == [untagged, tagged]  # newest first
    assert ids({"Key": "TagKey", "Values": ["Wave"]}) == [tagged]
    assert ids({"Key": "ExecutionId", "Values": [tagged]}, {"Key": "ExecutionStatus", "Values": ["Success"]}) == [
        tagged
    ]
    started = execution(ssm, tagged)["ExecutionStartTime"]
    later = (started + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert tagged not in ids({"Key": "StartTimeAfter", "Values": [later]})
    assert _code(lambda: ids({"Key": "StartTimeAfter", "Values": ["yesterday"]}))[0] == "InvalidFilterValue"
    metadata = ssm.describe_automation_executions(Filters=[{"Key": "ExecutionId", "Values": [tagged]}])[
        "AutomationExecutionMetadataList"
    ][0]
    assert metadata["AutomationType"] == "Local"
    assert metadata["Mode"] == "Auto"

    pages = ssm.get_paginator("describe_automation_step_executions").paginate(
        AutomationExecutionId=tagged, PaginationConfig={"PageSize": 1}
    )
    assert [s["StepName"] for page in pages for s in page["StepExecutions"]] == ["a", "b", "c"]
    reverse = ssm.describe_automation_step_executions(AutomationExecutionId=tagged, ReverseOrder=True)
    assert [s["StepName"] for s in reverse["StepExecutions"]] == ["c", "b", "a"]
    only_b = ssm.describe_automation_step_executions(
        AutomationExecutionId=tagged,
        Filters=[{"Key": "StepName", "Values": ["b"]}, {"Key": "StepExecutionStatus", "Values": ["SUCCESS"]}],
    )
    assert [s["StepName"] for s in only_b["StepExecutions"]] == ["b"]


# -- roles and accounts --------------------------------------------------------------------------------


def test_assume_role_must_name_an_existing_role(server: Any, aws: Any) -> None:
    ssm, iam = aws("ssm"), aws("iam")
    name = register(
        ssm,
        runbook(
            [_sleep("nap")],
            assumeRole="{{ AutomationAssumeRole }}",
            parameters={"AutomationAssumeRole": {"type": "String", "default": ""}},
        ),
    )
    assert run_to_end(server.url, ssm, _start(ssm, name))["AutomationExecutionStatus"] == "Success"
    missing = "arn:aws:iam::123456789012:role/NoSuchRole"
    found = run_to_end(server.url, ssm, _start(ssm, name, AutomationAssumeRole=[missing]))
    assert found["AutomationExecutionStatus"] == "Failed"
    assert found["FailureMessage"].startswith(ROLE_NOT_ASSUMABLE)
    assert steps(found)["nap"]["StepStatus"] == "Pending"
    role = iam.create_role(RoleName="AutomationRole", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    assert run_to_end(server.url, ssm, _start(ssm, name, AutomationAssumeRole=[role]))["AutomationExecutionStatus"] == (
        "Success"
    )


def test_another_account_through_an_assumed_role(server: Any, ssm: Any) -> None:
    sts = boto3.client("sts", region_name=REGION, endpoint_url=server.url)
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/PatchCycle", RoleSessionName="cycle")[
        "Credentials"
    ]

    def other(service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=server.url,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )

    other_ssm = other("ssm")
    list_all = {
        "name": "list",
        "action": "aws:executeAwsApi",
        "inputs": {"Service": "ec2", "Api": "DescribeInstances"},
        "outputs": [{"Name": "Ids", "Selector": "$.Reservations..InstanceId", "Type": "StringList"}],
    }
    name = register(other_ssm, runbook([list_all], outputs=["list.Ids"]))
    assert _code(lambda: ssm.start_automation_execution(DocumentName=name))[0] == (
        "AutomationDefinitionNotFoundException"
    )
    execution_id = other_ssm.start_automation_execution(DocumentName=name)["AutomationExecutionId"]
    found = run_to_end(server.url, other_ssm, execution_id)
    assert found["AutomationExecutionStatus"] == "Success"
    theirs = sorted(i["InstanceId"] for r in other("ec2").describe_instances()["Reservations"] for i in r["Instances"])
    assert sorted(found["Outputs"]["list.Ids"]) == theirs
    assert len(theirs) == 2
    assert found["ExecutedBy"] == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/PatchCycle/cycle"
    assert _code(lambda: execution(ssm, execution_id))[0] == "AutomationExecutionNotFoundException"


# -- the project's own runbook --------------------------------------------------------------------------


def test_the_project_validate_runbook_passes_on_a_patched_instance(server: Any, ssm: Any, web: list[str]) -> None:
    content = (RUNBOOKS / "PatchCycle-ValidateInstance.yaml").read_text()
    name = "PatchCycle-ValidateInstance"
    ssm.create_document(Name=name, Content=content, DocumentType="Automation", DocumentFormat="YAML")
    target = web[3]
    command_id = ssm.send_command(
        DocumentName="AWS-RunPatchBaseline", InstanceIds=[target], Parameters={"Operation": ["Install"]}
    )["Command"]["CommandId"]
    for _ in range(120):
        if ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] not in ("Pending", "InProgress"):
            break
        advance_clock(server.url, 5)
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Success"
    execution_id = _start(ssm, name, InstanceId=[target], LinuxHealthCheck=["true"], WindowsHealthCheck=["$true"])
    found = run_to_end(server.url, ssm, execution_id)
    assert found["AutomationExecutionStatus"] == "Success", found.get("FailureMessage")
    ran = {s["StepName"]: s["StepStatus"] for s in found["StepExecutions"]}
    assert ran["linuxHealthCheck"] == "Success"
    assert ran["windowsHealthCheck"] == "Pending"  # the branch chose Linux


def test_the_project_snapshot_and_restore_runbooks_run_end_to_end(server: Any, ssm: Any, web: list[str]) -> None:
    for runbook_name in ("PatchCycle-PrePatchSnapshot", "PatchCycle-RestoreRootVolume"):
        content = (RUNBOOKS / f"{runbook_name}.yaml").read_text()
        ssm.create_document(Name=runbook_name, Content=content, DocumentType="Automation", DocumentFormat="YAML")
    target = web[2]
    snapshot = _start(ssm, "PatchCycle-PrePatchSnapshot", InstanceId=[target], RunId=["run-9"], Wave=["1"])
    found = run_to_end(server.url, ssm, snapshot, step=5)
    assert found["AutomationExecutionStatus"] == "Success", found.get("FailureMessage")
    snapshot_ids = found["Outputs"]["createSnapshots.SnapshotIds"]
    assert snapshot_ids and all(s.startswith("snap-") for s in snapshot_ids)
    restore = _start(
        ssm,
        "PatchCycle-RestoreRootVolume",
        InstanceId=[target],
        RunId=["run-9"],
        LinuxHealthCheck=["true"],
        WindowsHealthCheck=["$true"],
    )
    found = run_to_end(server.url, ssm, restore, step=5)
    assert found["AutomationExecutionStatus"] == "Success", found.get("FailureMessage")
    assert found["Outputs"]["findSnapshot.SnapshotId"][0] in snapshot_ids
    assert found["Outputs"]["replaceRootVolume.TaskId"][0].startswith("replacevol-")

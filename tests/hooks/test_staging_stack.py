"""StagingStackHook against the sandbox (CloudFormation is moto's, failures injected by the scenario's
cloudformation.fail_stacks): create, status, instances, failure reasons, delete. Paging and errors the sandbox
does not give are stubbed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from include.sandbox.server import SandboxServer
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.hooks.staging_stack import StagingStackHook
from tests.conftest import client_factory, default_scenario, sandbox_calls

REGION = "eu-west-1"
AL2023 = "ami-0a1b2c3d4e5f60001"  # an AMI of the default scenario: its instances register with SSM
BROKEN = "staging-broken"  # stacks named so fail on their first instance
CAPACITY = "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested."
TEMPLATE = json.dumps(
    {
        "Parameters": {"Ami": {"Type": "String"}, "InstanceType": {"Type": "String", "Default": "t3.micro"}},
        "Resources": {
            "Web": {
                "Type": "AWS::EC2::Instance",
                "Properties": {"ImageId": {"Ref": "Ami"}, "InstanceType": "t3.micro"},
            },
            "App": {
                "Type": "AWS::EC2::Instance",
                "Properties": {"ImageId": {"Ref": "Ami"}, "InstanceType": {"Ref": "InstanceType"}},
            },
            "Alerts": {"Type": "AWS::SNS::Topic"},
        },
    }
)


SCENARIO = default_scenario(
    cloudformation={"fail_stacks": [{"name_prefix": BROKEN, "reason": CAPACITY, "resource": "Web"}]}
)
SANDBOX_DROP_FAULTS = True
pytestmark = pytest.mark.usefixtures("server")


def hook() -> StagingStackHook:
    return StagingStackHook(aws_conn_id="aws_default", region_name=REGION)


def create(name: str, **kwargs: Any) -> str:
    return hook().create(name, TEMPLATE, {"Ami": AL2023}, {"Purpose": "patchcycle-staging", "Run": name}, **kwargs)


def test_create_passes_template_parameters_and_tags_and_returns_the_stack_id(server: SandboxServer) -> None:
    stack_id = create("staging-create", timeout_minutes=30)
    assert stack_id.startswith(f"arn:aws:cloudformation:{REGION}:123456789012:stack/staging-create/")
    cloudformation = client_factory(server.url)("cloudformation", region=REGION)
    (stack,) = cloudformation.describe_stacks(StackName="staging-create")["Stacks"]
    assert stack["StackId"] == stack_id
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters == {"Ami": AL2023, "InstanceType": "t3.micro"}  # the template's default filled in
    assert {t["Key"]: t["Value"] for t in stack["Tags"]} == {"Purpose": "patchcycle-staging", "Run": "staging-create"}
    assert stack["DisableRollback"] is False  # CloudFormation's default: a failed creation rolls back


def test_status_reads_the_stack_and_none_when_it_does_not_exist(server: SandboxServer) -> None:
    stack_id = create("staging-status")
    assert hook().status("staging-status") == {"status": "CREATE_COMPLETE", "reason": "", "stack_id": stack_id}
    assert hook().status("no-such-stack") is None


def test_instances_maps_logical_ids_to_ec2_instance_ids_only(server: SandboxServer) -> None:
    create("staging-instances")
    instances = hook().instances("staging-instances")
    assert sorted(instances) == ["App", "Web"]  # the SNS topic is not an instance
    ec2 = client_factory(server.url)("ec2", region=REGION)
    reservations = ec2.describe_instances(InstanceIds=list(instances.values()))["Reservations"]
    launched = {i["InstanceId"]: i["ImageId"] for r in reservations for i in r["Instances"]}
    assert launched == dict.fromkeys(instances.values(), AL2023)


def test_the_stacks_instances_come_online_in_systems_manager(server: SandboxServer) -> None:
    create("staging-ssm")
    ids = sorted(hook().instances("staging-ssm").values())
    infos = PatchManagerHook(aws_conn_id="aws_default", region_name=REGION).instance_information(ids)
    assert {info["InstanceId"]: info["PingStatus"] for info in infos} == dict.fromkeys(ids, "Online")


def test_a_healthy_stack_has_no_failure_reasons(server: SandboxServer) -> None:
    create("staging-healthy")
    assert hook().failure_reasons("staging-healthy") == []


def test_a_rolled_back_stack_gives_its_status_reason_and_the_failed_resources(server: SandboxServer) -> None:
    stack_id = create(BROKEN)
    status = hook().status(BROKEN)
    assert status == {
        "status": "ROLLBACK_COMPLETE",
        "reason": "The following resource(s) failed to create: [Web]. Rollback requested by user.",
        "stack_id": stack_id,
    }
    # Web failed; the resources after it in the template were cancelled (the sandbox's order: the template's).
    assert hook().failure_reasons(BROKEN) == [
        f"Web: {CAPACITY}",
        "App: Resource creation cancelled",
        "Alerts: Resource creation cancelled",
    ]
    assert hook().instances(BROKEN) == {}  # rolled back: nothing left
    hook().delete(BROKEN)
    assert hook().status(BROKEN) is None


def test_delete_removes_the_stack_and_is_idempotent(server: SandboxServer) -> None:
    stack_id = create("staging-delete")
    before = sandbox_calls(server.url, "cloudformation:DeleteStack")
    hook().delete("staging-delete")
    assert hook().status("staging-delete") is None  # by name, a deleted stack does not exist
    status = hook().status(stack_id)
    assert status is not None and status["status"] == "DELETE_COMPLETE"  # by id it is still readable
    hook().delete("staging-delete")  # already gone: fine
    hook().delete("never-created")
    assert sandbox_calls(server.url, "cloudformation:DeleteStack") - before == 3


# -- answers moto never gives: stubbed ------------------------------------------------------------


def event(n: int, logical_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
    at = datetime(2026, 11, 20, 3, 0, tzinfo=UTC) + timedelta(seconds=n)
    out: dict[str, Any] = {
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/staging-failed/1",
        "EventId": f"event-{n}",
        "StackName": "staging-failed",
        "LogicalResourceId": logical_id,
        "ResourceStatus": status,
        "Timestamp": at,
    }
    if reason is not None:
        out["ResourceStatusReason"] = reason
    return out


def stubbed() -> tuple[StagingStackHook, Stubber]:
    staging = hook()
    stubber = Stubber(staging.conn)
    stubber.activate()
    return staging, stubber


def test_failure_reasons_reads_every_page_and_lists_failed_events_oldest_first() -> None:
    staging, stubber = stubbed()
    # DescribeStackEvents answers newest first.
    newest = [
        event(6, "staging-failed", "ROLLBACK_COMPLETE"),
        event(5, "Web", "DELETE_COMPLETE"),
        event(4, "staging-failed", "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [Web]."),
    ]
    oldest = [
        event(3, "Web", "CREATE_FAILED", "The image id '[ami-0bad]' does not exist"),
        event(2, "Volume", "CREATE_FAILED", "Resource creation cancelled"),
        event(1, "Web", "CREATE_IN_PROGRESS"),
        event(0, "staging-failed", "CREATE_IN_PROGRESS", "User Initiated"),
    ]
    stubber.add_response(
        "describe_stack_events", {"StackEvents": newest, "NextToken": "page-2"}, {"StackName": "staging-failed"}
    )
    stubber.add_response(
        "describe_stack_events", {"StackEvents": oldest}, {"StackName": "staging-failed", "NextToken": "page-2"}
    )
    assert staging.failure_reasons("staging-failed") == [
        "Volume: Resource creation cancelled",
        "Web: The image id '[ami-0bad]' does not exist",
    ]
    stubber.assert_no_pending_responses()


def test_status_carries_the_reason_of_a_rolled_back_stack() -> None:
    staging, stubber = stubbed()
    stack = {
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/staging-failed/1",
        "StackName": "staging-failed",
        "CreationTime": datetime(2026, 11, 20, 3, 0, tzinfo=UTC),
        "StackStatus": "ROLLBACK_COMPLETE",
        "StackStatusReason": "The following resource(s) failed to create: [Web].",
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "staging-failed"})
    assert staging.status("staging-failed") == {
        "status": "ROLLBACK_COMPLETE",
        "reason": "The following resource(s) failed to create: [Web].",
        "stack_id": stack["StackId"],
    }


@pytest.mark.parametrize("method", ["status", "delete"])
def test_other_errors_are_not_taken_for_a_missing_stack(method: str) -> None:
    staging, stubber = stubbed()
    operation = "describe_stacks" if method == "status" else "delete_stack"
    stubber.add_client_error(operation, "AccessDenied", "User is not authorized", http_status_code=403)
    with pytest.raises(ClientError, match="AccessDenied"):
        getattr(staging, method)("staging-any")


def test_create_sends_timeout_and_capabilities_only_when_given() -> None:
    staging, stubber = stubbed()
    base = {
        "StackName": "staging-iam",
        "TemplateBody": TEMPLATE,
        "Parameters": [{"ParameterKey": "Ami", "ParameterValue": AL2023}],
        "Tags": [{"Key": "Purpose", "Value": "patchcycle-staging"}],
    }
    stubber.add_response("create_stack", {"StackId": "stack-1"}, base)
    stubber.add_response(
        "create_stack", {"StackId": "stack-2"}, {**base, "TimeoutInMinutes": 20, "Capabilities": ["CAPABILITY_IAM"]}
    )
    args = ("staging-iam", TEMPLATE, {"Ami": AL2023}, {"Purpose": "patchcycle-staging"})
    assert staging.create(*args) == "stack-1"
    assert staging.create(*args, timeout_minutes=20, capabilities=["CAPABILITY_IAM"]) == "stack-2"
    stubber.assert_no_pending_responses()

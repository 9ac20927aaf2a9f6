"""CloudFormation in the sandbox: staging stacks' instances become managed, and injected stack failures.

A scenario's ``cloudformation.fail_stacks`` makes a stack's creation fail the way AWS fails it
(a CREATE_FAILED resource, rollback to ROLLBACK_COMPLETE, instances terminated); other stacks are
moto's, with the sandbox's fix for deleted stacks. Everything goes through boto3 and HTTP.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError
from moto.cloudformation.models import Stack

from include.sandbox import moto_fixes
from include.sandbox.scenario import ScenarioError, parse_scenario
from tests.conftest import advance_clock, client_factory

ACCOUNT = "123456789012"
AL2023 = "ami-0a2023000000000a1"
UNKNOWN_AMI = "ami-0ffff00000000fff1"
REASON = "Your requested instance type (m6i.large) is not supported in your requested Availability Zone"
ROLLBACK_REASON = "The following resource(s) failed to create: [StagingInstanceP01]. Rollback requested by user."
STAGING_TAGS = {"patchcycle:role": "staging"}
FAST = {"Delay": 1, "MaxAttempts": 5}

SCENARIO: dict[str, Any] = {
    "name": "cloudformation",
    "seed": 3,
    # Nearly frozen: only the clock endpoint moves simulated time.
    "clock": {"start": "2026-11-20T03:00:00+00:00", "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                "us-east-1": {
                    "instance_groups": [{"name": "web", "count": 2, "ami": AL2023, "tags": {"PatchGroup": "web"}}]
                },
                "eu-west-1": {},
            },
        }
    ],
    "failures": [
        {"tags": {**STAGING_TAGS, "PatchGroup": "web"}, "script_fails": True},
        # Selects among the group's instances only: never a stack's.
        {"group": "web", "tags": {"PatchGroup": "web"}, "command_hangs": True},
    ],
    "cloudformation": {
        "fail_stacks": [
            {"name_prefix": "patchcycle-staging-broken", "reason": REASON, "region": "us-east-1"},
            {
                "name_prefix": "patchcycle-staging-second",
                "reason": "Insufficient capacity.",
                "resource": "StagingInstanceP02",
            },
        ]
    },
}


def _template(patch_groups: tuple[str, ...] = ("web", "db"), ami: str = AL2023) -> str:
    resources: dict[str, Any] = {
        f"StagingInstanceP{n:02d}": {
            "Type": "AWS::EC2::Instance",
            "Properties": {
                "ImageId": ami,
                "InstanceType": "m6i.large",
                "Tags": [{"Key": "PatchGroup", "Value": group}],
            },
        }
        for n, group in enumerate(patch_groups, start=1)
    }
    outputs = {"FirstInstance": {"Value": {"Ref": "StagingInstanceP01"}, "Export": {"Name": "first-staging"}}}
    return json.dumps({"Resources": resources, "Outputs": outputs})


@pytest.fixture
def aws(sandbox_factory: Callable[..., Any]) -> Callable[..., Any]:
    server = sandbox_factory(copy.deepcopy(SCENARIO))
    aws = client_factory(server.url)
    aws.url = server.url  # type: ignore[attr-defined]
    return aws


def _create(aws: Callable[..., Any], name: str, region: str = "us-east-1", **kwargs: Any) -> str:
    cf = aws("cloudformation", region=region)
    stack_id: str = cf.create_stack(
        StackName=name,
        TemplateBody=kwargs.pop("template", _template()),
        Tags=[{"Key": k, "Value": v} for k, v in STAGING_TAGS.items()],
        **kwargs,
    )["StackId"]
    return stack_id


def _instances(aws: Callable[..., Any], region: str = "us-east-1") -> dict[str, str]:
    """Instance id -> state name, every instance of the region."""
    reservations = aws("ec2", region=region).describe_instances()["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def _managed(aws: Callable[..., Any], region: str = "us-east-1") -> set[str]:
    pages = aws("ssm", region=region).get_paginator("describe_instance_information").paginate()
    return {info["InstanceId"] for page in pages for info in page["InstanceInformationList"]}


def _stack_instances(aws: Callable[..., Any], name: str) -> dict[str, str]:
    """Logical id -> instance id of a stack's instances."""
    resources = aws("cloudformation").describe_stack_resources(StackName=name)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


def test_failing_stack_rolls_back_like_aws(aws: Callable[..., Any]) -> None:
    cf = aws("cloudformation")
    before = _instances(aws)
    stack_id = _create(aws, "patchcycle-staging-broken-r1")

    with pytest.raises(WaiterError) as raised:
        cf.get_waiter("stack_create_complete").wait(StackName="patchcycle-staging-broken-r1", WaiterConfig=FAST)
    assert "ROLLBACK_COMPLETE" in str(raised.value)
    stack = cf.describe_stacks(StackName="patchcycle-staging-broken-r1")["Stacks"][0]
    assert (stack["StackStatus"], stack["StackStatusReason"]) == ("ROLLBACK_COMPLETE", ROLLBACK_REASON)
    assert "Outputs" not in stack
    assert cf.list_exports()["Exports"] == []

    events = cf.describe_stack_events(StackName="patchcycle-staging-broken-r1")["StackEvents"]
    assert events[0]["ResourceStatus"] == "ROLLBACK_COMPLETE"  # newest first
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert {(e["LogicalResourceId"], e["ResourceStatusReason"]) for e in failed} == {
        ("StagingInstanceP01", REASON),
        ("StagingInstanceP02", "Resource creation cancelled"),
    }
    assert failed[-1]["ResourceType"] == "AWS::EC2::Instance"
    rollback = [e for e in events if e["ResourceStatus"] == "ROLLBACK_IN_PROGRESS"]
    assert [e["ResourceStatusReason"] for e in rollback] == [ROLLBACK_REASON]
    deleted = {e["LogicalResourceId"] for e in events if e["ResourceStatus"] == "DELETE_COMPLETE"}
    assert deleted == {"StagingInstanceP01", "StagingInstanceP02"}
    assert "CREATE_COMPLETE" not in {
        e["ResourceStatus"] for e in events if e["LogicalResourceId"] == stack["StackName"]
    }

    # The stack's instances were launched, then terminated: not managed, and not launched again.
    launched = {i: state for i, state in _instances(aws).items() if i not in before}
    assert len(launched) == 2
    assert set(launched.values()) == {"terminated"}
    assert not _managed(aws) & set(launched)
    assert cf.describe_stack_resources(StackName="patchcycle-staging-broken-r1")["StackResources"] == []
    assert cf.list_stack_resources(StackName="patchcycle-staging-broken-r1")["StackResourceSummaries"] == []
    assert len(_instances(aws)) == len(before) + 2

    with pytest.raises(ClientError, match="ROLLBACK_COMPLETE state and can not be updated"):
        cf.update_stack(StackName="patchcycle-staging-broken-r1", TemplateBody=_template(("web",)))
    cf.delete_stack(StackName="patchcycle-staging-broken-r1")
    cf.get_waiter("stack_delete_complete").wait(StackName="patchcycle-staging-broken-r1", WaiterConfig=FAST)
    assert cf.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    assert len(_instances(aws)) == len(before) + 2


def test_only_matching_stacks_fail(aws: Callable[..., Any]) -> None:
    _create(aws, "patchcycle-staging-r1")  # another prefix
    _create(aws, "patchcycle-staging-broken-r1", region="eu-west-1")  # another region
    for region, name in (("us-east-1", "patchcycle-staging-r1"), ("eu-west-1", "patchcycle-staging-broken-r1")):
        cf = aws("cloudformation", region=region)
        cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig=FAST)
        assert cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_the_failing_resource_can_be_named(aws: Callable[..., Any]) -> None:
    cf = aws("cloudformation", region="eu-west-1")
    _create(aws, "patchcycle-staging-second-r1", region="eu-west-1")
    stack = cf.describe_stacks(StackName="patchcycle-staging-second-r1")["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "[StagingInstanceP02]" in stack["StackStatusReason"]
    events = cf.describe_stack_events(StackName="patchcycle-staging-second-r1")["StackEvents"]
    outcome = {
        e["LogicalResourceId"]: (e["ResourceStatus"], e.get("ResourceStatusReason"))
        for e in events[::-1]
        if e["ResourceStatus"].startswith("CREATE_") and e["ResourceStatus"] != "CREATE_IN_PROGRESS"
    }
    assert outcome == {
        "StagingInstanceP01": ("CREATE_COMPLETE", None),
        "StagingInstanceP02": ("CREATE_FAILED", "Insufficient capacity."),
    }
    assert set(_instances(aws, region="eu-west-1").values()) == {"terminated"}


def test_on_failure_delete_and_do_nothing(aws: Callable[..., Any]) -> None:
    cf = aws("cloudformation")
    deleted_id = _create(aws, "patchcycle-staging-broken-delete", OnFailure="DELETE")
    assert cf.describe_stacks(StackName=deleted_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError, match="does not exist"):
        cf.describe_stacks(StackName="patchcycle-staging-broken-delete")

    _create(aws, "patchcycle-staging-broken-keep", DisableRollback=True)
    with pytest.raises(WaiterError, match="CREATE_FAILED"):
        cf.get_waiter("stack_create_complete").wait(StackName="patchcycle-staging-broken-keep", WaiterConfig=FAST)
    stack = cf.describe_stacks(StackName="patchcycle-staging-broken-keep")["Stacks"][0]
    assert stack["StackStatusReason"] == "The following resource(s) failed to create: [StagingInstanceP01]."
    kept = _stack_instances(aws, "patchcycle-staging-broken-keep")
    assert list(kept) == ["StagingInstanceP02"]  # the failing instance never existed
    assert _instances(aws)[kept["StagingInstanceP02"]] == "running"
    cf.delete_stack(StackName="patchcycle-staging-broken-keep")
    assert _instances(aws)[kept["StagingInstanceP02"]] == "terminated"


def test_stack_lifecycle_and_managed_instances(aws: Callable[..., Any]) -> None:
    cf = aws("cloudformation")
    template = json.loads(_template())
    template["Resources"]["Unmanaged"] = {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": UNKNOWN_AMI}}
    stack_id = _create(aws, "patchcycle-staging-r2", template=json.dumps(template))
    cf.get_waiter("stack_create_complete").wait(StackName="patchcycle-staging-r2", WaiterConfig=FAST)

    stack = cf.describe_stacks(StackName="patchcycle-staging-r2")["Stacks"][0]
    assert (stack["StackId"], stack["StackStatus"]) == (stack_id, "CREATE_COMPLETE")
    resources = cf.describe_stack_resources(StackName="patchcycle-staging-r2")["StackResources"]
    assert {(r["LogicalResourceId"], r["ResourceType"], r["ResourceStatus"]) for r in resources} == {
        ("StagingInstanceP01", "AWS::EC2::Instance", "CREATE_COMPLETE"),
        ("StagingInstanceP02", "AWS::EC2::Instance", "CREATE_COMPLETE"),
        ("Unmanaged", "AWS::EC2::Instance", "CREATE_COMPLETE"),
    }
    ids = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    assert stack["Outputs"] == [
        {"OutputKey": "FirstInstance", "OutputValue": ids["StagingInstanceP01"], "ExportName": "first-staging"}
    ]
    events = cf.describe_stack_events(StackName="patchcycle-staging-r2")["StackEvents"]
    assert [e["ResourceStatus"] for e in events] == ["CREATE_COMPLETE", "CREATE_IN_PROGRESS"]

    # Launched from a scenario AMI: managed, with the stack's tags (and its own) on the instance.
    managed = _managed(aws)
    assert {ids["StagingInstanceP01"], ids["StagingInstanceP02"]} <= managed
    assert ids["Unmanaged"] not in managed
    tags = aws("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [ids["StagingInstanceP01"]]}])["Tags"]
    assert {(t["Key"], t["Value"]) for t in tags} >= {
        ("patchcycle:role", "staging"),
        ("PatchGroup", "web"),
        ("aws:cloudformation:stack-name", "patchcycle-staging-r2"),
        ("aws:cloudformation:logical-id", "StagingInstanceP01"),
    }

    before = _instances(aws)
    cf.delete_stack(StackName="patchcycle-staging-r2")
    cf.get_waiter("stack_delete_complete").wait(StackName="patchcycle-staging-r2", WaiterConfig=FAST)
    states = _instances(aws)
    assert {states[i] for i in ids.values()} == {"terminated"}
    assert not _managed(aws) & set(ids.values())
    # A deleted stack is still described by id; describing it must not launch its instances again (moto_fixes).
    assert cf.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    gone = cf.describe_stack_resources(StackName=stack_id)["StackResources"]
    assert {(r["PhysicalResourceId"], r["ResourceStatus"]) for r in gone} == {
        (i, "DELETE_COMPLETE") for i in ids.values()
    }
    events = cf.describe_stack_events(StackName=stack_id)["StackEvents"]
    assert events[0]["ResourceStatus"] == "DELETE_COMPLETE"
    assert len(_instances(aws)) == len(before)
    assert not _managed(aws) & set(ids.values())
    assert Stack.delete is moto_fixes._stack_delete


def test_tag_failures_apply_to_stack_instances(aws: Callable[..., Any]) -> None:
    _create(aws, "patchcycle-staging-r3")
    ids = _stack_instances(aws, "patchcycle-staging-r3")
    web, db = ids["StagingInstanceP01"], ids["StagingInstanceP02"]
    group_member = sorted(_managed(aws) - set(ids.values()))[0]
    ssm = aws("ssm")
    command_id = ssm.send_command(
        DocumentName="AWS-RunShellScript",
        InstanceIds=[web, db, group_member],
        Parameters={
            "commands": ["systemctl is-active nginx", "curl -fsS localhost/health"],
            "executionTimeout": ["600"],
        },
        TimeoutSeconds=600,
    )["Command"]["CommandId"]
    advance_clock(aws.url, 60)  # type: ignore[attr-defined]

    listed = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"]
    by_id = {inv["InstanceId"]: inv for inv in listed}
    assert (by_id[web]["Status"], by_id[db]["Status"]) == ("Failed", "Success")
    [failed] = by_id[web]["CommandPlugins"]
    [succeeded] = by_id[db]["CommandPlugins"]
    assert (failed["Name"], failed["Status"], failed["ResponseCode"]) == ("aws:runShellScript", "Failed", 1)
    assert "exit status 1" in failed["Output"]
    assert (succeeded["Status"], succeeded["ResponseCode"]) == ("Success", 0)
    assert isinstance(succeeded["Output"], str)
    result = ssm.get_command_invocation(CommandId=command_id, InstanceId=web)
    assert (result["Status"], result["ResponseCode"]) == ("Failed", 1)
    # The group's failure (command_hangs) stays with the group's own instances.
    assert by_id[group_member]["Status"] == "InProgress"


@pytest.mark.parametrize(
    ("fail_stacks", "expected"),
    [
        ([{"name_prefix": "x"}], "cloudformation.fail_stacks[0]: 'reason' is a required property"),
        ([{"name_prefix": "", "reason": "r"}], "cloudformation.fail_stacks[0].name_prefix: '' should be non-empty"),
        (
            [{"name_prefix": "x", "reason": "r"}, {"name_prefix": "y", "reason": "r", "region": "ap-south-1"}],
            "cloudformation.fail_stacks[1].region: ap-south-1 is not a region of any account",
        ),
        (
            [{"name_prefix": "x", "reason": "r", "region": "Mars"}],
            "cloudformation.fail_stacks[0].region: 'Mars' does not match",
        ),
        ([{"name_prefix": "x", "reason": "r", "when": 1}], "('when' was unexpected)"),
    ],
)
def test_bad_fail_stacks_name_the_field(fail_stacks: list[dict[str, Any]], expected: str) -> None:
    document = copy.deepcopy(SCENARIO)
    document["cloudformation"] = {"fail_stacks": fail_stacks}
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(document, source="bad.yaml")
    assert str(raised.value).startswith("scenario bad.yaml: ")
    assert expected in str(raised.value)


def test_fail_stacks_are_parsed() -> None:
    scenario = parse_scenario(copy.deepcopy(SCENARIO))
    failure, second = scenario.fail_stacks
    assert (failure.name_prefix, failure.reason, failure.region, failure.resource) == (
        "patchcycle-staging-broken",
        REASON,
        "us-east-1",
        None,
    )
    assert (second.region, second.resource) == (None, "StagingInstanceP02")
    assert scenario.stack_failure("patchcycle-staging-second", "ap-south-1") is second
    assert scenario.stack_failure("patchcycle-staging-broken-7", "us-east-1") is failure
    assert scenario.stack_failure("patchcycle-staging-broken-7", "eu-west-1") is None
    assert scenario.stack_failure("patchcycle-staging-7", "us-east-1") is None

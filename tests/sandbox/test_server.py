"""The sandbox endpoint: moto behind it, the fleet seeded, faults injected, accounts kept apart."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import client_factory, hold_answer, release_hold, sandbox_requests, uninstall_patches

ACCOUNT = "123456789012"


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_health_names_the_scenario(sandbox: Any) -> None:
    health = _get(f"{sandbox.url}/_sandbox/health")
    assert health["status"] == "ok"
    assert health["scenario"] == "default"
    assert health["instances"] == sandbox.world.scenario.instance_count


def test_fleet_is_seeded_into_moto(sandbox: Any, aws: Callable[..., Any]) -> None:
    for account in sandbox.world.scenario.accounts:
        for region in account.regions:
            ec2 = aws("ec2", region=region.name)
            pages = ec2.get_paginator("describe_instances").paginate()
            instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
            assert len(instances) == sum(group.count for group in region.instance_groups)
            for group in region.instance_groups:
                tagged = [i for i in instances if {"Key": "Name", "Value": group.name} in i["Tags"]]
                assert len(tagged) == group.count
                assert {i["ImageId"] for i in tagged} == {group.ami}
                assert {i["Placement"]["AvailabilityZone"] for i in tagged} <= set(group.availability_zones)
            rds = aws("rds", region=region.name).describe_db_instances()["DBInstances"]
            assert sorted(db["DBInstanceIdentifier"] for db in rds) == sorted(db.id for db in region.rds_instances)
    buckets = {b["Name"] for b in aws("s3").list_buckets()["Buckets"]}
    assert "storefront-assets-123456789012" in buckets


def test_unmanaged_and_offline_agents_look_as_on_aws(sandbox: Any, aws: Callable[..., Any]) -> None:
    ssm = aws("ssm")
    infos = [
        info
        for page in ssm.get_paginator("describe_instance_information").paginate()
        for info in page["InstanceInformationList"]
    ]
    by_group: dict[str | None, list[str]] = {}
    for instance in sandbox.world.instances(ACCOUNT, "us-east-1").values():
        by_group.setdefault(instance.group, []).append(instance.instance_id)
    listed = {info["InstanceId"]: info for info in infos}
    assert not set(by_group["legacy-prod-use1-unmanaged"]) & set(listed)  # never registered: absent
    assert {listed[i]["PingStatus"] for i in by_group["batch-prod-use1-offline"]} == {"ConnectionLost"}
    assert {listed[i]["PingStatus"] for i in by_group["web-prod-use1"]} == {"Online"}
    assert {listed[i]["PlatformType"] for i in by_group["win-prod-use1"]} == {"Windows"}


def test_limits_are_enforced_like_aws(aws: Callable[..., Any], sandbox: Any) -> None:
    registered = [i.instance_id for i in sandbox.world.instances(ACCOUNT, "us-east-1").values() if i.registered]
    ids = sorted(registered)[:51]
    with pytest.raises(ClientError) as raised:
        aws("ssm").describe_instance_patch_states(InstanceIds=ids)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 50" in error["Message"]
    assert len(aws("ssm").describe_instance_patch_states(InstanceIds=ids[:50])["InstancePatchStates"]) == 50


def _throttling_scenario(rate: float) -> dict[str, Any]:
    return {
        "name": "throttled",
        "seed": 1,
        "amis": {"ami-0a1b2c3d4e5f60001": {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    "us-east-1": {"instance_groups": [{"name": "web", "count": 5, "ami": "ami-0a1b2c3d4e5f60001"}]}
                },
            }
        ],
        "faults": {"ssm:DescribeInstanceInformation": {"throttle_rate": rate}, "ec2:*": {"throttle_rate": rate}},
    }


def test_throttling_is_a_real_throttling_exception(sandbox_factory: Callable[..., Any]) -> None:
    server = sandbox_factory(_throttling_scenario(1.0))
    aws = client_factory(server.url)
    with pytest.raises(ClientError) as raised:
        aws("ssm").describe_instance_information()
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError) as raised_ec2:
        aws("ec2").describe_instances()
    assert raised_ec2.value.response["Error"]["Code"] == "RequestLimitExceeded"
    # Other APIs are untouched.
    assert aws("s3").list_buckets()["Buckets"] == []


@pytest.mark.slow  # botocore's backoff between the throttled attempts: 5 to 7 s
def test_botocore_retries_ride_out_partial_throttling(sandbox_factory: Callable[..., Any]) -> None:
    server = sandbox_factory(_throttling_scenario(0.5))
    aws = client_factory(server.url)
    ssm = aws("ssm", max_attempts=10)
    for _ in range(10):
        assert len(ssm.describe_instance_information()["InstanceInformationList"]) == 5
    calls = _get(f"{server.url}/_sandbox/calls")
    assert calls["ssm:DescribeInstanceInformation"] > 10  # some were throttled and retried


def test_accounts_are_reached_through_an_assumed_role(sandbox_factory: Callable[..., Any]) -> None:
    scenario = _throttling_scenario(0.0)
    scenario["accounts"].append(
        {
            "id": "210987654321",
            "regions": {
                "us-east-1": {"instance_groups": [{"name": "other", "count": 3, "ami": "ami-0a1b2c3d4e5f60001"}]}
            },
        }
    )
    server = sandbox_factory(scenario)
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=server.url)
    creds = sts.assume_role(RoleArn="arn:aws:iam::210987654321:role/PatchCycle", RoleSessionName="patch-cycle")[
        "Credentials"
    ]
    other = boto3.client(
        "ssm",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"mode": "standard"}),
    )
    home = client_factory(server.url)("ssm")
    assert len(other.describe_instance_information()["InstanceInformationList"]) == 3
    assert len(home.describe_instance_information()["InstanceInformationList"]) == 5


def test_plain_keys_reach_the_first_account_whatever_its_id(sandbox_factory: Callable[..., Any]) -> None:
    scenario = _throttling_scenario(0.0)
    scenario["accounts"][0]["id"] = "111122223333"
    scenario["accounts"][0]["regions"]["us-east-1"]["s3_buckets"] = [{"name": "patchcycle-artifacts"}]
    server = sandbox_factory(scenario)
    aws = client_factory(server.url)
    assert aws("sts").get_caller_identity()["Account"] == "111122223333"
    assert len(aws("ssm").describe_instance_information()["InstanceInformationList"]) == 5
    reservations = aws("ec2").describe_instances()["Reservations"]
    assert sum(len(r["Instances"]) for r in reservations) == 5
    # The scenario's bucket is the keys' own: listed, and creating it again in us-east-1 succeeds as on AWS
    # (another account's bucket would be BucketAlreadyExists).
    assert [b["Name"] for b in aws("s3").list_buckets()["Buckets"]] == ["patchcycle-artifacts"]
    aws("s3").create_bucket(Bucket="patchcycle-artifacts")
    # The control API's account defaults to the same account.
    instance_id = next(iter(server.world.instances("111122223333", "us-east-1")))
    request = urllib.request.Request(
        f"{server.url}/_sandbox/patches/uninstall",
        data=json.dumps({"region": "us-east-1", "instance_id": instance_id, "patch_ids": ["none"]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["instance_id"] == instance_id


def test_unknown_control_endpoint_is_404(sandbox: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        _get(f"{sandbox.url}/_sandbox/nope")
    assert raised.value.code == 404


def test_uninstalling_a_patch_makes_patch_manager_report_it_missing(sandbox: Any, aws: Callable[..., Any]) -> None:
    instance = next(i for i in sandbox.world.instances(ACCOUNT, "us-east-1").values() if i.group == "web-prod-use1")
    patch_id = sorted(instance.installed)[0]
    ssm = aws("ssm")
    before = ssm.describe_instance_patch_states(InstanceIds=[instance.instance_id])["InstancePatchStates"][0]
    answer = uninstall_patches(sandbox.url, "us-east-1", instance.instance_id, [patch_id, "NO-SUCH-PATCH"])
    assert answer["removed"] == [patch_id]
    after = ssm.describe_instance_patch_states(InstanceIds=[instance.instance_id])["InstancePatchStates"][0]
    assert after["MissingCount"] == before["MissingCount"] + 1
    assert after["OperationEndTime"] >= before["OperationEndTime"]
    assert patch_id not in sandbox.world.instance(ACCOUNT, "us-east-1", instance.instance_id).installed


def test_uninstall_names_the_bad_field(sandbox: Any) -> None:
    request = urllib.request.Request(
        f"{sandbox.url}/_sandbox/patches/uninstall",
        data=json.dumps({"region": "us-east-1", "instance_id": "i-0000000000000000f", "patch_ids": ["X"]}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 400
    assert "instance_id" in json.loads(error.value.read())["error"]


def test_the_request_log_names_commanded_instances_and_a_hold_stalls_only_the_answer(
    sandbox: Any, aws: Callable[..., Any]
) -> None:
    ssm = aws("ssm")
    web = sorted(i.instance_id for i in sandbox.world.instances(ACCOUNT, "us-east-1").values() if i.registered)[:2]
    scan = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}
    ssm.send_command(InstanceIds=web[:1], Comment="first", **scan)
    with pytest.raises(ClientError):  # refused: logged with its status, commands nothing
        ssm.send_command(InstanceIds=web[:1], DocumentName="No-Such-Document", Comment="refused")
    hold = hold_answer(sandbox.url, "ssm:SendCommand", comment_prefix="patchcycle wave 1 ", seconds=60)
    assert hold["armed"] and hold["caught"] is None
    answers: list[str] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            ssm.send_command(InstanceIds=web, Comment="patchcycle wave 1 run", **scan)["Command"]["CommandId"]
        )
    )
    sender.start()
    deadline = time.monotonic() + 30
    while not any(r["held"] for r in sandbox_requests(sandbox.url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    # The command exists (AWS did the work) while its sender still waits for the answer.
    assert sender.is_alive() and answers == []
    held = [c for c in ssm.list_commands()["Commands"] if c["Comment"] == "patchcycle wave 1 run"]
    assert len(held) == 1 and sorted(held[0]["InstanceIds"]) == web
    assert release_hold(sandbox.url)["caught"] == 3
    sender.join(timeout=30)
    assert answers == [held[0]["CommandId"]]

    log = sandbox_requests(sandbox.url, "ssm:SendCommand")
    assert [(r["seq"], r["status"], r["comment"], r["held"]) for r in log] == [
        (1, 200, "first", False),
        (2, 400, "refused", False),
        (3, 200, "patchcycle wave 1 run", True),
    ]
    assert log[2]["instance_ids"] == web and log[2]["invoked_by"] == "client"
    assert log[2]["document"] == "AWS-RunPatchBaseline"
    assert sandbox_requests(sandbox.url, "ssm:StartAutomationExecution") == []
    assert _get(f"{sandbox.url}/_sandbox/hold") == {"armed": False}


def test_a_hold_names_the_bad_field(sandbox: Any) -> None:
    for body, field in (
        ({"operation": "ec2:RunInstances"}, "operation"),
        ({"operation": "ssm:SendCommand", "seconds": 0}, "seconds"),
    ):
        request = urllib.request.Request(f"{sandbox.url}/_sandbox/hold", data=json.dumps(body).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code == 400
        assert field in json.loads(error.value.read())["error"]

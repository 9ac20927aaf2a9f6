"""CloudWatch alarms in the sandbox (alarms.py): DescribeAlarms and SetAlarmState as AWS answers them, the scenario's
alarms (one that fires after N installs of its group), and the `breaks_after_install` failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from include.sandbox.scenario import ScenarioError, parse_scenario
from tests.conftest import advance_clock, client_factory, uninstall_patches

ACCOUNT, REGION = "123456789012", "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
AL2023 = "ami-0a1b2c3d4e5f60001"
DELIVERY, INSTALL, SCRIPT = 1, 20, 2
SCENARIO: dict[str, Any] = {
    "name": "alarms",
    # Nearly frozen: only advance_clock moves simulated time, so every expected time is exact.
    "clock": {"start": START.isoformat(), "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {
                            "name": "web",
                            "count": 3,
                            "ami": AL2023,
                            "tags": {"Role": "web"},
                            "patched_through": "2026-07-31",
                        },
                        {
                            "name": "db",
                            "count": 2,
                            "ami": AL2023,
                            "tags": {"Role": "db"},
                            "patched_through": "2026-07-31",
                        },
                        {
                            "name": "fragile",
                            "count": 1,
                            "ami": AL2023,
                            "tags": {"Role": "fragile"},
                            "patched_through": "2026-07-31",
                        },
                        # Fully patched: an Install installs nothing.
                        {
                            "name": "current",
                            "count": 1,
                            "ami": AL2023,
                            "tags": {"Role": "current"},
                            "patched_through": "2099-01-01",
                        },
                    ]
                },
                "eu-west-1": {},
            },
        }
    ],
    "failures": [
        {"group": "fragile", "breaks_after_install": True},
        {"group": "current", "breaks_after_install": True},
    ],
    "alarms": [
        {"name": "web-health", "fires_after_installs": 2, "group": "web"},
        {"name": "db-health", "fires_after_installs": 1, "tags": {"Role": "db"}, "region": REGION},
        {"name": "static-ok"},
        {"name": "static-alarm", "state": "ALARM", "region": REGION, "description": "always on"},
    ],
    "commands": {"delivery_seconds": DELIVERY, "install_seconds": INSTALL, "script_seconds": SCRIPT},
}


@pytest.fixture
def aws(fresh_server: Any) -> Any:
    return client_factory(fresh_server.url)


def names(response: dict[str, Any], kind: str = "MetricAlarms") -> list[str]:
    return [alarm["AlarmName"] for alarm in response[kind]]


def put_alarm(cloudwatch: Any, name: str, **extra: Any) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="Errors",
        Namespace="App",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        **extra,
    )


def error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = raised.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def group_ids(aws: Any, role: str) -> list[str]:
    reservations = aws("ec2", region=REGION).describe_instances(Filters=[{"Name": "tag:Role", "Values": [role]}])
    return sorted(i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"])


def install(ssm: Any, instance_ids: list[str]) -> str:
    command = ssm.send_command(
        InstanceIds=instance_ids,
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Install"], "RebootOption": ["NoReboot"]},
    )
    return str(command["Command"]["CommandId"])


def health_check(ssm: Any, url: str, instance_id: str) -> dict[str, Any]:
    command_id = ssm.send_command(
        InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters={"commands": ["/opt/health.sh"]}
    )["Command"]["CommandId"]
    advance_clock(url, DELIVERY + SCRIPT + 1)
    result: dict[str, Any] = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    return result


# -- DescribeAlarms ----------------------------------------------------------------------------------


def test_the_scenario_alarms_exist_in_their_regions(aws: Any) -> None:
    us, eu = aws("cloudwatch", region=REGION), aws("cloudwatch", region="eu-west-1")
    assert names(us.describe_alarms()) == ["db-health", "static-alarm", "static-ok", "web-health"]
    assert names(eu.describe_alarms()) == ["static-ok"]  # no region and no group: every region
    alarms = {alarm["AlarmName"]: alarm for alarm in us.describe_alarms()["MetricAlarms"]}
    assert alarms["static-alarm"]["StateValue"] == "ALARM" and alarms["static-alarm"]["AlarmDescription"] == "always on"
    assert alarms["web-health"]["StateValue"] == "OK"
    assert alarms["web-health"]["Threshold"] == 2.0
    assert alarms["web-health"]["Dimensions"] == [{"Name": "InstanceGroup", "Value": "web"}]
    assert alarms["web-health"]["StateUpdatedTimestamp"] == START
    assert alarms["web-health"]["AlarmConfigurationUpdatedTimestamp"] == START


def test_describe_alarms_by_names_prefix_state_and_type(aws: Any) -> None:
    cloudwatch = aws("cloudwatch", region=REGION)
    for name in ("app-errors", "app-latency", "batch-errors"):
        put_alarm(cloudwatch, name, AlarmActions=[f"arn:aws:sns:{REGION}:{ACCOUNT}:{name.split('-')[0]}"])
    cloudwatch.put_composite_alarm(AlarmName="app-composite", AlarmRule='ALARM("app-errors") OR ALARM(app-latency)')

    assert names(cloudwatch.describe_alarms(AlarmNames=["batch-errors", "app-errors", "missing"])) == [
        "app-errors",
        "batch-errors",
    ]
    by_prefix = cloudwatch.describe_alarms(AlarmNamePrefix="app-")
    assert names(by_prefix) == ["app-errors", "app-latency"]  # metric alarms only unless AlarmTypes says otherwise
    assert by_prefix["CompositeAlarms"] == []
    both = cloudwatch.describe_alarms(AlarmNamePrefix="app-", AlarmTypes=["CompositeAlarm", "MetricAlarm"])
    assert names(both) == ["app-errors", "app-latency"]
    assert names(both, "CompositeAlarms") == ["app-composite"]
    composite = cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])
    assert (names(composite), names(composite, "CompositeAlarms")) == ([], ["app-composite"])
    assert composite["CompositeAlarms"][0]["AlarmRule"] == 'ALARM("app-errors") OR ALARM(app-latency)'

    assert names(cloudwatch.describe_alarms(StateValue="ALARM")) == ["static-alarm"]
    assert names(cloudwatch.describe_alarms(StateValue="OK", AlarmNamePrefix="s")) == ["static-ok"]
    assert names(cloudwatch.describe_alarms(ActionPrefix=f"arn:aws:sns:{REGION}:{ACCOUNT}:app")) == [
        "app-errors",
        "app-latency",
    ]
    children = cloudwatch.describe_alarms(ChildrenOfAlarmName="app-composite")
    assert names(children) == ["app-errors", "app-latency"]
    parents = cloudwatch.describe_alarms(ParentsOfAlarmName="app-latency")
    assert names(parents, "CompositeAlarms") == ["app-composite"]

    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(AlarmNames=["app-errors"], AlarmNamePrefix="app-")
    assert error(raised) == ("InvalidParameterCombination", 400)
    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(ChildrenOfAlarmName="app-composite", StateValue="OK")
    assert error(raised) == ("InvalidParameterCombination", 400)


def test_describe_alarms_pages_in_name_order(aws: Any) -> None:
    cloudwatch = aws("cloudwatch", region=REGION)
    for index in (7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 6, 4):
        put_alarm(cloudwatch, f"page-{index:02d}")
    first = cloudwatch.describe_alarms(AlarmNamePrefix="page-", MaxRecords=5)
    assert names(first) == [f"page-{i:02d}" for i in range(5)]
    second = cloudwatch.describe_alarms(AlarmNamePrefix="page-", MaxRecords=5, NextToken=first["NextToken"])
    assert names(second) == [f"page-{i:02d}" for i in range(5, 10)]
    third = cloudwatch.describe_alarms(AlarmNamePrefix="page-", MaxRecords=5, NextToken=second["NextToken"])
    assert names(third) == ["page-10", "page-11"] and "NextToken" not in third

    pages = cloudwatch.get_paginator("describe_alarms").paginate(PaginationConfig={"PageSize": 4})
    every = [name for page in pages for name in names(page)]
    assert every == sorted(every) and len(every) == 16  # 12 + the scenario's 4
    assert "NextToken" not in cloudwatch.describe_alarms()  # 50 a page by default

    with pytest.raises(ClientError) as raised:
        cloudwatch.describe_alarms(NextToken="not-a-token")
    assert error(raised) == ("InvalidNextToken", 400)


def test_set_alarm_state_uses_the_simulated_clock(fresh_server: Any, aws: Any) -> None:
    cloudwatch = aws("cloudwatch", region=REGION)
    advance_clock(fresh_server.url, 90)
    cloudwatch.set_alarm_state(
        AlarmName="static-ok", StateValue="ALARM", StateReason="testing", StateReasonData='{"why": "test"}'
    )
    alarm = cloudwatch.describe_alarms(AlarmNames=["static-ok"])["MetricAlarms"][0]
    assert (alarm["StateValue"], alarm["StateReason"], alarm["StateReasonData"]) == (
        "ALARM",
        "testing",
        '{"why": "test"}',
    )
    assert alarm["StateUpdatedTimestamp"] == alarm["StateTransitionedTimestamp"] == START + timedelta(seconds=90)

    with pytest.raises(ClientError) as raised:
        cloudwatch.set_alarm_state(AlarmName="nope", StateValue="ALARM", StateReason="x")
    assert error(raised) == ("ResourceNotFound", 404)
    with pytest.raises(ClientError) as raised:
        cloudwatch.set_alarm_state(AlarmName="static-ok", StateValue="OK", StateReason="x", StateReasonData="{oops")
    assert error(raised) == ("InvalidFormat", 400)


def test_moto_still_gets_describe_alarms_wrong() -> None:
    """When the pinned moto filters, pages and refuses AlarmNames with AlarmNamePrefix, compare it with ours."""
    from moto.cloudwatch.responses import CloudWatchResponse

    assert not hasattr(CloudWatchResponse, "put_composite_alarm")
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        for name in ("b-2", "a-1", "b-1"):
            put_alarm(cloudwatch, name)
        # No InvalidParameterCombination, the prefix alone decides, no paging, creation order.
        response = cloudwatch.describe_alarms(AlarmNames=["a-1"], AlarmNamePrefix="b-", MaxRecords=1)
        assert names(response) == ["b-2", "b-1"] and "NextToken" not in response


# -- an alarm that fires after N installs --------------------------------------------------------------


def test_an_alarm_fires_once_n_instances_of_its_group_completed_an_install(fresh_server: Any, aws: Any) -> None:
    ssm, cloudwatch = aws("ssm", region=REGION), aws("cloudwatch", region=REGION)
    web, db = group_ids(aws, "web"), group_ids(aws, "db")

    def web_alarm() -> dict[str, Any]:
        alarm: dict[str, Any] = cloudwatch.describe_alarms(AlarmNames=["web-health"])["MetricAlarms"][0]
        return alarm

    ssm.send_command(InstanceIds=web, DocumentName="AWS-RunPatchBaseline", Parameters={"Operation": ["Scan"]})
    install(ssm, db)  # another group's installs do not count
    install(ssm, web[:1])
    advance_clock(fresh_server.url, 120)
    assert web_alarm()["StateValue"] == "OK"  # one web install so far (and scans do not count)
    install(ssm, web[1:2])
    advance_clock(fresh_server.url, DELIVERY + INSTALL - 1)
    assert web_alarm()["StateValue"] == "OK"  # still running
    advance_clock(fresh_server.url, 30)

    alarm = web_alarm()
    assert alarm["StateValue"] == "ALARM"
    # Stamped when the second install completed, not when the alarm was described.
    completed = START + timedelta(seconds=120 + DELIVERY + INSTALL)
    assert alarm["StateUpdatedTimestamp"] == alarm["StateTransitionedTimestamp"] == completed
    assert alarm["StateReason"].startswith("Threshold Crossed: 1 datapoint [2.0 (20/11/26 03:02:00)]")
    assert "2 instances of group web completed an AWS-RunPatchBaseline Install" in alarm["StateReason"]
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [2.0]
    assert names(cloudwatch.describe_alarms(StateValue="ALARM")) == ["db-health", "static-alarm", "web-health"]

    # It fired once: an operator's reset is kept.
    cloudwatch.set_alarm_state(AlarmName="web-health", StateValue="OK", StateReason="acknowledged")
    install(ssm, web[2:])
    advance_clock(fresh_server.url, 60)
    assert web_alarm()["StateValue"] == "OK"


def test_a_failed_install_counts_and_an_undelivered_one_does_not(fresh_server: Any, aws: Any) -> None:
    ssm, cloudwatch = aws("ssm", region=REGION), aws("cloudwatch", region=REGION)
    db = group_ids(aws, "db")
    ssm.cancel_command(CommandId=install(ssm, db[1:]))  # cancelled before it was delivered
    advance_clock(fresh_server.url, 60)
    assert cloudwatch.describe_alarms(AlarmNames=["db-health"])["MetricAlarms"][0]["StateValue"] == "OK"
    bad_list = "s3://no-such-bucket/override.yaml"  # the agent cannot read it: the Install fails at once
    ssm.send_command(
        InstanceIds=db[:1],
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Install"], "InstallOverrideList": [bad_list]},
    )
    advance_clock(fresh_server.url, 30)
    assert ssm.list_commands()["Commands"][0]["Status"] == "Failed"
    alarm = cloudwatch.describe_alarms(AlarmNames=["db-health"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert "1 instance of tag Role=db completed" in alarm["StateReason"]


def test_a_replaced_scenario_alarm_no_longer_fires(fresh_server: Any, aws: Any) -> None:
    ssm, cloudwatch = aws("ssm", region=REGION), aws("cloudwatch", region=REGION)
    put_alarm(cloudwatch, "db-health")  # PutMetricAlarm of the same name: now the caller's alarm
    install(ssm, group_ids(aws, "db"))
    advance_clock(fresh_server.url, 60)
    assert cloudwatch.describe_alarms(AlarmNames=["db-health"])["MetricAlarms"][0]["StateValue"] == "OK"


@pytest.mark.parametrize(
    ("alarm", "message"),
    [
        ({"name": "a", "fires_after_installs": 1}, "fires_after_installs"),
        ({"name": "a", "fires_after_installs": 1, "group": "nope"}, "no instance group"),
        ({"name": "a", "fires_after_installs": 1, "group": "web", "region": "eu-west-1"}, "lives in"),
        ({"name": "a", "region": "ap-south-1"}, "region"),
        ({"name": "a", "state": "RED"}, "state"),
    ],
)
def test_scenario_alarms_are_checked(alarm: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=r"alarms\[0\]") as raised:
        parse_scenario({**SCENARIO, "alarms": [alarm]})
    assert message in str(raised.value)
    with pytest.raises(ScenarioError, match="defined twice"):
        parse_scenario({**SCENARIO, "alarms": [{"name": "twice"}, {"name": "twice", "region": REGION}]})


# -- breaks_after_install ------------------------------------------------------------------------------


def test_an_instance_breaks_after_an_install_and_heals_when_its_patches_are_rolled_back(
    fresh_server: Any, aws: Any
) -> None:
    ssm = aws("ssm", region=REGION)
    (fragile,) = group_ids(aws, "fragile")
    (web, *_) = group_ids(aws, "web")
    assert health_check(ssm, fresh_server.url, fragile)["Status"] == "Success"

    install(ssm, [fragile, web])
    advance_clock(fresh_server.url, DELIVERY + INSTALL + 1)
    installed = [
        patch["KBId"]
        for page in ssm.get_paginator("describe_instance_patches").paginate(InstanceId=fragile)
        for patch in page["Patches"]
        if patch["State"].startswith("INSTALLED") and patch["InstalledTime"] > START
    ]
    assert installed  # the install put patches on it

    broken = health_check(ssm, fresh_server.url, fragile)
    assert (broken["Status"], broken["ResponseCode"]) == ("Failed", 1)
    assert "exit status 1" in broken["StandardErrorContent"]
    assert health_check(ssm, fresh_server.url, web)["Status"] == "Success"  # the fault is the fragile group's

    # A restore puts the pre-install patch state back: the health checks pass again.
    uninstall_patches(fresh_server.url, REGION, fragile, installed)
    assert health_check(ssm, fresh_server.url, fragile)["Status"] == "Success"


def test_an_install_that_installs_nothing_breaks_nothing(fresh_server: Any, aws: Any) -> None:
    ssm = aws("ssm", region=REGION)
    (current,) = group_ids(aws, "current")
    install(ssm, [current])
    advance_clock(fresh_server.url, DELIVERY + INSTALL + 1)
    assert ssm.list_commands()["Commands"][0]["Status"] == "Success"
    assert health_check(ssm, fresh_server.url, current)["Status"] == "Success"


def test_a_root_volume_restore_from_the_pre_install_snapshot_heals_it(fresh_server: Any, aws: Any) -> None:
    ssm, ec2 = aws("ssm", region=REGION), aws("ec2", region=REGION)
    (fragile,) = group_ids(aws, "fragile")
    (instance,) = ec2.describe_instances(InstanceIds=[fragile])["Reservations"][0]["Instances"]
    root = next(
        m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]
    )
    created = ec2.create_snapshots(InstanceSpecification={"InstanceId": fragile})["Snapshots"]
    (snapshot_id,) = [s["SnapshotId"] for s in created if s["VolumeId"] == root]
    advance_clock(fresh_server.url, 120)  # the snapshot completes
    install(ssm, [fragile])
    advance_clock(fresh_server.url, DELIVERY + INSTALL + 1)
    assert health_check(ssm, fresh_server.url, fragile)["Status"] == "Failed"

    task = ec2.create_replace_root_volume_task(InstanceId=fragile, SnapshotId=snapshot_id)["ReplaceRootVolumeTask"]
    advance_clock(fresh_server.url, 120)
    (done,) = ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task["ReplaceRootVolumeTaskId"]])[
        "ReplaceRootVolumeTasks"
    ]
    assert done["TaskState"] == "succeeded"
    assert health_check(ssm, fresh_server.url, fragile)["Status"] == "Success"

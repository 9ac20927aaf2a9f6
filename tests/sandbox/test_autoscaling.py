"""EC2 Auto Scaling in the sandbox (autoscaling.py): the scenario's groups, launch template versions from a source
version, and instance refreshes over simulated time (checkpoints, SkipMatching, alarms and rollback, cancel, paging)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox.scenario import ScenarioError, parse_scenario
from tests.conftest import advance_clock, client_factory, sandbox_requests

ACCOUNT, REGION = "123456789012", "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
AL2023 = "ami-0a1b2c3d4e5f60001"
BAKED = "ami-0b0b0b0b0b0b0b0b1"  # not a scenario AMI: instances launched from it are not SSM-managed
TAGS = {"PatchGroup": "web-prod", "Environment": "production"}
SCENARIO: dict[str, Any] = {
    "name": "autoscaling",
    # Nearly frozen: only advance_clock moves simulated time.
    "clock": {"start": START.isoformat(), "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "auto_scaling_groups": [
                        {
                            "name": "web",
                            "ami": AL2023,
                            "instance_type": "t3.large",
                            "min": 2,
                            "max": 6,
                            "desired": 4,
                            "tags": TAGS,
                            "patched_through": "2026-07-31",
                        },
                        {
                            "name": "api",
                            "ami": AL2023,
                            "min": 2,
                            "max": 6,
                            "desired": 4,
                            "tags": {"PatchGroup": "api-prod", "Environment": "production"},
                            "patched_through": "2026-07-31",
                            "alarm": {"name": "api-health", "at_percent": 50},
                        },
                    ]
                }
            },
        }
    ],
    "alarms": [{"name": "api-health", "region": REGION}],
}


def clients(server: Any) -> tuple[Any, Any, Any]:
    client = client_factory(server.url)
    return client("autoscaling"), client("ec2"), client("cloudwatch")


def group_instances(asg: Any, name: str) -> list[dict[str, Any]]:
    return list(asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"])


def new_version(ec2: Any, name: str, ami: str = BAKED) -> str:
    created = ec2.create_launch_template_version(
        LaunchTemplateName=name, SourceVersion="1", LaunchTemplateData={"ImageId": ami}
    )
    return str(created["LaunchTemplateVersion"]["VersionNumber"])


def refresh(asg: Any, name: str, refresh_id: str) -> dict[str, Any]:
    found = asg.describe_instance_refreshes(AutoScalingGroupName=name, InstanceRefreshIds=[refresh_id])
    return dict(found["InstanceRefreshes"][0])


def managed_ids(server: Any) -> set[str]:
    with server.world.request():
        return {i for i, inst in server.world.instances(ACCOUNT, REGION).items() if inst.registered}


def test_seeding_launch_template_group_and_managed_instances(fresh_server: Any) -> None:
    asg, ec2, _ = clients(fresh_server)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["LaunchTemplateName"] == "web"
    assert group["LaunchTemplate"]["Version"] == "1"
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (2, 6, 4)
    assert {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]} == {
        k: (v, True) for k, v in TAGS.items()
    }
    instances = group["Instances"]
    assert len(instances) == 4
    assert {(i["LifecycleState"], i["LaunchTemplate"]["Version"]) for i in instances} == {("InService", "1")}
    ids = [i["InstanceId"] for i in instances]
    described = asg.describe_auto_scaling_instances(InstanceIds=ids)["AutoScalingInstances"]
    assert {(d["AutoScalingGroupName"], d["LaunchTemplate"]["Version"]) for d in described} == {("web", "1")}
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    for instance in [i for r in reservations for i in r["Instances"]]:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["aws:autoscaling:groupName"] == "web"
        assert {k: tags[k] for k in TAGS} == TAGS
        assert (instance["ImageId"], instance["InstanceType"]) == (AL2023, "t3.large")
    version = ec2.describe_launch_template_versions(LaunchTemplateName="web")["LaunchTemplateVersions"][0]
    assert version["LaunchTemplateData"]["ImageId"] == AL2023
    assert set(ids) <= managed_ids(fresh_server)
    ssm = client_factory(fresh_server.url)("ssm")
    states = ssm.describe_instance_patch_states(InstanceIds=ids)["InstancePatchStates"]
    assert len(states) == 4 and all(s["InstalledCount"] > 0 for s in states)
    assert fresh_server.world.scenario.instance_count == 8


def test_source_version_inherits_and_default_version(fresh_server: Any) -> None:
    _, ec2, _ = clients(fresh_server)
    created = ec2.create_launch_template_version(
        LaunchTemplateName="web", SourceVersion="1", LaunchTemplateData={"ImageId": BAKED}
    )["LaunchTemplateVersion"]
    assert created["VersionNumber"] == 2
    data = created["LaunchTemplateData"]
    assert data["ImageId"] == BAKED and data["InstanceType"] == "t3.large"
    assert {t["Key"]: t["Value"] for t in data["TagSpecifications"][0]["Tags"]} == TAGS
    # Without SourceVersion a version has only what it is given.
    bare = ec2.create_launch_template_version(LaunchTemplateName="web", LaunchTemplateData={"ImageId": BAKED})
    assert "InstanceType" not in bare["LaunchTemplateVersion"]["LaunchTemplateData"]
    with pytest.raises(ClientError) as error:
        ec2.create_launch_template_version(
            LaunchTemplateName="web", SourceVersion="9", LaunchTemplateData={"ImageId": BAKED}
        )
    assert error.value.response["Error"]["Code"] == "InvalidLaunchTemplateId.VersionNotFound"
    ec2.modify_launch_template(LaunchTemplateName="web", DefaultVersion="2")
    template = ec2.describe_launch_templates(LaunchTemplateNames=["web"])["LaunchTemplates"][0]
    assert (template["DefaultVersionNumber"], template["LatestVersionNumber"]) == (2, 3)
    # The group stays on version 1, and so do its instances (moto reported the template's default).
    asg, _, _ = clients(fresh_server)
    assert {i["LaunchTemplate"]["Version"] for i in group_instances(asg, "web")} == {"1"}


def test_refresh_with_checkpoints_replaces_every_instance(fresh_server: Any) -> None:
    asg, ec2, _ = clients(fresh_server)
    old = {i["InstanceId"] for i in group_instances(asg, "web")}
    version = new_version(ec2, "web")
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "web", "Version": version}},
        Preferences={
            "MinHealthyPercentage": 50,
            "InstanceWarmup": 60,
            "CheckpointPercentages": [50, 100],
            "CheckpointDelay": 600,
        },
    )["InstanceRefreshId"]
    first = refresh(asg, "web", refresh_id)
    assert (first["Status"], first["PercentageComplete"], first["InstancesToUpdate"]) == ("Pending", 0, 4)
    assert first["Preferences"]["MaxHealthyPercentage"] == 100 and first["Preferences"]["SkipMatching"] is False

    advance_clock(fresh_server.url, 10)  # first batch: 2 of 4 (50% must stay healthy), warming up
    now = refresh(asg, "web", refresh_id)
    assert (now["Status"], now["PercentageComplete"], now["InstancesToUpdate"]) == ("InProgress", 0, 4)
    members = group_instances(asg, "web")
    assert len(members) == 4 and len({i["InstanceId"] for i in members} & old) == 2

    advance_clock(fresh_server.url, 60)  # warmed up: checkpoint 50% reached, waiting 600 s
    now = refresh(asg, "web", refresh_id)
    assert (now["Status"], now["PercentageComplete"], now["InstancesToUpdate"]) == ("InProgress", 50, 2)
    assert "checkpoint" in now["StatusReason"]
    advance_clock(fresh_server.url, 500)
    assert len({i["InstanceId"] for i in group_instances(asg, "web")} & old) == 2  # still waiting

    advance_clock(fresh_server.url, 200)  # the delay passed: the last batch launched and warmed up
    done = refresh(asg, "web", refresh_id)
    assert (done["Status"], done["PercentageComplete"], done["InstancesToUpdate"]) == ("Successful", 100, 0)
    assert done["EndTime"] > done["StartTime"]
    members = group_instances(asg, "web")
    assert not {i["InstanceId"] for i in members} & old
    assert {i["LaunchTemplate"]["Version"] for i in members} == {version}
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == version
    ids = [i["InstanceId"] for i in members]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    for instance in [i for r in reservations for i in r["Instances"]]:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert (instance["ImageId"], instance["InstanceType"], instance["State"]["Name"]) == (
            BAKED,
            "t3.large",
            "running",
        )
        assert tags["aws:autoscaling:groupName"] == "web" and tags["PatchGroup"] == "web-prod"
    gone = ec2.describe_instances(InstanceIds=sorted(old))["Reservations"]
    assert {i["State"]["Name"] for r in gone for i in r["Instances"]} == {"terminated"}
    # A baked AMI the World does not know: not SSM-managed (World._launched_later decides).
    assert not set(ids) & managed_ids(fresh_server)


def test_refresh_to_the_same_version_and_skip_matching(fresh_server: Any) -> None:
    asg, _, _ = clients(fresh_server)
    old = {i["InstanceId"] for i in group_instances(asg, "web")}
    desired = {"LaunchTemplate": {"LaunchTemplateName": "web", "Version": "1"}}
    skip = asg.start_instance_refresh(
        AutoScalingGroupName="web", DesiredConfiguration=desired, Preferences={"SkipMatching": True}
    )["InstanceRefreshId"]
    advance_clock(fresh_server.url, 10)
    skipped = refresh(asg, "web", skip)
    assert (skipped["Status"], skipped["PercentageComplete"], skipped["InstancesToUpdate"]) == ("Successful", 100, 0)
    assert {i["InstanceId"] for i in group_instances(asg, "web")} == old

    every = asg.start_instance_refresh(
        AutoScalingGroupName="web", DesiredConfiguration=desired, Preferences={"MinHealthyPercentage": 0}
    )["InstanceRefreshId"]
    advance_clock(fresh_server.url, 400)  # one batch of 4, the group's 300 s grace period as warm-up
    assert refresh(asg, "web", every)["Status"] == "Successful"
    members = {i["InstanceId"] for i in group_instances(asg, "web")}
    assert len(members) == 4 and not members & old
    # Launched from the group's own AMI: managed, with the group's patch state.
    assert members <= managed_ids(fresh_server)
    ssm = client_factory(fresh_server.url)("ssm")
    states = ssm.describe_instance_patch_states(InstanceIds=sorted(members))["InstancePatchStates"]
    assert len(states) == 4 and all(s["InstalledCount"] > 0 for s in states)


def test_start_errors(fresh_server: Any) -> None:
    asg, ec2, _ = clients(fresh_server)
    version = new_version(ec2, "web")
    latest = {"LaunchTemplate": {"LaunchTemplateName": "web", "Version": "$Latest"}}
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(
            AutoScalingGroupName="web", DesiredConfiguration=latest, Preferences={"AutoRollback": True}
        )
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "$Latest" in error.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(AutoScalingGroupName="web", Preferences={"AutoRollback": True})
    assert "DesiredConfiguration parameter is empty" in error.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(AutoScalingGroupName="web", Preferences={"CheckpointDelay": 60})
    assert error.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 101})
    assert error.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(AutoScalingGroupName="nope")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    # $Latest without AutoRollback is fine; a second refresh while it runs is not.
    asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration=latest)
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(
            AutoScalingGroupName="web",
            DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "web", "Version": version}},
        )
    assert error.value.response["Error"]["Code"] == "InstanceRefreshInProgress"
    # Another group is free, and a refresh without a desired configuration cannot be rolled back.
    asg.start_instance_refresh(AutoScalingGroupName="api")
    with pytest.raises(ClientError) as error:
        asg.rollback_instance_refresh(AutoScalingGroupName="api")
    assert error.value.response["Error"]["Code"] == "IrreversibleInstanceRefresh"


def test_alarm_at_percent_triggers_auto_rollback(fresh_server: Any) -> None:
    asg, ec2, cloudwatch = clients(fresh_server)
    old = {i["InstanceId"] for i in group_instances(asg, "api")}
    version = new_version(ec2, "api")
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="api",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "api", "Version": version}},
        Preferences={
            "MinHealthyPercentage": 75,  # one at a time
            "InstanceWarmup": 60,
            "AutoRollback": True,
            "AlarmSpecification": {"Alarms": ["api-health"]},
        },
    )["InstanceRefreshId"]
    advance_clock(fresh_server.url, 5 + 60)  # one replaced: 25%
    assert refresh(asg, "api", refresh_id)["PercentageComplete"] == 25
    assert cloudwatch.describe_alarms(AlarmNames=["api-health"])["MetricAlarms"][0]["StateValue"] == "OK"
    advance_clock(fresh_server.url, 60)  # two replaced: 50%, the alarm fires, the refresh rolls back
    now = refresh(asg, "api", refresh_id)
    assert now["Status"] == "RollbackInProgress"
    assert cloudwatch.describe_alarms(AlarmNames=["api-health"])["MetricAlarms"][0]["StateValue"] == "ALARM"
    details = now["RollbackDetails"]
    assert "api-health" in details["RollbackReason"]
    # The values when the rollback started, as AWS documents them: half done, two still to update.
    assert (details["PercentageCompleteOnRollback"], details["InstancesToUpdateOnRollback"]) == (50, 2)
    assert now["InstancesToUpdate"] == 2  # not yet updated by the refresh: nothing to roll back there
    advance_clock(fresh_server.url, 60)
    now = refresh(asg, "api", refresh_id)
    assert now["Status"] == "RollbackInProgress"
    assert now["RollbackDetails"]["PercentageCompleteOnRollback"] == 50  # frozen at the start
    advance_clock(fresh_server.url, 60)
    done = refresh(asg, "api", refresh_id)
    assert done["Status"] == "RollbackSuccessful" and "EndTime" in done
    assert done["PercentageComplete"] == 0
    assert (
        done["RollbackDetails"]["PercentageCompleteOnRollback"],
        done["RollbackDetails"]["InstancesToUpdateOnRollback"],
    ) == (50, 2)
    assert done["RollbackDetails"]["ProgressDetailsOnRollback"]["LivePoolProgress"] == {
        "PercentageComplete": 50,
        "InstancesToUpdate": 2,
    }
    members = group_instances(asg, "api")
    assert {i["LaunchTemplate"]["Version"] for i in members} == {"1"}
    assert len({i["InstanceId"] for i in members} & old) == 2  # two never replaced, two put back
    ids = [i["InstanceId"] for i in members]
    images = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}
    assert images == {AL2023}
    assert set(ids) <= managed_ids(fresh_server)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["api"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == "1"
    assert cloudwatch.describe_alarms(AlarmNames=["api-health"])["MetricAlarms"][0]["StateValue"] == "OK"


def test_manual_rollback_and_cancel(fresh_server: Any) -> None:
    asg, ec2, _ = clients(fresh_server)
    version = new_version(ec2, "web")
    desired = {"LaunchTemplate": {"LaunchTemplateName": "web", "Version": version}}
    prefs = {"MinHealthyPercentage": 50, "InstanceWarmup": 60}
    rolled = asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration=desired, Preferences=prefs)
    advance_clock(fresh_server.url, 70)  # two replaced, the next two launched and warming up
    assert refresh(asg, "web", rolled["InstanceRefreshId"])["PercentageComplete"] == 50
    assert asg.rollback_instance_refresh(AutoScalingGroupName="web")["InstanceRefreshId"] == rolled["InstanceRefreshId"]
    now = refresh(asg, "web", rolled["InstanceRefreshId"])
    assert now["Status"] == "RollbackInProgress" and now["RollbackDetails"]["InstancesToUpdateOnRollback"] == 2
    with pytest.raises(ClientError) as error:
        asg.rollback_instance_refresh(AutoScalingGroupName="web")
    assert error.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"
    advance_clock(fresh_server.url, 60)
    assert refresh(asg, "web", rolled["InstanceRefreshId"])["RollbackDetails"]["PercentageCompleteOnRollback"] == 50
    advance_clock(fresh_server.url, 60)
    assert refresh(asg, "web", rolled["InstanceRefreshId"])["Status"] == "RollbackSuccessful"
    assert {i["LaunchTemplate"]["Version"] for i in group_instances(asg, "web")} == {"1"}

    cancelled = asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration=desired, Preferences=prefs)
    advance_clock(fresh_server.url, 10)  # a batch of two warming up
    assert (
        asg.cancel_instance_refresh(AutoScalingGroupName="web")["InstanceRefreshId"] == (cancelled["InstanceRefreshId"])
    )
    assert refresh(asg, "web", cancelled["InstanceRefreshId"])["Status"] == "Cancelling"
    advance_clock(fresh_server.url, 60)
    now = refresh(asg, "web", cancelled["InstanceRefreshId"])
    assert (now["Status"], now["PercentageComplete"]) == ("Cancelled", 50)
    # Cancelling does not roll back: two instances stay on the new version, and nothing else is replaced.
    versions = sorted(i["LaunchTemplate"]["Version"] for i in group_instances(asg, "web"))
    assert versions == sorted(["1", "1", version, version])
    advance_clock(fresh_server.url, 3600)
    assert sorted(i["LaunchTemplate"]["Version"] for i in group_instances(asg, "web")) == versions
    with pytest.raises(ClientError) as error:
        asg.cancel_instance_refresh(AutoScalingGroupName="web")
    assert error.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"


def test_describe_instance_refreshes_pages_newest_first(fresh_server: Any) -> None:
    asg, _, _ = clients(fresh_server)
    started = []
    for _ in range(3):
        started.append(asg.start_instance_refresh(AutoScalingGroupName="web")["InstanceRefreshId"])
        asg.cancel_instance_refresh(AutoScalingGroupName="web", WaitForTransitioningInstances=False)
        advance_clock(fresh_server.url, 1)
    first = asg.describe_instance_refreshes(AutoScalingGroupName="web", MaxRecords=2)
    assert [r["InstanceRefreshId"] for r in first["InstanceRefreshes"]] == started[::-1][:2]
    assert {r["Status"] for r in first["InstanceRefreshes"]} == {"Cancelled"}
    second = asg.describe_instance_refreshes(AutoScalingGroupName="web", MaxRecords=2, NextToken=first["NextToken"])
    assert [r["InstanceRefreshId"] for r in second["InstanceRefreshes"]] == [started[0]]
    assert "NextToken" not in second
    assert asg.describe_instance_refreshes(AutoScalingGroupName="api")["InstanceRefreshes"] == []
    with pytest.raises(ClientError) as error:
        asg.describe_instance_refreshes(AutoScalingGroupName="web", NextToken="not-a-token")
    assert error.value.response["Error"]["Code"] == "InvalidNextToken"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"desired": 7}, "auto_scaling_groups[0].desired: 7 is not between min (2) and max (6)"),
        ({"ami": "ami-0fffffffffffffff1"}, "auto_scaling_groups[0].ami: ami-0fffffffffffffff1 is not listed"),
        ({"alarm": {"name": "x"}}, "auto_scaling_groups[0].alarm: 'at_percent' is a required property"),
        ({"min": -1}, "auto_scaling_groups[0].min: -1 is less than the minimum of 0"),
        ({"rollback_fails": "yes"}, "auto_scaling_groups[0].rollback_fails: 'yes' is not of type 'boolean'"),
    ],
)
def test_scenario_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    document = copy.deepcopy(SCENARIO)
    document["accounts"][0]["regions"][REGION]["auto_scaling_groups"][0].update(change)
    with pytest.raises(ScenarioError, match=r"accounts\[0\]\.regions\.us-east-1\.") as error:
        parse_scenario(document, source="asg.yaml")
    assert message in str(error.value)


def test_a_repeated_client_token_returns_the_first_version_and_other_parameters_are_refused(fresh_server: Any) -> None:
    _, ec2, _ = clients(fresh_server)

    def create(ami: str, token: str) -> Any:
        return ec2.create_launch_template_version(
            LaunchTemplateName="web", SourceVersion="1", LaunchTemplateData={"ImageId": ami}, ClientToken=token
        )

    first = create(BAKED, "retry-me")["LaunchTemplateVersion"]["VersionNumber"]
    assert create(BAKED, "retry-me")["LaunchTemplateVersion"]["VersionNumber"] == first
    assert create(BAKED, "another")["LaunchTemplateVersion"]["VersionNumber"] == first + 1
    with pytest.raises(ClientError) as caught:
        create(AL2023, "retry-me")
    assert caught.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="web")["LaunchTemplateVersions"]
    assert len(versions) == 3


def test_an_ssm_parameter_ami_cannot_be_rolled_back_and_replacing_calls_are_logged(fresh_server: Any) -> None:
    """A group whose launch template takes its AMI from a Systems Manager parameter: AutoRollback is refused
    (IrreversibleInstanceRefresh naming the parameter), a refresh without it runs but cannot be rolled back. The
    request log lists each StartInstanceRefresh and CreateLaunchTemplateVersion with its group or template."""
    asg, ec2, _ = clients(fresh_server)
    parameter = "/patchcycle/web/ami"
    created = ec2.create_launch_template_version(
        LaunchTemplateName="web", SourceVersion="1", LaunchTemplateData={"ImageId": f"resolve:ssm:{parameter}"}
    )
    assert created["LaunchTemplateVersion"]["VersionNumber"] == 2
    asg.update_auto_scaling_group(
        AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateName": "web", "Version": "2"}
    )
    baked = new_version(ec2, "web")
    desired = {"LaunchTemplate": {"LaunchTemplateName": "web", "Version": baked}}
    with pytest.raises(ClientError) as error:
        asg.start_instance_refresh(
            AutoScalingGroupName="web", DesiredConfiguration=desired, Preferences={"AutoRollback": True}
        )
    assert error.value.response["Error"]["Code"] == "IrreversibleInstanceRefresh"
    assert parameter in error.value.response["Error"]["Message"]
    assert asg.describe_instance_refreshes(AutoScalingGroupName="web")["InstanceRefreshes"] == []
    started = asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration=desired)
    with pytest.raises(ClientError) as error:
        asg.rollback_instance_refresh(AutoScalingGroupName="web")
    assert error.value.response["Error"]["Code"] == "IrreversibleInstanceRefresh"
    # The same AutoRollback on a group on an AMI id is accepted.
    api = new_version(ec2, "api")
    asg.start_instance_refresh(
        AutoScalingGroupName="api",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "api", "Version": api}},
        Preferences={"AutoRollback": True},
    )

    log = sandbox_requests(fresh_server.url)
    refreshes = [(r["resource"], r["status"]) for r in log if r["operation"] == "autoscaling:StartInstanceRefresh"]
    assert refreshes == [("web", 400), ("web", 200), ("api", 200)]
    versions = [r["resource"] for r in log if r["operation"] == "ec2:CreateLaunchTemplateVersion"]
    assert versions == ["web", "web", "api"]
    assert started["InstanceRefreshId"]


def test_an_alarm_during_bake_time_rolls_the_refresh_back(fresh_server: Any) -> None:
    """After the last batch the refresh is Baking for BakeTime, still watching its alarms: one in ALARM then rolls
    it back (AutoRollback), as it would during a batch."""
    asg, ec2, cloudwatch = clients(fresh_server)
    old = {i["InstanceId"] for i in group_instances(asg, "web")}
    version = new_version(ec2, "web")
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "web", "Version": version}},
        Preferences={
            "MinHealthyPercentage": 50,
            "InstanceWarmup": 60,
            "BakeTime": 600,
            "AutoRollback": True,
            "AlarmSpecification": {"Alarms": ["api-health"]},
        },
    )["InstanceRefreshId"]
    for _ in range(10):
        advance_clock(fresh_server.url, 30)
        if refresh(asg, "web", refresh_id)["Status"] == "Baking":
            break
    baking = refresh(asg, "web", refresh_id)
    assert baking["Status"] == "Baking" and baking["PercentageComplete"] == 100
    advance_clock(fresh_server.url, 300)  # half the bake time: still baking
    assert refresh(asg, "web", refresh_id)["Status"] == "Baking"
    cloudwatch.set_alarm_state(AlarmName="api-health", StateValue="ALARM", StateReason="5xx during bake")
    advance_clock(fresh_server.url, 1)
    now = refresh(asg, "web", refresh_id)
    assert now["Status"] == "RollbackInProgress" and "api-health" in now["RollbackDetails"]["RollbackReason"]
    for _ in range(10):
        advance_clock(fresh_server.url, 60)
        if refresh(asg, "web", refresh_id)["Status"] != "RollbackInProgress":
            break
    assert refresh(asg, "web", refresh_id)["Status"] == "RollbackSuccessful"
    back = group_instances(asg, "web")
    assert len(back) == 4 and not {i["InstanceId"] for i in back} & old  # replaced again, onto the old version
    assert {i["LaunchTemplate"]["Version"] for i in back} == {"1"}


def _knob_server(make_server: Any, **knobs: Any) -> Any:
    scenario = copy.deepcopy(SCENARIO)
    scenario["accounts"][0]["regions"][REGION]["auto_scaling_groups"][1].update(knobs)
    return make_server(scenario)


def test_a_failing_rollback_ends_rollback_failed(sandbox_factory: Any) -> None:
    server = _knob_server(sandbox_factory, rollback_fails=True)
    asg, ec2, cloudwatch = clients(server)
    version = new_version(ec2, "api")
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="api",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "api", "Version": version}},
        Preferences={
            "MinHealthyPercentage": 75,
            "InstanceWarmup": 60,
            "AutoRollback": True,
            "AlarmSpecification": {"Alarms": ["api-health"]},
        },
    )["InstanceRefreshId"]
    advance_clock(server.url, 5 + 120)  # 50%: the alarm fires, the rollback starts
    assert refresh(asg, "api", refresh_id)["Status"] == "RollbackInProgress"
    advance_clock(server.url, 60)  # the rollback's first batch does not become healthy
    failed = refresh(asg, "api", refresh_id)
    assert failed["Status"] == "RollbackFailed" and "EndTime" in failed
    assert "rollback failed" in failed["StatusReason"] and "both configurations" in failed["StatusReason"]
    assert (
        failed["RollbackDetails"]["PercentageCompleteOnRollback"],
        failed["RollbackDetails"]["InstancesToUpdateOnRollback"],
    ) == (50, 2)
    # Left half way: one instance of the refresh still on the new version, the group's configuration unchanged.
    versions = sorted(i["LaunchTemplate"]["Version"] for i in group_instances(asg, "api"))
    assert versions == sorted(["1", "1", "1", version])
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["api"])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == "1"
    assert cloudwatch.describe_alarms(AlarmNames=["api-health"])["MetricAlarms"][0]["StateValue"] == "OK"
    advance_clock(server.url, 600)
    assert refresh(asg, "api", refresh_id)["Status"] == "RollbackFailed"


@pytest.mark.parametrize("auto_rollback", [False, True])
def test_unhealthy_new_instances_fail_the_refresh_without_an_alarm(sandbox_factory: Any, auto_rollback: bool) -> None:
    server = _knob_server(sandbox_factory, new_instances_unhealthy=True)
    asg, ec2, cloudwatch = clients(server)
    version = new_version(ec2, "api")
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="api",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "api", "Version": version}},
        Preferences={"MinHealthyPercentage": 75, "InstanceWarmup": 60, "AutoRollback": auto_rollback},
    )["InstanceRefreshId"]
    advance_clock(server.url, 5 + 10)
    assert refresh(asg, "api", refresh_id)["Status"] == "InProgress"
    advance_clock(server.url, 60)  # the first new instance's warm-up is over and it is not healthy
    now = refresh(asg, "api", refresh_id)
    assert now["PercentageComplete"] == 0
    assert "health checks" in now["StatusReason"]
    if auto_rollback:
        assert now["Status"] == "RollbackInProgress"
        assert "health checks" in now["RollbackDetails"]["RollbackReason"]
        assert (
            now["RollbackDetails"]["PercentageCompleteOnRollback"],
            now["RollbackDetails"]["InstancesToUpdateOnRollback"],
        ) == (0, 4)
        advance_clock(server.url, 60)
        assert refresh(asg, "api", refresh_id)["Status"] == "RollbackSuccessful"
    else:
        assert now["Status"] == "Failed" and "EndTime" in now
    # Either way the group is back on version 1 at full size, and no alarm was involved.
    members = group_instances(asg, "api")
    assert len(members) == 4 and {i["LaunchTemplate"]["Version"] for i in members} == {"1"}
    assert cloudwatch.describe_alarms(AlarmNames=["api-health"])["MetricAlarms"][0]["StateValue"] == "OK"

"""refresh_groups on the sandbox: each Auto Scaling group in turn onto a new launch template version, a group on
$Latest refused, an alarm during the second group's refresh rolling it back and halting the groups after it."""

from __future__ import annotations

from typing import Any

import boto3
import pandas as pd
import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import BAKE_PLAN_COLUMNS, GROUP_PLAN_COLUMNS
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS
from patchcycle.operators.refresh_groups import RefreshGroupsOperator
from patchcycle.readback.immutable import read_refreshes
from patchcycle.run_artifacts import BAKE_PLAN, BAKE_RESULTS, GROUP_PLAN, INVENTORY_SUMMARY
from patchcycle.run_records import InventorySummary
from tests.conftest import first_trigger_payload
from tests.operators.install_helpers import (
    ACCOUNT,
    AL2023,
    REGION,
    TARGET,
    context,
    cycle_config,
    run_artifacts,
    s3_root,
    scenario,
)

ALARM = "web-asg-health"
GROUPS = {"aaa-latest": 2, "api-asg": 3, "web-asg": 4, "zzz-asg": 2}  # refreshed in name order


def _group(name: str, desired: int) -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": name,
        "ami": AL2023,
        "instance_type": "t3.medium",
        "min": 1,
        "max": 8,
        "desired": desired,
        "tags": {"Environment": "production", "PatchGroup": "web"},
        "patched_through": "2026-09-30",
    }
    if name == "web-asg":
        group["alarm"] = {"name": ALARM, "at_percent": 50}
    return group


BAKED = "ami-0b5a4e0000000b001"  # the bake's AMI: the groups are refreshed onto it
SCENARIO = scenario("refresh", alarms=[{"name": ALARM, "state": "OK"}])
SCENARIO["amis"][BAKED] = {"os": "AMAZON_LINUX_2023"}
SCENARIO["clock"]["speed"] = 200.0  # a refresh's batches and checkpoints pass in a fraction of a second
SCENARIO["accounts"][0]["regions"][REGION]["auto_scaling_groups"] = [_group(n, d) for n, d in GROUPS.items()]
SANDBOX_DROP_FAULTS = True


def _client(server: SandboxServer, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _instances(server: SandboxServer) -> dict[str, list[str]]:
    found = _client(server, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: sorted(i["InstanceId"] for i in g["Instances"]) for g in found}


def _planned_run(server: SandboxServer, run_id: str, **overrides: Any) -> dict[str, Any]:
    """A run as plan_install and bake_images leave it: one bake of AL2023, baked as BAKED."""
    config = cycle_config(
        s3_root(run_id),
        **{
            "health_alarms": [ALARM],
            "refresh_instance_warmup_seconds": 10,
            "refresh_checkpoint_delay_seconds": 5,
            "refresh_min_healthy_percentage": 50,
            "refresh_bake_time_seconds": 5,
            **overrides,
        },
    )
    artifacts = run_artifacts(config, run_id)
    artifacts.write(
        INVENTORY_SUMMARY,
        InventorySummary(
            aws_conn_id=TARGET.aws_conn_id,
            region_name=REGION,
            account_id=ACCOUNT,
            resources=0,
            in_scope=0,
            by_type={},
            patchable_in_scope=0,
        ),
        target=TARGET,
    )
    where = {"account_id": ACCOUNT, "region": REGION}
    bake = {
        **where,
        "bake_id": "b01",
        "image_id": AL2023,
        "platform_type": "Linux",
        "platform_name": "AL2023",
        "instance_type": "t3.medium",
        "patch_ids": "ALAS-1",
        "auto_scaling_groups": ";".join(GROUPS),
        "instances": sum(GROUPS.values()),
    }
    artifacts.write(BAKE_PLAN, typed_frame([bake], BAKE_PLAN_COLUMNS))
    result = {
        **where,
        "bake_id": "b01",
        "source_image_id": AL2023,
        "image_id": BAKED,
        "execution_id": "e-1",
        "status": "Success",
        "builder_instance_id": "i-b",
        "patch_ids": "ALAS-1",
        "baked": True,
        "reason": "",
    }
    artifacts.write(BAKE_RESULTS, typed_frame([result], BAKE_RESULT_COLUMNS), target=TARGET)
    rows = [
        {
            **where,
            "auto_scaling_group": name,
            "launch_template": name,
            "launch_template_version": "1",
            "image_id": AL2023,
            "bake_id": "b01",
            "instance_ids": ";".join(ids),
            "instances": len(ids),
        }
        for name, ids in _instances(server).items()
    ]
    artifacts.write(GROUP_PLAN, typed_frame(rows, GROUP_PLAN_COLUMNS))
    return config


def _run_to_end(operator: RefreshGroupsOperator, ctx: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the task as Airflow would: each deferral's trigger to its event, the task resumed with it."""
    events: list[dict[str, Any]] = []
    event: dict[str, Any] | None = None
    while True:
        try:
            return operator.execute(ctx, event=event), events
        except TaskDeferred as deferred:
            event = first_trigger_payload(deferred.trigger, timeout=120)
            events.append(event)


@pytest.mark.slow
def test_an_alarm_during_the_second_groups_refresh_rolls_it_back_and_halts_the_rest(server: SandboxServer) -> None:
    run_id = "manual__refresh-alarm"
    ec2 = _client(server, "ec2")
    scaling = _client(server, "autoscaling")
    template = ec2.describe_launch_templates(LaunchTemplateNames=["aaa-latest"])["LaunchTemplates"][0]
    scaling.update_auto_scaling_group(
        AutoScalingGroupName="aaa-latest",
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
    )
    config = _planned_run(server, run_id)
    before = _instances(server)
    summary, events = _run_to_end(RefreshGroupsOperator(task_id="refresh_groups", config=config), context(run_id))

    refreshes = {r.group: r for r in read_refreshes(run_artifacts(config, run_id)).values()}  # one region
    assert summary["by_state"] == {"Successful": 1, "RollbackSuccessful": 1, "refused": 1, "halted": 1}
    assert [e["group"] for e in events] == ["api-asg", "web-asg"]  # two refreshes waited for, one after the other
    # $Latest: refused, not refreshed (its refresh could not roll back), and it halts nothing.
    latest = refreshes["aaa-latest"]
    assert latest.state == "refused" and "$Latest" in latest.reason and latest.refresh_id == ""
    # The first refreshed group: replaced onto version 2, now the template's default.
    api = refreshes["api-asg"]
    assert api.status == "Successful" and api.version == "2" and api.default_version_set
    assert len(api.new_instances) == GROUPS["api-asg"] and not set(api.new_instances) & set(before["api-asg"])
    default = ec2.describe_launch_templates(LaunchTemplateNames=["api-asg"])["LaunchTemplates"][0]
    assert default["DefaultVersionNumber"] == 2
    refresh = scaling.describe_instance_refreshes(AutoScalingGroupName="api-asg")["InstanceRefreshes"][0]
    assert refresh["DesiredConfiguration"]["LaunchTemplate"]["Version"] == "2"
    assert refresh["Preferences"]["AutoRollback"] and refresh["Preferences"]["SkipMatching"]
    assert refresh["Preferences"]["AlarmSpecification"] == {"Alarms": [ALARM]}
    assert refresh["Preferences"]["BakeTime"] == 5  # the alarms still watched after the last batch
    # Later scale-outs launch the baked AMI: the default version's ImageId is the bake's.
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateName="api-asg", Versions=["$Default"])[
        "LaunchTemplateVersions"
    ]
    assert version["VersionNumber"] == 2 and version["LaunchTemplateData"]["ImageId"] == api.image_id == BAKED
    assert refresh["Preferences"]["CheckpointPercentages"] == api.checkpoints and api.checkpoints[-1] == 100
    # The second: its alarm fired half-way, the refresh rolled back onto the old version.
    web = refreshes["web-asg"]
    assert web.status == "RollbackSuccessful" and ALARM in web.rollback_reason, web
    assert not web.default_version_set and web.new_instances == []
    web_template = ec2.describe_launch_templates(LaunchTemplateNames=["web-asg"])["LaunchTemplates"][0]
    assert web_template["DefaultVersionNumber"] == 1
    # The groups after it: not refreshed, and why.
    zzz = refreshes["zzz-asg"]
    assert zzz.state == "halted" and "web-asg rolled back" in zzz.reason and ALARM in zzz.reason
    assert _instances(server)["zzz-asg"] == before["zzz-asg"]
    assert all(r.api_calls > 0 for r in (api, web))
    assert pd.Timestamp(api.ended_at) > pd.Timestamp(api.started_at)

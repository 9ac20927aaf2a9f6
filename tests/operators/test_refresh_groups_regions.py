"""refresh_groups with Auto Scaling groups of one name in two regions: two groups, two refreshes, two records (a
group name is unique only within its account and region)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import BAKE_PLAN_COLUMNS, GROUP_PLAN_COLUMNS
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS, refresh_key
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.refresh_groups import RefreshGroupsOperator
from patchcycle.readback.immutable import read_refreshes
from patchcycle.run_artifacts import BAKE_PLAN, BAKE_RESULTS, GROUP_PLAN, INVENTORY, INVENTORY_SUMMARY
from patchcycle.run_records import InventorySummary
from tests.conftest import first_trigger_payload
from tests.operators.install_helpers import (
    ACCOUNT,
    AL2023,
    REGION,
    WINDOWS,
    context,
    cycle_config,
    run_artifacts,
    s3_root,
    scenario,
)

WEST = "eu-west-1"
REGIONS = (REGION, WEST)
SIZES = {REGION: 2, WEST: 3}
GROUP = "web-asg"


def _group(desired: int) -> dict[str, Any]:
    return {
        "name": GROUP,
        "ami": AL2023,
        "instance_type": "t3.medium",
        "min": 1,
        "max": 8,
        "desired": desired,
        "tags": {"Environment": "production", "PatchGroup": "web"},
        "patched_through": "2026-09-30",
    }


SCENARIO = scenario("refresh-regions")
SCENARIO["clock"]["speed"] = 200.0
SCENARIO["accounts"][0]["regions"][REGION]["auto_scaling_groups"] = [_group(SIZES[REGION])]
SCENARIO["accounts"][0]["regions"][WEST] = {"auto_scaling_groups": [_group(SIZES[WEST])]}
SANDBOX_DROP_FAULTS = True


def _client(server: SandboxServer, service: str, region: str) -> Any:
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _members(server: SandboxServer, region: str) -> list[str]:
    found = _client(server, "autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    return sorted(i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"])


def _planned_run(server: SandboxServer, run_id: str) -> dict[str, Any]:
    """Both regions as plan_install and bake_images leave them: a bake of AL2023 in each (its "baked" image is
    AL2023 itself: the new version differs, so SkipMatching still replaces every instance)."""
    config = cycle_config(
        s3_root(run_id),
        regions=REGIONS,
        refresh_instance_warmup_seconds=10,
        refresh_checkpoint_delay_seconds=5,
        refresh_min_healthy_percentage=50,
    )
    artifacts = run_artifacts(config, run_id)
    bakes, groups = [], []
    for number, region in enumerate(REGIONS, start=1):
        target = Target("aws_default", region)
        summary = InventorySummary(
            aws_conn_id="aws_default",
            region_name=region,
            account_id=ACCOUNT,
            resources=0,
            in_scope=0,
            by_type={},
            patchable_in_scope=0,
        )
        artifacts.write(INVENTORY_SUMMARY, summary, target=target)
        where, bake_id, ids = {"account_id": ACCOUNT, "region": region}, f"b0{number}", _members(server, region)
        bakes.append(
            {
                **where,
                "bake_id": bake_id,
                "image_id": AL2023,
                "platform_type": "Linux",
                "platform_name": "AL2023",
                "instance_type": "t3.medium",
                "patch_ids": "ALAS-1",
                "auto_scaling_groups": GROUP,
                "instances": len(ids),
            }
        )
        result = {
            **where,
            "bake_id": bake_id,
            "source_image_id": AL2023,
            "image_id": AL2023,
            "execution_id": f"e-{number}",
            "status": "Success",
            "builder_instance_id": "i-b",
            "patch_ids": "ALAS-1",
            "baked": True,
            "reason": "",
        }
        artifacts.write(BAKE_RESULTS, typed_frame([result], BAKE_RESULT_COLUMNS), target=target)
        groups.append(
            {
                **where,
                "auto_scaling_group": GROUP,
                "launch_template": GROUP,
                "launch_template_version": "1",
                "image_id": AL2023,
                "bake_id": bake_id,
                "instance_ids": ";".join(ids),
                "instances": len(ids),
            }
        )
    artifacts.write(BAKE_PLAN, typed_frame(bakes, BAKE_PLAN_COLUMNS))
    artifacts.write(GROUP_PLAN, typed_frame(groups, GROUP_PLAN_COLUMNS))
    return config


@pytest.mark.slow
def test_a_group_name_in_two_regions_is_refreshed_in_each(server: SandboxServer) -> None:
    run_id = "manual__two-regions"
    config = _planned_run(server, run_id)
    before = {region: _members(server, region) for region in REGIONS}
    operator, ctx, event = RefreshGroupsOperator(task_id="refresh_groups", config=config), context(run_id), None
    waited = []
    while True:
        try:
            summary = operator.execute(ctx, event=event)
            break
        except TaskDeferred as deferred:
            waited.append(deferred.trigger.region_name)  # type: ignore[attr-defined]
            event = first_trigger_payload(deferred.trigger, timeout=120)

    assert summary == {"groups": 2, "by_state": {"Successful": 2}}
    assert waited == sorted(REGIONS)  # region order; each region its own refresh, not the other one's record
    refreshes = read_refreshes(run_artifacts(config, run_id))
    assert set(refreshes) == {refresh_key(ACCOUNT, region, GROUP) for region in REGIONS}
    for region in REGIONS:
        refresh = refreshes[refresh_key(ACCOUNT, region, GROUP)]
        assert refresh.region == region and refresh.old_instances == before[region]
        assert sorted(refresh.new_instances) == _members(server, region)
        assert len(refresh.new_instances) == SIZES[region] and not set(refresh.new_instances) & set(before[region])
        assert refresh.default_version_set
    ids = [refreshes[refresh_key(ACCOUNT, region, GROUP)].refresh_id for region in REGIONS]
    assert len(set(ids)) == 2


@pytest.mark.slow
def test_the_inventory_names_the_ami_each_group_launches_now(server: SandboxServer) -> None:
    """What the immutable path bakes: the AMI of the version the group launches now ($Latest resolved), not the one
    its members run."""
    ec2, scaling = _client(server, "ec2", WEST), _client(server, "autoscaling", WEST)
    latest = ec2.create_launch_template_version(
        LaunchTemplateName=GROUP, SourceVersion="1", LaunchTemplateData={"ImageId": WINDOWS}
    )["LaunchTemplateVersion"]["VersionNumber"]
    scaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateName": GROUP, "Version": "$Latest"}
    )
    run_id = "manual__launch-ami"
    config = cycle_config(s3_root(run_id), regions=REGIONS, mode="scan")
    for region in REGIONS:
        InventoryOperator(task_id="inventory", region_name=region, config=config).execute(context(run_id))
    artifacts = run_artifacts(config, run_id)
    columns = ["image_id", "group_launch_template_version", "group_image_id"]
    for region, launches in ((WEST, ["$Latest", WINDOWS]), (REGION, ["2", AL2023])):
        table = artifacts.read(INVENTORY, target=Target("aws_default", region))
        members = table[table["auto_scaling_group"] == GROUP]
        assert len(members) == SIZES[region] and latest > 2
        assert {tuple(row) for row in members[columns].values.tolist()} == {(AL2023, *launches)}, region

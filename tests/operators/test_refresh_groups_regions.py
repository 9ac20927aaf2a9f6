"""refresh_groups with Auto Scaling groups of one name in two regions: two groups, two refreshes, two records (a
group name is unique only within its account and region)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.immutable_rollout import refresh_key
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.readback.immutable import read_refreshes
from patchcycle.run_artifacts import INVENTORY
from tests.operators.immutable_helpers import asg, baked_run, client, group_members, refresh_scenario, refresh_to_end
from tests.operators.install_helpers import (
    ACCOUNT,
    AL2023,
    REGION,
    WINDOWS,
    context,
    cycle_config,
    run_artifacts,
    s3_root,
)

WEST = "eu-west-1"
REGIONS = (REGION, WEST)
SIZES = {REGION: 2, WEST: 3}
GROUP = "web-asg"
SCENARIO = refresh_scenario("refresh-regions", [asg(GROUP, SIZES[REGION])])
SCENARIO["accounts"][0]["regions"][WEST] = {"auto_scaling_groups": [asg(GROUP, SIZES[WEST])]}
SANDBOX_DROP_FAULTS = True


def _members(server: SandboxServer, region: str) -> list[str]:
    return group_members(server, [GROUP], region)[GROUP]


@pytest.mark.slow
def test_a_group_name_in_two_regions_is_refreshed_in_each(server: SandboxServer) -> None:
    run_id = "manual__two-regions"
    config = baked_run(server, run_id, [GROUP], regions=REGIONS)
    before = {region: _members(server, region) for region in REGIONS}
    deferrals: list[TaskDeferred] = []
    summary, _ = refresh_to_end(config, run_id, deferrals)
    waited = [deferred.trigger.region_name for deferred in deferrals]  # type: ignore[attr-defined]

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
    ec2, scaling = client(server, "ec2", WEST), client(server, "autoscaling", WEST)
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

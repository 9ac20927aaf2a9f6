"""The Auto Scaling hook against the sandbox: every group of a region with its instances, across pages."""

from __future__ import annotations

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.hooks.auto_scaling import GROUPS_PER_PAGE, AutoScalingHook
from tests.conftest import client_factory, sandbox_calls

REGION = "eu-west-1"
AMI = "ami-0a1b2c3d4e5f60001"  # the default scenario's Amazon Linux AMI
GROUPS = GROUPS_PER_PAGE + 2  # more than one page


@pytest.fixture(scope="module")
def groups(server: SandboxServer) -> dict[str, int]:
    """GROUPS groups launched from one launch template; the first holds two instances, the others none."""
    clients = client_factory(server.url)
    template = clients("ec2", region=REGION).create_launch_template(
        LaunchTemplateName="asg-hook", LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"}
    )["LaunchTemplate"]
    autoscaling = clients("autoscaling", region=REGION)
    sizes = {f"asg-hook-{n:03d}": 2 if n == 0 else 0 for n in range(GROUPS)}
    for name, size in sizes.items():
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
            MinSize=0,
            MaxSize=4,
            DesiredCapacity=size,
            AvailabilityZones=[f"{REGION}a"],
        )
    return sizes


def test_groups_lists_every_group_across_pages_with_its_instances_and_template_version(
    server: SandboxServer, groups: dict[str, int]
) -> None:
    before = sandbox_calls(server.url, "autoscaling:DescribeAutoScalingGroups")
    found = {g["AutoScalingGroupName"]: g for g in AutoScalingHook(region_name=REGION).groups()}
    assert sandbox_calls(server.url, "autoscaling:DescribeAutoScalingGroups") - before == 2  # 102 groups: 2 pages
    assert {name: len(found[name]["Instances"]) for name in groups} == groups
    first = found["asg-hook-000"]["Instances"]
    assert {(i["LaunchTemplate"]["LaunchTemplateName"], i["LaunchTemplate"]["Version"]) for i in first} == {
        ("asg-hook", "1")
    }

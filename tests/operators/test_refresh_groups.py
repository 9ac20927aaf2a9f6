"""refresh_groups on the sandbox: each Auto Scaling group in turn onto a new launch template version, a group on
$Latest refused, an alarm during the second group's refresh rolling it back and halting the groups after it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from include.sandbox.server import SandboxServer
from tests.operators.immutable_helpers import (
    asg,
    baked_run,
    client,
    group_members,
    refresh_scenario,
    refresh_to_end,
    refreshes_by_group,
)

ALARM = "web-asg-health"
GROUPS = {"aaa-latest": 2, "api-asg": 3, "web-asg": 4, "zzz-asg": 2}  # refreshed in name order
BAKED = "ami-0b5a4e0000000b001"  # the bake's AMI: the groups are refreshed onto it
SCENARIO = refresh_scenario(
    "refresh",
    [asg(n, d, alarm={"name": ALARM, "at_percent": 50}) if n == "web-asg" else asg(n, d) for n, d in GROUPS.items()],
    alarms=[{"name": ALARM, "state": "OK"}],
)
SCENARIO["amis"][BAKED] = {"os": "AMAZON_LINUX_2023"}
SANDBOX_DROP_FAULTS = True


def planned_refresh(server: SandboxServer, run_id: str, **overrides: Any) -> dict[str, Any]:
    """A run as plan_install and bake_images leave it: one bake of AL2023 for GROUPS, baked as BAKED; the refreshes
    watch ALARM, also for 5 s after their last batch."""
    return baked_run(server, run_id, GROUPS, BAKED, health_alarms=[ALARM], refresh_bake_time_seconds=5, **overrides)


@pytest.mark.slow
def test_an_alarm_during_the_second_groups_refresh_rolls_it_back_and_halts_the_rest(server: SandboxServer) -> None:
    run_id = "manual__refresh-alarm"
    ec2 = client(server, "ec2")
    scaling = client(server, "autoscaling")
    template = ec2.describe_launch_templates(LaunchTemplateNames=["aaa-latest"])["LaunchTemplates"][0]
    scaling.update_auto_scaling_group(
        AutoScalingGroupName="aaa-latest",
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
    )
    config = planned_refresh(server, run_id)
    before = group_members(server)
    summary, events = refresh_to_end(config, run_id)

    refreshes = refreshes_by_group(config, run_id)
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
    assert group_members(server)["zzz-asg"] == before["zzz-asg"]
    assert all(r.api_calls > 0 for r in (api, web))
    assert pd.Timestamp(api.ended_at) > pd.Timestamp(api.started_at)

"""The immutable path's plan: which instances are replaced, one bake per source AMI, the groups to refresh."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import (
    BAKE_PLAN_COLUMNS,
    GROUP_PLAN_COLUMNS,
    NO_LAUNCH_TEMPLATE,
    bake_plan,
    checkpoint_percentages,
    group_members,
    group_plan,
    irreversible_reason,
    is_immutable,
    refresh_preferences,
    ssm_parameter,
)
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.staging import PRODUCTION_COLUMNS

ACCOUNT = "123456789012"
AL2023, UBUNTU = "ami-0a1b2c3d4e5f60001", "ami-0a1b2c3d4e5f60002"


def member(resource_id: str, group: str, image_id: str = AL2023, version: str = "1", **extra: Any) -> dict[str, Any]:
    """A production instance (PRODUCTION_COLUMNS); group "" is an ordinary instance."""
    return {
        "account_id": ACCOUNT,
        "region": "us-east-1",
        "resource_id": resource_id,
        "platform_name": "Amazon Linux" if image_id == AL2023 else "Ubuntu",
        "platform_type": "Linux",
        "image_id": image_id,
        "instance_type": "t3.medium",
        "instance_family": "t3",
        "patch_group": "web",
        "availability_zone": "us-east-1a",
        "auto_scaling_group": group,
        "launch_template": group and f"{group}-lt",
        "launch_template_version": group and version,
        "group_launch_template_version": group and version,
        "group_image_id": group and image_id,  # the group launches the AMI its member runs, unless told otherwise
        "patch_ids": "KB1;KB2",
        "pinned": 2,
        **extra,
    }


def production(*rows: dict[str, Any]) -> pd.DataFrame:
    return typed_frame(list(rows), PRODUCTION_COLUMNS)


def test_only_auto_scaling_members_are_immutable_and_off_patches_them_in_place() -> None:
    frame = production(member("i-1", "web-asg"), member("i-2", ""), member("i-3", "api-asg"))
    assert is_immutable(frame, "asg").tolist() == [True, False, True]
    assert is_immutable(frame, "off").tolist() == [False, False, False]
    with pytest.raises(ValueError, match="immutable: must be one of asg, off, got 'on'"):
        is_immutable(frame, "on")


def test_one_bake_per_group_launch_ami_and_patch_list_shared_by_groups_that_agree() -> None:
    frame = production(
        member("i-1", "web-asg", patch_ids="KB1;KB2"),
        member("i-2", "web-asg", patch_ids="KB3", instance_type="t3.large"),
        member("i-3", "api-asg", patch_ids="KB2;KB4"),  # the same AMI, another patch list: a bake of its own
        member("i-6", "www-asg", patch_ids="KB3;KB1", instance_type="t3.large"),
        member("i-7", "www-asg", patch_ids="KB2"),  # the union is web-asg's: they share its bake
        member("i-4", "jobs-asg", image_id=UBUNTU, patch_ids="USN-1"),
    )
    bakes = bake_plan(frame)
    assert list(bakes.columns) == list(BAKE_PLAN_COLUMNS)
    rows = bakes.set_index("bake_id")
    assert rows[["image_id", "patch_ids", "auto_scaling_groups"]].values.tolist() == [
        [AL2023, "KB1;KB2;KB3", "web-asg;www-asg"],  # every member of both groups gets the union
        [AL2023, "KB2;KB4", "api-asg"],
        [UBUNTU, "USN-1", "jobs-asg"],
    ]
    assert (rows.loc["b01", "instances"], rows.loc["b01", "instance_type"]) == (4, "t3.large")  # most common
    assert rows.loc["b03", "platform_name"] == "Ubuntu"
    groups = group_plan(frame, bakes)
    assert dict(zip(groups["auto_scaling_group"], groups["bake_id"], strict=True)) == {
        "api-asg": "b02",
        "jobs-asg": "b03",
        "web-asg": "b01",
        "www-asg": "b01",
    }


def test_a_group_running_two_amis_gets_one_bake_of_the_ami_it_launches_now() -> None:
    frame = production(
        member("i-1", "web-asg", image_id=UBUNTU, version="3", group_image_id=AL2023, patch_ids="USN-1"),
        member("i-2", "web-asg", image_id=UBUNTU, version="3", group_image_id=AL2023, patch_ids="USN-2"),
        member("i-9", "web-asg", version="4", group_image_id=AL2023, patch_ids="KB1"),  # the minority, launched now
    )
    bakes = bake_plan(frame)
    assert bakes[["bake_id", "image_id", "patch_ids", "instances"]].values.tolist() == [
        ["b01", AL2023, "KB1;USN-1;USN-2", 3]
    ]
    groups = group_plan(frame, bakes)
    assert groups[["image_id", "launch_image_id", "bake_id"]].values.tolist() == [
        [UBUNTU, AL2023, "b01"],
        [AL2023, AL2023, "b01"],
    ]
    # A launch AMI that is a Systems Manager parameter (the refresh refuses the group) or unknown: the members' own.
    ssm = production(member("i-1", "web-asg", group_image_id="resolve:ssm:/golden"), member("i-2", "web-asg"))
    assert bake_plan(ssm)["image_id"].tolist() == [AL2023]


def test_a_group_running_two_versions_is_planned_once_per_version_with_its_bake() -> None:
    frame = production(
        member("i-2", "web-asg", version="3"),
        member("i-1", "web-asg", version="3"),
        member("i-9", "web-asg", version="4"),  # a refresh left half-way
        member("i-5", "jobs-asg", image_id=UBUNTU),
    )
    groups = group_plan(frame, bake_plan(frame))
    assert list(groups.columns) == list(GROUP_PLAN_COLUMNS)
    assert groups[["auto_scaling_group", "launch_template_version", "bake_id", "instance_ids"]].values.tolist() == [
        ["jobs-asg", "1", "b02", "i-5"],
        ["web-asg", "3", "b01", "i-1;i-2"],
        ["web-asg", "4", "b01", "i-9"],
    ]


def test_a_group_whose_ami_has_no_bake_is_refused() -> None:
    frame = production(member("i-1", "web-asg"))
    with pytest.raises(ValueError, match=f"no bake for the launch AMI {AL2023} of web-asg"):
        group_plan(frame, bake_plan(production()))


def test_checkpoints_fall_where_the_in_place_waves_would_end() -> None:
    canary = CountOrPercent(5, percent=True)
    assert checkpoint_percentages(4, canary, (25, 25, 50)) == [25, 50, 75, 100]
    assert checkpoint_percentages(20, canary, (25, 25, 50)) == [5, 30, 55, 100]
    assert checkpoint_percentages(1, canary, (25, 25, 50)) == [100]  # one instance: one step
    assert checkpoint_percentages(3, CountOrPercent(1, percent=False), (100,)) == [34, 100]  # 1 of 3, rounded up
    with pytest.raises(ValueError, match="group_size: must be at least 1, got 0"):
        checkpoint_percentages(0, canary, (100,))


def test_preferences_roll_back_on_their_own_and_pause_only_at_real_checkpoints() -> None:
    base = {"min_healthy_percentage": 90, "instance_warmup_seconds": 300, "checkpoint_delay_seconds": 600}
    preferences = refresh_preferences(checkpoints=[25, 100], alarms=["web-5xx"], **base)
    assert preferences == {
        "MinHealthyPercentage": 90,
        "InstanceWarmup": 300,
        "SkipMatching": True,
        "AutoRollback": True,
        "ScaleInProtectedInstances": "Wait",
        "StandbyInstances": "Wait",
        "CheckpointPercentages": [25, 100],
        "CheckpointDelay": 600,
        "AlarmSpecification": {"Alarms": ["web-5xx"]},
    }
    plain = refresh_preferences(checkpoints=[100], alarms=[], **base)
    assert "CheckpointPercentages" not in plain and "AlarmSpecification" not in plain and "BakeTime" not in plain
    watched = refresh_preferences(checkpoints=[100], alarms=["web-5xx"], bake_time_seconds=900, **base)
    assert watched["BakeTime"] == 900  # the alarms' window after the last batch


def test_a_group_on_a_symbolic_version_is_named_as_irreversible() -> None:
    assert irreversible_reason("web-asg", "3") == ""
    reason = irreversible_reason("web-asg", "$Latest")
    assert reason.startswith("web-asg launches $Latest of its launch template: a refresh could not roll back")
    assert irreversible_reason("web-asg", "$Default") != ""


def test_a_launch_template_whose_ami_is_an_ssm_parameter_is_named_as_irreversible() -> None:
    """AWS refuses AutoRollback onto an AMI alias (IrreversibleInstanceRefresh): the reason names the parameter."""
    assert irreversible_reason("web-asg", "3", "ami-0a1b2c3d4e5f60001") == ""
    reason = irreversible_reason("web-asg", "3", "resolve:ssm:/golden/al2023:4")
    assert "Systems Manager parameter /golden/al2023:4" in reason and "version 3" in reason
    assert reason.startswith("web-asg ") and "cannot roll a refresh back" in reason
    # A symbolic version is named first (its ImageId is whatever the version resolves to by then).
    assert "$Latest" in irreversible_reason("web-asg", "$Latest", "resolve:ssm:/golden/al2023")
    assert ssm_parameter("resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64") == (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )
    assert ssm_parameter("ami-0a1b2c3d4e5f60001") == "" and ssm_parameter("") == ""


def _inventory(*rows: dict[str, Any], excluded: dict[str, str] | None = None) -> pd.DataFrame:
    """The scoped inventory of these members (excluded: instance id -> its scope reason)."""
    excluded = excluded or {}
    frame = pd.DataFrame(rows)
    frame["resource_type"] = "ec2"
    frame["in_scope"] = [r not in excluded for r in frame["resource_id"]]
    frame["scope_reason"] = [excluded.get(r, "") for r in frame["resource_id"]]
    return frame


def test_a_refresh_replaces_the_whole_group_so_the_plan_takes_every_member() -> None:
    needing = production(member("i-1", "web-asg"))
    compliant, offline = member("i-2", "web-asg", patch_ids=""), member("i-3", "web-asg", patch_ids="")
    inventory = _inventory(member("i-1", "web-asg"), compliant, offline, member("i-9", ""))
    members, refused = group_members(inventory, needing)
    assert refused == {} and members["resource_id"].tolist() == ["i-1", "i-2", "i-3"]  # not the ordinary i-9
    assert members["patch_ids"].tolist() == ["KB1;KB2", "", ""]
    groups = group_plan(members, bake_plan(members))
    assert groups[["instance_ids", "instances", "patched_ids", "refused"]].values.tolist() == [
        ["i-1;i-2;i-3", 3, "i-1", ""]
    ]


def test_a_group_with_a_member_the_scope_excludes_is_refused_in_words() -> None:
    needing = production(member("i-1", "web-asg"), member("i-5", "api-asg"))
    inventory = _inventory(
        member("i-1", "web-asg"),
        member("i-2", "web-asg"),
        member("i-5", "api-asg"),
        excluded={"i-2": "excluded by exclude_ids"},
    )
    members, refused = group_members(inventory, needing)
    reason = refused[(ACCOUNT, "us-east-1", "web-asg")]
    assert "replaces every instance of the group" in reason and "i-2 (excluded by exclude_ids)" in reason
    keys = zip(members["account_id"], members["region"], members["auto_scaling_group"], strict=True)
    bakes = bake_plan(members[pd.Series([key not in refused for key in keys], index=members.index, dtype="bool")])
    assert bakes["auto_scaling_groups"].tolist() == ["api-asg"]  # nothing is baked for the refused group
    groups = group_plan(members, bakes, refused).set_index("auto_scaling_group")
    assert groups.loc["web-asg", ["instance_ids", "bake_id", "refused"]].tolist() == ["i-1", "", reason]
    assert groups.loc["api-asg", ["bake_id", "refused"]].tolist() == ["b01", ""]


def test_a_group_on_a_launch_configuration_is_refused_at_plan_time_with_nothing_baked() -> None:
    # A launch configuration: the inventory finds no LaunchTemplate on the group, so no version it launches.
    needing = production(member("i-1", "lc-asg", group_launch_template_version=""), member("i-5", "api-asg"))
    inventory = _inventory(
        member("i-1", "lc-asg", group_launch_template_version=""),
        member("i-2", "lc-asg", group_launch_template_version="", patch_ids=""),
        member("i-5", "api-asg"),
        member("i-6", ""),
    )
    members, refused = group_members(inventory, needing)
    reason = refused[(ACCOUNT, "us-east-1", "lc-asg")]
    assert "launch configuration" in reason and "new launch template version" in reason
    assert list(refused) == [(ACCOUNT, "us-east-1", "lc-asg")]
    keys = zip(members["account_id"], members["region"], members["auto_scaling_group"], strict=True)
    bakes = bake_plan(members[pd.Series([key not in refused for key in keys], index=members.index, dtype="bool")])
    assert bakes["auto_scaling_groups"].tolist() == ["api-asg"]  # no bake, so no staging, for the refused group
    groups = group_plan(members, bakes, refused).set_index("auto_scaling_group")
    assert groups.loc["lc-asg", ["bake_id", "refused", "refused_kind"]].tolist() == ["", reason, NO_LAUNCH_TEMPLATE]
    assert groups.loc["api-asg", ["bake_id", "refused", "refused_kind"]].tolist() == ["b01", "", ""]


def test_no_immutable_instance_plans_nothing() -> None:
    members, refused = group_members(_inventory(member("i-9", "")), production())
    assert members.empty and list(members.columns) == list(PRODUCTION_COLUMNS) and refused == {}
    assert bake_plan(members).empty and group_plan(members, bake_plan(members)).empty

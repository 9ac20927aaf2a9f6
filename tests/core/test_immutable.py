"""The immutable path's plan: which instances are replaced, one bake per source AMI, the groups to refresh."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import (
    BAKE_PLAN_COLUMNS,
    GROUP_PLAN_COLUMNS,
    bake_plan,
    checkpoint_percentages,
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


def test_one_bake_per_source_ami_with_every_pinned_patch_of_its_instances() -> None:
    frame = production(
        member("i-1", "web-asg", patch_ids="KB1;KB2"),
        member("i-2", "web-asg", patch_ids="KB3", instance_type="t3.large"),
        member("i-3", "api-asg", patch_ids="KB2;KB4"),
        member("i-4", "jobs-asg", image_id=UBUNTU, patch_ids="USN-1"),
    )
    bakes = bake_plan(frame)
    assert list(bakes.columns) == list(BAKE_PLAN_COLUMNS)
    rows = bakes.set_index("bake_id")
    assert rows["image_id"].to_dict() == {"b01": AL2023, "b02": UBUNTU}
    assert rows.loc["b01", "patch_ids"] == "KB1;KB2;KB3;KB4"  # what every instance of the AMI needs
    assert rows.loc["b01", "auto_scaling_groups"] == "api-asg;web-asg"
    assert (rows.loc["b01", "instances"], rows.loc["b01", "instance_type"]) == (3, "t3.medium")  # most common
    assert (rows.loc["b02", "platform_name"], rows.loc["b02", "patch_ids"]) == ("Ubuntu", "USN-1")


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
    with pytest.raises(ValueError, match=f"no bake for the source AMI {AL2023} of web-asg"):
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
    assert "CheckpointPercentages" not in plain and "AlarmSpecification" not in plain


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

"""The immutable path: which production instances are replaced rather than patched in place, grouped the way
an instance refresh replaces them, and the patched AMIs to bake for them.

An instance in an Auto Scaling group is not patched in place when the run's `immutable` setting is `asg`: the
group would replace it from its launch template's AMI sooner or later, undoing the patch (the drift the watch
would report). Instead each group's launch AMI (the one its launch template version gives new instances) is baked
with the pinned patches of all its immutable members, groups of the same AMI and patch list sharing a bake, and each
group is refreshed onto a new launch template version that changes only the image.

A *group plan* row is one (Auto Scaling group, launch template version, source AMI) with its instances: a
group whose instances run several versions or AMIs (a refresh left half-way, a manual change) has one row per
combination, all with the group's one bake and refreshed onto the same new version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.staging import most_common
from patchcycle.core.waves import wave_sizes

ASG: Final = "asg"
OFF: Final = "off"
IMMUTABLE_MODES: Final = (ASG, OFF)

GROUP_KEY: Final = (
    "account_id",
    "region",
    "auto_scaling_group",
    "launch_template",
    "launch_template_version",
    "image_id",
)

GROUP_PLAN_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "auto_scaling_group": "str",
    "launch_template": "str",  # the template the instances were launched from (name, else id)
    "launch_template_version": "str",
    "image_id": "str",  # the source AMI: the one the instances run
    "bake_id": "str",  # the group's bake (BAKE_PLAN_COLUMNS): the same for every row of a group
    "launch_image_id": "str",  # the AMI the group launches now: the bake's source, the same for every row of a group
    "instance_ids": "str",  # ";"-joined, sorted: every in-scope member the inventory found (the refresh replaces all)
    "instances": "int64",
    "patched_ids": "str",  # those of instance_ids with pinned patches; the others are replaced although they need none
    "refused": "str",  # why the group is not refreshed at all ("" when it is planned): bake_id is then ""
    "refused_kind": "str",  # what refused it: REFUSED_KINDS ("" when it is planned)
}

# Why group_members refuses a group: the scope excludes a member (the refresh would replace it too), or the group
# launches no launch template (a launch configuration or a mixed instances policy), which the tool cannot refresh
# onto a new launch template version.
EXCLUDED_MEMBER: Final = "excluded_member"
NO_LAUNCH_TEMPLATE: Final = "no_launch_template"
REFUSED_KINDS: Final = (EXCLUDED_MEMBER, NO_LAUNCH_TEMPLATE)

BAKE_PLAN_COLUMNS: Final[Mapping[str, str]] = {
    "bake_id": "str",  # b01, b02, ...: unique within the run
    "account_id": "str",
    "region": "str",
    "image_id": "str",  # the source AMI: the one its groups launch now
    "platform_type": "str",
    "platform_name": "str",
    "instance_type": "str",  # the builder's: the most common type among its groups' immutable instances
    "patch_ids": "str",  # the distinct pinned patches of those instances, sorted, ";"-joined
    "auto_scaling_groups": "str",  # the groups it will be rolled out to, ";"-joined, sorted
    "instances": "int64",
}


def is_immutable(production: pd.DataFrame, mode: str) -> pd.Series:
    """Per production instance: whether the run replaces it (the immutable path) instead of patching it."""
    if mode not in IMMUTABLE_MODES:
        raise ValueError(f"immutable: must be one of {', '.join(IMMUTABLE_MODES)}, got {mode!r}")
    if mode == OFF:
        return pd.Series(False, index=production.index, dtype="bool")
    return production["auto_scaling_group"].astype("str") != ""


def _numbered(prefix: str, count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"{prefix}{number:0{width}d}" for number in range(1, count + 1)]


def group_members(
    inventory: pd.DataFrame, immutable: pd.DataFrame
) -> tuple[pd.DataFrame, dict[tuple[str, str, str], str]]:
    """A refresh replaces every instance of a group, not only those that need patches: the whole groups of the
    immutable production instances (PRODUCTION_COLUMNS rows; a member without pinned patches has patch_ids ""),
    and the groups refused ((account, region, group) -> why, in words): a group that launches no launch template (a
    launch configuration or a mixed instances policy; the refresh onto a new launch template version is all this
    tool does, so it is refused here, before anything is baked or staged for it), or one with a member the scope
    excludes. refused_kind tells which.

    inventory: the scoped inventory of the run; immutable: the production instances on the immutable path."""
    columns = immutable.columns
    needing = {(str(r.account_id), str(r.region), str(r.resource_id)) for r in immutable.itertuples(index=False)}
    ec2 = inventory[inventory["resource_type"] == "ec2"]
    rows: list[dict[str, Any]] = [dict(r) for r in immutable.to_dict("records")]
    refused: dict[tuple[str, str, str], str] = {}
    for account_id, region, group in sorted(
        {(str(r.account_id), str(r.region), str(r.auto_scaling_group)) for r in immutable.itertuples(index=False)}
    ):
        members = ec2[(ec2["account_id"] == account_id) & (ec2["region"] == region)]
        members = members[members["auto_scaling_group"] == group]
        if not members.empty and (members["group_launch_template_version"].astype("str") == "").all():
            # The inventory found no LaunchTemplate on the group (inventory.launch_template_spec).
            refused[(account_id, region, group)] = no_launch_template_reason(group)
            continue
        excluded = members[~members["in_scope"]]
        if not excluded.empty:
            named = [f"{r.resource_id} ({r.scope_reason})" for r in excluded.sort_values("resource_id").itertuples()]
            refused[(account_id, region, group)] = (
                f"{group} is not refreshed: an instance refresh replaces every instance of the group, and the scope "
                f"excludes {', '.join(named[:5])}"
                + (f" and {len(named) - 5} more" if len(named) > 5 else "")
                + "; exclude the whole group, or take the exclusion off"
            )
            continue
        for member in members.to_dict("records"):
            if (account_id, region, str(member["resource_id"])) in needing:
                continue
            rows.append(
                {
                    **{column: member[column] for column in columns if column in member},
                    "instance_family": str(member["instance_type"]).split(".", 1)[0],
                    "patch_ids": "",
                    "pinned": 0,
                }
            )
    frame = typed_frame(rows, {column: str(immutable[column].dtype) for column in columns})
    return frame.sort_values(["account_id", "region", "resource_id"], ignore_index=True), refused


def no_launch_template_reason(group: str) -> str:
    """Why a group without a launch template is not refreshed, in words."""
    return (
        f"{group} is not refreshed: it launches from a launch configuration (or a mixed instances policy), not a "
        "launch template, and the immutable path refreshes a group onto a new launch template version only; move "
        f"{group} to a launch template (AWS can copy a launch configuration into one) and run again"
    )


def refused_kind(reason: str, group: str) -> str:
    """The REFUSED_KINDS value of a group_members refusal reason."""
    return NO_LAUNCH_TEMPLATE if reason == no_launch_template_reason(group) else EXCLUDED_MEMBER


def launch_image(members: pd.DataFrame) -> str:
    """The AMI a group's new instances get, and so the one to bake: the ImageId of the launch template version the
    group launches now (inventory group_image_id). When that is unknown (a launch configuration) or a Systems Manager
    parameter (refresh_groups refuses such a group: its refresh could not roll back), the most common AMI of its
    members stands in, so the plan stays whole."""
    images = {str(i) for i in members["group_image_id"] if str(i)}
    image = images.pop() if len(images) == 1 else ""
    if image and not ssm_parameter(image):
        return image
    return most_common([str(i) for i in members["image_id"]])


def _group_bakes(immutable: pd.DataFrame) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(account, region, group) -> (the AMI to bake for it, the union of its members' pinned patches ";"-joined)."""
    found = {}
    for (account_id, region, group), members in immutable.groupby(
        ["account_id", "region", "auto_scaling_group"], sort=True
    ):
        patch_ids = sorted({pid for joined in members["patch_ids"] for pid in split_cve_ids(str(joined))})
        found[(str(account_id), str(region), str(group))] = (launch_image(members), ";".join(patch_ids))
    return found


def bake_plan(immutable: pd.DataFrame) -> pd.DataFrame:
    """The bakes of the immutable production instances (BAKE_PLAN_COLUMNS), numbered b01, b02, ... in account,
    region, AMI and patch list order.

    One bake per group, from the AMI of the launch template version the group launches now (launch_image), with the
    union of its members' pinned patches: the refresh replaces every member with that AMI patched. Groups share a bake
    when they have the same account, region, source AMI and patch list; groups of one AMI whose patch lists differ
    get a bake each (a patch pinned for one group was not approved for the other by its baseline)."""
    bakes: dict[tuple[str, str, str, str], list[str]] = {}
    for (account_id, region, group), (image_id, patch_ids) in _group_bakes(immutable).items():
        bakes.setdefault((account_id, region, image_id, patch_ids), []).append(group)
    rows: list[dict[str, Any]] = []
    for (account_id, region, image_id, patch_ids), groups in sorted(bakes.items()):
        members = immutable[
            (immutable["account_id"] == account_id)
            & (immutable["region"] == region)
            & immutable["auto_scaling_group"].isin(groups)
        ]
        rows.append(
            {
                "account_id": account_id,
                "region": region,
                "image_id": image_id,
                "platform_type": str(members["platform_type"].iloc[0]),
                "platform_name": str(members["platform_name"].iloc[0]),
                "instance_type": most_common([str(t) for t in members["instance_type"]]),
                "patch_ids": patch_ids,
                "auto_scaling_groups": ";".join(sorted(groups)),
                "instances": len(members),
            }
        )
    for row, bake_id in zip(rows, _numbered("b", len(rows)), strict=True):
        row["bake_id"] = bake_id
    return typed_frame(rows, BAKE_PLAN_COLUMNS)


def group_plan(
    immutable: pd.DataFrame, bakes: pd.DataFrame, refused: Mapping[tuple[str, str, str], str] | None = None
) -> pd.DataFrame:
    """The immutable production instances by (group, launch template version, source AMI), each row with its
    group's bake (GROUP_PLAN_COLUMNS; every row of a group has the same one), sorted by account, region, group,
    version, AMI. A refused group ((account, region, group) -> why, from group_members) is one row of its in-scope
    members that need patches, with the reason and no bake: `immutable` holds only those of its members."""
    bake_of = {
        (str(b.account_id), str(b.region), str(b.image_id), str(b.patch_ids)): str(b.bake_id)
        for b in bakes[["account_id", "region", "image_id", "patch_ids", "bake_id"]].itertuples(index=False)
    }
    refused = refused or {}
    per_group = _group_bakes(immutable)
    rows: list[dict[str, Any]] = []
    for key, members in immutable.groupby(list(GROUP_KEY), sort=True):
        row = dict(zip(GROUP_KEY, map(str, key), strict=True))
        ids = sorted(str(i) for i in members["resource_id"])
        patched = sorted(str(r.resource_id) for r in members.itertuples() if str(r.patch_ids))
        where = (row["account_id"], row["region"], row["auto_scaling_group"])
        if where in refused:
            rows.append(
                {**row, "instance_ids": ";".join(ids), "instances": len(ids), "patched_ids": ";".join(patched)}
                | {"refused": refused[where], "refused_kind": refused_kind(refused[where], where[2])}
            )
            continue
        image_id, patch_ids = per_group[where]
        bake_id = bake_of.get((row["account_id"], row["region"], image_id, patch_ids))
        if bake_id is None:
            raise ValueError(f"no bake for the launch AMI {image_id} of {row['auto_scaling_group']}")
        rows.append(
            {
                **row,
                "bake_id": bake_id,
                "launch_image_id": image_id,
                "instance_ids": ";".join(ids),
                "instances": len(ids),
                "patched_ids": ";".join(patched),
            }
        )
    return typed_frame(rows, GROUP_PLAN_COLUMNS)


# Versions a launch template resolves at launch time: a group on one of them cannot be rolled back (AWS refuses
# AutoRollback with IrreversibleInstanceRefresh), and a new version would reach it before the refresh does.
SYMBOLIC_VERSIONS: Final = frozenset({"$Latest", "$Default"})
# An ImageId that names a Systems Manager parameter (resolve:ssm:NAME[:VERSION]) instead of an AMI: AWS cannot roll
# a refresh back onto it either (IrreversibleInstanceRefresh), its AMI being whatever the parameter holds by then.
SSM_ALIAS_PREFIX: Final = "resolve:ssm:"


def ssm_parameter(image_id: str) -> str:
    """The Systems Manager parameter an ImageId resolves at launch ("" for an AMI id)."""
    return image_id[len(SSM_ALIAS_PREFIX) :] if image_id.startswith(SSM_ALIAS_PREFIX) else ""


def irreversible_reason(group: str, group_version: str, image_id: str = "") -> str:
    """Why a group's refresh could not roll back ("" when it can): its own launch template version is symbolic, or
    that version's ImageId (`image_id`, as DescribeLaunchTemplateVersions reports it) is a Systems Manager
    parameter."""
    if group_version in SYMBOLIC_VERSIONS:
        return (
            f"{group} launches {group_version} of its launch template: a refresh could not roll back, and the new "
            "version would reach the group before the refresh does; set the group to a version number"
        )
    parameter = ssm_parameter(image_id)
    if parameter:
        return (
            f"{group} launches version {group_version} of its launch template, whose AMI is the Systems Manager "
            f"parameter {parameter}: AWS cannot roll a refresh back onto a parameter's AMI, so {group} is not "
            "refreshed; put the AMI id in the launch template instead of the parameter"
        )
    return ""


def checkpoint_percentages(group_size: int, canary: CountOrPercent, wave_percentages: Sequence[int]) -> list[int]:
    """The refresh's CheckpointPercentages for a group of `group_size`: where the in-place rollout would end each
    wave (the canary first), as ascending whole percentages of the group ending at 100."""
    if group_size < 1:
        raise ValueError(f"group_size: must be at least 1, got {group_size}")
    done = 0
    marks: list[int] = []
    for size in wave_sizes(group_size, canary, wave_percentages, max_waves=len(wave_percentages) + 1):
        done += size
        mark = min(100, -(-100 * done // group_size))  # rounded up: a checkpoint is reached once its share is
        if not marks or mark > marks[-1]:
            marks.append(mark)
    return marks


def refresh_preferences(
    *,
    min_healthy_percentage: int,
    instance_warmup_seconds: int,
    checkpoints: Sequence[int],
    checkpoint_delay_seconds: int,
    alarms: Sequence[str],
    bake_time_seconds: int = 0,
) -> dict[str, Any]:
    """StartInstanceRefresh's Preferences: replace only what does not run the new version (SkipMatching), pause
    at each wave's checkpoint, and roll back on its own when the refresh fails or a health alarm fires, also during
    the BakeTime after the last batch."""
    preferences: dict[str, Any] = {
        "MinHealthyPercentage": min_healthy_percentage,
        "InstanceWarmup": instance_warmup_seconds,
        "SkipMatching": True,
        "AutoRollback": True,
        "ScaleInProtectedInstances": "Wait",
        "StandbyInstances": "Wait",
    }
    if len(checkpoints) > 1 or (checkpoints and checkpoints[0] != 100):
        preferences["CheckpointPercentages"] = list(checkpoints)
        preferences["CheckpointDelay"] = checkpoint_delay_seconds
    if alarms:
        preferences["AlarmSpecification"] = {"Alarms": list(alarms)}
    if bake_time_seconds:
        # After the last batch the refresh stays Baking this long, its alarms still able to roll it back.
        preferences["BakeTime"] = bake_time_seconds
    return preferences


def split_production(production: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The production instances patched in place, and those the immutable path replaces (mode: `immutable`)."""
    replaced = is_immutable(production, mode)
    return production[~replaced].reset_index(drop=True), production[replaced].reset_index(drop=True)

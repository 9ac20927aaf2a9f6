"""plan_install's part for the Auto Scaling groups: the bakes and the groups to refresh, and each bake's pinned
patch list as an InstallOverrideList (the bake installs exactly it; its staging replica is checked against it)."""

from __future__ import annotations

import pandas as pd

from patchcycle.core.immutable import bake_plan, group_members, group_plan
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.staging import override_list_yaml
from patchcycle.run_artifacts import BAKE_PLAN, GROUP_PLAN, OVERRIDE_LIST, RunArtifacts


def write_immutable_plan(artifacts: RunArtifacts, immutable: pd.DataFrame, inventory: pd.DataFrame) -> dict[str, str]:
    """Write the bake and group plans of the immutable production instances' groups, whole (a refresh replaces every
    member; a group with a member the scope excludes is refused); returns bake id -> the URI of its override list
    (for the run's OVERRIDES, beside the staging profiles'). inventory: the run's scoped inventory."""
    members, refused = group_members(inventory, immutable)
    keys = zip(members["account_id"], members["region"], members["auto_scaling_group"], strict=True)
    planned = members[pd.Series([key not in refused for key in keys], index=members.index, dtype="bool")]
    bakes = bake_plan(planned)
    groups = group_plan(members, bakes, refused)
    artifacts.write(BAKE_PLAN, bakes)
    artifacts.write(GROUP_PLAN, groups)
    return {
        str(bake["bake_id"]): artifacts.write(
            OVERRIDE_LIST, override_list_yaml(split_cve_ids(str(bake["patch_ids"]))), profile=str(bake["bake_id"])
        )
        for bake in bakes.to_dict("records")
    }

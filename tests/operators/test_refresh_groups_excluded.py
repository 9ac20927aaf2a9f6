"""A group with a member the scope excludes (exclude_ids): plan_install refuses it, refresh_groups starts no refresh
of it (nothing in the sandbox's request log) and refreshes the other group; the group's in-scope members end
SKIPPED_EXCLUDED (REFRESH_REPLACES_EXCLUDED), naming the excluded instance."""

from __future__ import annotations

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.config import CycleConfig
from patchcycle.core.immutable_rollout import immutable_outcomes
from patchcycle.readback.immutable import read_immutable_record
from tests.conftest import sandbox_requests
from tests.core.test_immutable_rollout import APPROVED, PASSED
from tests.operators.immutable_helpers import (
    AL2023,
    bake_all_as,
    group_members,
    immutable_scenario,
    refresh_to_end,
)
from tests.operators.install_helpers import cycle_config, plan_run, run_artifacts, s3_root

BAKED = "ami-0b5a4e0000000e001"  # the bake's AMI: the group left in scope is refreshed onto it
SCENARIO = immutable_scenario("refresh-excluded", {"api-asg": (AL2023, 2), "web-asg": (AL2023, 3)})
SCENARIO["amis"][BAKED] = {"os": "AMAZON_LINUX_2023"}
SANDBOX_DROP_FAULTS = True

pytestmark = pytest.mark.slow  # inventory, match and plan_install, then one refresh through its trigger


def test_a_group_with_an_excluded_member_is_refused_and_the_other_group_is_refreshed(server: SandboxServer) -> None:
    run_id = "manual__refresh-excluded"
    members = group_members(server)
    excluded = members["web-asg"][0]
    config = cycle_config(
        s3_root(run_id),
        scope={"include_tags": {}, "exclude_ids": [excluded], "exclude_tags": {}},
        refresh_instance_warmup_seconds=10,
        refresh_checkpoint_delay_seconds=5,
    )
    plan_run(server, config, run_id)
    bake_all_as(config, run_id, BAKED)
    summary, events = refresh_to_end(config, run_id)

    assert [e["group"] for e in events] == ["api-asg"] and summary["by_state"] == {"Successful": 1}
    starts = sandbox_requests(server.url, "autoscaling:StartInstanceRefresh")
    assert [(r["resource"], r["status"]) for r in starts] == [("api-asg", 200)]  # none for web-asg
    record = read_immutable_record(run_artifacts(config, run_id), CycleConfig.from_params(config).targets)
    assert excluded in " ".join(record.groups.loc[record.groups["auto_scaling_group"] == "web-asg", "refused"])
    outcomes = immutable_outcomes(record.groups, record.results, APPROVED, PASSED, record.refreshes)
    codes = dict(zip(outcomes["resource_id"], outcomes["reason_code"], strict=True))
    assert {codes[i] for i in members["api-asg"]} == {"REPLACED"}
    assert excluded not in codes  # the scope's own verdict, not the refresh's
    web = outcomes[outcomes["resource_id"].isin(members["web-asg"][1:])]
    assert set(web["reason_code"]) == {"REFRESH_REPLACES_EXCLUDED"} and len(web) == 2
    assert all(excluded in detail for detail in web["detail"])

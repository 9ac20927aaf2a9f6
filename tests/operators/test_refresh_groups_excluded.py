"""A group with a member the scope excludes (exclude_ids): plan_install refuses it, refresh_groups starts no refresh
of it (nothing in the sandbox's request log) and refreshes the other group; the group's in-scope members end
SKIPPED_EXCLUDED (REFRESH_REPLACES_EXCLUDED), naming the excluded instance."""

from __future__ import annotations

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.config import CycleConfig
from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS, immutable_outcomes
from patchcycle.operators.refresh_groups import RefreshGroupsOperator
from patchcycle.readback.immutable import read_immutable_record
from patchcycle.run_artifacts import BAKE_PLAN, BAKE_RESULTS
from tests.conftest import sandbox_requests
from tests.core.test_immutable_rollout import APPROVED, PASSED
from tests.operators.immutable_helpers import AL2023, client, immutable_scenario, run_deferring
from tests.operators.install_helpers import (
    ACCOUNT,
    REGION,
    TARGET,
    context,
    cycle_config,
    plan_run,
    run_artifacts,
    s3_root,
)

BAKED = "ami-0b5a4e0000000e001"  # the bake's AMI: the group left in scope is refreshed onto it
SCENARIO = immutable_scenario("refresh-excluded", {"api-asg": (AL2023, 2), "web-asg": (AL2023, 3)})
SCENARIO["amis"][BAKED] = {"os": "AMAZON_LINUX_2023"}
SANDBOX_DROP_FAULTS = True

pytestmark = pytest.mark.slow  # inventory, match and plan_install, then one refresh through its trigger


def test_a_group_with_an_excluded_member_is_refused_and_the_other_group_is_refreshed(server: SandboxServer) -> None:
    run_id = "manual__refresh-excluded"
    found = client(server, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    members = {g["AutoScalingGroupName"]: sorted(i["InstanceId"] for i in g["Instances"]) for g in found}
    excluded = members["web-asg"][0]
    config = cycle_config(
        s3_root(run_id),
        scope={"include_tags": {}, "exclude_ids": [excluded], "exclude_tags": {}},
        refresh_instance_warmup_seconds=10,
        refresh_checkpoint_delay_seconds=5,
    )
    plan_run(server, config, run_id)
    artifacts = run_artifacts(config, run_id)
    # What bake_images leaves: every planned bake baked as BAKED.
    results = [
        {
            "bake_id": str(bake["bake_id"]),
            "account_id": ACCOUNT,
            "region": REGION,
            "source_image_id": str(bake["image_id"]),
            "image_id": BAKED,
            "execution_id": f"e-{bake['bake_id']}",
            "status": "Success",
            "builder_instance_id": "i-b",
            "patch_ids": str(bake["patch_ids"]),
            "baked": True,
            "reason": "",
        }
        for bake in artifacts.read(BAKE_PLAN).to_dict("records")
    ]
    artifacts.write(BAKE_RESULTS, typed_frame(results, BAKE_RESULT_COLUMNS), target=TARGET)

    summary, events = run_deferring(RefreshGroupsOperator(task_id="refresh_groups", config=config), context(run_id))

    assert [e["group"] for e in events] == ["api-asg"] and summary["by_state"] == {"Successful": 1}
    starts = sandbox_requests(server.url, "autoscaling:StartInstanceRefresh")
    assert [(r["resource"], r["status"]) for r in starts] == [("api-asg", 200)]  # none for web-asg
    record = read_immutable_record(artifacts, CycleConfig.from_params(config).targets)
    assert excluded in " ".join(record.groups.loc[record.groups["auto_scaling_group"] == "web-asg", "refused"])
    outcomes = immutable_outcomes(record.groups, record.results, APPROVED, PASSED, record.refreshes)
    codes = dict(zip(outcomes["resource_id"], outcomes["reason_code"], strict=True))
    assert {codes[i] for i in members["api-asg"]} == {"REPLACED"}
    assert excluded not in codes  # the scope's own verdict, not the refresh's
    web = outcomes[outcomes["resource_id"].isin(members["web-asg"][1:])]
    assert set(web["reason_code"]) == {"REFRESH_REPLACES_EXCLUDED"} and len(web) == 2
    assert all(excluded in detail for detail in web["detail"])

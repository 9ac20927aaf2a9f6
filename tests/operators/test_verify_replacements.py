"""verify_replacements on the sandbox: after its group's refresh onto the baked AMI, each new instance gets a Patch
Manager Scan and, once Amazon Inspector has rescanned it, its pinned CVEs are checked. A new instance with the baked
patches is compliant with its CVEs closed; one that lost a pinned patch is reported non-compliant, the patch and
its CVEs named, in the check and in the report's words."""

from __future__ import annotations

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.core.immutable_rollout import refresh_key
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.report_html import inspector_check, patch_manager_check
from patchcycle.operators.verify_replacements import VerifyReplacementsOperator
from patchcycle.readback.immutable import read_refreshes
from patchcycle.run_artifacts import BAKE_RESULTS, REPLACEMENT_CHECKS, REPLACEMENT_SCANS
from tests.operators.immutable_helpers import (
    QUICK_REFRESH,
    bake,
    client,
    immutable_scenario,
    lose_a_pinned_patch,
    planned_run,
    refresh_to_end,
    run_deferring,
)
from tests.operators.install_helpers import ACCOUNT, AL2023, REGION, TARGET, context, run_artifacts

RUN_ID = "manual__replacements"
GROUP = "web-asg"
SCENARIO = immutable_scenario("replacements", {GROUP: (AL2023, 2)})
SANDBOX_DROP_FAULTS = True
pytestmark = pytest.mark.slow  # a bake, a refresh, a Scan and an Inspector wait, each through its trigger


def test_new_instances_are_compliant_with_their_cves_closed_and_one_that_lost_a_patch_is_not(
    server: SandboxServer,
) -> None:
    config = planned_run(server, RUN_ID, **QUICK_REFRESH)
    assert bake(config, RUN_ID)[2]["baked"] == 1
    artifacts = run_artifacts(config, RUN_ID)
    baked = artifacts.read(BAKE_RESULTS, target=TARGET).iloc[0]
    refresh_to_end(config, RUN_ID)
    refresh = read_refreshes(artifacts)[refresh_key(ACCOUNT, REGION, GROUP)]
    assert refresh.status == "Successful" and len(refresh.new_instances) == 2, refresh
    kept, broken = sorted(refresh.new_instances)
    scaling = client(server, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    ec2 = client(server, "ec2")
    for instance in scaling["AutoScalingGroups"][0]["Instances"]:
        found = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0]
        assert found["ImageId"] == baked["image_id"]  # the group now runs the baked AMI

    # One new instance loses a pinned patch that fixes CVEs (drift before the check).
    lost = lose_a_pinned_patch(server, artifacts, str(baked["patch_ids"]), broken)

    operator = VerifyReplacementsOperator(task_id="verify_replacements", config=config, region_name=REGION)
    summary, events = run_deferring(operator, context(RUN_ID))
    assert summary == {**TARGET.as_kwargs(), "new_instances": 2, "compliant": 1, "cves_closed": 1}
    assert [e["status"] for e in events] == ["done", "rescanned"], events
    # One Scan, of exactly the new instances, as Patch Manager's SendCommand shows it.
    (command_id,) = artifacts.read(REPLACEMENT_SCANS, target=TARGET)
    command = client(server, "ssm").list_commands(CommandId=command_id)["Commands"][0]
    assert command["DocumentName"] == "AWS-RunPatchBaseline" and command["Parameters"]["Operation"] == ["Scan"]
    assert sorted(command["InstanceIds"]) == [kept, broken]

    checks = artifacts.read(REPLACEMENT_CHECKS, target=TARGET)
    good, bad = checks[kept], checks[broken]
    assert (good.group, good.image_id) == (GROUP, baked["image_id"])
    assert good.compliant and good.not_installed == [] and good.cves_closed and good.still_active == []
    assert good.cves and good.scanned_at
    assert not bad.compliant and bad.not_installed == [str(lost["patch_id"])]
    assert not bad.cves_closed and set(split_cve_ids(str(lost["cve_ids"]))) <= set(bad.still_active)
    # The report says it in words.
    entry = {"checked": True, **vars(bad)}
    assert patch_manager_check(entry) == f"NOT compliant: {lost['patch_id']} not installed"
    assert inspector_check(entry).startswith("NOT proven: still active ")
    assert patch_manager_check({"checked": True, **vars(good)}) == "compliant: every pinned patch installed"

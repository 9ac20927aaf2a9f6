"""bake_images on the sandbox: one PatchCycle-BakeAmi execution per source AMI of the Auto Scaling instances, each
with exactly its pinned patches; the baked AMI tagged with the run and its source AMI; a bake whose install fails
on the builder is a result (not a task failure) that says in words where and why it failed; a retry starts
nothing twice."""

from __future__ import annotations

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.runbooks import BAKE_RUNBOOK
from patchcycle.run_artifacts import BAKE_EXECUTIONS, BAKE_PLAN, BAKE_RESULTS
from tests.conftest import sandbox_calls
from tests.operators.immutable_helpers import bake, client, immutable_scenario, planned_run
from tests.operators.install_helpers import (
    AL2023,
    FAILING_PATCH,
    TARGET,
    WINDOWS,
    context,
    run_artifacts,
)

RUN_ID = "manual__bake"
# Every builder fails to install FAILING_PATCH, an Amazon Linux patch: the Amazon Linux bake fails at its install,
# the Windows one bakes.
SCENARIO = immutable_scenario(
    "bake",
    {"web-asg": (AL2023, 2), "win-asg": (WINDOWS, 1)},
    failures=[{"tags": {"patchcycle:role": "ami-builder"}, "install_fails": [FAILING_PATCH]}],
)
SANDBOX_DROP_FAULTS = True
pytestmark = pytest.mark.slow  # a bake runs through its trigger: a few seconds


def test_one_bake_per_source_ami_the_image_tagged_and_a_failed_step_in_words(server: SandboxServer) -> None:
    config = planned_run(server, RUN_ID)
    artifacts = run_artifacts(config, RUN_ID)
    plan = artifacts.read(BAKE_PLAN).set_index("image_id")
    assert sorted(plan.index) == [AL2023, WINDOWS] and FAILING_PATCH in split_cve_ids(plan.loc[AL2023, "patch_ids"])

    operator, event, summary = bake(config, RUN_ID)
    assert event["status"] == "done" and summary["bakes"] == 2 and summary["baked"] == 1
    started = artifacts.read(BAKE_EXECUTIONS, target=TARGET)
    results = artifacts.read(BAKE_RESULTS, target=TARGET).set_index("source_image_id")

    # Each execution ran PatchCycle-BakeAmi on its source AMI with exactly that AMI's pinned patches.
    ssm, ec2 = client(server, "ssm"), client(server, "ec2")
    for source in (AL2023, WINDOWS):
        bake_id = str(plan.loc[source, "bake_id"])
        execution = ssm.get_automation_execution(AutomationExecutionId=started[bake_id])["AutomationExecution"]
        assert execution["DocumentName"] == BAKE_RUNBOOK
        assert execution["Parameters"]["SourceAmiId"] == [source]
        assert sorted(execution["Parameters"]["PatchIds"]) == split_cve_ids(str(plan.loc[source, "patch_ids"]))
        assert results.loc[source, "execution_id"] == started[bake_id]

    # The Windows bake: an available AMI, tagged with the run and its source, its builder gone.
    windows = results.loc[WINDOWS]
    assert windows["baked"] and windows["status"] == "Success" and windows["reason"] == ""
    image = ec2.describe_images(ImageIds=[windows["image_id"]])["Images"][0]
    tags = {tag["Key"]: tag["Value"] for tag in image["Tags"]}
    assert image["State"] == "available"
    assert (tags["patchcycle:run-id"], tags["patchcycle:source-ami"]) == (RUN_ID, WINDOWS)
    builder = ec2.describe_instances(InstanceIds=[windows["builder_instance_id"]])["Reservations"][0]["Instances"][0]
    assert builder["State"]["Name"] in ("shutting-down", "terminated")

    # The Amazon Linux bake failed on the builder's install: no AMI, and the reason says where in words.
    linux = results.loc[AL2023]
    assert not linux["baked"] and linux["image_id"] == "" and linux["status"] == "Failed"
    assert linux["reason"].startswith(
        "PatchCycle-BakeAmi Failed while installing the pinned patches on the builder instance (step installPatches)"
    ), linux["reason"]
    builder = ec2.describe_instances(InstanceIds=[linux["builder_instance_id"]])["Reservations"][0]["Instances"][0]
    assert builder["State"]["Name"] in ("shutting-down", "terminated")  # terminated after the failure too
    linux_images = ec2.describe_images(Filters=[{"Name": "tag:patchcycle:source-ami", "Values": [AL2023]}])
    assert linux_images["Images"] == []

    # A retry (the task cleared after the executions started) finds them: nothing is started twice.
    calls = sandbox_calls(server.url, "ssm:StartAutomationExecution")
    _, _, again = bake(config, RUN_ID)
    assert again == summary and sandbox_calls(server.url, "ssm:StartAutomationExecution") == calls
    assert artifacts.read(BAKE_EXECUTIONS, target=TARGET) == started
    assert operator.execute_complete(context(RUN_ID), event) == summary

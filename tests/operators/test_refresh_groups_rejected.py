"""A baked AMI that breaks the health checks: its staging replica fails check_staging, the auto policy rejects at
approve_production, and no group is refreshed (no StartInstanceRefresh reaches AWS)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import DownstreamTasksSkipped, TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS, bake_result
from patchcycle.operators.approval import PatchApprovalOperator
from patchcycle.operators.staging_checks import StagingHealthCheckOperator, StagingPatchOperator
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    BAKE_PLAN,
    BAKE_RESULTS,
    GROUP_PLAN,
    STAGING_RESULTS,
)
from patchcycle.triggers.command_completion import CommandCompletionTrigger
from tests.conftest import advance_clock, first_trigger_payload, sandbox_calls
from tests.operators.immutable_helpers import asg, client, create_staging
from tests.operators.install_helpers import (
    AL2023,
    DAG_ID,
    REGION,
    TARGET,
    context,
    cycle_config,
    plan_run,
    run_artifacts,
    s3_root,
    scenario,
)

pytestmark = pytest.mark.slow  # a plan, a staging stack, a scan and the health checks through their triggers


def _scenario() -> dict[str, Any]:
    document = scenario("bake-breaks")
    # Only Linux: every staging replica but the baked AMI's passes, so the bake alone decides.
    region = document["accounts"][0]["regions"][REGION]
    region["instance_groups"] = [g for g in region["instance_groups"] if g["name"] == "web"]
    region["auto_scaling_groups"] = [asg("web-asg", 2, max_size=4)]
    document["amis"][AL2023]["bake_breaks_health_checks"] = True  # an image baked from it fails its health check
    document["failures"] = []
    return document


SCENARIO = _scenario()


def _bake(server: SandboxServer, config: dict[str, Any], run_id: str) -> str:
    """What bake_images leaves: the plan's bake of AL2023 made into an image (through EC2, as PatchCycle-BakeAmi
    does: a builder launched from the source AMI, then CreateImage), recorded as baked."""
    ec2 = client(server, "ec2")
    builder = ec2.run_instances(
        ImageId=AL2023,
        InstanceType="t3.medium",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "patchcycle:role", "Value": "ami-builder"}]}],
    )["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=builder, Name=f"patchcycle-{uuid.uuid4().hex[:8]}")["ImageId"]
    artifacts = run_artifacts(config, run_id)
    (bake,) = artifacts.read(BAKE_PLAN).to_dict("records")
    execution = {
        "AutomationExecutionId": "e-bake",
        "AutomationExecutionStatus": "Success",
        "Outputs": {"createImage.ImageId": [image], "findBuilder.InstanceId": [builder]},
    }
    artifacts.write(BAKE_RESULTS, typed_frame([bake_result(bake, execution, None)], BAKE_RESULT_COLUMNS), target=TARGET)
    return str(image)


def _commands(server: SandboxServer, operator: Any, run_id: str) -> dict[str, Any]:
    """Execute until the operator waits on its commands, then run that trigger to its event."""
    for _ in range(20):
        with pytest.raises(TaskDeferred) as caught:
            operator.execute(context(run_id))
        if caught.value.method_name == "execute_complete":
            break
        advance_clock(server.url, 10)
    assert isinstance(caught.value.trigger, CommandCompletionTrigger)
    advance_clock(server.url, 60)
    return first_trigger_payload(caught.value.trigger)


def test_a_bake_that_breaks_the_health_checks_is_rejected_and_nothing_is_refreshed(server: SandboxServer) -> None:
    run_id = "scheduled__bake-breaks"
    config = cycle_config(s3_root(run_id), command_timeout_minutes=5)
    plan_run(server, config, run_id)
    artifacts = run_artifacts(config, run_id)
    assert artifacts.read(GROUP_PLAN)["auto_scaling_group"].tolist() == ["web-asg"]
    image = _bake(server, config, run_id)

    create_staging(config, run_id)
    patch = StagingPatchOperator(task_id="patch_staging", config=config, region_name=REGION)
    patch.execute_complete(context(run_id), _commands(server, patch, run_id))
    check = StagingHealthCheckOperator(task_id="check_staging", config=config, region_name=REGION)
    check.execute_complete(context(run_id), _commands(server, check, run_id))

    results = artifacts.read(STAGING_RESULTS, target=TARGET).set_index("profile_id")
    assert not results.loc["b01", "passed"]  # the baked AMI's replica (profile id = the bake id)
    assert "health check Failed" in results.loc["b01", "reason"]
    assert results.drop(index="b01")["passed"].all()  # the in-place profiles' replicas passed

    # Wired as in patch_cycle: approve_production >> refresh_groups.
    with DAG(dag_id=DAG_ID, schedule=None) as dag:
        approve = PatchApprovalOperator(task_id="approve_production", config=config)
        EmptyOperator(task_id="check_staging") >> approve >> EmptyOperator(task_id="refresh_groups")
    ti = SimpleNamespace(id=uuid.uuid4(), map_index=-1, task_id=approve.task_id, xcom_push=mock.Mock())
    ctx = {"dag": dag, "run_id": run_id, "task": approve, "ti": ti, "task_instance": ti, "params": {}}
    with pytest.raises(DownstreamTasksSkipped) as caught:
        approve.execute(ctx)

    assert caught.value.tasks == ["refresh_groups"]
    decision = artifacts.read(APPROVAL_DECISION)
    assert (decision.mode, decision.decision, decision.staging_passed) == ("auto", "Reject", False)
    body = artifacts.read(APPROVAL_REQUEST).body
    assert f"{image} (baked from {AL2023}) failed staging: " in body and "health check Failed" in body
    assert sandbox_calls(server.url, "autoscaling:StartInstanceRefresh") == 0
    assert sandbox_calls(server.url, "ec2:CreateLaunchTemplateVersion") == 0

"""refresh_groups retried: a worker that dies after StartInstanceRefresh leaves a refresh no record knows; the retry
finds it (and the launch template version) instead of making them again. A group whose launch template takes its
AMI from an SSM parameter is refused; a group another refresh is replacing halts the rollout, naming it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.core.immutable_rollout import GroupRefresh, refresh_key
from patchcycle.readback.immutable import read_refreshes
from patchcycle.run_artifacts import REFRESHES
from tests.conftest import first_trigger_payload, sandbox_requests
from tests.operators.immutable_helpers import (
    asg,
    baked_run,
    client,
    group_members,
    refresh_operator,
    refresh_scenario,
    refresh_to_end,
    refreshes_by_group,
)
from tests.operators.install_helpers import ACCOUNT, REGION, context, run_artifacts

# Two runs of two groups each, of the same sizes: one runs through, the other's worker dies twice.
CALM, CRASHED = {"a1-asg": 2, "a2-asg": 3}, {"c1-asg": 2, "c2-asg": 3}
# A group on an SSM-parameter AMI, one another refresh is replacing, and one after it.
GUARDED = {"g1-ssm": 2, "g2-busy": 2, "g3-after": 2}
PARAMETER = "/golden/al2023/ami"
SCENARIO = refresh_scenario("refresh-retry", [asg(n, d) for n, d in {**CALM, **CRASHED, **GUARDED}.items()])
SANDBOX_DROP_FAULTS = True  # exact call counts


def _defers(config: dict[str, Any], run_id: str, event: dict[str, Any] | None = None) -> TaskDeferred:
    """A fresh operator (a new attempt on another worker) run until it defers."""
    with pytest.raises(TaskDeferred) as deferred:
        refresh_operator(config).execute(context(run_id), event=event)
    return deferred.value


def _lose(config: dict[str, Any], run_id: str, group: str) -> None:
    """The worker died after StartInstanceRefresh and before it recorded the group: its record is not there."""
    artifacts = run_artifacts(config, run_id)
    refreshes = read_refreshes(artifacts)
    del refreshes[refresh_key(ACCOUNT, REGION, group)]
    artifacts.write(REFRESHES, refreshes)


def _calls(server: SandboxServer, operation: str, groups: dict[str, int]) -> Counter[str]:
    """How many successful calls of `operation` named each of `groups` (or its launch template)."""
    return Counter(
        r["resource"] for r in sandbox_requests(server.url, operation) if r["status"] == 200 and r["resource"] in groups
    )


def _verdict(refresh: GroupRefresh) -> dict[str, Any]:
    """What the report and the verdicts read of a group's record, less what differs between groups."""
    kept = asdict(refresh)
    return {
        "state": kept["state"],
        "status": kept["status"],
        "version": kept["version"],
        "default_version_set": kept["default_version_set"],
        "checkpoints": kept["checkpoints"],
        "new_instances": len(kept["new_instances"]),
        "reason": kept["reason"],
    }


@pytest.mark.slow
def test_a_retry_after_start_instance_refresh_resumes_the_refresh_instead_of_starting_another(
    server: SandboxServer,
) -> None:
    calm = baked_run(server, "manual__calm", CALM)
    assert refresh_to_end(calm, "manual__calm")[0]["by_state"] == {"Successful": 2}

    run_id = "manual__crashed"
    # 3 s a checkpoint (200 simulated seconds a real one): still running when retried
    config = baked_run(server, run_id, CRASHED, refresh_checkpoint_delay_seconds=600)
    # The first attempt starts c1's refresh and defers; its worker dies before it recorded the group.
    first = _defers(config, run_id)
    _lose(config, run_id, "c1-asg")
    # The retry finds the running refresh this run started, and waits for it again.
    second = _defers(config, run_id)
    assert second.trigger.refresh_id == first.trigger.refresh_id  # type: ignore[attr-defined]
    assert refreshes_by_group(config, run_id)["c1-asg"].state == "refreshing"
    # c1 ends; the task goes on to c2, starts it and dies again, this time until c2's refresh has ended.
    third = _defers(config, run_id, event=first_trigger_payload(second.trigger, timeout=120))
    assert third.trigger.group == "c2-asg"  # type: ignore[attr-defined]
    ended = first_trigger_payload(third.trigger, timeout=120)
    assert ended["refresh"]["status"] == "Successful"
    _lose(config, run_id, "c2-asg")
    # The last retry reads the ended refresh as c2's result without waiting, and sets its version as the default.
    summary, _ = refresh_to_end(config, run_id)
    assert summary["by_state"] == {"Successful": 2}

    for operation in ("autoscaling:StartInstanceRefresh", "ec2:CreateLaunchTemplateVersion"):
        assert _calls(server, operation, CRASHED) == dict.fromkeys(CRASHED, 1), operation
        assert _calls(server, operation, CALM) == dict.fromkeys(CALM, 1), operation
    refreshes, calm_refreshes = refreshes_by_group(config, run_id), refreshes_by_group(calm, "manual__calm")
    assert _verdict(refreshes["c1-asg"]) == _verdict(calm_refreshes["a1-asg"])
    assert _verdict(refreshes["c2-asg"]) == _verdict(calm_refreshes["a2-asg"])
    now = group_members(server, CRASHED)
    for name, refresh in refreshes.items():
        assert refresh.version == "2" and refresh.default_version_set and refresh.status == "Successful"
        assert sorted(refresh.new_instances) == now[name] and not set(refresh.new_instances) & set(
            refresh.old_instances
        )
    ec2 = client(server, "ec2")
    for name in CRASHED:
        template = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"][0]
        assert (template["LatestVersionNumber"], template["DefaultVersionNumber"]) == (2, 2), name


@pytest.mark.slow
def test_an_ssm_parameter_ami_is_refused_and_another_refresh_halts_the_rollout_at_its_group(
    server: SandboxServer,
) -> None:
    ec2, scaling = client(server, "ec2"), client(server, "autoscaling")
    ec2.create_launch_template_version(
        LaunchTemplateName="g1-ssm", SourceVersion="1", LaunchTemplateData={"ImageId": f"resolve:ssm:{PARAMETER}"}
    )
    scaling.update_auto_scaling_group(
        AutoScalingGroupName="g1-ssm", LaunchTemplate={"LaunchTemplateName": "g1-ssm", "Version": "2"}
    )
    # Someone else's refresh of g2, held at its first checkpoint for hours.
    theirs = scaling.start_instance_refresh(
        AutoScalingGroupName="g2-busy", Preferences={"CheckpointPercentages": [50, 100], "CheckpointDelay": 36000}
    )["InstanceRefreshId"]
    run_id = "manual__guarded"
    config = baked_run(server, run_id, GUARDED)
    summary, _ = refresh_to_end(config, run_id)

    assert summary["by_state"] == {"refused": 1, "halted": 2}
    refreshes = refreshes_by_group(config, run_id)
    ssm = refreshes["g1-ssm"]
    assert ssm.state == "refused" and PARAMETER in ssm.reason and ssm.version == "" and ssm.refresh_id == ""
    busy = refreshes["g2-busy"]
    assert busy.state == "halted" and busy.foreign_refresh_id == theirs
    assert busy.reason.startswith(f"an instance refresh of g2-busy that this run did not start ({theirs}, ")
    after = refreshes["g3-after"]
    assert after.state == "halted" and after.reason == busy.reason
    # Nothing was made or started for any of them; their refresh is left alone.
    assert not _calls(server, "ec2:CreateLaunchTemplateVersion", {"g2-busy": 2, "g3-after": 2})
    assert _calls(server, "autoscaling:StartInstanceRefresh", GUARDED) == {"g2-busy": 1}  # theirs
    assert _calls(server, "ec2:CreateLaunchTemplateVersion", {"g1-ssm": 2}) == {"g1-ssm": 1}  # the test's own
    status = scaling.describe_instance_refreshes(AutoScalingGroupName="g2-busy", InstanceRefreshIds=[theirs])
    assert status["InstanceRefreshes"][0]["Status"] in ("InProgress", "Pending")

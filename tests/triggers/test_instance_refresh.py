"""InstanceRefreshTrigger and the Auto Scaling and launch template hooks it works with: a pinned launch template
version that changes only the AMI, a refresh onto it (the sandbox's instance refresh, on its simulated clock), and
the trigger's event once the refresh succeeded, rolled back on an alarm, or outlived its time bound."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.hooks.auto_scaling import AutoScalingHook
from patchcycle.hooks.launch_templates import LaunchTemplateHook
from patchcycle.triggers.instance_refresh import InstanceRefreshTrigger
from tests.conftest import advance_clock, client_factory, sandbox_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
AL2023 = "ami-0a1b2c3d4e5f60001"
PATCHED = "ami-0feedfacecafe0001"  # stands for a baked AMI: the refresh only needs an image id


def group(name: str, **extra: Any) -> dict[str, Any]:
    tags = {"PatchGroup": "web", "Environment": "production"}
    return {"name": name, "ami": AL2023, "instance_type": "t3.large", "min": 1, "max": 4, "desired": 2, "tags": tags,
            "patched_through": "2026-07-31", **extra}  # fmt: skip


SCENARIO: dict[str, Any] = {
    "name": "instance-refresh-trigger",
    "clock": {"start": START.isoformat(), "speed": 1e-9},  # only advance_clock moves simulated time
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "auto_scaling_groups": [
                        group("web"),
                        group("api", alarm={"name": "api-health", "at_percent": 50}),
                        group("jobs"),
                    ]
                }
            },
        }
    ],
    "alarms": [{"name": "api-health", "region": REGION}],
}
SANDBOX_DROP_FAULTS = True
PREFERENCES = {"MinHealthyPercentage": 50, "InstanceWarmup": 60, "SkipMatching": True, "AutoRollback": True}


def trigger(name: str, refresh_id: str, **settings: Any) -> InstanceRefreshTrigger:
    return InstanceRefreshTrigger(
        aws_conn_id="aws_default", region_name=REGION, group=name, refresh_id=refresh_id, poll_interval=0.05, **settings
    )


def run_once(server: SandboxServer, name: str, refresh_id: str, **settings: Any) -> dict[str, Any]:
    from tests.conftest import first_trigger_payload

    return first_trigger_payload(trigger(name, refresh_id, **settings))


def patched_version(name: str) -> str:
    return LaunchTemplateHook(region_name=REGION).image_version(name, "1", PATCHED, f"patch {name}", f"run-1-{name}")


def test_the_new_version_changes_only_the_image_and_a_retry_returns_it(server: SandboxServer) -> None:
    version = patched_version("web")
    assert patched_version("web") == version  # the same ClientToken: no second version
    ec2 = client_factory(server.url)("ec2", region=REGION)
    (data,) = ec2.describe_launch_template_versions(LaunchTemplateName="web", Versions=[version])[
        "LaunchTemplateVersions"
    ]
    assert (data["LaunchTemplateData"]["ImageId"], data["LaunchTemplateData"]["InstanceType"]) == (PATCHED, "t3.large")
    LaunchTemplateHook(region_name=REGION).make_default("web", version)
    (template,) = ec2.describe_launch_templates(LaunchTemplateNames=["web"])["LaunchTemplates"]
    assert str(template["DefaultVersionNumber"]) == version


def test_the_trigger_waits_until_the_refresh_replaced_every_instance(server: SandboxServer) -> None:
    hook = AutoScalingHook(region_name=REGION)
    version = patched_version("jobs")
    refresh_id = hook.start_refresh("jobs", "jobs", version, PREFERENCES)
    started = hook.refresh("jobs", refresh_id)
    assert started["DesiredConfiguration"]["LaunchTemplate"]["Version"] == version
    assert started["Preferences"]["AutoRollback"] is True
    # The group itself still names version 1: the refresh could go back to it.
    (asg,) = client_factory(server.url)("autoscaling", region=REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=["jobs"]
    )["AutoScalingGroups"]
    assert asg["LaunchTemplate"]["Version"] == "1"

    advance_clock(server.url, 5 + 60)  # one of two replaced and warmed up
    polls = sandbox_calls(server.url, "autoscaling:DescribeInstanceRefreshes")
    assert run_once(server, "jobs", refresh_id, timeout=0.0)["status"] == "timeout"
    advance_clock(server.url, 60)
    event = run_once(server, "jobs", refresh_id)

    assert (event["status"], event["group"]) == ("done", "jobs")
    assert event["refresh"]["status"] == "Successful" and event["refresh"]["percentage_complete"] == 100
    assert event["refresh"]["ended_at"].startswith("2026-11-20T03:0")
    assert sandbox_calls(server.url, "autoscaling:DescribeInstanceRefreshes") - polls == 2  # one call per poll
    assert [r["InstanceRefreshId"] for r in hook.refreshes("jobs")] == [refresh_id]


def test_an_alarm_rolls_the_refresh_back_and_the_event_says_why(server: SandboxServer) -> None:
    hook = AutoScalingHook(region_name=REGION)
    preferences = {**PREFERENCES, "AlarmSpecification": {"Alarms": ["api-health"]}}
    refresh_id = hook.start_refresh("api", "api", patched_version("api"), preferences)
    advance_clock(server.url, 5 + 60)  # one of two replaced: 50%, the alarm fires
    advance_clock(server.url, 120)  # the rollback replaced it back

    event = run_once(server, "api", refresh_id)

    assert event["refresh"]["status"] == "RollbackSuccessful"
    assert "api-health" in event["refresh"]["rollback_reason"]


def test_serializes_for_the_triggerer_and_refuses_a_missing_id() -> None:
    original = trigger("web", "r-1", timeout=600.0, started_at=1.0)
    classpath, kwargs = original.serialize()
    assert classpath == "patchcycle.triggers.instance_refresh.InstanceRefreshTrigger"
    assert InstanceRefreshTrigger(**kwargs).serialize() == (classpath, kwargs)
    with pytest.raises(ValueError, match="needs a group and an id, got 'web' and ''"):
        trigger("web", "")

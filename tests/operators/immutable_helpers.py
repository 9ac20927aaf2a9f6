"""Shared by the immutable path's operator tests: a fleet of Auto Scaling groups only, a run planned on it
(inventory, match, plan_install: one bake per source AMI) and its AMIs baked by the real PatchCycle-BakeAmi.

The sandbox's clock runs fast (CLOCK_SPEED), so a bake's launch, install, health checks and image creation, an
Inspector rescan and an instance refresh pass in a second or two of the test's time.
"""

from __future__ import annotations

from typing import Any

import boto3
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.operators.bake_images import BakeImagesOperator
from tests.conftest import first_trigger_payload
from tests.operators.install_helpers import (
    AL2023,
    REGION,
    WINDOWS,
    context,
    cycle_config,
    deferral,
    plan_run,
    register_runbooks,
    s3_root,
    scenario,
)

CLOCK_SPEED = 300.0
LINUX_GROUP, WINDOWS_GROUP = "web-asg", "win-asg"


def _group(name: str, ami: str, desired: int, patch_group: str) -> dict[str, Any]:
    return {
        "name": name,
        "ami": ami,
        "instance_type": "t3.medium" if ami == AL2023 else "m6i.xlarge",
        "min": 1,
        "max": 6,
        "desired": desired,
        "tags": {"Environment": "production", "PatchGroup": patch_group},
        "patched_through": "2026-09-30",
    }


def immutable_scenario(name: str, groups: dict[str, tuple[str, int]], **sections: Any) -> dict[str, Any]:
    """us-east-1 with only Auto Scaling groups (name -> (AMI, desired)), a fast clock and a quick Inspector."""
    document = scenario(name, inspector={"rescan_delay_seconds": 60}, images={"create_seconds": 30}, **sections)
    document["clock"]["speed"] = CLOCK_SPEED
    document.setdefault("failures", [])
    document["failures"] = [f for f in document["failures"] if "group" not in f]  # the scenario's own groups go
    region = document["accounts"][0]["regions"][REGION]
    region["instance_groups"] = []
    region["auto_scaling_groups"] = [
        _group(group, ami, desired, "web" if ami == AL2023 else "windows") for group, (ami, desired) in groups.items()
    ]
    return document


def client(server: SandboxServer, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def planned_run(server: SandboxServer, run_id: str, **overrides: Any) -> dict[str, Any]:
    """A run of the sandbox's fleet up to plan_install and register_runbooks: its validated config."""
    config = cycle_config(s3_root(run_id), **overrides)
    plan_run(server, config, run_id)
    register_runbooks(config, run_id)
    return config


def bake(config: dict[str, Any], run_id: str) -> tuple[BakeImagesOperator, dict[str, Any], dict[str, Any]]:
    """bake_images as Airflow runs it: started, deferred to its trigger, resumed with the trigger's event. Returns
    the operator, the trigger's event and the task's result."""
    operator = BakeImagesOperator(task_id="bake_images", config=config, region_name=REGION)
    ctx = context(run_id)
    event = first_trigger_payload(deferral(operator, ctx).trigger, timeout=60)
    return operator, event, operator.execute_complete(ctx, event)


def run_deferring(operator: Any, ctx: Any, timeout: float = 60) -> tuple[Any, list[dict[str, Any]]]:
    """Run a task as Airflow would: execute, then each deferral's trigger to its first event and the task resumed
    with it at the method the deferral named, until it returns. Returns its result and the events, in order."""
    events: list[dict[str, Any]] = []
    step, arguments = operator.execute, (ctx,)
    while True:
        try:
            return step(*arguments), events
        except TaskDeferred as deferred:
            event = first_trigger_payload(deferred.trigger, timeout=timeout)
            events.append(event)
            step, arguments = getattr(operator, deferred.method_name), (ctx, event)


__all__ = ["AL2023", "WINDOWS", "bake", "client", "immutable_scenario", "planned_run", "run_deferring"]

"""Shared by the immutable path's operator tests: a fleet of Auto Scaling groups only, a run planned on it
(inventory, match, plan_install: one bake per source AMI) and its AMIs baked by the real PatchCycle-BakeAmi; or,
for the refresh tests, groups beside the install tests' instances and a run's plan and bakes written directly
(baked_run); the tasks after the bake (create_staging, refresh_groups) run as Airflow runs them.

The sandbox's clock runs fast (CLOCK_SPEED), so a bake's launch, install, health checks and image creation, an
Inspector rescan and an instance refresh pass in a second or two of the test's time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import boto3
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.frames import typed_frame
from patchcycle.core.immutable import BAKE_PLAN_COLUMNS, GROUP_PLAN_COLUMNS
from patchcycle.core.immutable_rollout import BAKE_RESULT_COLUMNS, GroupRefresh
from patchcycle.core.plan import split_cve_ids
from patchcycle.operators.bake_images import BakeImagesOperator
from patchcycle.operators.refresh_groups import RefreshGroupsOperator
from patchcycle.operators.staging_stack import StagingStackOperator
from patchcycle.readback.immutable import read_refreshes
from patchcycle.run_artifacts import BAKE_PLAN, BAKE_RESULTS, GROUP_PLAN, INVENTORY_SUMMARY, MATCH_PLAN, RunArtifacts
from patchcycle.run_records import InventorySummary
from tests.conftest import first_trigger_payload, uninstall_patches
from tests.operators.install_helpers import (
    ACCOUNT,
    AL2023,
    REGION,
    TARGET,
    WINDOWS,
    context,
    cycle_config,
    deferral,
    plan_run,
    register_runbooks,
    run_artifacts,
    s3_root,
    scenario,
)

CLOCK_SPEED = 300.0
REFRESH_CLOCK_SPEED = 200.0
# Refreshes that pass quickly on the sandbox's clock: a short warm-up and checkpoint pause, half the group at a time.
QUICK_REFRESH = {
    "refresh_instance_warmup_seconds": 10,
    "refresh_checkpoint_delay_seconds": 5,
    "refresh_min_healthy_percentage": 50,
}


def asg(name: str, desired: int, ami: str = AL2023, max_size: int = 8, **extra: Any) -> dict[str, Any]:
    """A production Auto Scaling group of a scenario, launching `ami` (PatchGroup web, or windows for a Windows
    AMI); `extra`: more of its scenario keys (an alarm)."""
    linux = ami == AL2023
    return {
        "name": name,
        "ami": ami,
        "instance_type": "t3.medium" if linux else "m6i.xlarge",
        "min": 1,
        "max": max_size,
        "desired": desired,
        "tags": {"Environment": "production", "PatchGroup": "web" if linux else "windows"},
        "patched_through": "2026-09-30",
        **extra,
    }


def immutable_scenario(name: str, groups: dict[str, tuple[str, int]], **sections: Any) -> dict[str, Any]:
    """us-east-1 with only Auto Scaling groups (name -> (AMI, desired)), a fast clock and a quick Inspector."""
    document = scenario(name, inspector={"rescan_delay_seconds": 60}, images={"create_seconds": 30}, **sections)
    document["clock"]["speed"] = CLOCK_SPEED
    document.setdefault("failures", [])
    document["failures"] = [f for f in document["failures"] if "group" not in f]  # the scenario's own groups go
    region = document["accounts"][0]["regions"][REGION]
    region["instance_groups"] = []
    region["auto_scaling_groups"] = [asg(group, desired, ami, max_size=6) for group, (ami, desired) in groups.items()]
    return document


def refresh_scenario(name: str, groups: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """The install tests' scenario (its instances and failures kept) with `groups` in us-east-1 and a clock fast
    enough (REFRESH_CLOCK_SPEED) that a refresh's batches and checkpoints pass in a fraction of a second."""
    document = scenario(name, **sections)
    document["clock"]["speed"] = REFRESH_CLOCK_SPEED
    document["accounts"][0]["regions"][REGION]["auto_scaling_groups"] = groups
    return document


def client(server: SandboxServer, service: str, region: str = REGION) -> Any:
    """A boto3 client of the sandbox."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def group_members(
    server: SandboxServer, names: Iterable[str] | None = None, region: str = REGION
) -> dict[str, list[str]]:
    """The instances of each Auto Scaling group of `region` (or of `names` only) now, sorted."""
    filters = {} if names is None else {"AutoScalingGroupNames": list(names)}
    found = client(server, "autoscaling", region).describe_auto_scaling_groups(**filters)["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: sorted(i["InstanceId"] for i in g["Instances"]) for g in found}


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


def run_deferring(
    operator: Any, ctx: Any, timeout: float = 60, deferrals: list[TaskDeferred] | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    """Run a task as Airflow would: execute, then each deferral's trigger to its first event and the task resumed
    with it at the method the deferral named, until it returns. Returns its result and the events, in order;
    `deferrals`, if given, gets each deferral too."""
    events: list[dict[str, Any]] = []
    step: Callable[..., Any] = operator.execute
    arguments: tuple[Any, ...] = (ctx,)
    while True:
        try:
            return step(*arguments), events
        except TaskDeferred as deferred:
            if deferrals is not None:
                deferrals.append(deferred)
            event = first_trigger_payload(deferred.trigger, timeout=timeout)
            events.append(event)
            step, arguments = getattr(operator, deferred.method_name), (ctx, event)


def baked_result(bake: Mapping[str, Any], image_id: str, execution_id: str) -> dict[str, Any]:
    """The BAKE_RESULTS row bake_images leaves for a BAKE_PLAN row baked as `image_id`."""
    return {
        "account_id": str(bake["account_id"]),
        "region": str(bake["region"]),
        "bake_id": str(bake["bake_id"]),
        "source_image_id": str(bake["image_id"]),
        "image_id": image_id,
        "execution_id": execution_id,
        "status": "Success",
        "builder_instance_id": "i-b",
        "patch_ids": str(bake["patch_ids"]),
        "baked": True,
        "reason": "",
    }


def bake_all_as(config: dict[str, Any], run_id: str, image_id: str) -> None:
    """What bake_images leaves when every bake plan_install planned was baked as `image_id` (no bake is run)."""
    artifacts = run_artifacts(config, run_id)
    plan = artifacts.read(BAKE_PLAN).to_dict("records")
    results = [baked_result(bake, image_id, f"e-{bake['bake_id']}") for bake in plan]
    artifacts.write(BAKE_RESULTS, typed_frame(results, BAKE_RESULT_COLUMNS), target=TARGET)


def baked_run(
    server: SandboxServer,
    run_id: str,
    groups: Iterable[str],
    baked: str = AL2023,
    regions: Sequence[str] = (REGION,),
    **overrides: Any,
) -> dict[str, Any]:
    """A run as plan_install and bake_images leave it, without running them: in each of `regions` one bake of
    AL2023 for `groups` (as their members are now), baked as `baked` (AL2023 itself by default: the new launch
    template version still differs, so SkipMatching replaces every instance). Its config refreshes quickly
    (QUICK_REFRESH) unless `overrides` say otherwise; returns it."""
    config = cycle_config(s3_root(run_id), regions, **{**QUICK_REFRESH, **overrides})
    artifacts = run_artifacts(config, run_id)
    bakes, planned = [], []
    for number, region in enumerate(regions, start=1):
        target = Target("aws_default", region)
        artifacts.write(INVENTORY_SUMMARY, _empty_summary(target), target=target)
        members = group_members(server, groups, region)
        where, bake_id = {"account_id": ACCOUNT, "region": region}, f"b0{number}"
        bake = {
            **where,
            "bake_id": bake_id,
            "image_id": AL2023,
            "platform_type": "Linux",
            "platform_name": "AL2023",
            "instance_type": "t3.medium",
            "patch_ids": "ALAS-1",
            "auto_scaling_groups": ";".join(groups),
            "instances": sum(len(ids) for ids in members.values()),
        }
        bakes.append(bake)
        result = baked_result(bake, baked, f"e-{number}")
        artifacts.write(BAKE_RESULTS, typed_frame([result], BAKE_RESULT_COLUMNS), target=target)
        planned += [
            {
                **where,
                "auto_scaling_group": name,
                "launch_template": name,
                "launch_template_version": "1",
                "image_id": AL2023,
                "bake_id": bake_id,
                "instance_ids": ";".join(ids),
                "instances": len(ids),
            }
            for name, ids in members.items()
        ]
    artifacts.write(BAKE_PLAN, typed_frame(bakes, BAKE_PLAN_COLUMNS))
    artifacts.write(GROUP_PLAN, typed_frame(planned, GROUP_PLAN_COLUMNS))
    return config


def _empty_summary(target: Target) -> InventorySummary:
    return InventorySummary(
        aws_conn_id=target.aws_conn_id,
        region_name=target.region_name,
        account_id=ACCOUNT,
        resources=0,
        in_scope=0,
        by_type={},
        patchable_in_scope=0,
    )


def refresh_operator(config: dict[str, Any]) -> RefreshGroupsOperator:
    """refresh_groups as the DAG makes it (a fresh one is a new attempt, on another worker)."""
    return RefreshGroupsOperator(task_id="refresh_groups", config=config)


def refresh_to_end(
    config: dict[str, Any], run_id: str, deferrals: list[TaskDeferred] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """refresh_groups run to its end as Airflow would (run_deferring, each refresh waited for up to 120 s): its
    summary and the events it was resumed with."""
    summary, events = run_deferring(refresh_operator(config), context(run_id), timeout=120, deferrals=deferrals)
    return summary, events


def refreshes_by_group(config: dict[str, Any], run_id: str) -> dict[str, GroupRefresh]:
    """The run's refresh records by group name (one account and region)."""
    return {r.group: r for r in read_refreshes(run_artifacts(config, run_id)).values()}


def create_staging(config: dict[str, Any], run_id: str) -> None:
    """create_staging of us-east-1 run through its trigger: a replica of each profile, each bake's from its AMI."""
    operator = StagingStackOperator(task_id="create_staging", config=config, region_name=REGION)
    operator.execute_complete(context(run_id), first_trigger_payload(deferral(operator, context(run_id)).trigger))


def lose_a_pinned_patch(server: SandboxServer, artifacts: RunArtifacts, patch_ids: str, instance: str) -> Any:
    """Uninstall from `instance` the first of `patch_ids` that fixes CVEs (drift after it was patched); returns
    that patch's MATCH_PLAN row."""
    plan = artifacts.read(MATCH_PLAN, target=TARGET)
    lost = plan[plan["patch_id"].isin(split_cve_ids(patch_ids)) & (plan["cve_ids"] != "")].iloc[0]
    uninstall_patches(server.url, REGION, instance, [str(lost["patch_id"])])
    return lost


__all__ = [
    "AL2023",
    "CLOCK_SPEED",
    "QUICK_REFRESH",
    "REFRESH_CLOCK_SPEED",
    "WINDOWS",
    "asg",
    "bake",
    "bake_all_as",
    "baked_result",
    "baked_run",
    "client",
    "create_staging",
    "group_members",
    "immutable_scenario",
    "lose_a_pinned_patch",
    "planned_run",
    "refresh_operator",
    "refresh_scenario",
    "refresh_to_end",
    "refreshes_by_group",
    "run_deferring",
]

"""Shared by the install-mode operator tests: a small fleet, a run's validated config, and its artifacts up to
plan_install.

Runs keep their artifacts where install mode needs them, in the sandbox's S3 (instances read the pinned patch
lists from there), and the tests read them back through the run-artifact contract, as the operators do.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.config import CycleConfig, Target
from patchcycle.operators.install_plan import InstallPlanOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.operators.register_runbooks import RegisterRunbooksOperator
from patchcycle.run_artifacts import (
    INVENTORY,
    INVENTORY_SUMMARY,
    OVERRIDES,
    PRODUCTION,
    PROFILES,
    RDS_PLAN,
    WAVE_PLAN,
    Artifact,
    RunArtifacts,
)
from tests.conftest import advance_clock, first_trigger_payload

ACCOUNT = "123456789012"
DAG_ID = "patch_cycle"
REGION = "us-east-1"
TARGET = Target("aws_default", REGION)
TARGETS = [TARGET.as_kwargs()]
BUCKET = "patchcycle-artifacts"
AL2023 = "ami-0a1b2c3d4e5f60001"
WINDOWS = "ami-0a1b2c3d4e5f60003"
FAILING_PATCH = "ALAS2023-2026-1134"


def scenario(name: str, **sections: Any) -> dict[str, Any]:
    """us-east-1: six Amazon Linux web servers (two fail to install FAILING_PATCH) and two Windows servers."""
    production = {"Environment": "production"}
    return {
        "name": name,
        "seed": 7,
        "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1.0},
        "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}, WINDOWS: {"os": "WINDOWS"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    REGION: {
                        "instance_groups": [
                            {
                                "name": "web",
                                "count": 6,
                                "ami": AL2023,
                                "instance_type": "t3.medium",
                                "tags": {**production, "PatchGroup": "web"},
                                "patched_through": "2026-09-30",
                            },
                            {
                                "name": "win",
                                "count": 2,
                                "ami": WINDOWS,
                                "instance_type": "m6i.xlarge",
                                "tags": {**production, "PatchGroup": "windows"},
                                "patched_through": "2026-09-30",
                            },
                        ],
                        "s3_buckets": [{"name": BUCKET}],
                    }
                },
            }
        ],
        "failures": [{"group": "web", "count": 2, "install_fails": [FAILING_PATCH]}],
        "commands": {
            "delivery_seconds": 1,
            "scan_seconds": 2,
            "install_seconds": 5,
            "script_seconds": 2,
            "reboot_seconds": 3,
        },
        **sections,
    }


def cycle_config(root: str, regions: Iterable[str] = (REGION,), **overrides: Any) -> dict[str, Any]:
    """A test run's validated config (validate_params' `config` XCom): install mode, its artifacts under `root`,
    waves that fit eight instances, the auto approval policy, and quick polls."""
    params = {
        "mode": "install",
        "targets": [{"aws_conn_id": "aws_default", "regions": list(regions)}],
        "artifact_root": root,
        "canary": "2",
        "wave_percentages": [50, 50],
        "approval_mode": "auto",
        "poll_seconds": 0.1,
        **overrides,
    }
    return CycleConfig.from_params(params).as_params()


def s3_root(name: str) -> str:
    """An artifact root of its own in the sandbox's bucket."""
    return f"s3://{BUCKET}/tests/{name}"


def run_artifacts(config: dict[str, Any], run_id: str) -> RunArtifacts:
    """The run's artifacts, read and written as its tasks do."""
    return RunArtifacts(config["artifact_root"], DAG_ID, run_id, config["artifact_conn_id"])


def context(run_id: str, **extra: Any) -> Any:
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": run_id, "params": {}, **extra}


class LinkTi:
    """A task instance that keeps what the task pushes to XCom: the links' fields (BaseAwsLink.persist pushes
    them through the context's `ti`, under the link's key)."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def url(self, link: BaseAwsLink) -> str:
        """The console URL the UI would show for `link` (as BaseAwsLink.get_link formats it from XCom)."""
        return link.format_link(**self.xcom[link.key])


def linked_context(run_id: str, ti: LinkTi) -> Any:
    """A task's context whose task instance keeps the links the task persists."""
    return context(run_id, ti=ti)


def deferral(operator: Any, ctx: Any) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as caught:
        operator.execute(ctx)
    return caught.value


def match_run(server: SandboxServer, config: dict[str, Any], run_id: str, region: str = REGION) -> None:
    """Inventory and match of a region for `run_id`, as the scan-mode tasks leave them."""
    InventoryOperator(task_id="inventory", config=config, region_name=region).execute(context(run_id))
    scan = PatchScanOperator(task_id="match", config=config, region_name=region)
    trigger = deferral(scan, context(run_id)).trigger
    advance_clock(server.url, 30)
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    scan.execute_complete(context(run_id), payload)


def plan_run(server: SandboxServer, config: dict[str, Any], run_id: str, region: str = REGION) -> dict[str, Any]:
    """Inventory, match and plan_install of a region for `run_id` (the override lists land in the sandbox's S3)."""
    match_run(server, config, run_id, region)
    summary: dict[str, Any] = InstallPlanOperator(task_id="plan_install", config=config).execute(context(run_id))
    return summary


def copy_run(
    config: dict[str, Any], source: str, target: str, artifacts: Iterable[Artifact[Any]], targets: Iterable[Target]
) -> RunArtifacts:
    """Copy artifacts of one run to another (per target where the artifact is a target's), as a fresh run would
    have them; returns the new run's artifacts."""
    old, new = run_artifacts(config, source), run_artifacts(config, target)
    for artifact in artifacts:
        for where in targets if "target" in artifact.placeholders else [None]:
            value = old.find(artifact, target=where)
            if value is not None:
                new.write(artifact, value, target=where)
    return new


# What inventory and plan_install leave a run (the override lists stay where the source run's overrides point).
PLANNED = (INVENTORY, RDS_PLAN, INVENTORY_SUMMARY, PRODUCTION, PROFILES, WAVE_PLAN, OVERRIDES)


def wave_run(config: dict[str, Any], source: str, run_id: str, waves: dict[int, list[str]]) -> RunArtifacts:
    """A run planned as `source` was, but with exactly these wave members (no other instance is in a wave)."""
    artifacts = copy_run(config, source, run_id, PLANNED, [TARGET])
    plan = run_artifacts(config, source).read(WAVE_PLAN)
    wave_of = {instance: wave for wave, instances in waves.items() for instance in instances}
    plan = plan[plan["resource_id"].isin(wave_of)].assign(wave=lambda f: f["resource_id"].map(wave_of).astype("int64"))
    artifacts.write(WAVE_PLAN, plan.reset_index(drop=True))
    return artifacts


def register_runbooks(config: dict[str, Any], run_id: str, region: str = REGION) -> dict[str, str]:
    """register_runbooks of a region for `run_id`: the PatchCycle-* runbooks the waves start."""
    operator = RegisterRunbooksOperator(task_id="register_runbooks", config=config, region_name=region)
    actions: dict[str, str] = operator.execute(context(run_id))
    return actions

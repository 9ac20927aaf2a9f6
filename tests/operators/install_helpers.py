"""Shared by the install-mode operator tests: a small fleet, and a run's artifacts up to plan_install.

The artifact root is a file:// directory; the pinned patch lists (InstallOverrideList) are copied into the
sandbox's S3 bucket and overrides.json is pointed at them, because instances read the list from S3.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.config import InstallSettings
from patchcycle.operators.install_plan import InstallPlanOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from tests.conftest import advance_clock, client_factory, first_trigger_payload

ACCOUNT = "123456789012"
DAG_ID = "patch_cycle"
REGION = "us-east-1"
KEY = f"aws_default.{REGION}"
TARGETS = [{"aws_conn_id": "aws_default", "region_name": REGION}]
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


def settings(**overrides: Any) -> dict[str, Any]:
    """The install settings XCom (validate_params' `install`), with waves that fit eight instances."""
    defaults: dict[str, Any] = {"canary": "2", "wave_percentages": [50, 50], "approval_mode": "auto"}
    return InstallSettings.from_params({**defaults, **overrides}).as_dict()


def context(run_id: str, **extra: Any) -> Any:
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": run_id, "params": {}, **extra}


def run_dir(root: Path, run_id: str) -> Path:
    return root / DAG_ID / run_id.replace(":", "_").replace("+", "_")


def artifact(root: Path, run_id: str, stage: str, name: str) -> Path:
    return run_dir(root, run_id) / stage / name


def read_json(root: Path, run_id: str, stage: str, name: str) -> Any:
    return json.loads(artifact(root, run_id, stage, name).read_text())


def deferral(operator: Any, ctx: Any) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as caught:
        operator.execute(ctx)
    return caught.value


def match_run(server: SandboxServer, root: Path, run_id: str, region: str = REGION) -> None:
    """Inventory and match of a region for `run_id`, as the scan-mode tasks leave them."""
    stage_args: dict[str, Any] = {"region_name": region, "artifact_root": f"file://{root}"}
    InventoryOperator(task_id="inventory", **stage_args).execute(context(run_id))
    scan = PatchScanOperator(task_id="match", poll_seconds=0.1, **stage_args)
    trigger = deferral(scan, context(run_id)).trigger
    advance_clock(server.url, 30)
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    scan.execute_complete(context(run_id), payload)


def plan_run(
    server: SandboxServer, root: Path, run_id: str, install: Mapping[str, Any], region: str = REGION
) -> dict[str, Any]:
    """Inventory, match and plan_install of a region for `run_id`, the override lists published to the sandbox's S3."""
    match_run(server, root, run_id, region)
    targets = [{"aws_conn_id": "aws_default", "region_name": region}]
    summary: dict[str, Any] = InstallPlanOperator(
        task_id="plan_install", targets=targets, mode="install", settings=install, artifact_root=f"file://{root}"
    ).execute(context(run_id))
    publish_overrides(server, root, run_id)
    return summary


def publish_overrides(server: SandboxServer, root: Path, run_id: str) -> dict[str, str]:
    """Copy the run's override lists to s3://BUCKET/<run>/ and point overrides.json at them."""
    s3 = client_factory(server.url)("s3")
    local: dict[str, str] = read_json(root, run_id, "install", "overrides.json")
    published = {}
    for profile_id, uri in local.items():
        assert uri.startswith("file://"), uri
        key = f"tests/{run_id}/overrides/{profile_id}.yaml"
        s3.put_object(Bucket=BUCKET, Key=key, Body=Path(uri.removeprefix("file://")).read_bytes())
        published[profile_id] = f"s3://{BUCKET}/{key}"
    artifact(root, run_id, "install", "overrides.json").write_text(json.dumps(published))
    return published


def copy_run(root: Path, source: str, target_root: Path, target: str, stages: tuple[str, ...]) -> None:
    """Copy stages of one run's artifacts to another run (another root), as a fresh run would have them."""
    for stage in stages:
        shutil.copytree(run_dir(root, source) / stage, run_dir(target_root, target) / stage)

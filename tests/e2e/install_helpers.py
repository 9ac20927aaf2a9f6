"""What the install-mode end-to-end tests share: a faster default scenario, a small fleet, one headless run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from include.cycle import CycleResult, run_cycle
from include.sandbox.scenario import DEFAULT_SCENARIO

# Sandbox time runs 10x (an install takes 1.5 s, not 15 s); a hung command is cut short after 15 s.
CONF = {"command_timeout_minutes": 0.25, "approval_mode": "auto"}
SPEED = 10.0


def scenario_file(tmp_path: Path, name: str, change: Any = None) -> Path:
    """The default scenario, faster, optionally changed by `change(document)`."""
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    document["clock"]["speed"] = SPEED
    # Pre-patch snapshots and restores in seconds: a wave's rate-controlled runbooks ramp up over several rounds.
    document["ebs"] = {"snapshot_seconds": 10, "restore_pending_seconds": 2, "restore_in_progress_seconds": 5}
    if change is not None:
        change(document)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def small_fleet(document: dict[str, Any]) -> None:
    """One region: 12 web servers (Amazon Linux) and 8 app servers (Ubuntu), no injected failures (Inspector's
    unpatched findings kept for the groups that remain)."""
    region = document["accounts"][0]["regions"]["us-east-1"]
    groups = {g["name"]: g for g in region["instance_groups"]}
    groups["web-prod-use1"]["count"], groups["app-prod-use1"]["count"] = 12, 8
    region["instance_groups"] = [groups["web-prod-use1"], groups["app-prod-use1"]]
    region["rds_instances"] = []
    del document["accounts"][0]["regions"]["eu-west-1"]
    document["failures"], document["faults"] = [], {}
    kept = {group["name"] for group in region["instance_groups"]}
    inspector = document.get("inspector", {})
    inspector["unpatched_findings"] = [f for f in inspector.get("unpatched_findings", []) if f["group"] in kept]


def run(scenario: Path, out: Path, **conf: Any) -> tuple[CycleResult, dict[str, Any]]:
    result = run_cycle(scenario, "install", out, {**CONF, **conf})
    assert result.report_json is not None, f"no report; see {result.log_path}"
    assert result.stacks_left == (), f"staging stacks left behind: {result.stacks_left}"
    assert result.staging_dbs_left == (), f"RDS staging copies left behind: {result.staging_dbs_left}"
    return result, json.loads(result.report_json.read_text())


def ec2_rows(report: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [r for r in report["resources"] if r["resource_type"] == "ec2" and r["name"] == group]


def check_stacks_created_and_deleted(report: dict[str, Any], regions: set[str]) -> None:
    stacks = report["install"]["staging"]["stacks"]
    assert {s["region"] for s in stacks} == regions
    for stack in stacks:
        assert stack["created"] and stack["deleted"], stack
        assert stack["stack_name"].startswith("patchcycle-staging-") and stack["deleted_at"] >= stack["created_at"]

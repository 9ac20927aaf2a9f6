"""End to end: `airflow dags test patch_cycle` in install mode (approval_mode auto) against the sandbox.

The main run covers the default scenario and derives every verdict from the scenario file; the others
cover the failure paths on a small fleet: a canary that fails (halt), a staging stack that cannot be
created, and a staging health check that fails (the auto policy rejects). Every run must leave no
staging stack behind.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from include.cycle import CycleResult, run_cycle
from include.sandbox.scenario import DEFAULT_SCENARIO, load_scenario
from tests.e2e.test_scan_cycle import expected_missing

# Sandbox time runs 10x (an install takes 1.5 s, not 15 s); a hung command is cut short after 15 s.
CONF = {"command_timeout_minutes": 0.25, "approval_mode": "auto"}
SPEED = 10.0


def scenario_file(tmp_path: Path, name: str, change: Any = None) -> Path:
    """The default scenario, faster, optionally changed by `change(document)`."""
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    document["clock"]["speed"] = SPEED
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


SMALL_FLEET_TARGETS = [{"aws_conn_id": "aws_default", "regions": ["us-east-1"]}]


def run(scenario: Path, out: Path, **conf: Any) -> tuple[CycleResult, dict[str, Any]]:
    result = run_cycle(scenario, "install", out, {**CONF, **conf})
    assert result.report_json is not None, f"no report; see {result.log_path}"
    assert result.stacks_left == (), f"staging stacks left behind: {result.stacks_left}"
    return result, json.loads(result.report_json.read_text())


def ec2_rows(report: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [r for r in report["resources"] if r["resource_type"] == "ec2" and r["name"] == group]


def check_stacks_created_and_deleted(report: dict[str, Any], regions: set[str]) -> None:
    stacks = report["install"]["staging"]["stacks"]
    assert {s["region"] for s in stacks} == regions
    for stack in stacks:
        assert stack["created"] and stack["deleted"], stack
        assert stack["stack_name"].startswith("patchcycle-staging-") and stack["deleted_at"] >= stack["created_at"]


def test_install_cycle_patches_the_default_scenario_as_injected(tmp_path: Path) -> None:
    # A threshold above the injected failures: this run must reach every wave.
    scenario_path = scenario_file(tmp_path, "default-fast")
    result, report = run(scenario_path, tmp_path / "cycle", halt_threshold="50%")
    assert result.succeeded, f"see {result.log_path}"
    scenario = load_scenario(scenario_path)
    assert report["mode"] == "install" and report["accounting"]["ok"] and report["incomplete"] == []
    install = report["install"]
    assert install["staging"]["passed"] and install["staging"]["summary"]["failed"] == 0
    assert install["approval"]["decision"] == "Approve" and install["approval"]["mode"] == "auto"
    assert install["approval"]["by"] and install["approval"]["at"]
    assert install["halted_after_wave"] is None
    check_stacks_created_and_deleted(report, {"us-east-1", "eu-west-1"})

    missing = expected_missing(scenario)
    failures = {f.group: f for f in scenario.failures}
    production = 0
    for _, _, group in scenario.groups():
        rows = ec2_rows(report, group.name)
        assert len(rows) == group.count
        verdicts = Counter(r["verdict"] for r in rows)
        failure = failures.get(group.name)
        if group.agent in ("unmanaged", "offline"):
            assert set(verdicts) == {f"SKIPPED_{group.agent.upper()}"}
            continue
        if not missing[group.name]:
            assert verdicts == {"ALREADY_COMPLIANT": group.count}, group.name
            continue
        hit = failure.count or group.count if failure else 0
        if failure and (failure.scan_fails or failure.command_hangs):
            assert verdicts == {"SCAN_FAILED": hit, "PATCHED": group.count - hit}, group.name
        elif failure and failure.install_fails:
            assert verdicts == {"FAILED": hit, "PATCHED": group.count - hit}, group.name
            for row in rows:
                if row["verdict"] == "FAILED":
                    assert all(pid in row["reason"] for pid in failure.install_fails), row["reason"]
        elif failure and failure.reboot_required:
            assert verdicts["PATCHED"] + verdicts["PATCHED_PENDING_REBOOT"] == group.count, group.name
        else:
            assert verdicts == {"PATCHED": group.count}, group.name
        patched = [r for r in rows if r["verdict"] in ("PATCHED", "PATCHED_PENDING_REBOOT", "FAILED")]
        assert all(r["wave"] is not None for r in patched)
        production += len(patched)

    waves = install["waves"]
    assert sum(w["instances"] for w in waves) == production
    assert waves[0]["wave"] == 1 and waves[0]["instances"] == math.ceil(production * 0.05)
    assert all(w["status"] == "done" and w["sent"] == w["instances"] for w in waves)
    assert sum(w["failed"] for w in waves) == sum(r["verdict"] == "FAILED" for r in report["resources"])


def test_a_failing_canary_halts_the_later_waves(tmp_path: Path) -> None:
    def web_install_fails(document: dict[str, Any]) -> None:
        small_fleet(document)
        document["failures"] = [{"group": "web-prod-use1", "install_fails": ["ALAS2023-2026-1134"]}]

    scenario = scenario_file(tmp_path, "halt", web_install_fails)
    result, report = run(scenario, tmp_path / "cycle", canary="4", halt_threshold="0", targets=SMALL_FLEET_TARGETS)
    assert not result.succeeded, "a halted rollout fails the run"
    install = report["install"]
    assert install["halted_after_wave"] == 1
    assert [w["status"] for w in install["waves"]] == ["halted"] + ["skipped"] * (len(install["waves"]) - 1)
    canary = [r for r in report["resources"] if r["wave"] == 1]
    assert len(canary) == 4 and {r["name"] for r in canary} == {"web-prod-use1", "app-prod-use1"}
    for row in canary:
        expected = "FAILED" if row["name"] == "web-prod-use1" else "PATCHED"
        assert row["verdict"] == expected, row
    later = [r for r in report["resources"] if r["wave"] is not None and r["wave"] > 1]
    assert len(later) == 16
    assert all(r["verdict"] == "SKIPPED_HALTED" and r["reason"].startswith("halted after wave 1") for r in later)
    check_stacks_created_and_deleted(report, {"us-east-1"})


def test_a_staging_stack_that_fails_to_create_is_deleted_and_production_untouched(tmp_path: Path) -> None:
    reason = "Your requested instance type (t3.medium) is not supported in your requested Availability Zone"

    def stack_fails(document: dict[str, Any]) -> None:
        small_fleet(document)
        document["cloudformation"] = {"fail_stacks": [{"name_prefix": "patchcycle-staging-", "reason": reason}]}

    result, report = run(
        scenario_file(tmp_path, "stack-fails", stack_fails), tmp_path / "cycle", targets=SMALL_FLEET_TARGETS
    )
    assert not result.succeeded
    (stack,) = report["install"]["staging"]["stacks"]
    assert not stack["created"] and stack["deleted"] and reason in stack["error"]
    assert report["install"]["approval"]["decision"] == ""
    ec2 = [r for r in report["resources"] if r["resource_type"] == "ec2"]
    assert len(ec2) == 20 and {r["verdict"] for r in ec2} == {"SKIPPED_STAGING_FAILED"}
    assert all(reason in r["reason"] for r in ec2)


def test_a_failing_health_check_makes_the_auto_policy_reject(tmp_path: Path) -> None:
    def checks_fail(document: dict[str, Any]) -> None:
        small_fleet(document)
        document["failures"] = [{"tags": {"patchcycle:role": "staging", "PatchGroup": "app"}, "script_fails": True}]

    result, report = run(
        scenario_file(tmp_path, "checks-fail", checks_fail), tmp_path / "cycle", targets=SMALL_FLEET_TARGETS
    )
    assert not result.succeeded, "an unattended run that patched nothing because staging failed must fail"
    install = report["install"]
    assert not install["staging"]["passed"]
    failed = [i for i in install["staging"]["instances"] if not i["passed"]]
    assert [i["patch_group"] for i in failed] == ["app"] and "health check" in failed[0]["reason"]
    assert install["approval"]["decision"] == "Reject" and install["approval"]["by"] == "approval policy: auto"
    assert all(w["status"] == "skipped" for w in install["waves"])
    ec2 = [r for r in report["resources"] if r["resource_type"] == "ec2"]
    assert {r["verdict"] for r in ec2} == {"SKIPPED_STAGING_FAILED"}
    assert all("health check" in r["reason"] for r in ec2)
    check_stacks_created_and_deleted(report, {"us-east-1"})

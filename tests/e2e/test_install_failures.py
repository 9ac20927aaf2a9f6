"""End to end: install mode's failure paths on a small fleet: a canary that fails (halt), a staging stack that
cannot be created, and a staging health check that fails (the auto policy rejects). Every run must leave no
staging stack behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.install_helpers import (
    SMALL_FLEET_TARGETS,
    check_stacks_created_and_deleted,
    run,
    scenario_file,
    small_fleet,
)


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

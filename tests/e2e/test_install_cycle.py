"""End to end: `airflow dags test patch_cycle` in install mode (approval_mode auto) against the sandbox.

The default scenario, with its failures (failed installs, pending reboots, failed scans) and one Windows server
that a patch breaks, behind an open change calendar and a quiet health alarm: every verdict derived from the
scenario file. The failed installs and the broken server are rolled back to their pre-patch root volume. The
other failure paths (a halting canary, a failed restore, an alarm or a closed calendar halting the rollout, a
stack that fails to create, a failed staging health check) are proven by the operator, core and DAG graph
tests. The run must leave no staging stack behind.

RDS: orders-db is Multi-AZ with a read replica, orders-db-eu single-AZ, all three with a pending system-update
(rds_actions' default); storefront-db's db-upgrade is not an applied type and stays pending. Staging restores a
copy per (engine, version, class family) in each region, applies the update, checks and deletes it; the waves
apply the replica before its source. The variants (next-maintenance, a failing action halting the rollout) are
proven by tests/operators/test_rds.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from include.sandbox.scenario import load_scenario
from tests.e2e.install_helpers import check_stacks_created_and_deleted, ec2_rows, run, scenario_file
from tests.e2e.test_scan_cycle import expected_missing

ATTEMPTED = ("PATCHED", "PATCHED_PENDING_REBOOT", "FAILED", "ROLLED_BACK")


BROKEN = "win-prod-use1"
ASGS = {"web-asg-use1": 4, "api-asg-use1": 3}  # Auto Scaling groups and their desired capacity
# The instance refresh in simulated seconds (the sandbox runs 10x): short warm-up and checkpoint pauses.
REFRESH = {
    "refresh_instance_warmup_seconds": 20,
    "refresh_checkpoint_delay_seconds": 10,
}  # one of its servers fails its health checks once patched


def gated(document: dict[str, Any]) -> None:
    """The default scenario plus a server a patch breaks, an open change calendar and a health alarm in OK."""
    document["failures"].append({"group": BROKEN, "count": 1, "breaks_after_install": True})
    window = {"start_after_seconds": -3600, "duration_seconds": 86400, "summary": "Patch window"}
    document["change_calendars"] = [{"name": "patch-window", "type": "DEFAULT_CLOSED", "events": [window]}]
    document["alarms"] = [{"name": "web-prod-5xx", "state": "OK"}]
    with_databases(document)
    # Two Auto Scaling groups from one source AMI: one bake, two refreshes (immutable path).
    region = document["accounts"][0]["regions"]["us-east-1"]
    region["auto_scaling_groups"] = [
        {
            "name": name,
            "ami": "ami-0a1b2c3d4e5f60001",
            "instance_type": "t3.medium",
            "min": 1,
            "max": 8,
            "desired": desired,
            "tags": {"Environment": "production", "PatchGroup": "web", "App": "storefront"},
            "patched_through": "2026-09-30",
        }
        for name, desired in ASGS.items()
    ]
    document["images"] = {"create_seconds": 10}


def with_databases(document: dict[str, Any]) -> None:
    """orders-db Multi-AZ with a read replica (us-east-1); orders-db-eu stays single-AZ (eu-west-1)."""
    east = document["accounts"][0]["regions"]["us-east-1"]["rds_instances"]
    orders = next(db for db in east if db["id"] == "orders-db")
    orders["multi_az"] = True
    replica = {**orders, "id": "orders-db-replica", "replica_of": "orders-db", "multi_az": False}
    east.insert(east.index(orders) + 1, replica)
    # Simulated seconds (the clock runs 10x): restores, snapshots and deletions in a few wall seconds.
    document["rds"] = {
        "maintenance_seconds": 20,
        "failover_seconds": 10,
        "snapshot_seconds": 10,
        "restore_seconds": 20,
        "delete_seconds": 10,
    }


APPLIED_DBS = {"orders-db", "orders-db-replica", "orders-db-eu"}


def check_databases(report: dict[str, Any], artifacts: Path) -> None:
    """Staging restored, applied and deleted its copies; the waves applied the replica first; the verdicts."""
    rds = {r["resource_id"]: r for r in report["resources"] if r["resource_type"] == "rds"}
    for db in APPLIED_DBS:
        assert (rds[db]["verdict"], rds[db]["reason_code"]) == ("MAINTENANCE_APPLIED", "MAINTENANCE_APPLIED"), rds[db]
    assert rds["storefront-db"]["verdict"] == "MAINTENANCE_PENDING"  # db-upgrade: not in rds_actions
    results = pd.concat([pd.read_parquet(p) for p in sorted((artifacts / "staging").glob("*.rds_results.parquet"))])
    assert set(results["region"]) == {"us-east-1", "eu-west-1"} and results["passed"].all(), results.to_dict("records")
    assert set(results["source_db"]) == {"orders-db", "orders-db-eu"}
    assert set(results["step"]) == {"done"} and set(results["actions"]) == {"system-update"}
    assert all(str(s).startswith("rds:") for s in results["snapshot_id"])  # the latest automated snapshots
    for path in sorted((artifacts / "staging").glob("*.rds_stack.json")):
        stack = json.loads(path.read_text())
        assert stack["created"] and stack["deleted"] and set(stack["instances"].values()) <= set(results["staging_db"])
    rollout = pd.read_parquet(artifacts / "waves" / "rds_rollout.parquet").set_index("resource_id")
    assert set(rollout.index) == APPLIED_DBS and set(rollout["outcome"]) == {"applied"}
    assert rollout.loc["orders-db-replica", "wave"] < rollout.loc["orders-db", "wave"]
    assert set(rollout["status_after"]) == {"available"}  # and the actions gone from the pending list


# Beyond the suite's 600 s limit: this run also proves the RDS staging copies and waves, and the Auto Scaling
# groups' bake, proof and refreshes.
@pytest.mark.timeout(1200)
def test_install_cycle_patches_the_default_scenario_as_injected(tmp_path: Path) -> None:
    # A threshold above the injected failures: this run must reach every wave.
    scenario_path = scenario_file(tmp_path, "default-fast", gated)
    gates = {"change_calendar": "patch-window", "health_alarms": ["web-prod-*"]}
    result, report = run(scenario_path, tmp_path / "cycle", halt_threshold="50%", **gates, **REFRESH)
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
            # Rolled back to the pre-patch root volume: Patch Manager shows the pre-patch scan again.
            assert verdicts == {"ROLLED_BACK": hit, "PATCHED": group.count - hit}, group.name
            for row in rows:
                if row["verdict"] == "ROLLED_BACK":
                    assert row["reason_code"] == "ROLLED_BACK_AFTER_INSTALL"
                    assert all(pid in row["reason"] for pid in failure.install_fails), row["reason"]
                    assert row["patch_state"]["operation"] == "Scan", row
        elif failure and failure.breaks_after_install:
            assert verdicts == {"ROLLED_BACK": hit, "PATCHED": group.count - hit}, group.name
            (broken,) = (row for row in rows if row["verdict"] == "ROLLED_BACK")
            assert broken["reason_code"] == "ROLLED_BACK_AFTER_VALIDATION"
            assert "windowsHealthCheck" in broken["reason"] and broken["patch_state"]["operation"] == "Scan"
        elif failure and failure.reboot_required:
            assert verdicts["PATCHED"] + verdicts["PATCHED_PENDING_REBOOT"] == group.count, group.name
        else:
            assert verdicts == {"PATCHED": group.count}, group.name
        patched = [r for r in rows if r["verdict"] in ATTEMPTED]
        assert all(r["wave"] is not None and r["snapshot_ids"] for r in patched)  # each had its way back
        production += len(patched)

    waves = install["waves"]
    assert sum(w["instances"] for w in waves) == production
    assert waves[0]["wave"] == 1 and waves[0]["instances"] == math.ceil(production * 0.05)
    assert all(w["status"] == "done" and w["sent"] == w["instances"] for w in waves)
    failed = Counter(r["verdict"] for r in report["resources"] if r["verdict"] in ("FAILED", "ROLLED_BACK"))
    assert sum(w["failed"] for w in waves) == sum(failed.values())
    rollback = install["rollback"]
    assert rollback["settings"]["change_calendar"] == "patch-window" and rollback["settings"]["snapshot"]
    summary = rollback["summary"]
    assert (summary["snapshotted"], summary["snapshot_failures"]) == (production, 0)
    assert (summary["rolled_back"], summary["rollback_failures"]) == (failed["ROLLED_BACK"], 0) == (3, 0)
    assert summary["validation_failures"] == 1  # the broken server; the failed installs were never validated
    assert {entry["region"] for entry in rollback["retention"]} == {"us-east-1", "eu-west-1"}
    assert report["kpis"]["fleet"]["rolled_back"] == 3
    assert result.report_dir is not None
    check_databases(report, result.report_dir / "artifacts")

    # The Auto Scaling groups: replaced by their instance refresh onto the one baked AMI, never patched in place.
    groups = {g["group"]: g for g in install["auto_scaling_groups"]}
    assert set(groups) == set(ASGS)
    images = {g["image_id"] for g in groups.values()}
    assert len(images) == 1 and all(image.startswith("ami-") for image in images)  # one bake per source AMI
    for name, desired in ASGS.items():
        group = groups[name]
        assert group["status"] == "Successful" and group["default_version_set"], group
        assert group["version"] == "2" and group["checkpoints"][-1] == 100 and len(group["checkpoints"]) > 1
        assert len(group["instances"]) == desired and len(group["new_instances"]) == desired
        # Each new instance checked after the refresh: its scan shows the pinned patches, Inspector the CVEs closed.
        assert all(new["compliant"] and new["cves_closed"] for new in group["new_instances"]), group
        # Its inventory instances, each with the verdict it has among the resources.
        listed = {i["instance_id"]: i["verdict"] for i in group["instances"]}
        rows = {r["resource_id"]: r for r in report["resources"] if r["resource_id"] in listed}
        assert len(rows) == desired and {r["verdict"] for r in rows.values()} == set(listed.values()) == {"REPLACED"}
        assert all(r["auto_scaling_group"] == name for r in rows.values())
        assert all(group["image_id"] in r["reason"] and r["wave"] is None for r in rows.values())
        print(f"{name}: refresh {group['seconds']:.0f} simulated s, {group['api_calls']} API calls")

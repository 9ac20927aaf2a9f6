"""read_rds_report: the report's install.rds read back through the run-artifact contract, as cycle_report reads
it: the RDS plan and rehearsals plan_install wrote, each target's RDS staging stack and rehearsal results, the
rollout's rows and the gate's decision; a target whose staging task failed says why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from patchcycle.config import CycleConfig, Target
from patchcycle.core.outcomes import ApprovalRecord
from patchcycle.core.plan import rds_plan
from patchcycle.core.rds_plan import assign_waves, rds_install_plan, rehearsals
from patchcycle.core.rds_rollout import rehearsal_rows, rollout_rows
from patchcycle.readback.rds import read_rds_report
from patchcycle.run_artifacts import (
    APPROVAL_DECISION,
    RDS_INSTALL_PLAN,
    RDS_REHEARSAL_RESULTS,
    RDS_REHEARSALS,
    RDS_ROLLOUT,
    RDS_STAGING_STACK,
    TARGET_ERROR,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import StackRecord, TaskError
from tests.core.test_report_rds import ACCOUNT, PENDING, REGION, _inventory

RUN = "scheduled__rds_readback"
EU = Target("aws_default", "eu-west-1")
US = Target("aws_default", REGION)


def test_the_rds_section_reads_every_targets_stack_results_and_the_rollout(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    config = CycleConfig.from_params({"artifact_root": root})
    assert set(config.targets) == {US, EU}
    artifacts = RunArtifacts(root, "patch_cycle", RUN, conn_id=None)
    plan = rds_install_plan(_inventory(), rds_plan(PENDING[:2]), ("system-update",))
    plan = assign_waves(plan, {(ACCOUNT, REGION, "orders-replica"): 1, (ACCOUNT, REGION, "orders-main"): 2})
    # A second region's database, whose staging stack was never created.
    eu = plan[plan["resource_id"] == "orders-main"].assign(region="eu-west-1", resource_id="eu-main")
    plan = pd.concat([plan, eu], ignore_index=True)
    artifacts.write(RDS_INSTALL_PLAN, plan)
    copies = rehearsals(plan, RUN)
    artifacts.write(RDS_REHEARSALS, copies)
    [copy] = copies[copies["region"] == REGION].to_dict("records")
    result = {k: copy[k] for k in ("account_id", "region", "rehearsal_id", "staging_db", "source_db", "kind")}
    result |= {"actions": copy["actions"], "snapshot_id": "rds:orders-main-1", "passed": True, "step": "done"}
    artifacts.write(RDS_REHEARSAL_RESULTS, rehearsal_rows([result]), target=US)
    stack = StackRecord(
        stack_name="patchcycle-staging-rds-abc",
        account_id=ACCOUNT,
        region=REGION,
        created=True,
        status="DELETE_COMPLETE",
        deleted=True,
        deleted_at="2026-11-20T03:18:00Z",
    )
    artifacts.write(RDS_STAGING_STACK, stack, target=US)
    error = TaskError(stage=Step.RDS_STAGING, error="AccessDenied: CreateStack", at="2026-11-20T03:05:00Z", where="")
    artifacts.write(TARGET_ERROR, error, step=Step.RDS_STAGING, target=EU)
    decision = ApprovalRecord(decision="Approve", mode="auto", by="policy", at="2026-11-20T03:20:00Z")
    artifacts.write(APPROVAL_DECISION, decision)
    where = {"account_id": ACCOUNT, "region": REGION, "actions": "system-update"}
    artifacts.write(
        RDS_ROLLOUT,
        rollout_rows(
            [
                {**where, "resource_id": "orders-replica", "wave": 1, "outcome": "applied"},
                {**where, "resource_id": "orders-main", "wave": 2, "outcome": "failed", "detail": "Storage full."},
            ]
        ),
    )

    outcomes, section = read_rds_report(artifacts, config)
    assert outcomes is not None and section is not None
    assert section["apply"] == "immediate"
    stacks = {s["region"]: s for s in section["stacks"]}
    assert stacks[REGION]["stack_name"] == "patchcycle-staging-rds-abc" and stacks[REGION]["deleted"]
    assert stacks["eu-west-1"]["error"] == "no RDS staging stack: AccessDenied: CreateStack"
    rehearsed = {r["region"]: r for r in section["rehearsals"]}
    assert rehearsed[REGION]["passed"] and rehearsed[REGION]["stack_deleted"]
    assert rehearsed[REGION]["snapshot_id"] == "rds:orders-main-1"
    assert not rehearsed["eu-west-1"]["ran"]
    assert rehearsed["eu-west-1"]["detail"] == "no result: no RDS staging stack: AccessDenied: CreateStack"
    dbs = {d["resource_id"]: d for d in section["databases"]}
    assert {name: (d["wave"], d["outcome"]) for name, d in dbs.items()} == {
        "orders-replica": (1, "applied"),
        "orders-main": (2, "failed"),
        "eu-main": (2, "staging_failed"),
    }
    assert dbs["orders-main"]["reason"] == "applying system-update failed: Storage full."
    assert set(outcomes["resource_id"]) == set(dbs)


def test_no_rds_plan_no_section(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    artifacts = RunArtifacts(root, "patch_cycle", RUN, conn_id=None)
    assert read_rds_report(artifacts, CycleConfig.from_params({"artifact_root": root})) == (None, None)

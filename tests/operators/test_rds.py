"""RDS in install mode against the sandbox: the staging rehearsal (restored copies in a CloudFormation stack, the
actions applied and checked, the stack deleted) and the rollout's waves (immediate, next-maintenance, a failing
action halting the rest, one DB identifier in several accounts and regions), each deferral's trigger run as the
triggerer would run it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.config import CycleConfig, Target, dump_targets
from patchcycle.core.frames import typed_frame
from patchcycle.core.rds_plan import rds_stack_name, rehearsals
from patchcycle.core.rds_rollout import rehearsal_rows
from patchcycle.core.verdicts import OUTCOME_COLUMNS, install_verdicts
from patchcycle.hooks.rds_maintenance import RdsMaintenanceHook
from patchcycle.operators.install_plan import InstallPlanOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.operators.rds_rollout import RdsRolloutOperator
from patchcycle.operators.rds_staging import RdsRehearsalOperator, RdsStagingOperator, RdsStagingTeardownOperator
from patchcycle.operators.wave_gates import WaveHalted
from patchcycle.readback.match import read_match_tables
from patchcycle.readback.rds import read_rds_outcomes
from patchcycle.run_artifacts import (
    INVENTORY_SUMMARY,
    RDS_INSTALL_PLAN,
    RDS_REHEARSAL_RESULTS,
    RDS_REHEARSALS,
    RDS_ROLLOUT,
    RDS_STAGING_STACK,
    RunArtifacts,
)
from patchcycle.triggers.change_calendar import ChangeCalendarTrigger
from patchcycle.triggers.rds_maintenance import RdsMaintenanceTrigger, wait_id
from tests.conftest import advance_clock, first_trigger_payload, sandbox_calls, subscribed_topic
from tests.operators.install_helpers import (
    ACCOUNT,
    REGION,
    TARGET,
    context,
    copy_run,
    cycle_config,
    deferral,
    plan_run,
    run_artifacts,
    s3_root,
    scenario,
)
from tests.operators.test_patch_wave_way_back import create_calendar

MAINTENANCE_SECONDS = 60
BROKEN_RUN = "scheduled__rds_staging_broken"  # its RDS staging stack fails to create
BROKEN = "The DB instance class db.r6g.large is not available in us-east-1a"
# One DB identifier in three (account, region) places besides ACCOUNT's REGION (whose DB instances BASE_RUN plans):
# an identifier is unique only within its account and region.
WEST, OTHER_ACCOUNT = "eu-west-1", "210987654321"
SAME_NAME = "orders-db"


def _db(identifier: str, action: str, **extra: Any) -> dict[str, Any]:
    db = {
        "id": identifier,
        "engine": "postgres",
        "engine_version": "16.3",
        "instance_class": "db.r6g.large",
        "tags": {"Environment": "production"},
        "pending_maintenance": [{"action": action, "description": f"{action} available"}],
    }
    return {**db, **extra}


def rds_scenario() -> dict[str, Any]:
    document = scenario("rds")
    document["accounts"][0]["regions"][REGION]["rds_instances"] = [
        _db("imm-main", "system-update", multi_az=True),
        _db("imm-main-replica", "system-update", replica_of="imm-main"),
        _db("imm-solo", "os-upgrade", engine="mysql", engine_version="8.0.39", instance_class="db.t3.medium"),
        _db("nxt-db", "system-update", instance_class="db.m6g.large"),
        _db("bad-main", "system-update", instance_class="db.m6g.large"),
        _db("bad-main-replica", "system-update", instance_class="db.m6g.large", replica_of="bad-main"),
        _db("gate-a", "system-update", instance_class="db.m6g.large"),
        _db("gate-b", "system-update", instance_class="db.m6g.large"),
        _db("retry-a", "system-update", instance_class="db.m6g.large"),
        _db("retry-b", "os-upgrade", engine="mysql", engine_version="8.0.39", instance_class="db.t3.medium"),
    ]
    document["accounts"][0]["regions"][REGION]["rds_clusters"] = [
        {
            "id": "aur-ledger",
            "engine": "aurora-postgresql",
            "engine_version": "16.4",
            "instances": ["aur-ledger-1", "aur-ledger-2"],
            "tags": {"Environment": "production"},
            "pending_maintenance": [{"action": "system-update", "description": "Aurora system update"}],
        },
        {  # its own cluster: the other tests apply aur-ledger's action, which a restore would no longer inherit
            "id": "rehearsed-aurora",
            "engine": "aurora-postgresql",
            "engine_version": "16.4",
            "instances": ["rehearsed-aurora-1"],
            "tags": {"Environment": "production"},
            "pending_maintenance": [{"action": "system-update", "description": "Aurora system update"}],
        },
        {  # no automated cluster snapshot yet: staging takes one (and the teardown deletes it)
            "id": "fresh-aurora",
            "engine": "aurora-mysql",
            "engine_version": "8.0.mysql_aurora.3.05.2",
            "instances": ["fresh-aurora-1"],
            "automated_snapshot": False,
            "tags": {"Environment": "production"},
            "pending_maintenance": [{"action": "system-update", "description": "Aurora system update"}],
        },
        {
            "id": "aur-broken",
            "engine": "aurora-mysql",
            "engine_version": "8.0.mysql_aurora.3.05.2",
            "instances": ["aur-broken-1"],
            "tags": {"Environment": "production"},
            "pending_maintenance": [{"action": "system-update", "description": "Aurora system update"}],
        },
    ]
    document["cloudformation"] = {"fail_stacks": [{"name_prefix": rds_stack_name(BROKEN_RUN), "reason": BROKEN}]}
    document["rds"] = {
        "maintenance_seconds": MAINTENANCE_SECONDS,
        "failover_seconds": 20,
        "snapshot_seconds": 10,
        "restore_seconds": 30,
        "delete_seconds": 10,
        "fail_maintenance": [
            {"db_instance": "bad-main-replica", "reason": "Storage full."},
            {"db_cluster": "aur-broken", "reason": "The cluster volume is busy."},
        ],
    }
    document["accounts"][0]["regions"][WEST] = {"rds_instances": [_db(SAME_NAME, "system-update")]}
    document["accounts"].append(
        {
            "id": OTHER_ACCOUNT,
            "regions": {
                REGION: {"rds_instances": [_db(SAME_NAME, "system-update"), _db("payments-db", "system-update")]},
                WEST: {"rds_instances": [_db(SAME_NAME, "os-upgrade", engine="mysql", engine_version="8.0.39")]},
            },
        }
    )
    return document


SCENARIO = rds_scenario()
# The other account's connection assumes a role there (its STS client is pointed at the sandbox: tests/conftest.py).
SANDBOX_CONNECTIONS = {"aws_other": {"role_arn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/patchcycle"}}
ROOT = s3_root("rds")
BASE_RUN = "scheduled__rds_base"


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> dict[str, Any]:
    config = cycle_config(ROOT, canary="2", wave_percentages=[50, 50])
    plan_run(server, config, BASE_RUN)
    return config


def new_run(config: dict[str, Any], run_id: str, prefix: str) -> RunArtifacts:
    """A run planned as BASE_RUN, its RDS plan cut down to the DB instances named `prefix`*."""
    artifacts = copy_run(config, BASE_RUN, run_id, (INVENTORY_SUMMARY,), [TARGET])
    plan = run_artifacts(config, BASE_RUN).read(RDS_INSTALL_PLAN)
    plan = plan[plan["resource_id"].str.startswith(prefix)].reset_index(drop=True)
    artifacts.write(RDS_INSTALL_PLAN, plan)
    artifacts.write(RDS_REHEARSALS, rehearsals(plan, run_id))
    return artifacts


def passed_rehearsals(artifacts: RunArtifacts, accounts: dict[Target, str] | None = None) -> None:
    """Staging results as a passed rehearsal leaves them in each target (account) (for the rollout tests that do not
    rehearse)."""
    for target, account in (accounts or {TARGET: ACCOUNT}).items():
        rows = [
            {
                **{k: r[k] for k in ("account_id", "region", "rehearsal_id", "staging_db", "source_db", "actions")},
                "passed": True,
            }
            for r in artifacts.read(RDS_REHEARSALS).to_dict("records")
            if (r["account_id"], r["region"]) == (account, target.region_name)
        ]
        artifacts.write(RDS_REHEARSAL_RESULTS, rehearsal_rows(rows), target=target)


def drive(operator: Any, ctx: Any, deferred: TaskDeferred, server: SandboxServer, seconds: float) -> Any:
    """Resume a deferred task with its trigger's event, advancing the simulated clock first, until it returns."""
    while True:
        advance_clock(server.url, seconds)
        payload = first_trigger_payload(deferred.trigger)
        try:
            return getattr(operator, deferred.method_name)(ctx, payload, **(deferred.kwargs or {}))
        except TaskDeferred as again:
            deferred = again


def cluster_pending(server: SandboxServer, cluster: str) -> dict[str, dict[str, Any]]:
    filters = [{"Name": "db-cluster-id", "Values": [cluster]}]
    items = rds_client(server).describe_pending_maintenance_actions(Filters=filters)["PendingMaintenanceActions"]
    return {d["Action"]: d for item in items for d in item["PendingMaintenanceActionDetails"]}


def rds_client(server: SandboxServer) -> Any:
    return boto3.client("rds", region_name=REGION, endpoint_url=server.url)


def pending(server: SandboxServer, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for item in rds_client(server).describe_pending_maintenance_actions()["PendingMaintenanceActions"]:
        identifier = item["ResourceIdentifier"].rsplit(":", 1)[-1]
        if identifier in identifiers:
            found[identifier] = {d["Action"]: d for d in item["PendingMaintenanceActionDetails"]}
    return found


def test_staging_restores_applies_checks_and_deletes_then_the_waves_apply_replica_first(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_immediate"
    artifacts, ctx = new_run(base, run_id, "imm-"), context(run_id)
    planned = artifacts.read(RDS_INSTALL_PLAN)
    waves = dict(zip(planned["resource_id"], planned["wave"], strict=True))
    assert waves["imm-main-replica"] < waves["imm-main"]

    create = RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION)
    record = drive(create, ctx, deferral(create, ctx), server, 0)
    assert record["created"] and record["stack_name"].startswith("patchcycle-staging-rds-")
    copies = sorted(record["instances"].values())
    assert len(copies) == 2  # postgres 16.3 on db.r6g (the pair), mysql 8.0.39 on db.t3
    statuses = {
        db: rds_client(server).describe_db_instances(DBInstanceIdentifier=db)["DBInstances"][0] for db in copies
    }
    assert {db["DBInstanceStatus"] for db in statuses.values()} == {"creating"}
    results = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET)
    assert set(results["source_db"]) == {"imm-main", "imm-solo"}
    assert all(str(s).startswith("rds:") for s in results["snapshot_id"])  # the latest automated snapshots

    rehearse = RdsRehearsalOperator(task_id="rehearse_rds", config=base, region_name=REGION)
    summary = drive(rehearse, ctx, deferral(rehearse, ctx), server, MAINTENANCE_SECONDS + 1)
    assert summary == {"rehearsals": 2, "passed": 2}
    results = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET)
    assert set(results["step"]) == {"done"} and all(d.endswith(", accepting connections") for d in results["detail"])
    assert pending(server, copies) == {}  # applied on the copies
    production = ["imm-main", "imm-main-replica", "imm-solo"]
    assert set(pending(server, production)) == set(production)  # production untouched by staging

    teardown = RdsStagingTeardownOperator(task_id="delete_rds_staging", config=base, region_name=REGION)
    record = drive(teardown, ctx, deferral(teardown, ctx), server, 1)
    assert record["deleted"] and artifacts.read(RDS_STAGING_STACK, target=TARGET).deleted
    left = [db["DBInstanceIdentifier"] for db in rds_client(server).describe_db_instances()["DBInstances"]]
    assert not set(copies) & set(left)

    rollout = RdsRolloutOperator(task_id="rds_rollout", config=base)
    summary = drive(rollout, ctx, deferral(rollout, ctx), server, MAINTENANCE_SECONDS + 1)
    assert summary["outcomes"] == {"applied": 3}
    done = artifacts.read(RDS_ROLLOUT).set_index("resource_id")
    assert done.loc["imm-main-replica", "wave"] < done.loc["imm-main", "wave"]
    assert pending(server, production) == {}
    outcomes = read_rds_outcomes(artifacts, CycleConfig.from_params(base))
    assert outcomes is not None and set(outcomes["outcome"]) == {"applied"}
    # A retried task starts over: RDS no longer lists the actions (InvalidParameterCombination), the waits find
    # them applied.
    retried = drive(rollout, ctx, deferral(rollout, ctx), server, 1)
    assert retried["outcomes"] == {"applied": 3}


def test_next_maintenance_opts_in_and_is_scheduled(server: SandboxServer, base: dict[str, Any]) -> None:
    run_id = "scheduled__rds_next"
    config = {**base, "rds_apply": "next-maintenance"}
    artifacts, ctx = new_run(config, run_id, "nxt-"), context(run_id)
    passed_rehearsals(artifacts)
    rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    summary = drive(rollout, ctx, deferral(rollout, ctx), server, 1)
    assert summary["outcomes"] == {"scheduled": 1}
    assert pending(server, ["nxt-db"])["nxt-db"]["system-update"]["OptInStatus"] == "next-maintenance"


def test_a_database_its_wait_reports_nothing_for_is_failed_and_the_rollout_goes_on(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    """Never expected (each database of a wave is waited on or refused), but a database without a row would be
    taken up again by every later wave without end: it is failed, with why."""
    run_id = "scheduled__rds_unreported"
    config = {**base, "rds_apply": "next-maintenance", "halt_threshold": "1"}  # nxt-db as the test above leaves it
    artifacts, ctx = new_run(config, run_id, "nxt-"), context(run_id)
    passed_rehearsals(artifacts)
    rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    waiting = deferral(rollout, ctx)
    assert waiting.method_name == "wave_done"
    summary = rollout.wave_done(ctx, {"status": "done", "databases": {}})
    assert summary["outcomes"] == {"failed": 1}
    [row] = artifacts.read(RDS_ROLLOUT).to_dict("records")
    assert (row["account_id"], row["region"], row["resource_id"], row["actions"]) == (
        ACCOUNT,
        REGION,
        "nxt-db",
        "system-update",
    )
    assert row["detail"] == "its wait reported no state for it (its actions may have been applied)"


def test_a_failing_action_is_failed_with_its_cause_and_halts_the_source_wave(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_failure"
    config = {**base, "halt_threshold": "0"}
    artifacts, ctx = new_run(config, run_id, "bad-"), context(run_id)
    passed_rehearsals(artifacts)
    topic, inbox = subscribed_topic(server.url, "rds-halts")
    rollout = RdsRolloutOperator(task_id="rds_rollout", config={**config, "notify_topic_arn": topic})
    with pytest.raises(WaveHalted) as caught:  # fails the task, as an EC2 wave's halt does
        drive(rollout, ctx, deferral(rollout, ctx), server, MAINTENANCE_SECONDS + 1)
    assert str(caught.value) == (
        "RDS wave 1 halted the rollout: RDS wave 1 had 1 failure(s), more than the 0 allowed; "
        "later RDS waves will not run"
    )
    (told,) = inbox()
    assert told["Subject"] == f"Patch cycle {run_id}: RDS rollout halted at wave 1"
    assert "The later RDS waves will not run" in told["Message"]
    assert artifacts.read(RDS_ROLLOUT)["outcome"].value_counts().to_dict() == {"failed": 1, "halted": 1}
    done = artifacts.read(RDS_ROLLOUT).set_index("resource_id")
    assert done.loc["bad-main-replica", "outcome"] == "failed" and done.loc["bad-main-replica", "wave"] == 1
    assert "Storage full." in done.loc["bad-main-replica", "detail"]
    assert done.loc["bad-main", "outcome"] == "halted" and "more than the 0 allowed" in done.loc["bad-main", "detail"]
    assert set(pending(server, ["bad-main"])["bad-main"]) == {"system-update"}  # never touched
    assert ACCOUNT in done["account_id"].tolist()


# --- one DB identifier in several targets ----------------------------------------------------------------------

SAME_NAME_PLACES = {  # target -> its account, each with a SAME_NAME DB instance
    Target("aws_default", WEST): ACCOUNT,
    Target("aws_other", REGION): OTHER_ACCOUNT,
    Target("aws_other", WEST): OTHER_ACCOUNT,
}


def test_one_db_identifier_in_two_regions_and_two_accounts_is_applied_in_each_in_one_wave(
    server: SandboxServer,
) -> None:
    """orders-db in ACCOUNT's WEST, OTHER_ACCOUNT's REGION (the same action) and OTHER_ACCOUNT's WEST (another
    action): one wave waits on the three, one entry per target, and each gets its own row, account and verdict."""
    run_id = "scheduled__rds_same_name"
    targets = tuple(SAME_NAME_PLACES)
    config = cycle_config(s3_root("rds-same-name"), targets=dump_targets(targets), canary="3", wave_percentages=[100])
    ctx = context(run_id)
    for target in targets:
        InventoryOperator(task_id="inventory", config=config, **target.as_kwargs()).execute(ctx)
        assert PatchScanOperator(task_id="match", config=config, **target.as_kwargs()).execute(ctx)["scanned"] == 0
    assert InstallPlanOperator(task_id="plan_install", config=config).execute(ctx)["rds"]["waves"] == {"1": 3, "2": 1}
    artifacts = run_artifacts(config, run_id)
    plan = artifacts.read(RDS_INSTALL_PLAN)
    places = {(a, r) for a, r in zip(plan["account_id"], plan["region"], strict=True)}
    assert places == {(account, target.region_name) for target, account in SAME_NAME_PLACES.items()}
    first = plan[plan["wave"] == 1]
    assert set(first["resource_id"]) == {SAME_NAME} and len(first) == 3  # the three in one wave
    passed_rehearsals(artifacts, SAME_NAME_PLACES)

    rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    waiting = deferral(rollout, ctx)
    assert isinstance(waiting.trigger, RdsMaintenanceTrigger)
    entries = {Target(t["aws_conn_id"], t["region_name"]): t["databases"] for t in waiting.trigger.targets}
    assert entries == {  # one SAME_NAME wait per target, each keyed by its place
        target: [wait_id(SAME_NAME, [action], place=(account, target.region_name))]
        for (target, account), action in zip(
            SAME_NAME_PLACES.items(), ["system-update", "system-update", "os-upgrade"], strict=True
        )
    }
    summary = drive(rollout, ctx, waiting, server, MAINTENANCE_SECONDS + 1)

    assert summary["outcomes"] == {"applied": 4}
    done = artifacts.read(RDS_ROLLOUT)
    rows = {
        (r["account_id"], r["region"], r["resource_id"]): (r["wave"], r["actions"], r["outcome"])
        for r in done.to_dict("records")
    }
    assert len(done) == 4 and rows == {
        (ACCOUNT, WEST, SAME_NAME): (1, "system-update", "applied"),
        (OTHER_ACCOUNT, REGION, SAME_NAME): (1, "system-update", "applied"),
        (OTHER_ACCOUNT, WEST, SAME_NAME): (1, "os-upgrade", "applied"),
        (OTHER_ACCOUNT, REGION, "payments-db"): (2, "system-update", "applied"),
    }
    for target in targets:  # applied in each place, not the same DB twice
        hook = RdsMaintenanceHook(**target.as_kwargs())
        assert hook.pending_actions([SAME_NAME]) == {}
        assert hook.db_instances([SAME_NAME])[SAME_NAME]["DBInstanceStatus"] == "available"
    settings = CycleConfig.from_params(config)
    tables, outcomes = read_match_tables(artifacts, settings.targets), read_rds_outcomes(artifacts, settings)
    no_ec2 = typed_frame([], OUTCOME_COLUMNS)
    verdicts = install_verdicts(tables.inventory, tables.compliance, tables.plan, {}, no_ec2, outcomes)
    rds = verdicts[verdicts["resource_type"] == "rds"]
    assert sorted(zip(rds["account_id"], rds["region"], rds["resource_id"], rds["reason_code"], strict=True)) == [
        (ACCOUNT, WEST, SAME_NAME, "MAINTENANCE_APPLIED"),
        (OTHER_ACCOUNT, WEST, SAME_NAME, "MAINTENANCE_APPLIED"),
        (OTHER_ACCOUNT, REGION, SAME_NAME, "MAINTENANCE_APPLIED"),
        (OTHER_ACCOUNT, REGION, "payments-db", "MAINTENANCE_APPLIED"),
    ]


# --- Aurora DB clusters -------------------------------------------------------------------------------------------


def test_an_approved_aurora_cluster_is_applied_on_its_arn_and_waited_for(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_aurora"
    config = {**base, "approval_mode": "manual", "halt_threshold": "1"}
    artifacts, ctx = new_run(config, run_id, "aur-"), context(run_id)
    plan = artifacts.read(RDS_INSTALL_PLAN).set_index("resource_id")
    assert list(plan.index) == ["aur-broken", "aur-ledger"]  # from the inventory's DescribeDBClusters
    assert plan.loc["aur-ledger", "kind"] == "db-cluster"
    assert plan.loc["aur-ledger", "rehearsal_id"] == "aurora-postgresql-16-4-db-r6g"
    assert plan.loc["aur-ledger", "members"] == "aur-ledger-1;aur-ledger-2"
    assert plan.loc["aur-ledger", "resource_arn"] == f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:aur-ledger"
    assert set(artifacts.read(RDS_REHEARSALS)["kind"]) == {"db-cluster"}
    passed_rehearsals(artifacts)

    rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    first = deferral(rollout, ctx)
    cluster = rds_client(server).describe_db_clusters(DBClusterIdentifier="aur-ledger")["DBClusters"][0]
    assert cluster["Status"] == "upgrading"  # the immediate opt-in started it
    summary = drive(rollout, ctx, first, server, MAINTENANCE_SECONDS + 1)
    assert summary["outcomes"] == {"applied": 1, "failed": 1}
    done = artifacts.read(RDS_ROLLOUT).set_index("resource_id")
    assert done.loc["aur-ledger", "outcome"] == "applied" and done.loc["aur-ledger", "status_after"] == "available"
    assert done.loc["aur-broken", "outcome"] == "failed"
    assert "The cluster volume is busy." in done.loc["aur-broken", "detail"]  # its db-cluster event
    assert cluster_pending(server, "aur-ledger") == {}
    assert set(cluster_pending(server, "aur-broken")) == {"system-update"}
    outcomes = read_rds_outcomes(artifacts, CycleConfig.from_params(config))
    assert outcomes is not None and len(outcomes) == 2  # one row per cluster


def test_an_aurora_cluster_without_a_passed_rehearsal_is_not_applied(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_aurora_auto"
    artifacts, ctx = new_run(base, run_id, "aur-broken"), context(run_id)
    before = cluster_pending(server, "aur-broken")
    summary = RdsRolloutOperator(task_id="rds_rollout", config=base).execute(ctx)
    assert summary["outcomes"] == {"staging_failed": 1}
    done = artifacts.read(RDS_ROLLOUT).set_index("resource_id")
    assert (
        "staging rehearsal (aurora-mysql-8-0-mysql-aurora-3-05-2-db-r6g) did not pass"
        in done.loc["aur-broken", "detail"]
    )
    assert cluster_pending(server, "aur-broken") == before  # no opt-in sent


def test_an_aurora_cluster_is_rehearsed_on_a_restored_cluster_then_the_auto_policy_applies_it(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_aurora_staging"
    artifacts, ctx = new_run(base, run_id, "rehearsed-aurora"), context(run_id)
    [rehearsal] = artifacts.read(RDS_REHEARSALS).to_dict("records")
    assert (rehearsal["kind"], rehearsal["source_db"], rehearsal["instance_class"]) == (
        "db-cluster",
        "rehearsed-aurora",
        "db.r6g.large",
    )
    staging = str(rehearsal["staging_db"])

    create = RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION)
    record = drive(create, ctx, deferral(create, ctx), server, 0)
    assert record["created"] and record["instances"] == {rehearsal["rehearsal_id"]: staging}
    copy = rds_client(server).describe_db_clusters(DBClusterIdentifier=staging)["DBClusters"][0]
    assert (copy["Status"], copy["Engine"], copy["EngineVersion"]) == ("creating", "aurora-postgresql", "16.4")
    assert [m["DBInstanceIdentifier"] for m in copy["DBClusterMembers"]] == [f"{staging}-1"]
    [result] = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET).to_dict("records")
    assert result["kind"] == "db-cluster" and str(result["snapshot_id"]).startswith("rds:rehearsed-aurora-")

    rehearse = RdsRehearsalOperator(task_id="rehearse_rds", config=base, region_name=REGION)
    summary = drive(rehearse, ctx, deferral(rehearse, ctx), server, MAINTENANCE_SECONDS + 1)
    assert summary == {"rehearsals": 1, "passed": 1}
    [result] = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET).to_dict("records")
    assert (result["step"], result["engine_version_after"]) == ("done", "16.4")
    # The worker reached the copy's endpoint over TCP (rds_connect_check).
    assert result["detail"] == f"available at {copy['Endpoint']}:{copy['Port']}, accepting connections"
    assert cluster_pending(server, staging) == {}  # applied on the copy
    assert set(cluster_pending(server, "rehearsed-aurora")) == {"system-update"}  # production untouched by staging

    teardown = RdsStagingTeardownOperator(task_id="delete_rds_staging", config=base, region_name=REGION)
    assert drive(teardown, ctx, deferral(teardown, ctx), server, 1)["deleted"]
    left = [c["DBClusterIdentifier"] for c in rds_client(server).describe_db_clusters()["DBClusters"]]
    assert staging not in left and "rehearsed-aurora" in left

    rollout = RdsRolloutOperator(task_id="rds_rollout", config=base)  # approval_mode auto
    summary = drive(rollout, ctx, deferral(rollout, ctx), server, MAINTENANCE_SECONDS + 1)
    assert summary["outcomes"] == {"applied": 1}
    assert cluster_pending(server, "rehearsed-aurora") == {}


# --- the wave gates --------------------------------------------------------------------------------------------


def test_a_health_alarm_in_alarm_halts_the_rds_wave_before_it_applies_anything(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_alarm"
    config = {**base, "health_alarms": ["orders-5xx", "db-*"]}
    artifacts, ctx = new_run(config, run_id, "gate-"), context(run_id)
    passed_rehearsals(artifacts)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=server.url)
    cloudwatch.put_metric_alarm(
        AlarmName="db-connections",
        MetricName="DatabaseConnections",
        Namespace="AWS/RDS",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=500,
        ComparisonOperator="GreaterThanThreshold",
    )
    try:
        cloudwatch.set_alarm_state(AlarmName="db-connections", StateValue="ALARM", StateReason="Threshold Crossed")
        topic, inbox = subscribed_topic(server.url, "rds-alarm-halts")
        with pytest.raises(WaveHalted, match=r"; later RDS waves will not run$"):
            RdsRolloutOperator(task_id="rds_rollout", config={**config, "notify_topic_arn": topic}).execute(ctx)
    finally:
        cloudwatch.delete_alarms(AlarmNames=["db-connections"])
    done = artifacts.read(RDS_ROLLOUT)
    assert done["outcome"].value_counts().to_dict() == {"halted_by_alarm": 2}
    first = int(artifacts.read(RDS_INSTALL_PLAN)["wave"].min())  # the base plan's wave of the gate-* DBs
    expected = f"halted before RDS wave {first}: health alarm(s) in ALARM: db-connections ({ACCOUNT}/{REGION}: "
    (told,) = inbox()
    assert told["Subject"] == f"Patch cycle {run_id}: RDS rollout halted at wave {first}"
    assert expected in told["Message"]
    assert all(d.startswith(expected) for d in done["detail"])
    assert all("OptInStatus" not in d for d in pending(server, ["gate-a", "gate-b"]).values())
    outcomes = read_rds_outcomes(artifacts, CycleConfig.from_params(config))
    assert outcomes is not None and set(outcomes["outcome"]) == {"halted_by_alarm"}


def test_a_closed_change_calendar_defers_the_rds_wave_then_halts_at_the_deadline(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_calendar_closed"
    config = {**base, "change_calendar": "rds-long-freeze", "change_calendar_wait_minutes": 45}
    artifacts, ctx = new_run(config, run_id, "gate-"), context(run_id)
    passed_rehearsals(artifacts)
    create_calendar(server, "rds-long-freeze", timedelta(days=2))
    rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    waiting = deferral(rollout, ctx)
    assert waiting.method_name == "calendar_done" and waiting.timeout == timedelta(minutes=55)
    assert isinstance(waiting.trigger, ChangeCalendarTrigger) and waiting.trigger.calendar == "rds-long-freeze"
    closed = {"status": "closed", "state": "CLOSED", "checked_at": "", "next_transition": ""}
    with pytest.raises(WaveHalted):
        rollout.calendar_done(ctx, closed, **(waiting.kwargs or {}))
    assert artifacts.read(RDS_ROLLOUT)["outcome"].value_counts().to_dict() == {"halted_by_calendar": 2}
    detail = artifacts.read(RDS_ROLLOUT)["detail"].iloc[0]
    first = int(artifacts.read(RDS_INSTALL_PLAN)["wave"].min())
    assert detail.startswith(f"halted before RDS wave {first}: change calendar rds-long-freeze stayed CLOSED for 45 ")
    assert all("OptInStatus" not in d for d in pending(server, ["gate-a", "gate-b"]).values())


def test_an_rds_wave_waits_for_the_change_calendar_to_open_then_applies(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_calendar_opens"
    config = {**base, "change_calendar": "rds-short-freeze", "change_calendar_wait_minutes": 45}
    artifacts, ctx = new_run(config, run_id, "gate-"), context(run_id)
    passed_rehearsals(artifacts)
    create_calendar(server, "rds-short-freeze", timedelta(minutes=30))
    rollout = RdsRolloutOperator(task_id="rds_rollout", config=config)
    waiting = deferral(rollout, ctx)
    assert waiting.method_name == "calendar_done"
    assert all("OptInStatus" not in d for d in pending(server, ["gate-a", "gate-b"]).values())  # nothing yet
    advance_clock(server.url, 31 * 60)
    summary = drive(rollout, ctx, waiting, server, MAINTENANCE_SECONDS + 1)
    assert summary["outcomes"] == {"applied": 2}
    assert pending(server, ["gate-a", "gate-b"]) == {}


def test_a_cluster_without_an_automated_snapshot_gets_one_taken_and_deleted_by_the_teardown(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_aurora_manual_snapshot"
    artifacts, ctx = new_run(base, run_id, "fresh-aurora"), context(run_id)
    rds = rds_client(server)
    automated = rds.describe_db_cluster_snapshots(DBClusterIdentifier="fresh-aurora", SnapshotType="automated")
    assert automated["DBClusterSnapshots"] == []
    create = RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION)
    waiting = deferral(create, ctx)  # the source cluster is backing-up while its snapshot is taken
    assert waiting.method_name == "create_stack"
    [result] = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET).to_dict("records")
    taken = str(result["snapshot_id"])
    assert taken == f"patchcycle-{result['staging_db']}"
    [snapshot] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=taken)["DBClusterSnapshots"]
    assert (snapshot["Status"], snapshot["SnapshotType"]) == ("creating", "manual")
    assert {"Key": "patchcycle:run-id", "Value": run_id} in rds.list_tags_for_resource(
        ResourceName=snapshot["DBClusterSnapshotArn"]
    )["TagList"]
    # A retry while the snapshot is taken waits for it again instead of failing on DBClusterSnapshotAlreadyExists.
    taken_before = sandbox_calls(server.url, "rds:CreateDBClusterSnapshot")
    waiting = deferral(RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION), ctx)
    assert waiting.method_name == "create_stack"
    assert sandbox_calls(server.url, "rds:CreateDBClusterSnapshot") == taken_before
    record = drive(create, ctx, waiting, server, 61)
    assert record["created"]
    rehearse = RdsRehearsalOperator(task_id="rehearse_rds", config=base, region_name=REGION)
    assert drive(rehearse, ctx, deferral(rehearse, ctx), server, MAINTENANCE_SECONDS + 1)["passed"] == 1
    teardown = RdsStagingTeardownOperator(task_id="delete_rds_staging", config=base, region_name=REGION)
    assert drive(teardown, ctx, deferral(teardown, ctx), server, 1)["deleted"]
    with pytest.raises(ClientError) as raised:
        rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=taken)
    assert raised.value.response["Error"]["Code"] == "DBClusterSnapshotNotFoundFault"


def test_retried_staging_tasks_take_up_their_stack_and_applied_actions_instead_of_failing(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    run_id = "scheduled__rds_staging_retry"
    artifacts, ctx = new_run(base, run_id, "retry-"), context(run_id)
    created_before = sandbox_calls(server.url, "cloudformation:CreateStack")
    first = deferral(RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION), ctx)
    assert first.method_name == "execute_complete"
    # The first try lost (its worker gone) while the stack is creating: the second try runs execute again.
    retry = RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION)
    again = deferral(retry, ctx)
    assert again.method_name == "execute_complete"
    record = drive(retry, ctx, again, server, 0)
    assert record["created"]
    # And a try after the stack was created finds it complete and records it again.
    record = drive(retry, ctx, deferral(retry, ctx), server, 0)
    assert record["created"] and record["status"] == "CREATE_COMPLETE"
    assert sandbox_calls(server.url, "cloudformation:CreateStack") == created_before + 1
    copies = {
        r["source_db"]: r["staging_db"] for r in artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET).to_dict("records")
    }

    # retry-b's copy has its os-upgrade applied by hand before the rehearsal: not pending, a failed rehearsal.
    advance_clock(server.url, 31)
    rds = rds_client(server)
    [copy_b] = rds.describe_db_instances(DBInstanceIdentifier=copies["retry-b"])["DBInstances"]
    rds.apply_pending_maintenance_action(
        ResourceIdentifier=copy_b["DBInstanceArn"], ApplyAction="os-upgrade", OptInType="immediate"
    )
    advance_clock(server.url, MAINTENANCE_SECONDS + 1)
    # The rehearsal's first try applies retry-a's copy's action, then is lost before its check.
    rehearse = RdsRehearsalOperator(task_id="rehearse_rds", config=base, region_name=REGION)
    ready = first_trigger_payload(deferral(rehearse, ctx).trigger)
    with pytest.raises(TaskDeferred) as applied:
        rehearse.apply(ctx, ready)
    assert applied.value.method_name == "check"
    applies = sandbox_calls(server.url, "rds:ApplyPendingMaintenanceAction")
    # (This try without the connectivity check: the copy is judged on what RDS reports.)
    unconnected = {**base, "rds_connect_check": False}
    retried = RdsRehearsalOperator(task_id="rehearse_rds", config=unconnected, region_name=REGION)
    assert drive(retried, ctx, deferral(retried, ctx), server, MAINTENANCE_SECONDS + 1) == {
        "rehearsals": 2,
        "passed": 1,
    }
    assert sandbox_calls(server.url, "rds:ApplyPendingMaintenanceAction") == applies  # not applied twice
    results = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET).set_index("source_db")
    assert results.loc["retry-a", "passed"] and results.loc["retry-a", "step"] == "done"
    assert str(results.loc["retry-a", "detail"]).startswith("available at 127.0.0.1:")
    assert not str(results.loc["retry-a", "detail"]).endswith("accepting connections")
    assert not results.loc["retry-b", "passed"]
    assert results.loc["retry-b", "detail"] == "not pending on the restored copy: os-upgrade"

    teardown = RdsStagingTeardownOperator(task_id="delete_rds_staging", config=base, region_name=REGION)
    assert drive(teardown, ctx, deferral(teardown, ctx), server, 1)["deleted"]
    assert artifacts.read(RDS_STAGING_STACK, target=TARGET).deleted
    stacks = boto3.client("cloudformation", region_name=REGION, endpoint_url=server.url).list_stacks()
    assert [s["StackStatus"] for s in stacks["StackSummaries"] if s["StackName"] == record["stack_name"]] == [
        "DELETE_COMPLETE"
    ]


def test_a_staging_stack_that_fails_to_create_is_deleted_with_the_snapshots_the_run_took(
    server: SandboxServer, base: dict[str, Any]
) -> None:
    artifacts, ctx = new_run(base, BROKEN_RUN, "fresh-aurora"), context(BROKEN_RUN)
    create = RdsStagingOperator(task_id="create_rds_staging", config=base, region_name=REGION)
    with pytest.raises(AirflowFailException) as caught:
        drive(create, ctx, deferral(create, ctx), server, 61)  # a manual cluster snapshot, then the stack
    name = rds_stack_name(BROKEN_RUN)
    message = str(caught.value)
    assert message.startswith(f"RDS staging stack {name} in {REGION} failed to create (ROLLBACK_COMPLETE): ")
    assert BROKEN in message
    assert message.endswith("this run's 1 manual snapshot(s) were deleted; the stack was deleted")
    record = artifacts.read(RDS_STAGING_STACK, target=TARGET)
    assert (record.created, record.deleted, record.status) == (False, True, "ROLLBACK_COMPLETE")
    assert BROKEN in record.error and record.deleted_at
    [result] = artifacts.read(RDS_REHEARSAL_RESULTS, target=TARGET).to_dict("records")
    rds = rds_client(server)
    with pytest.raises(ClientError) as gone:
        rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=str(result["snapshot_id"]))
    assert gone.value.response["Error"]["Code"] == "DBClusterSnapshotNotFoundFault"
    clusters = [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]]
    assert result["staging_db"] not in clusters
    stacks = boto3.client("cloudformation", region_name=REGION, endpoint_url=server.url).list_stacks()
    assert [s["StackStatus"] for s in stacks["StackSummaries"] if s["StackName"] == name] == ["DELETE_COMPLETE"]

"""RDS in install mode: the plan, its rehearsals and waves, the wait states, the outcomes and their verdicts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.approval_request import ApprovalInputs, approval_body, staging_passed
from patchcycle.core.frames import typed_frame
from patchcycle.core.inventory import INVENTORY_COLUMNS
from patchcycle.core.plan import COMPLIANCE_COLUMNS, PLAN_COLUMNS, rds_plan
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.rds_approval import rds_approval_section, rds_rehearsals_passed
from patchcycle.core.rds_plan import (
    DOWNTIME,
    FAILOVER,
    assign_waves,
    databases_of,
    instance_family,
    plan_rds_waves,
    rds_install_plan,
    rds_staging_template,
    rehearsals,
)
from patchcycle.core.rds_rollout import (
    WaitState,
    maintenance_state,
    rds_outcomes,
    rehearsal_check,
    rehearsal_rows,
    rollout_rows,
)
from patchcycle.core.scope import SCOPE_COLUMNS
from patchcycle.core.staging import PLANNED_PRODUCTION_COLUMNS, PROFILE_COLUMNS, STAGING_RESULT_COLUMNS
from patchcycle.core.verdicts import OUTCOME_COLUMNS, Verdict, install_verdicts
from patchcycle.core.waves import WAVE_PLAN_COLUMNS

ACCOUNT, REGION = "123456789012", "us-east-1"


def _db(
    identifier: str,
    *,
    multi_az: bool = False,
    replica_of: str = "",
    engine: str = "postgres",
    version: str = "16.3",
    klass: str = "db.r6g.large",
    pending: int = 1,
) -> dict[str, Any]:
    return {
        "account_id": ACCOUNT,
        "region": REGION,
        "resource_type": "rds",
        "resource_id": identifier,
        "resource_arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}",
        "engine": engine,
        "engine_version": version,
        "instance_type": klass,
        "multi_az": multi_az,
        "replica_of": replica_of,
        "pending_actions": pending,
        "patchable": pending > 0,
        "in_scope": True,
        "managed": False,
        "responsibility": "shared",
    }


def _inventory(*dbs: dict[str, Any]) -> pd.DataFrame:
    return typed_frame(dbs, {**INVENTORY_COLUMNS, **SCOPE_COLUMNS})


def _pending(identifier: str, *actions: str) -> dict[str, Any]:
    return {
        "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}",
        "PendingMaintenanceActionDetails": [
            {
                "Action": a,
                "Description": f"{a} description",
                "AutoAppliedAfterDate": pd.Timestamp("2026-12-15", tz="UTC"),
            }
            for a in actions
        ],
    }


FLEET = _inventory(
    _db("orders-db", multi_az=True),
    _db("orders-db-replica", replica_of="orders-db"),
    _db("shop-db", engine="mysql", version="8.0.39", klass="db.t3.medium", pending=2),
)
PENDING = rds_plan(
    [
        _pending("orders-db", "system-update"),
        _pending("orders-db-replica", "system-update"),
        _pending("shop-db", "os-upgrade", "db-upgrade"),
    ]
)


def test_the_plan_takes_the_applied_action_types_with_their_dates_and_impact() -> None:
    plan = rds_install_plan(FLEET, PENDING, ("system-update", "os-upgrade"))
    assert list(zip(plan["resource_id"], plan["action"], strict=True)) == [
        ("orders-db", "system-update"),
        ("orders-db-replica", "system-update"),
        ("shop-db", "os-upgrade"),
    ]  # shop-db's db-upgrade is not an applied type: it stays pending
    impact = dict(zip(plan["resource_id"], plan["impact"], strict=True))
    assert impact == {"orders-db": FAILOVER, "orders-db-replica": DOWNTIME, "shop-db": DOWNTIME}
    assert (plan["auto_applied_after"] == pd.Timestamp("2026-12-15", tz="UTC")).all()
    assert plan.loc[plan["resource_id"] == "orders-db-replica", "replica_of"].item() == "orders-db"
    out_of_scope = FLEET.assign(in_scope=FLEET["resource_id"] != "shop-db")
    assert "shop-db" not in set(rds_install_plan(out_of_scope, PENDING, ("os-upgrade",))["resource_id"])


def test_one_rehearsal_per_engine_version_and_class_family_restored_from_a_primary() -> None:
    plan = rds_install_plan(FLEET, PENDING, ("system-update", "os-upgrade"))
    found = rehearsals(plan, "run-1").set_index("rehearsal_id")
    assert instance_family("db.r6g.large") == "db.r6g"
    assert set(found.index) == {"postgres-16-3-db-r6g", "mysql-8-0-39-db-t3"}
    postgres = found.loc["postgres-16-3-db-r6g"]
    assert (postgres["source_db"], postgres["databases"], postgres["actions"]) == ("orders-db", 2, "system-update")
    assert postgres["staging_db"].startswith("patchcycle-stg-") and len(postgres["staging_db"]) <= 63
    assert (
        postgres["staging_db"]
        != rehearsals(plan, "run-2").set_index("rehearsal_id").loc["postgres-16-3-db-r6g", "staging_db"]
    )


@pytest.mark.parametrize("canary", ["1", "50%", "100%"])
def test_replicas_go_first_and_never_in_the_wave_of_their_source(canary: str) -> None:
    dbs = [
        ((ACCOUNT, REGION, "a-primary"), ""),
        ((ACCOUNT, REGION, "a-replica-1"), "a-primary"),
        ((ACCOUNT, REGION, "a-replica-2"), "a-primary"),
        ((ACCOUNT, REGION, "b-single"), ""),
        ((ACCOUNT, REGION, "c-primary"), ""),
        ((ACCOUNT, REGION, "c-replica"), "c-primary"),
    ]
    waves = plan_rds_waves(dbs, CountOrPercent.parse("canary", canary), (50, 50), 5)
    assert set(waves) == {key for key, _ in dbs}
    for key, source in dbs:
        if source:
            assert waves[key] < waves[(ACCOUNT, REGION, source)], (key, waves)
    # Every replica goes before (or in the last wave of replicas with) every primary, never after one.
    last_replica = max(wave for key, wave in waves.items() if "replica" in key[2])
    assert all(wave >= last_replica for key, wave in waves.items() if "replica" not in key[2])
    assert waves[(ACCOUNT, REGION, "a-replica-1")] == 1


@pytest.mark.parametrize("canary", ["1", "50%", "100%"])
@pytest.mark.parametrize("names", [("a", "b", "c"), ("c", "b", "a"), ("b", "c", "a")])
def test_a_cascade_of_replicas_puts_each_replica_before_its_own_source(canary: str, names: tuple[str, ...]) -> None:
    """primary <- first <- second <- third (a replica of a replica, as MySQL and PostgreSQL allow), whatever
    order the identifiers sort in: each one in an earlier wave than the one it replicates."""
    first, second, third = names
    dbs = [
        ((ACCOUNT, REGION, first), "primary"),
        ((ACCOUNT, REGION, second), first),
        ((ACCOUNT, REGION, third), second),
        ((ACCOUNT, REGION, "primary"), ""),
    ]
    waves = plan_rds_waves(dbs, CountOrPercent.parse("canary", canary), (100,), 5)
    for key, source in dbs:
        if source:
            assert waves[key] < waves[(ACCOUNT, REGION, source)], (key, waves)


def test_a_plan_without_replicas_keeps_the_ec2_wave_sizes() -> None:
    dbs = [((ACCOUNT, REGION, f"db-{n}"), "") for n in range(10)]
    waves = plan_rds_waves(dbs, CountOrPercent(1, percent=False), (50, 50), 5)
    assert sorted(pd.Series(waves).value_counts().sort_index().tolist()) == [1, 4, 5]


def test_the_staging_template_restores_each_copy_from_its_snapshot() -> None:
    import yaml

    from patchcycle.config import REPO_ROOT

    base = yaml.safe_load((REPO_ROOT / "include" / "cloudformation" / "rds_staging.yaml").read_text())
    copy = {
        "rehearsal_id": "postgres-16-3-db-r6g",
        "staging_db": "patchcycle-stg-0a1b",
        "snapshot_id": "rds:orders-db-x",
        "instance_class": "db.r6g.large",
    }
    template = rds_staging_template(base, [copy], "manual__1")
    assert "Parameters" not in template
    [(logical_id, resource)] = template["Resources"].items()
    assert logical_id == "StagingDbPostgres163DbR6g" and resource["DeletionPolicy"] == "Delete"
    props = resource["Properties"]
    assert (props["DBInstanceIdentifier"], props["DBSnapshotIdentifier"]) == ("patchcycle-stg-0a1b", "rds:orders-db-x")
    assert props["MultiAZ"] is False and props["PubliclyAccessible"] is False
    assert {"Key": "patchcycle:run-id", "Value": "manual__1"} in props["Tags"]


def test_the_staging_template_restores_a_cluster_copy_with_one_instance_in_it() -> None:
    import yaml

    from patchcycle.config import REPO_ROOT

    base = yaml.safe_load((REPO_ROOT / "include" / "cloudformation" / "rds_staging.yaml").read_text())
    copy = {
        "rehearsal_id": "aurora-postgresql-16-4-db-r6g",
        "staging_db": "patchcycle-stg-9f8e",
        "snapshot_id": "rds:ledger-x",
        "instance_class": "db.r6g.large",
        "kind": "db-cluster",
        "engine": "aurora-postgresql",
    }
    template = rds_staging_template(base, [copy], "manual__1")
    resources = template["Resources"]
    assert sorted(resources) == ["StagingClusterAuroraPostgresql164DbR6g", "StagingClusterDbAuroraPostgresql164DbR6g"]
    cluster = resources["StagingClusterAuroraPostgresql164DbR6g"]
    assert cluster["Type"] == "AWS::RDS::DBCluster" and cluster["DeletionPolicy"] == "Delete"
    assert cluster["Properties"]["DBClusterIdentifier"] == "patchcycle-stg-9f8e"
    assert cluster["Properties"]["SnapshotIdentifier"] == "rds:ledger-x"
    assert cluster["Properties"]["Engine"] == "aurora-postgresql"
    member = resources["StagingClusterDbAuroraPostgresql164DbR6g"]["Properties"]
    assert member["DBClusterIdentifier"] == {"Ref": "StagingClusterAuroraPostgresql164DbR6g"}  # created after it
    assert (member["DBInstanceIdentifier"], member["DBInstanceClass"]) == ("patchcycle-stg-9f8e-1", "db.r6g.large")
    assert {"Key": "patchcycle:role", "Value": "rds-staging"} in member["Tags"]


@pytest.mark.parametrize(
    ("kind", "status", "pending", "expected"),
    [
        ("available", "creating", {}, WaitState.WAITING),
        ("available", "available", {}, WaitState.READY),
        ("immediate", "upgrading", {"system-update": {}}, WaitState.WAITING),
        ("immediate", "available", {}, WaitState.APPLIED),
        # opted in, not started yet
        ("immediate", "available", {"system-update": {"OptInStatus": "immediate"}}, WaitState.WAITING),
        # available, still pending, its opt-in gone: applying it failed
        ("immediate", "available", {"system-update": {}}, WaitState.FAILED),
        ("immediate", None, {}, WaitState.FAILED),
        ("immediate", "failed", {}, WaitState.FAILED),
        ("next-maintenance", "available", {"system-update": {"OptInStatus": "next-maintenance"}}, WaitState.SCHEDULED),
        ("next-maintenance", "available", {}, WaitState.APPLIED),
        ("next-maintenance", "available", {"system-update": {}}, WaitState.FAILED),
    ],
)
def test_where_a_db_instance_stands_in_a_wait(
    kind: str, status: str | None, pending: dict[str, Any], expected: WaitState
) -> None:
    assert maintenance_state(kind, status, ["system-update"], pending) == expected


def test_the_rehearsal_check() -> None:
    db = {
        "DBInstanceStatus": "available",
        "Endpoint": {"Address": "x.rds.amazonaws.com", "Port": 5432},
        "EngineVersion": "8.0.40",
    }
    assert rehearsal_check(db, ["db-upgrade"], {}, "8.0.40") == ""
    assert "not 8.0.41" in rehearsal_check(db, ["db-upgrade"], {}, "8.0.41")
    assert "still pending" in rehearsal_check(db, ["os-upgrade"], {"os-upgrade": {}}, None)
    assert "no endpoint" in rehearsal_check({**db, "Endpoint": {}}, ["os-upgrade"], {}, None)
    assert rehearsal_check(None, ["os-upgrade"], {}, None) == "the staging copy is gone"


def _planned() -> pd.DataFrame:
    plan = rds_install_plan(FLEET, PENDING, ("system-update", "os-upgrade"))
    return assign_waves(plan, plan_rds_waves(databases_of(plan), CountOrPercent(1, percent=False), (100,), 5))


def _verdicts(outcomes: pd.DataFrame) -> dict[str, tuple[str, str]]:
    inventory = FLEET
    verdicts = install_verdicts(
        inventory, typed_frame([], COMPLIANCE_COLUMNS), PENDING, {}, typed_frame([], OUTCOME_COLUMNS), outcomes
    )
    return {r["resource_id"]: (r["verdict"], r["reason_code"]) for r in verdicts.to_dict("records")}


def test_outcomes_and_verdicts_of_the_rollout() -> None:
    plan = _planned()
    rollout = pd.DataFrame(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "resource_id": "orders-db-replica",
                "wave": 1,
                "actions": "system-update",
                "outcome": "failed",
                "detail": "The system-update maintenance action failed: Storage full",
            },
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "resource_id": "shop-db",
                "wave": 1,
                "actions": "os-upgrade",
                "outcome": "scheduled",
                "detail": "",
            },
        ]
    )
    passed = {(ACCOUNT, REGION, rid): True for rid in plan["rehearsal_id"]}

    outcomes = rds_outcomes(plan, rollout_rows(rollout.to_dict("records")), passed, approved=True)
    verdicts = _verdicts(outcomes)
    assert verdicts["orders-db-replica"] == (Verdict.FAILED, "MAINTENANCE_FAILED")
    assert verdicts["shop-db"] == (Verdict.MAINTENANCE_SCHEDULED, "MAINTENANCE_SCHEDULED")
    assert verdicts["orders-db"] == (Verdict.FAILED, "NOT_ATTEMPTED")  # the rollout never reached it
    rejected = _verdicts(rds_outcomes(plan, None, passed, approved=False))
    assert set(rejected.values()) == {(Verdict.SKIPPED_REJECTED, "REJECTED")}
    failed_staging = _verdicts(rds_outcomes(plan, None, {}, approved=True))
    assert set(failed_staging.values()) == {(Verdict.SKIPPED_STAGING_FAILED, "STAGING_FAILED")}
    applied = rollout_rows(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "resource_id": "orders-db",
                "wave": 2,
                "actions": "system-update",
                "outcome": "applied",
                "detail": "engine 16.3",
            }
        ]
    )
    assert _verdicts(rds_outcomes(plan, applied, passed, approved=True))["orders-db"] == (
        Verdict.MAINTENANCE_APPLIED,
        "MAINTENANCE_APPLIED",
    )


def test_the_approval_section_tells_rehearsals_impact_and_waves() -> None:
    plan = _planned()
    results = rehearsal_rows(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "rehearsal_id": "postgres-16-3-db-r6g",
                "staging_db": "s1",
                "source_db": "orders-db",
                "snapshot_id": "rds:orders-db-1",
                "actions": "system-update",
                "passed": True,
            },
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "rehearsal_id": "mysql-8-0-39-db-t3",
                "staging_db": "s2",
                "source_db": "shop-db",
                "snapshot_id": "rds:shop-db-1",
                "actions": "os-upgrade",
                "passed": False,
                "detail": "still pending on the staging copy: os-upgrade",
            },
        ]
    )
    assert not rds_rehearsals_passed(plan, results)
    assert rds_rehearsals_passed(plan, results.assign(passed=True))
    text = rds_approval_section(plan, results, "immediate")
    assert "## RDS maintenance: staging FAILED" in text and "1 of 2 staging rehearsal(s) passed" in text
    assert "Multi-AZ: brief failover" in text and "replica of orders-db" in text and "2026-12-15" in text
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| us-east-1 | ")}
    assert "| Single-AZ: downtime while applied |" in rows["orders-db-replica"]
    assert "| Single-AZ: downtime while applied |" in rows["shop-db"]
    # A Multi-AZ db-upgrade upgrades both copies at once: no failover, and the words say why.
    upgrade = rds_install_plan(
        _inventory(_db("pair-db", multi_az=True)), rds_plan([_pending("pair-db", "db-upgrade")]), ("db-upgrade",)
    )
    words = rds_approval_section(upgrade.assign(wave=1), results.iloc[0:0], "immediate")
    assert "| Multi-AZ, but a db-upgrade upgrades both copies at once: downtime while applied |" in words
    assert rds_approval_section(plan.iloc[0:0], results, "immediate") == ""
    # Several accounts: each row says which one, as one account's region alone does not.
    other = plan.assign(account_id=[ACCOUNT if n % 2 else "210987654321" for n in range(len(plan))])
    lines = rds_approval_section(other, results, "immediate").splitlines()
    assert "| Account | Region | Database | Action |" in "\n".join(lines)
    assert any(line.startswith(f"| 210987654321 | {REGION} | ") for line in lines)
    assert "| Account |" not in text


def test_the_gate_weighs_rds_rehearsals_and_shows_their_section() -> None:
    plan = _planned()
    results = rehearsal_rows(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "rehearsal_id": rehearsal,
                "staging_db": f"s{n}",
                "source_db": "orders-db",
                "snapshot_id": "rds:orders-db-1",
                "actions": "system-update",
                "passed": True,
            }
            for n, rehearsal in enumerate(sorted(set(plan["rehearsal_id"])))
        ]
    )
    # RDS maintenance alone: no EC2 replica to wait for, no EC2 wave.
    rds_only = ApprovalInputs(
        plan=typed_frame([], PLAN_COLUMNS),
        production=typed_frame([], PLANNED_PRODUCTION_COLUMNS),
        profiles=typed_frame([], PROFILE_COLUMNS),
        waves=typed_frame([], WAVE_PLAN_COLUMNS),
        staging=typed_frame([], STAGING_RESULT_COLUMNS),
        rds_plan=plan,
        rds_rehearsals=results,
    )
    assert rds_only.rds_planned and staging_passed(rds_only)
    assert "## RDS maintenance: staging passed" in approval_body(rds_only)
    failed = replace(rds_only, rds_rehearsals=results.assign(passed=[False] + [True] * (len(results) - 1)))
    assert not staging_passed(failed) and "## RDS maintenance: staging FAILED" in approval_body(failed)
    # With neither EC2 replicas nor RDS maintenance there is nothing staged: the gate does not pass.
    assert not staging_passed(replace(rds_only, rds_plan=None))

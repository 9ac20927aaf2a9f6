"""Aurora DB clusters in the RDS part of the cycle: inventory rows, one planned item per cluster (members noted,
rehearsed on a restored cluster, after its planned members; a member's own action not rehearsed), the approval
section, outcomes and one verdict per cluster."""

from __future__ import annotations

from typing import Any

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.inventory import INVENTORY_COLUMNS, rds_cluster_rows, rds_rows
from patchcycle.core.plan import COMPLIANCE_COLUMNS, rds_plan
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.rds_approval import rds_approval_section, rds_rehearsals_passed
from patchcycle.core.rds_plan import (
    CLUSTER,
    DB_CLUSTER,
    DB_INSTANCE,
    assign_waves,
    clusters_of,
    databases_of,
    plan_rds_waves,
    rds_install_plan,
    rehearsals,
)
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS, rds_outcomes, rehearsal_rows, rollout_rows
from patchcycle.core.scope import SCOPE_COLUMNS
from patchcycle.core.verdicts import OUTCOME_COLUMNS, accounting_problems, install_verdicts

ACCOUNT, REGION = "123456789012", "us-east-1"
CLUSTER_ARN = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:ledger"
REHEARSAL = "aurora-postgresql-16-4-db-r6g"


def _cluster(identifier: str, engine: str = "aurora-postgresql", **extra: Any) -> dict[str, Any]:
    return {
        "DBClusterIdentifier": identifier,
        "DBClusterArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{identifier}",
        "Engine": engine,
        "EngineVersion": "16.4",
        "Status": "available",
        "MultiAZ": True,
        "AvailabilityZones": [f"{REGION}a", f"{REGION}b"],
        "TagList": [{"Key": "Environment", "Value": "production"}],
        **extra,
    }


def _member(identifier: str, cluster: str) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": identifier,
        "DBInstanceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}",
        "DBInstanceClass": "db.r6g.large",
        "Engine": "aurora-postgresql",
        "EngineVersion": "16.4",
        "DBInstanceStatus": "available",
        "DBClusterIdentifier": cluster,
    }


def _pending(arn: str, *actions: str) -> dict[str, Any]:
    return {
        "ResourceIdentifier": arn,
        "PendingMaintenanceActionDetails": [{"Action": a, "Description": f"{a} for Aurora"} for a in actions],
    }


PENDING = [
    _pending(CLUSTER_ARN, "system-update"),
    _pending(f"arn:aws:rds:{REGION}:{ACCOUNT}:db:ledger-2", "os-upgrade"),
]
CLUSTERS = [_cluster("ledger"), _cluster("quiet"), _cluster("multi-az-cluster", engine="postgres")]
MEMBERS = [_member("ledger-1", "ledger"), _member("ledger-2", "ledger"), _member("quiet-1", "quiet")]


def _inventory() -> pd.DataFrame:
    frame = pd.concat(
        [rds_rows(ACCOUNT, REGION, MEMBERS, PENDING), rds_cluster_rows(ACCOUNT, REGION, CLUSTERS, PENDING)],
        ignore_index=True,
    )
    frame["in_scope"] = True
    frame["scope_reason"] = ""
    return typed_frame(frame.to_dict("records"), {**INVENTORY_COLUMNS, **SCOPE_COLUMNS})


def _plan() -> pd.DataFrame:
    planned = rds_install_plan(_inventory(), rds_plan(PENDING), ("system-update", "os-upgrade"))
    waves = plan_rds_waves(databases_of(planned), CountOrPercent(1, percent=False), (100,), 5, clusters_of(planned))
    return assign_waves(planned, waves)


def test_aurora_clusters_are_inventory_rows_of_their_own_with_their_cluster_level_actions() -> None:
    rows = rds_cluster_rows(ACCOUNT, REGION, CLUSTERS, PENDING)
    assert list(rows["resource_id"]) == ["ledger", "quiet"]  # a Multi-AZ DB cluster (postgres) is no Aurora one
    ledger = rows.iloc[0]
    assert (ledger["resource_type"], ledger["resource_arn"], ledger["db_cluster"]) == ("rds", CLUSTER_ARN, "ledger")
    assert (ledger["pending_actions"], ledger["patchable"], ledger["state"]) == (1, True, "available")
    assert (ledger["environment"], ledger["instance_type"]) == ("production", "")
    assert (rows.iloc[1]["pending_actions"], rows.iloc[1]["skip_reason"]) == (0, "no pending maintenance actions")
    members = rds_rows(ACCOUNT, REGION, MEMBERS, PENDING).set_index("resource_id")
    # the cluster's action is not counted on its members; a member's own action is
    assert members.loc["ledger-1", "pending_actions"] == 0 and members.loc["ledger-2", "pending_actions"] == 1
    assert members.loc["ledger-1", "db_cluster"] == "ledger"


def test_a_cluster_is_one_planned_item_with_its_members_after_those_planned_on_their_own() -> None:
    plan = _plan()
    rows = plan.set_index("resource_id")
    assert list(plan["resource_id"]) == ["ledger", "ledger-2"]
    assert (rows.loc["ledger", "kind"], rows.loc["ledger", "members"]) == (DB_CLUSTER, "ledger-1;ledger-2")
    assert (rows.loc["ledger", "impact"], rows.loc["ledger", "rehearsal_id"]) == (CLUSTER, REHEARSAL)
    assert rows.loc["ledger", "instance_class"] == "db.r6g.large"  # its members' (the cluster has no class)
    assert (rows.loc["ledger-2", "kind"], rows.loc["ledger-2", "members"]) == (DB_INSTANCE, "")
    # ledger-2 has an action of its own: it goes first, its cluster in a later wave, never together
    assert rows.loc["ledger-2", "wave"] < rows.loc["ledger", "wave"]
    # the cluster is rehearsed on a restored cluster; a member's own action is not (nothing pending to rehearse on
    # the restored cluster's new instance)
    assert rows.loc["ledger-2", "rehearsal_id"] == ""
    [rehearsal] = rehearsals(plan, "run").to_dict("records")
    assert (rehearsal["rehearsal_id"], rehearsal["kind"], rehearsal["source_db"]) == (REHEARSAL, DB_CLUSTER, "ledger")
    assert (rehearsal["instance_family"], rehearsal["actions"]) == ("db.r6g", "system-update")


def test_a_cluster_alone_takes_the_canary_wave() -> None:
    pending = [_pending(CLUSTER_ARN, "system-update")]
    planned = rds_install_plan(_inventory(), rds_plan(pending), ("system-update",))
    waves = plan_rds_waves(databases_of(planned), CountOrPercent(1, percent=False), (100,), 5, clusters_of(planned))
    assert waves == {(ACCOUNT, REGION, "ledger"): 1}


def test_the_approval_section_lists_the_cluster_rehearsal_and_the_members_not_rehearsed() -> None:
    plan = _plan()
    assert not rds_rehearsals_passed(plan, typed_frame([], REHEARSAL_RESULT_COLUMNS))  # the cluster needs one
    passed = rehearsal_rows(
        [
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "rehearsal_id": REHEARSAL,
                "staging_db": "patchcycle-stg-0a1b2c3d4e",
                "source_db": "ledger",
                "kind": DB_CLUSTER,
                "snapshot_id": "rds:ledger-2026-11-20-03-00",
                "actions": "system-update",
                "passed": True,
                "step": "done",
            }
        ]
    )
    assert rds_rehearsals_passed(plan, passed)  # ledger-2's own action needs none
    text = rds_approval_section(plan, passed, "immediate")
    assert "## RDS maintenance: staging passed" in text
    assert "1 DB instance(s) and 1 Aurora DB cluster(s)" in text and "1 of 1 staging rehearsal(s) passed" in text
    assert "Not rehearsed: ledger-2 (an Aurora DB instance's own action" in text
    assert "auto approval policy leaves them out" in text
    assert "| Aurora DB cluster (ledger-1, ledger-2) |" in text
    assert "Aurora DB instance, not rehearsed" in text
    assert "Aurora: applied to every member at once" in text


def test_a_clusters_rehearsal_counts_its_members_own_actions_have_none() -> None:
    plan = _plan()
    outcomes = rds_outcomes(plan, None, {}, approved=False).set_index("resource_id")
    assert outcomes.loc["ledger", "outcome"] == "staging_failed"  # its rehearsal did not pass
    assert outcomes.loc["ledger-2", "outcome"] == "rejected"  # no rehearsal: only the gate counts
    passed = {(ACCOUNT, REGION, REHEARSAL): True}
    assert rds_outcomes(plan, None, passed, approved=False).set_index("resource_id").loc["ledger", "outcome"] == (
        "rejected"
    )
    assert rds_outcomes(plan, None, passed, approved=None).set_index("resource_id").loc["ledger", "outcome"] == (
        "not_run"
    )


def _verdicts(rollout: pd.DataFrame) -> pd.DataFrame:
    inventory = _inventory()
    plan = pd.concat([rds_plan(PENDING)], ignore_index=True)
    return install_verdicts(
        inventory, typed_frame([], COMPLIANCE_COLUMNS), plan, {}, typed_frame([], OUTCOME_COLUMNS), rollout
    )


def test_one_verdict_per_cluster_and_in_scope_is_the_sum_of_verdicts() -> None:
    def row(resource: str, outcome: str, detail: str = "") -> dict[str, Any]:
        actions = "system-update" if resource == "ledger" else "os-upgrade"
        base = {"account_id": ACCOUNT, "region": REGION, "resource_id": resource, "wave": 1}
        return {**base, "actions": actions, "outcome": outcome, "detail": detail}

    cases = {
        "applied": ("MAINTENANCE_APPLIED", "MAINTENANCE_APPLIED"),
        "scheduled": ("MAINTENANCE_SCHEDULED", "MAINTENANCE_SCHEDULED"),
        "failed": ("FAILED", "MAINTENANCE_FAILED"),
        "not_rehearsed": ("SKIPPED_STAGING_FAILED", "NOT_REHEARSED"),
        "halted_by_alarm": ("SKIPPED_HALTED", "HALTED_BY_ALARM"),
        "halted_by_calendar": ("SKIPPED_HALTED", "HALTED_BY_CALENDAR"),
    }
    for outcome, expected in cases.items():
        verdicts = _verdicts(rollout_rows([row("ledger", outcome), row("ledger-2", "applied")]))
        assert accounting_problems(_inventory(), verdicts) == []
        by_id = {r["resource_id"]: (r["verdict"], r["reason_code"]) for r in verdicts.to_dict("records")}
        assert by_id["ledger"] == expected, outcome
        assert by_id["ledger-2"] == ("MAINTENANCE_APPLIED", "MAINTENANCE_APPLIED")
        # members without actions of their own, and a cluster without actions, are compliant
        assert by_id["ledger-1"][0] == by_id["quiet"][0] == by_id["quiet-1"][0] == "ALREADY_COMPLIANT"
        assert len(verdicts) == 5

"""The report's RDS databases, built from the real frames of a run's RDS part: inventory rows of
DescribeDBInstances and DescribeDBClusters, DescribePendingMaintenanceActions (with AWS's dates), the RDS plan and its
waves, the rehearsals planned and what their copies showed, the staging stacks, the rollout's rows, the outcomes and
the verdicts. The JSON (install.rds, the RDS resources' waves), the KPIs, and the HTML section in words."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pandas as pd
import pytest

from patchcycle.core.frames import typed_frame
from patchcycle.core.inventory import INVENTORY_COLUMNS, rds_cluster_rows, rds_rows
from patchcycle.core.plan import COMPLIANCE_COLUMNS, rds_plan
from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.rds_plan import (
    assign_waves,
    clusters_of,
    databases_of,
    plan_rds_waves,
    rds_install_plan,
    rehearsals,
)
from patchcycle.core.rds_report import rds_section, stack_entry
from patchcycle.core.rds_rollout import rds_outcomes, rehearsal_rows, rollout_rows
from patchcycle.core.report import REPORT_SCHEMA, build_report, report_csv
from patchcycle.core.report_html import compliance_before_after, render_html
from patchcycle.core.scope import SCOPE_COLUMNS
from patchcycle.core.verdicts import OUTCOME_COLUMNS, install_verdicts
from patchcycle.run_records import StackRecord
from tests.core.test_report import GENERATED_AT, RUN_ID, install_section

ACCOUNT, REGION = "123456789012", "us-east-1"
RUN = "scheduled__rds"
STACK = "patchcycle-staging-rds-0123456789abcdef"
AUTO, FORCED = "2026-12-15T00:00:00Z", "2027-01-10T09:30:00Z"
STORAGE_FULL = "RDS event: Storage full."


def _arn(kind: str, identifier: str) -> str:
    return f"arn:aws:rds:{REGION}:{ACCOUNT}:{kind}:{identifier}"


def _db(identifier: str, engine: str, version: str, klass: str, **extra: Any) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": identifier,
        "DBInstanceArn": _arn("db", identifier),
        "DBInstanceClass": klass,
        "Engine": engine,
        "EngineVersion": version,
        "DBInstanceStatus": "available",
        "MultiAZ": False,
        "TagList": [{"Key": "Environment", "Value": "production"}],
        **extra,
    }


def _action(action: str, dated: bool = True) -> dict[str, Any]:
    detail: dict[str, Any] = {"Action": action, "Description": f"{action} available"}
    if dated:
        detail |= {"AutoAppliedAfterDate": pd.Timestamp(AUTO), "ForcedApplyDate": pd.Timestamp(FORCED)}
    return detail


INSTANCES = [
    _db("orders-main", "postgres", "16.3", "db.r6g.large", MultiAZ=True),
    _db("orders-replica", "postgres", "16.3", "db.r6g.large", ReadReplicaSourceDBInstanceIdentifier="orders-main"),
    _db("billing", "mysql", "8.0.39", "db.t3.medium"),
    _db("quiet-db", "mysql", "8.0.39", "db.t3.medium"),  # nothing pending
    _db("ledger-1", "aurora-postgresql", "16.4", "db.r6g.large", DBClusterIdentifier="ledger"),
    _db("ledger-2", "aurora-postgresql", "16.4", "db.r6g.large", DBClusterIdentifier="ledger"),
]
CLUSTERS = [
    {
        "DBClusterIdentifier": "ledger",
        "DBClusterArn": _arn("cluster", "ledger"),
        "Engine": "aurora-postgresql",
        "EngineVersion": "16.4",
        "Status": "available",
        "MultiAZ": True,
        "AvailabilityZones": [f"{REGION}a", f"{REGION}b"],
        "TagList": [{"Key": "Environment", "Value": "production"}],
    }
]
# orders-main also has an action this run does not apply (ca-certificate-rotation): it stays pending.
PENDING = [
    {
        "ResourceIdentifier": _arn("db", "orders-main"),
        "PendingMaintenanceActionDetails": [_action("system-update"), _action("ca-certificate-rotation")],
    },
    {"ResourceIdentifier": _arn("db", "orders-replica"), "PendingMaintenanceActionDetails": [_action("system-update")]},
    {"ResourceIdentifier": _arn("db", "billing"), "PendingMaintenanceActionDetails": [_action("os-upgrade", False)]},
    {"ResourceIdentifier": _arn("cluster", "ledger"), "PendingMaintenanceActionDetails": [_action("system-update")]},
    {"ResourceIdentifier": _arn("db", "ledger-2"), "PendingMaintenanceActionDetails": [_action("os-upgrade")]},
]


def _inventory() -> pd.DataFrame:
    frame = pd.concat(
        [rds_rows(ACCOUNT, REGION, INSTANCES, PENDING), rds_cluster_rows(ACCOUNT, REGION, CLUSTERS, PENDING)],
        ignore_index=True,
    )
    frame["in_scope"] = True
    frame["scope_reason"] = ""
    return typed_frame(frame.to_dict("records"), {**INVENTORY_COLUMNS, **SCOPE_COLUMNS})


def _report() -> dict[str, Any]:
    """An install run's report: postgres rehearsed and applied replica first, the mysql rehearsal failed (billing
    not touched), the Aurora cluster rehearsed and failed in its wave, ledger-2's own action not rehearsed."""
    inventory, match_plan = _inventory(), rds_plan(PENDING)
    planned = rds_install_plan(inventory, match_plan, ("system-update", "os-upgrade"))
    waves = plan_rds_waves(databases_of(planned), CountOrPercent(1, percent=False), (50, 50), 5, clusters_of(planned))
    plan = assign_waves(planned, waves)
    planned_copies = rehearsals(plan, RUN)
    copies = {r["source_db"]: r for r in planned_copies.to_dict("records")}
    snapshots = {"orders-main": "rds:orders-main-2026-11-20", "billing": "", "ledger": "rds:ledger-2026-11-20"}
    results = rehearsal_rows(
        [
            {
                **{k: copy[k] for k in ("account_id", "region", "rehearsal_id", "staging_db", "source_db", "kind")},
                "actions": copy["actions"],
                "snapshot_id": snapshots[source],
                "passed": source != "billing",
                "step": "restore" if source == "billing" else "done",
                "detail": "the staging copy is incompatible-restore, not available"
                if source == "billing"
                else "available at its endpoint, nothing pending",
                "engine_version_after": "",
            }
            for source, copy in copies.items()
        ]
    )
    wave_of = {resource: int(wave) for resource, wave in zip(plan["resource_id"], plan["wave"], strict=True)}

    def reached(resource: str, outcome: str, detail: str = "", status: str = "available") -> dict[str, Any]:
        actions = ";".join(sorted(plan.loc[plan["resource_id"] == resource, "action"]))
        where = {"account_id": ACCOUNT, "region": REGION, "resource_id": resource, "wave": wave_of[resource]}
        return {**where, "actions": actions, "outcome": outcome, "detail": detail, "status_after": status}

    rollout = rollout_rows(
        [
            reached("orders-replica", "applied"),
            reached("orders-main", "applied"),
            reached("ledger-2", "not_rehearsed", "not rehearsed: the auto approval policy leaves it out", ""),
            reached("ledger", "failed", STORAGE_FULL),
        ]
    )
    passed = {(ACCOUNT, REGION, str(r["rehearsal_id"])): bool(r["passed"]) for r in results.to_dict("records")}
    outcomes = rds_outcomes(plan, rollout, passed, approved=True)
    record = StackRecord(
        stack_name=STACK,
        account_id=ACCOUNT,
        region=REGION,
        created=True,
        created_at="2026-11-20T03:06:00Z",
        status="DELETE_COMPLETE",
        deleted=True,
        deleted_at="2026-11-20T03:18:00Z",
    )
    section = rds_section(plan, planned_copies, results, [stack_entry(ACCOUNT, REGION, record)], outcomes, "immediate")
    verdicts = install_verdicts(
        inventory, typed_frame([], COMPLIANCE_COLUMNS), match_plan, {}, typed_frame([], OUTCOME_COLUMNS), outcomes
    )
    report = build_report(
        RUN_ID,
        "install",
        inventory,
        verdicts,
        match_plan,
        typed_frame([], COMPLIANCE_COLUMNS),
        [],
        GENERATED_AT,
        install={**install_section(), "rds": section},
    )
    return json.loads(json.dumps(report))  # as report.json holds it


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return _report()


def _databases(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {db["resource_id"]: db for db in report["install"]["rds"]["databases"]}


def test_each_rehearsal_lists_its_copy_source_snapshot_actions_result_and_stack(report: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    rds = report["install"]["rds"]
    assert rds["apply"] == "immediate"
    assert [s["stack_name"] for s in rds["stacks"]] == [STACK] and rds["stacks"][0]["deleted"]
    by_source = {r["source_db"]: r for r in rds["rehearsals"]}
    assert set(by_source) == {"orders-main", "billing", "ledger"}  # a replica's data is its source's
    orders = by_source["orders-main"]
    assert (orders["kind"], orders["snapshot_id"], orders["actions"]) == (
        "db-instance",
        "rds:orders-main-2026-11-20",
        ["system-update"],
    )
    assert (orders["engine"], orders["engine_version"], orders["instance_class"]) == (
        "postgres",
        "16.3",
        "db.r6g.large",
    )
    assert orders["passed"] and orders["ran"] and orders["databases"] == 2
    assert orders["staging_db"].startswith("patchcycle-stg-")
    assert (orders["stack_name"], orders["stack_deleted"]) == (STACK, True)
    billing = by_source["billing"]
    assert not billing["passed"] and billing["step"] == "restore" and "incompatible-restore" in billing["detail"]
    assert by_source["ledger"]["kind"] == "db-cluster"


def test_a_planned_rehearsal_without_a_result_did_not_run_and_says_why() -> None:
    plan = assign_waves(
        rds_install_plan(_inventory(), rds_plan(PENDING[:1]), ("system-update",)),
        {(ACCOUNT, REGION, "orders-main"): 1},
    )
    copies = rehearsals(plan, RUN)
    stacks = [stack_entry("", REGION, None, "no RDS staging stack: AccessDenied on CreateStack")]
    section = rds_section(plan, copies, rehearsal_rows([]), stacks, rds_outcomes(plan, None, {}, None), "immediate")
    [rehearsal] = section["rehearsals"]
    assert not rehearsal["ran"] and not rehearsal["passed"] and not rehearsal["stack_deleted"]
    assert rehearsal["detail"] == "no result: no RDS staging stack: AccessDenied on CreateStack"
    [database] = section["databases"]
    assert (database["outcome"], database["verdict"]) == ("staging_failed", "SKIPPED_STAGING_FAILED")


def test_each_database_has_its_actions_dates_impact_role_wave_and_outcome(report: dict[str, Any]) -> None:
    dbs = _databases(report)
    assert set(dbs) == {"orders-main", "orders-replica", "billing", "ledger", "ledger-2"}
    main, replica = dbs["orders-main"], dbs["orders-replica"]
    assert (main["role"], replica["role"], replica["replica_of"]) == ("primary", "replica", "orders-main")
    assert replica["wave"] < main["wave"]  # a replica goes before its source
    [action] = main["actions"]  # only the applied type: ca-certificate-rotation stays pending
    assert (action["action"], action["auto_applied_after"], action["forced_apply_date"]) == (
        "system-update",
        AUTO,
        FORCED,
    )
    assert (action["impact"], action["impact_words"]) == ("failover", "Multi-AZ: brief failover")
    assert replica["actions"][0]["impact_words"] == "Single-AZ: downtime while applied"
    assert dbs["billing"]["actions"][0]["auto_applied_after"] == ""  # AWS gave no date
    ledger = dbs["ledger"]
    assert (ledger["kind"], ledger["role"], ledger["members"]) == ("db-cluster", "cluster", ["ledger-1", "ledger-2"])
    assert ledger["actions"][0]["impact"] == "cluster" and dbs["ledger-2"]["role"] == "cluster member"
    assert dbs["ledger-2"]["wave"] < ledger["wave"]
    # Each database's outcome, with the verdict, code and reason its resource entry has.
    resources = {r["resource_id"]: r for r in report["resources"]}
    expected = {
        "orders-main": ("applied", "MAINTENANCE_APPLIED"),
        "orders-replica": ("applied", "MAINTENANCE_APPLIED"),
        "billing": ("staging_failed", "SKIPPED_STAGING_FAILED"),
        "ledger": ("failed", "FAILED"),
        "ledger-2": ("not_rehearsed", "SKIPPED_STAGING_FAILED"),
    }
    assert {name: (db["outcome"], db["verdict"]) for name, db in dbs.items()} == expected
    for name, db in dbs.items():
        entry = resources[name]
        assert (db["verdict"], db["reason_code"], db["reason"]) == (
            entry["verdict"],
            entry["reason_code"],
            entry["reason"],
        )
    assert dbs["ledger"]["detail"] == STORAGE_FULL


def test_rds_resources_carry_their_rds_wave_and_do_not_count_in_the_ec2_time_to_patch(report: dict[str, Any]) -> None:
    dbs = _databases(report)
    resources = {r["resource_id"]: r for r in report["resources"]}
    assert {name: resources[name]["wave"] for name in dbs} == {name: db["wave"] for name, db in dbs.items()}
    assert resources["quiet-db"]["wave"] is None and resources["ledger-1"]["wave"] is None  # nothing planned
    csv_waves = {line.split(",")[3]: line.split(",")[12] for line in report_csv(report).splitlines()[1:]}
    assert csv_waves["orders-main"] == str(dbs["orders-main"]["wave"]) and csv_waves["quiet-db"] == ""
    # Two databases are MAINTENANCE_APPLIED (patched) in RDS waves, which the EC2 waves' ends do not time.
    fleet = report["kpis"]["fleet"]
    assert fleet["patched"] == 2 and fleet["time_to_patch"] is None


def test_compliance_before_and_after_has_an_rds_line(report: dict[str, Any]) -> None:
    rows = {label: (before, after) for label, before, after in compliance_before_after(report)}
    # Before: 6 pending actions on 7 databases; the run applied orders-main's and orders-replica's system-update.
    assert rows["RDS pending maintenance actions"] == ("6 on 7 databases", "4 (2 applied by the run)")
    scan = {**report, "mode": "scan", "install": None}
    assert ("RDS pending maintenance actions", "6 on 7 databases", "") in compliance_before_after(scan)


def _visible_text(html: str) -> str:
    """What a reader sees: tags and their attributes removed, entities read."""
    text = re.sub(r"<[^>]+>", " ", html)
    text = " ".join(text.replace("&rarr;", "→").replace("&#x27;", "'").split())
    return re.sub(r" ([,)])", r"\1", text)  # a tag closed before a comma is no space to a reader


def _section(html: str, start: str) -> str:
    begin = html.index(start)
    end = html.find("<h2", begin + 1)
    return html[begin : end if end > 0 else len(html)]


def test_the_page_tells_the_databases_in_words(report: dict[str, Any]) -> None:
    html = render_html(report)
    dbs = _databases(report)
    text = _visible_text(_section(html, '<h2 id="rds">'))
    assert text.startswith("RDS databases (5)")
    for words in (
        "2 of 3 rehearsals passed · 5 databases: 2 applied,",
        "1 not applied: its rehearsal failed",
        "rds:orders-main-2026-11-20 postgres 16.3 db.r6g.large system-update Passed",
        "Failed the staging copy is incompatible-restore, not available",
        "Aurora DB cluster copy ledger",
        "yes, 2026-11-20 03:18:00 UTC " + STACK,
        f"orders-main {ACCOUNT} {REGION} DB instance primary {dbs['orders-main']['wave']} system-update 2026-12-15 "
        "2027-01-10 09:30 UTC Multi-AZ: brief failover Applied applied system-update",
        f"read replica of orders-main {dbs['orders-replica']['wave']}",
        "os-upgrade none none Single-AZ: downtime while applied Not applied: its rehearsal failed",
        "Aurora DB cluster Aurora DB cluster (members ledger-1, ledger-2)",
        "Aurora: applied to every member at once, brief downtime or failover Failed applying system-update failed: "
        + STORAGE_FULL,
        "Aurora cluster member (its own action, not rehearsed)",
    ):
        assert words in text, words
    for key in ("MAINTENANCE_APPLIED", "SKIPPED_STAGING_FAILED", "staging_failed", "not_rehearsed", "db-cluster"):
        assert key not in text, key
    assert not re.search(r"\d{2}:\d{2}:\d{2}Z|T\d{2}:", text)  # no raw ISO times
    resources = _visible_text(_section(html, "<h2>Resources"))
    assert f"orders-main rds {ACCOUNT} {REGION} production shared RDS wave {dbs['orders-main']['wave']}" in resources
    compliance = _visible_text(_section(html, '<h2 id="compliance">'))
    assert "RDS pending maintenance actions 6 on 7 databases 4 (2 applied by the run)" in compliance


def test_a_report_without_rds_maintenance_has_no_section() -> None:
    report = _report()
    del report["install"]["rds"]
    assert '<h2 id="rds">' not in render_html(report)

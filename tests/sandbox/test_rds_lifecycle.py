"""RDS DB instances over the simulated clock: maintenance statuses, Multi-AZ failover, failing actions,
snapshots, restores, deletions and read replicas (rds_maintenance.py), through boto3 in strict mode."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import advance_clock

ACCOUNT = "123456789012"
UTC = dt.UTC
START = "2026-11-20T03:00:00Z"


def _scenario(**rds: Any) -> dict[str, Any]:
    return {
        "name": "rds-lifecycle",
        "clock": {"start": START},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    "us-east-1": {
                        "rds_instances": [
                            {
                                "id": "shop-db",
                                "engine": "mysql",
                                "engine_version": "8.0.39",
                                "multi_az": True,
                                "pending_maintenance": [
                                    {"action": "db-upgrade", "description": "Upgrade to MySQL 8.0.40"},
                                    {"action": "os-upgrade", "description": "New Operating System update"},
                                ],
                            },
                            {
                                "id": "shop-db-replica",
                                "engine": "mysql",
                                "engine_version": "8.0.39",
                                "replica_of": "shop-db",
                                "pending_maintenance": [
                                    {"action": "db-upgrade", "description": "Upgrade to MySQL 8.0.40"}
                                ],
                            },
                            {
                                "id": "ledger-db",
                                "engine": "postgres",
                                "engine_version": "16.3",
                                "pending_maintenance": [
                                    {"action": "system-update", "description": "System update"},
                                    {"action": "hardware-maintenance", "description": "Host replacement"},
                                ],
                            },
                        ]
                    }
                },
            }
        ],
        "rds": {"maintenance_seconds": 600, "failover_seconds": 200, **rds},
    }


def _rds(sandbox: Any) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": 1})
    return boto3.client("rds", region_name="us-east-1", endpoint_url=sandbox.url, config=config)


def _arn(db_id: str) -> str:
    return f"arn:aws:rds:us-east-1:{ACCOUNT}:db:{db_id}"


def _db(rds: Any, db_id: str) -> dict[str, Any]:
    [db] = rds.describe_db_instances(DBInstanceIdentifier=db_id)["DBInstances"]
    return db  # type: ignore[no-any-return]


def _pending(rds: Any, db_id: str) -> list[str]:
    page = rds.describe_pending_maintenance_actions(ResourceIdentifier=_arn(db_id))["PendingMaintenanceActions"]
    return [d["Action"] for r in page for d in r["PendingMaintenanceActionDetails"]]


def _apply(rds: Any, db_id: str, action: str, opt_in: str = "immediate") -> dict[str, Any]:
    answer = rds.apply_pending_maintenance_action(ResourceIdentifier=_arn(db_id), ApplyAction=action, OptInType=opt_in)
    return answer["ResourcePendingMaintenanceActions"]  # type: ignore[no-any-return]


def _code(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def test_an_immediate_db_upgrade_is_upgrading_then_available_on_the_new_version(
    sandbox_factory: Callable[..., Any],
) -> None:
    sandbox = sandbox_factory(_scenario())
    rds = _rds(sandbox)
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "available"
    zone = _db(rds, "shop-db")["AvailabilityZone"]
    _apply(rds, "shop-db", "db-upgrade")
    db = _db(rds, "shop-db")
    assert (db["DBInstanceStatus"], db["EngineVersion"]) == ("upgrading", "8.0.39")
    advance_clock(sandbox.url, 599)
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "upgrading"
    assert "db-upgrade" in _pending(rds, "shop-db")
    advance_clock(sandbox.url, 2)
    db = _db(rds, "shop-db")
    assert (db["DBInstanceStatus"], db["EngineVersion"]) == ("available", "8.0.40")
    assert db["AvailabilityZone"] == zone  # a db-upgrade upgrades primary and standby together: no failover
    assert _pending(rds, "shop-db") == ["os-upgrade"]
    # The replica has its own action, untouched.
    replica = _db(rds, "shop-db-replica")
    assert (replica["EngineVersion"], replica["ReadReplicaSourceDBInstanceIdentifier"]) == ("8.0.39", "shop-db")
    assert _pending(rds, "shop-db-replica") == ["db-upgrade"]
    assert "shop-db-replica" in _db(rds, "shop-db")["ReadReplicaDBInstanceIdentifiers"]


def test_multi_az_maintenance_fails_over_to_the_standby(sandbox_factory: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_scenario())
    rds = _rds(sandbox)
    before = _db(rds, "shop-db")
    assert before["MultiAZ"] is True
    _apply(rds, "shop-db", "os-upgrade")
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "upgrading"
    advance_clock(sandbox.url, 201)
    during = _db(rds, "shop-db")
    assert during["DBInstanceStatus"] == "upgrading"
    assert during["AvailabilityZone"] != before["AvailabilityZone"]
    assert during["SecondaryAvailabilityZone"] == before["AvailabilityZone"]
    advance_clock(sandbox.url, 400)
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "available"
    assert _pending(rds, "shop-db") == ["db-upgrade"]
    messages = [
        e["Message"] for e in rds.describe_events(SourceIdentifier="shop-db", SourceType="db-instance")["Events"]
    ]
    assert "Multi-AZ instance failover completed." in messages


def test_statuses_by_action_and_one_action_at_a_time(sandbox_factory: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_scenario())
    rds = _rds(sandbox)
    _apply(rds, "ledger-db", "hardware-maintenance")
    _apply(rds, "ledger-db", "system-update")  # accepted: it starts once the instance is available again
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "maintenance"
    advance_clock(sandbox.url, 601)
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "upgrading"
    assert _pending(rds, "ledger-db") == ["system-update"]
    advance_clock(sandbox.url, 601)
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "available"
    assert _pending(rds, "ledger-db") == []


def test_next_maintenance_starts_in_the_window(sandbox_factory: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_scenario())
    rds = _rds(sandbox)
    [detail] = [
        d
        for d in _apply(rds, "ledger-db", "system-update", "next-maintenance")["PendingMaintenanceActionDetails"]
        if d["Action"] == "system-update"
    ]
    window = detail["CurrentApplyDate"]
    advance_clock(sandbox.url, (window - sandbox.world.now()).total_seconds() - 1)
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "available"
    advance_clock(sandbox.url, 2)
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "upgrading"
    advance_clock(sandbox.url, 600)
    assert (_db(rds, "ledger-db")["DBInstanceStatus"], _pending(rds, "ledger-db")) == (
        "available",
        ["hardware-maintenance"],
    )


def test_a_failing_action_leaves_the_instance_available_with_the_action_pending(
    sandbox_factory: Callable[..., Any],
) -> None:
    failure = {"db_instance": "shop-db-replica", "action": "db-upgrade", "reason": "Upgrade prechecks failed."}
    sandbox = sandbox_factory(_scenario(fail_maintenance=[failure]))
    rds = _rds(sandbox)
    _apply(rds, "shop-db-replica", "db-upgrade")
    assert _db(rds, "shop-db-replica")["DBInstanceStatus"] == "upgrading"
    advance_clock(sandbox.url, 601)
    db = _db(rds, "shop-db-replica")
    assert (db["DBInstanceStatus"], db["EngineVersion"]) == ("available", "8.0.39")
    page = rds.describe_pending_maintenance_actions(ResourceIdentifier=_arn("shop-db-replica"))
    [detail] = page["PendingMaintenanceActions"][0]["PendingMaintenanceActionDetails"]
    assert detail["Action"] == "db-upgrade"
    assert "OptInStatus" not in detail  # the opt-in is spent: it can be applied again
    events = rds.describe_events(SourceIdentifier="shop-db-replica", SourceType="db-instance")["Events"]
    assert "The db-upgrade maintenance action failed: Upgrade prechecks failed." in [e["Message"] for e in events]
    # Other instances are not affected.
    _apply(rds, "shop-db", "db-upgrade")
    advance_clock(sandbox.url, 601)
    assert _db(rds, "shop-db")["EngineVersion"] == "8.0.40"


def test_snapshot_restore_and_delete_take_their_time(sandbox_factory: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_scenario(snapshot_seconds=120, restore_seconds=300, delete_seconds=60))
    rds = _rds(sandbox)
    [automated] = rds.describe_db_snapshots(DBInstanceIdentifier="shop-db", SnapshotType="automated")["DBSnapshots"]
    assert automated["DBSnapshotIdentifier"] == "rds:shop-db-2026-11-20-03-00"
    taken = automated["SnapshotCreateTime"] - dt.datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    assert dt.timedelta(0) <= taken < dt.timedelta(minutes=1)  # the simulated clock's, not the wall clock's
    assert automated["Status"] == "available"

    snapshot = rds.create_db_snapshot(DBSnapshotIdentifier="rehearsal", DBInstanceIdentifier="shop-db")["DBSnapshot"]
    assert snapshot["Status"] == "creating"
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "backing-up"
    with pytest.raises(ClientError) as raised:
        rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="rehearsal-db", DBSnapshotIdentifier="rehearsal")
    assert _code(raised) == "InvalidDBSnapshotState"
    with pytest.raises(ClientError) as raised:
        rds.create_db_snapshot(DBSnapshotIdentifier="second", DBInstanceIdentifier="shop-db")
    assert _code(raised) == "InvalidDBInstanceState"
    advance_clock(sandbox.url, 121)
    assert rds.describe_db_snapshots(DBSnapshotIdentifier="rehearsal")["DBSnapshots"][0]["Status"] == "available"
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "available"

    restored = rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="rehearsal-db", DBSnapshotIdentifier="rehearsal"
    )["DBInstance"]
    assert (restored["DBInstanceStatus"], restored["EngineVersion"]) == ("creating", "8.0.39")
    assert sorted(_pending(rds, "rehearsal-db")) == ["db-upgrade", "os-upgrade"]
    with pytest.raises(ClientError) as raised:
        _apply(rds, "rehearsal-db", "db-upgrade")
    assert _code(raised) == "InvalidDBInstanceState"
    advance_clock(sandbox.url, 301)
    assert _db(rds, "rehearsal-db")["DBInstanceStatus"] == "available"
    _apply(rds, "rehearsal-db", "db-upgrade")
    advance_clock(sandbox.url, 601)
    assert _db(rds, "rehearsal-db")["EngineVersion"] == "8.0.40"
    assert _db(rds, "shop-db")["EngineVersion"] == "8.0.39"  # production is untouched
    assert "db-upgrade" in _pending(rds, "shop-db")

    deleted = rds.delete_db_instance(DBInstanceIdentifier="rehearsal-db", SkipFinalSnapshot=True)["DBInstance"]
    assert deleted["DBInstanceStatus"] == "deleting"
    assert _db(rds, "rehearsal-db")["DBInstanceStatus"] == "deleting"
    with pytest.raises(ClientError) as raised:
        rds.delete_db_instance(DBInstanceIdentifier="rehearsal-db", SkipFinalSnapshot=True)
    assert _code(raised) == "InvalidDBInstanceState"
    with pytest.raises(ClientError) as raised:
        _apply(rds, "rehearsal-db", "os-upgrade")
    assert _code(raised) == "InvalidDBInstanceState"
    advance_clock(sandbox.url, 61)
    with pytest.raises(ClientError) as raised:
        rds.describe_db_instances(DBInstanceIdentifier="rehearsal-db")
    assert _code(raised) == "DBInstanceNotFound"


def test_a_restore_from_an_upgraded_source_has_no_db_upgrade_pending(sandbox_factory: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_scenario(snapshot_seconds=10, restore_seconds=10))
    rds = _rds(sandbox)
    _apply(rds, "shop-db", "db-upgrade")
    advance_clock(sandbox.url, 601)
    rds.create_db_snapshot(DBSnapshotIdentifier="after", DBInstanceIdentifier="shop-db")
    advance_clock(sandbox.url, 11)
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="copy-db", DBSnapshotIdentifier="after")
    assert _db(rds, "copy-db")["EngineVersion"] == "8.0.40"
    assert _pending(rds, "copy-db") == ["os-upgrade"]


def test_a_failure_by_prefix_reaches_restored_copies(sandbox_factory: Callable[..., Any]) -> None:
    failure = {"db_instance_prefix": "rehearsal-", "reason": "Storage full."}
    sandbox = sandbox_factory(_scenario(fail_maintenance=[failure], restore_seconds=10))
    rds = _rds(sandbox)
    [automated] = rds.describe_db_snapshots(DBInstanceIdentifier="ledger-db", SnapshotType="automated")["DBSnapshots"]
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="rehearsal-ledger", DBSnapshotIdentifier=automated["DBSnapshotIdentifier"]
    )
    advance_clock(sandbox.url, 11)
    _apply(rds, "rehearsal-ledger", "system-update")
    advance_clock(sandbox.url, 601)
    assert sorted(_pending(rds, "rehearsal-ledger")) == ["hardware-maintenance", "system-update"]
    _apply(rds, "ledger-db", "system-update")
    advance_clock(sandbox.url, 601)
    assert _pending(rds, "ledger-db") == ["hardware-maintenance"]


def test_a_cloudformation_db_instance_with_a_snapshot_is_a_restore(sandbox_factory: Callable[..., Any]) -> None:
    """AWS::RDS::DBInstance with DBSnapshotIdentifier: named by DBInstanceIdentifier, the snapshot's engine and
    version, the template's class and single-AZ, creating for rds.restore_seconds, the source's actions pending;
    deleted with its stack."""
    sandbox = sandbox_factory(_scenario(restore_seconds=100))
    rds = _rds(sandbox)
    cloudformation = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=sandbox.url)
    [automated] = rds.describe_db_snapshots(DBInstanceIdentifier="shop-db", SnapshotType="automated")["DBSnapshots"]
    properties = {
        "DBInstanceIdentifier": "patchcycle-stg-0a1b2c3d4e",
        "DBSnapshotIdentifier": automated["DBSnapshotIdentifier"],
        "DBInstanceClass": "db.t3.small",
        "MultiAZ": False,
        "Tags": [{"Key": "patchcycle:role", "Value": "rds-staging"}],
    }
    template = {"Resources": {"StagingDb": {"Type": "AWS::RDS::DBInstance", "Properties": properties}}}
    cloudformation.create_stack(StackName="patchcycle-staging-rds-x", TemplateBody=json.dumps(template))
    copy = _db(rds, "patchcycle-stg-0a1b2c3d4e")
    assert (copy["Engine"], copy["EngineVersion"], copy["DBInstanceClass"]) == ("mysql", "8.0.39", "db.t3.small")
    assert copy["DBInstanceStatus"] == "creating" and copy["MultiAZ"] is False
    assert sorted(_pending(rds, "patchcycle-stg-0a1b2c3d4e")) == ["db-upgrade", "os-upgrade"]
    [resource] = cloudformation.describe_stack_resources(StackName="patchcycle-staging-rds-x")["StackResources"]
    assert resource["PhysicalResourceId"] == "patchcycle-stg-0a1b2c3d4e"
    advance_clock(sandbox.url, 101)
    assert _db(rds, "patchcycle-stg-0a1b2c3d4e")["DBInstanceStatus"] == "available"
    cloudformation.delete_stack(StackName="patchcycle-staging-rds-x")
    with pytest.raises(ClientError) as raised:
        rds.describe_db_instances(DBInstanceIdentifier="patchcycle-stg-0a1b2c3d4e")
    assert _code(raised) == "DBInstanceNotFound"
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "available"  # the source is untouched

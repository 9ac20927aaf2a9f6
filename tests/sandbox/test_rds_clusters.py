"""Aurora DB clusters in the sandbox: cluster-level pending maintenance listed on the cluster's ARN, applied with
its OptInType over the simulated clock (the cluster and its members upgrading, then available), cluster snapshots,
restores in CloudFormation (AWS::RDS::DBCluster, a member AWS::RDS::DBInstance), and AWS's errors."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.sandbox.protocol import validate_query_response

ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER_ARN = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:ledger"
MAINTENANCE_SECONDS = 120
RESTORE_SECONDS = 300
SNAPSHOT_SECONDS = 60


def _scenario() -> dict[str, Any]:
    return {
        "name": "aurora",
        "clock": {"start": "2026-11-20T03:00:00Z"},
        "rds": {
            "maintenance_seconds": MAINTENANCE_SECONDS,
            "restore_seconds": RESTORE_SECONDS,
            "snapshot_seconds": SNAPSHOT_SECONDS,
            "fail_maintenance": [{"db_cluster": "broken", "reason": "The cluster volume is busy."}],
        },
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    REGION: {
                        "rds_instances": [
                            {
                                "id": "plain-db",
                                "engine": "postgres",
                                "engine_version": "16.3",
                                "pending_maintenance": [{"action": "system-update", "description": "OS update"}],
                            }
                        ],
                        "rds_clusters": [
                            {
                                "id": "ledger",
                                "engine": "aurora-postgresql",
                                "engine_version": "16.4",
                                "instances": ["ledger-1", "ledger-2"],
                                "tags": {"Environment": "production"},
                                "pending_maintenance": [
                                    {
                                        "action": "system-update",
                                        "description": "Aurora system update",
                                        "auto_applied_after": "2027-01-10",
                                    },
                                    {"action": "db-upgrade", "description": "Upgrade to Aurora PostgreSQL 16.6"},
                                ],
                            },
                            {
                                "id": "broken",
                                "engine": "aurora-mysql",
                                "engine_version": "8.0.mysql_aurora.3.05.2",
                                "instances": ["broken-1"],
                                "pending_maintenance": [{"action": "system-update", "description": "update"}],
                            },
                            {
                                "id": "quiet",
                                "engine": "aurora-mysql",
                                "engine_version": "8.0.mysql_aurora.3.05.2",
                                "instances": ["quiet-1"],
                            },
                        ],
                    }
                },
            }
        ],
    }


def _client(sandbox: Any, seen: list[tuple[str, dict[str, Any]]]) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": 1})
    client = boto3.client("rds", region_name=REGION, endpoint_url=sandbox.url, config=config)

    def record(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            seen.append((model.name, {k: v for k, v in parsed.items() if k != "ResponseMetadata"}))

    client.meta.events.register("after-call.rds", record)
    return client


def _advance(sandbox: Any, seconds: float) -> None:
    body = json.dumps({"seconds": seconds}).encode()
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/clock/advance", data=body, method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def _statuses(rds: Any, cluster: str) -> tuple[str, dict[str, str]]:
    found = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
    members = [m["DBInstanceIdentifier"] for m in found["DBClusterMembers"]]
    dbs = rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": members}])["DBInstances"]
    return found["Status"], {db["DBInstanceIdentifier"]: db["DBInstanceStatus"] for db in dbs}


@pytest.fixture
def aurora(sandbox_factory: Callable[..., Any]) -> Any:
    return sandbox_factory(_scenario())


def test_cluster_actions_are_listed_on_the_cluster_arn_and_selected_by_db_cluster_id(aurora: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    rds = _client(aurora, seen)
    listed = {
        r["ResourceIdentifier"]: r["PendingMaintenanceActionDetails"]
        for r in rds.describe_pending_maintenance_actions()["PendingMaintenanceActions"]
    }
    assert set(listed) == {
        CLUSTER_ARN,
        f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:broken",
        f"arn:aws:rds:{REGION}:{ACCOUNT}:db:plain-db",
    }  # a cluster without actions is not listed; its members have none of their own
    assert [d["Action"] for d in listed[CLUSTER_ARN]] == ["system-update", "db-upgrade"]
    assert listed[CLUSTER_ARN][0]["AutoAppliedAfterDate"] == dt.datetime(2027, 1, 10, tzinfo=dt.UTC)
    only = rds.describe_pending_maintenance_actions(Filters=[{"Name": "db-cluster-id", "Values": ["ledger"]}])
    assert [r["ResourceIdentifier"] for r in only["PendingMaintenanceActions"]] == [CLUSTER_ARN]
    by_instance = rds.describe_pending_maintenance_actions(Filters=[{"Name": "db-instance-id", "Values": ["ledger"]}])
    assert by_instance["PendingMaintenanceActions"] == []
    members = rds.describe_db_clusters(DBClusterIdentifier="ledger")["DBClusters"][0]["DBClusterMembers"]
    assert sorted(m["DBInstanceIdentifier"] for m in members) == ["ledger-1", "ledger-2"]
    for operation, parsed in seen:
        assert validate_query_response("rds", operation, parsed) == [], operation


def test_immediate_takes_the_cluster_and_its_members_through_upgrading(aurora: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    rds = _client(aurora, seen)
    answer = rds.apply_pending_maintenance_action(
        ResourceIdentifier=CLUSTER_ARN, ApplyAction="db-upgrade", OptInType="immediate"
    )["ResourcePendingMaintenanceActions"]
    assert answer["ResourceIdentifier"] == CLUSTER_ARN
    upgrade = next(d for d in answer["PendingMaintenanceActionDetails"] if d["Action"] == "db-upgrade")
    assert upgrade["OptInStatus"] == "immediate"
    assert _statuses(rds, "ledger") == ("upgrading", {"ledger-1": "upgrading", "ledger-2": "upgrading"})
    _advance(aurora, MAINTENANCE_SECONDS + 1)
    assert _statuses(rds, "ledger") == ("available", {"ledger-1": "available", "ledger-2": "available"})
    left = rds.describe_pending_maintenance_actions(ResourceIdentifier=CLUSTER_ARN)["PendingMaintenanceActions"]
    assert [d["Action"] for d in left[0]["PendingMaintenanceActionDetails"]] == ["system-update"]
    assert rds.describe_db_clusters(DBClusterIdentifier="ledger")["DBClusters"][0]["EngineVersion"] == "16.6"
    for operation, parsed in seen:
        assert validate_query_response("rds", operation, parsed) == [], operation


def test_next_maintenance_waits_for_the_clusters_window(aurora: Any) -> None:
    rds = _client(aurora, [])
    answer = rds.apply_pending_maintenance_action(
        ResourceIdentifier=CLUSTER_ARN, ApplyAction="system-update", OptInType="next-maintenance"
    )["ResourcePendingMaintenanceActions"]
    detail = next(d for d in answer["PendingMaintenanceActionDetails"] if d["Action"] == "system-update")
    assert detail["OptInStatus"] == "next-maintenance"
    assert detail["CurrentApplyDate"] < dt.datetime(2027, 1, 10, tzinfo=dt.UTC)  # the window, before the date
    assert _statuses(rds, "ledger")[0] == "available"  # nothing starts before the window
    _advance(aurora, 8 * 86400)  # past the weekly window and the time it takes
    left = rds.describe_pending_maintenance_actions(ResourceIdentifier=CLUSTER_ARN)["PendingMaintenanceActions"]
    assert [d["Action"] for d in left[0]["PendingMaintenanceActionDetails"]] == ["db-upgrade"]


def test_a_failing_cluster_action_leaves_it_pending_with_a_cluster_event(aurora: Any) -> None:
    rds = _client(aurora, [])
    arn = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:broken"
    rds.apply_pending_maintenance_action(ResourceIdentifier=arn, ApplyAction="system-update", OptInType="immediate")
    assert _statuses(rds, "broken")[0] == "upgrading"
    _advance(aurora, MAINTENANCE_SECONDS + 1)
    assert _statuses(rds, "broken") == ("available", {"broken-1": "available"})
    left = rds.describe_pending_maintenance_actions(ResourceIdentifier=arn)["PendingMaintenanceActions"]
    detail = left[0]["PendingMaintenanceActionDetails"][0]
    assert detail["Action"] == "system-update" and "OptInStatus" not in detail
    events = rds.describe_events(SourceIdentifier="broken", SourceType="db-cluster", EventCategories=["failure"])
    assert any("The cluster volume is busy." in e["Message"] for e in events["Events"])


def test_bad_cluster_requests_fail_like_aws(aurora: Any) -> None:
    rds = _client(aurora, [])
    cases = [
        (
            {"ResourceIdentifier": CLUSTER_ARN, "ApplyAction": "defrag", "OptInType": "immediate"},
            "InvalidParameterValue",
        ),
        (
            {"ResourceIdentifier": f"{CLUSTER_ARN}x", "ApplyAction": "system-update", "OptInType": "immediate"},
            "ResourceNotFoundFault",
        ),
        (
            {
                "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:quiet",
                "ApplyAction": "system-update",
                "OptInType": "immediate",
            },
            "InvalidParameterCombination",
        ),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as raised:
            rds.apply_pending_maintenance_action(**params)
        assert raised.value.response["Error"]["Code"] == code, params
    with pytest.raises(ClientError) as raised:
        rds.describe_db_clusters(DBClusterIdentifier="no-such-cluster")
    assert raised.value.response["Error"]["Code"] == "DBClusterNotFoundFault"


# --- cluster snapshots and CloudFormation restores ------------------------------------------------------------------


def _staging_template(snapshot: str, **cluster: Any) -> str:
    member = {
        "DBInstanceIdentifier": "stg-ledger-1",
        "DBClusterIdentifier": {"Ref": "StagingCluster"},
        "Engine": "aurora-postgresql",
        "DBInstanceClass": "db.r6g.large",
        "PubliclyAccessible": False,
    }
    properties = {"DBClusterIdentifier": "stg-ledger", "SnapshotIdentifier": snapshot, **cluster}
    return json.dumps(
        {
            "Resources": {
                "StagingCluster": {"Type": "AWS::RDS::DBCluster", "DeletionPolicy": "Delete", "Properties": properties},
                "StagingMember": {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Delete", "Properties": member},
            },
            "Outputs": {
                "Endpoint": {"Value": {"Fn::GetAtt": ["StagingCluster", "Endpoint.Address"]}},
                "Cluster": {"Value": {"Ref": "StagingCluster"}},
            },
        }
    )


def test_a_cloudformation_db_cluster_from_a_cluster_snapshot_is_a_restore(aurora: Any) -> None:
    """AWS::RDS::DBCluster with SnapshotIdentifier: named by DBClusterIdentifier, the snapshot's engine, creating for
    rds.restore_seconds, the source cluster's actions pending; a member AWS::RDS::DBInstance joins it; the stack's
    deletion deletes both."""
    seen: list[tuple[str, dict[str, Any]]] = []
    rds = _client(aurora, seen)
    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=aurora.url)
    [automated] = rds.describe_db_cluster_snapshots(DBClusterIdentifier="ledger", SnapshotType="automated")[
        "DBClusterSnapshots"
    ]
    assert automated["DBClusterSnapshotIdentifier"] == "rds:ledger-2026-11-20-03-00"  # the simulated clock's
    assert automated["Status"] == "available" and automated["Engine"] == "aurora-postgresql"
    template = _staging_template(automated["DBClusterSnapshotArn"], Engine="aurora-postgresql")
    cloudformation.create_stack(StackName="patchcycle-staging-rds-c", TemplateBody=template)

    cluster = rds.describe_db_clusters(DBClusterIdentifier="stg-ledger")["DBClusters"][0]
    assert (cluster["Status"], cluster["Engine"], cluster["EngineVersion"]) == ("creating", "aurora-postgresql", "16.4")
    assert [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]] == ["stg-ledger-1"]
    assert _statuses(rds, "stg-ledger") == ("creating", {"stg-ledger-1": "creating"})
    restored_arn = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:stg-ledger"
    pending = rds.describe_pending_maintenance_actions(ResourceIdentifier=restored_arn)["PendingMaintenanceActions"]
    assert [d["Action"] for d in pending[0]["PendingMaintenanceActionDetails"]] == ["system-update", "db-upgrade"]
    member_pending = rds.describe_pending_maintenance_actions(
        Filters=[{"Name": "db-instance-id", "Values": ["stg-ledger-1"]}]
    )
    assert member_pending["PendingMaintenanceActions"] == []  # a new instance: nothing of its own
    with pytest.raises(ClientError) as raised:  # not while it is being created
        rds.apply_pending_maintenance_action(
            ResourceIdentifier=restored_arn, ApplyAction="db-upgrade", OptInType="immediate"
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDBClusterStateFault"

    stack = cloudformation.describe_stacks(StackName="patchcycle-staging-rds-c")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["Cluster"] == "stg-ledger" and outputs["Endpoint"] == cluster["Endpoint"]
    assert outputs["Endpoint"] == "127.0.0.1"  # the sandbox's host (a port per cluster: rds_endpoints)
    resources = cloudformation.describe_stack_resources(StackName="patchcycle-staging-rds-c")["StackResources"]
    assert {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources} == {
        "StagingCluster": "stg-ledger",
        "StagingMember": "stg-ledger-1",
    }

    _advance(aurora, RESTORE_SECONDS + 1)
    assert _statuses(rds, "stg-ledger") == ("available", {"stg-ledger-1": "available"})
    rds.apply_pending_maintenance_action(
        ResourceIdentifier=restored_arn, ApplyAction="db-upgrade", OptInType="immediate"
    )
    assert _statuses(rds, "stg-ledger") == ("upgrading", {"stg-ledger-1": "upgrading"})
    _advance(aurora, MAINTENANCE_SECONDS + 1)
    assert rds.describe_db_clusters(DBClusterIdentifier="stg-ledger")["DBClusters"][0]["EngineVersion"] == "16.6"
    assert _statuses(rds, "ledger") == ("available", {"ledger-1": "available", "ledger-2": "available"})  # untouched

    cloudformation.delete_stack(StackName="patchcycle-staging-rds-c")
    with pytest.raises(ClientError) as raised:
        rds.describe_db_clusters(DBClusterIdentifier="stg-ledger")
    assert raised.value.response["Error"]["Code"] == "DBClusterNotFoundFault"
    with pytest.raises(ClientError) as raised:
        rds.describe_db_instances(DBInstanceIdentifier="stg-ledger-1")
    assert raised.value.response["Error"]["Code"] == "DBInstanceNotFound"
    for operation, parsed in seen:
        assert validate_query_response("rds", operation, parsed) == [], operation


def test_a_restore_at_the_upgrade_version_has_no_db_upgrade_pending(aurora: Any) -> None:
    rds = _client(aurora, [])
    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=aurora.url)
    [automated] = rds.describe_db_cluster_snapshots(DBClusterIdentifier="ledger", SnapshotType="automated")[
        "DBClusterSnapshots"
    ]
    template = _staging_template(automated["DBClusterSnapshotIdentifier"], EngineVersion="16.6")
    cloudformation.create_stack(StackName="patchcycle-staging-rds-v", TemplateBody=template)
    cluster = rds.describe_db_clusters(DBClusterIdentifier="stg-ledger")["DBClusters"][0]
    assert cluster["EngineVersion"] == "16.6"
    arn = cluster["DBClusterArn"]
    pending = rds.describe_pending_maintenance_actions(ResourceIdentifier=arn)["PendingMaintenanceActions"]
    assert [d["Action"] for d in pending[0]["PendingMaintenanceActionDetails"]] == ["system-update"]


def test_a_cluster_snapshot_takes_its_time_and_restores_wait_for_it(aurora: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    rds = _client(aurora, seen)
    taken = rds.create_db_cluster_snapshot(DBClusterIdentifier="ledger", DBClusterSnapshotIdentifier="patchcycle-x")
    assert taken["DBClusterSnapshot"]["Status"] == "creating"
    assert _statuses(rds, "ledger")[0] == "backing-up"
    with pytest.raises(ClientError) as raised:  # one snapshot at a time
        rds.create_db_cluster_snapshot(DBClusterIdentifier="ledger", DBClusterSnapshotIdentifier="patchcycle-y")
    assert raised.value.response["Error"]["Code"] == "InvalidDBClusterStateFault"
    with pytest.raises(ClientError) as raised:
        rds.restore_db_cluster_from_snapshot(
            DBClusterIdentifier="early", SnapshotIdentifier="patchcycle-x", Engine="aurora-postgresql"
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDBClusterSnapshotStateFault"
    _advance(aurora, SNAPSHOT_SECONDS + 1)
    [snapshot] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="patchcycle-x")["DBClusterSnapshots"]
    assert (snapshot["Status"], snapshot["SnapshotType"]) == ("available", "manual")
    assert _statuses(rds, "ledger")[0] == "available"
    restored = rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier="late", SnapshotIdentifier="patchcycle-x", Engine="aurora-postgresql"
    )["DBCluster"]
    assert restored["Status"] == "creating"
    late = rds.describe_db_clusters(DBClusterIdentifier="late")["DBClusters"][0]
    assert late["Status"] == "creating" and late["DBClusterMembers"] == []
    _advance(aurora, RESTORE_SECONDS + 1)
    assert rds.describe_db_clusters(DBClusterIdentifier="late")["DBClusters"][0]["Status"] == "available"
    for identifier, name, code in (
        ("ledger", "patchcycle-x", "DBClusterSnapshotAlreadyExistsFault"),
        ("nope", "patchcycle-z", "DBClusterNotFoundFault"),
    ):
        with pytest.raises(ClientError) as raised:
            rds.create_db_cluster_snapshot(DBClusterIdentifier=identifier, DBClusterSnapshotIdentifier=name)
        assert raised.value.response["Error"]["Code"] == code
    rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="patchcycle-x")
    with pytest.raises(ClientError) as raised:
        rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="patchcycle-x")
    assert raised.value.response["Error"]["Code"] == "DBClusterSnapshotNotFoundFault"
    for operation, parsed in seen:
        assert validate_query_response("rds", operation, parsed) == [], operation

"""Aurora DB clusters in the sandbox: cluster-level pending maintenance listed on the cluster's ARN, applied with
its OptInType over the simulated clock (the cluster and its members upgrading, then available), and AWS's errors."""

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


def _scenario() -> dict[str, Any]:
    return {
        "name": "aurora",
        "clock": {"start": "2026-11-20T03:00:00Z"},
        "rds": {
            "maintenance_seconds": MAINTENANCE_SECONDS,
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

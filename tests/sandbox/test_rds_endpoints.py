"""RDS endpoints answer TCP (rds_endpoints.py): each DB instance and DB cluster reports the sandbox's host and a
port of its own, which accepts connections while the database is available and refuses them otherwise."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from include.sandbox import rds_endpoints
from include.sandbox.protocol import validate_query_response
from tests.conftest import advance_clock

ACCOUNT = "123456789012"
REGION = "us-east-1"
MAINTENANCE_SECONDS = 600
RESTORE_SECONDS = 300
DELETE_SECONDS = 60


def _scenario() -> dict[str, Any]:
    return {
        "name": "rds-endpoints",
        "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1e-9},  # time moves when the tests advance it
        "rds": {
            "maintenance_seconds": MAINTENANCE_SECONDS,
            "restore_seconds": RESTORE_SECONDS,
            "delete_seconds": DELETE_SECONDS,
        },
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    REGION: {
                        "rds_instances": [
                            {
                                "id": "shop-db",
                                "engine": "mysql",
                                "engine_version": "8.0.39",
                                "pending_maintenance": [
                                    {"action": "db-upgrade", "description": "Upgrade to MySQL 8.0.40"}
                                ],
                            },
                            {"id": "ledger-db", "engine": "postgres", "engine_version": "16.3"},
                        ],
                        "rds_clusters": [
                            {
                                "id": "ledger",
                                "engine": "aurora-postgresql",
                                "engine_version": "16.4",
                                "instances": ["ledger-1"],
                                "pending_maintenance": [{"action": "system-update", "description": "update"}],
                            }
                        ],
                    }
                },
            }
        ],
    }


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., Any]) -> Any:
    return sandbox_factory(_scenario())


def _rds(sandbox: Any, seen: list[tuple[str, dict[str, Any]]] | None = None) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": 1})
    client = boto3.client("rds", region_name=REGION, endpoint_url=sandbox.url, config=config)
    if seen is not None:

        def record(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
            if http_response.status_code == 200:
                seen.append((model.name, {k: v for k, v in parsed.items() if k != "ResponseMetadata"}))

        client.meta.events.register("after-call.rds", record)
    return client


def _db(rds: Any, db_id: str) -> dict[str, Any]:
    [db] = rds.describe_db_instances(DBInstanceIdentifier=db_id)["DBInstances"]
    return db  # type: ignore[no-any-return]


def _cluster(rds: Any, cluster_id: str) -> dict[str, Any]:
    [cluster] = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"]
    return cluster  # type: ignore[no-any-return]


def _answers(address: str, port: int) -> bool:
    """Whether a plain TCP connection to the endpoint is accepted (False: refused)."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except ConnectionRefusedError:
        return False


def _endpoint(db: dict[str, Any]) -> tuple[str, int]:
    return db["Endpoint"]["Address"], db["Endpoint"]["Port"]


def test_an_available_db_instance_answers_at_its_endpoint(sandbox: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    rds = _rds(sandbox, seen)
    db = _db(rds, "shop-db")
    address, port = _endpoint(db)
    assert db["DBInstanceStatus"] == "available"
    assert address == "127.0.0.1" and port not in (3306, 5432)
    assert _answers(address, port)
    assert _answers(address, port)  # connections are accepted (and closed) again and again
    for operation, parsed in seen:  # the responses still fit botocore's model
        assert validate_query_response("rds", operation, parsed) == [], operation


def test_ports_are_distinct_per_database_and_stable(sandbox: Any) -> None:
    rds = _rds(sandbox)
    first = {db["DBInstanceIdentifier"]: _endpoint(db) for db in rds.describe_db_instances()["DBInstances"]}
    cluster = _cluster(rds, "ledger")
    assert set(first) == {"shop-db", "ledger-db", "ledger-1"}
    ports = [port for _, port in first.values()] + [cluster["Port"]]
    assert len(set(ports)) == len(ports) == 4
    again = {db["DBInstanceIdentifier"]: _endpoint(db) for db in rds.describe_db_instances()["DBInstances"]}
    assert again == first
    assert _cluster(rds, "ledger")["Port"] == cluster["Port"]
    advance_clock(sandbox.url, 3600)
    assert _endpoint(_db(rds, "shop-db")) == first["shop-db"]


def test_an_upgrading_instance_refuses_until_it_is_available_again(sandbox: Any) -> None:
    rds = _rds(sandbox)
    address, port = _endpoint(_db(rds, "shop-db"))
    other = _endpoint(_db(rds, "ledger-db"))
    assert _answers(address, port)
    rds.apply_pending_maintenance_action(
        ResourceIdentifier=f"arn:aws:rds:{REGION}:{ACCOUNT}:db:shop-db", ApplyAction="db-upgrade", OptInType="immediate"
    )
    assert not _answers(address, port)  # the opt-in's answer already says upgrading
    db = _db(rds, "shop-db")
    assert db["DBInstanceStatus"] == "upgrading" and _endpoint(db) == (address, port)
    assert not _answers(address, port)
    assert _answers(*other)  # another database is not affected
    advance_clock(sandbox.url, MAINTENANCE_SECONDS - 1)
    assert _db(rds, "shop-db")["DBInstanceStatus"] == "upgrading"
    assert not _answers(address, port)
    advance_clock(sandbox.url, 2)
    db = _db(rds, "shop-db")
    assert (db["DBInstanceStatus"], db["EngineVersion"]) == ("available", "8.0.40")
    assert _endpoint(db) == (address, port)
    assert _answers(address, port)


def test_a_restored_copy_answers_once_created_and_refuses_once_deleted(sandbox: Any) -> None:
    rds = _rds(sandbox)
    source = _endpoint(_db(rds, "ledger-db"))
    snapshot = rds.describe_db_snapshots(DBInstanceIdentifier="ledger-db")["DBSnapshots"][0]["DBSnapshotIdentifier"]
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="ledger-copy", DBSnapshotIdentifier=snapshot)
    copy = _db(rds, "ledger-copy")
    address, port = _endpoint(copy)
    assert copy["DBInstanceStatus"] == "creating" and port != source[1]
    assert not _answers(address, port)
    advance_clock(sandbox.url, RESTORE_SECONDS + 1)
    assert _db(rds, "ledger-copy")["DBInstanceStatus"] == "available"
    assert _answers(address, port)

    rds.delete_db_instance(DBInstanceIdentifier="ledger-copy", SkipFinalSnapshot=True)
    assert not _answers(address, port)  # right after the answer: deleting
    assert _db(rds, "ledger-copy")["DBInstanceStatus"] == "deleting"
    assert not _answers(address, port)
    advance_clock(sandbox.url, DELETE_SECONDS + 1)
    assert (
        rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["ledger-copy"]}])["DBInstances"] == []
    )
    assert not _answers(address, port)
    assert _answers(*source)  # the source is untouched


def test_a_backing_up_instance_refuses(sandbox: Any) -> None:
    rds = _rds(sandbox)
    address, port = _endpoint(_db(rds, "ledger-db"))
    rds.create_db_snapshot(DBInstanceIdentifier="ledger-db", DBSnapshotIdentifier="before-upgrade")
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "backing-up"
    assert not _answers(address, port)
    advance_clock(sandbox.url, 3600)
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "available"
    assert _answers(address, port)


def test_an_aurora_cluster_answers_while_available(sandbox: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    rds = _rds(sandbox, seen)
    cluster = _cluster(rds, "ledger")
    address, port = cluster["Endpoint"], cluster["Port"]
    assert cluster["Status"] == "available" and address == "127.0.0.1"
    assert cluster["ReaderEndpoint"].startswith("ledger.cluster-ro-")  # moto's, unchanged
    member = _endpoint(_db(rds, "ledger-1"))
    assert member[1] != port
    assert _answers(address, port) and _answers(*member)
    rds.apply_pending_maintenance_action(
        ResourceIdentifier=f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:ledger",
        ApplyAction="system-update",
        OptInType="immediate",
    )
    assert _cluster(rds, "ledger")["Status"] == "upgrading"
    assert not _answers(address, port)
    assert not _answers(*member)  # the members are upgrading too
    advance_clock(sandbox.url, MAINTENANCE_SECONDS + 1)
    cluster = _cluster(rds, "ledger")
    assert (cluster["Status"], cluster["Endpoint"], cluster["Port"]) == ("available", address, port)
    assert _answers(address, port) and _answers(*member)
    for operation, parsed in seen:
        assert validate_query_response("rds", operation, parsed) == [], operation


def test_a_deleted_cluster_refuses(sandbox: Any) -> None:
    rds = _rds(sandbox)
    cluster = _cluster(rds, "ledger")
    address, port = cluster["Endpoint"], cluster["Port"]
    assert _answers(address, port)
    rds.delete_db_instance(DBInstanceIdentifier="ledger-1", SkipFinalSnapshot=True)
    advance_clock(sandbox.url, DELETE_SECONDS + 1)
    assert _db(rds, "ledger-db")["DBInstanceStatus"] == "available"  # settles: ledger-1 is gone
    rds.delete_db_cluster(DBClusterIdentifier="ledger", SkipFinalSnapshot=True)
    assert not _answers(address, port)


def test_stopping_the_sandbox_closes_every_port(sandbox_factory: Callable[..., Any]) -> None:
    sandbox = sandbox_factory(_scenario())
    rds = _rds(sandbox)
    endpoints = [_endpoint(db) for db in rds.describe_db_instances()["DBInstances"]]
    cluster = _cluster(rds, "ledger")
    endpoints.append((cluster["Endpoint"], cluster["Port"]))
    assert all(_answers(*endpoint) for endpoint in endpoints)
    sandbox.stop()
    assert not any(_answers(*endpoint) for endpoint in endpoints)


def test_a_listener_refuses_at_once_while_the_accepting_thread_polls_it() -> None:
    """A port stops listening when its database leaves available, even while the accepting thread waits in poll()
    on it (close() alone leaves the socket to the poll until it wakes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    waiting = threading.Thread(target=poller.poll, args=(3000,), daemon=True)
    waiting.start()
    time.sleep(0.2)  # the thread is in poll()
    rds_endpoints._close(listener)
    assert not _answers("127.0.0.1", port)
    waiting.join(timeout=5)

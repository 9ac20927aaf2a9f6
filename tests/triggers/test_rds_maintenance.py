"""RdsMaintenanceTrigger: what it waits on survives serialization; a wait's kind is checked."""

from __future__ import annotations

import pytest

from patchcycle.triggers.rds_maintenance import RdsMaintenanceTrigger, parse_wait_id, wait_id

TARGETS = [{"aws_conn_id": "aws_default", "region_name": "us-east-1", "databases": [wait_id("orders-db", ["a", "b"])]}]


def test_it_serializes_with_its_kind_and_round_trips() -> None:
    trigger = RdsMaintenanceTrigger(TARGETS, "next-maintenance", poll_interval=5, timeout=60, started_at=100.0)
    path, kwargs = trigger.serialize()
    assert path == "patchcycle.triggers.rds_maintenance.RdsMaintenanceTrigger"
    assert kwargs["kind"] == "next-maintenance" and kwargs["targets"] == TARGETS
    again = RdsMaintenanceTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_wait_ids_name_the_instance_and_its_actions() -> None:
    assert parse_wait_id(wait_id("orders-db", ["os-upgrade", "system-update"])) == (
        "orders-db",
        ["os-upgrade", "system-update"],
    )
    assert parse_wait_id(wait_id("orders-db")) == ("orders-db", [])


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        RdsMaintenanceTrigger(TARGETS, "soon")

"""RdsMaintenanceTrigger: what it waits on survives serialization; a wait's kind is checked; wait ids name the DB,
its actions and, in a wait across targets, its account and region."""

from __future__ import annotations

import pytest

from patchcycle.triggers.rds_maintenance import (
    RdsMaintenanceTrigger,
    cluster_identifier,
    parse_wait_id,
    wait_id,
    wait_place,
)

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
    assert wait_place(wait_id("orders-db", ["os-upgrade"])) is None  # a wait in one target (staging's)


ACCOUNT, OTHER = "123456789012", "210987654321"


@pytest.mark.parametrize(
    ("identifier", "actions", "cluster"),
    [("orders-db", ["os-upgrade", "system-update"], False), ("orders-db", [], False), ("ledger", ["a"], True)],
)
def test_a_placed_wait_id_names_the_account_and_region_and_parses_as_the_unplaced_one(
    identifier: str, actions: list[str], cluster: bool
) -> None:
    placed = wait_id(identifier, actions, cluster, (ACCOUNT, "eu-west-1"))
    assert placed.startswith(f"{ACCOUNT}/eu-west-1/")
    assert wait_place(placed) == (ACCOUNT, "eu-west-1")
    assert parse_wait_id(placed) == parse_wait_id(wait_id(identifier, actions, cluster))
    waited, parsed = parse_wait_id(placed)
    assert parsed == actions
    assert cluster_identifier(waited) == (identifier if cluster else None)
    assert waited == (f"cluster:{identifier}" if cluster else identifier)


def test_one_identifier_in_two_regions_or_accounts_is_two_waits_across_targets() -> None:
    """The same DB identifier and actions in three targets: three distinct ids, and the trigger takes them."""
    places = [(ACCOUNT, "us-east-1"), (ACCOUNT, "eu-west-1"), (OTHER, "us-east-1")]
    targets = [
        {
            "aws_conn_id": "aws_default" if account == ACCOUNT else "aws_other",
            "region_name": region,
            "databases": [wait_id("orders-db", ["system-update"], place=(account, region))],
        }
        for account, region in places
    ]
    trigger = RdsMaintenanceTrigger(targets, "immediate")
    assert len(set(trigger.ids)) == 3
    assert [wait_place(i) for i in trigger.ids] == places
    assert all(parse_wait_id(i) == ("orders-db", ["system-update"]) for i in trigger.ids)


def test_the_same_unplaced_id_in_two_targets_is_refused() -> None:
    """Without places the two waits would be one key in the event: the shared wait refuses them."""
    targets = [
        {"aws_conn_id": "aws_default", "region_name": region, "databases": [wait_id("orders-db", ["system-update"])]}
        for region in ("us-east-1", "eu-west-1")
    ]
    with pytest.raises(ValueError, match="must be unique across targets"):
        RdsMaintenanceTrigger(targets, "immediate")


def test_a_placed_id_in_another_regions_target_is_refused() -> None:
    """A wait polls its target's region: an id placed in another region would never be found there."""
    targets = [
        {
            "aws_conn_id": "aws_default",
            "region_name": "us-east-1",
            "databases": [wait_id("orders-db", ["system-update"], place=(ACCOUNT, "eu-west-1"))],
        }
    ]
    with pytest.raises(ValueError, match="another region than us-east-1"):
        RdsMaintenanceTrigger(targets, "immediate")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        RdsMaintenanceTrigger(TARGETS, "soon")

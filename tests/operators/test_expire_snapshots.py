"""ExpireSnapshotsOperator against the sandbox's EBS: only the project's snapshots (tag patchcycle:managed=true) of
another run, started before now - snapshot_retention_days, are deleted; the current run's, recent ones and anyone
else's stay, and the SNAPSHOT_RETENTION record says which went, how many were kept and the cutoff.

The operator's cutoff is the worker's wall clock; a snapshot's StartTime is the sandbox's simulated clock. The
scenario's clock therefore starts a fixed time before the wall clock (OLD_AGE), so the snapshots taken at its
start are that old now, and moving the clock on by RECENT_ADVANCE takes "recent" ones, whatever day the tests run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.core.timestamps import parse_utc
from patchcycle.operators.expire_snapshots import ExpireSnapshotsOperator
from patchcycle.run_artifacts import SNAPSHOT_RETENTION
from tests.conftest import advance_clock, client_factory, sandbox_calls
from tests.operators.install_helpers import (
    ACCOUNT,
    AL2023,
    BUCKET,
    REGION,
    TARGET,
    context,
    cycle_config,
    run_artifacts,
    s3_root,
)

OLD_AGE = timedelta(days=30)  # the simulated clock starts this long before the wall clock
RECENT_ADVANCE = timedelta(days=27)  # snapshots taken after moving it on by this much are ~3 days old
SCENARIO: dict[str, Any] = {
    "name": "expire-snapshots",
    # Nearly frozen: only advance_clock moves simulated time.
    "clock": {"start": (datetime.now(UTC) - OLD_AGE).replace(microsecond=0).isoformat(), "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [{"name": "web", "count": 5, "ami": AL2023, "tags": {"PatchGroup": "web"}}],
                    "s3_buckets": [{"name": BUCKET}],
                }
            },
        }
    ],
    "ebs": {"snapshot_seconds": 5},
}
SANDBOX_DROP_FAULTS = True
ROOT = s3_root("expire-snapshots")
CURRENT_RUN, OLD_RUN = "scheduled__2026-12-07", "scheduled__2026-10-01"
MANAGED = {"patchcycle:managed": "true"}


def config(**settings: Any) -> dict[str, Any]:
    return cycle_config(ROOT, **settings)


def ec2(server: SandboxServer) -> Any:
    return client_factory(server.url)("ec2", region=REGION)


def snapshot(server: SandboxServer, instance_id: str, tags: dict[str, str]) -> list[str]:
    """CreateSnapshots of every volume of an instance, with these tags; returns the snapshot ids."""
    specifications = [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    response = ec2(server).create_snapshots(
        InstanceSpecification={"InstanceId": instance_id}, **({"TagSpecifications": specifications} if tags else {})
    )
    ids = [str(s["SnapshotId"]) for s in response["Snapshots"]]
    assert ids
    return ids


def remaining(server: SandboxServer) -> set[str]:
    return {str(s["SnapshotId"]) for s in ec2(server).describe_snapshots(OwnerIds=["self"])["Snapshots"]}


@pytest.fixture
def snapshots(fresh_server: SandboxServer) -> dict[str, list[str]]:
    """Snapshots of five instances, by kind: taken OLD_AGE ago, "old" (the project's, an earlier run's),
    "current" (the project's, this run's), "untagged" and "foreign" (an earlier run's tag, not the project's);
    then, RECENT_ADVANCE later, "recent" (the project's, an earlier run's). All completed."""
    server = fresh_server
    web = sorted(server.world.instances(ACCOUNT, REGION))
    taken = {
        "old": snapshot(server, web[0], {**MANAGED, "patchcycle:run-id": OLD_RUN}),
        "current": snapshot(server, web[1], {**MANAGED, "patchcycle:run-id": CURRENT_RUN}),
        "untagged": snapshot(server, web[2], {}),
        "foreign": snapshot(server, web[3], {"patchcycle:managed": "false", "patchcycle:run-id": OLD_RUN}),
    }
    advance_clock(server.url, RECENT_ADVANCE.total_seconds())
    taken["recent"] = snapshot(server, web[4], {**MANAGED, "patchcycle:run-id": OLD_RUN})
    advance_clock(server.url, 60)
    states = {s["SnapshotId"]: s["State"] for s in ec2(server).describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert set(states) == {i for ids in taken.values() for i in ids}
    assert set(states.values()) == {"completed"}
    return taken


def expire(**settings: Any) -> tuple[dict[str, Any], Any]:
    """expire_snapshots of the target in CURRENT_RUN: (its return value, its SNAPSHOT_RETENTION record)."""
    operator = ExpireSnapshotsOperator(task_id="expire_snapshots", config=config(**settings), region_name=REGION)
    result: dict[str, Any] = operator.execute(context(CURRENT_RUN))
    return result, run_artifacts(config(**settings), CURRENT_RUN).read(SNAPSHOT_RETENTION, target=TARGET)


def test_only_the_projects_expired_snapshots_of_other_runs_are_deleted(
    fresh_server: SandboxServer, snapshots: dict[str, list[str]]
) -> None:
    before = sandbox_calls(fresh_server.url, "ec2:DeleteSnapshot")
    called = datetime.now(UTC)

    result, record = expire()  # the default retention: 7 days

    assert sandbox_calls(fresh_server.url, "ec2:DeleteSnapshot") - before == len(snapshots["old"])
    everything = {i for ids in snapshots.values() for i in ids}
    assert remaining(fresh_server) == everything - set(snapshots["old"])
    assert record.deleted == sorted(snapshots["old"])
    assert record.kept == len(snapshots["current"]) + len(snapshots["recent"])  # the project's only
    assert record.account_id == ACCOUNT
    cutoff = parse_utc(record.cutoff)
    assert cutoff is not None
    assert called - timedelta(days=7) <= cutoff <= datetime.now(UTC) - timedelta(days=7)
    assert result == {**TARGET.as_kwargs(), "deleted": len(snapshots["old"]), "kept": record.kept}


@pytest.mark.parametrize(
    ("days", "expired"),
    [
        (2, ("old", "recent")),  # the recent ones are ~3 days old
        (29, ("old",)),
        (31, ()),  # nothing is older than 30 days
    ],
)
def test_the_retention_setting_moves_the_cutoff(
    fresh_server: SandboxServer, snapshots: dict[str, list[str]], days: int, expired: tuple[str, ...]
) -> None:
    _, record = expire(snapshot_retention_days=days)

    gone = sorted(i for kind in expired for i in snapshots[kind])
    assert record.deleted == gone
    assert record.kept == sum(len(snapshots[k]) for k in ("old", "current", "recent") if k not in expired)
    everything = {i for ids in snapshots.values() for i in ids}
    assert remaining(fresh_server) == everything - set(gone)
    # The current run's snapshots are never expired, however old; nor anyone else's.
    assert set(snapshots["current"] + snapshots["untagged"] + snapshots["foreign"]) <= remaining(fresh_server)


def test_a_second_pass_finds_nothing_more_to_delete(
    fresh_server: SandboxServer, snapshots: dict[str, list[str]]
) -> None:
    expire()
    before = sandbox_calls(fresh_server.url, "ec2:DeleteSnapshot")

    result, record = expire()

    assert sandbox_calls(fresh_server.url, "ec2:DeleteSnapshot") == before
    assert (record.deleted, record.kept) == ([], len(snapshots["current"]) + len(snapshots["recent"]))
    assert (result["deleted"], result["kept"]) == (0, record.kept)

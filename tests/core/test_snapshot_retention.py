"""core.snapshot_retention: only the project's snapshots of earlier runs, older than the retention, expire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from patchcycle.core.snapshot_retention import expired_snapshots

CUTOFF = datetime(2026, 11, 13, tzinfo=UTC)


def snapshot(snapshot_id: str, started: str, **tags: str) -> dict[str, Any]:
    return {"SnapshotId": snapshot_id, "StartTime": started, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def test_only_the_project_s_old_snapshots_of_other_runs_expire() -> None:
    ours = {"patchcycle:managed": "true"}
    snapshots = [
        snapshot("snap-old", "2026-11-01T00:00:00Z", **ours, **{"patchcycle:run-id": "manual__old"}),
        snapshot("snap-recent", "2026-11-19T00:00:00Z", **ours, **{"patchcycle:run-id": "manual__old"}),
        snapshot("snap-this-run", "2026-11-01T00:00:00Z", **ours, **{"patchcycle:run-id": "manual__now"}),
        snapshot("snap-not-ours", "2020-01-01T00:00:00Z", **{"patchcycle:run-id": "manual__old"}),
        snapshot("snap-mistagged", "2020-01-01T00:00:00Z", **{"patchcycle:managed": "false"}),
    ]
    assert expired_snapshots(snapshots, "manual__now", CUTOFF) == (["snap-old"], 2)

"""Which of the project's pre-patch snapshots have expired: tagged by the project, of an earlier run, and older
than the retention. Snapshots without the project's tag are never candidates, whatever their age."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from patchcycle.core.runbooks import MANAGED_TAG
from patchcycle.core.timestamps import parse_utc

RUN_TAG: Final = "patchcycle:run-id"


def _tags(snapshot: Mapping[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in snapshot.get("Tags") or []}


def expired_snapshots(snapshots: Iterable[Mapping[str, Any]], run_id: str, cutoff: datetime) -> tuple[list[str], int]:
    """(the ids to delete, sorted; how many of the project's snapshots are kept): the project's snapshots of
    another run started before `cutoff`."""
    expired, kept = [], 0
    for snapshot in snapshots:
        tags = _tags(snapshot)
        if tags.get(MANAGED_TAG[0]) != MANAGED_TAG[1]:
            continue  # not the project's: never touched
        started = parse_utc(snapshot.get("StartTime"))
        if tags.get(RUN_TAG) != run_id and started is not None and started < cutoff:
            expired.append(str(snapshot["SnapshotId"]))
        else:
            kept += 1
    return sorted(expired), kept

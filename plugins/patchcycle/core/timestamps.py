"""Times as the run records them: aware UTC, written as ISO 8601 with a Z suffix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd


def utc_timestamp(value: Any) -> pd.Timestamp | None:
    """A UTC timestamp from a datetime, ISO string or epoch seconds; None when empty or missing."""
    if value is None or value == "" or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, int | float):
        return pd.Timestamp(value, unit="s", tz="UTC")
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def iso_utc(value: Any) -> str:
    """ISO 8601 UTC with a Z suffix ("2026-11-20T03:00:00Z"); "" when empty or missing."""
    stamp = utc_timestamp(value)
    if stamp is None:
        return ""
    return str(stamp.isoformat()).replace("+00:00", "Z")


def now_iso() -> str:
    """Now, to the second, as iso_utc writes it."""
    return iso_utc(datetime.now(UTC).replace(microsecond=0))


def parse_utc(value: Any) -> datetime | None:
    """An ISO 8601 text (or datetime) as an aware UTC datetime; None when empty or not a time."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

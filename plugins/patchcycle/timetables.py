"""PatchTuesdayTimetable: the second Tuesday of each month plus N days, at a time of day in a timezone.

Cron cannot say it: `0 3 8-14 * 2` ORs day-of-month with day-of-week, and `2#2` has no "+N days".
Each run is an exact moment (its data interval starts and ends there), so a run's logical date is
the moment the cycle was due.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable
from pendulum import DateTime, instance

TUESDAY = 1  # date.weekday()
_AT = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
MAX_DAYS_AFTER = 27  # so every month has exactly one run


class PatchTuesdayTimetable(Timetable):
    """Runs on the second Tuesday of every month plus `days_after` days, at `at` (HH:MM) in `timezone`."""

    def __init__(self, days_after: int = 0, at: str = "03:00", timezone: str = "UTC") -> None:
        if isinstance(days_after, bool) or not isinstance(days_after, int) or not 0 <= days_after <= MAX_DAYS_AFTER:
            raise ValueError(f"days_after: a whole number of days from 0 to {MAX_DAYS_AFTER}, got {days_after!r}")
        match = _AT.match(at) if isinstance(at, str) else None
        if match is None:
            raise ValueError(f"at: a time of day as HH:MM (24-hour), got {at!r}")
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
            raise ValueError(f"timezone: not an IANA timezone name: {timezone!r}") from error
        self.days_after, self.at, self.timezone = days_after, at, timezone
        self._time = time(int(match.group(1)), int(match.group(2)))
        after = f" + {days_after} day{'s' if days_after != 1 else ''}" if days_after else ""
        self.description = f"Second Tuesday of the month{after}, at {at} {timezone}"

    @property
    def summary(self) -> str:
        return f"Patch Tuesday{f' +{self.days_after}d' if self.days_after else ''} {self.at} {self.timezone}"

    def serialize(self) -> dict[str, Any]:
        return {"days_after": self.days_after, "at": self.at, "timezone": self.timezone}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(days_after=data["days_after"], at=data["at"], timezone=data["timezone"])

    def occurrence(self, year: int, month: int) -> DateTime:
        """The run of (year, month): its second Tuesday plus days_after, at the local time, in UTC."""
        first = date(year, month, 1)
        second_tuesday = first + timedelta(days=(TUESDAY - first.weekday()) % 7 + 7)
        local = datetime.combine(second_tuesday + timedelta(days=self.days_after), self._time, tzinfo=self._zone)
        return instance(local.astimezone(UTC))

    def next_after(self, moment: datetime, *, inclusive: bool) -> DateTime:
        """The first run at (inclusive) or after `moment`."""
        year, month = moment.year, moment.month - 1  # the previous month's run may fall in this month
        while True:
            if month == 0:
                year, month = year - 1, 12
            candidate = self.occurrence(year, month)
            if candidate > moment or (inclusive and candidate == moment):
                return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None:
            start = self.next_after(last_automated_data_interval.end, inclusive=False)
        elif restriction.earliest is None:
            return None  # no start_date: nothing to schedule
        else:
            earliest = restriction.earliest
            if not restriction.catchup:
                earliest = max(earliest, instance(datetime.now(UTC)))
            start = self.next_after(earliest, inclusive=True)
        if restriction.latest is not None and start > restriction.latest:
            return None
        return DagRunInfo.exact(start)

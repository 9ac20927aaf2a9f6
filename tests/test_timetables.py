"""PatchTuesdayTimetable: its runs checked against the calendar for a year, timezones, limits and serialization."""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from pendulum import instance

from patchcycle.timetables import PatchTuesdayTimetable

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "patch_cycle.py"


def second_tuesday(year: int, month: int) -> date:
    """From the calendar module, independently of the timetable's arithmetic."""
    tuesdays = [week[calendar.TUESDAY] for week in calendar.monthcalendar(year, month) if week[calendar.TUESDAY]]
    return date(year, month, tuesdays[1])


def runs(timetable: PatchTuesdayTimetable, start: datetime, count: int) -> list[datetime]:
    """`count` scheduled runs from `start`, as the scheduler asks for them one after the other."""
    restriction = TimeRestriction(earliest=instance(start), latest=None, catchup=True)
    found: list[datetime] = []
    last: DataInterval | None = None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        found.append(info.run_after)
        assert info.data_interval.start == info.data_interval.end == info.run_after
        last = info.data_interval
    return found


@pytest.mark.parametrize("days_after", [0, 1, 7, 20])
def test_a_year_of_runs_matches_the_calendar(days_after: int) -> None:
    timetable = PatchTuesdayTimetable(days_after=days_after, at="03:00", timezone="UTC")
    got = runs(timetable, datetime(2027, 1, 1, tzinfo=UTC), 12)
    expected = [
        datetime.combine(second_tuesday(2027, month) + timedelta(days=days_after), datetime.min.time(), UTC).replace(
            hour=3
        )
        for month in range(1, 13)
    ]
    assert got == expected


def test_local_time_follows_daylight_saving() -> None:
    timetable = PatchTuesdayTimetable(days_after=0, at="03:00", timezone="Europe/Berlin")
    january, july = runs(timetable, datetime(2027, 1, 1, tzinfo=UTC), 7)[0::6]
    assert january == datetime(2027, 1, 12, 2, 0, tzinfo=UTC)  # CET, UTC+1
    assert july == datetime(2027, 7, 13, 1, 0, tzinfo=UTC)  # CEST, UTC+2
    for run in runs(timetable, datetime(2027, 1, 1, tzinfo=UTC), 12):
        local = run.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (3, 0)
        assert local.date() == second_tuesday(local.year, local.month)


def test_a_run_pushed_into_the_next_month_is_still_found() -> None:
    # 2027-12: second Tuesday the 14th, +20 days = 2028-01-03; January's own run is 2028-01-31.
    timetable = PatchTuesdayTimetable(days_after=20)
    got = runs(timetable, datetime(2027, 12, 20, tzinfo=UTC), 2)
    assert got == [datetime(2028, 1, 3, 3, 0, tzinfo=UTC), datetime(2028, 1, 31, 3, 0, tzinfo=UTC)]


def test_the_start_moment_itself_is_a_run_and_no_run_is_skipped_or_repeated() -> None:
    timetable = PatchTuesdayTimetable(days_after=7)
    due = datetime(2027, 3, 16, 3, 0, tzinfo=UTC)  # second Tuesday 2027-03-09 + 7
    assert runs(timetable, due, 1) == [due]
    got = runs(timetable, due - timedelta(seconds=1), 24)
    assert len(set(got)) == 24 and got == sorted(got)
    assert all(later - earlier > timedelta(days=20) for earlier, later in itertools.pairwise(got))


def test_without_catchup_the_first_run_is_the_next_one_from_now() -> None:
    timetable = PatchTuesdayTimetable(days_after=7)
    restriction = TimeRestriction(earliest=instance(datetime(2026, 1, 1, tzinfo=UTC)), latest=None, catchup=False)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert info is not None
    now = datetime.now(UTC)
    assert now <= info.run_after < now + timedelta(days=32)
    local = info.run_after - timedelta(days=7)
    assert local.date() == second_tuesday(local.year, local.month)


def test_no_start_date_or_past_the_end_date_schedules_nothing() -> None:
    timetable = PatchTuesdayTimetable()
    assert (
        timetable.next_dagrun_info(
            last_automated_data_interval=None, restriction=TimeRestriction(earliest=None, latest=None, catchup=True)
        )
        is None
    )
    start = instance(datetime(2027, 1, 1, tzinfo=UTC))
    ended = TimeRestriction(earliest=start, latest=instance(datetime(2027, 1, 5, tzinfo=UTC)), catchup=True)
    assert timetable.next_dagrun_info(last_automated_data_interval=None, restriction=ended) is None


def test_a_manual_run_is_an_exact_moment() -> None:
    moment = instance(datetime(2027, 5, 5, 12, 34, tzinfo=UTC))
    assert PatchTuesdayTimetable().infer_manual_data_interval(run_after=moment) == DataInterval.exact(moment)


def test_the_description_reads_well_in_the_ui() -> None:
    assert PatchTuesdayTimetable().description == "Second Tuesday of the month, at 03:00 UTC"
    timetable = PatchTuesdayTimetable(days_after=7, at="22:30", timezone="America/New_York")
    assert timetable.description == "Second Tuesday of the month + 7 days, at 22:30 America/New_York"
    assert timetable.summary == "Patch Tuesday +7d 22:30 America/New_York"
    assert PatchTuesdayTimetable(days_after=1).description.startswith("Second Tuesday of the month + 1 day,")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"days_after": -1}, "days_after"),
        ({"days_after": 28}, "days_after"),
        ({"days_after": 1.5}, "days_after"),
        ({"days_after": True}, "days_after"),
        ({"at": "3:00"}, "at"),
        ({"at": "24:00"}, "at"),
        ({"at": "03:60"}, "at"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": ""}, "timezone"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        PatchTuesdayTimetable(**kwargs)  # type: ignore[arg-type]


def test_it_survives_airflow_dag_serialization_as_the_scheduler_reads_it() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagBag(dag_folder=DAG_FILE, safe_mode=False).dags["patch_cycle"]
    assert isinstance(dag.timetable, PatchTuesdayTimetable)
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    assert isinstance(restored, PatchTuesdayTimetable)
    assert restored.serialize() == dag.timetable.serialize() == {"days_after": 7, "at": "03:00", "timezone": "UTC"}
    assert restored.description == dag.timetable.description

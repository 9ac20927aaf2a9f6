"""SSM Change Calendar in the sandbox (change_calendar.py): ChangeCalendar documents and GetCalendarState over the
simulated clock, through boto3 as the DAGs see them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox import change_calendar
from include.sandbox.scenario import ScenarioError, parse_scenario
from tests.conftest import advance_clock, client_factory

ACCOUNT, REGION = "123456789012", "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # a Friday
SCENARIO: dict[str, Any] = {
    "name": "change-calendar",
    # Nearly frozen: only advance_clock moves simulated time, so every expected time is exact.
    "clock": {"start": START.isoformat(), "speed": 1e-9},
    "accounts": [{"id": ACCOUNT, "regions": {REGION: {}, "eu-west-1": {}}}],
    "change_calendars": [
        # Closed 03:10-04:10 (a freeze).
        {"name": "freeze", "type": "DEFAULT_OPEN", "events": [{"start_after_seconds": 600, "duration_seconds": 3600}]},
        # Open 03:30-04:00 only (a maintenance window).
        {
            "name": "window",
            "type": "DEFAULT_CLOSED",
            "region": REGION,
            "events": [{"start": "2026-11-20T03:30:00Z", "end": "2026-11-20T04:00:00Z", "summary": "Maintenance"}],
        },
        # Open 02:00-05:00.
        {
            "name": "night",
            "type": "DEFAULT_CLOSED",
            "region": REGION,
            "events": [{"start_after_seconds": -3600, "duration_seconds": 3 * 3600}],
        },
    ],
}
COMMAND_DOC = {
    "schemaVersion": "2.2",
    "description": "not a calendar",
    "mainSteps": [{"action": "aws:runShellScript", "name": "run", "inputs": {"runCommand": ["true"]}}],
}


def ics(calendar_type: str = "DEFAULT_OPEN", *events: str, header: str = "") -> str:
    """A calendar's text; each event is the inside of a VEVENT, its lines separated by '|'."""
    lines = ["BEGIN:VCALENDAR", "PRODID:-//AWS//Change Calendar 1.0//EN", "VERSION:2.0"]
    lines += [f"X-CALENDAR-TYPE:{calendar_type}"] if calendar_type else []
    lines += [header] if header else []
    for index, event in enumerate(events):
        lines += ["BEGIN:VEVENT", f"UID:event-{index}", "DTSTAMP:20261101T000000Z", *event.split("|"), "END:VEVENT"]
    return "\r\n".join([*lines, "END:VCALENDAR"]) + "\r\n"


@pytest.fixture
def ssm(fresh_server: Any) -> Any:
    return client_factory(fresh_server.url)("ssm", region=REGION)


def state(ssm: Any, *names: str, at: str | None = None) -> tuple[str, str | None]:
    response = ssm.get_calendar_state(CalendarNames=list(names), **({"AtTime": at} if at else {}))
    return response["State"], response.get("NextTransitionTime")


def error_code(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


# -- documents ---------------------------------------------------------------------------------------


def test_create_get_describe_list_update_and_delete_a_calendar(ssm: Any) -> None:
    content = ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DTEND:20261121T060000Z|SUMMARY:Freeze")
    created = ssm.create_document(
        Name="release-freeze",
        Content=content,
        DocumentType="ChangeCalendar",
        DocumentFormat="TEXT",
        Tags=[{"Key": "team", "Value": "platform"}],
    )["DocumentDescription"]
    assert (created["DocumentType"], created["DocumentFormat"], created["DocumentVersion"]) == (
        "ChangeCalendar",
        "TEXT",
        "1",
    )
    assert created["Status"] == "Active" and created["Name"] == "release-freeze"

    document = ssm.get_document(Name="release-freeze")
    assert (document["Content"], document["DocumentFormat"], document["DocumentType"]) == (
        content,
        "TEXT",
        "ChangeCalendar",
    )
    described = ssm.describe_document(Name="release-freeze")["Document"]
    assert described["Tags"] == [{"Key": "team", "Value": "platform"}]
    assert "SchemaVersion" not in described  # a calendar has no schemaVersion

    ssm.create_document(Name="not-a-calendar", Content=json.dumps(COMMAND_DOC), DocumentType="Command")
    listed = ssm.list_documents(Filters=[{"Key": "DocumentType", "Values": ["ChangeCalendar"]}])
    assert sorted(d["Name"] for d in listed["DocumentIdentifiers"]) == ["freeze", "night", "release-freeze", "window"]
    assert "NextToken" not in listed

    assert state(ssm, "release-freeze", at="2026-11-21T01:00:00Z") == ("CLOSED", "2026-11-21T06:00:00Z")
    updated = ssm.update_document(
        Name="release-freeze",
        Content=ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DTEND:20261121T020000Z"),
        DocumentFormat="TEXT",
    )["DocumentDescription"]
    assert (updated["DocumentVersion"], updated["LatestVersion"]) == ("2", "2")
    # GetCalendarState reads the default version until it is changed.
    assert state(ssm, "release-freeze", at="2026-11-21T03:00:00Z") == ("CLOSED", "2026-11-21T06:00:00Z")
    ssm.update_document_default_version(Name="release-freeze", DocumentVersion="2")
    assert state(ssm, "release-freeze", at="2026-11-21T03:00:00Z") == ("OPEN", None)

    ssm.delete_document(Name="release-freeze")
    with pytest.raises(ClientError) as raised:
        state(ssm, "release-freeze")
    assert error_code(raised) == "InvalidDocument"


def test_list_documents_pages_after_filtering(ssm: Any) -> None:
    for index in range(4):
        ssm.create_document(Name=f"cmd-{index}", Content=json.dumps(COMMAND_DOC), DocumentType="Command")
    pages = list(
        ssm.get_paginator("list_documents").paginate(
            Filters=[{"Key": "DocumentType", "Values": ["ChangeCalendar"]}], PaginationConfig={"PageSize": 2}
        )
    )
    names = [d["Name"] for page in pages for d in page["DocumentIdentifiers"]]
    assert names == ["freeze", "night", "window"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-CALENDAR-TYPE:DEFAULT_OPEN\r\nEND:VCALENDAR\r\n", "PRODID"),
        (ics(""), "X-CALENDAR-TYPE"),
        (ics("DEFAULT_MAYBE"), "X-CALENDAR-TYPE"),
        (ics().replace("END:VCALENDAR", "END:VEVENT"), "END:VEVENT"),
        (ics().replace("VERSION:2.0", "VERSION:1.0"), "VERSION"),
        ("just some text", "content line"),
        ("{}", "content line"),
        (ics("DEFAULT_OPEN", "SUMMARY:no start"), "DTSTART"),
        (ics("DEFAULT_OPEN", "DTSTART:2026-11-21 00:00"), "DTSTART"),
        (ics("DEFAULT_OPEN", "DTSTART:20261121T060000Z|DTEND:20261121T000000Z"), "before DTSTART"),
        (ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DTEND:20261121T010000Z|DURATION:PT1H"), "DURATION"),
        (ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DURATION:1 hour"), "DURATION"),
        (ics("DEFAULT_OPEN", "DTSTART;TZID=Mars/Olympus:20261121T000000|DURATION:PT1H"), "TZID"),
        (ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DURATION:PT1H|RRULE:FREQ=SOMETIMES"), "FREQ"),
        (
            ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DURATION:PT1H|RRULE:FREQ=DAILY;COUNT=2;UNTIL=20261130"),
            "COUNT",
        ),
        (ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DURATION:PT1H|RRULE:FREQ=WEEKLY;BYDAY=XX"), "BYDAY"),
    ],
)
def test_invalid_calendar_content_is_refused(ssm: Any, content: str, reason: str) -> None:
    with pytest.raises(ClientError) as raised:
        ssm.create_document(Name="bad-calendar", Content=content, DocumentType="ChangeCalendar", DocumentFormat="TEXT")
    assert error_code(raised) == "InvalidDocumentContent"
    assert reason in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as raised:  # an update is checked the same way
        ssm.update_document(Name="freeze", Content=content, DocumentFormat="TEXT", DocumentVersion="$LATEST")
    assert error_code(raised) == "InvalidDocumentContent"


def test_a_calendar_is_text_and_text_is_a_calendar(ssm: Any) -> None:
    with pytest.raises(ClientError) as raised:  # DocumentFormat defaults to JSON
        ssm.create_document(Name="json-calendar", Content=ics(), DocumentType="ChangeCalendar")
    assert error_code(raised) == "InvalidDocumentContent"
    with pytest.raises(ClientError) as raised:
        ssm.create_document(Name="text-command", Content=ics(), DocumentType="Command", DocumentFormat="TEXT")
    assert error_code(raised) == "ValidationException"


# -- GetCalendarState ---------------------------------------------------------------------------------


def test_a_default_open_calendar_is_closed_during_its_events(fresh_server: Any, ssm: Any) -> None:
    response = ssm.get_calendar_state(CalendarNames=["freeze"])
    assert (response["State"], response["AtTime"], response["NextTransitionTime"]) == (
        "OPEN",
        "2026-11-20T03:00:00Z",
        "2026-11-20T03:10:00Z",
    )
    advance_clock(fresh_server.url, 600)
    assert state(ssm, "freeze") == ("CLOSED", "2026-11-20T04:10:00Z")
    advance_clock(fresh_server.url, 3599)
    assert state(ssm, "freeze") == ("CLOSED", "2026-11-20T04:10:00Z")
    advance_clock(fresh_server.url, 1)
    assert state(ssm, "freeze") == ("OPEN", None)  # no event left: it never changes again


def test_a_default_closed_calendar_is_open_during_its_events(fresh_server: Any, ssm: Any) -> None:
    assert state(ssm, "window") == ("CLOSED", "2026-11-20T03:30:00Z")
    advance_clock(fresh_server.url, 1800)
    assert state(ssm, "window") == ("OPEN", "2026-11-20T04:00:00Z")
    advance_clock(fresh_server.url, 1800)
    assert state(ssm, "window") == ("CLOSED", None)


def test_several_calendars_are_closed_when_any_is(fresh_server: Any, ssm: Any) -> None:
    # freeze: closed 03:10-04:10; night: open 02:00-05:00.
    assert state(ssm, "freeze", "night") == ("OPEN", "2026-11-20T03:10:00Z")
    advance_clock(fresh_server.url, 600)
    assert state(ssm, "freeze", "night") == ("CLOSED", "2026-11-20T04:10:00Z")
    advance_clock(fresh_server.url, 3600)
    assert state(ssm, "freeze", "night") == ("OPEN", "2026-11-20T05:00:00Z")
    advance_clock(fresh_server.url, 3000)
    assert state(ssm, "freeze", "night") == ("CLOSED", None)
    # window opens only 03:30-04:00, inside the freeze: together they are never open that night.
    assert state(ssm, "freeze", "window", at="2026-11-20T03:00:00Z") == ("CLOSED", None)


def test_at_time_is_read_as_iso_8601_and_names_may_be_arns(ssm: Any) -> None:
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/freeze"
    response = ssm.get_calendar_state(CalendarNames=[arn], AtTime="2026-11-19T22:30:00-0500")
    assert (response["State"], response["AtTime"], response["NextTransitionTime"]) == (
        "CLOSED",
        "2026-11-20T03:30:00Z",
        "2026-11-20T04:10:00Z",
    )
    assert state(ssm, "freeze", at="2026-11-20T03:09:59.900Z") == ("OPEN", "2026-11-20T03:10:00Z")
    with pytest.raises(ClientError) as raised:
        state(ssm, "freeze", at="next tuesday")
    assert error_code(raised) == "ValidationException"


def test_unknown_calendars_and_other_documents_are_refused(ssm: Any) -> None:
    ssm.create_document(Name="a-command", Content=json.dumps(COMMAND_DOC), DocumentType="Command")
    for names in (["nope"], ["freeze", "nope"], [f"arn:aws:ssm:{REGION}:210987654321:document/freeze"]):
        with pytest.raises(ClientError) as raised:
            ssm.get_calendar_state(CalendarNames=names)
        assert error_code(raised) == "InvalidDocument"
    with pytest.raises(ClientError) as raised:
        ssm.get_calendar_state(CalendarNames=["freeze", "a-command"])
    assert error_code(raised) == "InvalidDocumentType"
    with pytest.raises(ClientError) as raised:
        ssm.get_calendar_state(CalendarNames=[])
    assert error_code(raised) == "ValidationException"


def test_calendars_are_regional(fresh_server: Any) -> None:
    eu = client_factory(fresh_server.url)("ssm", region="eu-west-1")
    assert state(eu, "freeze") == ("OPEN", "2026-11-20T03:10:00Z")  # no region: created in every region
    with pytest.raises(ClientError) as raised:
        state(eu, "window")
    assert error_code(raised) == "InvalidDocument"


def test_recurring_and_zoned_events(ssm: Any) -> None:
    content = ics(
        "DEFAULT_OPEN",
        # Every Saturday and Sunday 00:00-06:00 in New York, from 2026-11-21 on, not on 2026-11-28.
        "DTSTART;TZID=America/New_York:20261121T000000|DTEND;TZID=America/New_York:20261121T060000|"
        "RRULE:FREQ=WEEKLY;BYDAY=SA,SU|EXDATE;TZID=America/New_York:20261128T000000",
        # Patch Tuesday (second Tuesday) 20:00-22:00 UTC, three times.
        "DTSTART:20261208T200000Z|DURATION:PT2H|RRULE:FREQ=MONTHLY;BYDAY=2TU;COUNT=3",
        # An all-day event.
        "DTSTART;VALUE=DATE:20261225",
    )
    ssm.create_document(Name="recurring", Content=content, DocumentType="ChangeCalendar", DocumentFormat="TEXT")
    assert state(ssm, "recurring", at="2026-11-21T04:00:00Z") == ("OPEN", "2026-11-21T05:00:00Z")  # EST is UTC-5
    assert state(ssm, "recurring", at="2026-11-22T06:00:00Z") == ("CLOSED", "2026-11-22T11:00:00Z")
    assert state(ssm, "recurring", at="2026-11-28T06:00:00Z") == ("OPEN", "2026-11-29T05:00:00Z")  # EXDATE
    assert state(ssm, "recurring", at="2026-12-08T21:00:00Z") == ("CLOSED", "2026-12-08T22:00:00Z")
    assert state(ssm, "recurring", at="2027-02-09T19:00:00Z") == ("OPEN", "2027-02-09T20:00:00Z")  # the third
    assert state(ssm, "recurring", at="2027-03-09T21:00:00Z")[0] == "OPEN"  # COUNT=3 is over
    assert state(ssm, "recurring", at="2026-12-25T12:00:00Z") == ("CLOSED", "2026-12-26T00:00:00Z")


def test_a_recurrence_the_sandbox_cannot_evaluate_is_unsupported(ssm: Any) -> None:
    content = ics("DEFAULT_OPEN", "DTSTART:20261121T000000Z|DURATION:PT1H|RRULE:FREQ=YEARLY;BYMONTH=12")
    ssm.create_document(Name="yearly", Content=content, DocumentType="ChangeCalendar", DocumentFormat="TEXT")
    with pytest.raises(ClientError) as raised:
        state(ssm, "yearly")
    assert error_code(raised) == "UnsupportedCalendarException"


# -- without HTTP --------------------------------------------------------------------------------------


def test_touching_events_make_one_closed_span() -> None:
    calendar = change_calendar.parse_calendar(
        ics(
            "DEFAULT_OPEN",
            "DTSTART:20261120T010000Z|DTEND:20261120T020000Z",
            "DTSTART:20261120T020000Z|DTEND:20261120T030000Z",
            "DTSTART:20261120T023000Z|DURATION:PT2H",
        )
    )
    at = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert change_calendar.calendar_state([calendar], at) == ("OPEN", datetime(2026, 11, 20, 1, 0, tzinfo=UTC))
    assert change_calendar.calendar_state([calendar], at.replace(hour=1)) == (
        "CLOSED",
        datetime(2026, 11, 20, 4, 30, tzinfo=UTC),
    )


def test_folded_lines_and_lf_line_breaks_are_read() -> None:
    text = ics("DEFAULT_CLOSED", "DTSTART:20261120T010000Z|DTEND:20261120T020000Z|SUMMARY:A long\r\n  summary")
    calendar = change_calendar.parse_calendar(text.replace("\r\n", "\n"))
    assert calendar.calendar_type == "DEFAULT_CLOSED"
    assert calendar.events[0].summary == "A long summary"


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ({"name": "cal-x", "type": "DEFAULT_OPEN", "region": "ap-south-1"}, "region"),
        ({"name": "cal-x", "type": "DEFAULT_OPEN", "account": "210987654321"}, "account"),
        ({"name": "cal-x", "type": "DEFAULT_OPEN", "events": [{"start_after_seconds": 5}]}, "events[0]"),
        (
            {
                "name": "cal-x",
                "type": "DEFAULT_OPEN",
                "events": [{"start_after_seconds": 5, "end": "2026-11-20T03:00:00Z"}],
            },
            "",
        ),
        (
            {
                "name": "cal-x",
                "type": "DEFAULT_OPEN",
                "events": [{"start": "2026-11-20T05:00:00Z", "end": "2026-11-20T04:00:00Z"}],
            },
            "end after it starts",
        ),
        ({"name": "cal-x", "type": "SOMETIMES_OPEN"}, "type"),
    ],
)
def test_scenario_calendars_are_checked(calendar: dict[str, Any], message: str) -> None:
    document = {**SCENARIO, "change_calendars": [calendar]}
    if not message:  # a relative start and an absolute end: only comparable once the clock runs
        parse_scenario(document)
        return
    with pytest.raises(ScenarioError, match=r"change_calendars\[0\]") as raised:
        parse_scenario(document)
    assert message in str(raised.value)


def test_moto_still_lacks_change_calendars() -> None:
    """When the pinned moto learns ChangeCalendar documents or GetCalendarState, compare it with ours."""
    from moto.ssm.exceptions import ValidationException
    from moto.ssm.responses import SimpleSystemManagerResponse

    assert not hasattr(SimpleSystemManagerResponse, "get_calendar_state")
    with pytest.raises(ValidationException):  # moto's own Document class, before change_calendar.apply()
        change_calendar._MotoDocument(
            account_id=ACCOUNT,
            name="calendar",
            version_name=None,
            content=ics(),
            document_type="ChangeCalendar",
            document_format="TEXT",
            requires=None,
            attachments=None,
            target_type=None,
        )


def test_a_scenario_calendar_that_is_not_one_fails_at_start_up(sandbox_factory: Any) -> None:
    bad = {
        "name": "bad-rule",
        "type": "DEFAULT_OPEN",
        "events": [{"start_after_seconds": 0, "duration_seconds": 60, "rrule": "FREQ=OFTEN"}],
    }
    with pytest.raises(ScenarioError, match=r"change_calendars\[0\]: .*FREQ"):
        sandbox_factory({**SCENARIO, "change_calendars": [bad]})

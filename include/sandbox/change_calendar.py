"""SSM Change Calendar: ChangeCalendar documents and ssm:GetCalendarState, over the simulated clock.

moto 5.2.5 refuses ``CreateDocument`` with ``DocumentFormat`` TEXT ("Invalid document format TEXT") and
parses every document's content as JSON or YAML, so a ChangeCalendar cannot be created; it has no
GetCalendarState (500). Here:

- ``apply()`` teaches moto's SSM document store the ChangeCalendar type: content is iCalendar (RFC 5545)
  text in DocumentFormat TEXT, checked as below (InvalidDocumentContent otherwise), then kept by moto like
  any document, so CreateDocument, GetDocument, DescribeDocument, UpdateDocument (a new version),
  DeleteDocument, ListDocuments (DocumentType ChangeCalendar) and the document's tags work as for other
  documents. It also fixes moto's ListDocuments paging (moto counts the filtered-out documents when it
  computes the next page) and lets UpdateDocument default DocumentVersion to $LATEST as AWS does.
- ``get_calendar_state`` answers GetCalendarState from the calendars' events at ``AtTime`` (default: the
  simulated clock's now).
- ``seed()`` creates the scenario's ``change_calendars`` as real ChangeCalendar documents.

What a calendar must hold: one VCALENDAR with VERSION 2.0, PRODID and AWS's ``X-CALENDAR-TYPE``
(DEFAULT_OPEN or DEFAULT_CLOSED); each VEVENT a DTSTART and optionally a DTEND or DURATION after it.
Times are UTC (``...Z``), local to an IANA ``TZID``, floating (read as UTC) or dates (``VALUE=DATE``, UTC
midnight, one day long by default). RRULE (FREQ, INTERVAL, COUNT, UNTIL, BYDAY, BYMONTHDAY, WKST) and
EXDATE must be well formed; DAILY, WEEKLY (BYDAY) and MONTHLY (BYMONTHDAY, or BYDAY such as 2TU) are
evaluated, any other recurrence makes GetCalendarState answer UnsupportedCalendarException.
"""

from __future__ import annotations

import bisect
import calendar as calendar_module
import functools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from moto.core.utils import utcnow
from moto.ssm import models as ssm_models
from moto.ssm.exceptions import InvalidDocumentContent, ValidationException
from moto.ssm.models import SimpleSystemManagerBackend, ssm_backends

from include.sandbox.api import Handler, RequestContext
from include.sandbox.protocol import AwsApiError
from include.sandbox.scenario import ScenarioError
from include.sandbox.world import World

CHANGE_CALENDAR = "ChangeCalendar"
TEXT = "TEXT"
CALENDAR_TYPE = "X-CALENDAR-TYPE"
DEFAULT_OPEN, DEFAULT_CLOSED = "DEFAULT_OPEN", "DEFAULT_CLOSED"
OPEN, CLOSED = "OPEN", "CLOSED"
# How far ahead GetCalendarState looks for the next transition; none within it: NextTransitionTime is omitted.
LOOKAHEAD = timedelta(days=366)
# Bound on the occurrences one recurring event may produce while expanding (a safety net, never reached by
# a real calendar within the lookahead).
_MAX_STEPS = 200_000

MOTO_MISSING: list[str] = ["GetCalendarState"]
MOTO_WRONG: list[str] = ["CreateDocument"]  # refuses ChangeCalendar (format TEXT)


class CalendarError(ValueError):
    """Content that is not a valid change calendar: CreateDocument / UpdateDocument answer InvalidDocumentContent."""


class UnsupportedRecurrence(ValueError):
    """A well-formed recurrence the sandbox cannot evaluate: GetCalendarState answers UnsupportedCalendarException."""


# -- iCalendar text --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    """One content line: NAME;PARAM=VALUE...:VALUE (names and parameter names upper-cased)."""

    name: str
    params: dict[str, str]
    value: str


@dataclass
class Component:
    name: str
    props: list[Prop] = field(default_factory=list)
    children: list[Component] = field(default_factory=list)

    def all(self, name: str) -> list[Prop]:
        return [prop for prop in self.props if prop.name == name]

    def one(self, name: str, *, required: bool = False) -> Prop | None:
        found = self.all(name)
        if len(found) > 1:
            raise CalendarError(f"{self.name} has {len(found)} {name} properties; at most one is allowed")
        if required and not found:
            raise CalendarError(f"{self.name} has no {name} property")
        return found[0] if found else None


_NAME = re.compile(r"[A-Za-z0-9-]+")


def _unfold(text: str) -> list[str]:
    """The logical lines of an iCalendar text: CRLF (or LF) line breaks, continuation lines start with a blank."""
    lines: list[str] = []
    for raw in re.split(r"\r\n|\n|\r", text):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw)
    return lines


def _content_line(line: str) -> Prop:
    match = _NAME.match(line)
    if match is None:
        raise CalendarError(f"invalid content line {line[:60]!r}")
    name, pos, params = match.group().upper(), match.end(), {}
    while pos < len(line) and line[pos] == ";":
        param = re.match(r";([A-Za-z0-9-]+)=(\"[^\"]*\"|[^;:,\"]*(?:,(?:\"[^\"]*\"|[^;:,\"]*))*)", line[pos:])
        if param is None:
            raise CalendarError(f"invalid parameter in content line {line[:60]!r}")
        params[param.group(1).upper()] = param.group(2).replace('"', "")
        pos += param.end()
    if pos >= len(line) or line[pos] != ":":
        raise CalendarError(f"content line {line[:60]!r} has no ':' before its value")
    return Prop(name, params, line[pos + 1 :])


def parse_components(text: str) -> Component:
    """The VCALENDAR of an iCalendar text; CalendarError when it is not well formed."""
    root: Component | None = None
    stack: list[Component] = []
    for line in _unfold(text):
        prop = _content_line(line)
        if prop.name == "BEGIN":
            if root is not None and not stack:
                raise CalendarError("content after END:VCALENDAR")
            component = Component(prop.value.strip().upper())
            if not _NAME.fullmatch(component.name):
                raise CalendarError(f"invalid component name {prop.value!r}")
            if stack:
                stack[-1].children.append(component)
            elif component.name != "VCALENDAR":
                raise CalendarError(f"the text must start with BEGIN:VCALENDAR, not BEGIN:{component.name}")
            else:
                root = component
            stack.append(component)
        elif prop.name == "END":
            if not stack or stack[-1].name != prop.value.strip().upper():
                expected = f"END:{stack[-1].name}" if stack else "nothing"
                raise CalendarError(f"END:{prop.value.strip()} where {expected} was expected")
            stack.pop()
        elif not stack:
            raise CalendarError(f"property {prop.name} outside BEGIN:VCALENDAR ... END:VCALENDAR")
        else:
            stack[-1].props.append(prop)
    if root is None:
        raise CalendarError("no BEGIN:VCALENDAR")
    if stack:
        raise CalendarError(f"BEGIN:{stack[-1].name} has no END:{stack[-1].name}")
    return root


# -- times -----------------------------------------------------------------------------------------

_DATE_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)")
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DURATION = re.compile(r"([+-]?)P(?:(\d+)W|(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?)")


@dataclass(frozen=True)
class When:
    """A DTSTART-like value: local wall time in `zone` (UTC for 'Z', dates and floating times)."""

    local: datetime  # naive
    zone: tzinfo
    is_date: bool = False

    @property
    def utc(self) -> datetime:
        return _to_utc(self.local, self.zone)


def _to_utc(local: datetime, zone: tzinfo) -> datetime:
    return local.replace(tzinfo=zone).astimezone(UTC)


def _zone(prop: Prop) -> tzinfo:
    tzid = prop.params.get("TZID")
    if not tzid:
        return UTC
    try:
        return ZoneInfo(tzid.lstrip("/"))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(f"{prop.name}: unknown time zone TZID={tzid} (the sandbox knows IANA zone names)") from exc


def _parse_value(text: str, prop: Prop, zone: tzinfo) -> When:
    text = text.strip()
    try:
        if prop.params.get("VALUE", "").upper() == "DATE" or (_DATE.fullmatch(text) and "T" not in text):
            match = _DATE.fullmatch(text)
            if match is None:
                raise CalendarError(f"{prop.name}: {text!r} is not a DATE (YYYYMMDD)")
            year, month, day = map(int, match.groups())
            return When(datetime(year, month, day), UTC, is_date=True)
        match = _DATE_TIME.fullmatch(text)
        if match is None:
            raise CalendarError(f"{prop.name}: {text!r} is not a DATE-TIME (YYYYMMDDTHHMMSS[Z])")
        year, month, day, hour, minute, second = map(int, match.groups()[:6])
        if match.group(7) and "TZID" in prop.params:
            raise CalendarError(f"{prop.name}: a UTC time ('Z') cannot have a TZID")
        local = datetime(year, month, day, hour, minute, min(second, 59))  # 60: a leap second
        return When(local, UTC if match.group(7) else zone)
    except ValueError as exc:
        if isinstance(exc, CalendarError):
            raise
        raise CalendarError(f"{prop.name}: {text!r} is not a valid date or time: {exc}") from exc


def _when(prop: Prop) -> When:
    return _parse_value(prop.value, prop, _zone(prop))


def _duration(prop: Prop) -> timedelta:
    match = _DURATION.fullmatch(prop.value.strip())
    if match is None or not any(match.groups()[1:]) or prop.value.strip().endswith("T"):
        raise CalendarError(f"DURATION: {prop.value!r} is not an iCalendar duration such as PT2H or P1D")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    if sign == "-":
        raise CalendarError("DURATION: an event cannot have a negative duration")
    amounts = [int(value or 0) for value in (weeks, days, hours, minutes, seconds)]
    return timedelta(weeks=amounts[0], days=amounts[1], hours=amounts[2], minutes=amounts[3], seconds=amounts[4])


# -- recurrence ------------------------------------------------------------------------------------

_FREQUENCIES = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
# Numeric BY* parts: their bounds (RFC 5545 3.3.10); negative values count from the end where allowed.
_NUMERIC_PARTS = {
    "BYSECOND": (0, 60),
    "BYMINUTE": (0, 59),
    "BYHOUR": (0, 23),
    "BYMONTHDAY": (1, 31),
    "BYYEARDAY": (1, 366),
    "BYWEEKNO": (1, 53),
    "BYMONTH": (1, 12),
    "BYSETPOS": (1, 366),
}
_RULE_PARTS = frozenset({"FREQ", "UNTIL", "COUNT", "INTERVAL", "BYDAY", "WKST", *_NUMERIC_PARTS})
_EVALUATED_PARTS = frozenset({"FREQ", "UNTIL", "COUNT", "INTERVAL", "BYDAY", "BYMONTHDAY", "WKST"})


@dataclass(frozen=True)
class Rule:
    freq: str
    interval: int = 1
    count: int | None = None
    until: datetime | None = None  # UTC
    by_day: tuple[tuple[int | None, int], ...] = ()  # (ordinal or None, weekday 0=Monday)
    by_month_day: tuple[int, ...] = ()
    unsupported: tuple[str, ...] = ()  # parts (or FREQ) the sandbox does not evaluate


def _int_list(part: str, text: str, low: int, high: int) -> tuple[int, ...]:
    values = []
    for item in text.split(","):
        if not re.fullmatch(r"[+-]?\d{1,6}", item) or not low <= abs(int(item)) <= high:
            raise CalendarError(f"RRULE {part}: {item!r} is not a number from {low} to {high}")
        values.append(int(item))
    return tuple(values)


def _rule(prop: Prop, start: When) -> Rule:
    parts: dict[str, str] = {}
    for item in prop.value.strip().split(";"):
        key, sep, value = item.partition("=")
        key = key.upper()
        if not sep or not value or key not in _RULE_PARTS or key in parts:
            raise CalendarError(f"RRULE: {item!r} is not a recurrence rule part (or it is repeated)")
        parts[key] = value.upper()
    freq = parts.get("FREQ")
    if freq not in _FREQUENCIES:
        raise CalendarError(f"RRULE: FREQ must be one of {', '.join(_FREQUENCIES)}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise CalendarError("RRULE: COUNT and UNTIL cannot both be given")
    for key in ("INTERVAL", "COUNT"):
        if key in parts and (not re.fullmatch(r"\d{1,6}", parts[key]) or int(parts[key]) < 1):
            raise CalendarError(f"RRULE {key}: {parts[key]!r} is not a positive number")
    interval = int(parts.get("INTERVAL", "1"))
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    until: datetime | None = None
    if "UNTIL" in parts:
        bound = _parse_value(parts["UNTIL"], Prop("UNTIL", {}, parts["UNTIL"]), start.zone)
        until = bound.utc if not bound.is_date else datetime.combine(bound.local.date(), datetime.max.time(), UTC)
    by_day: list[tuple[int | None, int]] = []
    for item in parts.get("BYDAY", "").split(",") if "BYDAY" in parts else ():
        match = _BYDAY.fullmatch(item)
        if match is None or (match.group(1) and not 1 <= abs(int(match.group(1))) <= 53):
            raise CalendarError(f"RRULE BYDAY: {item!r} is not a weekday such as MO, 2TU or -1FR")
        by_day.append((int(match.group(1)) if match.group(1) else None, _WEEKDAYS.index(match.group(2))))
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        raise CalendarError(f"RRULE WKST: {parts['WKST']!r} is not a weekday")
    numbers = {key: _int_list(key, parts[key], *bounds) for key, bounds in _NUMERIC_PARTS.items() if key in parts}
    by_month_day = numbers.get("BYMONTHDAY", ())
    unsupported = [key for key in parts if key not in _EVALUATED_PARTS]
    if freq not in ("DAILY", "WEEKLY", "MONTHLY"):
        unsupported.append(f"FREQ={freq}")
    elif freq == "DAILY" and (by_day or by_month_day):
        unsupported.append("BYDAY/BYMONTHDAY with FREQ=DAILY")
    elif freq == "WEEKLY" and (by_month_day or any(n is not None for n, _ in by_day)):
        unsupported.append("BYMONTHDAY or an ordinal BYDAY with FREQ=WEEKLY")
    elif freq == "MONTHLY" and by_day and by_month_day:
        unsupported.append("BYDAY together with BYMONTHDAY")
    return Rule(freq, interval, count, until, tuple(by_day), by_month_day, tuple(unsupported))


def _month_days(year: int, month: int, rule: Rule, default_day: int) -> list[int]:
    """The days of one month a MONTHLY rule selects, ascending (invalid days such as 31 February skipped)."""
    last = calendar_module.monthrange(year, month)[1]
    days: set[int] = set()
    if rule.by_day:
        for ordinal, weekday in rule.by_day:
            matching = [d for d in range(1, last + 1) if date(year, month, d).weekday() == weekday]
            if ordinal is None:
                days.update(matching)
            elif abs(ordinal) <= len(matching):
                days.add(matching[ordinal - 1] if ordinal > 0 else matching[ordinal])
    else:
        for day in rule.by_month_day or (default_day,):
            resolved = day if day > 0 else last + day + 1
            if 1 <= resolved <= last:
                days.add(resolved)
    return sorted(days)


def _candidates(start: When, rule: Rule) -> Iterator[datetime]:
    """Local start times the rule generates from DTSTART on, ascending (DTSTART itself may not be one)."""
    first = start.local
    if rule.freq == "DAILY":
        for step in range(_MAX_STEPS):
            yield first + timedelta(days=step * rule.interval)
    elif rule.freq == "WEEKLY":
        weekdays = sorted({weekday for _, weekday in rule.by_day} or {first.weekday()})
        monday = first - timedelta(days=first.weekday())
        for step in range(_MAX_STEPS):
            week = monday + timedelta(weeks=step * rule.interval)
            for weekday in weekdays:
                yield week + timedelta(days=weekday)
    else:  # MONTHLY
        for step in range(_MAX_STEPS):
            index = first.month - 1 + step * rule.interval
            year, month = first.year + index // 12, index % 12 + 1
            for day in _month_days(year, month, rule, first.day):
                yield first.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class Event:
    start: When
    duration: timedelta
    rule: Rule | None = None
    excluded: frozenset[datetime] = frozenset()  # UTC starts (EXDATE)
    summary: str = ""

    def occurrences(self, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) in UTC of every occurrence starting at or before `until`, ascending."""
        if self.rule is None:
            starts: Iterator[datetime] = iter([self.start.utc])
        else:
            if self.rule.unsupported:
                raise UnsupportedRecurrence(", ".join(self.rule.unsupported))
            starts = self._recurrence()
        for begin in starts:
            if begin > until:
                return
            if begin not in self.excluded:
                yield begin, begin + self.duration

    def _recurrence(self) -> Iterator[datetime]:
        rule = self.rule
        assert rule is not None
        yield self.start.utc  # DTSTART is always the first occurrence
        produced = 1
        for local in _candidates(self.start, rule):
            if local <= self.start.local:
                continue
            begin = _to_utc(local, self.start.zone)
            if (rule.count is not None and produced >= rule.count) or (rule.until is not None and begin > rule.until):
                return
            produced += 1
            yield begin


@dataclass(frozen=True)
class Calendar:
    calendar_type: str  # DEFAULT_OPEN or DEFAULT_CLOSED
    events: tuple[Event, ...]

    def event_spans(self, after: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
        """The calendar's event time ending after `after` and starting by `until`: disjoint [start, end), sorted."""
        spans = sorted(
            span for event in self.events for span in event.occurrences(until) if span[1] > max(span[0], after)
        )
        merged: list[tuple[datetime, datetime]] = []
        for begin, end in spans:
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((begin, end))
        return merged

    def state(self, at: datetime, spans: list[tuple[datetime, datetime]]) -> str:
        """OPEN or CLOSED at `at`, given event_spans covering it."""
        index = bisect.bisect_right(spans, (at, datetime.max.replace(tzinfo=UTC))) - 1
        inside = index >= 0 and spans[index][0] <= at < spans[index][1]
        if self.calendar_type == DEFAULT_OPEN:
            return CLOSED if inside else OPEN
        return OPEN if inside else CLOSED


def _event(component: Component) -> Event:
    start_prop = component.one("DTSTART", required=True)
    assert start_prop is not None
    start = _when(start_prop)
    end_prop, duration_prop = component.one("DTEND"), component.one("DURATION")
    if end_prop is not None and duration_prop is not None:
        raise CalendarError("VEVENT has both DTEND and DURATION")
    if end_prop is not None:
        end = _when(end_prop)
        if end.is_date != start.is_date:
            raise CalendarError("VEVENT: DTSTART and DTEND must both be dates or both be date-times")
        duration = end.utc - start.utc
    elif duration_prop is not None:
        duration = _duration(duration_prop)
    else:
        duration = timedelta(days=1) if start.is_date else timedelta(0)
    if duration < timedelta(0):
        raise CalendarError("VEVENT: DTEND is before DTSTART")
    rule_prop = component.one("RRULE")
    excluded: set[datetime] = set()
    for prop in component.all("EXDATE"):
        zone = _zone(prop)
        excluded.update(_parse_value(item, prop, zone).utc for item in prop.value.split(","))
    summary = component.one("SUMMARY")
    return Event(
        start,
        duration,
        _rule(rule_prop, start) if rule_prop is not None else None,
        frozenset(excluded),
        summary.value if summary is not None else "",
    )


@functools.lru_cache(maxsize=512)
def parse_calendar(content: str) -> Calendar:
    """A change calendar from its document content; CalendarError says what makes it invalid."""
    root = parse_components(content)
    version = root.one("VERSION", required=True)
    assert version is not None
    if version.value.strip() != "2.0":
        raise CalendarError(f"VERSION must be 2.0, not {version.value!r}")
    root.one("PRODID", required=True)
    kind = root.one(CALENDAR_TYPE)
    if kind is None or kind.value.strip().upper() not in (DEFAULT_OPEN, DEFAULT_CLOSED):
        raise CalendarError(
            f"the VCALENDAR must have {CALENDAR_TYPE}:{DEFAULT_OPEN} or {CALENDAR_TYPE}:{DEFAULT_CLOSED}"
        )
    events = tuple(_event(child) for child in root.children if child.name == "VEVENT")
    return Calendar(kind.value.strip().upper(), events)


def check_calendar_document(content: Any, document_format: str) -> None:
    """What CreateDocument / UpdateDocument check for a ChangeCalendar: AwsApiError InvalidDocumentContent.

    moto's document store (patched by ``apply``) calls the same checks; a module that serves the document
    APIs itself should call this for DocumentType ChangeCalendar and keep the document in moto's store,
    where GetCalendarState reads it.
    """
    if document_format != TEXT:
        raise AwsApiError("InvalidDocumentContent", _FORMAT_MESSAGE)
    try:
        parse_calendar(content if isinstance(content, str) else "")
    except CalendarError as exc:
        raise AwsApiError("InvalidDocumentContent", f"The content for the document is not valid: {exc}.") from None


_FORMAT_MESSAGE = f"A {CHANGE_CALENDAR} document's content is iCalendar text: DocumentFormat must be {TEXT}."


def calendar_text(calendar_type: str, events: list[dict[str, Any]], description: str = "") -> str:
    """The iCalendar text of a change calendar, as the console writes one: events are dicts with UTC `start`
    and `end` datetimes, optional `summary`, `rrule` (e.g. "FREQ=WEEKLY;BYDAY=SA") and `uid`."""
    stamp = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//AWS//Change Calendar 1.0//EN",
        "VERSION:2.0",
        f"{CALENDAR_TYPE}:{calendar_type}",
    ]
    if description:
        lines.append(f"X-WR-CALDESC:{description}")
    for index, event in enumerate(events):
        start, end = event["start"].astimezone(UTC), event["end"].astimezone(UTC)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{event.get('uid') or uuid.uuid5(uuid.NAMESPACE_URL, f'{description}/{index}/{start}')}",
            f"DTSTAMP:{start.strftime(stamp)}",
            f"SUMMARY:{event.get('summary') or 'Change freeze'}",
            f"DTSTART:{start.strftime(stamp)}",
            f"DTEND:{end.strftime(stamp)}",
        ]
        if event.get("rrule"):
            lines.append(f"RRULE:{event['rrule']}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


# -- state ----------------------------------------------------------------------------------------


def calendar_state(calendars: list[Calendar], at: datetime) -> tuple[str, datetime | None]:
    """(OPEN or CLOSED at `at`, the next time that changes within LOOKAHEAD or None): CLOSED if any is closed."""
    horizon = at + LOOKAHEAD
    spans = [cal.event_spans(at, horizon) for cal in calendars]

    def combined(moment: datetime) -> str:
        closed = any(cal.state(moment, span) == CLOSED for cal, span in zip(calendars, spans, strict=True))
        return CLOSED if closed else OPEN

    now = combined(at)
    boundaries = sorted({t for span in spans for begin, end in span for t in (begin, end) if at < t <= horizon})
    return now, next((t for t in boundaries if combined(t) != now), None)


_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:([a-z0-9-]+):(\d{12}):document/(.+)$")


def _document(ctx: RequestContext, name_or_arn: str) -> Any:
    """The default version of the calendar document a name or ARN names (own, or shared with the caller)."""
    account_id, region, name = ctx.account_id, ctx.region, name_or_arn
    match = _ARN.match(name_or_arn)
    if match:
        region, account_id, name = match.groups()
    documents = ssm_backends[account_id][region]._documents.get(name) if region == ctx.region else None
    if documents is not None and account_id != ctx.account_id:
        shared = set(documents.permissions)
        documents = documents if shared & {ctx.account_id, "all"} else None
    if documents is None:
        raise AwsApiError("InvalidDocument", f"Calendar {name_or_arn} does not exist.")
    doc = documents.get_default_version()
    if doc.document_type != CHANGE_CALENDAR:
        raise AwsApiError(
            "InvalidDocumentType",
            f"Document {name_or_arn} is of type {doc.document_type}; GetCalendarState needs a {CHANGE_CALENDAR}.",
        )
    return doc


def parse_at_time(text: str) -> datetime:
    """An ISO 8601 time (offset, 'Z', or none for UTC); ValidationException if it is not one."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise AwsApiError(
            "ValidationException", f"AtTime {text!r} is not a time in ISO 8601 format (e.g. 2026-11-20T03:00:00Z)."
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_calendar_state(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    names: list[str] = list(params["CalendarNames"])
    if not names:
        raise AwsApiError(
            "ValidationException",
            "1 validation error detected: Value '[]' at 'calendarNames' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1",
        )
    at = parse_at_time(params["AtTime"]) if params.get("AtTime") else world.now()
    at = at.replace(microsecond=0)
    calendars = []
    for name in names:
        doc = _document(ctx, name)
        try:
            calendars.append(parse_calendar(doc.content))
        except CalendarError as exc:  # stored before the sandbox checked calendars: not expected
            raise AwsApiError("UnsupportedCalendarException", f"Calendar {name}: {exc}.") from exc
    try:
        state, transition = calendar_state(calendars, at)
    except UnsupportedRecurrence as exc:
        raise AwsApiError(
            "UnsupportedCalendarException",
            f"The sandbox does not evaluate this recurrence ({exc}); it evaluates DAILY, WEEKLY (BYDAY) and "
            "MONTHLY (BYMONTHDAY or BYDAY) rules with INTERVAL, COUNT, UNTIL and EXDATE.",
        ) from exc
    result = {"State": state, "AtTime": iso(at)}
    if transition is not None:
        result["NextTransitionTime"] = iso(transition)
    return result


HANDLERS: dict[tuple[str, str], Handler] = {("ssm", "GetCalendarState"): get_calendar_state}


# -- moto's document store -------------------------------------------------------------------------

_MotoDocument: Any = ssm_models.Document
_MOTO_VALIDATE_FORMAT = ssm_models._validate_document_format
_MOTO_GET_DOCUMENT = SimpleSystemManagerBackend.get_document
_MOTO_UPDATE_DOCUMENT = SimpleSystemManagerBackend.update_document


class CalendarAwareDocument(_MotoDocument):  # type: ignore[misc]
    """moto's SSM document, plus ChangeCalendar documents: iCalendar text in DocumentFormat TEXT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = ("account_id", "name", "version_name", "content", "document_type", "document_format")
        given = dict(zip(names, args, strict=False)) | kwargs
        if given.get("document_type") != CHANGE_CALENDAR:
            super().__init__(*args, **kwargs)
            return
        content = given["content"]
        try:
            check_calendar_document(content, str(given.get("document_format")))
        except AwsApiError as exc:
            raise InvalidDocumentContent(exc.message) from None
        self.name = given["name"]
        self.version_name = given.get("version_name")
        self.content = content
        self.document_type = CHANGE_CALENDAR
        self.document_format = TEXT
        self.requires = given.get("requires")
        self.attachments = given.get("attachments")
        self.target_type = given.get("target_type")
        self.status = "Active"
        self.document_version = given.get("document_version", "1")
        self.owner = given["account_id"]
        self.created_date = utcnow()
        self.content_json = None
        self.schema_version = None  # a calendar has no schemaVersion
        self.description = None
        self.outputs = None
        self.files = None
        self.platform_types: list[str] = []
        self.parameter_list: list[dict[str, Any]] = []


def _validate_document_format(document_format: str) -> None:
    """moto knows JSON and YAML; TEXT is the ChangeCalendar format (the document type is checked above)."""
    if document_format != TEXT:
        _MOTO_VALIDATE_FORMAT(document_format)


def _get_document(
    self: Any, name: str, document_version: str, version_name: str, document_format: str
) -> dict[str, Any]:
    """GetDocument: a calendar is read as the TEXT it is (moto's responder asks for JSON when none is given)."""
    if self._get_documents(name).find(document_version, version_name).document_type == CHANGE_CALENDAR:
        document_format = TEXT
    result: dict[str, Any] = _MOTO_GET_DOCUMENT(self, name, document_version, version_name, document_format)
    return result


def _update_document(
    self: Any,
    content: str,
    attachments: Any,
    name: str,
    version_name: str,
    document_version: str | None,
    document_format: str,
    target_type: str,
) -> dict[str, Any]:
    """UpdateDocument without DocumentVersion updates the latest version, as on AWS (moto refuses it)."""
    result: dict[str, Any] = _MOTO_UPDATE_DOCUMENT(
        self, content, attachments, name, version_name, document_version or "$LATEST", document_format, target_type
    )
    return result


def _list_documents(
    self: Any, document_filter_list: Any, filters: list[dict[str, Any]], max_results: int = 10, token: str = "0"
) -> tuple[list[dict[str, Any]], str | None]:
    """ListDocuments: filter, then page (moto pages first, so filtered pages skip and repeat documents)."""
    if document_filter_list:
        raise ValidationException("DocumentFilterList is deprecated. Instead use Filters.")
    try:
        start = int(token or "0")
    except ValueError:
        raise ValidationException("The specified token is not valid.") from None
    matching = []
    for _, documents in sorted(self._documents.items()):
        doc = documents.get_default_version()
        if not filters or ssm_models._document_filter_match(self.account_id, filters, doc):
            matching.append(doc.list_describe(tags=self._get_documents_tags(doc.name)))
    page = matching[start : start + max_results]
    more = start + max_results < len(matching)
    return page, (str(start + max_results) if more else None)


def apply() -> None:
    """Teach moto's SSM documents the ChangeCalendar type (idempotent)."""
    ssm_models.Document = CalendarAwareDocument  # type: ignore[misc]
    ssm_models._validate_document_format = _validate_document_format
    SimpleSystemManagerBackend.get_document = _get_document  # type: ignore[method-assign]
    SimpleSystemManagerBackend.update_document = _update_document  # type: ignore[method-assign]
    SimpleSystemManagerBackend.list_documents = _list_documents  # type: ignore[method-assign,assignment]


# -- the scenario's calendars ---------------------------------------------------------------------


def seed(world: World) -> None:
    """Create the scenario's change_calendars as ChangeCalendar documents (moto's store, patched by apply())."""
    apply()
    clock_start = world.clock.start
    for index, spec in enumerate(world.scenario.change_calendars):
        account = next((a for a in world.scenario.accounts if a.id == spec.account), world.scenario.accounts[0])
        regions = [spec.region] if spec.region else [region.name for region in account.regions]
        events = [
            {
                "start": event.resolved_start(clock_start),
                "end": event.resolved_end(clock_start),
                "summary": event.summary,
                "rrule": event.rrule,
            }
            for event in spec.events
        ]
        content = calendar_text(spec.calendar_type, events, description=spec.description or spec.name)
        try:
            check_calendar_document(content, TEXT)
        except AwsApiError as exc:  # e.g. an rrule that is not one
            raise ScenarioError(f"scenario {world.scenario.source}: change_calendars[{index}]: {exc.message}") from None
        for region in regions:
            ssm_backends[account.id][region].create_document(
                content=content,
                requires=[],
                attachments=[],
                name=spec.name,
                version_name="",
                document_type=CHANGE_CALENDAR,
                document_format=TEXT,
                target_type="",
                tags=[],
            )

"""Dates and times: now, parse, add, diff, with time zones."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...errors import InvalidArgument
from ..base import tool
from .common import check_length, dateutil_parser


def _zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z", "GMT"):
        return dt.UTC
    if name.lower() == "local":
        local = dt.datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if offset:
        delta = dt.timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        return dt.timezone(-delta if offset.group(1) == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or "
                              "'America/New_York', 'UTC', 'local', or an offset like '+02:00'",
                              details={"timezone": name}) from None


def _describe(value: dt.datetime) -> dict[str, Any]:
    iso_year, iso_week, iso_weekday = value.isocalendar()
    offset = value.utcoffset()
    result: dict[str, Any] = {
        "iso": value.isoformat(), "date": value.date().isoformat(), "time": value.time().isoformat(),
        "year": value.year, "month": value.month, "day": value.day, "hour": value.hour, "minute": value.minute,
        "second": value.second, "microsecond": value.microsecond,
        "weekday": calendar.day_name[value.weekday()], "iso_weekday": iso_weekday, "iso_week": iso_week,
        "day_of_year": value.timetuple().tm_yday,
        "timezone": None, "utc_offset": None, "timestamp": None,
    }
    if offset is not None:
        total = int(offset.total_seconds())
        sign = "-" if total < 0 else "+"
        hours, rest = divmod(abs(total), 3600)
        result["utc_offset"] = f"{sign}{hours:02d}:{rest // 60:02d}"
        result["timezone"] = getattr(value.tzinfo, "key", None) or value.tzname()
        result["timestamp"] = value.timestamp()
    return result


_EPOCH = re.compile(r"[+-]?\d{9,11}(\.\d+)?")
_RFC2822 = re.compile(r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+"
                      r"\d{1,2}:\d{2}(?::\d{2})?\s*(?:[+-]\d{4}|[A-Z]{1,5})?")


def _parse_datetime(text: str, fmt: str | None = None, assume: dt.tzinfo | None = None,
                    what: str = "text") -> dt.datetime:
    s = text.strip()
    if len(s) > 200:
        raise InvalidArgument(f"{what} is too long to be a date/time ({len(s)} characters)")
    value: dt.datetime | None = None
    if fmt is not None:
        try:
            value = dt.datetime.strptime(s, fmt)
        except ValueError as exc:
            raise InvalidArgument(f"{what} {text!r} does not match format {fmt!r}: {exc}",
                                  details={"format": fmt}) from None
    else:
        try:
            value = dt.datetime.fromisoformat(s)
        except ValueError:
            pass
        if value is None and _EPOCH.fullmatch(s):
            value = dt.datetime.fromtimestamp(float(s), tz=dt.UTC)
        if value is None and _RFC2822.fullmatch(s):
            try:
                value = parsedate_to_datetime(s)
            except (TypeError, ValueError, IndexError):
                value = None
        if value is None and dateutil_parser is not None:
            try:
                value = dateutil_parser.parse(s)
            except (ValueError, OverflowError, TypeError):
                value = None
        if value is None:
            raise InvalidArgument(
                f"cannot read {what} {text!r} as a date/time; give ISO 8601 such as '2024-05-01T13:45:00Z' or "
                "'2024-05-01', or pass `format` (strftime codes, e.g. '%d/%m/%Y %H:%M')", details={"text": text})
    if value.tzinfo is None and assume is not None:
        value = value.replace(tzinfo=assume)
    return value


@tool(category="text", security="safe", examples=[
    {"args": {"timezone": "Europe/Paris", "format": "%Y-%m-%d %H:%M"},
     "result": {"iso": "2024-05-01T15:45:00.123456+02:00", "formatted": "2024-05-01 15:45",
                "timezone": "Europe/Paris", "utc_offset": "+02:00"}},
])
def datetime_now(timezone: str = "UTC", format: str | None = None) -> dict[str, Any]:
    """The current date and time.

    Args:
        timezone: An IANA zone ('Europe/Paris'), 'UTC', 'local', or an offset ('+05:30').
        format: Also return the time formatted with strftime codes, e.g. '%A %d %B %Y'.

    Returns:
        `{iso, date, time, year, month, day, hour, minute, second, microsecond, weekday, iso_weekday,
        iso_week, day_of_year, timezone, utc_offset, timestamp}` (+ `formatted` with format).
    """
    now = dt.datetime.now(_zone(timezone))
    result = _describe(now)
    if format is not None:
        result["formatted"] = _strftime(now, format)
    return result


def _strftime(value: dt.datetime, fmt: str) -> str:
    check_length(fmt, 1000, "format")
    try:
        return value.strftime(fmt)
    except (ValueError, UnicodeError) as exc:
        raise InvalidArgument(f"invalid format {fmt!r}: {exc}", details={"format": fmt}) from None


@tool(category="text", security="safe", examples=[
    {"args": {"text": "2024-05-01T13:45:00Z"},
     "result": {"iso": "2024-05-01T13:45:00+00:00", "year": 2024, "month": 5, "day": 1, "hour": 13,
                "weekday": "Wednesday", "utc_offset": "+00:00", "timestamp": 1714571100.0}},
    {"args": {"text": "01/05/2024", "format": "%d/%m/%Y"}, "result": {"iso": "2024-05-01T00:00:00", "timezone": None}},
])
def datetime_parse(text: str, format: str | None = None, timezone: str | None = None) -> dict[str, Any]:
    """Parse a date/time and return it in ISO 8601 with its components.

    Without `format` it reads ISO 8601, Unix timestamps, RFC 2822 (e-mail dates) and common
    free-form dates such as 'May 1, 2024 3:45 PM'.

    Args:
        text: The date/time text.
        format: The exact strptime format, e.g. '%d/%m/%Y %H:%M' (day first, unambiguous).
        timezone: The zone to assume when the text has none (default: leave it without zone).

    Returns:
        `{iso, date, time, year, month, day, hour, minute, second, microsecond, weekday, iso_weekday,
        iso_week, day_of_year, timezone, utc_offset, timestamp}`; timestamp is null without a zone.
    """
    assume = _zone(timezone) if timezone is not None else None
    return _describe(_parse_datetime(text, format, assume))


def _add_months(value: dt.datetime, months: int) -> dt.datetime:
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("year out of range")
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


@tool(category="text", security="safe", examples=[
    {"args": {"datetime": "2024-01-31T10:00:00Z", "months": 1, "hours": 3},
     "result": {"iso": "2024-02-29T13:00:00+00:00"}},
])
def datetime_add(datetime: str, years: int = 0, months: int = 0, weeks: float = 0, days: float = 0,
                 hours: float = 0, minutes: float = 0, seconds: float = 0) -> dict[str, Any]:
    """Add (or, with negative amounts, subtract) time to a date/time.

    Years, months, weeks and days move the calendar date (keeping the wall-clock time; Jan 31 + 1 month
    is the last day of February); hours, minutes and seconds add elapsed time (correct across DST changes).

    Args:
        datetime: The starting date/time (ISO 8601 or another form datetime_parse reads).
        years: Years to add.
        months: Months to add.
        weeks: Weeks to add.
        days: Days to add.
        hours: Hours to add.
        minutes: Minutes to add.
        seconds: Seconds to add.

    Returns:
        The resulting date/time as `{iso, date, time, year, month, ...}` (as datetime_parse).
    """
    value = _parse_datetime(datetime, what="datetime")
    try:
        if years or months:
            value = _add_months(value, int(years) * 12 + int(months))
        value = value + dt.timedelta(weeks=weeks, days=days)
        elapsed = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if value.tzinfo is not None and elapsed:
            zone = value.tzinfo
            value = (value.astimezone(dt.UTC) + elapsed).astimezone(zone)
        else:
            value = value + elapsed
    except (OverflowError, ValueError) as exc:
        raise InvalidArgument(f"the result is outside the supported range (years 1 to 9999): {exc}") from None
    return _describe(value)


def _human(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    remaining = int(round(abs(seconds)))
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    return sign + (", ".join(parts) if parts else "0 seconds")


@tool(category="text", security="safe", examples=[
    {"args": {"a": "2024-05-01T08:00:00Z", "b": "2024-05-02T10:30:00Z"},
     "result": {"seconds": 95400.0, "minutes": 1590.0, "hours": 26.5, "days": 1.104167, "weeks": 0.157738,
                "human": "1 day, 2 hours, 30 minutes"}},
])
def datetime_diff(a: str, b: str) -> dict[str, Any]:
    """The time from `a` to `b` (positive when `b` is later).

    A date/time without a zone is taken as UTC when the other one has a zone.

    Args:
        a: The earlier date/time (ISO 8601 or another form datetime_parse reads).
        b: The later date/time.

    Returns:
        `{seconds, minutes, hours, days, weeks, human}`, e.g. human = "1 day, 2 hours, 30 minutes".
    """
    first = _parse_datetime(a, what="a")
    second = _parse_datetime(b, what="b")
    if (first.tzinfo is None) != (second.tzinfo is None):
        first = first if first.tzinfo else first.replace(tzinfo=dt.UTC)
        second = second if second.tzinfo else second.replace(tzinfo=dt.UTC)
    total = (second - first).total_seconds()
    return {
        "seconds": total, "minutes": round(total / 60, 6), "hours": round(total / 3600, 6),
        "days": round(total / 86400, 6), "weeks": round(total / 604800, 6), "human": _human(total),
    }

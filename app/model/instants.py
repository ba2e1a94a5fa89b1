"""FHIR instants and partial dates as UTC datetimes and ranges.

FHIR allows any instant from 0001-01-01T00:00:00 to 9999-12-31T23:59:59.999... in its
own timezone, so in UTC some fall in year 0 or year 10000, which Python's datetime
cannot hold. Ranges are clamped to [EARLIEST, LATEST], the datetimes Python holds
(PostgreSQL and SQLite hold them too), and are never empty:
`0001-01-01T00:00:00+14:00` covers [EARLIEST, EARLIEST + 1 s), as if it were the
first second of year 1, and `9999-12-31T23:59:59-12:00` [LATEST - 1 µs, LATEST).
"""
import re
from datetime import date, datetime, timedelta, timezone

from app.errors import BadRequest

PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
TICK = timedelta(microseconds=1)


def utc_now() -> datetime:
    """Now, to the millisecond: the precision of meta.lastUpdated, so the database and the body agree."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def format_instant(moment: datetime) -> str:
    return as_utc(moment).isoformat(timespec="milliseconds")


def date_range(text: str) -> tuple[datetime, datetime]:
    """The [low, high) UTC range a FHIR date or dateTime covers at its precision ('2015' is the year)."""
    partial = PARTIAL_DATE.match(text)
    if partial:
        return partial_date_range(*partial.groups())
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{text}' is not a FHIR date or dateTime (e.g. 2024, 2024-05, 2024-05-17 or 2024-05-17T09:30:00Z).") from None
    if moment.tzinfo is None:
        raise BadRequest(f"'{text}' has a time but no timezone; add Z or an offset such as +02:00.")
    low = min(clamped_utc(moment), LATEST - TICK)
    return low, shifted(low, time_precision(text))


def clamped_utc(moment: datetime) -> datetime:
    """`moment` in UTC, or EARLIEST or LATEST when that falls in year 0 or year 10000."""
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        return EARLIEST if moment.utcoffset() > timedelta(0) else LATEST


def shifted(moment: datetime, span: timedelta) -> datetime:
    """`moment + span`, or EARLIEST or LATEST when that lies beyond them."""
    try:
        return moment + span
    except OverflowError:
        return LATEST if span > timedelta(0) else EARLIEST


def time_precision(text: str) -> timedelta:
    """The span a time stands for: 10:30 is a minute, 10:30:15 a second, 10:30:15.25 a hundredth."""
    if not re.search(r"T\d\d:\d\d:\d\d", text):
        return timedelta(minutes=1)
    fraction = re.search(r"\.(\d+)", text)
    if not fraction:
        return timedelta(seconds=1)
    return timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction.group(1)), 6))))


def partial_date_range(year: str, month: str | None, day: str | None) -> tuple[datetime, datetime]:
    try:
        low = date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        raise BadRequest(f"'{year}-{month}-{day}' is not a calendar date.") from None
    return midnight_utc(low), next_period_start(low, bool(month), bool(day))


def next_period_start(low: date, has_month: bool, has_day: bool) -> datetime:
    """The midnight after the day, month or year starting at `low`; LATEST after 9999-12-31."""
    try:
        if has_day:
            return midnight_utc(low + timedelta(days=1))
        if has_month:
            return midnight_utc(date(low.year + low.month // 12, low.month % 12 + 1, 1))
        return midnight_utc(date(low.year + 1, 1, 1))
    except (ValueError, OverflowError):
        return LATEST


def midnight_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)

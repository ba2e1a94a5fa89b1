"""FHIR instants and partial dates as UTC datetimes and ranges."""
import re
from datetime import date, datetime, timedelta, timezone

from app.errors import BadRequest

PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


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
    return as_utc(moment), as_utc(moment) + time_precision(text)


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
    if day:
        high = low + timedelta(days=1)
    elif month:
        high = date(low.year + low.month // 12, low.month % 12 + 1, 1)
    else:
        high = date(low.year + 1, 1, 1)
    return midnight_utc(low), midnight_utc(high)


def midnight_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)

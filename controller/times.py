"""Time values as the API stores them: aware UTC datetimes, RFC 3339 text with a Z, whole seconds.

Two policies for a datetime without a time zone: `ensure_utc`, `to_second`, `rfc3339` and
`parse_rfc3339` refuse it with a `TimeError` naming the field (billing, creationTimestamp);
`utc`, `whole_seconds` and `parse_time` take it to be UTC already (stored statuses, and Kopf's
peering objects, whose lastseen Kopf reads as UTC when it has no zone).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EXAMPLE = "2026-12-01T09:30:00Z"
# The latest instant the code computes with: billing steps periods of up to 36 years
# (recurringChargePeriodLength) and shifts by a zone's offset, which must stay inside year 9999.
LATEST = datetime(9900, 1, 1, tzinfo=UTC)


class TimeError(ValueError):
    """A time value that cannot be used (unreadable, or without a time zone); the message names the field."""


def ensure_utc(value: datetime, field: str = "time") -> datetime:
    """`value` converted to UTC; a naive datetime is a TimeError naming `field`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimeError(f"{field}: {value.isoformat()} has no time zone; expected an aware datetime (Z or +hh:mm)")
    return value.astimezone(UTC)


def to_second(value: datetime, field: str = "time") -> datetime:
    """`value` in UTC truncated to the whole second (the precision of Kubernetes timestamps)."""
    return ensure_utc(value, field).replace(microsecond=0)


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def beyond_computable(moment: datetime) -> str | None:
    """Why `moment` lies beyond what the controller can compute with (see LATEST); None when it does not."""
    try:
        instant = utc(moment)
    except OverflowError:  # e.g. 9999-12-31T23:30:00-01:00 is in the year 10000 in UTC
        return f"{moment.isoformat()} is past the year 9999 in UTC; expected a time before {rfc3339(LATEST)}"
    if instant >= LATEST:
        return f"{rfc3339(instant)} is too far ahead to bill against; expected a time before {rfc3339(LATEST)}"
    return None


def whole_seconds(moment: datetime) -> datetime:
    """`moment` in UTC without its fraction of a second: the precision statuses store."""
    return utc(moment).replace(microsecond=0)


def rfc3339(moment: datetime, field: str = "time") -> str:
    """`moment` as Kubernetes writes a timestamp: RFC 3339 in UTC with a Z, to the whole second
    (a fraction of a second is dropped, as metav1.Time does). A naive datetime is a TimeError naming `field`."""
    return to_second(moment, field).isoformat().removesuffix("+00:00") + "Z"


def _from_text(text: str) -> datetime:
    """The datetime `text` spells (aware or naive); ValueError if it spells none. RFC 3339's Z
    (either case) is read as +00:00."""
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def parse_rfc3339(value: Any, field: str) -> datetime:
    """The instant an RFC 3339 timestamp names, as an aware UTC datetime (its fraction of a second
    kept); a TimeError naming `field` when `value` is not such a string or has no time zone."""
    if not isinstance(value, str) or not value:
        raise TimeError(f"{field}: expected an RFC 3339 timestamp such as {EXAMPLE}, got {value!r}")
    try:
        moment = _from_text(value)
    except ValueError:
        raise TimeError(f"{field}: {value!r} is not an RFC 3339 timestamp such as {EXAMPLE}") from None
    return ensure_utc(moment, field)


def parse_time(value: Any) -> datetime | None:
    """A status or metadata timestamp (RFC 3339 string or datetime) in UTC; None if absent or
    unreadable. Lenient: a naive one is taken to be UTC."""
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(_from_text(value))
    except ValueError:
        return None

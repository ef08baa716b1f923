"""Time helpers shared by the commerce modules: everything is compared in UTC, stored to the second."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_time(value: Any) -> datetime | None:
    """A status or metadata timestamp (RFC 3339 string or datetime) in UTC; None if absent or unreadable."""
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00")))
    except ValueError:
        return None


def whole_seconds(moment: datetime) -> datetime:
    """`moment` in UTC without its fraction of a second: the precision statuses store."""
    return utc(moment).replace(microsecond=0)

"""Injectable time: billing never calls datetime.now() directly.

Every function that needs "now" takes a `Clock` (or an explicit instant), so tests
drive time with `FakeClock` and the controller passes `WallClock()`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class ClockError(ValueError):
    """A time value that billing cannot use (naive, or moved backwards)."""


class Clock(Protocol):
    """Source of the current instant."""

    def now(self) -> datetime:
        """The current instant as an aware UTC datetime."""
        ...


def ensure_utc(value: datetime, field: str = "time") -> datetime:
    """`value` converted to UTC; a naive datetime is an error naming `field`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ClockError(f"{field}: {value.isoformat()} has no time zone; billing needs aware datetimes")
    return value.astimezone(UTC)


def to_second(value: datetime, field: str = "time") -> datetime:
    """`value` in UTC truncated to the whole second (the precision of Kubernetes timestamps)."""
    return ensure_utc(value, field).replace(microsecond=0)


class WallClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A settable clock for tests: time moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start, "start")

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        """Jump to `instant` (backwards too: tests of clock skew need it)."""
        self._now = ensure_utc(instant, "instant")

    def advance(self, delta: timedelta | float = 0.0, **kwargs: float) -> datetime:
        """Move forward by `delta` (a timedelta or seconds) or by timedelta keyword arguments."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        step += timedelta(**kwargs)
        if step < timedelta(0):
            raise ClockError("advance: a negative step; use set() to move backwards")
        self._now += step
        return self._now

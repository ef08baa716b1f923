"""Injectable time: billing never calls datetime.now() directly.

Every function that needs "now" takes a `Clock` (or an explicit instant), so unit tests
drive time with `FakeClock`. The running controller has one clock, an `OffsetClock` built
from its settings (controller/runtime.py): the wall clock itself unless an integration test
that must cross a month end without waiting sets an offset, and never going backwards.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ..times import TimeError, ensure_utc

# A time value that billing cannot use (naive, or a clock moved backwards): the one TimeError of
# controller.times, so a naive instant is refused with the same error wherever it is checked.
ClockError = TimeError


class Clock(Protocol):
    """Source of the current instant."""

    def now(self) -> datetime:
        """The current instant as an aware UTC datetime."""
        ...


class WallClock:
    """The wall clock as it is, backwards steps included. The controller does not run on it
    (it runs on an OffsetClock, which holds still when the wall clock steps back)."""

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


def server_time_on(clock: Clock, instant: datetime) -> datetime:
    """An instant the API server recorded (a managedFields `time`, read off the wall clock) on `clock`:
    moved by the clock's distance from the wall clock now. Exact for an OffsetClock whose offset did not
    change since that instant (in production the offset is 0 and this is `instant`)."""
    return ensure_utc(instant, "instant") + (clock.now() - datetime.now(UTC))


class OffsetClock:
    """The wall clock moved forward by an offset: the controller's clock, whose offset is 0 in
    production (a non-zero offset is a test lever).

    The offset is `offset_seconds` plus, when `offset_file` is given, the number of seconds
    written in that file (re-read when the file changes, at most every `poll` seconds), so an
    integration test can move a running controller's time forward, e.g. past a month end,
    without waiting. The controller builds it from its settings clock_offset_seconds and
    clock_offset_file (TELCO_CLOCK_OFFSET_SECONDS, TELCO_CLOCK_OFFSET_FILE). Time never goes
    backwards: a smaller offset, or the wall clock stepping back, holds the clock at the last
    instant it returned until the wall clock catches up.
    """

    def __init__(self, offset_seconds: float = 0.0, offset_file: str | None = None, poll: float = 0.1) -> None:
        self._offset = float(offset_seconds)
        self._file = offset_file
        self._poll = poll
        self._file_offset = 0.0
        self._stamp: tuple[float, int] | None = None
        self._checked = float("-inf")
        self._last: datetime | None = None

    @property
    def offset(self) -> float:
        """The current offset in seconds (fixed part plus the file's)."""
        self._refresh()
        return self._offset + self._file_offset

    def _refresh(self) -> None:
        if self._file is None:
            return
        tick = time.monotonic()
        if tick - self._checked < self._poll:
            return
        self._checked = tick
        try:
            info = os.stat(self._file)
        except OSError:
            return  # no file (yet): the last offset read stays
        stamp = (info.st_mtime, info.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            with open(self._file, encoding="utf-8") as handle:
                text = handle.read().strip()
            self._file_offset = float(text or "0")
        except (OSError, ValueError):
            self._stamp = None  # half-written: read it again next time

    def now(self) -> datetime:
        moment = datetime.now(UTC) + timedelta(seconds=self.offset)
        if self._last is not None and moment < self._last:
            return self._last
        self._last = moment
        return moment

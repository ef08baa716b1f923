"""Billing periods anchored at calendar boundaries in the billing account's time zone.

A period of a recurring price (day, week, month or year, times a length) starts at local
midnight of a calendar boundary in the account's IANA time zone, so periods are exact
instants in UTC that follow daylight saving time: March 2026 in Europe/Paris is 743 hours
long, October 745. Multi-unit periods are anchored at fixed calendar epochs so every
subscription of an account shares them:

- day * n: days counted from 1970-01-01, in blocks of n;
- week * n: ISO weeks (Monday 00:00) counted from Monday 1970-01-05, in blocks of n;
- month * n: months counted from January of year 0, in blocks of n (n=3 gives calendar
  quarters, n=6 half years);
- year * n: years in blocks of n starting at a multiple of n.

A local midnight that does not exist (a DST gap at midnight) is resolved by zoneinfo's
fold=0 rule, i.e. to the first instant of that local day; an ambiguous one to its first
occurrence.
"""

from __future__ import annotations

import functools
import importlib.resources
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..times import ensure_utc, rfc3339

PeriodType = Literal["day", "week", "month", "year"]
PERIOD_TYPES: tuple[str, ...] = ("day", "week", "month", "year")
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH_MONDAY = date(1970, 1, 5).toordinal()


class PeriodError(ValueError):
    """Invalid period definition; the message names the field."""


@functools.cache
def _zone_names() -> frozenset[str]:
    """The zones of the IANA database as the tzdata package lists them (a dependency, so the list is the
    same on every host); the host's zone directory also holds files that are no zone (localtime)."""
    try:
        return frozenset(importlib.resources.files("tzdata").joinpath("zones").read_text().split())
    except (ModuleNotFoundError, OSError):  # no tzdata package: what the host's zone directories hold
        return frozenset(zoneinfo.available_timezones())


def is_known_zone(name: str) -> bool:
    """Whether the zone database (tzdata) lists `name` (EST5EDT: yes; Etc/GMT+13, posixrules, localtime: no)."""
    return name in _zone_names()


def load_zone(name: str, field: str = "billingAccount.timeZone") -> ZoneInfo:
    """The IANA zone `name` as the zone database lists it, or PeriodError naming `field`.

    A file under the zone directory that is not a listed zone (posixrules, localtime) is refused too.
    """
    if not is_known_zone(name):
        raise PeriodError(f"{field}: {name!r} is not a known IANA time zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PeriodError(f"{field}: {name!r} is not a known IANA time zone") from exc


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A half-open span [start, end) of UTC instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, "period.start"))
        object.__setattr__(self, "end", ensure_utc(self.end, "period.end"))
        if self.end <= self.start:
            raise PeriodError(f"period.end: {self.end.isoformat()} is not after {self.start.isoformat()}")

    @property
    def seconds(self) -> int:
        """Elapsed seconds (real time: a DST month is not 24 h * days)."""
        return seconds_between(self.start, self.end)

    def contains(self, instant: datetime) -> bool:
        return self.start <= ensure_utc(instant) < self.end

    def overlaps(self, other: Period) -> bool:
        return self.start < other.end and other.start < self.end

    def intersect(self, other: Period) -> Period | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Period(start, end) if start < end else None

    @property
    def key(self) -> str:
        """Stable text key, e.g. 20261031T230000Z-20261130T230000Z."""
        return f"{stamp(self.start)}-{stamp(self.end)}"

    def local_dates(self, zone: ZoneInfo) -> tuple[date, date]:
        """Local calendar dates of start and (exclusive) end in `zone`."""
        return self.start.astimezone(zone).date(), self.end.astimezone(zone).date()

    def to_api(self) -> dict[str, str]:
        return {"startDateTime": rfc3339(self.start), "endDateTime": rfc3339(self.end)}


def stamp(instant: datetime) -> str:
    """Compact UTC stamp used in keys: 20261031T230000Z (whole seconds)."""
    return ensure_utc(instant).strftime("%Y%m%dT%H%M%SZ")


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole elapsed seconds from start to end (both truncated to the second)."""
    delta = ensure_utc(end).replace(microsecond=0) - ensure_utc(start).replace(microsecond=0)
    return delta.days * 86400 + delta.seconds


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


@functools.lru_cache(maxsize=256)
def _cycle(unit: str, length: int, time_zone: str) -> Cycle:
    """Cycle.of, once per (unit, length, zone): immutable, and every pass asks for the month of its zone a few
    times (a refused unit, length or zone raises, and is not kept)."""
    return Cycle(unit, length, load_zone(time_zone))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def _period_of_date(cycle: Cycle, local: date) -> Period:
    """The period of `cycle` whose start date is that of local date `local`; every pass of every subscription
    asks for the current month a few times (both are immutable, so one answer per date is shared)."""
    start = cycle._start_date(local)
    return Period(_midnight(start, cycle.zone), _midnight(cycle._next_date(start), cycle.zone))


@dataclass(frozen=True, slots=True)
class Cycle:
    """A recurring period definition in a time zone: `length` * `unit`, calendar anchored."""

    unit: PeriodType
    length: int
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.unit not in PERIOD_TYPES:
            raise PeriodError(f"recurringChargePeriodType: {self.unit!r} is not one of {', '.join(PERIOD_TYPES)}")
        if not isinstance(self.length, int) or not 1 <= self.length <= 36:
            raise PeriodError(f"recurringChargePeriodLength: {self.length!r} is not an integer from 1 to 36")

    @classmethod
    def of(cls, unit: str, length: int = 1, time_zone: str = "UTC") -> Cycle:
        return _cycle(unit, length, time_zone)

    @classmethod
    def for_price(cls, price: Any, time_zone: str, field: str = "productOfferingPrice") -> Cycle:
        """The cycle of a recurring ProductOfferingPrice in the account's zone."""
        unit = getattr(price, "recurringChargePeriodType", None)
        if unit is None:
            raise PeriodError(f"{field}.recurringChargePeriodType: a recurring price needs a period type")
        return cls(unit, int(getattr(price, "recurringChargePeriodLength", 1) or 1), load_zone(time_zone))

    # -- boundaries ------------------------------------------------------------------------
    def _start_date(self, local: date) -> date:
        """Local date on which the period containing local date `local` starts."""
        n = self.length
        if self.unit == "day":
            offset = local.toordinal() - _EPOCH_DAY
            return date.fromordinal(_EPOCH_DAY + offset // n * n)
        if self.unit == "week":
            weeks = (local.toordinal() - _EPOCH_MONDAY) // 7
            return date.fromordinal(_EPOCH_MONDAY + weeks // n * n * 7)
        if self.unit == "month":
            months = local.year * 12 + local.month - 1
            first = months // n * n
            return date(first // 12, first % 12 + 1, 1)
        return date(max(1, local.year // n * n), 1, 1)

    def _next_date(self, start: date) -> date:
        n = self.length
        if self.unit == "day":
            return start + timedelta(days=n)
        if self.unit == "week":
            return start + timedelta(days=7 * n)
        if self.unit == "month":
            months = start.year * 12 + start.month - 1 + n
            return date(months // 12, months % 12 + 1, 1)
        return date(start.year + n, 1, 1)

    def period_containing(self, instant: datetime) -> Period:
        """The period that contains `instant`."""
        local = ensure_utc(instant, "instant").astimezone(self.zone).date()
        period = _period_of_date(self, local)
        # A local date can start before its own midnight only in pathological zones; step once.
        if instant < period.start:
            period = _period_of_date(self, local - timedelta(days=1))
        elif instant >= period.end:
            period = self.next(period)
        return period

    def next(self, period: Period) -> Period:
        """The period right after `period` (which must be one of this cycle's)."""
        start = period.end.astimezone(self.zone).date()
        return Period(period.end, _midnight(self._next_date(start), self.zone))

    def previous(self, period: Period) -> Period:
        """The period right before `period`."""
        return self.period_containing(period.start - timedelta(seconds=1))

    def next_bill_date(self, instant: datetime) -> datetime:
        """End of the period containing `instant`: when its charge closes and can be billed."""
        return self.period_containing(instant).end

    def periods(self, start: datetime, end: datetime) -> Iterator[Period]:
        """Every period that overlaps [start, end), in order."""
        start, end = ensure_utc(start, "start"), ensure_utc(end, "end")
        if end <= start:
            return
        period = self.period_containing(start)
        while period.start < end:
            yield period
            period = self.next(period)

"""Rating: turn delivered time, measured traffic and availability into amounts.

Proration (recurring and fixed discounts) is by actual elapsed seconds within the charge
period, because Kubernetes timestamps are whole seconds and a period's length in seconds
already follows DST (a day-based proration would charge 23- and 25-hour days alike and
ignore outages shorter than a day). Rounding is *cumulative*: the part of a period
[s, e) (as second offsets from the period start, T the period length, P the price) costs

    round(P*e/T) - round(P*s/T)           (ROUND_HALF_UP to the minor unit)

so the parts of any split of a period telescope to exactly round(P) = P, and the charge
is monotonic in billable time. All ratios are exact rationals; each amount is rounded once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from ..api.subscription import UsageCounter, UsageMeter, UsageWindow
from ..times import ensure_utc, to_second
from .ledger import Span, clip, intersect
from .money import Money, MoneyError, parse_decimal, round_half_up, to_minor
from .periods import Cycle, Period, seconds_between

BYTES_PER_UNIT: dict[str, int] = {"MB": 10**6, "GB": 10**9, "TB": 10**12}
STEP = Fraction(1, 10)  # SLA credit is per started 0.1 percentage point below target
MAX_WINDOWS = 24  # uninvoiced bill periods
# Window parts: a bill period is cut where the usage price changes (an offering version starts), at most
# one cut per recorded version (changes.MAX_PLANS), so the parts of all uninvoiced periods stay bounded.
MAX_WINDOW_PARTS = MAX_WINDOWS + 16
MAX_COUNTERS = 32


class RatingError(ValueError):
    """A price or measurement that cannot be rated; the message names the field."""


def percent(value: object, field: str) -> Fraction:
    """A percent string ("99.9") as an exact rational; 0..100."""
    number = Fraction(parse_decimal(value, field))
    if number > 100:
        raise MoneyError(field, f"{value!r} is more than 100 percent")
    return number


# -- recurring --------------------------------------------------------------------------


def offsets(period: Period, spans: Iterable[Span]) -> list[tuple[int, int]]:
    """Spans inside `period` as (start, end) second offsets from the period start."""
    return [
        (seconds_between(period.start, s), seconds_between(period.start, e))
        for s, e in clip(spans, period.start, period.end)
    ]


def prorate(price: Money, parts: Sequence[tuple[int, int]], period_seconds: int) -> Money:
    """Cumulatively rounded charge for the given parts [s, e) of a period of `period_seconds`."""
    if period_seconds <= 0:
        raise RatingError(f"period: length {period_seconds}s is not positive")
    whole = Fraction(price.amount)
    units = 0
    for start, end in parts:
        if not 0 <= start <= end <= period_seconds:
            raise RatingError(f"proration: part [{start}, {end}) is outside the period of {period_seconds}s")
        units += to_minor(whole * end / period_seconds, price.currency)
        units -= to_minor(whole * start / period_seconds, price.currency)
    return Money.from_minor(units, price.currency)


def recurring_charge(price: Money, period: Period, billable: Iterable[Span]) -> Money:
    """The charge of one recurring price for the billable spans within its charge `period`."""
    return prorate(price, offsets(period, billable), period.seconds)


def one_time_charge(price: Money) -> Money:
    """A one-time price, rounded to the minor unit (charged once, at activation)."""
    return price.rounded()


# -- discounts --------------------------------------------------------------------------


def valid_spans(valid_for: Any, period: Period) -> list[Span]:
    """The part of `period` inside a TimePeriod validFor (unset bounds are open)."""
    if valid_for is None:
        return [(period.start, period.end)]
    start = getattr(valid_for, "startDateTime", None)
    end = getattr(valid_for, "endDateTime", None)
    start = max(period.start, ensure_utc(start, "validFor.startDateTime")) if start else period.start
    end = min(period.end, ensure_utc(end, "validFor.endDateTime")) if end else period.end
    return [(to_second(start), to_second(end))] if start < end else []


def discount_amount(
    discount: Any, recurring_price: Money, period: Period, billable: Sequence[Span], field: str
) -> Money:
    """What a discount price takes off one recurring charge, as a positive amount.

    Prorated over (billable ∩ discount.validFor) within the charge period: a percentage takes
    that percent of the recurring charge for that time; a fixed price is prorated like a
    recurring price. Never more than the recurring charge for that time.
    """
    covered = intersect(list(clip(billable, period.start, period.end)), valid_spans(discount.validFor, period))
    base = recurring_charge(recurring_price, period, covered)
    if discount.percentage is not None:
        amount = Money.from_minor(
            round_half_up(Fraction(base.minor) * percent(discount.percentage, f"{field}.percentage") / 100),
            base.currency,
        )
    else:
        fixed = Money.from_api(discount.price, f"{field}.price")
        if fixed.currency != recurring_price.currency:
            raise MoneyError(f"{field}.price.unit", f"{fixed.currency} differs from the recurring price's currency")
        amount = recurring_charge(fixed, period, covered)
    return min(amount, base)


# -- usage ------------------------------------------------------------------------------


def counter_delta(previous: int | None, current: int) -> int:
    """Octets between two samples of a monotonic counter; never negative.

    The first sample is the baseline (0). A value below the previous one is a reset (device
    restart, counter wrap): the traffic since the reset is the new value itself; what passed
    between the last sample and the reset is not seen and not charged.
    """
    if current < 0:
        raise RatingError(f"counter: {current} is negative")
    if previous is None:
        return 0
    return current - previous if current >= previous else current


def usage_quantity(octets: int, unit_of_measure: Any) -> Fraction:
    """Octets in units of the price's unitOfMeasure (decimal SI: 1 GB = 10^9 octets)."""
    units = unit_of_measure.units
    if units not in BYTES_PER_UNIT:
        raise RatingError(f"unitOfMeasure.units: {units!r} is not one of MB, GB, TB")
    return Fraction(octets, BYTES_PER_UNIT[units] * int(unit_of_measure.amount))


def usage_charge(price: Money, octets: int, unit_of_measure: Any) -> Money:
    """price * (octets / unitOfMeasure), pro rata (not per started unit), rounded once."""
    return Money.from_minor(
        to_minor(Fraction(price.amount) * usage_quantity(octets, unit_of_measure), price.currency), price.currency
    )


@dataclass(frozen=True, slots=True)
class Sample:
    octets: int
    time: datetime


@dataclass(frozen=True, slots=True)
class Meter:
    """Usage measured from octet counters, accumulated per billing period (pure, immutable)."""

    counters: dict[str, Sample] = field(default_factory=dict)
    windows: dict[Period, int] = field(default_factory=dict)

    @classmethod
    def from_status(cls, status: UsageMeter | dict[str, Any] | None) -> Meter:
        if status is None:
            return cls()
        model = status if isinstance(status, UsageMeter) else UsageMeter.model_validate(status)
        return cls(
            counters={c.key: Sample(int(c.octets), to_second(c.time)) for c in model.counters},
            windows={Period(to_second(w.start), to_second(w.end)): int(w.octets) for w in model.windows},
        )

    def to_status(self) -> UsageMeter:
        return UsageMeter(
            counters=[UsageCounter(key=k, octets=str(s.octets), time=s.time) for k, s in sorted(self.counters.items())],
            windows=[UsageWindow(start=p.start, end=p.end, octets=str(n)) for p, n in sorted(self.windows.items())],
        )

    def observe(
        self,
        key: str,
        octets: int,
        at: datetime,
        cycle: Cycle,
        billed_through: datetime | None = None,
        cuts: Sequence[datetime] = (),
    ) -> Meter:
        """Add a counter sample. The delta since the previous sample is split over the billing
        periods between the two samples in proportion to time (floor-telescoped, so the parts sum
        exactly to the delta). Parts that would land in an already invoiced period (before
        `billed_through`) go to the first open period instead. Older or equal samples are ignored.

        `cuts` are the instants where the usage price changes (an offering version starts): the
        windows are cut there too, so each version's part of a period holds the octets measured in it.
        A sample exactly at a cut counts before it (the counter says what passed by then); a delta
        across a cut is split in proportion to time like one across a period end. A window recorded
        before its cut was known (a revision seen late) is split in proportion to time (`split_at`)."""
        at = to_second(at, "sample.time")
        if octets < 0:
            raise RatingError(f"counter {key}: {octets} is negative")
        previous = self.counters.get(key)
        if previous is not None and at <= previous.time:
            return self
        if previous is None and len(self.counters) >= MAX_COUNTERS:
            raise RatingError(f"usage.counters: more than {MAX_COUNTERS} counters")
        counters = {**self.counters, key: Sample(octets, at)}
        delta = counter_delta(previous.octets if previous else None, octets)
        cuts = sorted({to_second(c) for c in cuts})
        windows = self._normalized(cycle, cuts)
        if previous is not None and delta:
            t0, total = previous.time, seconds_between(previous.time, at)
            done = 0
            for piece in _pieces(cycle, t0, at, cuts):
                cut = min(piece.end, at)
                cumulative = delta * seconds_between(t0, cut) // total
                part, done = cumulative - done, cumulative
                target = piece
                if billed_through is not None and piece.end <= billed_through:
                    open_period = cycle.period_containing(billed_through)
                    target = next(_pieces(cycle, open_period.start, open_period.start + _SECOND, cuts))
                if part:
                    windows[target] = windows.get(target, 0) + part
        if len({cycle.period_containing(p.start) for p in windows}) > MAX_WINDOWS:
            raise RatingError(f"usage.windows: more than {MAX_WINDOWS} uninvoiced periods; invoice them first")
        if len(windows) > MAX_WINDOW_PARTS:
            raise RatingError(f"usage.windows: more than {MAX_WINDOW_PARTS} parts of uninvoiced periods")
        return replace(self, counters=counters, windows=windows)

    @property
    def last_sample(self) -> datetime | None:
        """When the latest counter sample was taken."""
        return max((s.time for s in self.counters.values()), default=None)

    def split_at(self, cuts: Iterable[datetime]) -> Meter:
        """The windows cut at `cuts`. A window that holds a cut (its octets were recorded before the cut
        was known) is split in proportion to time over the part of it that was measured, from its start
        to the latest sample (floor-telescoped: the parts sum exactly to the window). An approximation:
        the samples around the cut are no longer known."""
        instants = sorted({to_second(c) for c in cuts})
        last = self.last_sample
        out: dict[Period, int] = {}
        for window, octets in self.windows.items():
            inside = [c for c in instants if window.start < c < window.end]
            if not inside:
                out[window] = out.get(window, 0) + octets
                continue
            measured_end = min(window.end, last) if last is not None else window.end
            span = seconds_between(window.start, measured_end)
            bounds = [window.start, *inside, window.end]
            done = 0
            for start, end in itertools.pairwise(bounds):
                if span <= 0:
                    cumulative = octets  # nothing measured inside: all of it in the first part
                else:
                    cumulative = octets * max(0, min(span, seconds_between(window.start, end))) // span
                part, done = cumulative - done, cumulative
                if part:
                    piece = Period(start, end)
                    out[piece] = out.get(piece, 0) + part
        return replace(self, windows=out)

    def _normalized(self, cycle: Cycle, cuts: Sequence[datetime]) -> dict[Period, int]:
        """The windows as parts of their bill periods between `cuts`: split where a window holds a cut,
        merged where two parts of one period are no longer separated by one (a version replaced)."""
        split = self.split_at(cuts).windows
        out: dict[Period, int] = {}
        for window, octets in sorted(split.items()):
            for piece in _pieces(cycle, window.start, window.end, cuts):
                if piece.start <= window.start < piece.end:
                    out[piece] = out.get(piece, 0) + octets
                    break
            else:  # not a part of a period of this cycle (never written so): kept as it is, never dropped
                out[window] = out.get(window, 0) + octets
        return out

    def octets_in(self, period: Period) -> int:
        """Octets measured in the periods that lie inside `period`."""
        return sum(n for p, n in self.windows.items() if period.start <= p.start and p.end <= period.end)

    def compact(self, through: datetime) -> Meter:
        """Drop windows that ended by `through` (invoiced)."""
        through = ensure_utc(through)
        return replace(self, windows={p: n for p, n in self.windows.items() if p.end > through})


_SECOND = timedelta(seconds=1)


def _pieces(cycle: Cycle, start: datetime, end: datetime, cuts: Sequence[datetime]) -> Iterator[Period]:
    """The bill periods overlapping [start, end], each cut at the `cuts` inside it, that overlap it."""
    for period in cycle.periods(start, end):
        inside = [c for c in cuts if period.start < c < period.end]
        for a, b in itertools.pairwise([period.start, *inside, period.end]):
            if b > start and a < end:
                yield Period(a, b)


# -- SLA --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaCredit:
    """The SLA outcome of one (subscription, period)."""

    availability: Fraction  # percent of active time the service was Ready
    steps: int  # started 0.1 percentage points below target
    percent: Fraction  # credit in percent of the base, capped
    amount: Money  # positive; the bill line is its negative


def availability(active_seconds: int, unavailable_seconds: int) -> Fraction:
    """Percent of active time the service was Ready; 100 when it was never active."""
    if active_seconds <= 0:
        return Fraction(100)
    return Fraction(active_seconds - unavailable_seconds, active_seconds) * 100


def sla_credit(sla: Any, active_seconds: int, unavailable_seconds: int, base: Money, field: str) -> SlaCredit:
    """credit% = min(cap, creditPercent * started 0.1 pp below target); amount = credit% of `base`.

    `base` is the period's net recurring charge; the amount never exceeds cap% of it (nor the
    base itself)."""
    target = percent(sla.availabilityTarget, f"{field}.availabilityTarget")
    per_step = percent(sla.creditPercent, f"{field}.creditPercent")
    cap = percent(sla.creditCapPercent, f"{field}.creditCapPercent")
    measured = availability(active_seconds, unavailable_seconds)
    shortfall = target - measured
    steps = math.ceil(shortfall / STEP) if shortfall > 0 else 0
    pct = min(cap, per_step * steps)
    if base.amount <= 0 or pct == 0:
        return SlaCredit(measured, steps, pct, Money.zero(base.currency))
    units = round_half_up(Fraction(base.minor) * pct / 100)
    ceiling = Fraction(base.minor) * cap / 100
    units = min(units, math.floor(ceiling), base.minor)
    return SlaCredit(measured, steps, pct, Money.from_minor(units, base.currency))

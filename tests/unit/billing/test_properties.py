"""Property-based tests of the billing invariants (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.api.productoffering import ServiceLevelAgreement
from controller.billing import events as ev
from controller.billing.invoice import BillingInput, TaxRule, compute_invoice, sum_lines
from controller.billing.ledger import Ledger, total_seconds
from controller.billing.money import MINOR_UNITS, Money
from controller.billing.periods import Cycle, Period
from controller.billing.rating import Meter, prorate, recurring_charge, sla_credit
from tests.unit.billing.conftest import billing_input, discount, monthly, offering, one_time, usage, utc

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TZS = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"]
currencies = st.sampled_from(sorted(MINOR_UNITS))
prices = st.decimals(min_value=0, max_value=Decimal("99999.999999"), places=6, allow_nan=False, allow_infinity=False)


def money(value: Decimal, currency: str) -> Money:
    return Money.of(format(value, "f"), currency)


@SETTINGS
@given(
    price=prices,
    currency=currencies,
    length=st.integers(1, 10**8),
    cuts=st.lists(st.integers(0, 10**8), max_size=20),
)
def test_prorated_parts_of_a_period_sum_to_the_full_price(
    price: Decimal, currency: str, length: int, cuts: list[int]
) -> None:
    full = money(price, currency)
    points = sorted({0, length, *(c % (length + 1) for c in cuts)})
    parts = [prorate(full, [(a, b)], length) for a, b in itertools.pairwise(points)]
    assert sum((p.amount for p in parts), Decimal(0)) == full.rounded().amount
    assert all(p.amount >= 0 for p in parts)


@SETTINGS
@given(
    tz=st.sampled_from(TZS),
    unit=st.sampled_from(["day", "week", "month", "year"]),
    n=st.integers(1, 4),
    day=st.integers(0, 4000),
    cuts=st.lists(st.integers(0, 10**9), max_size=6),
)
def test_real_periods_split_anywhere_sum_to_the_price(tz: str, unit: str, n: int, day: int, cuts: list[int]) -> None:
    period = Cycle.of(unit, n, tz).period_containing(utc(2020, 1, 1) + timedelta(days=day))
    instants = sorted({period.start, period.end, *(period.start + timedelta(seconds=c % period.seconds) for c in cuts)})
    price = Money.of("49.90", "EUR")
    parts = [recurring_charge(price, period, [(a, b)]) for a, b in itertools.pairwise(instants)]
    assert sum((p.amount for p in parts), Decimal(0)) == Decimal("49.90")


def outages(draw: st.DrawFn, start: datetime, span: int) -> list[tuple[int, int]]:
    points = sorted(set(draw(st.lists(st.integers(1, span - 1), max_size=12))))
    if len(points) % 2:
        points = points[:-1]
    return list(zip(points[::2], points[1::2], strict=True))


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[Ledger, Ledger, Period]:
    """(fewer, more): `more` is Ready whenever `fewer` is, plus some outages of `fewer` healed."""
    period = Period(utc(2026, 3, 1), utc(2026, 4, 1))
    span = period.seconds
    begin = draw(st.integers(0, span // 2))
    windows = outages(draw, period.start, span)
    healed = draw(st.lists(st.booleans(), min_size=len(windows), max_size=len(windows)))
    fewer = Ledger().record(period.start + timedelta(seconds=begin), subscription_active=True, service_ready=True)
    more = fewer
    for (a, b), heal in zip(windows, healed, strict=True):
        if a <= begin:
            continue
        fewer = fewer.record_ready(False, period.start + timedelta(seconds=a))
        fewer = fewer.record_ready(True, period.start + timedelta(seconds=b))
        if not heal:
            more = more.record_ready(False, period.start + timedelta(seconds=a))
            more = more.record_ready(True, period.start + timedelta(seconds=b))
    return fewer, more, period


@SETTINGS
@given(data=ledgers(), price=prices)
def test_charges_are_monotonic_in_ready_time(data: tuple[Ledger, Ledger, Period], price: Decimal) -> None:
    fewer, more, period = data
    unit = money(price, "EUR")
    now = period.end
    less_time = fewer.billable(period.start, period.end, now)
    more_time = more.billable(period.start, period.end, now)
    assert total_seconds(less_time) <= total_seconds(more_time)
    assert recurring_charge(unit, period, less_time) <= recurring_charge(unit, period, more_time) <= unit.rounded()
    # the ledger partitions active time into billable and unavailable
    for ledger in (fewer, more):
        active = ledger.active_seconds(period.start, period.end, now)
        assert (
            ledger.billable_seconds(period.start, period.end, now)
            + ledger.unavailable_seconds(period.start, period.end, now)
            == active
        )


@SETTINGS
@given(price=prices, active=st.booleans(), hours=st.integers(0, 2000))
def test_no_ready_time_no_recurring_charge(price: Decimal, active: bool, hours: int) -> None:
    period = Period(utc(2026, 3, 1), utc(2026, 4, 1))
    ledger = Ledger().record(period.start, subscription_active=active, service_ready=False)
    ledger = ledger.record(period.start + timedelta(hours=hours), subscription_active=False)
    spec = offering(monthly(format(price, "f")))
    draft = compute_invoice("acme-001", period, [billing_input(spec, ledger)], period.end)
    assert [ln for ln in draft.lines if ln.type == "recurringCharge"] == []
    assert draft.tax_excluded.is_zero()


cents = st.decimals(min_value=0, max_value=Decimal("9999.99"), places=2, allow_nan=False, allow_infinity=False)
percent = st.decimals(min_value=0, max_value=100, places=2).map(lambda d: format(d, "f"))


@SETTINGS
@given(
    target=percent,
    credit=percent,
    cap=percent,
    active=st.integers(0, 10**7),
    down=st.integers(0, 10**7),
    base=prices,
    currency=currencies,
)
def test_credits_never_exceed_the_cap(
    target: str, credit: str, cap: str, active: int, down: int, base: Decimal, currency: str
) -> None:
    down = min(down, active)
    sla = ServiceLevelAgreement(availabilityTarget=target, creditPercent=credit, creditCapPercent=cap)
    charge = money(base, currency).rounded()
    result = sla_credit(sla, active, down, charge, "sla")
    assert Decimal(0) <= result.amount.amount <= charge.amount * Decimal(cap) / 100
    assert result.amount.amount <= charge.amount
    assert result.percent <= Decimal(cap)


@st.composite
def accounts(draw: st.DrawFn) -> tuple[list[BillingInput], Period, list[TaxRule], list[dict[str, Any]]]:
    tz = draw(st.sampled_from(TZS))
    period = Cycle.of("month", 1, tz).period_containing(utc(2026, draw(st.integers(1, 12)), 15))
    subs = []
    for i in range(draw(st.integers(0, 4))):
        price = format(draw(prices), "f")
        extras = []
        if draw(st.booleans()):
            extras.append(one_time(format(draw(prices), "f")))
        if draw(st.booleans()):
            extras.append(usage(format(draw(prices), "f")))
        if draw(st.booleans()):
            extras.append(discount(percentage=draw(percent)))
        sla = None
        if draw(st.booleans()):
            sla = {
                "availabilityTarget": draw(percent),
                "creditPercent": draw(percent),
                "creditCapPercent": draw(percent),
            }
        spec = offering(monthly(price), *extras, sla=sla)
        start = period.start + timedelta(seconds=draw(st.integers(0, period.seconds - 1)))
        ledger = Ledger().record(start, subscription_active=True, service_ready=True)
        for a, b in outages(draw, period.start, period.seconds):
            if period.start + timedelta(seconds=a) > start:
                ledger = ledger.record_ready(False, period.start + timedelta(seconds=a))
                ledger = ledger.record_ready(True, period.start + timedelta(seconds=b))
        cycle = Cycle.of("month", 1, tz)
        meter = Meter().observe("k", 0, period.start, cycle)
        meter = meter.observe("k", draw(st.integers(0, 10**13)), period.end - timedelta(seconds=1), cycle)
        subs.append(billing_input(spec, ledger, name=f"s{i}", tz=tz, meter=meter))
    taxes = [TaxRule.of(f"T{i}", draw(percent)) for i in range(draw(st.integers(0, 2)))]
    payments: list[dict[str, Any]] = [
        {"id": f"p{i}", "amount": {"unit": "EUR", "value": format(draw(cents), "f")}, "date": "2027-01-01T00:00:00Z"}
        for i in range(draw(st.integers(0, 2)))
    ]
    return subs, period, taxes, payments


@SETTINGS
@given(data=accounts())
def test_invoice_totals_equal_the_sum_of_their_lines(
    data: tuple[list[BillingInput], Period, list[TaxRule], list[dict[str, Any]]],
) -> None:
    subs, period, taxes, payments = data
    draft = compute_invoice("acme-001", period, subs, period.end, taxes, payments, currency="EUR")
    assert draft.tax_excluded == sum_lines(draft.lines, "EUR")
    tax = sum((Decimal(t.taxAmount.value) for t in draft.tax_items), Decimal(0))
    assert draft.tax_included.amount == draft.tax_excluded.amount + tax
    paid = sum((Decimal(p["amount"]["value"]) for p in payments), Decimal(0))
    assert draft.amount_due.amount == draft.tax_included.amount - paid
    for line in draft.lines:
        assert line.events, "every line traces back to events"
        exponent = Decimal(line.taxExcludedAmount.value).as_tuple().exponent
        assert isinstance(exponent, int) and -exponent == 2  # rounded to cents
    # credits and discounts never turn a subscription's bill for the period negative
    for sub in subs:
        mine = [ln for ln in draft.lines if ln.subscription == sub.ref.qualified_name]
        assert sum_lines(mine, "EUR").amount >= 0


@SETTINGS
@given(uid=st.uuids(), keys=st.lists(st.text(max_size=30), min_size=2, max_size=10, unique=True))
def test_one_fact_one_id(uid: object, keys: list[str]) -> None:
    ids = [ev.event_id(str(uid), "charge.period", k) for k in keys]
    assert len(set(ids)) == len(ids)
    assert ids == [ev.event_id(str(uid), "charge.period", k) for k in keys]


@SETTINGS
@given(
    samples=st.lists(st.tuples(st.integers(1, 3 * 86400 * 31), st.integers(0, 10**12)), min_size=1, max_size=30),
    tz=st.sampled_from(TZS),
)
def test_meter_never_loses_or_invents_octets(samples: list[tuple[int, int]], tz: str) -> None:
    cycle = Cycle.of("month", 1, tz)
    t0 = utc(2026, 1, 10)
    meter = Meter().observe("k", 0, t0, cycle)
    expected, last, last_t = 0, 0, 0
    for offset, value in sorted(samples):
        if offset == last_t:
            continue
        meter = meter.observe("k", value, t0 + timedelta(seconds=offset), cycle)
        expected += value - last if value >= last else value
        last, last_t = value, offset
    assert sum(meter.windows.values()) == expected
    assert all(n >= 0 for n in meter.windows.values())


@SETTINGS
@given(
    samples=st.lists(st.tuples(st.integers(1, 3 * 86400 * 31), st.integers(0, 10**12)), min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 3 * 86400 * 31), max_size=4),
    tz=st.sampled_from(TZS),
)
def test_cutting_the_meter_at_version_changes_never_moves_octets_between_periods(
    samples: list[tuple[int, int]], cuts: list[int], tz: str
) -> None:
    """Where the usage price changes the windows are cut; each bill period still holds exactly what it holds
    uncut (the split telescopes at the same period ends), and the parts of a period sum to it."""
    cycle = Cycle.of("month", 1, tz)
    t0 = utc(2026, 1, 10)
    instants = [t0 + timedelta(seconds=c) for c in cuts]
    plain = Meter().observe("k", 0, t0, cycle)
    cut = Meter().observe("k", 0, t0, cycle, cuts=instants)
    for offset, value in sorted(samples):
        at = t0 + timedelta(seconds=offset)
        plain, cut = plain.observe("k", value, at, cycle), cut.observe("k", value, at, cycle, cuts=instants)
    for period in plain.windows:
        assert cut.octets_in(period) == plain.windows[period]
        parts = [n for p, n in cut.windows.items() if period.start <= p.start and p.end <= period.end]
        assert sum(parts) == plain.windows[period] and all(n >= 0 for n in parts)
    assert sum(cut.windows.values()) == sum(plain.windows.values())
    for window in cut.windows:  # every window is a whole part: no cut inside it
        assert not any(window.start < c < window.end for c in instants)

"""Rating: proration, one-time, usage with counter resets, discounts, SLA credit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from types import SimpleNamespace

import pytest

from controller.api.productoffering import ProductOfferingPrice, ServiceLevelAgreement, UnitOfMeasure
from controller.billing.money import Money, MoneyError
from controller.billing.periods import Cycle, Period
from controller.billing.rating import (
    Meter,
    availability,
    counter_delta,
    discount_amount,
    one_time_charge,
    prorate,
    recurring_charge,
    sla_credit,
    usage_charge,
    usage_quantity,
)
from tests.unit.billing.conftest import discount, utc

EUR = "EUR"
JAN = Period(utc(2026, 1, 1), utc(2026, 2, 1))
FEB = Period(utc(2026, 2, 1), utc(2026, 3, 1))


def eur(value: str) -> Money:
    return Money.of(value, EUR, signed=True)


def test_full_period_is_the_full_price_whatever_its_length() -> None:
    for period in (JAN, FEB, Period(utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))):  # 31, 28 days, Paris March
        assert recurring_charge(eur("49.90"), period, [(period.start, period.end)]) == eur("49.90")


def test_start_and_stop_mid_period_are_prorated_by_seconds() -> None:
    # 14 of 31 days: 49.90 * 14/31 = 22.535... -> 22.54
    assert recurring_charge(eur("49.90"), JAN, [(utc(2026, 1, 18), JAN.end)]) == eur("22.54")
    # 10 of 28 days in February
    assert recurring_charge(eur("28.00"), FEB, [(FEB.start, utc(2026, 2, 11))]) == eur("10.00")
    # one hour of a 30-day month
    assert recurring_charge(
        eur("720"), Period(utc(2026, 4, 1), utc(2026, 5, 1)), [(utc(2026, 4, 2), utc(2026, 4, 2, 1))]
    ) == eur("1.00")


def test_cumulative_rounding_puts_the_remainder_on_one_part() -> None:
    # thirds of 10.00: naive rounding gives 3.33 * 3 = 9.99
    parts = [(0, 1), (1, 2), (2, 3)]
    amounts = [prorate(eur("10.00"), [p], 3) for p in parts]
    assert amounts == [eur("3.33"), eur("3.34"), eur("3.33")]
    assert sum((a.amount for a in amounts), Decimal(0)) == Decimal("10.00")
    assert prorate(eur("10.00"), parts, 3) == eur("10.00")


def test_yen_and_dinar_proration() -> None:
    assert prorate(Money.of("1000", "JPY"), [(0, 1)], 3) == Money.of("333", "JPY")
    assert prorate(Money.of("10", "KWD"), [(0, 1)], 3) == Money.of("3.333", "KWD")


def test_one_time_charge() -> None:
    assert one_time_charge(eur("99.999")) == eur("100.00")


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [(None, 5_000, 0), (100, 250, 150), (100, 100, 0), (10_000, 40, 40), (2**64 - 10, 5, 5)],
)
def test_counter_deltas_are_never_negative(previous: int | None, current: int, delta: int) -> None:
    assert counter_delta(previous, current) == delta


def test_usage_units_are_decimal_si_and_charged_pro_rata() -> None:
    gb = UnitOfMeasure(amount=1, units="GB")
    assert usage_quantity(1_500_000_000, gb) == Fraction(3, 2)
    assert usage_quantity(10**12, UnitOfMeasure(amount=100, units="GB")) == 10
    assert usage_charge(eur("0.05"), 1_500_000_000, gb) == eur("0.08")  # 0.075 -> 0.08
    assert usage_charge(eur("2"), 3 * 10**12, UnitOfMeasure(amount=1, units="TB")) == eur("6.00")
    assert usage_charge(eur("1"), 10**6, UnitOfMeasure(amount=1, units="MB")) == eur("1.00")


def test_meter_survives_a_counter_reset() -> None:
    cycle = Cycle.of("month", 1, "UTC")
    meter = Meter().observe("r1/eth1/100/in", 7_000, utc(2026, 1, 1), cycle)  # baseline
    meter = meter.observe("r1/eth1/100/in", 9_000, utc(2026, 1, 2), cycle)  # +2000
    meter = meter.observe("r1/eth1/100/in", 500, utc(2026, 1, 3), cycle)  # device restarted: +500
    meter = meter.observe("r1/eth1/100/in", 400, utc(2026, 1, 3), cycle)  # same instant: ignored
    meter = meter.observe("r1/eth1/100/in", 1_500, utc(2026, 1, 4), cycle)  # +1000
    assert meter.octets_in(JAN) == 3_500
    assert Meter.from_status(meter.to_status().model_dump(mode="json")) == meter


def test_meter_splits_a_delta_across_periods_in_proportion_to_time() -> None:
    cycle = Cycle.of("month", 1, "UTC")
    meter = Meter().observe("k", 0, utc(2026, 1, 31), cycle).observe("k", 1_001, utc(2026, 2, 2), cycle)
    assert meter.octets_in(JAN) == 500 and meter.octets_in(FEB) == 501
    late = Meter().observe("k", 0, utc(2026, 1, 31), cycle).observe("k", 1_000, utc(2026, 2, 2), cycle, FEB.start)
    assert late.octets_in(JAN) == 0 and late.octets_in(FEB) == 1_000  # January is invoiced: goes to February
    assert meter.compact(FEB.start).octets_in(JAN) == 0


CUT = utc(2026, 1, 16)  # an offering version with other usage prices starts: January 1-16 | 16-31
BEFORE, AFTER = Period(JAN.start, CUT), Period(CUT, JAN.end)


@pytest.mark.parametrize(
    ("samples", "before", "after"),
    [
        # a sample exactly at the change: what the counter says passed by then is before it
        ([(utc(2026, 1, 10), 0), (CUT, 600), (utc(2026, 1, 20), 1_000)], 600, 400),
        # no sample at the change: the delta across it is split in proportion to time (6 days | 4 days)
        ([(utc(2026, 1, 10), 0), (utc(2026, 1, 20), 1_000)], 600, 400),
        # samples on one side only
        ([(utc(2026, 1, 2), 0), (utc(2026, 1, 15), 700)], 700, 0),
        ([(CUT, 0), (utc(2026, 1, 31), 900)], 0, 900),
        # across the change and the month end: three parts, summing to the delta
        ([(utc(2026, 1, 15), 0), (utc(2026, 2, 2), 1_800)], 100, 1_600),
    ],
)
def test_meter_keeps_each_versions_part_of_a_period_apart(
    samples: list[tuple[object, int]], before: int, after: int
) -> None:
    cycle = Cycle.of("month", 1, "UTC")
    meter = Meter()
    for at, octets in samples:
        meter = meter.observe("k", octets, at, cycle, cuts=[CUT])  # type: ignore[arg-type]
    assert (meter.octets_in(BEFORE), meter.octets_in(AFTER)) == (before, after)
    assert meter.octets_in(JAN) == before + after  # the whole period as before
    assert sum(meter.windows.values()) == samples[-1][1] - samples[0][1]
    assert Meter.from_status(meter.to_status().model_dump(mode="json")) == meter


def test_meter_without_a_change_keeps_one_window_per_period() -> None:
    cycle = Cycle.of("month", 1, "UTC")
    plain = Meter().observe("k", 0, utc(2026, 1, 31), cycle).observe("k", 1_001, utc(2026, 2, 2), cycle)
    assert plain.windows == {JAN: 500, FEB: 501}
    # a change in another period cuts nothing here
    cut_later = Meter().observe("k", 0, utc(2026, 1, 31), cycle, cuts=[utc(2026, 3, 5)])
    cut_later = cut_later.observe("k", 1_001, utc(2026, 2, 2), cycle, cuts=[utc(2026, 3, 5)])
    assert cut_later == plain


def test_a_window_recorded_before_its_change_was_known_is_split_in_proportion_to_what_was_measured() -> None:
    """A revision seen late: January's octets were recorded as one window; the split is in proportion to time
    from the window's start to the latest sample (not to the window's end, where nothing was measured yet)."""
    cycle = Cycle.of("month", 1, "UTC")
    meter = Meter().observe("k", 0, JAN.start, cycle).observe("k", 2_000, utc(2026, 1, 21), cycle)
    assert meter.windows == {JAN: 2_000}
    split = meter.split_at([CUT])  # 15 of the 20 measured days before the change
    assert split.windows == {BEFORE: 1_500, AFTER: 500}
    # the next sample records the cut for good; later octets go to the part after it
    later = meter.observe("k", 2_100, utc(2026, 1, 22), cycle, cuts=[CUT])
    assert later.windows == {BEFORE: 1_500, AFTER: 600}
    # a version replaced by one from another instant: the old cut goes, its parts merge
    moved = later.observe("k", 2_200, utc(2026, 1, 23), cycle, cuts=[utc(2026, 1, 11)])
    # (the part before the old cut is split 10 | 5 days; the parts after 11 January merge)
    assert moved.windows == {Period(JAN.start, utc(2026, 1, 11)): 1_000, Period(utc(2026, 1, 11), JAN.end): 1_200}


def test_octets_of_a_closed_period_go_to_the_first_part_of_the_open_one() -> None:
    cycle = Cycle.of("month", 1, "UTC")
    cut = utc(2026, 2, 10)
    late = Meter().observe("k", 0, utc(2026, 1, 31), cycle, cuts=[cut])
    late = late.observe("k", 1_000, utc(2026, 2, 2), cycle, FEB.start, cuts=[cut])
    assert late.windows == {Period(FEB.start, cut): 1_000}


def price(data: dict[str, object]) -> ProductOfferingPrice:
    return ProductOfferingPrice.model_validate(data)


def test_percentage_discount_over_its_validity_window() -> None:
    promo = price(discount(percentage="50", end="2026-01-11T00:00:00Z"))
    full = [(JAN.start, JAN.end)]
    # 50 % of 31.00 * 10/31 = 5.00
    assert discount_amount(promo, eur("31.00"), JAN, full, "p") == eur("5.00")
    # only billable time counts: delivered from 6 January
    assert discount_amount(promo, eur("31.00"), JAN, [(utc(2026, 1, 6), JAN.end)], "p") == eur("2.50")
    # a window that does not overlap takes nothing
    later = price(discount(percentage="50", start="2026-03-01T00:00:00Z"))
    assert discount_amount(later, eur("31.00"), JAN, full, "p") == eur("0.00")


def test_fixed_discount_is_prorated_and_capped_at_the_charge() -> None:
    fixed = price(discount(value="6.20", start="2026-01-21T00:00:00Z"))
    assert discount_amount(fixed, eur("31.00"), JAN, [(JAN.start, JAN.end)], "p") == eur("2.20")  # 11 of 31 days
    huge = price(discount(value="100"))
    assert discount_amount(huge, eur("31.00"), JAN, [(JAN.start, JAN.end)], "p") == eur("31.00")
    usd = price({**discount(value="1"), "price": {"unit": "USD", "value": "1"}})
    with pytest.raises(MoneyError, match=r"^p.price.unit"):
        discount_amount(usd, eur("31.00"), JAN, [(JAN.start, JAN.end)], "p")


def sla(target: str = "99.9", credit: str = "10", cap: str = "50") -> ServiceLevelAgreement:
    return ServiceLevelAgreement(availabilityTarget=target, creditPercent=credit, creditCapPercent=cap)


def test_sla_credit_formula_per_started_tenth_of_a_point() -> None:
    month = 30 * 86400
    assert sla_credit(sla(), month, 0, eur("100"), "s").amount == eur("0.00")
    # exactly at target: no credit
    assert sla_credit(sla(), month, month // 1000, eur("100"), "s").steps == 0
    # one second below target starts the first step
    one = sla_credit(sla(), month, month // 1000 + 1, eur("100"), "s")
    assert (one.steps, one.percent, one.amount) == (1, 10, eur("10.00"))
    # 99.75 %: 0.15 pp below -> 2 started steps -> 20 %
    two = sla_credit(sla(), 10_000, 25, eur("100"), "s")
    assert two.availability == Fraction(9975, 100) and two.steps == 2 and two.amount == eur("20.00")


def test_sla_credit_is_capped() -> None:
    outage = sla_credit(sla(cap="50"), 30 * 86400, 3 * 86400, eur("49.90"), "s")  # 90 %: 100 steps
    assert outage.percent == 50 and outage.amount == eur("24.95")
    assert sla_credit(sla(cap="100", credit="100"), 100, 100, eur("49.90"), "s").amount == eur("49.90")
    # rounding never lifts the credit above the cap: 33.333 % of 0.10 -> 0.03, not 0.04
    odd = sla_credit(sla(credit="33.333", cap="33.333"), 1000, 500, eur("0.10"), "s")
    assert odd.amount == eur("0.03")


def test_sla_availability_over_active_time_only() -> None:
    assert availability(0, 0) == 100
    assert availability(1000, 1) == Fraction(999, 10)
    assert sla_credit(sla(), 0, 0, eur("100"), "s").amount.is_zero()  # never active: no credit
    assert sla_credit(sla(), 100, 50, eur("0"), "s").amount.is_zero()  # nothing charged: nothing to credit


def test_bad_sla_input_names_the_field() -> None:
    bad = SimpleNamespace(availabilityTarget="99.9", creditPercent="ten", creditCapPercent="100")
    with pytest.raises(MoneyError, match=r"^offering.sla.creditPercent"):
        sla_credit(bad, 100, 1, eur("1"), "offering.sla")
    assert timedelta(seconds=1)  # keep the import honest

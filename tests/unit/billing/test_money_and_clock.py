"""Money: ISO 4217 minor units, strict parsing, exact rounding. Clock: injectable, aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from controller.billing.clock import ClockError, FakeClock, OffsetClock, WallClock, server_time_on
from controller.billing.money import (
    CurrencyMismatch,
    Money,
    MoneyError,
    minor_units,
    parse_decimal,
    round_amount,
    round_half_up,
    total,
)
from controller.times import ensure_utc, to_second


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("EUR", 2), ("USD", 2), ("GBP", 2), ("CHF", 2), ("JPY", 0), ("BHD", 3), ("KWD", 3), ("SEK", 2), ("NOK", 2),
     ("DKK", 2), ("PLN", 2), ("CZK", 2)],
)  # fmt: skip
def test_minor_units_table(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


def test_amounts_render_with_the_currency_decimals() -> None:
    assert Money.of("49.9", "EUR").value_string() == "49.90"
    assert Money.of("5000", "JPY").value_string() == "5000"
    assert Money.of("1.2345", "KWD").value_string() == "1.235"
    assert Money.of("-0.001", "EUR", signed=True).value_string() == "0.00"  # no "-0.00"
    assert (-Money.of("4.5", "EUR")).to_api() == {"unit": "EUR", "value": "-4.50"}


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    assert round_amount(Decimal("0.005"), "EUR") == Decimal("0.01")
    assert round_amount(Decimal("0.0049999"), "EUR") == Decimal("0.00")
    assert round_amount(Decimal("-0.005"), "EUR") == Decimal("-0.01")  # half away from zero
    assert round_amount(Decimal("2.5"), "JPY") == Decimal("3")
    assert round_amount(Fraction(1, 3), "BHD") == Decimal("0.333")
    assert round_half_up(Fraction(5, 2)) == 3 and round_half_up(Fraction(-5, 2)) == -3


@pytest.mark.parametrize("bad", [1.5, "1e3", "NaN", "1,5", " ", "", "01.5", "+1", True, None, "Infinity"])
def test_bad_decimals_name_the_field(bad: object) -> None:
    with pytest.raises(MoneyError) as info:
        parse_decimal(bad, "spec.productOfferingPrice[0].price.value")
    assert str(info.value).startswith("spec.productOfferingPrice[0].price.value: ")
    assert info.value.field == "spec.productOfferingPrice[0].price.value"


def test_negative_only_when_signed() -> None:
    with pytest.raises(MoneyError, match=r"negative"):
        parse_decimal("-1", "x")
    assert parse_decimal("-1.50", "x", signed=True) == Decimal("-1.50")


def test_floats_are_refused_everywhere() -> None:
    with pytest.raises(MoneyError, match=r"float"):
        Money.of(0.1, "EUR")
    with pytest.raises(MoneyError, match=r"not a Decimal"):
        Money(0.1, "EUR")  # type: ignore[arg-type]


def test_unknown_or_malformed_currency_names_the_field() -> None:
    with pytest.raises(MoneyError, match=r"^price\.unit: currency XXX is not supported"):
        Money.from_api({"unit": "XXX", "value": "1"}, "price")
    with pytest.raises(MoneyError, match=r"^price\.unit: 'eur' is not an ISO 4217"):
        Money.from_api({"unit": "eur", "value": "1"}, "price")
    with pytest.raises(MoneyError, match=r"^price: is required"):
        Money.from_api(None, "price")


def test_mixed_currency_arithmetic_is_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        _ = Money.of("1", "EUR") + Money.of("1", "USD")
    with pytest.raises(CurrencyMismatch):
        _ = Money.of("1", "EUR") < Money.of("1", "USD")
    assert total([Money.of("1.10", "EUR"), Money.of("2.20", "EUR")], "EUR") == Money.of("3.30", "EUR")


def test_from_api_accepts_models_and_dicts() -> None:
    from controller.api.common import Money as ApiMoney

    assert Money.from_api(ApiMoney(unit="CHF", value="12.5"), "p") == Money(Decimal("12.5"), "CHF")
    assert Money.from_api({"unit": "CHF", "value": "12.5"}, "p").minor == 1250


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    clock.advance(hours=1)
    clock.advance(timedelta(minutes=1))
    clock.advance(30)
    assert clock.now() == datetime(2026, 1, 1, 1, 1, 30, tzinfo=UTC)
    clock.set(datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    assert clock.now() == datetime(2025, 1, 1, tzinfo=UTC) and clock.now().tzinfo == UTC
    with pytest.raises(ClockError):
        clock.advance(-1)


def test_clocks_are_aware_and_naive_times_are_refused() -> None:
    assert WallClock().now().tzinfo == UTC
    with pytest.raises(ClockError, match=r"^startDate: .* has no time zone"):
        ensure_utc(datetime(2026, 1, 1), "startDate")
    with pytest.raises(ClockError):
        FakeClock(datetime(2026, 1, 1))
    assert to_second(datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("offset", [0.0, 29 * 86400.0, -3600.0])
def test_an_api_server_time_is_moved_onto_the_controllers_clock(offset: float) -> None:
    """managedFields times are the wall clock's; an order chaos run bills on a clock moved by an offset."""
    written = datetime.now(UTC) - timedelta(seconds=40)
    on_clock = server_time_on(OffsetClock(offset), written)
    assert abs((on_clock - written).total_seconds() - offset) < 5  # the wall clock moves between the reads
    with pytest.raises(ClockError):
        server_time_on(OffsetClock(offset), datetime(2026, 1, 1))

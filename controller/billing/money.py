"""Decimal money with ISO 4217 minor units. Never a float.

Amounts are `decimal.Decimal`; ratios used for proration and percentages are exact
rationals (`fractions.Fraction` built from Decimals and integers), and every amount is
rounded once, to the currency's minor unit, with ROUND_HALF_UP (commercial rounding:
halves away from zero). Bad input raises `MoneyError`, whose message starts with the
name of the field that held it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

# ISO 4217 minor units (exponent) of the currencies we accept. Unknown codes are refused
# rather than guessed: rounding JPY to cents or KWD to cents is a billing error.
MINOR_UNITS: dict[str, int] = {
    # zero decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # two decimals
    "AED": 2, "AUD": 2, "BGN": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2,
    "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "MAD": 2,
    "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "PHP": 2, "PLN": 2, "QAR": 2, "RON": 2, "RSD": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TRY": 2, "TWD": 2, "UAH": 2, "USD": 2, "ZAR": 2,
}  # fmt: skip

_DECIMAL = re.compile(r"^(-)?(0|[1-9][0-9]*)(\.[0-9]+)?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class MoneyError(ValueError):
    """Invalid money input; `field` names where it came from."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class CurrencyMismatch(MoneyError):
    """Two amounts in different currencies were combined."""


def parse_decimal(value: object, field: str, *, signed: bool = False) -> Decimal:
    """Parse the API's decimal string ("49.90"). Floats, exponents, NaN and signs are refused.

    `signed=True` accepts a leading minus (bill lines of credits and discounts).
    """
    if isinstance(value, (bool, float)):
        raise MoneyError(field, f"{value!r} is a {type(value).__name__}; money must be a decimal string")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError(field, f"{value} is not a finite number")
        if value < 0 and not signed:
            raise MoneyError(field, f"{value} is negative")
        return value
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MoneyError(field, f"{value!r} is not a decimal string")
    match = _DECIMAL.match(text)
    if not match:
        raise MoneyError(field, f'{value!r} is not a decimal number like "49.90"')
    if match.group(1) and not signed:
        raise MoneyError(field, f"{value!r} is negative")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid literals
        raise MoneyError(field, f"{value!r} is not a decimal number") from exc


def parse_currency(code: object, field: str) -> str:
    """A known ISO 4217 code, or MoneyError naming `field`."""
    if not isinstance(code, str) or not _CURRENCY.match(code):
        raise MoneyError(field, f"{code!r} is not an ISO 4217 currency code (three capital letters)")
    if code not in MINOR_UNITS:
        raise MoneyError(field, f"currency {code} is not supported (known: {', '.join(sorted(MINOR_UNITS))})")
    return code


def minor_units(currency: str, field: str = "unit") -> int:
    """Number of decimals of the currency's minor unit (EUR 2, JPY 0, KWD 3)."""
    return MINOR_UNITS[parse_currency(currency, field)]


def round_half_up(value: Fraction) -> int:
    """Exact ROUND_HALF_UP of a rational to an integer (halves away from zero)."""
    sign = -1 if value < 0 else 1
    whole, rest = divmod(abs(value.numerator), value.denominator)
    if 2 * rest >= value.denominator:
        whole += 1
    return sign * whole


def to_minor(value: Decimal | Fraction | int, currency: str) -> int:
    """`value` rounded to the currency's minor unit, as an integer count of minor units."""
    return round_half_up(Fraction(value) * 10 ** minor_units(currency))


def from_minor(units: int, currency: str) -> Decimal:
    """An integer count of minor units as a Decimal with the currency's exponent (4990 EUR -> 49.90)."""
    return Decimal(units).scaleb(-minor_units(currency))


def round_amount(value: Decimal | Fraction | int, currency: str) -> Decimal:
    """Round once to the currency's minor unit (ROUND_HALF_UP), exactly."""
    return from_minor(to_minor(value, currency), currency)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount and an ISO 4217 currency. Arithmetic refuses mixed currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise MoneyError("amount", f"{self.amount!r} is a {type(self.amount).__name__}, not a Decimal")
        if not self.amount.is_finite():
            raise MoneyError("amount", f"{self.amount} is not finite")
        parse_currency(self.currency, "unit")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(from_minor(0, currency), currency)

    @classmethod
    def of(cls, value: object, currency: str, field: str = "value", *, signed: bool = False) -> Money:
        """Money from a decimal string (or Decimal/int) and a currency code."""
        return cls(parse_decimal(value, field, signed=signed), parse_currency(currency, f"{field}.unit"))

    @classmethod
    def from_minor(cls, units: int, currency: str) -> Money:
        return cls(from_minor(units, currency), currency)

    @classmethod
    def from_api(cls, money: Any, field: str, *, signed: bool = False) -> Money:
        """From an API Money (pydantic model or dict with unit/value); errors name `field`."""
        if money is None:
            raise MoneyError(field, "is required")
        unit = money.get("unit") if isinstance(money, dict) else getattr(money, "unit", None)
        value = money.get("value") if isinstance(money, dict) else getattr(money, "value", None)
        currency = parse_currency(unit, f"{field}.unit")
        return cls(parse_decimal(value, f"{field}.value", signed=signed), currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (rounded half up if it has more decimals)."""
        return to_minor(self.amount, self.currency)

    def rounded(self) -> Money:
        """Rounded to the minor unit, with exactly the currency's number of decimals."""
        return Money(round_amount(self.amount, self.currency), self.currency)

    def value_string(self) -> str:
        """The API's decimal string with the currency's decimals ("49.90", "-5.00", "5000")."""
        text = format(round_amount(self.amount, self.currency), "f")
        return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text

    def to_api(self) -> dict[str, str]:
        """The wire shape {unit, value}; negative values carry a leading minus."""
        return {"unit": self.currency, "value": self.value_string()}

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch("unit", f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._check(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._check(other)
        return self.amount >= other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.value_string()} {self.currency}"


def total(amounts: list[Money] | tuple[Money, ...], currency: str) -> Money:
    """Sum of amounts that must all be in `currency` (an empty sum is zero)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result

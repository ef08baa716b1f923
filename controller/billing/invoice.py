"""Invoices: the bill of one billing account for one period, computed from ledgers.

Everything here is pure: it takes subscriptions (ledger, usage meter, offering) and a
period, and returns lines, totals, the invoice's next status and dunning decisions. The
Kopf handlers read and write the objects.

- Lines: one per billing fact with a deterministic id (see `events.line_id`) that lists the
  ids of the billing events it derives from.
- Tax: each configured rule (e.g. VAT 20 %) is applied to the tax-excluded total and
  rounded once; taxIncluded = taxExcluded + taxes.
- One currency per account: subscriptions in several currencies are an error naming them.
- Names: `<account>-<YYYYMMDD>-<YYYYMMDD>` (local dates of the period bounds in the account's
  zone, end exclusive), so "already exists" means "already billed".
- States: new (draft, recomputed) -> validated (issued: immutable, digest recorded) -> sent
  -> partiallyPaid -> settled; onHold parks a draft. A correction of an issued bill is a line
  on a later bill (`corrections`), never an edit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from ..api.common import TimePeriod
from ..api.invoice import BillLine, InvoiceState, InvoiceStatus, Payment, SignedMoney, TaxItem
from ..api.productoffering import PaymentPolicy, ProductOfferingPrice, ProductOfferingSpec, ServiceLevelAgreement
from ..api.subscription import PlanVersion, SubscriptionBilling
from ..times import ensure_utc, rfc3339, to_second
from . import events as ev
from .events import BillingEvent, SubscriptionRef, line_id, period_key
from .ledger import Ledger, intersect
from .money import CurrencyMismatch, Money, MoneyError, parse_decimal, round_half_up
from .periods import Cycle, Period, load_zone, stamp
from .rating import (
    Meter,
    discount_amount,
    one_time_charge,
    recurring_charge,
    sla_credit,
    usage_charge,
    valid_spans,
)

MAX_LINES = 2000
LineType = Literal["recurringCharge", "oneTimeCharge", "usageCharge", "discount", "credit"]
_TYPE_ORDER = {"oneTimeCharge": 0, "recurringCharge": 1, "discount": 2, "usageCharge": 3, "credit": 4}
ISSUED: frozenset[str] = frozenset({"validated", "sent", "partiallyPaid", "settled"})
UNPAID: frozenset[str] = frozenset({"validated", "sent", "partiallyPaid"})
# A reversal can take a paid bill back (settled -> partiallyPaid -> sent/validated): the payment states are
# derived from the payments (`payment_state`), never stored as a one-way ratchet.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"onHold", "validated"}),
    "onHold": frozenset({"new", "validated"}),
    "validated": frozenset({"sent", "partiallyPaid", "settled"}),
    "sent": frozenset({"partiallyPaid", "settled"}),
    "partiallyPaid": frozenset({"validated", "sent", "settled"}),
    "settled": frozenset({"validated", "sent", "partiallyPaid"}),
}


class InvoiceError(ValueError):
    """The invoice cannot be computed or changed as asked; the message names the cause."""


class MixedCurrency(InvoiceError):
    """An account's subscriptions are priced in more than one currency."""

    def __init__(self, account: str, by_currency: Mapping[str, Sequence[str]]) -> None:
        self.by_currency = {c: sorted(s) for c, s in by_currency.items()}
        parts = "; ".join(f"{c}: {', '.join(s)}" for c, s in sorted(self.by_currency.items()))
        super().__init__(f"billing account {account} mixes currencies ({parts}); one account bills in one currency")


class InvalidTransition(InvoiceError):
    """A state change the invoice state machine does not allow."""


class ImmutableInvoice(InvoiceError):
    """An issued invoice's lines or totals were to change."""


# -- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaxRule:
    """A tax applied to the tax-excluded total, e.g. TaxRule("VAT", Decimal("20"))."""

    category: str
    rate: Decimal

    @classmethod
    def of(cls, category: str, rate: str) -> TaxRule:
        value = parse_decimal(rate, f"tax.{category}.rate")
        if value > 100:
            raise MoneyError(f"tax.{category}.rate", f"{rate} is more than 100 percent")
        return cls(category, value)


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """The prices and SLA of one offering version, in force during [start, end) (None: unbounded)."""

    offering_name: str
    prices: tuple[ProductOfferingPrice, ...]
    sla: ServiceLevelAgreement | None
    start: datetime | None = None
    end: datetime | None = None

    def of(self, kind: str) -> list[tuple[int, ProductOfferingPrice]]:
        return [(i, p) for i, p in enumerate(self.prices) if p.priceType == kind]

    def field(self, index: int) -> str:
        return f"productoffering/{self.offering_name}.spec.productOfferingPrice[{index}]"

    def money(self, index: int) -> Money:
        return Money.from_api(self.prices[index].price, f"{self.field(index)}.price")

    def in_force(self, instant: datetime) -> bool:
        return (self.start is None or self.start <= instant) and (self.end is None or instant < self.end)

    def clip(self, span: Period) -> Period | None:
        start = max(span.start, self.start) if self.start is not None else span.start
        end = min(span.end, self.end) if self.end is not None else span.end
        return Period(start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class BillingInput:
    """One subscription as billing sees it.

    `plans` are the offering versions recorded in its status (oldest first); each interval is rated at
    the version in force during it. Without recorded versions, `offering` is in force throughout."""

    ref: SubscriptionRef
    offering_name: str
    offering: ProductOfferingSpec | None
    ledger: Ledger
    meter: Meter = field(default_factory=Meter)
    time_zone: str = "UTC"
    plans: tuple[PlanVersion, ...] = ()

    @classmethod
    def from_objects(
        cls, subscription: Mapping[str, Any], offering: Mapping[str, Any] | None, time_zone: str | None = None
    ) -> BillingInput:
        """From a Subscription and its ProductOffering as the API returns them (dicts); `time_zone` is its
        account's (default: the deprecated inline account's). The offering may be None when the
        subscription recorded its versions."""
        billing = SubscriptionBilling.model_validate(((subscription.get("status") or {}).get("billing")) or {})
        spec = ProductOfferingSpec.model_validate(offering.get("spec") or {}) if offering is not None else None
        if spec is None and not billing.plans:
            raise InvoiceError("the subscription's ProductOffering is gone and it recorded no offering version")
        name = ((offering or {}).get("metadata") or {}).get("name", "")
        if billing.plans:
            name = name or billing.plans[-1].offering
        return cls(
            ref=SubscriptionRef.from_object(subscription),
            offering_name=name,
            offering=spec,
            ledger=Ledger.from_status(billing.ledger),
            meter=Meter.from_status(billing.usage),
            time_zone=time_zone
            or ((subscription.get("spec") or {}).get("billingAccount") or {}).get("timeZone", "UTC"),
            plans=tuple(billing.plans),
        )

    @property
    def payment_policy(self) -> PaymentPolicy:
        return self.offering.paymentPolicy if self.offering is not None else PaymentPolicy()

    @property
    def versions(self) -> list[PriceVersion]:
        """The price versions in force, oldest first; consecutive versions with the same prices are one."""
        if not self.plans:
            assert self.offering is not None
            return [
                PriceVersion(
                    self.offering_name, tuple(self.offering.productOfferingPrice), self.offering.serviceLevelAgreement
                )
            ]
        out: list[PriceVersion] = []
        for i, plan in enumerate(self.plans):
            start = to_second(plan.since) if plan.since is not None and i > 0 else None
            prices, sla = tuple(plan.productOfferingPrice), plan.serviceLevelAgreement
            if out and out[-1].start == start and start is not None:
                out.pop()  # the one before lasted no time (announced, so kept in the plans): not a version
                if out:
                    out[-1] = replace(out[-1], end=None)
            if out and (out[-1].offering_name, out[-1].prices, out[-1].sla) == (plan.offering, prices, sla):
                continue
            if out:
                out[-1] = replace(out[-1], end=start)
            out.append(PriceVersion(plan.offering, prices, sla, start))
        return out

    @property
    def usage_cuts(self) -> list[datetime]:
        """Where the usage prices change (a version with other usage prices, or of another offering,
        starts): the meter keeps each side's octets apart there (`Meter.observe`)."""
        versions = self.versions
        return [
            v.start
            for previous, v in itertools.pairwise(versions)
            if v.start is not None and _usage_terms(previous) != _usage_terms(v)
        ]

    def version_at(self, instant: datetime) -> PriceVersion:
        versions = self.versions
        return next((v for v in versions if v.in_force(instant)), versions[-1])

    @property
    def currency(self) -> str:
        """The offering's currency (all its prices, in every version, share one)."""
        found: dict[str, str] = {}
        for version in self.versions:
            for i, price in enumerate(version.prices):
                if price.price is not None:
                    found.setdefault(price.price.unit, f"{version.field(i)}.price.unit")
        if len(found) != 1:
            raise MoneyError(
                f"productoffering/{self.offering_name}.spec.productOfferingPrice",
                f"needs exactly one currency, has {sorted(found) or 'none'}",
            )
        return next(iter(found))


@dataclass(frozen=True, slots=True)
class Rated:
    """Lines of one subscription for one bill period and the events of the facts that closed."""

    lines: list[BillLine]
    events: list[BillingEvent]
    currency: str


def _line(
    sub: BillingInput, kind: LineType, key: str, name: str, coverage: TimePeriod, amount: Money, events: list[str]
) -> BillLine:
    return BillLine(
        id=line_id(sub.ref.uid, kind, key),
        type=kind,
        name=name[:256],
        subscription=sub.ref.qualified_name,
        periodCoverage=coverage,
        taxExcludedAmount=SignedMoney(**amount.to_api()),
        events=events,
    )


def _coverage(period: Period) -> TimePeriod:
    return TimePeriod(startDateTime=period.start, endDateTime=period.end)


def rate_subscription(sub: BillingInput, period: Period, now: datetime) -> Rated:
    """Lines of `sub` for bill period `period` as known at `now`, and the events of its facts
    that are closed at `now` (the handler adds those to the outbox; re-adding is a no-op).

    Each interval is rated at the offering version in force during it. Where a version ends inside a
    charge period (an upgrade, an immediate downgrade, a price revision), its line charges the period
    as if it had run to the end and a credit line gives back the unused part; the next version's line
    charges its prorated rest. The sum is exactly each part at its own price (cumulative rounding)."""
    now = ensure_utc(now, "now")
    versions = sub.versions
    for version in versions:
        _check_names(version)
    currency = sub.currency
    ref, ledger = sub.ref, sub.ledger
    lines: list[BillLine] = []
    events: list[BillingEvent] = []

    # one-time charges, at activation (startDate), at the version in force then
    start = ledger.start_date
    if start is not None and period.contains(start) and start <= now:
        activation = ev.event_id(ref.uid, "activated", "")
        first = sub.version_at(start)
        for index, price in first.of("oneTime"):
            if not _applies(price, Period(start, start + timedelta(seconds=1))):
                continue
            amount = one_time_charge(first.money(index))
            lines.append(
                _line(
                    sub, "oneTimeCharge", price.name, price.name, TimePeriod(startDateTime=start), amount, [activation]
                )
            )

    # recurring charges and their discounts, per version and charge period overlapping the bill period
    net_of: dict[int, Money] = {}  # net recurring charge per version (index in `versions`), the SLA's base
    for v_index, version in enumerate(versions):
        in_period = version.clip(period)
        if in_period is None:
            continue
        discounts = version.of("discount")
        for rank, (index, price) in enumerate(version.of("recurring")):
            field_ = version.field(index)
            cycle = Cycle.for_price(price, sub.time_zone, field_)
            unit_price = version.money(index)
            for charge_period in cycle.periods(in_period.start, in_period.end):
                coverage = charge_period.intersect(period)
                assert coverage is not None
                part = version.clip(coverage)
                if part is None:
                    continue
                validity = valid_spans(price.validFor, coverage)
                billable = intersect(ledger.billable(part.start, part.end, now), validity)
                unused = intersect([(part.end, coverage.end)], validity) if part.end < coverage.end else []
                if not billable:
                    continue
                amount = recurring_charge(unit_price, charge_period, billable)
                label, key, name = price.name, period_key(coverage, price.name), price.name
                if part.start > coverage.start and version.start is not None and version.start > coverage.start:
                    label = f"{price.name} from {stamp(part.start)}"
                    key = period_key(coverage, label)
                    name = f"{price.name} ({version.offering_name}, prorated from {rfc3339(part.start)})"
                charge_id = ev.charge_period_id(ref, label, coverage)
                if unused:
                    given_back = recurring_charge(unit_price, charge_period, unused)
                    lines.append(
                        _line(
                            sub,
                            "recurringCharge",
                            key,
                            f"{name} ({version.offering_name})" if name == price.name else name,
                            _coverage(coverage),
                            amount + given_back,
                            [charge_id],
                        )
                    )
                    lines.append(
                        _line(
                            sub,
                            "credit",
                            f"unused/{key}",
                            f"Unused {price.name} ({version.offering_name}) from {rfc3339(part.end)}",
                            _coverage(Period(part.end, coverage.end)),
                            -given_back,
                            [charge_id],
                        )
                    )
                else:
                    lines.append(_line(sub, "recurringCharge", key, name, _coverage(coverage), amount, [charge_id]))
                discount_total = Money.zero(currency)
                for d_index, discount in discounts:
                    if discount.price is not None and rank != 0:
                        continue  # a fixed discount applies to the first recurring price only
                    off = discount_amount(discount, unit_price, charge_period, billable, version.field(d_index))
                    off = min(off, amount - discount_total)
                    if off.is_zero():
                        continue
                    discount_total = discount_total + off
                    lines.append(
                        _line(
                            sub,
                            "discount",
                            f"{discount.name}/{key}",
                            f"{discount.name} ({price.name})",
                            _coverage(coverage),
                            -off,
                            [charge_id],
                        )
                    )
                net_of[v_index] = net_of.get(v_index, Money.zero(currency)) + amount - discount_total
                if coverage.end <= now:
                    seconds = sum(int((e - s).total_seconds()) for s, e in billable)
                    events.append(
                        ev.charge_period(ref, label, charge_period, coverage, amount, discount_total, seconds)
                    )

    # usage charges: each part of the period (cut where the usage prices change) at its own version, from
    # the octets measured in that part
    usage_parts = _parts(versions, period, _usage_terms)
    meter = sub.meter.split_at(p.start for p, _ in usage_parts[1:])
    for span, members in usage_parts:
        version = versions[members[0]]
        octets = meter.octets_in(span)
        whole = len(usage_parts) == 1  # a period without a change: one fact per price, as always
        for index, price in version.of("usage"):
            if not octets or price.unitOfMeasure is None or not _applies(price, span):
                continue
            amount = usage_charge(version.money(index), octets, price.unitOfMeasure)
            since = None if whole or span.start == period.start else span.start
            name = price.name if whole else _part_name(price.name, [version], span, period)
            usage_id = ev.usage_rated_id(ref, price.name, period, since)
            key = period_key(period, price.name if since is None else f"{price.name} from {stamp(since)}")
            lines.append(_line(sub, "usageCharge", key, name, _coverage(span), amount, [usage_id]))
            if period.end <= now:
                uom = price.unitOfMeasure
                quantity = Fraction(octets, {"MB": 10**6, "GB": 10**9, "TB": 10**12}[uom.units] * uom.amount)
                events.append(
                    ev.usage_rated(
                        ref,
                        price.name,
                        period,
                        octets,
                        _fraction_text(quantity),
                        f"{uom.amount} {uom.units}",
                        amount,
                        None if whole else (span, version.offering_name),
                        since,
                    )
                )

    # SLA credit, once per (subscription, bill period) and SLA in force in it, when the period is over: each
    # part of the period under one SLA is measured over its own active time, its base the net recurring
    # charge of the versions in it (consecutive versions with the same SLA are one part: a price change alone
    # does not cut the availability the SLA promises)
    sla_parts = _parts(versions, period, lambda v: v.sla)
    if period.end <= now and ledger.start_date is not None:
        for span, members in sla_parts:
            sla = versions[members[0]].sla
            if sla is None:
                continue
            whole = len(sla_parts) == 1
            opening = whole or span.start == period.start
            active = ledger.active_seconds(span.start, span.end, now)
            down = ledger.unavailable_seconds(span.start, span.end, now)
            base = sum((net_of.get(m, Money.zero(currency)) for m in members), Money.zero(currency))
            field_ = f"productoffering/{versions[members[0]].offering_name}.spec.serviceLevelAgreement"
            credit = sla_credit(sla, active, down, base, field_)
            if credit.amount.is_zero():
                continue
            since = None if opening else span.start
            credit_id = ev.sla_credit_id(ref, period, since)
            shortfall = f"availability {_fraction_text(credit.availability, 4)}% < {sla.availabilityTarget}%"
            which = "" if whole else f" {_part_name('', [versions[m] for m in members], span, period).strip()}"
            lines.append(
                _line(
                    sub,
                    "credit",
                    f"sla/{period.key}" if since is None else f"sla/from {stamp(since)}/{period.key}",
                    f"SLA credit{which}: {shortfall}",
                    _coverage(span),
                    -credit.amount,
                    [credit_id],
                )
            )
            events.append(
                ev.sla_credit(
                    ref,
                    period,
                    _fraction_text(credit.availability, 4),
                    sla.availabilityTarget,
                    _fraction_text(credit.percent, 4),
                    credit.amount,
                    down,
                    None if whole else (span, ", ".join(_offerings([versions[m] for m in members]))),
                    since,
                )
            )
    return Rated(lines, events, currency)


def _parts(
    versions: Sequence[PriceVersion], period: Period, terms: Callable[[PriceVersion], object]
) -> list[tuple[Period, list[int]]]:
    """The parts of `period` under one set of `terms` (e.g. the usage prices, the SLA): consecutive versions
    in force in it whose terms are equal are one part. Each part is its span and its versions' indexes."""
    out: list[tuple[Period, list[int]]] = []
    for index, version in enumerate(versions):
        span = version.clip(period)
        if span is None:
            continue
        if out and terms(versions[out[-1][1][-1]]) == terms(version):
            out[-1] = (Period(out[-1][0].start, span.end), [*out[-1][1], index])
        else:
            out.append((span, [index]))
    return out


def _usage_terms(version: PriceVersion) -> object:
    """What a version's usage is rated at: its offering and usage prices."""
    return (version.offering_name, tuple(p for _, p in version.of("usage")))


def _offerings(versions: Sequence[PriceVersion]) -> list[str]:
    return list(dict.fromkeys(v.offering_name for v in versions))


def _part_name(label: str, versions: Sequence[PriceVersion], span: Period, period: Period) -> str:
    """A line's name for one version's part of a period: "<label> (<offering>, to <end>)" for the part the
    period starts with, "<label> (<offering>, from <start>)" for a later one."""
    when = f"to {rfc3339(span.end)}" if span.start == period.start else f"from {rfc3339(span.start)}"
    return f"{label} ({', '.join(_offerings(versions))}, {when})"


def _applies(price: ProductOfferingPrice, period: Period) -> bool:
    """Whether the price's validFor overlaps `period` (unset: always)."""
    return bool(valid_spans(price.validFor, period))


def _check_names(version: PriceVersion) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, price in enumerate(version.prices):
        key = (price.priceType, price.name)
        if key in seen:
            raise InvoiceError(
                f"{version.field(index)}.name: "
                f"{price.name!r} repeats productOfferingPrice[{seen[key]}]; price names identify billing facts"
            )
        seen[key] = index


def _fraction_text(value: Fraction, places: int = 6) -> str:
    """A rational as a decimal string with at most `places` decimals (half up, trailing zeros cut)."""
    scaled = round_half_up(value * 10**places)
    text = format(Decimal(scaled).scaleb(-places), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- the invoice ----------------------------------------------------------------------------


_NAME_SAFE = re.compile(r"[^a-z0-9-]")


def invoice_name(account: str, period: Period, time_zone: str = "UTC") -> str:
    """`<account>-<YYYYMMDD>-<YYYYMMDD>`, lowercased, a valid DNS-1123 subdomain.

    The dates are the local dates of the period bounds in the account's zone (end exclusive).
    An account id that had to be changed to fit (upper case, '.', '_') gets an 8-hex digest
    of the original, so two accounts never share invoice names."""
    if not account:
        raise InvoiceError("billingAccount: is required to name an invoice")
    zone = load_zone(time_zone)
    first, last = period.local_dates(zone)
    safe = _NAME_SAFE.sub("-", account.lower())
    if safe != account:
        safe = f"{safe}-{hashlib.sha256(account.encode()).hexdigest()[:8]}"
    return f"{safe}-{first:%Y%m%d}-{last:%Y%m%d}"


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """The computed content of an invoice."""

    name: str
    account: str
    period: Period
    currency: str
    lines: list[BillLine]
    tax_items: list[TaxItem]
    tax_excluded: Money
    tax_included: Money
    amount_paid: Money
    amount_due: Money
    events: list[BillingEvent]
    payment_term_days: int

    def lines_total(self) -> Money:
        return sum_lines(self.lines, self.currency)


def sum_lines(lines: Iterable[BillLine], currency: str) -> Money:
    total = Money.zero(currency)
    for i, line in enumerate(lines):
        total = total + Money.from_api(line.taxExcludedAmount, f"lines[{i}].taxExcludedAmount", signed=True)
    return total


def sum_payments(payments: Sequence[Payment | Mapping[str, Any]], currency: str) -> Money:
    """What was paid: payments minus reversals. A reversal (negative amount) needs a reason; when it names
    the payment it `reverses`, that must be an earlier payment it does not take back more than."""
    paid = Money.zero(currency)
    seen: dict[str, Money] = {}  # payment id -> what remains of it after the reversals so far
    for i, payment in enumerate(payments):
        model = payment if isinstance(payment, Payment) else Payment.model_validate(payment)
        amount = Money.from_api(model.amount, f"spec.payments[{i}].amount", signed=True)
        if amount.amount != amount.rounded().amount:
            raise MoneyError(
                f"spec.payments[{i}].amount.value", f"{model.amount.value} has more decimals than {amount.currency} has"
            )
        if amount.currency != currency:
            raise CurrencyMismatch(f"spec.payments[{i}].amount.unit", f"{amount.currency} is not the bill's {currency}")
        if model.id in seen:
            raise InvoiceError(f"spec.payments[{i}].id: {model.id!r} is recorded twice")
        if amount.amount < 0:
            if not (model.reason or "").strip():
                raise InvoiceError(f"spec.payments[{i}].reason: a reversal (negative amount) needs a reason")
            if model.reverses is not None:
                left = seen.get(model.reverses)
                if left is None or left.amount <= 0:
                    raise InvoiceError(
                        f"spec.payments[{i}].reverses: {model.reverses!r} is not an earlier payment of this invoice"
                    )
                if -amount.amount > left.amount:
                    raise InvoiceError(
                        f"spec.payments[{i}].amount.value: reverses {-amount} but only {left} of"
                        f" {model.reverses!r} is left to reverse"
                    )
                seen[model.reverses] = left + amount
        elif model.reverses is not None:
            raise InvoiceError(f"spec.payments[{i}].reverses: only a reversal (negative amount) reverses a payment")
        seen[model.id] = amount if amount.amount > 0 else Money.zero(currency)
        paid = paid + amount
    return paid


def _payment_id(payment: Payment | Mapping[str, Any]) -> str:
    return payment.id if isinstance(payment, Payment) else str(payment.get("id") or "")


def settled_by(payments: Sequence[Payment | Mapping[str, Any]], total: Money) -> str | None:
    """The payment entry that completed the bill's latest settlement: the last one that took the running
    sum of the payments (reversals included) from below `total` to it or above. A reversal can take the
    sum below again and a later payment settle the bill anew: that is a new settlement, whether or not a
    pass saw the bill unsettled in between. None when the sum never crossed it (nothing due to start with,
    or not paid). The payments are those sum_payments accepted."""
    running, by = Money.zero(total.currency), None
    for payment in payments:
        model = payment if isinstance(payment, Payment) else Payment.model_validate(payment)
        before, running = running, running + Money.from_api(model.amount, "amount", signed=True)
        if before.amount < total.amount <= running.amount:
            by = model.id
    return by


def account_currency(account: str, subscriptions: Sequence[BillingInput], default: str | None = None) -> str:
    """The single currency of the account's subscriptions, or MixedCurrency naming them."""
    by_currency: dict[str, list[str]] = defaultdict(list)
    for sub in subscriptions:
        by_currency[sub.currency].append(sub.ref.qualified_name)
    if len(by_currency) > 1:
        raise MixedCurrency(account, by_currency)
    if by_currency:
        return next(iter(by_currency))
    if default is None:
        raise InvoiceError(f"billing account {account}: no subscriptions and no currency given")
    return default


def compute_invoice(
    account: str,
    period: Period,
    subscriptions: Sequence[BillingInput],
    now: datetime,
    taxes: Sequence[TaxRule] = (),
    payments: Sequence[Payment | Mapping[str, Any]] = (),
    extra_lines: Sequence[BillLine] = (),
    time_zone: str = "UTC",
    currency: str | None = None,
    payment_term_days: int | None = None,
) -> InvoiceDraft:
    """The invoice of `account` for `period` at `now`. `extra_lines` are corrections of earlier
    issued bills (see `corrections`) and credit balances carried forward. `payment_term_days` (the
    BillingAccount's paymentPlan) wins over the offerings' terms."""
    for sub in subscriptions:
        if sub.ref.account != account:
            raise InvoiceError(f"subscription {sub.ref.qualified_name} bills account {sub.ref.account}, not {account}")
    code = account_currency(account, subscriptions, currency)
    lines: list[BillLine] = []
    facts: list[BillingEvent] = []
    for sub in subscriptions:
        rated = rate_subscription(sub, period, now)
        lines += rated.lines
        facts += rated.events
    for i, line in enumerate(extra_lines):
        if line.taxExcludedAmount.unit != code:
            raise CurrencyMismatch(f"extra_lines[{i}].taxExcludedAmount.unit", f"is not the account's {code}")
        lines.append(line)
    lines.sort(
        key=lambda ln: (ln.subscription, _TYPE_ORDER[ln.type], ln.periodCoverage.startDateTime or period.start, ln.id)
    )
    ids = [ln.id for ln in lines]
    if len(set(ids)) != len(ids):
        raise InvoiceError(f"invoice {account}/{period.key}: duplicate line ids")
    if len(lines) > MAX_LINES:
        raise InvoiceError(
            f"invoice {account}/{period.key}: {len(lines)} lines exceed {MAX_LINES}; bill a shorter period"
        )
    subtotal = sum_lines(lines, code)
    tax_items: list[TaxItem] = []
    tax_total = Money.zero(code)
    for rule in taxes:
        tax = Money.from_minor(round_half_up(Fraction(subtotal.minor) * Fraction(rule.rate) / 100), code)
        tax_total = tax_total + tax
        tax_items.append(
            TaxItem(taxCategory=rule.category, taxRate=format(rule.rate, "f"), taxAmount=SignedMoney(**tax.to_api()))
        )
    included = subtotal + tax_total
    paid = sum_payments(payments, code)
    term = payment_term_days
    if term is None:
        term = max((s.payment_policy.paymentTermDays for s in subscriptions), default=PaymentPolicy().paymentTermDays)
    return InvoiceDraft(
        name=invoice_name(account, period, time_zone),
        account=account,
        period=period,
        currency=code,
        lines=lines,
        tax_items=tax_items,
        tax_excluded=subtotal,
        tax_included=included,
        amount_paid=paid,
        amount_due=included - paid,
        events=facts,
        payment_term_days=term,
    )


def content_digest(status: InvoiceStatus) -> str:
    """sha256 over the lines, taxes and totals: what an issued bill must never change."""
    payload = {
        "lines": [ln.model_dump(mode="json", exclude_none=True) for ln in status.lines],
        "taxItem": [t.model_dump(mode="json") for t in status.taxItem],
        "taxExcludedAmount": status.taxExcludedAmount.model_dump(mode="json") if status.taxExcludedAmount else None,
        "taxIncludedAmount": status.taxIncludedAmount.model_dump(mode="json") if status.taxIncludedAmount else None,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def transition(current: str | None, target: InvoiceState) -> InvoiceState:
    """The next state, or InvalidTransition (None counts as new)."""
    state = current or "new"
    if target == state:
        return target
    if target not in TRANSITIONS.get(state, frozenset()):
        raise InvalidTransition(f"status.state: {state} -> {target} is not allowed")
    return target


def payment_state(issued: bool, on_hold: bool, sent: bool, paid: Money, included: Money) -> InvoiceState:
    """The TMF678 state, derived: a draft is new (onHold when parked); an issued bill is settled when
    nothing is due, partiallyPaid when something was paid, else sent once delivered, else validated."""
    if not issued:
        return "onHold" if on_hold else "new"
    if (included - paid).amount <= 0:
        return "settled"
    if paid.amount > 0:
        return "partiallyPaid"
    return "sent" if sent else "validated"


def _payment_fields(
    status: InvoiceStatus,
    payments: Sequence[Payment | Mapping[str, Any]],
    now: datetime,
    grace_days: int | None,
    time_zone: str,
    on_hold: bool = False,
    carried: Money | None = None,
) -> InvoiceStatus:
    """amountPaid, amountDue, state, settledDate (and overdue) derived from the payments every time, so a
    reversal takes a settled bill back. `carried` is a credit balance a later bill took over (negative)."""
    if status.taxIncludedAmount is None:
        return status
    included = Money.from_api(status.taxIncludedAmount, "status.taxIncludedAmount", signed=True)
    paid = sum_payments(payments, included.currency)
    due = included - paid
    # a carried balance was a credit (nothing due): carrying it leaves the bill settled at zero
    state = payment_state((status.state or "new") in ISSUED, on_hold, status.sentDate is not None, paid, included)
    if carried is not None:
        due = due - carried
    settled = state == "settled"
    # settled again by another payment (a reversal and a new payment, maybe seen in one pass): a new date
    seen = set(status.recordedPayments)
    recorded = [p for p in payments if _payment_id(p) in seen]
    same_settlement = settled_by(recorded, included) == settled_by(payments, included)
    update: dict[str, Any] = {
        "amountPaid": SignedMoney(**paid.to_api()),
        "amountDue": SignedMoney(**due.to_api()),
        "state": state,
        "settledDate": (status.settledDate if same_settlement else None) or to_second(now) if settled else None,
    }
    result = status.model_copy(update=update)
    if grace_days is not None:
        result = result.model_copy(update={"overdue": is_overdue(result, now, grace_days, time_zone)})
    return result


def reconcile(
    status: InvoiceStatus | None,
    draft: InvoiceDraft,
    payments: Sequence[Payment | Mapping[str, Any]],
    now: datetime,
    grace_days: int | None = None,
    time_zone: str = "UTC",
    on_hold: bool = False,
    carried: Money | None = None,
) -> InvoiceStatus:
    """The invoice's next status. A draft (new, or onHold while `on_hold`) takes the freshly computed lines and totals;
    an issued invoice keeps them (and ImmutableInvoice is raised if its digest no longer matches
    them), only the payment fields (amountPaid, amountDue, state, settledDate, and overdue when
    `grace_days` is given) move."""
    current = status or InvoiceStatus(state="new")
    state = current.state or "new"
    if state in ISSUED:
        if current.contentDigest and current.contentDigest != content_digest(current):
            raise ImmutableInvoice(
                f"invoice {draft.name}: issued content differs from its digest {current.contentDigest}"
            )
        return _payment_fields(current, payments, now, grace_days, time_zone, carried=carried)
    fresh = current.model_copy(
        update={
            "state": state,
            "billNo": current.billNo,
            "lines": draft.lines,
            "taxItem": draft.tax_items,
            "taxExcludedAmount": SignedMoney(**draft.tax_excluded.to_api()),
            "taxIncludedAmount": SignedMoney(**draft.tax_included.to_api()),
            "contentDigest": None,
        }
    )
    return _payment_fields(fresh, payments, now, grace_days, time_zone, on_hold=on_hold)


def add_days(instant: datetime, days: int, time_zone: str) -> datetime:
    """`instant` plus `days` calendar days in the account's zone (same local wall time, DST-correct)."""
    zone = load_zone(time_zone)
    local = ensure_utc(instant).astimezone(zone).replace(tzinfo=None) + timedelta(days=days)
    return local.replace(tzinfo=zone).astimezone(ensure_utc(instant).tzinfo)


def issue(
    status: InvoiceStatus,
    draft: InvoiceDraft,
    now: datetime,
    time_zone: str = "UTC",
    bill_no: str | None = None,
) -> InvoiceStatus:
    """Validate (issue) a draft: it must cover a closed period; from now on it is immutable."""
    now = to_second(now, "now")
    if now < draft.period.end:
        raise InvoiceError(f"invoice {draft.name}: period ends {draft.period.end.isoformat()}; cannot issue it before")
    state = transition(status.state, "validated")
    issued = status.model_copy(
        update={
            "state": state,
            "billNo": bill_no or status.billNo or draft.name,
            "billDate": now,
            "paymentDueDate": add_days(now, draft.payment_term_days, time_zone),
        }
    )
    return issued.model_copy(update={"contentDigest": content_digest(issued)})


def mark_sent(status: InvoiceStatus, at: datetime) -> InvoiceStatus:
    """The issued bill reached the billing sinks at `at`: validated becomes sent (a bill already paid
    keeps its payment state; sentDate records the delivery either way)."""
    if (status.state or "new") not in ISSUED:
        raise InvalidTransition(f"status.state: {status.state or 'new'} -> sent is not allowed (not issued)")
    state = transition(status.state, "sent") if status.state == "validated" else status.state
    return status.model_copy(update={"state": state, "sentDate": status.sentDate or to_second(at, "at")})


# -- corrections ----------------------------------------------------------------------------


def corrections(
    issued: Sequence[InvoiceStatus], recomputed: Sequence[BillLine], target: Period, uid_of: Mapping[str, str]
) -> list[BillLine]:
    """Correction lines for a later bill: for every fact billed on `issued` bills (original lines
    plus earlier corrections) whose recomputed amount differs, one line with the difference
    (type credit when negative; `corrects` names the fact's line id). Facts missing from
    `recomputed` are credited in full; new facts are charged late. `uid_of` maps a subscription
    (namespace/name) to its uid for the correction's id."""
    billed: dict[str, Money] = {}
    template: dict[str, BillLine] = {}
    for bill in issued:
        for line in bill.lines:
            fact = line.corrects or line.id
            amount = Money.from_api(line.taxExcludedAmount, f"lines[{line.id}]", signed=True)
            billed[fact] = billed[fact] + amount if fact in billed else amount
            template.setdefault(fact, line)
    want = {ln.id: ln for ln in recomputed}
    out: list[BillLine] = []
    for fact in sorted(set(billed) | set(want)):
        line = want.get(fact) or template[fact]
        target_amount = (
            Money.from_api(want[fact].taxExcludedAmount, f"recomputed[{fact}]", signed=True)
            if fact in want
            else Money.zero(line.taxExcludedAmount.unit)
        )
        delta = target_amount - billed.get(fact, Money.zero(target_amount.currency))
        if delta.is_zero():
            continue
        uid = uid_of.get(line.subscription)
        if not uid:
            raise InvoiceError(f"corrections: no uid for subscription {line.subscription}")
        kind: LineType = "credit" if delta.amount < 0 else line.type
        out.append(
            BillLine(
                id=line_id(uid, "correction", f"{fact}/{target.key}"),
                type=kind,
                name=f"Correction: {line.name}"[:256],
                subscription=line.subscription,
                periodCoverage=line.periodCoverage,
                taxExcludedAmount=SignedMoney(**delta.to_api()),
                corrects=fact,
                events=line.events,
            )
        )
    return out


# -- dunning --------------------------------------------------------------------------------


def is_overdue(status: InvoiceStatus, now: datetime, grace_days: int, time_zone: str = "UTC") -> bool:
    """Issued, not settled, something due, and now is past paymentDueDate + grace (calendar days)."""
    if (status.state or "new") not in UNPAID or status.paymentDueDate is None:
        return False
    due = status.amountDue or status.taxIncludedAmount
    if due is None or parse_decimal(due.value, "status.amountDue.value", signed=True) <= 0:
        return False
    return ensure_utc(now) >= add_days(status.paymentDueDate, grace_days, time_zone)


@dataclass(frozen=True, slots=True)
class DunningDecision:
    """What to do with one subscription given its account's invoices."""

    action: Literal["suspend", "resume", "none"]
    reason: str
    invoices: tuple[str, ...] = ()


def dunning_decision(
    invoices: Mapping[str, InvoiceStatus],
    policy: PaymentPolicy,
    on_hold: bool,
    now: datetime,
    time_zone: str = "UTC",
) -> DunningDecision:
    """Suspend when an invoice of the account is overdue and the offering's paymentPolicy says so;
    resume a subscription held for non-payment once nothing is overdue any more (settled).
    Level-triggered: derived from the invoices and `on_hold` (status.billing.paymentHold) alone."""
    overdue = tuple(sorted(n for n, st in invoices.items() if is_overdue(st, now, policy.gracePeriodDays, time_zone)))
    if overdue and not on_hold and policy.suspendOnOverdue:
        return DunningDecision("suspend", f"invoices overdue: {', '.join(overdue)}", overdue)
    if on_hold and not overdue:
        return DunningDecision("resume", "no overdue invoices remain", ())
    if overdue and not policy.suspendOnOverdue:
        return DunningDecision("none", f"invoices overdue: {', '.join(overdue)} (offering does not suspend)", overdue)
    return DunningDecision("none", "on hold until settled" if on_hold else "nothing overdue", overdue)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Events of bill periods that closed since `chargedThrough`, and the new mark."""

    events: list[BillingEvent]
    charged_through: datetime | None
    more: bool  # periods remain closed but not yet emitted (bounded per pass)


def catch_up(
    sub: BillingInput, charged_through: datetime | None, now: datetime, max_periods: int = 3, unit: str = "month"
) -> CatchUp:
    """Level-triggered period closing: the charge/usage/SLA events of every bill period that ended
    after `charged_through` (status.billing.chargedThrough) and by `now`, oldest first, at most
    `max_periods` per call so a catch-up after downtime fits in the outbox over several passes.
    The caller adds `events` to the outbox and writes `charged_through` in the same write."""
    now = ensure_utc(now, "now")
    start = sub.ledger.start_date
    if start is None:
        return CatchUp([], charged_through, False)
    cycle = Cycle.of(unit, 1, sub.time_zone)
    mark = max(
        (t for t in (charged_through, sub.ledger.billed_through) if t is not None),
        default=cycle.period_containing(start).start,
    )
    out: list[BillingEvent] = []
    period = cycle.period_containing(mark)
    if period.start < mark:
        period = cycle.next(period)
    done = 0
    new_mark = charged_through
    while period.end <= now and done < max_periods:
        out += rate_subscription(sub, period, now).events
        new_mark = period.end
        period = cycle.next(period)
        done += 1
    return CatchUp(out, new_mark, period.end <= now)


def bill_period(time_zone: str, instant: datetime, unit: str = "month", length: int = 1) -> Period:
    """The account's bill period containing `instant` (calendar months by default)."""
    return Cycle.of(unit, length, time_zone).period_containing(instant)


__all__ = [
    "BillingInput",
    "CatchUp",
    "DunningDecision",
    "ImmutableInvoice",
    "InvalidTransition",
    "InvoiceDraft",
    "InvoiceError",
    "MixedCurrency",
    "Rated",
    "TaxRule",
    "account_currency",
    "add_days",
    "bill_period",
    "catch_up",
    "compute_invoice",
    "content_digest",
    "corrections",
    "dunning_decision",
    "invoice_name",
    "is_overdue",
    "issue",
    "mark_sent",
    "rate_subscription",
    "reconcile",
    "sum_lines",
    "transition",
]

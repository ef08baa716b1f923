"""Whether a ProductOffering sells now, and the status that says so.

Pure: the offering's spec, the subscription count and the time come in; a verdict or a whole
status dict comes out. Equal inputs give an equal status (lastTransitionTime only moves when a
condition flips), so the status writer writes nothing on a resync that changed nothing.

Selling concerns new orders only: a Retired, Obsolete, unsellable or expired offering never
affects subscriptions already accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from ..api.common import TimePeriod
from ..api.productoffering import ProductOfferingSpec
from ..billing.money import MoneyError, parse_currency
from ..conditions import NOT_STALLED, Cond, merge_conditions, stalled
from ..times import beyond_computable, rfc3339, to_second, utc

SELLING_STATUSES = ("Launched", "Active")
NOT_YET_SELLING = ("In Study", "In Design", "In Test")
# Subscription states that no longer count as subscriptions of the offering.
ENDED_STATES = frozenset({"terminated", "cancelled", "aborted"})
KEEP_RUNNING = "existing subscriptions keep running, new orders are refused"


class Sellability(NamedTuple):
    """Whether new orders are accepted now: a verdict, one CamelCase reason, a sentence for humans."""

    sellable: bool
    reason: str
    message: str


def offering_problems(spec: ProductOfferingSpec) -> list[str]:
    """What makes the spec unusable, each naming its field.

    These are the CRD's CEL rules, checked again because the pydantic models do not run CEL:
    an object written before a rule existed, or built in code, would otherwise pass unnoticed.
    """
    problems: list[str] = []
    prices = spec.productOfferingPrice
    currencies = sorted({p.price.unit for p in prices if p.price is not None})
    if len(currencies) > 1:
        problems.append(f"productOfferingPrice: all prices must use one currency, found {', '.join(currencies)}")
    first_named: dict[str, int] = {}
    for i, p in enumerate(prices):
        if p.price is not None:
            try:
                parse_currency(p.price.unit, f"productOfferingPrice[{i}].price.unit")
            except MoneyError as exc:  # the billing code could not round or rate it
                problems.append(str(exc))
        j = first_named.setdefault(p.name, i)
        if j != i:
            problems.append(
                f"productOfferingPrice[{i}].name: {p.name!r} is also the name of productOfferingPrice[{j}];"
                " price names must be unique (bill lines tell prices apart by name)"
            )
    if not any(p.priceType == "recurring" for p in prices):
        problems.append("productOfferingPrice: an offering needs at least one recurring price")
    for i, p in enumerate(prices):
        where = f"productOfferingPrice[{i}]"
        if p.priceType == "recurring" and p.recurringChargePeriodType is None:
            problems.append(f"{where}.recurringChargePeriodType: a recurring price needs it")
        if p.priceType != "recurring" and p.recurringChargePeriodType is not None:
            problems.append(f"{where}.recurringChargePeriodType: only recurring prices have one")
        if p.priceType == "usage" and p.unitOfMeasure is None:
            problems.append(f"{where}.unitOfMeasure: a usage price needs it")
        if p.priceType == "discount":
            if (p.percentage is None) == (p.price is None):
                problems.append(f"{where}: a discount needs exactly one of percentage or price")
        elif p.price is None or p.percentage is not None:
            problems.append(f"{where}.price: a {p.priceType} price needs a price and no percentage")
        problems += _period_problems(p.validFor, f"{where}.validFor")
    candidate = spec.serviceCandidate
    if candidate.peakBandwidthMbps is not None and candidate.peakBandwidthMbps < candidate.bandwidthMbps:
        problems.append(
            f"serviceCandidate.peakBandwidthMbps: must be at least bandwidthMbps ({candidate.bandwidthMbps})"
        )
    problems += _period_problems(spec.validFor, "validFor")
    return problems


def sellability(spec: ProductOfferingSpec, now: datetime) -> Sellability:
    """Whether a new Subscription to the offering is accepted at `now`.

    Sellable only when the spec is usable, isSellable is true, lifecycleStatus is Launched or Active
    and `now` lies within validFor (start inclusive, end exclusive; an open bound is no bound).
    """
    now = utc(now)
    problems = offering_problems(spec)
    if problems:
        return Sellability(False, "InvalidSpec", "the offering cannot be used: " + "; ".join(problems))
    status = spec.lifecycleStatus
    if status in NOT_YET_SELLING:
        return Sellability(
            False, "NotLaunched", f"lifecycleStatus is {status}: only Launched or Active offerings accept orders"
        )
    if status not in SELLING_STATUSES:  # Retired, Obsolete
        return Sellability(False, status, f"lifecycleStatus is {status}: {KEEP_RUNNING}")
    if not spec.isSellable:
        return Sellability(False, "NotSellable", f"isSellable is false: {KEEP_RUNNING}")
    start, end = validity_bounds(spec.validFor)
    if start is not None and now < start:
        return Sellability(
            False, "NotYetValid", f"validFor starts at {rfc3339(start)}: orders are accepted from then on"
        )
    if end is not None and now >= end:
        return Sellability(False, "Expired", f"validFor ended at {rfc3339(end)}: {KEEP_RUNNING}")
    until = f" until {rfc3339(end)}" if end is not None else ""
    return Sellability(True, "Sellable", f"lifecycleStatus is {status}: new orders are accepted{until}")


def next_sellability_change(spec: ProductOfferingSpec, now: datetime) -> datetime | None:
    """The next validFor bound after `now`, when sellability may flip with nothing else changing."""
    now = utc(now)
    bounds = [b for b in validity_bounds(spec.validFor) if b is not None and b > now]
    return min(bounds) if bounds else None


def counts_as_active(state: str | None) -> bool:
    """Whether a Subscription in `state` counts in activeSubscriptions (it has not ended)."""
    return state not in ENDED_STATES


def offering_status(
    generation: int,
    current_status: Mapping[str, Any] | None,
    spec: ProductOfferingSpec | None,
    active_subscriptions: int,
    now: datetime,
    *,
    invalid: str | None = None,
) -> dict[str, Any]:
    """The whole ProductOffering status.

    `spec` is None when the caller could not parse it; `invalid` then says why (e.g. the pydantic
    error naming the field). Ready is True when the spec is usable, whatever its lifecycleStatus:
    subscriptions already accepted keep running on it. Sellable says whether new orders are accepted.
    """
    now = utc(now)
    current = dict(current_status or {})
    problems = offering_problems(spec) if spec is not None else [invalid or "the spec could not be read"]
    if spec is None or problems:
        message = "; ".join(problems)
        verdict = Sellability(False, "InvalidSpec", f"the offering cannot be used: {message}")
        ready = Cond("Ready", "False", "InvalidSpec", message)
    else:
        verdict = sellability(spec, now)
        ready = Cond("Ready", "True", "SpecValid", f"{spec.name} {spec.version} is usable; {verdict.message}")
    conds = [
        ready,
        Cond("Sellable", "True" if verdict.sellable else "False", verdict.reason, verdict.message),
        stalled("InvalidSpec", f"{ready.message}; fix the ProductOffering spec")
        if ready.status == "False"
        else NOT_STALLED,
    ]
    return {
        **current,
        "observedGeneration": generation,
        "conditions": merge_conditions(current.get("conditions"), conds, generation, now),
        "sellable": verdict.sellable,
        "sellableReason": verdict.message[:1024],
        "activeSubscriptions": max(0, active_subscriptions),
    }


def price_edit_problems(before: ProductOfferingSpec, after: ProductOfferingSpec, now: datetime) -> list[str]:
    """What an edit of an offering's prices may not do at `now`: change what is billed for time already past.

    Prices are published in advance (docs/billing.md): the bill follows each price's validFor, also for a
    controller that sees the edit late, so an edit must not declare a price for time before it was written.
    Refused, naming the field: a price added without a validFor start or with a start before now; a start
    moved to before now, or moved when the price had started; a price that has started changed in any other
    way than ending it (validFor.endDateTime not before now), or removed; an ended price reopened. A price
    that has not started may be changed or removed freely, an ended one removed.
    """
    now = to_second(now)
    old = {p.name: p for p in before.productOfferingPrice}
    problems: list[str] = []
    for i, price in enumerate(after.productOfferingPrice):
        where = f"productOfferingPrice[{i}]"
        start, end = validity_bounds(price.validFor)
        was = old.pop(price.name, None)
        if was is None:
            if start is None or start < now:
                given = "it has none (in force from the beginning)" if start is None else f"not {rfc3339(start)}"
                problems.append(
                    f"{where}.validFor.startDateTime: a price added to an offering must start no earlier than"
                    f" now ({rfc3339(now)}), {given}: time already delivered keeps its price"
                )
            continue
        if was == price:
            continue
        was_start, was_end = validity_bounds(was.validFor)
        started = was_start is None or was_start <= now
        if start != was_start and (started or start is None or start < now):
            if not started:
                why = f"cannot start {'from the beginning' if start is None else 'at ' + rfc3339(start)}, before now"
            elif was_start is None:
                why = "is in force from the beginning"
            else:
                why = f"started at {rfc3339(was_start)}"
            problems.append(
                f"{where}.validFor.startDateTime: {price.name!r} {why} ({rfc3339(now)} now); a start may only"
                " move to a time not yet passed, on a price not yet started"
            )
        if end != was_end and was_end is not None and was_end <= now:
            problems.append(
                f"{where}.validFor.endDateTime: {price.name!r} ended at {rfc3339(was_end)}; an ended price"
                " cannot be reopened or moved (add a new price starting no earlier than now)"
            )
        elif end != was_end and end is not None and end < now:
            problems.append(
                f"{where}.validFor.endDateTime: {price.name!r} cannot end at {rfc3339(end)}, before now"
                f" ({rfc3339(now)}): end it no earlier than now"
            )
        rest = price.model_copy(update={"validFor": None}) != was.model_copy(update={"validFor": None})
        if rest and started:
            problems.append(
                f"{where}: {price.name!r} is in force"
                + (f" since {rfc3339(was_start)}" if was_start is not None else "")
                + "; a price in force cannot be changed in place: end it (validFor.endDateTime no earlier than"
                " now) and add the new price starting then"
            )
    for price in old.values():
        was_start, was_end = validity_bounds(price.validFor)
        if (was_start is None or was_start <= now) and (was_end is None or was_end > now):
            problems.append(
                f"productOfferingPrice: {price.name!r} is in force and cannot be removed: end it"
                " (validFor.endDateTime no earlier than now)"
            )
    return problems


def validity_bounds(period: TimePeriod | None) -> tuple[datetime | None, datetime | None]:
    """A validFor's (start, end) as UTC instants; None for an open bound."""
    if period is None:
        return None, None
    start = utc(period.startDateTime) if period.startDateTime is not None else None
    end = utc(period.endDateTime) if period.endDateTime is not None else None
    return start, end


def _period_problems(period: TimePeriod | None, where: str) -> list[str]:
    if period is not None:
        far = [
            f"{where}.{name}: {why}"
            for name in ("startDateTime", "endDateTime")
            if (moment := getattr(period, name)) is not None and (why := beyond_computable(moment)) is not None
        ]
        if far:
            return far
    start, end = validity_bounds(period)
    if start is not None and end is not None and end <= start:
        return [f"{where}.endDateTime: must be after startDateTime ({rfc3339(start)})"]
    return []

"""BillingAccounts as billing sees them (pure): which taxes a bill carries, whether a Subscription may
bill an account, the account's balances, and the credit balance a later bill carries forward.

- Tax: the account's taxRates (per jurisdiction) apply; an exemption for its taxZone valid during
  the bill period waives them; an account without taxRates (or an inline account, no resource)
  gets the controller's --tax-category/--tax-rate default.
- A Subscription may bill an account that exists, is Active (Suspended and Closed accounts take
  no new order; a Suspended one keeps existing service) and bills in the offering's currency.
- Credit balance: an issued bill whose amountDue is negative (overpaid, or a credit bill) hands
  that balance to the account's next bill as one credit line; the earlier bill then shows it as
  carriedForward and amountDue 0. The line's id derives from the earlier bill's uid, so carrying
  twice is impossible (one fact, one id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api.billingaccount import BillingAccountSpec
from ..api.common import TimePeriod, validation_message
from ..api.invoice import BillLine, InvoiceStatus, SignedMoney
from ..api.productoffering import ProductOfferingSpec
from ..times import ensure_utc
from .events import line_id
from .invoice import ISSUED, TaxRule
from .money import Money
from .periods import Period


@dataclass(frozen=True, slots=True)
class AccountProblem:
    """Why a Subscription cannot bill its account: `field` is the Subscription field at fault."""

    field: str
    reason: str  # CamelCase, for a condition
    message: str


def _exempt(spec: BillingAccountSpec, period: Period) -> bool:
    for exemption in spec.taxExemption:
        if spec.taxZone is None or exemption.issuingJurisdiction != spec.taxZone:
            continue
        valid = exemption.validFor
        start = ensure_utc(valid.startDateTime) if valid and valid.startDateTime else None
        end = ensure_utc(valid.endDateTime) if valid and valid.endDateTime else None
        if (start is None or start < period.end) and (end is None or end > period.start):
            return True
    return False


def account_taxes(spec: BillingAccountSpec | None, default: Sequence[TaxRule], period: Period) -> list[TaxRule]:
    """The taxes of a bill of the account for `period`."""
    if spec is None or spec.taxRates is None:
        rules = list(default)
    else:
        rules = [TaxRule.of(r.taxCategory, r.taxRate) for r in spec.taxRates]
    if spec is not None and _exempt(spec, period):
        return []
    return rules


def offering_currency(offering: ProductOfferingSpec | None) -> str | None:
    """The currency an offering is priced in (that of its first priced entry), None without prices."""
    for price in offering.productOfferingPrice if offering is not None else []:
        if price.price is not None:
            return price.price.unit
    return None


def account_problem(
    field: str, name: str, spec: BillingAccountSpec | None, invalid: str | None, currency: str | None, accepted: bool
) -> AccountProblem | None:
    """Why a Subscription that names BillingAccount `name` (in `field`) cannot bill it, or None.

    `accepted`: the order was accepted before; a Suspended account keeps serving it (no new orders)."""
    if invalid is not None:
        return AccountProblem(field, "BillingAccountInvalid", f"BillingAccount {name} is invalid: {invalid}")
    if spec is None:
        return AccountProblem(
            field, "BillingAccountNotFound", f"BillingAccount {name} does not exist in this namespace"
        )
    if spec.state == "Closed" or (spec.state == "Suspended" and not accepted):
        return AccountProblem(
            field, f"BillingAccount{spec.state}", f"BillingAccount {name} is {spec.state}; it takes no new orders"
        )
    if currency is not None and currency != spec.currency:
        return AccountProblem(
            field,
            "CurrencyMismatch",
            f"BillingAccount {name} bills in {spec.currency}, the ProductOffering is priced in {currency}",
        )
    return None


@dataclass(frozen=True, slots=True)
class Balances:
    outstanding: Money
    credit: Money


def balances(invoices: Sequence[InvoiceStatus], currency: str) -> Balances:
    """What the account's issued bills still ask (outstanding) and what it is owed (credit, not yet carried)."""
    outstanding, credit = Money.zero(currency), Money.zero(currency)
    for status in invoices:
        if (status.state or "new") not in ISSUED or status.amountDue is None or status.amountDue.unit != currency:
            continue
        due = Money.from_api(status.amountDue, "status.amountDue", signed=True)
        if due.amount > 0:
            outstanding = outstanding + due
        elif due.amount < 0:
            credit = credit - due
    return Balances(outstanding, credit)


@dataclass(frozen=True, slots=True)
class BillView:
    """One invoice of the account, as carrying a balance needs it."""

    name: str
    uid: str
    period: Period
    status: InvoiceStatus | None


def carry_line(source: BillView, currency: str) -> BillLine | None:
    """The credit line that carries `source`'s negative amountDue (before any carry) to a later bill."""
    status = source.status
    if status is None or (status.state or "new") not in ISSUED or status.amountDue is None:
        return None
    due = Money.from_api(status.amountDue, f"invoice/{source.name}.status.amountDue", signed=True)
    if status.carriedForward is not None:
        due = due + Money.from_api(status.carriedForward.amount, "carriedForward.amount", signed=True)
    if due.amount >= 0 or due.currency != currency:
        return None
    return BillLine(
        id=line_id(source.uid, "carriedForward", source.name),
        type="credit",
        name=f"Credit balance carried forward from {source.name}"[:256],
        subscription="",
        periodCoverage=TimePeriod(startDateTime=source.period.start, endDateTime=source.period.end),
        taxExcludedAmount=SignedMoney(**due.to_api()),
        corrects=source.name,
    )


def carried_by(source: BillView, others: Sequence[BillView]) -> tuple[str, SignedMoney] | None:
    """The issued bill that carries `source`'s credit balance and the amount, if one does."""
    wanted = line_id(source.uid, "carriedForward", source.name)
    for other in others:
        status = other.status
        if other.name == source.name or status is None or (status.state or "new") not in ISSUED:
            continue
        for line in status.lines:
            if line.id == wanted:
                return other.name, line.taxExcludedAmount
    return None


def next_draft(bills: Sequence[BillView]) -> str | None:
    """The account's bill that takes corrections and carried balances: its earliest draft (by period start,
    then name), so two drafts never both carry them."""
    drafts = [b for b in bills if b.status is None or (b.status.state or "new") not in ISSUED]
    if not drafts:
        return None
    return min(drafts, key=lambda b: (b.period.start, b.name)).name


def carried_lines(target: BillView, bills: Sequence[BillView], currency: str) -> list[BillLine]:
    """Credit lines for `target` (the account's next draft): every issued bill before it with a credit
    balance that no issued bill has carried yet."""
    out: list[BillLine] = []
    for bill in sorted(bills, key=lambda b: (b.period.start, b.name)):
        if bill.name == target.name or bill.period.start >= target.period.end:
            continue
        line = carry_line(bill, currency)
        if line is not None and carried_by(bill, bills) is None:
            out.append(line)
    return out


def parse_account(body: Mapping[str, Any] | None) -> tuple[BillingAccountSpec | None, str | None]:
    """A BillingAccount's spec, or why it does not parse (None, None when there is no object)."""
    if body is None:
        return None, None
    try:
        return BillingAccountSpec.model_validate(body.get("spec") or {}), None
    except ValidationError as exc:
        return None, validation_message(exc)

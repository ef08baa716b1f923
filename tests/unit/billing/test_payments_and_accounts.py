"""Money that cannot be rewritten and accounts as resources (pure): payments and reversals, derived
payment state, invoice CloudEvents, per-account tax, account problems, balances and carried credit."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.billingaccount import BillingAccountSpec
from controller.api.invoice import CarriedBalance, InvoiceStatus, Payment, SignedMoney
from controller.billing.account import (
    BillView,
    account_problem,
    account_taxes,
    balances,
    carried_by,
    carried_lines,
    carry_line,
    next_draft,
)
from controller.billing.invoice import (
    InvoiceDraft,
    InvoiceError,
    TaxRule,
    compute_invoice,
    issue,
    payment_state,
    reconcile,
    settled_by,
    sum_payments,
)
from controller.billing.invoice_events import InvoiceRef, invoice_event_id, transition_events
from controller.billing.money import Money
from controller.billing.periods import Period
from tests.unit.billing.conftest import billing_input, delivered, monthly, offering, utc

TZ = "Europe/Paris"
NOV = Period(utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
DEC = Period(utc(2026, 11, 30, 23), utc(2026, 12, 31, 23))
DEC1 = utc(2026, 12, 1)
VAT = [TaxRule.of("VAT", "20")]
REF = InvoiceRef("acme", "acme-001-nov", "uid-inv-1", "acme-001")


def pay(pid: str, value: str, day: int = 5, reason: str | None = None, reverses: str | None = None) -> Payment:
    return Payment.model_validate(
        {
            "id": pid,
            "amount": {"unit": "EUR", "value": value},
            "date": f"2026-12-{day:02d}T10:00:00Z",
            **({"reason": reason} if reason else {}),
            **({"reverses": reverses} if reverses else {}),
        }
    )


# -- payments and reversals ---------------------------------------------------------------------

SUMS = [
    ("nothing", [], "0.00"),
    ("one payment", [pay("a", "50")], "50.00"),
    ("two payments", [pay("a", "50"), pay("b", "70.5")], "120.50"),
    ("a reversal", [pay("a", "50"), pay("r", "-50", reason="chargeback", reverses="a")], "0.00"),
    ("a partial reversal", [pay("a", "50"), pay("r", "-20", reason="refund", reverses="a")], "30.00"),
    ("a reversal naming nothing", [pay("a", "50"), pay("r", "-5", reason="bank fee")], "45.00"),
    (
        "two partial reversals of one payment",
        [pay("a", "50"), pay("r1", "-20", reason="x", reverses="a"), pay("r2", "-30", reason="y", reverses="a")],
        "0.00",
    ),
]


@pytest.mark.parametrize(("case", "payments", "paid"), SUMS, ids=[c[0] for c in SUMS])
def test_what_was_paid(case: str, payments: list[Payment], paid: str) -> None:
    assert sum_payments(payments, "EUR") == Money.of(paid, "EUR")


BAD_PAYMENTS = [
    ("a reversal without reason", [pay("a", "50"), pay("r", "-50")], r"spec.payments\[1\].reason: a reversal"),
    (
        "a reversal of an unknown payment",
        [pay("a", "50"), pay("r", "-50", reason="x", reverses="zz")],
        r"spec.payments\[1\].reverses: 'zz' is not an earlier payment",
    ),
    (
        "a reversal before its payment",
        [pay("r", "-50", reason="x", reverses="a"), pay("a", "50")],
        r"spec.payments\[0\].reverses: 'a' is not an earlier payment",
    ),
    (
        "reversing more than was paid",
        [pay("a", "50"), pay("r1", "-30", reason="x", reverses="a"), pay("r2", "-30", reason="y", reverses="a")],
        r"spec.payments\[2\].amount.value: reverses 30.00 EUR but only 20.00 EUR of 'a' is left",
    ),
    (
        "a positive entry that reverses",
        [pay("a", "50"), pay("b", "10", reverses="a")],
        r"spec.payments\[1\].reverses: only a reversal",
    ),
    ("the same id twice", [pay("a", "50"), pay("a", "50")], r"spec.payments\[1\].id: 'a' is recorded twice"),
]


@pytest.mark.parametrize(("case", "payments", "error"), BAD_PAYMENTS, ids=[c[0] for c in BAD_PAYMENTS])
def test_bad_payments_name_the_field(case: str, payments: list[Payment], error: str) -> None:
    with pytest.raises(InvoiceError, match=error):
        sum_payments(payments, "EUR")


STATES = [
    # issued, on_hold, sent, paid, included -> state
    (False, False, False, "0", "100", "new"),
    (False, True, False, "0", "100", "onHold"),
    (False, True, False, "100", "100", "onHold"),  # a draft is never settled
    (True, False, False, "0", "100", "validated"),
    (True, True, False, "0", "100", "validated"),  # onHold is ignored once issued
    (True, False, True, "0", "100", "sent"),
    (True, False, True, "40", "100", "partiallyPaid"),
    (True, False, False, "100", "100", "settled"),
    (True, False, True, "150", "100", "settled"),
    (True, False, False, "0", "-10", "settled"),  # a credit bill asks nothing
    (True, False, True, "-10", "100", "sent"),  # more reversed than paid (a fee): nothing counts as paid
]


@pytest.mark.parametrize(("issued", "on_hold", "sent", "paid", "included", "state"), STATES)
def test_payment_state_is_derived(
    issued: bool, on_hold: bool, sent: bool, paid: str, included: str, state: str
) -> None:
    money = {k: Money.of(v, "EUR", signed=True) for k, v in (("paid", paid), ("included", included))}
    assert payment_state(issued, on_hold, sent, money["paid"], money["included"]) == state


def issued_bill() -> tuple[InvoiceStatus, InvoiceDraft]:
    draft = compute_invoice(
        "acme-001", NOV, [billing_input(offering(monthly("100.00")), delivered(NOV.start), tz=TZ)], DEC1, VAT
    )
    return issue(reconcile(None, draft, [], DEC1), draft, DEC1, TZ), draft


def test_a_reversal_takes_a_settled_bill_back_and_a_new_payment_settles_it_again() -> None:
    status, draft = issued_bill()
    assert status.amountDue == SignedMoney(unit="EUR", value="120.00")
    paid = [pay("wire-1", "120")]
    settled = reconcile(status, draft, paid, utc(2026, 12, 5))
    assert (settled.state, settled.amountPaid, settled.amountDue, settled.settledDate) == (
        "settled",
        SignedMoney(unit="EUR", value="120.00"),
        SignedMoney(unit="EUR", value="0.00"),
        utc(2026, 12, 5),
    )
    reversed_ = [*paid, pay("wire-1-return", "-120", 8, reason="returned by the bank", reverses="wire-1")]
    back = reconcile(settled, draft, reversed_, utc(2026, 12, 8))
    assert (back.state, back.amountPaid.value, back.amountDue.value, back.settledDate) == (  # type: ignore[union-attr]
        "validated",
        "0.00",
        "120.00",
        None,
    )
    again = reconcile(back, draft, [*reversed_, pay("card-7", "120", 9)], utc(2026, 12, 9))
    assert (again.state, again.settledDate) == ("settled", utc(2026, 12, 9))
    assert again.lines == status.lines and again.contentDigest == status.contentDigest, "issued content is final"


def test_a_reversal_and_a_new_payment_seen_in_one_pass_are_a_new_settlement() -> None:
    """The order chaos: the bill never looked unsettled to any pass, yet it was settled again by another
    payment; the settlement is a fact of the payments, not of what a pass happened to see."""
    status, draft = issued_bill()
    paid = [pay("wire-1", "120")]
    settled = reconcile(status, draft, paid, utc(2026, 12, 5)).model_copy(update={"recordedPayments": ["wire-1"]})
    later = [*paid, pay("wire-1-return", "-120", 8, reason="returned", reverses="wire-1"), pay("card-7", "120", 9)]
    again = reconcile(settled, draft, later, utc(2026, 12, 9))
    assert (again.state, again.settledDate) == ("settled", utc(2026, 12, 9)), "a new settlement, a new date"
    events = transition_events(REF, settled, again, later, None)
    assert facts(events)[-1] == ("settled", invoice_event_id("uid-inv-1", "settled", "card-7"))
    recorded = again.model_copy(update={"recordedPayments": [p.id for p in later]})
    assert transition_events(REF, recorded, reconcile(recorded, draft, later, utc(2026, 12, 10)), later, None) == []


@pytest.mark.parametrize(
    ("payments", "settled_by_id"),
    [
        ([("a", "100"), ("b", "20"), ("c", "5")], "b"),  # c is paid beyond the total: b settled it
        ([("a", "120"), ("r", "-120"), ("b", "120")], "b"),
        ([("a", "60")], None),  # not paid in full
        ([("a", "120"), ("r", "-10")], "a"),  # taken below the total again: still a's settlement, not a new one
    ],
)
def test_the_payment_that_settled_a_bill(payments: list[tuple[str, str]], settled_by_id: str | None) -> None:
    entries = [
        pay(pid, value, 5 + i, reason="returned" if value.startswith("-") else None)
        for i, (pid, value) in enumerate(payments)
    ]
    assert settled_by(entries, Money.of("120.00", "EUR")) == settled_by_id


def test_a_payment_beyond_the_total_seen_with_the_settling_one_keys_the_settlement_by_the_settling_one() -> None:
    status, draft = issued_bill()
    both = [pay("wire-1", "100"), pay("wire-2", "20", 6), pay("tip", "5", 7)]
    settled = reconcile(status, draft, both, utc(2026, 12, 7))
    events = transition_events(REF, status, settled, both, None)
    assert facts(events)[-1] == ("settled", invoice_event_id("uid-inv-1", "settled", "wire-2"))


def test_on_hold_keeps_a_draft_from_being_issued_but_not_from_being_recomputed() -> None:
    _, draft = issued_bill()
    held = reconcile(None, draft, [], DEC1, on_hold=True)
    assert held.state == "onHold" and held.lines == draft.lines
    assert reconcile(held, draft, [], DEC1, on_hold=False).state == "new"


# -- invoice CloudEvents ------------------------------------------------------------------------


def facts(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.type.split(".")[-2], e.id) for e in events]


def test_each_state_change_is_one_event_with_a_deterministic_id() -> None:
    draft_status = InvoiceStatus(state="new")
    status, draft = issued_bill()
    issued = transition_events(REF, draft_status, status, [], None)
    assert facts(issued) == [("issued", invoice_event_id("uid-inv-1", "issued"))]
    assert issued[0].source == "/apis/telco.intent.dev/v1alpha1/namespaces/acme/invoices/acme-001-nov"
    assert issued[0].type == "dev.intent.telco.invoice.issued.v1" and issued[0].time == DEC1
    assert issued[0].data["taxIncludedAmount"] == "120.00" and issued[0].subject == "acme-001"
    assert transition_events(REF, status, status, [], None) == [], "no change, no event"

    sent = status.model_copy(update={"state": "sent", "sentDate": utc(2026, 12, 1, 0, 5)})
    assert facts(transition_events(REF, status, sent, [], None)) == [("sent", invoice_event_id("uid-inv-1", "sent"))]

    payments = [pay("wire-1", "120")]
    settled = reconcile(sent, draft, payments, utc(2026, 12, 5))
    events = transition_events(REF, sent, settled, payments, None)
    assert [f for f, _ in facts(events)] == ["paymentReceived", "settled"]
    assert events[0].id == invoice_event_id("uid-inv-1", "paymentReceived", "wire-1")
    assert events[0].time == utc(2026, 12, 5, 10) and events[0].data["amount"] == "120.00"
    assert events[1].id == invoice_event_id("uid-inv-1", "settled", "wire-1"), "keyed by the entry that settled it"
    recorded = settled.model_copy(update={"recordedPayments": ["wire-1"]})
    reversal = [*payments, pay("r", "-120", 8, reason="chargeback", reverses="wire-1")]
    back = reconcile(recorded, draft, reversal, utc(2026, 12, 8))
    events = transition_events(REF, recorded, back, reversal, None)
    assert [(e.data["paymentId"], e.data["amount"], e.data.get("reason")) for e in events] == [
        ("r", "-120.00", "chargeback")
    ], "the reversal is its own fact; the payment is not sent again"


def test_overdue_once_per_due_date() -> None:
    status, _ = issued_bill()
    overdue = status.model_copy(update={"overdue": True})
    at = utc(2027, 1, 14)
    (event,) = transition_events(REF, status, overdue, [], at)
    assert event.id == invoice_event_id("uid-inv-1", "overdue", "20261231T000000Z") and event.time == at
    assert transition_events(REF, overdue, overdue, [], at) == []


# -- accounts -----------------------------------------------------------------------------------


def account(**spec: Any) -> BillingAccountSpec:
    return BillingAccountSpec.model_validate({"name": "Acme", "currency": "EUR", **spec})


DEFAULT = [TaxRule.of("VAT", "20")]
TAXES = [
    ("no account: the flag", None, [("VAT", "20")]),
    ("no taxRates: the flag", account(), [("VAT", "20")]),
    ("its own rates", account(taxZone="CH", taxRates=[{"taxCategory": "MWST", "taxRate": "8.1"}]), [("MWST", "8.1")]),
    ("empty rates: no tax", account(taxRates=[]), []),
    (
        "two taxes",
        account(taxRates=[{"taxCategory": "GST", "taxRate": "5"}, {"taxCategory": "PST", "taxRate": "7"}]),
        [("GST", "5"), ("PST", "7")],
    ),
    (
        "exempt in its zone",
        account(taxZone="FR", taxExemption=[{"issuingJurisdiction": "FR", "reason": "NGO"}]),
        [],
    ),
    (
        "an exemption of another zone",
        account(taxZone="FR", taxExemption=[{"issuingJurisdiction": "DE"}]),
        [("VAT", "20")],
    ),
    (
        "an exemption that ended before the period",
        account(
            taxZone="FR",
            taxExemption=[{"issuingJurisdiction": "FR", "validFor": {"endDateTime": "2026-10-01T00:00:00Z"}}],
        ),
        [("VAT", "20")],
    ),
    (
        "an exemption that starts in the period",
        account(
            taxZone="FR",
            taxExemption=[{"issuingJurisdiction": "FR", "validFor": {"startDateTime": "2026-11-15T00:00:00Z"}}],
        ),
        [],
    ),
]


@pytest.mark.parametrize(("case", "spec", "want"), TAXES, ids=[c[0] for c in TAXES])
def test_tax_per_account(case: str, spec: BillingAccountSpec | None, want: list[tuple[str, str]]) -> None:
    rules = account_taxes(spec, DEFAULT, NOV)
    assert [(r.category, format(r.rate, "f")) for r in rules] == want


FIELD = "spec.billingAccountRef.name"
PROBLEMS = [
    ("fine", account(), None, "EUR", False, None),
    ("missing", None, None, "EUR", False, "BillingAccountNotFound"),
    ("invalid", None, "spec.currency: String should match pattern", "EUR", False, "BillingAccountInvalid"),
    ("suspended, new order", account(state="Suspended"), None, "EUR", False, "BillingAccountSuspended"),
    ("suspended, accepted before", account(state="Suspended"), None, "EUR", True, None),
    ("closed", account(state="Closed"), None, "EUR", True, "BillingAccountClosed"),
    ("another currency", account(currency="USD"), None, "EUR", False, "CurrencyMismatch"),
    ("no priced offering yet", account(), None, None, False, None),
]


@pytest.mark.parametrize(
    ("case", "spec", "invalid", "currency", "accepted", "reason"), PROBLEMS, ids=[c[0] for c in PROBLEMS]
)
def test_account_problems_name_the_field(
    case: str,
    spec: BillingAccountSpec | None,
    invalid: str | None,
    currency: str | None,
    accepted: bool,
    reason: str | None,
) -> None:
    problem = account_problem(FIELD, "acme-001", spec, invalid, currency, accepted)
    if reason is None:
        assert problem is None
        return
    assert problem is not None and problem.reason == reason and problem.field == FIELD
    assert "BillingAccount acme-001" in problem.message


def test_currency_problem_says_both_currencies() -> None:
    problem = account_problem(FIELD, "acme-001", account(currency="USD"), None, "EUR", False)
    assert problem is not None and "bills in USD" in problem.message and "priced in EUR" in problem.message


# -- balances and carried credit ----------------------------------------------------------------


def bill(name: str, period: Period, state: str | None, due: str | None, **extra: Any) -> BillView:
    status = None
    if state is not None:
        status = InvoiceStatus(
            state=state,  # type: ignore[arg-type]
            amountDue=SignedMoney(unit="EUR", value=due) if due is not None else None,
            **extra,
        )
    return BillView(name, f"uid-{name}", period, status)


def test_balances_from_issued_bills_only() -> None:
    views = [
        bill("oct", Period(utc(2026, 9, 30, 22), NOV.start), "partiallyPaid", "30.00"),
        bill("nov", NOV, "settled", "-12.50"),
        bill("dec", DEC, "new", "99.00"),
    ]
    owed = balances([v.status for v in views if v.status is not None], "EUR")
    assert (owed.outstanding, owed.credit) == (Money.of("30.00", "EUR"), Money.of("12.50", "EUR"))


def test_a_credit_balance_is_carried_once_to_the_next_draft() -> None:
    nov = bill("nov", NOV, "settled", "-12.50")
    dec = bill("dec", DEC, "new", None)
    jan = bill("jan", Period(DEC.end, utc(2027, 1, 31, 23)), None, None)
    assert next_draft([nov, dec, jan]) == "dec", "the earliest draft carries it"
    (line,) = carried_lines(dec, [nov, dec, jan], "EUR")
    assert line.type == "credit" and line.taxExcludedAmount == SignedMoney(unit="EUR", value="-12.50")
    assert line.corrects == "nov" and line.subscription == ""
    assert carry_line(nov, "USD") is None, "never across currencies"
    # once December is issued with that line, November shows it carried and nobody carries it again
    dec_issued = BillView("dec", "uid-dec", DEC, InvoiceStatus(state="validated", lines=[line]))
    assert carried_by(nov, [nov, dec_issued, jan]) == ("dec", line.taxExcludedAmount)
    assert carried_lines(jan, [nov, dec_issued, jan], "EUR") == []
    # the line derives from the carried bill: the same balance recomputed has the same id
    carried = nov.status.model_copy(  # type: ignore[union-attr]
        update={
            "amountDue": SignedMoney(unit="EUR", value="0.00"),
            "carriedForward": CarriedBalance(invoice="dec", amount=line.taxExcludedAmount),
        }
    )
    again = carry_line(BillView("nov", "uid-nov", NOV, carried), "EUR")
    assert again is not None and again.id == line.id


def test_nothing_to_carry() -> None:
    for view in (
        bill("a", NOV, "partiallyPaid", "10.00"),
        bill("b", NOV, "settled", "0.00"),
        bill("c", NOV, "new", "-5.00"),  # a draft's balance is not final
        bill("d", NOV, None, None),
    ):
        assert carry_line(view, "EUR") is None, view.name


def test_carried_lines_land_on_the_bill_total() -> None:
    nov = bill("nov", NOV, "settled", "-12.50")
    dec = bill("dec", DEC, "new", None)
    sub = billing_input(offering(monthly("100.00")), delivered(NOV.start), tz=TZ)
    draft = compute_invoice(
        "acme-001", DEC, [sub], utc(2027, 1, 1), [], extra_lines=carried_lines(dec, [nov, dec], "EUR"), time_zone=TZ
    )
    assert draft.tax_excluded == Money.of("87.50", "EUR")

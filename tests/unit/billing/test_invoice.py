"""Invoices: lines, tax, totals, names, currency, states, corrections, dunning."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from controller.api.common import DNS_SUBDOMAIN
from controller.api.invoice import BillLine, InvoiceStatus, SignedMoney
from controller.api.productoffering import PaymentPolicy
from controller.billing import events as ev
from controller.billing.invoice import (
    BillingInput,
    ImmutableInvoice,
    InvalidTransition,
    InvoiceDraft,
    InvoiceError,
    MixedCurrency,
    TaxRule,
    add_days,
    bill_period,
    catch_up,
    compute_invoice,
    content_digest,
    corrections,
    dunning_decision,
    invoice_name,
    is_overdue,
    issue,
    mark_sent,
    rate_subscription,
    reconcile,
    transition,
)
from controller.billing.ledger import Ledger
from controller.billing.money import Money, MoneyError
from controller.billing.periods import Cycle, Period
from controller.billing.rating import Meter
from tests.unit.billing.conftest import (
    billing_input,
    delivered,
    discount,
    monthly,
    offering,
    one_time,
    recurring,
    usage,
    utc,
)

TZ = "Europe/Paris"
NOV = Period(utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))  # November 2026 in Paris
DEC1 = utc(2026, 12, 1)
VAT = [TaxRule.of("VAT", "20")]


def amounts(lines: list[BillLine]) -> list[tuple[str, str]]:
    return [(ln.type, ln.taxExcludedAmount.value) for ln in lines]


def test_a_full_month_with_setup_usage_and_vat() -> None:
    spec = offering(monthly("49.90"), one_time("99.00"), usage("0.05"))
    cycle = Cycle.of("month", 1, TZ)
    meter = Meter().observe("k", 0, utc(2026, 11, 1), cycle).observe("k", 200 * 10**9, utc(2026, 11, 20), cycle)
    sub = billing_input(spec, delivered(NOV.start), tz=TZ, meter=meter)
    draft = compute_invoice("acme-001", NOV, [sub], DEC1, VAT, time_zone=TZ)
    assert amounts(draft.lines) == [("oneTimeCharge", "99.00"), ("recurringCharge", "49.90"), ("usageCharge", "10.00")]
    assert draft.tax_excluded == Money.of("158.90", "EUR")
    assert [t.taxAmount.value for t in draft.tax_items] == ["31.78"]
    assert draft.tax_included == Money.of("190.68", "EUR") == draft.amount_due
    assert draft.name == "acme-001-20261101-20261201"
    # every line traces back to its events, and the facts closed by DEC1 are among the events
    emitted = {e.id for e in draft.events}
    activation = ev.event_id("uid-fiber-1", "activated", "")
    assert draft.lines[0].events == [activation]
    assert all(ln.events and (set(ln.events) <= emitted) for ln in draft.lines[1:])
    assert {e.fact for e in draft.events} == {"charge.period", "usage.rated"}


def test_line_ids_are_deterministic_and_distinct() -> None:
    spec = offering(monthly("10"), one_time("5"), discount(percentage="10"))
    first = compute_invoice("a", NOV, [billing_input(spec, delivered(NOV.start), account="a", tz=TZ)], DEC1)
    again = compute_invoice("a", NOV, [billing_input(spec, delivered(NOV.start), account="a", tz=TZ)], DEC1)
    assert [ln.id for ln in first.lines] == [ln.id for ln in again.lines]
    assert len({ln.id for ln in first.lines}) == len(first.lines) == 3
    other = compute_invoice("a", NOV, [billing_input(spec, delivered(NOV.start), account="a", name="x", tz=TZ)], DEC1)
    assert not {ln.id for ln in first.lines} & {ln.id for ln in other.lines}


def test_tax_is_computed_on_the_total_and_rounded_once() -> None:
    subs = [billing_input(offering(monthly("0.05")), delivered(NOV.start), name=f"s{i}") for i in range(3)]
    draft = compute_invoice("acme-001", NOV, subs, DEC1, [TaxRule.of("VAT", "10")])
    # per line 0.005 would round to 0.01 each (0.03); on the total 0.015 -> 0.02
    assert draft.tax_items[0].taxAmount.value == "0.02"
    assert draft.tax_included == draft.tax_excluded + Money.of("0.02", "EUR")
    two = compute_invoice("acme-001", NOV, subs, DEC1, [TaxRule.of("VAT", "10"), TaxRule.of("Telecom", "2.5")])
    assert [t.taxCategory for t in two.tax_items] == ["VAT", "Telecom"] and two.tax_included.value_string() == "0.17"


def test_no_ready_time_means_no_recurring_charge() -> None:
    ordered = Ledger().record(NOV.start, subscription_active=True)  # never Ready
    draft = compute_invoice("acme-001", NOV, [billing_input(offering(monthly("49.90"), one_time("99")), ordered)], DEC1)
    assert draft.lines == [] and draft.tax_included.is_zero()


def test_start_and_suspension_mid_month_are_prorated() -> None:
    ledger = Ledger().record(utc(2026, 11, 10, 23), subscription_active=True, service_ready=True)  # 11 Nov Paris
    ledger = ledger.record(utc(2026, 11, 20, 23), subscription_active=False)  # suspended 21 Nov
    draft = compute_invoice("acme-001", NOV, [billing_input(offering(monthly("30.00")), ledger, tz=TZ)], DEC1)
    assert amounts(draft.lines) == [("recurringCharge", "10.00")]  # 10 of 30 days


def test_weekly_price_on_a_monthly_bill_is_sliced_and_telescopes() -> None:
    spec = offering(recurring("week", "7.00"))
    sub = billing_input(spec, delivered(utc(2026, 10, 1)), tz="UTC")
    oct_, nov = Period(utc(2026, 10, 1), utc(2026, 11, 1)), Period(utc(2026, 11, 1), utc(2026, 12, 1))
    octl = rate_subscription(sub, oct_, DEC1).lines
    novl = rate_subscription(sub, nov, DEC1).lines
    # week of Mon 26 Oct .. Mon 2 Nov is split 6 days / 1 day between the bills and sums to 7.00
    assert octl[-1].taxExcludedAmount.value == "6.00" and novl[0].taxExcludedAmount.value == "1.00"


def test_discount_line_is_negative_and_traces_to_the_period_charge() -> None:
    spec = offering(monthly("30.00"), discount(percentage="20", end="2026-11-10T23:00:00Z"))
    draft = compute_invoice("acme-001", NOV, [billing_input(spec, delivered(NOV.start), tz=TZ)], DEC1)
    assert amounts(draft.lines) == [("recurringCharge", "30.00"), ("discount", "-2.00")]
    assert draft.lines[0].events == draft.lines[1].events
    charge = next(e for e in draft.events if e.fact == "charge.period")
    assert charge.data["discountAmount"] == "2.00" and charge.data["netAmount"] == "28.00"


def test_sla_credit_line_when_availability_misses_target() -> None:
    spec = offering(
        monthly("100.00"), sla={"availabilityTarget": "99.9", "creditPercent": "10", "creditCapPercent": "30"}
    )
    ledger = (
        delivered(NOV.start)
        .record(utc(2026, 11, 10), service_ready=False)
        .record(utc(2026, 11, 12), service_ready=True)
    )
    draft = compute_invoice("acme-001", NOV, [billing_input(spec, ledger, tz=TZ)], DEC1)
    # 10 steps * 10 % capped at 30 %: 30 % of 93.33 is 27.999, and a capped credit never exceeds the cap
    assert amounts(draft.lines) == [("recurringCharge", "93.33"), ("credit", "-27.99")]
    assert "availability 93.3333%" in draft.lines[1].name
    early = compute_invoice("acme-001", NOV, [billing_input(spec, ledger, tz=TZ)], utc(2026, 11, 20))
    assert [ln.type for ln in early.lines] == ["recurringCharge"]  # no credit before the period is over
    assert early.events == []  # nothing closed yet


def test_mixed_currencies_name_the_subscriptions() -> None:
    eur = billing_input(offering(monthly("10")), delivered(NOV.start), name="a")
    usd = billing_input(offering(monthly("10", "USD")), delivered(NOV.start), name="b")
    gbp = billing_input(offering(monthly("10", "GBP")), delivered(NOV.start), name="c")
    with pytest.raises(MixedCurrency) as info:
        compute_invoice("acme-001", NOV, [eur, usd, gbp], DEC1)
    assert "acme/a" in str(info.value) and "acme/b" in str(info.value) and "acme/c" in str(info.value)
    assert info.value.by_currency == {"EUR": ["acme/a"], "USD": ["acme/b"], "GBP": ["acme/c"]}


def test_a_subscription_of_another_account_is_refused() -> None:
    with pytest.raises(InvoiceError, match=r"bills account other"):
        compute_invoice("acme-001", NOV, [billing_input(offering(), delivered(NOV.start), account="other")], DEC1)


def test_invoice_names() -> None:
    assert invoice_name("acme-001", NOV, TZ) == "acme-001-20261101-20261201"
    assert invoice_name("acme-001", NOV, "UTC") == "acme-001-20261031-20261130"
    odd = invoice_name("ACME_Corp.eu", NOV, TZ)
    assert re.fullmatch(r"acme-corp-eu-[0-9a-f]{8}-20261101-20261201", odd)
    assert odd != invoice_name("acme-corp-eu", NOV, TZ)
    for name in (odd, invoice_name("a", NOV), invoice_name("9" * 63, NOV)):
        assert re.fullmatch(DNS_SUBDOMAIN, name) and len(name) <= 253
    assert bill_period(TZ, utc(2026, 11, 15)) == NOV


def test_state_machine() -> None:
    assert transition(None, "validated") == "validated"
    assert transition("new", "onHold") == "onHold"
    assert transition("validated", "sent") == "sent"
    assert transition("sent", "partiallyPaid") == "partiallyPaid"
    assert transition("partiallyPaid", "settled") == "settled"
    for bad in (("settled", "new"), ("sent", "new"), ("new", "sent"), ("validated", "new")):
        with pytest.raises(InvalidTransition, match=rf"{bad[0]} -> {bad[1]}"):
            transition(*bad)


def issued() -> tuple[InvoiceStatus, InvoiceDraft]:
    spec = offering(monthly("100.00"))
    draft = compute_invoice(
        "acme-001", NOV, [billing_input(spec, delivered(NOV.start), tz=TZ)], DEC1, VAT, time_zone=TZ
    )
    status = issue(reconcile(None, draft, [], DEC1), draft, DEC1, TZ)
    return status, draft


def test_issue_freezes_the_bill() -> None:
    status, draft = issued()
    assert status.state == "validated" and status.billDate == DEC1 and status.billNo == draft.name
    assert status.paymentDueDate == utc(2026, 12, 31)
    assert status.contentDigest == content_digest(status)
    # a later recomputation with different content does not change an issued bill
    changed = compute_invoice("acme-001", NOV, [], DEC1, VAT, time_zone=TZ, currency="EUR")
    assert reconcile(status, changed, [], DEC1).lines == status.lines
    tampered = status.model_copy(update={"lines": []})
    with pytest.raises(ImmutableInvoice):
        reconcile(tampered, changed, [], DEC1)
    with pytest.raises(InvoiceError, match=r"cannot issue it before"):
        issue(InvoiceStatus(state="new"), draft, utc(2026, 11, 30), TZ)
    sent = mark_sent(status, utc(2026, 12, 2))
    assert sent.state == "sent" and sent.sentDate == utc(2026, 12, 2)


def pay(value: str, pid: str = "p1") -> dict[str, object]:
    return {"id": pid, "amount": {"unit": "EUR", "value": value}, "date": "2026-12-05T10:00:00Z"}


def test_payments_partially_pay_then_settle() -> None:
    status, draft = issued()
    assert status.amountDue == SignedMoney(unit="EUR", value="120.00")
    part = reconcile(status, draft, [pay("20")], utc(2026, 12, 5))
    assert part.state == "partiallyPaid" and part.amountDue.value == "100.00" and part.amountPaid.value == "20.00"  # type: ignore[union-attr]
    done = reconcile(part, draft, [pay("20"), pay("100", "p2")], utc(2026, 12, 6))
    assert done.state == "settled" and done.amountDue.value == "0.00" and done.settledDate == utc(2026, 12, 6)  # type: ignore[union-attr]
    over = reconcile(status, draft, [pay("150")], utc(2026, 12, 6))
    assert over.state == "settled" and over.amountDue.value == "-30.00"  # type: ignore[union-attr]
    with pytest.raises(MoneyError, match=r"spec.payments\[0\].amount.value: 0.001 has more decimals"):
        reconcile(status, draft, [pay("0.001")], DEC1)
    with pytest.raises(MoneyError, match=r"spec.payments\[0\].amount.unit"):
        reconcile(
            status, draft, [{"id": "x", "amount": {"unit": "USD", "value": "1"}, "date": "2026-12-05T00:00:00Z"}], DEC1
        )


def test_overdue_after_due_date_plus_grace() -> None:
    status, _ = issued()
    assert not is_overdue(status, utc(2027, 1, 13, 22, 59), 14, TZ)
    assert is_overdue(status, utc(2027, 1, 14), 14, TZ)
    settled = status.model_copy(update={"state": "settled"})
    assert not is_overdue(settled, utc(2027, 6, 1), 14, TZ)
    assert not is_overdue(InvoiceStatus(state="new"), utc(2030, 1, 1), 0)
    # calendar days across DST keep the local wall time
    assert add_days(utc(2026, 3, 20, 11), 10, TZ) == utc(2026, 3, 30, 10)


def test_dunning_suspends_only_when_the_offering_says_so_and_resumes_when_settled() -> None:
    status, draft = issued()
    invoices = {"inv-nov": status}
    late = utc(2027, 2, 1)
    strict = PaymentPolicy(suspendOnOverdue=True, gracePeriodDays=14, paymentTermDays=30)
    lenient = PaymentPolicy(suspendOnOverdue=False)
    assert dunning_decision(invoices, strict, False, DEC1, TZ).action == "none"
    decision = dunning_decision(invoices, strict, False, late, TZ)
    assert decision.action == "suspend" and decision.invoices == ("inv-nov",)
    assert dunning_decision(invoices, lenient, False, late, TZ).action == "none"
    assert dunning_decision(invoices, strict, True, late, TZ).action == "none"  # already held
    partly = reconcile(status, draft, [pay("50")], late)
    assert dunning_decision({"inv-nov": partly}, strict, True, late, TZ).action == "none"  # still overdue
    paid = reconcile(status, draft, [pay("120")], late)
    assert dunning_decision({"inv-nov": paid}, strict, True, late, TZ).action == "resume"


def test_corrections_go_on_a_later_bill_as_credit_lines() -> None:
    spec = offering(monthly("30.00"))
    sub = billing_input(spec, delivered(NOV.start), tz=TZ)
    status, draft = issued()
    original = compute_invoice("acme-001", NOV, [sub], DEC1, time_zone=TZ)
    bill = issue(reconcile(None, original, [], DEC1), original, DEC1, TZ)
    # an outage recorded late: November recomputes to 20.00 instead of 30.00
    late_ledger = Ledger().record(NOV.start, subscription_active=True, service_ready=True)
    late_ledger = late_ledger.record(utc(2026, 11, 20, 23), service_ready=False)
    recomputed = rate_subscription(BillingInput(sub.ref, "fiber", spec, late_ledger, Meter(), TZ), NOV, DEC1).lines
    dec = Cycle.of("month", 1, TZ).next(NOV)
    fixes = corrections([bill], recomputed, dec, {"acme/fiber-1": "uid-fiber-1"})
    assert amounts(fixes) == [("credit", "-10.00")]
    assert fixes[0].corrects == bill.lines[0].id and fixes[0].events == bill.lines[0].events
    # once that correction is issued, a second run finds nothing left to correct
    dec_bill = InvoiceStatus(state="validated", lines=fixes)
    assert corrections([bill, dec_bill], recomputed, dec, {"acme/fiber-1": "uid-fiber-1"}) == []
    # a fact that vanished is credited in full
    assert amounts(corrections([bill], [], dec, {"acme/fiber-1": "uid-fiber-1"})) == [("credit", "-30.00")]
    # the correction lands on the December invoice, in its totals
    december = compute_invoice("acme-001", dec, [sub], utc(2027, 1, 1), extra_lines=fixes, time_zone=TZ)
    assert december.tax_excluded == Money.of("20.00", "EUR")
    assert status.state == "validated" and draft is not None


def test_from_api_objects() -> None:
    ledger = delivered(NOV.start)
    subscription = {
        "metadata": {"namespace": "acme", "name": "fiber-1", "uid": "u-1"},
        "spec": {"billingAccount": {"id": "acme-001", "timeZone": TZ}},
        "status": {"billing": {"ledger": ledger.to_status().model_dump(mode="json", exclude_none=True)}},
    }
    offer = {
        "metadata": {"name": "fiber"},
        "spec": offering(monthly("12.34")).model_dump(mode="json", exclude_none=True),
    }
    sub = BillingInput.from_objects(subscription, offer)
    assert (
        sub.time_zone == TZ
        and sub.ref.source == "/apis/telco.intent.dev/v1alpha1/namespaces/acme/subscriptions/fiber-1"
    )
    assert compute_invoice("acme-001", NOV, [sub], DEC1).tax_excluded.amount == Decimal("12.34")


def test_catch_up_emits_closed_periods_once_in_bounded_steps() -> None:
    spec = offering(monthly("10.00"))
    sub = billing_input(spec, delivered(utc(2026, 6, 10)), tz=TZ)
    now = utc(2026, 11, 15)  # June..October closed, November open
    first = catch_up(sub, None, now, max_periods=3)
    months = [e.data["periodStart"] for e in first.events]
    assert months == ["2026-05-31T22:00:00Z", "2026-06-30T22:00:00Z", "2026-07-31T22:00:00Z"]
    assert first.more and first.charged_through == utc(2026, 8, 31, 22)
    second = catch_up(sub, first.charged_through, now, max_periods=3)
    assert [e.data["periodStart"] for e in second.events] == ["2026-08-31T22:00:00Z", "2026-09-30T22:00:00Z"]
    assert not second.more and second.charged_through == utc(2026, 10, 31, 23)
    again = catch_up(sub, second.charged_through, now)
    assert again.events == [] and again.charged_through == second.charged_through
    assert first.events[0].data["amount"] == "6.97"  # 10.00 x 502 of 720 hours (from 10 June 02:00 Paris)
    never = catch_up(billing_input(spec, Ledger(), tz=TZ), None, now)
    assert never.events == [] and never.charged_through is None


def test_price_validity_windows_and_unique_names() -> None:
    promo = {**monthly("30.00"), "validFor": {"endDateTime": "2026-11-10T23:00:00Z"}}
    regular = {**monthly("60.00", name="Regular"), "validFor": {"startDateTime": "2026-11-10T23:00:00Z"}}
    draft = compute_invoice(
        "acme-001", NOV, [billing_input(offering(promo, regular), delivered(NOV.start), tz=TZ)], DEC1
    )
    assert sorted(amounts(draft.lines)) == [("recurringCharge", "10.00"), ("recurringCharge", "40.00")]
    late_setup = {**one_time("99"), "validFor": {"startDateTime": "2027-01-01T00:00:00Z"}}
    assert (
        compute_invoice(
            "acme-001", NOV, [billing_input(offering(monthly("1"), late_setup), delivered(NOV.start), tz=TZ)], DEC1
        )
        .lines[0]
        .type
        == "recurringCharge"
    )
    twice = offering(monthly("1"), monthly("2"))
    with pytest.raises(InvoiceError, match=r"productOfferingPrice\[1\].name: 'Monthly fee' repeats"):
        compute_invoice("acme-001", NOV, [billing_input(twice, delivered(NOV.start))], DEC1)

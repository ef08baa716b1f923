"""CommerceController with BillingAccounts and invoice CloudEvents, against the in-memory API server of
test_runtime: the invoice outbox written with the transition, sent on delivery, payments and reversals,
onHold, per-account tax and terms, the Subscription's BillingAccount condition, carried credit and late
corrections on the next bill."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from controller.billing.clock import FakeClock
from controller.billing.invoice_events import invoice_event_id
from controller.conditions import condition
from controller.kube import Ref
from tests.unit.commerce.test_runtime import API, T0, World, activate, offering_body, run, subscription_body

DAY1 = {"startDateTime": "2026-11-10T00:00:00Z", "endDateTime": "2026-11-11T00:00:00Z"}
DAY2 = {"startDateTime": "2026-11-11T00:00:00Z", "endDateTime": "2026-11-12T00:00:00Z"}


def account_body(name: str = "acme-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "BillingAccount",
        "metadata": {"name": name, "namespace": "acme"},
        "spec": {"name": "Acme", "currency": "EUR", **spec},
    }


def invoice_body(name: str = "bill", period: dict[str, str] = DAY1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Invoice",
        "metadata": {"name": name, "namespace": "acme"},
        "spec": {"billingAccount": "acme-1", "billingPeriod": period, **spec},
    }


def payment(pid: str, value: str, **extra: str) -> dict[str, Any]:
    return {"id": pid, "amount": {"unit": "EUR", "value": value}, "date": "2026-11-12T09:00:00Z", **extra}


async def add_payments(w: World, name: str, *payments: dict[str, Any]) -> None:
    body = w.obj("invoices", name)
    await w.kube.patch(
        Ref("invoices", name, "acme"), {"spec": {"payments": body["spec"].get("payments", []) + list(payments)}}
    )
    await w.idle()


def invoice_facts(w: World) -> list[str]:
    return [e.type.split(".")[-2] for e in w.sink.events if ".invoice." in e.type]


def test_invoice_state_changes_are_cloudevents_recorded_with_the_change_and_sent_on_delivery() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        await activate(w)
        clock.advance(days=2)
        await w.put("invoices", invoice_body())
        await w.idle()
        inv = w.obj("invoices", "bill")
        uid = inv["metadata"]["uid"]
        issued_id = invoice_event_id(uid, "issued")
        # the write that issued the bill carries its event: never the one without the other
        issuing = [s for r, s in w.kube.status_writes if r.plural == "invoices" and s.get("state") == "validated"]
        assert issuing and [e["id"] for e in issuing[0]["outbox"]["pending"]] == [issued_id]
        assert inv["status"]["state"] == "validated" and "sentDate" not in inv["status"]

        assert await w.ctl.deliver_once() >= 1
        await w.idle()
        inv = w.obj("invoices", "bill")["status"]
        assert inv["state"] == "sent" and inv["sentDate"] == "2026-11-12T12:00:00Z"
        assert condition(inv, "Ready")["reason"] == "Sent"  # type: ignore[index]
        await w.ctl.deliver_once()
        await w.idle()
        total = inv["taxIncludedAmount"]["value"]
        await add_payments(w, "bill", payment("wire-1", total))
        assert w.obj("invoices", "bill")["status"]["state"] == "settled"
        await add_payments(w, "bill", payment("wire-1-return", f"-{total}", reason="returned", reverses="wire-1"))
        back = w.obj("invoices", "bill")["status"]
        assert (back["state"], back["amountPaid"]["value"], back["amountDue"]["value"]) == ("sent", "0.00", total)
        assert "settledDate" not in back
        await add_payments(w, "bill", payment("card-7", total))
        for _ in range(3):
            await w.ctl.deliver_once()
            await w.idle()
        final = w.obj("invoices", "bill")["status"]
        assert final["state"] == "settled" and final["recordedPayments"] == ["wire-1", "wire-1-return", "card-7"]
        assert not final["outbox"].get("pending"), "every invoice event delivered and removed from the outbox"
        assert sorted(invoice_facts(w)) == sorted(
            ["issued", "sent", "paymentReceived", "settled", "paymentReceived", "paymentReceived", "settled"]
        )
        ids = [e.id for e in w.sink.events]
        assert len(ids) == len(set(ids)), "each fact delivered once"

    run(scenario, clock)


def test_on_hold_draft_is_not_issued_until_released() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        await activate(w)
        clock.advance(days=2)
        await w.put("invoices", invoice_body(onHold=True))
        await w.idle()
        inv = w.obj("invoices", "bill")["status"]
        assert inv["state"] == "onHold" and condition(inv, "Ready")["reason"] == "OnHold"  # type: ignore[index]
        assert inv["lines"], "a held draft is still computed"
        await w.kube.patch(Ref("invoices", "bill", "acme"), {"spec": {"onHold": False}})
        await w.idle()
        assert w.obj("invoices", "bill")["status"]["state"] == "validated"

    run(scenario, clock)


def test_a_subscription_names_the_account_it_cannot_bill() -> None:
    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body())
        ref = {"billingAccountRef": {"name": "acme-1"}}
        body = subscription_body("hq")
        del body["spec"]["billingAccount"]
        body["spec"] |= ref
        await w.put("subscriptions", body)
        await w.idle()
        sub = w.obj("subscriptions", "hq")["status"]
        ready, accepted, account = (condition(sub, t) for t in ("Ready", "OrderAccepted", "BillingAccount"))
        assert ready["status"] == "False" and accepted["status"] == "False"  # type: ignore[index]
        assert "spec.billingAccountRef.name: BillingAccount acme-1 does not exist" in ready["message"]  # type: ignore[index]
        assert (account["status"], account["reason"]) == ("False", "BillingAccountNotFound")  # type: ignore[index]
        assert not w.has("networkservices", "hq"), "no service for an order nobody pays"

        await w.put("billingaccounts", account_body(currency="USD"))
        await w.idle()
        account = condition(w.obj("subscriptions", "hq")["status"], "BillingAccount")
        assert account["reason"] == "CurrencyMismatch" and "bills in USD" in account["message"]  # type: ignore[index]

        await w.kube.delete(Ref("billingaccounts", "acme-1", "acme"))
        w.ctl.remove_account("acme", "acme-1")
        await w.put("billingaccounts", account_body(timeZone="Europe/Paris"))
        await w.idle()
        assert w.has("networkservices", "hq")
        await w.service_ready("hq", T0)
        await w.idle()
        sub = w.obj("subscriptions", "hq")["status"]
        assert sub["state"] == "active" and condition(sub, "BillingAccount")["status"] == "True"  # type: ignore[index]
        assert sub["billing"]["timeZone"] == "Europe/Paris", "recorded: a deleted account cannot move the periods"
        assert w.obj("billingaccounts", "acme-1")["status"]["subscriptions"] == 1

        await w.kube.patch(Ref("billingaccounts", "acme-1", "acme"), {"spec": {"state": "Suspended"}})
        await w.idle()
        assert w.obj("subscriptions", "hq")["status"]["state"] == "active", "a Suspended account keeps its service"
        late = subscription_body("late", endpoints=[{"device": "pe1", "port": "Ethernet2", "vlanId": 7}])
        del late["spec"]["billingAccount"]
        late["spec"] |= ref
        await w.put("subscriptions", late)
        await w.idle()
        refused = condition(w.obj("subscriptions", "late")["status"], "OrderAccepted")
        assert refused["status"] == "False" and "is Suspended; it takes no new orders" in refused["message"]  # type: ignore[index]

    run(scenario)


def test_tax_and_payment_terms_come_from_the_account() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        w.ctl.taxes = []  # the --tax-rate default is unset: only the account's rates apply
        await w.put(
            "billingaccounts",
            account_body(
                taxZone="CH",
                taxRates=[{"taxCategory": "MWST", "taxRate": "8.1"}],
                paymentPlan={"paymentTermDays": 10},
            ),
        )
        await activate(w)
        clock.advance(days=2)
        await w.put("invoices", invoice_body())
        await w.idle()
        inv = w.obj("invoices", "bill")["status"]
        assert [(t["taxCategory"], t["taxRate"]) for t in inv["taxItem"]] == [("MWST", "8.1")]
        assert inv["paymentDueDate"] == "2026-11-22T12:00:00Z", "10 days from the bill date"
        balances = {
            b["balanceType"]: b["amount"]["value"]
            for b in w.obj("billingaccounts", "acme-1")["status"]["accountBalance"]
        }
        assert balances == {"outstanding": inv["amountDue"]["value"], "credit": "0.00"}

    run(scenario, clock)


def test_an_overpayment_is_carried_to_the_next_bill_once() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        await w.put("billingaccounts", account_body())
        await activate(w)
        clock.advance(days=2)
        await w.put("invoices", invoice_body("day1"))
        await w.idle()
        total = w.obj("invoices", "day1")["status"]["taxIncludedAmount"]["value"]
        await add_payments(w, "day1", payment("p", "10.00"))
        over = w.obj("invoices", "day1")["status"]
        credit = f"{float(total) - 10:.2f}"
        assert over["state"] == "settled" and over["amountDue"]["value"] == credit
        await w.put("invoices", invoice_body("day2", DAY2))
        await w.idle()
        day2 = w.obj("invoices", "day2")["status"]
        carried = [ln for ln in day2["lines"] if ln["name"].startswith("Credit balance carried forward")]
        assert [ln["taxExcludedAmount"]["value"] for ln in carried] == [credit] and carried[0]["corrects"] == "day1"
        await w.ctl.billing_pass()
        await w.idle()
        day1 = w.obj("invoices", "day1")["status"]
        assert day1["carriedForward"] == {"invoice": "day2", "amount": {"unit": "EUR", "value": credit}}
        assert day1["amountDue"]["value"] == "0.00" and day1["state"] == "settled"
        # a third bill does not carry it again
        await w.put(
            "invoices",
            invoice_body("day3", {"startDateTime": "2026-11-12T00:00:00Z", "endDateTime": "2026-11-13T00:00:00Z"}),
        )
        await w.idle()
        assert not [ln for ln in w.obj("invoices", "day3")["status"]["lines"] if ln.get("corrects") == "day1"]

    run(scenario, clock)


def test_a_late_outage_lands_as_a_credit_line_on_the_next_bill() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        await activate(w, ready_at=T0 - timedelta(hours=12))
        clock.set(T0 + timedelta(hours=12, seconds=5))
        await w.put("invoices", invoice_body("day1"))
        await w.idle()
        day1 = w.obj("invoices", "day1")["status"]
        assert day1["state"] == "validated"
        (charge,) = [ln for ln in day1["lines"] if ln["type"] == "recurringCharge"]
        # the controller learns late that the service was down for the last 6 hours of that day
        await w.service_ready("hq", T0 + timedelta(hours=6), ready=False)
        await w.idle()
        await w.put("invoices", invoice_body("day2", DAY2))
        await w.idle()
        assert w.obj("invoices", "day1")["status"]["lines"] == day1["lines"], "the issued bill does not change"
        (fix,) = [ln for ln in w.obj("invoices", "day2")["status"]["lines"] if ln.get("corrects")]
        assert fix["type"] == "credit" and fix["corrects"] == charge["id"]
        assert fix["name"] == f"Correction: {charge['name']}"
        # 24 h billed 1.66 (49.90 per 30 days); 18 h delivered rate 1.25: the difference is credited
        assert (charge["taxExcludedAmount"]["value"], fix["taxExcludedAmount"]["value"]) == ("1.66", "-0.41")

        # once the correction is billed, a later bill finds nothing left to correct
        clock.set(T0 + timedelta(hours=36, seconds=5))
        await w.ctl.billing_pass()
        await w.idle()
        day3 = {"startDateTime": "2026-11-12T00:00:00Z", "endDateTime": "2026-11-13T00:00:00Z"}
        await w.put("invoices", invoice_body("day3", day3))
        await w.idle()
        day2 = w.obj("invoices", "day2")["status"]
        # day 2 had no service: the correction alone makes it a credit bill, settled with nothing to pay
        assert (day2["state"], day2["taxExcludedAmount"]["value"]) == ("settled", "-0.41")
        day3_lines = w.obj("invoices", "day3")["status"]["lines"]
        assert not [ln for ln in day3_lines if ln["name"].startswith("Correction")], "corrected once"
        assert [(ln["corrects"], ln["taxExcludedAmount"]["value"]) for ln in day3_lines if ln.get("corrects")] == [
            ("day2", "-0.41")
        ], "and that credit is carried forward"

    run(scenario, clock)

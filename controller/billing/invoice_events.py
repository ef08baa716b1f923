"""Invoice state changes as CloudEvents 1.0 (pure), with the subscription events' exactly-once rules.

One fact, one id: UUIDv5 of (invoice uid, fact, occurrence key). The keys: issued and sent happen
once per bill (""), paymentReceived once per payment id (a reversal is a payment entry of its own),
settled once per settlement (keyed by the payment entry that completed it: a reversal can unsettle a
bill and a later payment settle it again), overdue once per due date. `time` is when the fact occurred.

`transition_events` compares the stored status with the next one; the caller adds the events to
the invoice's outbox (status.outbox) and writes both in one resourceVersion-checked status write,
like a Subscription's transitions, so a state change is never recorded without its event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..api.common import GROUP, VERSION
from ..api.invoice import InvoiceStatus, Payment
from ..times import ensure_utc, rfc3339
from .events import BillingEvent, EventError, billing_event
from .invoice import settled_by
from .money import Money
from .periods import stamp

InvoiceFact = Literal["issued", "sent", "paymentReceived", "settled", "overdue"]
INVOICE_FACTS: tuple[InvoiceFact, ...] = ("issued", "sent", "paymentReceived", "settled", "overdue")
INVOICE_TYPE_PREFIX = "dev.intent.telco.invoice."
TYPE_SUFFIX = ".v1"
# Fixed: changing it would give every past invoice fact a new id.
INVOICE_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://telco.intent.dev/billing/invoice-events")


def invoice_event_type(fact: str) -> str:
    if fact not in INVOICE_FACTS:
        raise EventError(f"fact: {fact!r} is not one of {', '.join(INVOICE_FACTS)}")
    return f"{INVOICE_TYPE_PREFIX}{fact}{TYPE_SUFFIX}"


def invoice_event_id(uid: str, fact: str, key: str = "") -> str:
    if not uid:
        raise EventError("metadata.uid: an invoice fact needs the invoice's uid")
    invoice_event_type(fact)
    return str(uuid.uuid5(INVOICE_EVENT_NAMESPACE, f"{uid}\n{fact}\n{key}"))


@dataclass(frozen=True, slots=True)
class InvoiceRef:
    namespace: str
    name: str
    uid: str
    account: str

    @property
    def source(self) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/invoices/{self.name}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> InvoiceRef:
        meta = obj.get("metadata") or {}
        account = str((obj.get("spec") or {}).get("billingAccount") or "")
        for name, value in (
            ("metadata.namespace", meta.get("namespace")),
            ("metadata.name", meta.get("name")),
            ("metadata.uid", meta.get("uid")),
            ("spec.billingAccount", account),
        ):
            if not value:
                raise EventError(f"{name}: is required for invoice events")
        return cls(meta["namespace"], meta["name"], meta["uid"], account)


def invoice_event(
    ref: InvoiceRef, fact: InvoiceFact, key: str, time: datetime, data: Mapping[str, str]
) -> BillingEvent:
    payload = {"invoice": f"{ref.namespace}/{ref.name}", "billingAccount": ref.account, **data}
    return billing_event(
        invoice_event_id(ref.uid, fact, key), invoice_event_type(fact), ref.source, ref.account, time, payload
    )


def _amount(prefix: str, money: Any) -> dict[str, str]:
    return {prefix: money.value, "currency": money.unit} if money is not None else {}


def transition_events(
    ref: InvoiceRef,
    old: InvoiceStatus | None,
    new: InvoiceStatus,
    payments: Sequence[Payment],
    overdue_at: datetime | None,
) -> list[BillingEvent]:
    """The events of the changes from `old` to `new`: issued, sent, a paymentReceived per payment not in
    old.recordedPayments (the caller records their ids in new.recordedPayments), settled, overdue
    (`overdue_at`: when the grace period ended)."""
    before = old or InvoiceStatus()
    out: list[BillingEvent] = []
    bill = {"billNo": new.billNo or ref.name}
    if new.billDate is not None and before.billDate is None:
        data = {**bill, **_amount("taxIncludedAmount", new.taxIncludedAmount)}
        if new.paymentDueDate is not None:
            data["paymentDueDate"] = rfc3339(new.paymentDueDate)
        data["lines"] = str(len(new.lines))
        out.append(invoice_event(ref, "issued", "", new.billDate, data))
    if new.sentDate is not None and before.sentDate is None:
        out.append(invoice_event(ref, "sent", "", new.sentDate, bill))
    recorded = set(before.recordedPayments)
    for payment in payments:
        if payment.id in recorded:
            continue
        amount = Money.from_api(payment.amount, f"spec.payments[{payment.id}].amount", signed=True)
        data = {**bill, "paymentId": payment.id, "amount": amount.value_string(), "currency": amount.currency}
        if payment.reason:
            data["reason"] = payment.reason
        if payment.reverses:
            data["reverses"] = payment.reverses
        out.append(invoice_event(ref, "paymentReceived", payment.id, ensure_utc(payment.date), data))
    if new.settledDate is not None and new.settledDate != before.settledDate and new.state == "settled":
        data = {**bill, **_amount("amountPaid", new.amountPaid)}
        # one settlement per payment entry that completed it (a reversal and a new payment settle again)
        total = Money.from_api(new.taxIncludedAmount, "status.taxIncludedAmount", signed=True)
        key = settled_by(payments, total) or (payments[-1].id if payments else "")
        out.append(invoice_event(ref, "settled", key, new.settledDate, data))
    if new.overdue and not before.overdue and new.paymentDueDate is not None:
        data = {**bill, **_amount("amountDue", new.amountDue), "paymentDueDate": rfc3339(new.paymentDueDate)}
        at = overdue_at or new.paymentDueDate
        out.append(invoice_event(ref, "overdue", stamp(new.paymentDueDate), at, data))
    return out


__all__ = [
    "INVOICE_FACTS",
    "InvoiceRef",
    "invoice_event",
    "invoice_event_id",
    "invoice_event_type",
    "transition_events",
]

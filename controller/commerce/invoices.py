"""The Invoice controller: one pass per Invoice on the shared work queue, and the onCycle bills.

A draft is recomputed from its account's subscriptions (their ledgers, the offering versions in force,
the account's taxes and terms, carried balances and late corrections of earlier bills) until its period
ends, then issued once; from then on only payments move it (partiallyPaid, settled, overdue), and its
first delivery to every billing sink marks it sent. Every state change is a CloudEvent added to
`status.outbox` in the same resourceVersion-guarded write (`StatusWriter.write_checked`).

`create_on_cycle` (called by the billing pass) creates each account's onCycle Invoice for the months
that ended and had service, under a deterministic name: AlreadyExists means already done.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ..api.common import API_VERSION
from ..api.invoice import BillLine, CarriedBalance, InvoiceSpec, InvoiceStatus
from ..api.productoffering import PaymentPolicy
from ..billing.account import BillView, account_taxes, carried_by, carried_lines, next_draft
from ..billing.invoice import (
    ISSUED,
    UNPAID,
    BillingInput,
    InvoiceDraft,
    InvoiceError,
    TaxRule,
    account_currency,
    add_days,
    compute_invoice,
    corrections,
    invoice_name,
    issue,
    mark_sent,
    rate_subscription,
    reconcile,
)
from ..billing.invoice_events import InvoiceRef, invoice_event_id, transition_events
from ..billing.money import Money
from ..billing.outbox import OutboxFull
from ..billing.periods import Cycle, Period, PeriodError
from ..conditions import Cond, merge_conditions
from ..kube import Conflict, NotFound, Ref
from ..times import parse_time, rfc3339, to_second
from ..workqueue import WorkQueue
from .context import Context
from .index import BILLING_ERRORS, CommerceIndex
from .objects import Key, billing_of, label_value, rv, start_date

log = logging.getLogger(__name__)
ACCOUNT_LABEL = "telco.intent.dev/billing-account"
RUN_TYPE_LABEL = "telco.intent.dev/run-type"
ON_CYCLE_LOOKBACK = 3  # closed months considered per pass (a longer outage catches up over passes)
CLOSE_WAIT = timedelta(minutes=10)  # an onCycle bill waits this long at most for its subscriptions' period close


class InvoiceController:
    def __init__(self, ctx: Context, queue: WorkQueue[Key], taxes: list[TaxRule]) -> None:
        self.ctx = ctx
        self.queue = queue
        self.taxes = taxes  # the global rule, for accounts without their own
        self._created: set[Key] = set()  # onCycle invoices this run created (or found existing)

    async def reconcile(self, key: Key) -> None:
        for _ in range(6):
            body = self.ctx.index.invoices.get(key)
            if body is None:
                return
            try:
                await self._pass(key, body)
                return
            except (Conflict, NotFound):
                await self.ctx.reread(Ref("invoices", key[1], key[0]))
        raise RuntimeError(f"invoice {key[0]}/{key[1]} kept changing under every write")

    async def _pass(self, key: Key, body: dict[str, Any]) -> None:
        ctx, index = self.ctx, self.ctx.index
        ns, name = key
        ref = Ref("invoices", name, ns)
        now = ctx.clock.now()
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        stored_raw: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = InvoiceSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            await ctx.report_invalid_spec(ref, body, generation, exc, now)
            return
        account = spec.billingAccount
        stored: InvoiceStatus | None = None
        if stored_raw:
            with contextlib.suppress(ValidationError):
                stored = InvoiceStatus.model_validate(stored_raw)
        account_spec, account_invalid = index.account_spec((ns, account))
        inputs, tz, problems = index.account_inputs(ns, account)
        grace = max((i.payment_policy.gracePeriodDays for i in inputs), default=PaymentPolicy().gracePeriodDays)
        payments = list(spec.payments)
        box = ctx.checked_outbox(stored.outbox if stored else None, index.invoice_delivered.get(key, ()), body, now)
        new: InvoiceStatus
        period: Period | None = None
        try:
            start, end = spec.billingPeriod.startDateTime, spec.billingPeriod.endDateTime
            if start is None or end is None:
                raise InvoiceError("spec.billingPeriod: needs startDateTime and endDateTime")
            period = Period(to_second(start), to_second(end))
            event_ref = InvoiceRef.from_object(body)
            bills = index.account_bills(ns, account)
            me = BillView(name, event_ref.uid, period, stored)
            if stored is not None and (stored.state or "new") in ISSUED:
                base = stored
                if base.sentDate is None and invoice_event_id(event_ref.uid, "issued") in box.recent:
                    base = mark_sent(base, now)  # the issued bill reached every billing sink
                carrier = carried_by(me, bills)
                carried = Money.from_api(carrier[1], "carriedForward", signed=True) if carrier else None
                draft_view = _issued_draft(name, account, period, base)
                new = reconcile(base, draft_view, payments, now, grace, tz, carried=carried)
                balance = CarriedBalance(invoice=carrier[0], amount=carrier[1]) if carrier else None
                new = new.model_copy(update={"carriedForward": balance})
            else:
                if account_invalid is not None:
                    raise InvoiceError(f"BillingAccount {account}: {account_invalid}")
                if problems:
                    raise InvoiceError("; ".join(problems))
                currency = account_spec.currency if account_spec is not None else None
                if currency is None and not inputs:
                    currency = index.fallback_currency(ns, account)
                code = account_currency(account, inputs, currency)
                if currency is not None and code != currency:
                    raise InvoiceError(
                        f"BillingAccount {account} bills in {currency}; its subscriptions are priced in {code}"
                    )
                extra: list[BillLine] = []
                if next_draft([*[b for b in bills if b.name != name], me]) == name:
                    extra = carried_lines(me, bills, code) + self._corrections(me, bills, inputs, now)
                terms = account_spec.paymentPlan if account_spec is not None else None
                draft = compute_invoice(
                    account,
                    period,
                    inputs,
                    now,
                    account_taxes(account_spec, self.taxes, period),
                    payments,
                    extra_lines=extra,
                    time_zone=tz,
                    currency=code,
                    payment_term_days=terms.paymentTermDays if terms is not None else None,
                )
                new = reconcile(stored, draft, payments, now, grace, tz, on_hold=spec.onHold)
                closing = spec.runType == "onCycle" and not periods_closed(index, ns, account, period, now)
                if now >= period.end and not spec.onHold and not closing:
                    new = reconcile(issue(new, draft, now, tz, bill_no=name), draft, payments, now, grace, tz)
                    due = rfc3339(new.paymentDueDate) if new.paymentDueDate else "on receipt"
                    ctx.event(body, "Normal", "Issued", f"issued: {draft.tax_included}, due {due}")
            overdue_at = add_days(new.paymentDueDate, grace, tz) if new.paymentDueDate else None
            events = transition_events(event_ref, stored, new, payments, overdue_at)
            new = new.model_copy(update={"recordedPayments": [p.id for p in payments]})
            box = box.add(events, now)  # recorded in the same resourceVersion-checked write as the change
            new = new.model_copy(update={"outbox": box.to_status()})
            cond = invoice_ready(new, period, tz, spec.onHold)
        except OutboxFull as exc:
            new = (stored or InvoiceStatus()).model_copy(update={"outbox": box.to_status()})
            cond = Cond("Ready", "False", "OutboxFull", str(exc))
            ctx.outbox_signal.set()
        except (ValidationError, *BILLING_ERRORS) as exc:
            new = (stored or InvoiceStatus()).model_copy(update={"outbox": box.to_status()})
            cond = Cond("Ready", "False", type(exc).__name__, str(exc)[:4000])
            period = None
        out = new.model_dump(mode="json", exclude_none=True)
        out["observedGeneration"] = generation
        out["conditions"] = merge_conditions(stored_raw.get("conditions"), [cond], generation, now)
        for field_name in stored_raw:
            out.setdefault(field_name, None)
        after = await ctx.writer.write_checked(ref, out, stored_raw, rv(body))
        if after is not None:
            delivered = index.invoice_delivered.get(key)
            if delivered:
                delivered &= set(box.ids)  # those left the outbox in this write
            if box.pending:
                ctx.outbox_signal.set()
            if stored is not None and stored.state != new.state and new.state == "settled":
                ctx.event(after, "Normal", "Settled", f"settled on {rfc3339(now)}")
            index.upsert_invoice(after)
        self._schedule(key, new, period, grace, tz, now)

    def _corrections(
        self, target: BillView, bills: list[BillView], inputs: list[BillingInput], now: datetime
    ) -> list[BillLine]:
        """Late corrections for the account's next draft: every issued bill before it is re-rated from the
        subscriptions' ledgers as they are now; differences become credit or debit lines. Bills whose history
        was compacted can no longer change and are skipped; lines of subscriptions that are gone are left alone."""
        uid_of = {sub.ref.qualified_name: sub.ref.uid for sub in inputs}
        issued: list[InvoiceStatus] = []
        recomputed: list[BillLine] = []
        for bill in bills:
            status = bill.status
            if status is None or (status.state or "new") not in ISSUED or bill.period.end > target.period.start:
                continue
            try:
                lines = [ln for sub in inputs for ln in rate_subscription(sub, bill.period, now).lines]
            except BILLING_ERRORS:
                continue  # compacted: that history is final
            recomputed += lines
            own = [ln for ln in status.lines if ln.subscription in uid_of]
            issued.append(status.model_copy(update={"lines": own}))
        if not issued:
            return []
        return corrections(issued, recomputed, target.period, uid_of)

    def _schedule(
        self, key: Key, status: InvoiceStatus, period: Period | None, grace: int, tz: str, now: datetime
    ) -> None:
        """A draft again when its period ends (to issue it); an unpaid bill when it falls overdue."""
        if period is None:
            return
        state = status.state or "new"
        if state not in ISSUED:
            # Before its end: issue it then. After: it waits for its subscriptions to close the period (their
            # writes mark it), at most CLOSE_WAIT; an onHold draft waits for its spec to change.
            due = period.end if now < period.end else period.end + CLOSE_WAIT
            if now < due:
                self.queue.mark_after(key, (due - now).total_seconds() + 0.5)
        elif state in UNPAID and status.paymentDueDate is not None and not status.overdue:
            with contextlib.suppress(PeriodError):
                overdue_at = add_days(status.paymentDueDate, grace, tz)
                self.queue.mark_after(key, max(0.0, (overdue_at - now).total_seconds()) + 0.5)

    # -- onCycle invoices -----------------------------------------------------------------------------
    async def create_on_cycle(self, namespace: str, account: str, now: datetime) -> int:
        """Create the account's onCycle Invoice for each of the last months that ended and had service."""
        index = self.ctx.index
        subs = [
            index.subscriptions[k] for k in sorted(index.by_account[(namespace, account)]) if k in index.subscriptions
        ]
        served: list[tuple[datetime, datetime | None]] = []
        for sub in subs:
            start = start_date(sub)
            if start is not None:
                served.append((start, parse_time((sub.get("status") or {}).get("terminationDate"))))
        if not served:
            return 0
        _, tz, _ = index.account_inputs(namespace, account)
        try:
            cycle = Cycle.of("month", 1, tz)
        except PeriodError:
            return 0
        period = cycle.previous(cycle.period_containing(now))
        created = 0
        for _ in range(ON_CYCLE_LOOKBACK):
            if all(period.end <= start for start, _ in served):
                break
            if any(start < period.end and (end is None or end > period.start) for start, end in served):
                created += await self._ensure_on_cycle(namespace, account, period, tz)
            period = cycle.previous(period)
        return created

    async def _ensure_on_cycle(self, namespace: str, account: str, period: Period, tz: str) -> int:
        index = self.ctx.index
        name = invoice_name(account, period, tz)
        key = (namespace, name)
        if key in index.invoices or key in self._created:
            return 0
        for other in index.invoices_by_account.get((namespace, account), ()):
            bounds = ((index.invoices.get(other) or {}).get("spec") or {}).get("billingPeriod") or {}
            if (
                parse_time(bounds.get("startDateTime")) == period.start
                and parse_time(bounds.get("endDateTime")) == period.end
            ):
                return 0  # this account and period already have a bill (an offCycle one, under another name)
        body = {
            "apiVersion": API_VERSION,
            "kind": "Invoice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {ACCOUNT_LABEL: label_value(account), RUN_TYPE_LABEL: "onCycle"},
            },
            "spec": {
                "billingAccount": account,
                "billingPeriod": {"startDateTime": rfc3339(period.start), "endDateTime": rfc3339(period.end)},
                "runType": "onCycle",
            },
        }
        try:
            created = await self.ctx.kube.create(body, "invoices", namespace)
        except Conflict:
            self._created.add(key)  # AlreadyExists: already done
            return 0
        self._created.add(key)
        index.upsert_invoice(created)
        log.info("created onCycle invoice %s/%s", namespace, name)
        return 1


def periods_closed(index: CommerceIndex, namespace: str, account: str, period: Period, now: datetime) -> bool:
    """Whether every subscription of the account that served in `period` has closed it (chargedThrough at or
    after its end: its last samples and transitions recorded, its period events emitted), so the onCycle
    bill says what those events say. CLOSE_WAIT after the end the bill is issued anyway (what comes later
    lands as corrections on the next bill)."""
    if now >= period.end + CLOSE_WAIT:
        return True
    for key in index.by_account.get((namespace, account), ()):
        sub = index.subscriptions.get(key) or {}
        started = start_date(sub)
        ended = parse_time((sub.get("status") or {}).get("terminationDate"))
        if started is None or started >= period.end or (ended is not None and ended <= period.start):
            continue
        charged = parse_time(billing_of(sub).get("chargedThrough"))
        if charged is None or charged < period.end:
            return False
    return True


def _issued_draft(name: str, account: str, period: Period, stored: InvoiceStatus) -> InvoiceDraft:
    """What `reconcile` needs of a draft for an issued invoice (whose lines never change): its name."""
    currency = (stored.taxIncludedAmount.unit if stored.taxIncludedAmount else None) or "EUR"
    zero = Money.zero(currency)
    return InvoiceDraft(
        name=name,
        account=account,
        period=period,
        currency=currency,
        lines=list(stored.lines),
        tax_items=list(stored.taxItem),
        tax_excluded=zero,
        tax_included=zero,
        amount_paid=zero,
        amount_due=zero,
        events=[],
        payment_term_days=0,
    )


def invoice_ready(status: InvoiceStatus, period: Period, tz: str, on_hold: bool = False) -> Cond:
    state = status.state or "new"
    total = status.taxIncludedAmount
    amount = f"{total.value} {total.unit}" if total else "nothing"
    if state == "onHold":
        return Cond("Ready", "True", "OnHold", f"draft on hold (spec.onHold): {amount} so far, not issued while held")
    if state not in ISSUED:
        return Cond(
            "Ready",
            "True",
            "Draft",
            f"draft: {amount} so far, recomputed until the period ends at {rfc3339(period.end)}, then issued",
        )
    due = status.amountDue
    due_text = f"{due.value} {due.unit}" if due else "?"
    if state == "settled":
        return Cond("Ready", "True", "Settled", f"settled: {amount} paid in full")
    when = rfc3339(status.paymentDueDate) if status.paymentDueDate else "?"
    if status.overdue:
        return Cond("Ready", "True", "Overdue", f"{due_text} of {amount} overdue (due {when}, grace period over)")
    reason = {"partiallyPaid": "PartiallyPaid", "sent": "Sent"}.get(state, "Issued")
    sent = f", sent {rfc3339(status.sentDate)}" if status.sentDate else ""
    return Cond("Ready", "True", reason, f"issued{sent}: {due_text} of {amount} due by {when}")

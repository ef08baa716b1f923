"""The billing step of a Subscription pass, as a pure function: inputs -> new status, events, wake-up.

Given what the pass read (the stored status and outbox, the lifecycle's decision for this pass, the
offering versions in force, the usage samples waiting, the account's issued bills) `billing_step`
returns the whole status to write -- the lifecycle's, with the ledger, the outbox holding every event
this pass implies, usage, closed periods, payment hold and conditions -- plus the events it added,
whether the finalizer may go, and when the subscription must be looked at again. The caller writes
that status in one resourceVersion-guarded write (the outbox invariant: a fact is never recorded
without its event, nor an event without its fact), then acts on the NetworkService.

When the transition cannot be recorded (outbox or ledger full), nothing of it is: the result is
`blocked`, and its status holds only the BillingDelivered condition saying why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.productoffering import ProductOfferingSpec
from ..api.subscription import PaymentHold, SubscriptionBilling, SubscriptionSpec
from ..billing import events as ev
from ..billing.account import AccountProblem
from ..billing.events import BillingEvent, SubscriptionRef
from ..billing.invoice import BillingInput, bill_period, catch_up, rate_subscription
from ..billing.ledger import Ledger, LedgerFull, ReadyChange
from ..billing.outbox import Outbox, OutboxFull
from ..billing.periods import Cycle, PeriodError
from ..billing.rating import Meter, RatingError
from ..conditions import Cond
from ..times import parse_time, rfc3339, to_second, utc
from . import changes, lifecycle
from .context import delivered_condition
from .index import BILLING_ERRORS, Sample
from .lifecycle import FINAL_STATES, SubscriptionDecision, SubscriptionInputs
from .objects import set_condition
from .release import holding

SOON = timedelta(seconds=1)  # more ended periods than one pass closes: the next pass this soon


@dataclass(frozen=True)
class IssuedBill:
    """An issued invoice of the subscription's account, as compaction needs it."""

    run_type: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class BillingStepInputs:
    ref: SubscriptionRef
    spec: SubscriptionSpec  # the order as the version in force sells it
    offering: ProductOfferingSpec | None  # that version's offering
    billing: SubscriptionBilling  # as stored
    box: Outbox  # the stored outbox, delivered ids removed and unproven entries quarantined
    lifecycle: SubscriptionInputs
    decision: SubscriptionDecision
    plan: changes.PlanOutcome
    hold: PaymentHold | None  # the payment hold after this pass (dunning)
    now: datetime
    tz: str  # the zone billing periods are cut in
    recorded_zone: str | None  # the zone to record once billing started
    problem: AccountProblem | None  # why the BillingAccount cannot be billed
    samples: Mapping[str, Sample] = field(default_factory=dict)  # usage counters read, not yet written
    issued: Sequence[IssuedBill] = ()
    has_sink: bool = True


@dataclass(frozen=True)
class BillingStepResult:
    status: dict[str, Any]  # the whole status to write (blocked: only its conditions)
    box: Outbox
    events: tuple[BillingEvent, ...]  # what this pass added to the outbox
    blocked: bool  # the transition cannot be recorded now; nothing else may move
    released: bool  # the finalizer may go: final state, last period closed, every event delivered
    applied: Mapping[str, Sample]  # the samples this status records (or made moot)
    wake_at: datetime | None  # when a re-run may decide differently with nothing else changing
    warnings: tuple[str, ...] = ()
    plan_changes: tuple[changes.PlanChange, ...] = ()  # the offering changes this status records
    # A stretch whose Ready state was lost (the service's readyTransitions were cut past what the ledger
    # saw), recorded as not Ready by this status: the caller says so in a Warning Event.
    ready_gap: tuple[datetime, datetime] | None = None


def transition_time(decision: SubscriptionDecision, now: datetime) -> datetime:
    """When the subscription's active-ness changed in this step: the fact's time, else now."""
    moments = [f.at for f in decision.facts if f.kind in ("activated", "suspended", "resumed")]
    return moments[-1] if moments else now


def compactable_through(issued: Sequence[IssuedBill], charged: datetime | None) -> datetime | None:
    """End of the latest issued onCycle bill whose charges are recorded and whose corrections window closed
    (a later bill, which carries its late corrections, is issued too): history before it is final."""
    if charged is None:
        return None
    latest: datetime | None = None
    for bill in issued:
        if bill.run_type != "onCycle" or bill.end > utc(charged) or (latest is not None and bill.end <= latest):
            continue
        if any(later.start >= bill.end for later in issued):
            latest = bill.end
    return latest


def _fact_events(i: BillingStepInputs) -> list[BillingEvent]:
    out = [
        e
        for f in i.decision.facts
        if (e := ev.for_fact(i.ref, f.kind, f.at, f.detail, offering=i.spec.productOffering.name)) is not None
    ]
    out += [
        ev.changed(
            i.ref,
            c.at,
            c.direction,
            c.policy,
            (c.previous.offering, c.previous.revision, changes.rate_of(c.previous)),
            (c.current.offering, c.current.revision, changes.rate_of(c.current)),
        )
        for c in i.plan.changes
    ]
    return out


def reclosed_events(i: BillingStepInputs, ledger: Ledger, meter: Meter) -> list[BillingEvent]:
    """Events of facts that a revision dated back into closed periods (before `chargedThrough`) creates: the
    closed periods rated with the new versions, less the ids their rating with the stored versions had
    (those were emitted when the period closed; their new amounts reach the bills as corrections, like
    any late change to a fact)."""
    charged = i.billing.chargedThrough
    if charged is None or i.offering is None or not i.plan.changes or ledger.start_date is None:
        return []
    charged = utc(charged)
    earliest = min(c.at for c in i.plan.changes)
    if earliest >= charged:
        return []
    name = i.spec.productOffering.name
    before = BillingInput(i.ref, name, i.offering, ledger, meter, i.tz, tuple(i.billing.plans))
    after = BillingInput(i.ref, name, i.offering, ledger, meter, i.tz, i.plan.plans)
    cycle = Cycle.of("month", 1, i.tz)
    period = cycle.period_containing(earliest)
    out: list[BillingEvent] = []
    while period.start < charged:
        had = {e.id for e in rate_subscription(before, period, i.now).events}
        out += [e for e in rate_subscription(after, period, i.now).events if e.id not in had]
        period = cycle.next(period)
    return out


def _wake_at(i: BillingStepInputs, more: bool) -> datetime | None:
    spec, decision, now = i.lifecycle.spec, i.decision, i.now
    moments: list[datetime] = []
    # next_wakeup only knows requested dates and, for orders not yet accepted, the offering's validFor
    if spec.requestedStartDate or spec.requestedTerminationDate or decision.state == "created":
        wake = lifecycle.next_wakeup(i.lifecycle)
        if wake is not None:
            moments.append(wake)
    if decision.state not in FINAL_STATES:
        with contextlib.suppress(PeriodError):
            moments.append(bill_period(i.tz, now).end)
        if i.plan.wake_at is not None:
            moments.append(i.plan.wake_at)
    wake = min(moments) + SOON if moments else None
    if more:
        wake = min(wake, now + SOON) if wake is not None else now + SOON
    return wake


def billing_step(i: BillingStepInputs) -> BillingStepResult:
    stored = dict(i.lifecycle.status)
    generation, now, decision, offering = i.lifecycle.generation, i.now, i.decision, i.offering
    warnings: list[str] = []
    ledger = Ledger.from_status(i.billing.ledger)
    meter = Meter.from_status(i.billing.usage)
    svc = i.lifecycle.service
    live = svc.exists and not svc.deleting
    service_ready = live and svc.ready == "True"
    # The Ready condition's lastTransitionTime dates a transition it reports; a NetworkService being
    # deleted or gone stopped being delivered when we learn of it.
    ready_at = (svc.ready_since if live and svc.ready in ("True", "False", "Unknown") else None) or now
    blocked: Cond | None = None
    gap: tuple[datetime, datetime] | None = None
    try:
        if svc.exists:
            # Every change its status lists, so a stretch between two versions we saw is not lost.
            changes_seen = [ReadyChange(at, ready) for at, ready in svc.ready_transitions]
            ledger, gap = ledger.merge_ready(changes_seen, svc.ready_dropped_through, now)
        ledger = ledger.record(min(ready_at, now), service_ready=service_ready)
        ledger = ledger.record(transition_time(decision, now), subscription_active=decision.state == "active")
    except LedgerFull as exc:
        blocked = Cond("BillingDelivered", "False", "LedgerFull", str(exc))
    added = _fact_events(i)
    try:
        added += reclosed_events(i, ledger, meter)
    except BILLING_ERRORS as exc:
        warnings.append(f"re-rating closed periods failed: {exc}")
    box = i.box
    try:
        box = box.add(added, now)
    except OutboxFull as exc:
        blocked = Cond("BillingDelivered", "False", "OutboxFull", str(exc))
    if blocked is not None:
        # Neither the transition nor its events are recorded; the pass is redone when room is made.
        conds = set_condition(list(stored.get("conditions") or []), stored.get("conditions"), blocked, generation, now)
        return BillingStepResult(
            {"conditions": conds}, i.box, (), True, False, {}, _wake_at(i, False), (blocked.message,)
        )

    applied: dict[str, Sample] = {}
    if i.samples and decision.state == "active":
        cycle = Cycle.of("month", 1, i.tz)
        # A month whose usage.rated fact was emitted (chargedThrough) takes no more octets: what is sampled
        # after its close goes to the open month, so the bill and the event say the same.
        ends = (ledger.billed_through, i.billing.chargedThrough)
        usage_closed = max((t for t in ends if t is not None), default=None)
        # Each version's part of a period keeps its own octets: the meter is cut where the usage prices change.
        cuts = BillingInput(i.ref, "", offering, ledger, meter, i.tz, i.plan.plans).usage_cuts if i.plan.plans else []
        for counter, sample in sorted(i.samples.items()):
            try:
                meter = meter.observe(counter, sample.octets, sample.at, cycle, usage_closed, cuts)
            except (RatingError, PeriodError) as exc:
                warnings.append(f"usage sample {counter} dropped: {exc}")
            applied[counter] = sample
    elif i.samples:
        applied = dict(i.samples)  # not active any more: the samples are moot

    charged = i.billing.chargedThrough
    plans = i.plan.plans
    final = decision.state in FINAL_STATES
    closed = True  # every period that can be charged has its events in the outbox
    more = False
    billing_error: str | None = None
    if offering is not None and ledger.start_date is not None:
        horizon = ended = now
        if final:
            # The final period is closed at termination: nothing can be added to it any more.
            ended = min(now, parse_time(decision.status.get("terminationDate")) or now)
            horizon = max(now, bill_period(i.tz, ended).end)
        try:
            inp = BillingInput(i.ref, i.spec.productOffering.name, offering, ledger, meter, i.tz, i.plan.plans)
            catch = catch_up(inp, to_second(charged) if charged else None, horizon)
            # CloudEvents `time` is when the fact occurred: a final period rated ahead occurred when
            # the subscription ended; its coverage is in the data.
            closing = [ev.occurred_by(e, ended) for e in catch.events]
            if closing or catch.charged_through != charged:
                if box.would_fit(closing):
                    box = box.add(closing, now)
                    added += closing
                    charged = catch.charged_through
                else:
                    closed = False  # waits until delivery makes room
            if catch.more:  # more ended periods than one pass closes: the next ones soon
                closed, more = False, True
        except BILLING_ERRORS as exc:
            closed = False
            billing_error = f"{type(exc).__name__}: {exc}"
            warnings.append(f"period close failed: {exc}")
        through = compactable_through(i.issued, charged)
        if through is not None and (ledger.billed_through is None or through > ledger.billed_through):
            ledger = ledger.compact(through)
            meter = meter.compact(through)
            plans = changes.compact_plans(plans, through)
    elif final and ledger.start_date is not None:
        warnings.append(f"ProductOffering {i.spec.productOffering.name} is gone, its final period cannot be rated")

    new_billing = SubscriptionBilling(
        ledger=ledger.to_status(),
        outbox=box.to_status(),
        usage=meter.to_status(),
        chargedThrough=charged,
        paymentHold=i.hold,
        timeZone=i.recorded_zone if ledger.start_date is not None else None,  # fixed once billing started
        plans=list(plans),
    ).model_dump(mode="json", exclude_none=True)
    new_billing.setdefault("paymentHold", None)
    status = dict(decision.status)
    status["billing"] = new_billing
    status["nextBillDate"] = (
        rfc3339(bill_period(i.tz, now).end) if not final and ledger.start_date is not None else None
    )
    conds = list(status.get("conditions") or [])
    delivered = delivered_condition(box, stored, generation, now, i.has_sink)
    conds = set_condition(conds, stored.get("conditions"), delivered, generation, now)
    if i.spec.billingAccountRef is not None:
        problem = i.problem
        account_cond = (
            Cond("BillingAccount", "False", problem.reason, f"{problem.field}: {problem.message}")
            if problem is not None
            else Cond("BillingAccount", "True", "Active", f"bills BillingAccount {i.spec.billingAccountRef.name}")
        )
        conds = set_condition(conds, stored.get("conditions"), account_cond, generation, now)
    # Quarantined entries hold a deletion too: they may be genuine (docs/billing.md), and go with the object.
    drained = (box.depth == 0 and not box.quarantined) or not i.has_sink
    released = decision.finished and closed and drained
    if i.lifecycle.deleting and not released:
        # Never a silent hang: say what holds the finalizer, and how an operator can end it.
        reason, message = holding(closed, drained, len(box.quarantined), billing_error)
        conds = set_condition(
            conds, stored.get("conditions"), Cond("Released", "False", reason, message), generation, now
        )
    status["conditions"] = conds
    status["pendingChange"] = i.plan.pending.model_dump(mode="json", exclude_none=True) if i.plan.pending else None
    status["templateRollout"] = i.plan.rollout.model_dump(mode="json", exclude_none=True) if i.plan.rollout else None
    if gap is not None:
        warnings.append(f"Ready state from {rfc3339(gap[0])} to {rfc3339(gap[1])} unknown, recorded as not Ready")
    return BillingStepResult(
        status, box, tuple(added), False, released, applied, _wake_at(i, more), tuple(warnings), i.plan.changes, gap
    )

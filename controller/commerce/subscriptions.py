"""The Subscription controller: one level-triggered pass per Subscription, on the shared work queue.

A pass reads the Subscription and what it depends on from the index (its offering versions, its
BillingAccount, its owned NetworkService, endpoint claims, the account's invoices for dunning),
decides with the pure functions -- `changes.plan_step` (offering versions), `lifecycle.step` (state,
facts, NetworkService action) and `billing_step` (ledger, outbox, period close, conditions) -- and
then does the I/O in this order:

1. our finalizer on the Subscription (a deletion then always ends in the terminated fact) and, in
   the same moment, the owned NetworkService created when the order needs one and none exists; the
   decision is retaken on it, so the first status already says it exists;
2. the status, in ONE write through `StatusWriter.write_checked` (resourceVersion-guarded: a fact and
   its events together or not at all; on Conflict the pass is redone on the fresh object). While the
   new NetworkService has reported nothing yet, there is nothing to say but "provisioning": that waits
   (at most --subscription-progress-seconds) for the activation, which is then the first write;
3. the NetworkService patched or deleted (idempotent), the finalizer released when billing is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from .. import startup
from ..announce import Notice, stalled_notice
from ..api.common import LocalObjectReference
from ..api.productoffering import ProductOfferingSpec
from ..api.subscription import PaymentHold, SubscriptionBilling, SubscriptionSpec, SubscriptionStatus
from ..billing.account import AccountProblem, account_problem, offering_currency
from ..billing.clock import server_time_on
from ..billing.events import SubscriptionRef
from ..billing.invoice import ISSUED, bill_period, dunning_decision
from ..billing.outbox import Outbox
from ..kube import FINALIZER, Conflict, NotFound, Ref
from ..times import parse_time, rfc3339, to_second
from ..workqueue import WorkQueue
from . import changes, lifecycle, order
from .billing_step import BillingStepInputs, BillingStepResult, IssuedBill, billing_step
from .context import Context
from .index import Sample
from .lifecycle import FINAL_STATES, ChildAction, SubscriptionDecision, SubscriptionInputs
from .objects import Key, account_of, offering_of, owner_uid, rv, spec_patch
from .release import FORCE_RELEASE, force_release
from .usage import published_samples, usage_priced

log = logging.getLogger(__name__)
T = TypeVar("T")
DRAFT_DELAY_SECONDS = 5.0  # a draft invoice follows its subscriptions' writes at most this often


class ParseMemo(Generic[T]):
    """The last parse of a raw value per key, reused while the raw value is the same or equal: every pass of
    a Subscription reads its spec and stored billing, which change far less often (comparing two dicts
    costs a fraction of validating one). Parses that fail are not kept. The parsed models are never
    changed in place (the passes copy them: `model_copy`, new lists)."""

    def __init__(self, parse: Callable[[Any], T]) -> None:
        self._parse = parse
        self._last: dict[Key, tuple[Any, T]] = {}

    def __call__(self, key: Key, raw: Any) -> T:
        last = self._last.get(key)
        if last is not None and (last[0] is raw or last[0] == raw):
            return last[1]
        value = self._parse(raw)
        self._last[key] = (raw, value)
        return value

    def forget(self, key: Key) -> None:
        self._last.pop(key, None)

    def keep_only(self, live: Mapping[Key, Any]) -> None:
        """Drop the parses of keys not in `live` (deleted objects), once they outnumber the live ones: a
        deleted Subscription gets no pass of its own that would drop them."""
        if len(self._last) > 2 * len(live) + 64:
            self._last = {k: v for k, v in self._last.items() if k in live}


@dataclass(frozen=True)
class Decided:
    """What one pass decided: the order as the version in force sells it, that offering, the lifecycle's
    inputs and decision, and the billing step's result (the status to write)."""

    spec: SubscriptionSpec
    offering: ProductOfferingSpec | None
    inputs: SubscriptionInputs
    decision: SubscriptionDecision
    result: BillingStepResult


class SubscriptionController:
    def __init__(self, ctx: Context, queue: WorkQueue[Key]) -> None:
        self.ctx = ctx
        self.queue = queue
        self._force_refused: set[tuple[Ref, str]] = set()  # force-release annotations refused (reported once)
        self._progress_since: dict[Key, float] = {}  # a provisioning-only status waits since (monotonic)
        self._spec = ParseMemo(SubscriptionSpec.model_validate)
        self._billing = ParseMemo(SubscriptionBilling.model_validate)
        self._changes = ParseMemo(SubscriptionStatus.model_validate)  # its pendingChange and templateRollout

    async def reconcile(self, key: Key) -> None:
        for _ in range(6):
            body = self.ctx.index.subscriptions.get(key)
            if body is None:
                self._progress_since.pop(key, None)
                for memo in (self._spec, self._billing, self._changes):
                    memo.forget(key)
                return
            for memo in (self._spec, self._billing, self._changes):
                memo.keep_only(self.ctx.index.subscriptions)
            try:
                await self._pass(key, body)
                startup.mark("first Subscription pass")
                return
            except (Conflict, NotFound):  # changed or gone since we read it: take it as it is now
                await self.ctx.reread(Ref("subscriptions", key[1], key[0]))
        raise RuntimeError(f"subscription {key[0]}/{key[1]} kept changing under every write")

    # -- reading -------------------------------------------------------------------------------------
    def _decide(
        self, key: Key, body: Mapping[str, Any], ordered: SubscriptionSpec, svc_body: dict[str, Any] | None
    ) -> Decided:
        """Everything this pass decides, from the index and `svc_body` (the owned NetworkService): no I/O
        beyond the Warning Events of the outbox check."""
        ctx, index = self.ctx, self.ctx.index
        ns, name = key
        meta = body["metadata"]
        now = ctx.clock.now()
        stored: dict[str, Any] = dict(body.get("status") or {})
        uid = str(meta.get("uid") or "")
        billing = self._billing(key, stored.get("billing") or {})
        tz, recorded_zone = self._zone(ns, ordered, billing)
        # managedFields times are the API server's (the wall clock); the controller bills on its own clock
        written = changes.order_written_at(meta.get("managedFields"))
        written = server_time_on(ctx.clock, written) if written is not None else None
        plan = self._plan_step(key, ordered, stored, billing, now, tz, written)
        # From here on the order is the version in force: its offering, template, prices and rate.
        spec, offering = self._in_force(ordered, plan)
        problem = self._account_problem(ns, spec, offering, stored.get("state") not in (None, "created"))
        current_svc_spec = (svc_body or {}).get("spec")
        errors: tuple[order.OrderError, ...] = ()
        desired_spec: dict[str, Any] | None = None
        if offering is not None:
            errors = tuple(order.validate_order(name, spec, offering, current_svc_spec))
            if problem is not None and stored.get("state") in (None, "created"):
                errors += (order.OrderError(problem.field, problem.message),)  # no new order for a bad account
            if not errors:
                desired_spec = order.network_service_for(name, ns, uid, spec, offering, True, current_svc_spec)["spec"]
        record = index.order_of(key)
        conflicts = order.endpoint_conflicts(record, index.claims_for(record.endpoints)) if record is not None else ()
        hold = self._payment_hold(ns, spec, offering, billing, stored.get("state"), now, tz)
        inputs = SubscriptionInputs(
            name=name,
            generation=int(meta.get("generation") or 0),
            spec=spec,
            now=now,
            status=stored,
            offering=offering,
            order_errors=errors,
            endpoint_conflicts=conflicts,
            service=lifecycle.observe_service(svc_body, desired_spec),
            payment_hold=hold is not None,
            deleting=bool(meta.get("deletionTimestamp")),
        )
        decision = lifecycle.step(inputs)
        ref = SubscriptionRef(ns, name, uid, spec.account_id, ctx.settings.cluster_identity or "")
        box = ctx.checked_outbox(billing.outbox, index.delivered.get(key, ()), body, now)
        result = billing_step(
            BillingStepInputs(
                ref=ref,
                spec=spec,
                offering=offering,
                billing=billing,
                box=box,
                lifecycle=inputs,
                decision=decision,
                plan=plan,
                hold=hold,
                now=now,
                tz=tz,
                recorded_zone=recorded_zone,
                problem=problem,
                samples=self._samples(key, spec, svc_body),
                issued=self._issued_bills(ns, spec.account_id),
                has_sink=ctx.deliverer is not None,
            )
        )
        for warning in result.warnings:
            log.warning("subscription %s/%s: %s", ns, name, warning)
        return Decided(spec, offering, inputs, decision, result)

    def _samples(self, key: Key, spec: SubscriptionSpec, svc_body: Mapping[str, Any] | None) -> dict[str, Sample]:
        """The counter samples waiting for this pass: this replica's own reads and, sharded, what the owners
        of the other devices published in the NetworkDevices' status (the newer of the two per counter)."""
        samples = dict(self.ctx.index.samples.get(key, {}))
        holder_of, device_usage = self.ctx.holder_of, self.ctx.device_usage
        if holder_of is None or device_usage is None or svc_body is None:
            return samples  # no NetworkService (yet, or any more): nothing is metered on the devices
        endpoints = [(e.device, e.port, e.vlanId) for e in spec.endpoints]
        reports = {d: device_usage(d) for d, _, _ in endpoints}
        for counter, sample in published_samples(reports, endpoints, holder_of).items():
            mine = samples.get(counter)
            if mine is None or sample.at > mine.at:
                samples[counter] = sample
        return samples

    def _owned_service(self, key: Key, uid: str) -> dict[str, Any] | None:
        svc_body = self.ctx.index.services.get(key)
        if svc_body is not None and owner_uid(svc_body) not in (None, uid):
            return None  # a NetworkService of an earlier Subscription by this name, not ours
        return svc_body

    # -- the pass --------------------------------------------------------------------------------------
    async def _pass(self, key: Key, body: dict[str, Any]) -> None:
        ctx = self.ctx
        ns, name = key
        ref = Ref("subscriptions", name, ns)
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and FINALIZER not in finalizers:
            return  # nothing of ours holds it: it is going away
        uid = str(meta.get("uid") or "")
        svc_body = self._owned_service(key, uid)
        try:
            ordered = self._spec(key, body.get("spec") or {})
        except ValidationError as exc:
            await ctx.report_invalid_spec(ref, body, int(meta.get("generation") or 0), exc, ctx.clock.now())
            return
        d = self._decide(key, body, ordered, svc_body)
        if await self._offerings_caught_up(d):
            d = self._decide(key, body, ordered, svc_body)
        forced = not d.result.released and self._force_release(ref, body, deleting, d.result.box)
        released = d.result.released or forced

        add_finalizer = not deleting and FINALIZER not in finalizers and not released
        create = not d.result.blocked and d.decision.child.verb == "apply" and svc_body is None
        # Our finalizer before any status: a deletion then always goes through pendingTerminate and the
        # terminated fact. Before activation nothing is billed (a deletion then is only `cancelled`, and the
        # NetworkService goes with its owner), so the finalizer and the NetworkService are written together.
        tag, made = await asyncio.gather(
            ctx.kube.set_finalizers(ref, [*finalizers, FINALIZER], rv(body)) if add_finalizer else _none(),
            self._create_service(key, uid, d.spec, d.offering, d.decision.child) if create and d.offering else _none(),
        )
        if tag is not None:
            body = tag
            ctx.index.upsert_subscription(body, own=True)
            finalizers = list(body["metadata"].get("finalizers") or [])
        if made is not None:
            svc_body = made  # decide again on it: the first status then says it exists
            d = self._decide(key, body, ordered, svc_body)

        current = body
        stored = dict(body.get("status") or {})
        result = d.result
        if not self._waits(key, stored, d):  # provisioning only: written with the activation, or later
            after = await ctx.writer.write_checked(ref, result.status, stored, rv(body))
            if self._progress_since.pop(key, None) is not None:
                # The wake-up for the end of the wait is moot now (this pass sets its own `wake_at` below):
                # left, it would cost every order a pass --subscription-progress-seconds after it arrived.
                self.queue.cancel_wakeup(key)
            if after is not None:
                current = after
                if result.blocked:
                    ctx.index.upsert_subscription(after, own=True)
                else:
                    self._after_write(key, body, after, d)
        if result.blocked:
            log.warning("subscription %s/%s: %s", ns, name, "; ".join(result.warnings))
            ctx.outbox_signal.set()  # nothing else moves until delivery frees room
            if not forced:
                return
        await self._apply_child(key, uid, d.spec, d.offering, d.decision.child, svc_body)
        if released and FINALIZER in finalizers:
            remaining = [f for f in finalizers if f != FINALIZER]
            current = await ctx.kube.set_finalizers(ref, remaining, rv(current))
            ctx.index.upsert_subscription(current, own=True)
        if result.wake_at is not None:
            self.queue.mark_after(key, (result.wake_at - d.inputs.now).total_seconds())

    async def _offerings_caught_up(self, d: Decided) -> bool:
        """Before an order change is recorded: read the offerings it moves between from the API server (a
        quorum read), so the version it records is snapshotted from an offering at least as new as the order.

        Offerings and Subscriptions come on separate watches: a price edit written before the order change
        may not have reached the index yet, and the version recorded from that stale view (with its `changed`
        event, never recalled) would later be replaced by the revision. Returns whether the index moved (the
        pass must then decide again). Only passes that record an upgrade or downgrade read; an offering
        gone or unreadable is left to the watch."""
        moved_between = (
            (c.previous.offering, c.current.offering) for c in d.result.plan_changes if c.direction != "revision"
        )
        names = sorted({n for pair in moved_between for n in pair if n})
        index, moved = self.ctx.index, False
        for name in names:
            try:
                fresh = await self.ctx.kube.get(Ref("productofferings", name))
            except Exception as exc:  # NotFound, the API server away: decide on what the watch showed
                log.debug("reading ProductOffering %s before an order change failed: %s", name, exc)
                continue
            before = rv(index.offerings.get(name) or {})
            index.upsert_offering(fresh)  # never older than what the index holds (objects.older)
            moved = moved or rv(index.offerings.get(name) or {}) != before
        return moved

    def _waits(self, key: Key, stored: Mapping[str, Any], d: Decided) -> bool:
        """Whether this status may wait: its NetworkService is being provisioned and has reported nothing yet
        (no Ready condition), there is no fact, event, refusal, spec edit or forgery to write, and it has waited
        less than --subscription-progress-seconds. Then the pass is queued again for when the wait is over."""
        delay = self.ctx.settings.subscription_progress_seconds
        ref = Ref("subscriptions", key[1], key[0])
        if (
            delay <= 0
            or d.inputs.deleting
            or d.result.blocked
            or d.decision.state != "pendingActive"
            or d.decision.facts
            or d.result.events
            or stored.get("state") not in (None, "created", "pendingActive")
            # a spec edit of an order we already reported on is news (a fresh object's status may say 0)
            or (stored.get("state") is not None and stored.get("observedGeneration") != d.inputs.generation)
            or (d.inputs.service.exists and d.inputs.service.ready is not None)  # it reported: news to mirror
            or self.ctx.writer.distrusted(ref)
        ):
            return False
        since = self._progress_since.setdefault(key, time.monotonic())
        left = since + delay - time.monotonic()
        if left <= 0:
            return False
        self.queue.mark_after(key, left)
        return True

    def _after_write(self, key: Key, before: dict[str, Any], after: dict[str, Any], d: Decided) -> None:
        ctx, index, result = self.ctx, self.ctx.index, d.result
        delivered = index.delivered.get(key)
        if delivered:
            delivered &= set(result.box.ids)  # those left the outbox in this write
        samples = index.samples.get(key)
        if samples:
            for counter, sample in result.applied.items():
                waiting = samples.get(counter)
                if waiting is not None and (waiting is sample or waiting.at <= sample.at):
                    del samples[counter]  # recorded, or older than a published sample that was
        index.upsert_subscription(after, own=True)
        if result.box.pending:
            ctx.outbox_signal.set()
        stalled = stalled_notice(before.get("status"), after.get("status"))
        for fact in d.decision.facts:
            reason = fact.kind.capitalize()
            detail = ", ".join(f"{k}={v}" for k, v in sorted(fact.detail.items()) if v)
            message = f"{fact.kind} at {rfc3339(fact.at)}" + (f" ({detail})" if detail else "")
            if fact.kind == "aborted":
                # A failed provisioning needs a person: one Warning, saying what failed and what to do.
                message = f"{message}: {stalled.message}" if stalled else message
                stalled = Notice("Warning", reason, message)
                continue
            ctx.event(after, "Normal", reason, message)
        if ctx.writer.announcer is not None:
            ctx.writer.announcer.post(after, stalled)
        for change in change_events(result.plan_changes):
            ctx.event(after, "Normal", *change)
        if result.ready_gap is not None:
            start, end = (rfc3339(t) for t in result.ready_gap)
            ctx.event(
                after,
                "Warning",
                "ReadyHistoryLost",
                f"NetworkService {key[1]}: its Ready changes from {start} to {end} were lost (more than its"
                f" status.readyTransitions keeps while the controller could not see it); that time is recorded"
                f" as not Ready (not billed, counted as unavailable): status.billing.ledger.readyUnknown",
            )
        for inv_key in index.invoices_by_account.get((key[0], account_of(after)), ()):
            inv = index.invoices.get(inv_key)
            if inv is not None and ((inv.get("status") or {}).get("state") or "new") not in ISSUED:
                # A draft follows its subscriptions' ledgers, at most every few seconds: recomputing a
                # large account after each of its subscriptions' writes would be quadratic.
                ctx.queues.invoices.mark_after(inv_key, DRAFT_DELAY_SECONDS)

    def _force_release(self, ref: Ref, body: Mapping[str, Any], deleting: bool, box: Outbox) -> bool:
        """Whether an operator's force-release annotation ends this terminating Subscription's hold now; the
        step is audited: a Warning Event and a log line with the reason and every event it abandons."""
        meta = body.get("metadata") or {}
        verdict = force_release(meta.get("annotations"), deleting)
        if verdict is None:
            return False
        if not verdict.honoured:
            if (ref, rv(body)) not in self._force_refused:  # once per version, not every pass
                self._force_refused.add((ref, rv(body)))
                log.warning("%s: %s", ref, verdict.refused)
                self.ctx.event(body, "Warning", "ForceReleaseRefused", str(verdict.refused))
            return False
        abandoned = [e.event for e in box.pending] + [q.entry.event for q in box.quarantined]
        message = (
            f"finalizer removed by {FORCE_RELEASE} ({verdict.reason!r}) before billing finished:"
            f" {len(box.pending)} pending and {len(box.quarantined)} quarantined outbox entries abandoned"
            f"{' (' + ', '.join(e.id for e in abandoned) + ')' if abandoned else ''}; periods not closed are not billed"
        )
        log.warning("%s: %s", ref, message)
        for event in abandoned:  # the log keeps them whole: the object that held them is going
            log.warning("%s: abandoned billing event %s", ref, event.to_json())
        self.ctx.event(body, "Warning", "ForceReleased", message)
        return True

    # -- inputs of the pure steps ------------------------------------------------------------------------
    def _plan_step(
        self,
        key: Key,
        spec: SubscriptionSpec,
        stored: Mapping[str, Any],
        billing: SubscriptionBilling,
        now: datetime,
        tz: str,
        written: datetime | None = None,
    ) -> changes.PlanOutcome:
        """The offering versions after this pass: the order's changes and the offerings' edits (see changes).
        `written` is when the order's change was written, on the controller's clock."""
        if billing.plans and stored.get("state") in FINAL_STATES:
            return changes.PlanOutcome(tuple(billing.plans))  # ended: its versions are history
        index = self.ctx.index
        requested, _ = index.offering(spec.productOffering.name)
        current = billing.plans[-1].offering if billing.plans else spec.productOffering.name
        current_offering, _ = index.offering(current)
        try:
            raw = {k: stored.get(k) for k in ("pendingChange", "templateRollout") if stored.get(k)}
            status = self._changes(key, raw)
        except ValidationError:  # written by another version: decided afresh (a scheduled time is re-derived)
            status = SubscriptionStatus()
        return changes.plan_step(
            billing.plans,
            requested=spec.productOffering.name,
            requested_offering=requested,
            bandwidth=spec.bandwidthMbps,
            current_offering=current_offering,
            stored_pending=status.pendingChange,
            stored_rollout=status.templateRollout,
            billing_started=billing.ledger.startDate is not None,
            now=now,
            period_end=bill_period(tz, now).end,
            start_date=billing.ledger.startDate,
            billed_through=billing.ledger.billedThrough,
            written_period_end=bill_period(tz, written).end if written is not None and written < now else None,
        )

    def _in_force(
        self, spec: SubscriptionSpec, plan: changes.PlanOutcome
    ) -> tuple[SubscriptionSpec, ProductOfferingSpec | None]:
        """The order as the version in force sells it: its offering and rate, and that offering's spec with
        the version's prices and template (the version alone when the offering was deleted)."""
        current = plan.current
        if current is None:
            offering, _ = self.ctx.index.offering(spec.productOffering.name)
            return spec, offering
        live, _ = self.ctx.index.offering(current.offering)
        in_force = spec.model_copy(
            update={
                "productOffering": LocalObjectReference(name=current.offering),
                "bandwidthMbps": current.bandwidthMbps,
            }
        )
        return in_force, changes.as_offering(current, live)

    def _zone(self, namespace: str, spec: SubscriptionSpec, billing: SubscriptionBilling) -> tuple[str, str | None]:
        """The time zone the subscription's periods are cut in, and the one to record in its status: the
        inline account's (not recorded), else the one recorded when billing started (so a BillingAccount
        deleted later cannot move the periods), else its BillingAccount's, else UTC while it is missing."""
        if spec.inline_time_zone is not None:
            return spec.inline_time_zone, None
        if billing.timeZone:
            return billing.timeZone, billing.timeZone
        account, _ = self.ctx.index.account_spec((namespace, spec.account_id))
        return (account.timeZone, account.timeZone) if account is not None else ("UTC", None)

    def _account_problem(
        self, namespace: str, spec: SubscriptionSpec, offering: ProductOfferingSpec | None, accepted: bool
    ) -> AccountProblem | None:
        """Why the Subscription cannot bill its BillingAccount (None for the deprecated inline account)."""
        if spec.billingAccountRef is None:
            return None
        name = spec.billingAccountRef.name
        account, invalid = self.ctx.index.account_spec((namespace, name))
        return account_problem(
            "spec.billingAccountRef.name", name, account, invalid, offering_currency(offering), accepted
        )

    def _payment_hold(
        self,
        namespace: str,
        spec: SubscriptionSpec,
        offering: ProductOfferingSpec | None,
        billing: SubscriptionBilling,
        state: str | None,
        now: datetime,
        tz: str,
    ) -> PaymentHold | None:
        """Dunning: the payment hold after this pass, from the account's invoices and the offering's policy."""
        current = billing.paymentHold
        if offering is None:
            return current
        invoices = self.ctx.index.account_invoice_statuses(namespace, spec.account_id)
        decision = dunning_decision(invoices, offering.paymentPolicy, current is not None, now, tz)
        if decision.action == "suspend" and state not in FINAL_STATES:
            return PaymentHold(since=to_second(now), invoices=list(decision.invoices)[:16])
        if decision.action == "resume":
            return None
        return current

    def _issued_bills(self, namespace: str, account: str) -> tuple[IssuedBill, ...]:
        index = self.ctx.index
        out = []
        for key in index.invoices_by_account.get((namespace, account), ()):
            inv = index.invoices.get(key) or {}
            spec = inv.get("spec") or {}
            if ((inv.get("status") or {}).get("state")) not in ISSUED:
                continue
            bounds = spec.get("billingPeriod") or {}
            start, end = parse_time(bounds.get("startDateTime")), parse_time(bounds.get("endDateTime"))
            if start is not None and end is not None:
                out.append(IssuedBill(spec.get("runType"), start, end))
        return tuple(out)

    # -- the owned NetworkService --------------------------------------------------------------------------
    def _metered(self, key: Key, offering: ProductOfferingSpec | None) -> bool:
        """Whether the owned NetworkService's counters are read: the offering in force or the one ordered
        sells traffic (the label that tells the replicas driving its devices; controller/network/usage.py)."""
        ordered, _ = self.ctx.index.offering(offering_of(self.ctx.index.subscriptions.get(key) or {}))
        return usage_priced(offering) or usage_priced(ordered)

    async def _create_service(
        self, key: Key, uid: str, spec: SubscriptionSpec, offering: ProductOfferingSpec, action: ChildAction
    ) -> dict[str, Any] | None:
        ns, name = key
        metered = self._metered(key, offering)
        desired = order.network_service_for(name, ns, uid, spec, offering, action.admin_enabled, None, metered)
        # Created with the network side's finalizer, which it would otherwise add in a write of its own.
        desired["metadata"]["finalizers"] = [FINALIZER]
        try:
            created = await self.ctx.kube.create(desired, "networkservices", ns)
        except Conflict:
            log.info("NetworkService %s/%s exists but is not indexed yet (or not ours)", ns, name)
            return None
        self.ctx.index.observe_service(created, own=True)
        return created

    async def _apply_child(
        self,
        key: Key,
        uid: str,
        spec: SubscriptionSpec,
        offering: ProductOfferingSpec | None,
        action: ChildAction,
        svc_body: dict[str, Any] | None,
    ) -> None:
        ns, name = key
        ref = Ref("networkservices", name, ns)
        index = self.ctx.index
        if action.verb == "apply" and offering is not None:
            if svc_body is None:
                await self._create_service(key, uid, spec, offering, action)
                return
            current_spec = svc_body.get("spec")
            metered = self._metered(key, offering)
            desired = order.network_service_for(
                name, ns, uid, spec, offering, action.admin_enabled, current_spec, metered
            )
            patch: dict[str, Any] = {}
            spec_changes = spec_patch(current_spec or {}, desired["spec"])
            if spec_changes:
                patch["spec"] = spec_changes
            labels = (svc_body.get("metadata") or {}).get("labels") or {}
            want_labels = {order.METERED_LABEL: None, **desired["metadata"]["labels"]}  # null: not metered now
            if any(labels.get(k) != v for k, v in want_labels.items()):
                patch["metadata"] = {"labels": want_labels}
            if patch:
                try:
                    index.observe_service(await self.ctx.kube.patch(ref, patch))
                except NotFound:
                    index.forget_service(ns, name)
        elif action.verb == "set_admin" and svc_body is not None:
            wanted = "enabled" if action.admin_enabled else "disabled"
            if (svc_body.get("spec") or {}).get("adminState", "enabled") != wanted:
                with contextlib.suppress(NotFound):
                    index.observe_service(await self.ctx.kube.patch(ref, {"spec": {"adminState": wanted}}))
        elif (
            action.verb == "delete"
            and svc_body is not None
            and not (svc_body.get("metadata") or {}).get("deletionTimestamp")
        ):
            await self.ctx.kube.delete(ref)


async def _none() -> None:
    return None


def change_events(recorded: tuple[changes.PlanChange, ...]) -> list[tuple[str, str]]:
    """The Events (reason, message) announcing the offering changes a status records."""
    out = []
    for change in recorded:
        reason = {"upgrade": "Upgraded", "downgrade": "Downgraded"}.get(change.direction, "OfferingRevised")
        before, after = change.previous, change.current
        message = (
            f"{before.offering} ({changes.rate_of(before)} Mbit/s) -> {after.offering}"
            f" ({changes.rate_of(after)} Mbit/s, revision {after.revision}) at {rfc3339(change.at)}"
            f" ({change.policy})"
        )
        out.append((reason, message))
    return out

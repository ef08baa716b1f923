"""Order changes on a live Subscription (TMF622 modify) and offering revisions, as plan versions.

Pure: the recorded versions, the requested offering and rate, the live offerings and the clock come in;
the versions to record, what is pending and the change facts come out.

A *plan version* (`PlanVersion`, kept in `status.billing.plans`) is a copy of what the subscription was
sold from a moment on: the offering's prices and SLA, its network template and the chosen rate. Billing
rates each interval at the version in force during it, and the NetworkService is rendered from the
current version, so an edit of the ProductOffering reaches a subscription only through a new version:

- a price edit: a new version from the moment the controller sees it, or, when the edit declares a
  price's validFor start that had passed by then, from that start (the published schedule is what is
  billed; admission refuses a start already past when the edit is written, so this is only lateness);
- an SLA edit: a new version from the moment the controller sees it (an SLA has no validFor), never dated
  back with a price start seen in the same pass;
- a template edit: by the offering's `rolloutPolicy` (newOrdersOnly: never; nextPeriod: at the start of
  the subscription's next billing period; immediate: now);
- a change of `spec.productOffering` or `spec.bandwidthMbps`: an upgrade or a downgrade, in force now or at
  the end of the billing period by the `changePolicy` of the offering being left.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Literal

from ..api.common import TimePeriod
from ..api.productoffering import ChangePolicy, ProductOfferingPrice, ProductOfferingSpec
from ..api.subscription import PendingChange, PlanVersion, TemplateRollout
from ..times import parse_time, rfc3339, to_second
from .offering import sellability, validity_bounds

MAX_PLANS = 16
_BEGINNING = datetime.min.replace(tzinfo=UTC)  # the first version is in force from the start
Direction = Literal["upgrade", "downgrade", "revision"]
# Recurring prices compared per month: a mean Gregorian month is 365.2425 / 12 days.
_PER_MONTH: dict[str, Fraction] = {
    "day": Fraction(3652425, 120000),
    "week": Fraction(3652425, 120000 * 7),
    "month": Fraction(1),
    "year": Fraction(1, 12),
}


# An offering's digest per rate, by the parsed spec's identity (the index parses a spec once per generation):
# every pass of every subscription asks for its offering's. The spec is kept, so its id is not reused.
_OFFERING_REVISIONS: dict[tuple[int, int | None], tuple[ProductOfferingSpec, str]] = {}
_OFFERING_REVISIONS_MAX = 1024


def revision(plan_fields: PlanVersion | ProductOfferingSpec, bandwidth: int | None = None) -> str:
    """A short digest of what a version bills and provisions (prices, SLA, template, rate)."""
    if isinstance(plan_fields, ProductOfferingSpec):
        hit = _OFFERING_REVISIONS.get((id(plan_fields), bandwidth))
        if hit is not None and hit[0] is plan_fields:
            return hit[1]
        digest = _digest(plan_fields, bandwidth)
        if len(_OFFERING_REVISIONS) >= _OFFERING_REVISIONS_MAX:
            _OFFERING_REVISIONS.clear()
        _OFFERING_REVISIONS[(id(plan_fields), bandwidth)] = (plan_fields, digest)
        return digest
    return _digest(plan_fields, bandwidth)


def _digest(plan_fields: PlanVersion | ProductOfferingSpec, bandwidth: int | None) -> str:
    if isinstance(plan_fields, PlanVersion):
        prices, sla, candidate = (
            plan_fields.productOfferingPrice,
            plan_fields.serviceLevelAgreement,
            plan_fields.serviceCandidate,
        )
        bandwidth = plan_fields.bandwidthMbps
    else:
        prices, sla, candidate = (
            plan_fields.productOfferingPrice,
            plan_fields.serviceLevelAgreement,
            plan_fields.serviceCandidate,
        )
    body = {
        "prices": [p.model_dump(mode="json", exclude_none=True) for p in prices],
        "sla": sla.model_dump(mode="json") if sla is not None else None,
        "template": candidate.model_dump(mode="json", exclude_none=True),
        "bandwidth": bandwidth,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def snapshot(offering: str, spec: ProductOfferingSpec, bandwidth: int | None, since: datetime | None) -> PlanVersion:
    """The version of `offering` as published in `spec`, with the chosen rate, in force from `since`."""
    return PlanVersion(
        offering=offering,
        revision=revision(spec, bandwidth),
        since=to_second(since) if since is not None else None,
        bandwidthMbps=bandwidth,
        serviceCandidate=spec.serviceCandidate,
        productOfferingPrice=list(spec.productOfferingPrice),
        serviceLevelAgreement=spec.serviceLevelAgreement,
    )


def as_offering(plan: PlanVersion, live: ProductOfferingSpec | None) -> ProductOfferingSpec:
    """The offering as this version sells and provisions it: the live offering's terms (payment policy,
    lifecycle) with the version's prices, SLA and template; the version alone when the offering is gone."""
    fields = {
        "serviceCandidate": plan.serviceCandidate,
        "productOfferingPrice": plan.productOfferingPrice,
        "serviceLevelAgreement": plan.serviceLevelAgreement,
    }
    if live is not None:
        return live.model_copy(update=fields)
    return ProductOfferingSpec(name=plan.offering, **fields)


def rate_of(plan: PlanVersion) -> int:
    """The committed rate the version provisions."""
    return plan.bandwidthMbps or plan.serviceCandidate.bandwidthMbps


def monthly_price(plan: PlanVersion, at: datetime | None = None) -> Fraction:
    """The version's recurring prices in force at `at` (all of them when None) summed per mean month
    (to compare plans, never to bill). A price whose validFor excludes `at` does not count: a version
    with today's price and next year's (each with its validFor) costs today's."""
    total = Fraction(0)
    for price in plan.productOfferingPrice:
        if at is not None and not _valid_at(price.validFor, at):
            continue
        if price.priceType == "recurring" and price.price is not None and price.recurringChargePeriodType:
            per = _PER_MONTH[price.recurringChargePeriodType] / price.recurringChargePeriodLength
            total += Fraction(price.price.value) * per
    return total


def classify(current: PlanVersion, target: PlanVersion, at: datetime | None = None) -> Literal["upgrade", "downgrade"]:
    """A change to a lower recurring price (the prices in force at `at`), or at equal price to a lower
    rate, is a downgrade."""
    if (monthly_price(target, at), rate_of(target)) < (monthly_price(current, at), rate_of(current)):
        return "downgrade"
    return "upgrade"


def _valid_at(valid_for: TimePeriod | None, at: datetime) -> bool:
    """Whether `at` lies in validFor (start inclusive, end exclusive; an open bound is no bound)."""
    start, end = validity_bounds(valid_for)
    return (start is None or start <= at) and (end is None or at < end)


def currency_of(prices: Sequence[object]) -> str | None:
    units = {p.price.unit for p in prices if getattr(p, "price", None) is not None}  # type: ignore[attr-defined]
    return next(iter(units)) if len(units) == 1 else None


@dataclass(frozen=True, slots=True)
class PlanChange:
    """A new version took effect at `at` (the fact behind a subscription.changed event)."""

    direction: Direction
    at: datetime
    previous: PlanVersion
    current: PlanVersion
    policy: str  # immediate | endOfPeriod | newOrdersOnly | nextPeriod | priceRevision


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    plans: tuple[PlanVersion, ...]
    pending: PendingChange | None = None
    rollout: TemplateRollout | None = None
    changes: tuple[PlanChange, ...] = ()
    wake_at: datetime | None = None  # a scheduled change or rollout falls due then

    @property
    def current(self) -> PlanVersion | None:
        return self.plans[-1] if self.plans else None


def plan_step(
    plans: Sequence[PlanVersion],
    *,
    requested: str,
    requested_offering: ProductOfferingSpec | None,
    bandwidth: int | None,
    current_offering: ProductOfferingSpec | None,
    stored_pending: PendingChange | None,
    stored_rollout: TemplateRollout | None,
    billing_started: bool,
    now: datetime,
    period_end: datetime,
    start_date: datetime | None = None,
    billed_through: datetime | None = None,
    written_period_end: datetime | None = None,
) -> PlanOutcome:
    """The plan versions after this pass.

    `requested_offering` is the live spec of `requested` (spec.productOffering), `current_offering` the
    live spec of the current version's offering (None when gone). Before billing starts the order is
    simply re-read (no change is a change until something was delivered). `period_end` is the end of the
    billing period containing `now`: where endOfPeriod changes and nextPeriod rollouts land. `start_date`
    and `billed_through` are the ledger's: a revision is never dated before either (before the first, no
    version has billed anything; before the second, history is invoiced and compacted).
    `written_period_end` is the end of the period in which the order's change was written to the API
    server (`order_written_at`): an endOfPeriod change written before a period end but first seen after
    it is due at that end, not a period later.
    """
    now = to_second(now)
    if not plans or not billing_started:
        if requested_offering is None:
            return PlanOutcome(())  # nothing delivered yet: nothing to remember
        first = snapshot(requested, requested_offering, bandwidth, None)
        return PlanOutcome((first,), rollout=_rollout(first, requested_offering, None, None))
    versions = list(plans)
    changes: list[PlanChange] = []
    wake: list[datetime] = []

    # 1. the current offering was edited: prices from when their validFor says (else from now), the
    # template by its rollout policy
    current = versions[-1]
    scheduled: datetime | None = None
    if current_offering is not None:
        priced = current_offering.productOfferingPrice != current.productOfferingPrice
        price_at = _price_effective(current, current_offering, now, start_date, billed_through) if priced else None
        # An SLA declares no instant (no validFor): its edit is in force from when it is seen, also when a price
        # edit seen with it is dated back to its declared start (the SLA may have been edited after that start).
        sla_at = now if current_offering.serviceLevelAgreement != current.serviceLevelAgreement else None
        template_at: datetime | None = None
        template_policy = "priceRevision"
        if current_offering.serviceCandidate != current.serviceCandidate:
            target_rev = revision(current_offering, current.bandwidthMbps)
            if current_offering.rolloutPolicy == "immediate":
                template_at, template_policy = now, "immediate"
            elif current_offering.rolloutPolicy == "nextPeriod":
                due = period_end
                if stored_rollout is not None and stored_rollout.revision == target_rev and stored_rollout.effective:
                    due = to_second(stored_rollout.effective)
                if due <= now:
                    template_at, template_policy = max(due, _since(current)), "nextPeriod"
                else:
                    scheduled = due
                    wake.append(due)
        # One version per moment something changes (the prices may start before the template does).
        for at in sorted({t for t in (price_at, sla_at, template_at) if t is not None}):
            base = versions[-1]
            new_prices = price_at is not None and price_at <= at
            new_sla = sla_at is not None and sla_at <= at
            revised = PlanVersion(
                offering=base.offering,
                revision="",
                since=at,
                bandwidthMbps=base.bandwidthMbps,
                serviceCandidate=current_offering.serviceCandidate
                if template_at is not None and template_at <= at
                else base.serviceCandidate,
                productOfferingPrice=current_offering.productOfferingPrice if new_prices else base.productOfferingPrice,
                serviceLevelAgreement=current_offering.serviceLevelAgreement if new_sla else base.serviceLevelAgreement,
            )
            revised = revised.model_copy(update={"revision": revision(revised)})
            if revised.revision == base.revision or not _room(versions):
                continue
            policy = template_policy if at == template_at else "priceRevision"
            if at <= _since(base) or (len(versions) == 1 and start_date is not None and at <= to_second(start_date)):
                # The version in force would last no billable time: the revision replaces it from its start.
                # A first version never had a `changed` event; a later one did (events are not recalled),
                # so the replacement says it changed that one, at its instant.
                versions[-1] = revised.model_copy(update={"since": base.since})
                if len(versions) > 1:
                    changes.append(PlanChange("revision", _since(base), base, versions[-1], policy))
                continue
            versions.append(revised)
            changes.append(PlanChange("revision", at, base, revised, policy))

    # 2. the order itself changed: another offering or another rate
    pending: PendingChange | None = None
    current = versions[-1]
    if requested != current.offering or bandwidth != current.bandwidthMbps:
        refusal = _refusal(current, requested, requested_offering, bandwidth, now, len(versions))
        if refusal is not None:
            pending = PendingChange(
                direction="upgrade", offering=requested, bandwidthMbps=bandwidth, state="refused", message=refusal
            )
        else:
            assert requested_offering is not None
            target = snapshot(requested, requested_offering, bandwidth, now)
            direction = classify(current, target, now)
            policy_of = current_offering.changePolicy if current_offering is not None else ChangePolicy()
            timing = policy_of.upgrade if direction == "upgrade" else policy_of.downgrade
            due = now
            if timing == "endOfPeriod":
                due = period_end
                unseen = stored_pending is None or (stored_pending.offering, stored_pending.bandwidthMbps) != (
                    requested,
                    bandwidth,
                )
                if unseen and written_period_end is not None and written_period_end < period_end:
                    # Asked in an earlier period but first seen now (the controller was down across its end):
                    # due at the end of the period it was asked in, never in invoiced time. A change seen and
                    # refused then (its offering missing) counts from when it became possible: this period.
                    due = max(written_period_end, billed_through or written_period_end)
                if (
                    stored_pending is not None
                    and stored_pending.state == "scheduled"
                    and (stored_pending.offering, stored_pending.bandwidthMbps) == (requested, bandwidth)
                    and stored_pending.effective is not None
                ):
                    due = to_second(stored_pending.effective)
            if due <= now:
                while (
                    len(versions) > len(plans) and changes[-1].current is versions[-1] and _since(versions[-1]) >= due
                ):
                    # A revision of the offering it leaves that would start when the change is due or later
                    # (seen in this pass): it would last no time, so it is not a version and has no event,
                    # and it must not push the change past its due time.
                    versions.pop()
                    changes.pop()
                current = versions[-1]
                at = max(due, _since(current))
                target = target.model_copy(update={"since": at})
                _append(versions, target, len(plans))
                changes.append(PlanChange(direction, at, current, target, timing))
            else:
                wake.append(due)
                pending = PendingChange(
                    direction=direction,
                    offering=requested,
                    bandwidthMbps=bandwidth,
                    state="scheduled",
                    effective=due,
                    message=f"{direction} from {_describe(current)} to {_describe(target)} at {rfc3339(due)}"
                    f" (changePolicy.{direction} of offering {current.offering} is endOfPeriod)",
                )
    final = versions[-1]
    final_live = current_offering if final.offering == current.offering else requested_offering
    rollout = _rollout(final, final_live, current_offering.rolloutPolicy if current_offering else None, scheduled)
    return PlanOutcome(tuple(versions), pending, rollout, tuple(changes), min(wake) if wake else None)


def order_written_at(managed_fields: object) -> datetime | None:
    """When the order's change was last written, as the API server recorded it: the latest `time` of the
    managedFields entries that own spec.productOffering or spec.bandwidthMbps (None when none says). It is
    never before the change (a manager's time is its latest write), so a change is never dated early."""
    times: list[datetime] = []
    for entry in managed_fields if isinstance(managed_fields, list) else ():
        spec = ((entry or {}).get("fieldsV1") or {}).get("f:spec") if isinstance(entry, dict) else None
        owns_order = isinstance(spec, dict) and ("f:productOffering" in spec or "f:bandwidthMbps" in spec)
        if owns_order and (at := parse_time(entry.get("time"))) is not None:
            times.append(at)
    return max(times, default=None)


def declared_start(before: Sequence[ProductOfferingPrice], after: Sequence[ProductOfferingPrice]) -> datetime | None:
    """The earliest validFor start an edit from `before` to `after` declares: that of a price it adds, or
    a start it moves. None when it declares none (a value edited in place, a price removed or ended):
    such an edit takes effect when it is seen."""
    old = {(p.priceType, p.name): validity_bounds(p.validFor)[0] for p in before}
    starts = [
        start
        for p in after
        if (start := validity_bounds(p.validFor)[0]) is not None
        and ((p.priceType, p.name) not in old or old[(p.priceType, p.name)] != start)
    ]
    return min(starts, default=None)


def _price_effective(
    current: PlanVersion,
    live: ProductOfferingSpec,
    now: datetime,
    start_date: datetime | None,
    billed_through: datetime | None,
) -> datetime:
    """When a price edit of the current offering takes effect: at the validFor start it declares when the
    controller sees it only after that start (however late: the bill follows the published schedule), else
    when it is seen. Never before the current version, the first billable moment or invoiced, compacted
    history; a start on an issued bill re-rates it and the difference lands on the next bill as a
    correction (billing/invoice.py `corrections`)."""
    declared = declared_start(current.productOfferingPrice, live.productOfferingPrice)
    if declared is None or declared >= now:
        return now
    floors = [to_second(declared), _since(current)]
    floors += [to_second(t) for t in (start_date, billed_through) if t is not None]
    return min(max(floors), now)


def compact_plans(plans: Sequence[PlanVersion], through: datetime) -> tuple[PlanVersion, ...]:
    """Drop versions that ended by `through` (their time is invoiced and compacted from the ledger)."""
    through = to_second(through)
    kept = [p for i, p in enumerate(plans) if i + 1 >= len(plans) or _since(plans[i + 1]) > through]
    return tuple(kept)


def _since(plan: PlanVersion) -> datetime:
    return to_second(plan.since) if plan.since is not None else _BEGINNING


def _room(versions: Sequence[PlanVersion]) -> bool:
    return len(versions) < MAX_PLANS


def _append(versions: list[PlanVersion], plan: PlanVersion, stored: int) -> None:
    """Append, replacing a version of this pass (past the `stored` ones) that would have lasted no time at
    all. A stored version stays however short: its `changed` event went out in an earlier pass, and
    history is not rewritten (rating takes a version that lasts no time as no version)."""
    last = versions[-1] if versions else None
    if last is not None and last.since is not None and plan.since is not None and plan.since <= last.since:
        plan = plan.model_copy(update={"since": last.since})
        if len(versions) > stored:
            versions[-1] = plan
            return
    versions.append(plan)


def _refusal(
    current: PlanVersion,
    requested: str,
    offering: ProductOfferingSpec | None,
    bandwidth: int | None,
    now: datetime,
    recorded: int,
) -> str | None:
    if offering is None:
        return (
            f"spec.productOffering.name: ProductOffering {requested} not found; the subscription stays on"
            f" {_describe(current)}"
        )
    if requested != current.offering:
        verdict = sellability(offering, now)
        if not verdict.sellable:
            return f"spec.productOffering.name: {verdict.message}; the subscription stays on {_describe(current)}"
    allowed = {offering.serviceCandidate.bandwidthMbps, *offering.serviceCandidate.bandwidthOptionsMbps}
    if bandwidth is not None and bandwidth not in allowed:
        return f"spec.bandwidthMbps: {bandwidth} is not a rate offering {requested} sells"
    have, want = currency_of(current.productOfferingPrice), currency_of(offering.productOfferingPrice)
    if have != want:
        return f"spec.productOffering.name: offering {requested} bills in {want}, the subscription in {have}"
    if recorded >= MAX_PLANS:
        return f"status.billing.plans: {MAX_PLANS} versions since the last invoice; change again after it is issued"
    return None


def _describe(plan: PlanVersion) -> str:
    return f"{plan.offering} at {rate_of(plan)} Mbit/s"


def _rollout(
    plan: PlanVersion, live: ProductOfferingSpec | None, policy: str | None, scheduled: datetime | None
) -> TemplateRollout | None:
    if live is None or plan.offering is None:
        return None
    rollout_policy = policy or live.rolloutPolicy
    target = revision(live, plan.bandwidthMbps)
    if live.serviceCandidate == plan.serviceCandidate:
        return TemplateRollout(
            policy=rollout_policy, state="current", revision=target, message="provisioned with the offering's template"
        )
    if scheduled is not None:
        return TemplateRollout(
            policy=rollout_policy,
            state="scheduled",
            revision=target,
            effective=scheduled,
            message=f"the offering's new template is applied at {rfc3339(scheduled)} (rolloutPolicy nextPeriod)",
        )
    return TemplateRollout(
        policy=rollout_policy,
        state="held",
        revision=target,
        message=f"the offering's template changed; rolloutPolicy {rollout_policy} keeps this subscription on the"
        f" template it was provisioned with ({plan.serviceCandidate.bandwidthMbps} Mbit/s)",
    )

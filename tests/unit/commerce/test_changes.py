"""Order changes and offering revisions: which version is in force, what waits, what is refused,
and how the versions are rated (each interval at its own price, charge + credit where one ends)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from controller.api.invoice import InvoiceStatus
from controller.api.productoffering import ProductOfferingSpec, ServiceLevelAgreement
from controller.api.subscription import PendingChange, PlanVersion, TemplateRollout
from controller.billing import events as ev
from controller.billing.invoice import BillingInput, corrections, rate_subscription
from controller.billing.ledger import Ledger
from controller.billing.periods import Cycle, Period
from controller.billing.rating import Meter
from controller.commerce import changes
from controller.commerce.changes import classify, compact_plans, monthly_price, plan_step, snapshot
from controller.times import rfc3339
from tests.unit.billing.conftest import delivered, monthly, offering, recurring, ref, usage, utc

DEC = Period(utc(2026, 12, 1), utc(2027, 1, 1))  # 31 days, UTC
START = utc(2026, 11, 20)
MID = utc(2026, 12, 16)  # 15 days into December: 15/31 of the month used
NOW = utc(2026, 12, 20)


def biz(price: str, mbps: int, **extra: Any) -> ProductOfferingSpec:
    spec = offering(monthly(price), **extra)
    return spec.model_copy(
        update={"serviceCandidate": spec.serviceCandidate.model_copy(update={"bandwidthMbps": mbps})}
    )


BIZ100 = biz("49.90", 100)
BIZ1G = biz("99.00", 1000)


def step(
    plans: list[PlanVersion],
    requested: str,
    requested_offering: ProductOfferingSpec | None,
    current_offering: ProductOfferingSpec | None,
    *,
    bandwidth: int | None = None,
    pending: PendingChange | None = None,
    rollout: TemplateRollout | None = None,
    started: bool = True,
    now: Any = NOW,
    start_date: Any = None,
    billed_through: Any = None,
) -> changes.PlanOutcome:
    return plan_step(
        plans,
        requested=requested,
        requested_offering=requested_offering,
        bandwidth=bandwidth,
        current_offering=current_offering,
        stored_pending=pending,
        stored_rollout=rollout,
        billing_started=started,
        now=now,
        period_end=DEC.end,
        start_date=start_date,
        billed_through=billed_through,
    )


ON_100 = [snapshot("biz-100", BIZ100, None, None)]


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        (BIZ100, BIZ1G, "upgrade"),
        (BIZ1G, BIZ100, "downgrade"),
        (BIZ100, biz("49.90", 50), "downgrade"),  # same price, lower rate
        (BIZ100, biz("49.90", 200), "upgrade"),  # same price, higher rate
        (biz("10.00", 100), offering(recurring("year", "100.00")), "downgrade"),  # 8.33/month < 10/month
        (biz("10.00", 100), offering(recurring("day", "1.00")), "upgrade"),  # ~30.44/month
    ],
)
def test_classify_compares_monthly_price_then_rate(current: Any, target: Any, expected: str) -> None:
    assert classify(snapshot("a", current, None, None), snapshot("b", target, None, None)) == expected


def test_monthly_price_normalises_periods_exactly() -> None:
    yearly = snapshot("y", offering(recurring("year", "120.00")), None, None)
    assert monthly_price(yearly) == 10


def repriced_at(old: str, new: str, mbps: int, at: Any) -> ProductOfferingSpec:
    """An offering whose monthly fee `old` ends at `at` and whose fee `new` starts then (a price version)."""
    until = {**monthly(old), "validFor": {"endDateTime": at}}
    since = {**monthly(new, name="Monthly fee from 2027"), "validFor": {"startDateTime": at}}
    return biz("1.00", mbps).model_copy(update={"productOfferingPrice": offering(until, since).productOfferingPrice})


def test_classify_counts_only_the_prices_in_force_at_the_change() -> None:
    """A version that lists this year's fee and next year's (each with its validFor) costs this year's:
    summing both made a move to a dearer offering look like a downgrade (found by the billing chaos run)."""
    cheap_now = snapshot("basic", repriced_at("40.00", "45.00", 100, utc(2027, 1, 1)), None, None)
    dearer = snapshot("plus", biz("60.00", 300), None, None)
    assert monthly_price(cheap_now, NOW) == 40 and monthly_price(cheap_now, utc(2027, 1, 2)) == 45
    assert monthly_price(cheap_now) == 85, "without an instant every price counts (as before)"
    assert classify(cheap_now, dearer, NOW) == "upgrade"
    assert classify(dearer, cheap_now, NOW) == "downgrade"
    plans = [cheap_now]
    out = step(plans, "plus", biz("60.00", 300), repriced_at("40.00", "45.00", 100, utc(2027, 1, 1)))
    assert [(c.direction, c.policy) for c in out.changes] == [("upgrade", "immediate")], out.pending


def test_before_billing_starts_the_order_is_simply_reread() -> None:
    out = step(ON_100, "biz-1g", BIZ1G, BIZ100, started=False)
    assert [p.offering for p in out.plans] == ["biz-1g"] and out.plans[0].since is None
    assert out.changes == () and out.pending is None
    assert step(ON_100, "gone", None, BIZ100, started=False).plans == ()


@pytest.mark.parametrize(
    ("requested", "requested_offering", "policy", "in_force", "since", "pending_state", "direction"),
    [
        # upgrade: immediate by default
        ("biz-1g", BIZ1G, {}, "biz-1g", NOW, None, "upgrade"),
        # downgrade: end of period by default, shown as pending
        ("biz-50", biz("29.90", 50), {}, "biz-100", None, "scheduled", None),
        # downgrade with changePolicy.downgrade immediate
        ("biz-50", biz("29.90", 50), {"downgrade": "immediate"}, "biz-50", NOW, None, "downgrade"),
        # upgrade the offering wants at the period end
        ("biz-1g", BIZ1G, {"upgrade": "endOfPeriod"}, "biz-100", None, "scheduled", None),
        # refused: missing offering, retired offering
        ("gone", None, {}, "biz-100", None, "refused", None),
        ("old", biz("99.00", 1000, lifecycleStatus="Retired"), {}, "biz-100", None, "refused", None),
        # refused: another currency
        ("usd", offering(monthly("99.00", currency="USD")), {}, "biz-100", None, "refused", None),
    ],
)
def test_change_policy_table(
    requested: str,
    requested_offering: ProductOfferingSpec | None,
    policy: dict[str, str],
    in_force: str,
    since: Any,
    pending_state: str | None,
    direction: str | None,
) -> None:
    current = BIZ100.model_copy(update={"changePolicy": BIZ100.changePolicy.model_copy(update=policy)})
    out = step(ON_100, requested, requested_offering, current)
    assert out.current is not None and out.current.offering == in_force
    assert out.current.since == since
    assert (out.pending.state if out.pending else None) == pending_state
    assert [c.direction for c in out.changes] == ([direction] if direction else [])
    if pending_state == "scheduled":
        assert out.pending is not None and out.pending.effective == DEC.end and out.wake_at == DEC.end
    if pending_state == "refused":
        assert out.pending is not None and out.pending.message.startswith("spec.productOffering.name: ")


def test_scheduled_downgrade_takes_effect_at_the_recorded_period_end() -> None:
    cheap = biz("29.90", 50)
    first = step(ON_100, "biz-50", cheap, BIZ100)
    assert first.pending is not None
    # the next month's pass: the recorded effective time, not "the end of the period now"
    later = step(list(first.plans), "biz-50", cheap, BIZ100, pending=first.pending, now=utc(2027, 1, 1, 0, 5))
    assert later.pending is None
    assert [(p.offering, p.since) for p in later.plans] == [("biz-100", None), ("biz-50", DEC.end)]
    assert [(c.direction, c.at, c.policy) for c in later.changes] == [("downgrade", DEC.end, "endOfPeriod")]


def test_a_revision_of_the_offering_left_first_seen_after_a_due_change_does_not_delay_it() -> None:
    """Order chaos (seed 7): the offering a subscription was leaving at the month end was repriced, and the
    first pass that could write came after the month end. The downgrade still takes effect at the month end,
    and the revision of an offering the subscription no longer had is not recorded (nor announced)."""
    cheap = biz("29.90", 50)
    first = step(ON_100, "biz-50", cheap, BIZ100)
    assert first.pending is not None
    repriced = biz("59.90", 100)
    after = utc(2027, 1, 1, 0, 0, 5)
    later = step(list(first.plans), "biz-50", cheap, repriced, pending=first.pending, now=after)
    assert later.pending is None
    assert [(p.offering, p.since) for p in later.plans] == [("biz-100", None), ("biz-50", DEC.end)]
    assert [(c.direction, c.at) for c in later.changes] == [("downgrade", DEC.end)]


def test_bandwidth_choice_is_a_change_within_the_offering() -> None:
    flexible = biz(
        "49.90",
        100,
        serviceCandidate={"serviceType": "internetAccess", "bandwidthMbps": 100, "bandwidthOptionsMbps": [50, 200]},
    )
    plans = [snapshot("biz-100", flexible, None, None)]
    up = step(plans, "biz-100", flexible, flexible, bandwidth=200)
    assert [(c.direction, changes.rate_of(c.current)) for c in up.changes] == [("upgrade", 200)]
    down = step(plans, "biz-100", flexible, flexible, bandwidth=50)
    assert down.pending is not None and down.pending.state == "scheduled" and down.pending.bandwidthMbps == 50
    bad = step(plans, "biz-100", flexible, flexible, bandwidth=300)
    assert bad.pending is not None and bad.pending.state == "refused"
    assert bad.pending.message.startswith("spec.bandwidthMbps: 300")


def test_price_edit_is_a_new_version_from_now_and_never_rewrites_the_past() -> None:
    repriced = biz("59.90", 100)
    out = step(ON_100, "biz-100", repriced, repriced)
    assert [(p.since, p.productOfferingPrice[0].price.value) for p in out.plans] == [  # type: ignore[union-attr]
        (None, "49.90"),
        (NOW, "59.90"),
    ]
    assert [(c.direction, c.policy) for c in out.changes] == [("revision", "priceRevision")]
    # seen again: nothing more happens
    again = step(list(out.plans), "biz-100", repriced, repriced, now=utc(2026, 12, 21))
    assert again.plans == out.plans and again.changes == ()


# -- a price edit seen late: the version in force at t is the one whose price validity covers t ----------

LATE = utc(2026, 12, 16, 0, 0, 40)  # the controller first sees the edit 40 s after the new price started


def fee(value: str, name: str = "Monthly fee", start: Any = None, end: Any = None) -> dict[str, Any]:
    valid = {k: v for k, v in (("startDateTime", start), ("endDateTime", end)) if v is not None}
    return {**monthly(value, name=name), **({"validFor": valid} if valid else {})}


def priced(*prices: dict[str, Any]) -> ProductOfferingSpec:
    return BIZ100.model_copy(update={"productOfferingPrice": offering(*prices).productOfferingPrice})


def one_off(value: str) -> dict[str, Any]:
    return {"name": "Monthly fee", "priceType": "oneTime", "price": {"unit": "EUR", "value": value}}


@pytest.mark.parametrize(
    ("before", "after", "declared"),
    [
        # a price added with a start, the old one ended then: the new price's start
        ([fee("49.90")], [fee("49.90", end=MID), fee("59.90", "Fee 2", start=MID)], MID),
        # a price added without a start, a value edited in place, a price ended or removed: nothing declared
        ([fee("49.90")], [fee("49.90"), fee("5.00", "Extra")], None),
        ([fee("49.90")], [fee("59.90")], None),
        ([fee("49.90")], [fee("49.90", end=MID)], None),
        ([fee("49.90"), fee("5.00", "Extra", start=START)], [fee("49.90")], None),
        # an unchanged start is no declaration, even when the price's value changes
        ([fee("49.90", start=START)], [fee("59.90", start=START)], None),
        # a start moved: the new start; several: the earliest
        ([fee("49.90", start=START)], [fee("49.90", start=MID)], MID),
        ([fee("49.90")], [fee("59.90", "B", start=NOW), fee("69.90", "C", start=MID)], MID),
        # the same name as another price type is another price
        ([fee("49.90")], [fee("49.90"), {**one_off("9.00"), "validFor": {"startDateTime": MID}}], MID),
    ],
)
def test_declared_start_table(before: list[Any], after: list[Any], declared: Any) -> None:
    assert changes.declared_start(priced(*before).productOfferingPrice, priced(*after).productOfferingPrice) == declared


REPRICED_AT_MID = priced(fee("49.90", end=MID), fee("59.90", "Monthly fee #2", start=MID))
SLA_OF = {
    target: ServiceLevelAgreement(availabilityTarget=target, creditPercent="10", creditCapPercent="50")
    for target in ("99.9", "99.99")
}


@pytest.mark.parametrize(
    ("seen", "since", "why"),
    [
        (LATE, MID, "seen 40 s after the new price started: in force from its start, not from when seen"),
        (utc(2026, 12, 15), utc(2026, 12, 15), "seen before its start: a version from when seen (as before)"),
        (MID, MID, "seen at its start"),
    ],
)
def test_a_price_edit_is_in_force_from_its_declared_start_however_late_it_is_seen(
    seen: Any, since: Any, why: str
) -> None:
    """Order chaos seed 7: an edit the controller saw only after its new price's validFor start was billed at
    the old price until seen. docs/billing.md: a price's own validFor limits it."""
    out = step(ON_100, "biz-100", REPRICED_AT_MID, REPRICED_AT_MID, now=seen, start_date=START)
    assert [p.since for p in out.plans] == [None, since], why
    assert [(c.direction, c.at, c.policy) for c in out.changes] == [("revision", since, "priceRevision")]
    # billed per price as the oracle counts it: the old fee to MID, the new one from MID, whenever seen
    assert per_price(rated(list(out.plans))) == {"Monthly fee": Decimal("24.15"), "Monthly fee #2": Decimal("30.92")}


def per_price(lines: list[tuple[str, str, str]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for _, name, value in lines:
        key = "Monthly fee #2" if "Monthly fee #2" in name else "Monthly fee"
        out[key] = out.get(key, Decimal(0)) + Decimal(value)
    return out


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        # seen late: the price from its declared start with the SLA it had, the SLA edit from when seen
        (LATE, [(None, "49.90", "99.9"), (MID, "49.90", "99.9"), (LATE, "49.90", "99.99")]),
        # seen before the price's start: one version from when seen, as before
        (utc(2026, 12, 15), [(None, "49.90", "99.9"), (utc(2026, 12, 15), "49.90", "99.99")]),
    ],
)
def test_an_sla_edit_is_in_force_from_when_seen_never_from_a_price_start_seen_with_it(
    seen: Any, expected: list[tuple[Any, str, str]]
) -> None:
    """A price edit published in advance (start MID) and, later, an SLA edit; a controller that sees both only
    after MID dates the price from MID (its validFor) but the SLA from when seen: it declares no instant, and
    dating it back would change the SLA of time already past."""
    plans = [snapshot("biz-100", BIZ100.model_copy(update={"serviceLevelAgreement": SLA_OF["99.9"]}), None, None)]
    edited = REPRICED_AT_MID.model_copy(update={"serviceLevelAgreement": SLA_OF["99.99"]})
    out = step(plans, "biz-100", edited, edited, now=seen, start_date=START)
    assert [
        (p.since, p.productOfferingPrice[0].price.value, p.serviceLevelAgreement.availabilityTarget)  # type: ignore[union-attr]
        for p in out.plans
    ] == expected
    assert [c.at for c in out.changes] == [p.since for p in out.plans[1:]]
    assert out.plans[-1].productOfferingPrice == edited.productOfferingPrice


def test_a_late_seen_price_edit_bills_each_price_for_its_own_validity() -> None:
    out = step(ON_100, "biz-100", REPRICED_AT_MID, REPRICED_AT_MID, now=LATE, start_date=START)
    lines = rated(list(out.plans))
    # 49.90 * 15/31 = 24.145 -> 24.15 (as charge 49.90 and credit for the unused 16 days); 59.90 * 16/31 = 30.92
    assert lines == [
        ("recurringCharge", "Monthly fee (biz-100)", "49.90"),
        ("credit", "Unused Monthly fee (biz-100) from 2026-12-16T00:00:00Z", "-25.75"),
        ("recurringCharge", "Monthly fee #2 (biz-100, prorated from 2026-12-16T00:00:00Z)", "30.92"),
    ]


@pytest.mark.parametrize(
    ("stored", "start_date", "billed_through", "plans", "events"),
    [
        # never before the version in force: a version recorded after the price's start (from a stale view
        # of the offering) is replaced from its own instant; its event was emitted, the replacement says so
        (
            [*ON_100, snapshot("biz-100", biz("49.90", 100), None, utc(2026, 12, 17))],
            START,
            None,
            [None, utc(2026, 12, 17)],
            [utc(2026, 12, 17)],
        ),
        # never before billing started: the first version (which billed nothing yet) is replaced, no event
        (ON_100, utc(2026, 12, 16, 0, 0, 20), None, [None], []),
        # never into invoiced, compacted history
        (
            ON_100,
            START,
            utc(2026, 12, 16, 0, 0, 30),
            [None, utc(2026, 12, 16, 0, 0, 30)],
            [utc(2026, 12, 16, 0, 0, 30)],
        ),
    ],
)
def test_a_late_seen_price_edit_is_never_dated_before_what_it_cannot_change(
    stored: list[PlanVersion], start_date: Any, billed_through: Any, plans: list[Any], events: list[Any]
) -> None:
    out = step(
        stored,
        "biz-100",
        REPRICED_AT_MID,
        REPRICED_AT_MID,
        now=LATE,
        start_date=start_date,
        billed_through=billed_through,
    )
    assert [p.since for p in out.plans] == plans
    assert out.current is not None and out.current.productOfferingPrice == REPRICED_AT_MID.productOfferingPrice
    assert [c.at for c in out.changes] == events


def test_a_late_seen_price_edit_is_dated_the_same_by_every_pass_that_records_it() -> None:
    """Exactly once across restarts: a pass redone later (its write lost, the controller killed) records the
    same version and so the same `changed` event id; once recorded, nothing more happens."""
    ids = []
    for seen in (LATE, LATE + timedelta(seconds=30)):
        out = step(ON_100, "biz-100", REPRICED_AT_MID, REPRICED_AT_MID, now=seen, start_date=START)
        (change,) = out.changes
        ids.append(
            ev.changed(
                ref(),
                change.at,
                change.direction,
                change.policy,
                (change.previous.offering, change.previous.revision, 100),
                (change.current.offering, change.current.revision, 100),
            ).id
        )
    assert ids[0] == ids[1]
    again = step(list(out.plans), "biz-100", REPRICED_AT_MID, REPRICED_AT_MID, now=LATE + timedelta(minutes=1))
    assert again.plans == out.plans and again.changes == ()


def test_a_late_seen_price_edit_and_an_immediate_template_rollout_are_two_versions() -> None:
    edited = REPRICED_AT_MID.model_copy(
        update={"rolloutPolicy": "immediate", "serviceCandidate": faster("immediate").serviceCandidate}
    )
    out = step(ON_100, "biz-100", edited, edited, now=LATE, start_date=START)
    assert [(p.since, p.serviceCandidate.bandwidthMbps) for p in out.plans] == [(None, 100), (MID, 100), (LATE, 150)]
    assert [(c.at, c.policy) for c in out.changes] == [(MID, "priceRevision"), (LATE, "immediate")]


@pytest.mark.parametrize(
    ("left", "plans", "changed"),
    [
        # an in-place edit (no validFor): it would start now, when the change does: no version, no event
        (biz("59.90", 100), [(None, "biz-100"), (NOW, "biz-1g")], [("upgrade", NOW)]),
        # a price that starts later than now: the same
        (
            priced(fee("49.90", end=utc(2026, 12, 25)), fee("59.90", "B", start=utc(2026, 12, 25))),
            [(None, "biz-100"), (NOW, "biz-1g")],
            [("upgrade", NOW)],
        ),
        # a price that started before now (seen late): a version of its own until the change
        (
            REPRICED_AT_MID,
            [(None, "biz-100"), (MID, "biz-100"), (NOW, "biz-1g")],
            [("revision", MID), ("upgrade", NOW)],
        ),
    ],
)
def test_a_revision_recorded_with_an_immediate_change_is_a_version_only_if_it_lasts(
    left: ProductOfferingSpec, plans: list[Any], changed: list[Any]
) -> None:
    """Order chaos seed 7: a revision of the offering being left, recorded in the same pass as an immediate
    change, became a zero-length version with its own `changed` event."""
    out = step(ON_100, "biz-1g", BIZ1G, left, start_date=START)
    assert [(p.since, p.offering) for p in out.plans] == plans
    assert [(c.direction, c.at) for c in out.changes] == changed
    assert {c.current.revision for c in out.changes} <= {p.revision for p in out.plans}, "every event's version exists"


def test_a_revision_due_with_an_end_of_period_change_is_a_version_only_if_it_starts_before() -> None:
    cheap = biz("29.90", 50)
    first = step(ON_100, "biz-50", cheap, BIZ100)
    assert first.pending is not None
    after = utc(2027, 1, 1, 0, 0, 5)
    at_the_end = priced(fee("49.90", end=DEC.end), fee("59.90", "B", start=DEC.end))
    later = step(list(first.plans), "biz-50", cheap, at_the_end, pending=first.pending, now=after, start_date=START)
    assert [(p.offering, p.since) for p in later.plans] == [("biz-100", None), ("biz-50", DEC.end)]
    assert [(c.direction, c.at) for c in later.changes] == [("downgrade", DEC.end)]
    before = priced(fee("49.90", end=MID), fee("59.90", "B", start=MID))
    later = step(list(first.plans), "biz-50", cheap, before, pending=first.pending, now=after, start_date=START)
    assert [(p.offering, p.since) for p in later.plans] == [("biz-100", None), ("biz-100", MID), ("biz-50", DEC.end)]
    assert [(c.direction, c.at) for c in later.changes] == [("revision", MID), ("downgrade", DEC.end)]


def faster(policy: str) -> ProductOfferingSpec:
    return biz("49.90", 150, rolloutPolicy=policy)


@pytest.mark.parametrize(
    ("policy", "provisioned_mbps", "rollout_state"),
    [("newOrdersOnly", 100, "held"), ("nextPeriod", 100, "scheduled"), ("immediate", 150, "current")],
)
def test_template_edit_follows_the_rollout_policy(policy: str, provisioned_mbps: int, rollout_state: str) -> None:
    edited = faster(policy)
    out = step(ON_100, "biz-100", edited, edited)
    assert out.current is not None and out.current.serviceCandidate.bandwidthMbps == provisioned_mbps
    assert out.rollout is not None and (out.rollout.policy, out.rollout.state) == (policy, rollout_state)
    # the prices did not change: billing sees one version throughout
    assert {p.productOfferingPrice[0].price.value for p in out.plans} == {"49.90"}  # type: ignore[union-attr]


def test_next_period_rollout_applies_at_the_recorded_boundary() -> None:
    edited = faster("nextPeriod")
    first = step(ON_100, "biz-100", edited, edited)
    assert first.rollout is not None and first.rollout.effective == DEC.end
    later = step(list(first.plans), "biz-100", edited, edited, rollout=first.rollout, now=utc(2027, 1, 1, 0, 1))
    assert later.current is not None and later.current.serviceCandidate.bandwidthMbps == 150
    assert later.current.since == DEC.end and later.rollout is not None and later.rollout.state == "current"


def test_new_orders_get_the_current_template() -> None:
    edited = faster("newOrdersOnly")
    out = step([], "biz-100", edited, None, started=False)
    assert out.current is not None and out.current.serviceCandidate.bandwidthMbps == 150


def test_compaction_drops_versions_that_ended_before_the_invoiced_instant() -> None:
    plans = [
        snapshot("a", BIZ100, None, None),
        snapshot("b", BIZ1G, None, utc(2026, 11, 10)),
        snapshot("c", BIZ100, None, utc(2026, 12, 10)),
    ]
    assert [p.offering for p in compact_plans(plans, DEC.start)] == ["b", "c"]
    assert [p.offering for p in compact_plans(plans, utc(2026, 12, 10))] == ["c"]
    assert [p.offering for p in compact_plans(plans[:1], DEC.end)] == ["a"]


# -- rating over versions ------------------------------------------------------------------------


def rated(plans: list[PlanVersion]) -> list[tuple[str, str, str]]:
    sub = BillingInput(ref(), plans[-1].offering, None, delivered(START), plans=tuple(plans))
    return [(ln.type, ln.name, ln.taxExcludedAmount.value) for ln in rate_subscription(sub, DEC, DEC.end).lines]


def test_one_version_rates_as_before() -> None:
    assert rated(ON_100) == [("recurringCharge", "Monthly fee", "49.90")]


def test_upgrade_mid_period_charges_the_old_period_credits_the_unused_part_and_prorates_the_new() -> None:
    plans = [*ON_100, snapshot("biz-1g", BIZ1G, None, MID)]
    lines = rated(plans)
    # 49.90 * 16/31 = 25.755 -> credit 25.75 (cumulative rounding: round(49.90) - round(49.90 * 15/31))
    # 99.00 * 16/31 = 51.096... -> 51.10
    assert lines == [
        ("recurringCharge", "Monthly fee (biz-100)", "49.90"),
        ("credit", "Unused Monthly fee (biz-100) from 2026-12-16T00:00:00Z", "-25.75"),
        ("recurringCharge", "Monthly fee (biz-1g, prorated from 2026-12-16T00:00:00Z)", "51.10"),
    ]
    total = sum(Decimal(v) for _, _, v in lines)
    # exactly each interval at its own price: 49.90 * 15/31 + 99.00 * 16/31, each rounded once
    assert total == Decimal("24.15") + Decimal("51.10")


def test_downgrade_at_the_period_end_leaves_the_period_whole() -> None:
    plans = [*ON_100, snapshot("biz-50", biz("29.90", 50), None, DEC.end)]
    assert rated(plans) == [("recurringCharge", "Monthly fee", "49.90")]
    jan = Period(utc(2027, 1, 1), utc(2027, 2, 1))
    sub = BillingInput(ref(), "biz-50", None, delivered(START), plans=tuple(plans))
    assert [ln.taxExcludedAmount.value for ln in rate_subscription(sub, jan, jan.end).lines] == ["29.90"]


def test_ids_of_a_changed_period_are_distinct_and_stable() -> None:
    plans = [*ON_100, snapshot("biz-1g", BIZ1G, None, MID)]
    sub = BillingInput(ref(), "biz-1g", None, delivered(START), plans=tuple(plans))
    first = rate_subscription(sub, DEC, DEC.end)
    again = rate_subscription(sub, DEC, DEC.end)
    assert [ln.id for ln in first.lines] == [ln.id for ln in again.lines]
    assert len({ln.id for ln in first.lines}) == len(first.lines)
    assert len({e.id for e in first.events}) == len(first.events) == 2  # one charge event per version


def test_a_template_only_revision_adds_no_lines() -> None:
    same_prices = snapshot("biz-100", biz("49.90", 150), None, MID)
    assert rated([*ON_100, same_prices]) == [("recurringCharge", "Monthly fee", "49.90")]


def test_a_price_edit_seen_after_its_period_was_billed_is_corrected_on_the_next_bill() -> None:
    """Issued bills are immutable: December was issued at the old fee throughout, then the controller saw an
    edit whose new fee started on 16 December. The next bill carries the difference as corrections (a
    credit for the old fee's unused part, the new fee's charge), and December's lines stay as issued."""
    jan = Period(DEC.end, utc(2027, 2, 1))
    seen = utc(2027, 1, 2)
    sub = BillingInput(ref(), "biz-100", None, delivered(START), plans=tuple(ON_100))
    issued_lines = rate_subscription(sub, DEC, seen).lines
    bill = InvoiceStatus(state="validated", lines=issued_lines)
    out = step(ON_100, "biz-100", REPRICED_AT_MID, REPRICED_AT_MID, now=seen, start_date=START)
    assert [p.since for p in out.plans] == [None, MID]
    recomputed = BillingInput(ref(), "biz-100", None, delivered(START), plans=out.plans)
    fixes = corrections([bill], rate_subscription(recomputed, DEC, seen).lines, jan, {"acme/fiber-1": "uid-fiber-1"})
    assert sorted((ln.type, ln.taxExcludedAmount.value) for ln in fixes) == [
        ("credit", "-25.75"),  # the old fee's 16 unused days
        ("recurringCharge", "30.92"),  # the new fee from 16 December
    ]
    assert bill.lines == issued_lines, "the issued bill is not edited"
    again = corrections(
        [bill, InvoiceStatus(state="validated", lines=fixes)],
        rate_subscription(recomputed, DEC, seen).lines,
        jan,
        {"acme/fiber-1": "uid-fiber-1"},
    )
    assert again == [], "corrected once"


# -- usage and SLA over versions -----------------------------------------------------------------

SLA_STRICT = {"availabilityTarget": "99.99", "creditPercent": "10", "creditCapPercent": "50"}
SLA_LOOSE = {"availabilityTarget": "99.9", "creditPercent": "10", "creditCapPercent": "50"}
GB = 10**9


def metered(price: str, traffic: str, mbps: int, sla: dict[str, str] | None) -> ProductOfferingSpec:
    spec = offering(monthly(price), usage(traffic), sla=sla)
    return spec.model_copy(
        update={"serviceCandidate": spec.serviceCandidate.model_copy(update={"bandwidthMbps": mbps})}
    )


def outage_on(day: int, hours: int) -> Ledger:
    """Delivered from START, not Ready for `hours` on `day` December."""
    down = utc(2026, 12, day)
    ledger = delivered(START).record(down, service_ready=False)
    return ledger.record(down + timedelta(hours=hours), service_ready=True)


def usage_meter(plans: list[PlanVersion], samples: list[tuple[Any, int]]) -> Meter:
    cuts = BillingInput(ref(), "", None, Ledger(), plans=tuple(plans)).usage_cuts
    meter = Meter()
    for at, octets in samples:
        meter = meter.observe("r1/eth1/100/in", octets, at, Cycle.of("month", 1, "UTC"), cuts=cuts)
    return meter


def rated_sub(plans: list[PlanVersion], ledger: Ledger, meter: Meter) -> Any:
    sub = BillingInput(ref(), plans[-1].offering, None, ledger, meter, plans=tuple(plans))
    return rate_subscription(sub, DEC, DEC.end)


def kinds(result: Any, kind: str) -> list[tuple[str, str, str, str]]:
    return [
        (ln.name, ln.taxExcludedAmount.value, rfc3339(ln.periodCoverage.startDateTime), ln.id)
        for ln in result.lines
        if ln.type == kind
    ]


# 10 GB before the upgrade (a sample exactly at it), 15 GB after
SAMPLES = [(DEC.start, 0), (MID, 10 * GB), (utc(2026, 12, 20), 20 * GB), (utc(2026, 12, 31), 25 * GB)]
METERED_100 = metered("49.90", "0.50", 100, SLA_LOOSE)
METERED_1G = metered("99.00", "0.20", 1000, SLA_STRICT)


def test_usage_of_a_period_with_an_upgrade_is_rated_per_version_part() -> None:
    plans = [snapshot("biz-100", METERED_100, None, None), snapshot("biz-1g", METERED_1G, None, MID)]
    out = rated_sub(plans, delivered(START), usage_meter(plans, SAMPLES))
    usage_lines = kinds(out, "usageCharge")
    assert [(n, v, s) for n, v, s, _ in usage_lines] == [
        ("Traffic (biz-100, to 2026-12-16T00:00:00Z)", "5.00", "2026-12-01T00:00:00Z"),  # 10 GB at 0.50
        ("Traffic (biz-1g, from 2026-12-16T00:00:00Z)", "3.00", "2026-12-16T00:00:00Z"),  # 15 GB at 0.20
    ]
    events = [e for e in out.events if e.fact == "usage.rated"]
    # one id per part: the part the period starts with keeps the period's id, a later one names its start
    assert [e.id for e in events] == [
        ev.usage_rated_id(ref(), "Traffic", DEC),
        ev.usage_rated_id(ref(), "Traffic", DEC, MID),
    ]
    assert len({ln.id for ln in out.lines}) == len(out.lines)
    assert [(e.data["octets"], e.data["offering"], e.data["coverageStart"], e.data["coverageEnd"]) for e in events] == [
        (str(10 * GB), "biz-100", "2026-12-01T00:00:00Z", "2026-12-16T00:00:00Z"),
        (str(15 * GB), "biz-1g", "2026-12-16T00:00:00Z", "2027-01-01T00:00:00Z"),
    ]
    again = rated_sub(plans, delivered(START), usage_meter(plans, SAMPLES))
    assert [e.id for e in again.events] == [e.id for e in out.events], "deterministic"


def test_usage_of_a_period_without_a_change_keeps_its_id_and_amount() -> None:
    plans = [snapshot("biz-100", METERED_100, None, None)]
    out = rated_sub(plans, delivered(START), usage_meter(plans, SAMPLES))
    line = kinds(out, "usageCharge")
    assert [(n, v) for n, v, _, _ in line] == [("Traffic", "12.50")]  # 25 GB at 0.50
    (event,) = [e for e in out.events if e.fact == "usage.rated"]
    assert event.id == ev.usage_rated_id(ref(), "Traffic", DEC) and "offering" not in event.data
    # a revision of the recurring fee alone does not cut the usage either
    repriced = [*plans, snapshot("biz-100", metered("59.90", "0.50", 100, SLA_LOOSE), None, MID)]
    again = rated_sub(repriced, delivered(START), usage_meter(repriced, SAMPLES))
    assert [(n, v, i) for n, v, _, i in kinds(again, "usageCharge")] == [(n, v, i) for n, v, _, i in line]


def test_an_sla_is_measured_and_credited_over_the_part_of_the_period_it_was_in_force() -> None:
    """A 2-hour outage on 5 December, before the upgrade to a stricter SLA on the 16th: the old SLA's part
    (15 days, 99.444 % < 99.9 %: 5 steps, 50 % capped) credits half of what the old version charged for it;
    the new SLA's part was always available. Rated at the last version's SLA over the month (as before) it
    would have been 30 % of the whole month's charge."""
    plans = [snapshot("biz-100", METERED_100, None, None), snapshot("biz-1g", METERED_1G, None, MID)]
    out = rated_sub(plans, outage_on(5, 2), Meter())
    # base: what biz-100 charged for its 358 billable hours, 6.44 + 24.15 - 6.57 = 24.02; 50 % of it
    assert [(n, v, s) for n, v, s, _ in kinds(out, "credit") if n.startswith("SLA")] == [
        ("SLA credit (biz-100, to 2026-12-16T00:00:00Z): availability 99.4444% < 99.9%", "-12.01", rfc3339(DEC.start))
    ]
    (event,) = [e for e in out.events if e.fact == "sla.credit"]
    assert event.id == ev.sla_credit_id(ref(), DEC) and event.data["coverageEnd"] == rfc3339(MID)
    # the same outage after the upgrade: only the new SLA's part credits, under its own id
    later = rated_sub(plans, outage_on(20, 2), Meter())
    # 16 days: 99.4792 % < 99.99 %: 6 steps, capped at 50 % of what biz-1g charged (51.10 - 0.26 = 50.84)
    assert [(n, v, s) for n, v, s, _ in kinds(later, "credit") if n.startswith("SLA")] == [
        ("SLA credit (biz-1g, from 2026-12-16T00:00:00Z): availability 99.4792% < 99.99%", "-25.42", rfc3339(MID))
    ]
    (event,) = [e for e in later.events if e.fact == "sla.credit"]
    assert event.id == ev.sla_credit_id(ref(), DEC, MID) != ev.sla_credit_id(ref(), DEC)


def test_versions_with_the_same_sla_are_measured_as_one_part() -> None:
    """A price change alone does not cut the SLA: availability over the month, base the month's net recurring
    charge (24.02 + 51.10: the outage is not billed), the id and line of a period without a change."""
    same_sla = metered("99.00", "0.20", 1000, SLA_LOOSE)
    plans = [snapshot("biz-100", METERED_100, None, None), snapshot("biz-1g", same_sla, None, MID)]
    out = rated_sub(plans, outage_on(5, 2), Meter())
    # 742 of 744 hours: 99.7312 % < 99.9 %: 2 steps, 20 % of 75.12 = 15.024
    assert [(n, v) for n, v, _, _ in kinds(out, "credit") if n.startswith("SLA")] == [
        ("SLA credit: availability 99.7312% < 99.9%", "-15.02")
    ]
    (event,) = [e for e in out.events if e.fact == "sla.credit"]
    assert event.id == ev.sla_credit_id(ref(), DEC) and "coverageStart" not in event.data


def test_usage_recorded_before_a_late_seen_revision_was_known_is_split_over_what_was_measured() -> None:
    """A revision of the usage price dated back to MID (seen late): December's octets were recorded as one
    window, the latest sample on 21 December. The part before MID gets 15 of the 20 measured days."""
    repriced = metered("49.90", "0.20", 100, SLA_LOOSE)
    plans = [snapshot("biz-100", METERED_100, None, None), snapshot("biz-100", repriced, None, MID)]
    meter = usage_meter(plans[:1], [(DEC.start, 0), (utc(2026, 12, 21), 20 * GB)])
    out = rated_sub(plans, delivered(START), meter)
    assert [(n, v) for n, v, _, _ in kinds(out, "usageCharge")] == [
        ("Traffic (biz-100, to 2026-12-16T00:00:00Z)", "7.50"),  # 15 GB at 0.50
        ("Traffic (biz-100, from 2026-12-16T00:00:00Z)", "1.00"),  # 5 GB at 0.20
    ]
    # the part the period starts with keeps the id the month's usage was emitted under, the later one is new
    assert [e.id for e in out.events if e.fact == "usage.rated"] == [
        ev.usage_rated_id(ref(), "Traffic", DEC),
        ev.usage_rated_id(ref(), "Traffic", DEC, MID),
    ]


def test_three_versions_in_a_period_are_three_usage_parts() -> None:
    late = utc(2026, 12, 24)
    third = metered("29.90", "0.10", 50, SLA_LOOSE)
    plans = [snapshot("biz-100", METERED_100, None, None), snapshot("biz-1g", METERED_1G, None, MID)]
    plans.append(snapshot("biz-50", third, None, late))
    samples = [(DEC.start, 0), (MID, 10 * GB), (late, 18 * GB), (utc(2026, 12, 31), 28 * GB)]
    out = rated_sub(plans, delivered(START), usage_meter(plans, samples))
    assert [(n, v, s) for n, v, s, _ in kinds(out, "usageCharge")] == [
        ("Traffic (biz-100, to 2026-12-16T00:00:00Z)", "5.00", rfc3339(DEC.start)),  # 10 GB at 0.50
        ("Traffic (biz-1g, from 2026-12-16T00:00:00Z)", "1.60", rfc3339(MID)),  # 8 GB at 0.20
        ("Traffic (biz-50, from 2026-12-24T00:00:00Z)", "1.00", rfc3339(late)),  # 10 GB at 0.10
    ]
    assert len({e.id for e in out.events}) == len(out.events)


def _seen(written_period_end: Any, billed_through: Any = None, stored: Any = None) -> changes.PlanOutcome:
    """A downgrade written 40 s before the December end and first seen 30 s after it (bug 17 (b))."""
    return plan_step(
        ON_100,
        requested="biz-50",
        requested_offering=biz("29.90", 50),
        bandwidth=None,
        current_offering=BIZ100,
        stored_pending=stored,
        stored_rollout=None,
        billing_started=True,
        now=utc(2027, 1, 1, 0, 0, 30),
        period_end=utc(2027, 2, 1),
        billed_through=billed_through,
        written_period_end=written_period_end,
    )


@pytest.mark.parametrize(
    ("written_period_end", "billed_through", "pending_until", "in_force_at"),
    [
        (DEC.end, None, None, DEC.end),  # written in December: due at the December end, as asked
        (None, None, utc(2027, 2, 1), None),  # unknown write time: the period it is seen in
        (utc(2027, 2, 1), None, utc(2027, 2, 1), None),  # written in January: January's end
        (DEC.end, utc(2027, 1, 1, 0, 0, 10), None, utc(2027, 1, 1, 0, 0, 10)),  # never into invoiced time
    ],
)
def test_an_end_of_period_change_seen_after_the_period_end_is_due_at_the_end_of_the_period_it_was_written_in(
    written_period_end: Any, billed_through: Any, pending_until: Any, in_force_at: Any
) -> None:
    seen = _seen(written_period_end, billed_through)
    assert (seen.pending.effective if seen.pending else None) == pending_until
    assert [c.at for c in seen.changes] == ([in_force_at] if in_force_at else [])
    if in_force_at:
        assert [(p.offering, p.since) for p in seen.plans] == [("biz-100", None), ("biz-50", in_force_at)]


@pytest.mark.parametrize(
    ("managed", "expected"),
    [
        (None, None),
        ([], None),
        ([{"manager": "kubectl", "time": "2026-12-31T23:59:20Z", "fieldsV1": {"f:metadata": {}}}], None),
        (
            [
                {
                    "manager": "kubectl",
                    "time": "2026-12-31T23:59:20Z",
                    "fieldsV1": {"f:spec": {"f:productOffering": {}}},
                },
                {"manager": "telco", "time": "2027-01-01T00:00:30Z", "fieldsV1": {"f:status": {}}},
            ],
            utc(2026, 12, 31, 23, 59, 20),
        ),
        (
            [
                {"manager": "a", "time": "2026-12-01T00:00:00Z", "fieldsV1": {"f:spec": {"f:productOffering": {}}}},
                {"manager": "b", "time": "2026-12-31T23:59:20Z", "fieldsV1": {"f:spec": {"f:bandwidthMbps": {}}}},
            ],
            utc(2026, 12, 31, 23, 59, 20),  # the latest: never earlier than the change
        ),
        ([{"manager": "x", "time": "not a time", "fieldsV1": {"f:spec": {"f:bandwidthMbps": {}}}}], None),
        ("garbage", None),
    ],
)
def test_the_order_write_time_is_the_latest_managed_fields_time_owning_the_order(managed: Any, expected: Any) -> None:
    assert changes.order_written_at(managed) == expected


@pytest.mark.parametrize(
    ("stored_offering", "pending_until", "in_force_at"),
    [
        ("biz-50", utc(2027, 2, 1), None),  # seen and refused then: possible only now, so this period's end
        ("biz-20", None, DEC.end),  # refused for another target: this one is new, due when asked
    ],
)
def test_a_change_seen_and_refused_before_the_period_end_is_not_dated_back(
    stored_offering: str, pending_until: Any, in_force_at: Any
) -> None:
    refused = PendingChange(
        direction="downgrade", offering=stored_offering, state="refused", message="spec.productOffering: missing"
    )
    seen = _seen(DEC.end, stored=refused)
    assert (seen.pending.effective if seen.pending else None) == pending_until
    assert [c.at for c in seen.changes] == ([in_force_at] if in_force_at else [])


def test_a_revision_announced_in_one_pass_stays_when_a_change_in_the_same_second_follows() -> None:
    """Order chaos (2026-12-03): a price edit of the offering was recorded, its `changed` event sent, and an
    immediate upgrade seen in the next pass within the same second replaced that version: an event without
    a version. History keeps it (it lasts no time, so rating takes it as none)."""
    edited = biz("59.90", 100)
    first = step(ON_100, "biz-100", BIZ100, edited, start_date=START)
    assert [(p.since, p.offering) for p in first.plans] == [(None, "biz-100"), (NOW, "biz-100")]
    assert [(c.direction, c.at) for c in first.changes] == [("revision", NOW)]
    second = step(list(first.plans), "biz-1g", BIZ1G, edited, start_date=START)
    assert [(p.since, p.offering) for p in second.plans] == [(None, "biz-100"), (NOW, "biz-100"), (NOW, "biz-1g")]
    assert [(c.direction, c.at) for c in second.changes] == [("upgrade", NOW)]
    announced = {c.current.revision for c in (*first.changes, *second.changes)}
    assert announced <= {p.revision for p in second.plans[1:]}, "every event's version is in the history"
    bill = BillingInput(ref(), "biz-1g", None, delivered(START), plans=tuple(second.plans))
    assert [(v.offering_name, v.start, v.end) for v in bill.versions] == [("biz-100", None, NOW), ("biz-1g", NOW, None)]
    without = [second.plans[0], second.plans[2]]
    assert rated(list(second.plans)) == rated(without), "the version that lasted no time is billed as none"

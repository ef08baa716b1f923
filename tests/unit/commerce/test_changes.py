"""Order changes and offering revisions: which version is in force, what waits, what is refused,
and how the versions are rated (each interval at its own price, charge + credit where one ends)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from controller.api.productoffering import ProductOfferingSpec
from controller.api.subscription import PendingChange, PlanVersion, TemplateRollout
from controller.billing.invoice import BillingInput, rate_subscription
from controller.billing.periods import Period
from controller.commerce import changes
from controller.commerce.changes import classify, compact_plans, monthly_price, plan_step, snapshot
from tests.unit.billing.conftest import delivered, monthly, offering, recurring, ref, utc

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

"""The billing step of a Subscription pass as a pure function (controller/commerce/billing_step.py):
inputs -> the status to write, the events it adds, whether the finalizer may go, and the wake-up."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.api.subscription import SubscriptionBilling
from controller.billing import events as ev
from controller.billing.events import SubscriptionRef
from controller.billing.outbox import MAX_PENDING, Outbox
from controller.billing.periods import Cycle
from controller.commerce import changes, lifecycle
from controller.commerce.billing_step import (
    SOON,
    BillingStepInputs,
    IssuedBill,
    billing_step,
    compactable_through,
)
from controller.commerce.index import Sample
from tests.unit.commerce.builders import T0, at, cond, inputs, iso, offering, ready_service, subscription

REF = SubscriptionRef("acme", "site-a", "uid-1", "acme-1")
MONTH_END = Cycle.of("month", 1, "UTC").period_containing(T0).end


def step_inputs(life: lifecycle.SubscriptionInputs | None = None, **over: Any) -> BillingStepInputs:
    life = life or inputs()
    fields: dict[str, Any] = {
        "ref": REF,
        "spec": life.spec,
        "offering": life.offering,
        "billing": SubscriptionBilling.model_validate(dict(life.status).get("billing") or {}),
        "box": Outbox(),
        "lifecycle": life,
        "decision": lifecycle.step(life),
        "plan": changes.PlanOutcome(()),
        "hold": None,
        "now": life.now,
        "tz": "UTC",
        "recorded_zone": None,
        "problem": None,
    }
    fields.update(over)
    return BillingStepInputs(**fields)


def activating(now: datetime = T0) -> lifecycle.SubscriptionInputs:
    """A pendingActive order whose NetworkService turned Ready a minute ago."""
    return inputs(now=now, status={"state": "pendingActive"}, service=ready_service(now - timedelta(minutes=1)))


def full_box(now: datetime) -> Outbox:
    others = [SubscriptionRef("acme", f"o{i}", f"uid-o{i}", "acme-1") for i in range(MAX_PENDING)]
    box = Outbox().add([ev.activated(other, now, "fiber-100") for other in others], now)
    assert box.depth == MAX_PENDING
    return box


def test_an_activation_is_recorded_with_its_event_in_the_same_status() -> None:
    result = billing_step(step_inputs(activating()))
    assert not result.blocked and result.status["state"] == "active"
    assert [e.type for e in result.events] == [ev.activated(REF, T0, "x").type]
    pending = result.status["billing"]["outbox"]["pending"]
    assert [p["id"] for p in pending] == [e.id for e in result.events], "the fact's event is in its status"
    assert result.status["billing"]["ledger"]["startDate"], "billing started at the activation"
    assert result.status["nextBillDate"] is not None
    assert cond(result.status, "BillingDelivered")["status"] == "False", "one event pending"
    assert result.wake_at == MONTH_END + SOON, "woken when the period ends, to close it"


@pytest.mark.parametrize(
    ("case", "over", "reason"),
    [
        ("outbox full", {"box": full_box(T0)}, "OutboxFull"),
    ],
)
def test_a_transition_that_cannot_be_recorded_records_nothing(case: str, over: dict[str, Any], reason: str) -> None:
    i = step_inputs(activating(), **over)
    result = billing_step(i)
    assert result.blocked and not result.released and result.events == ()
    assert set(result.status) == {"conditions"}, f"{case}: only the condition saying why"
    assert cond(result.status, "BillingDelivered")["reason"] == reason
    assert result.box is i.box, "the outbox as it was"


def test_a_pass_with_nothing_new_adds_no_event_and_keeps_the_outbox() -> None:
    first = billing_step(step_inputs(activating()))
    delivered = first.box.mark_delivered(first.box.ids)  # what the delivery loop handed back
    later = inputs(now=at(5), status=first.status, service=ready_service(T0 - timedelta(minutes=1)))
    result = billing_step(step_inputs(later, box=delivered))
    assert result.events == () and result.status["state"] == "active"
    assert result.status["billing"]["outbox"]["pending"] == [], "the delivered event left the outbox"
    assert cond(result.status, "BillingDelivered")["status"] == "True"


@pytest.mark.parametrize(
    ("has_sink", "delivered", "released", "reason"),
    [
        (True, True, True, None),  # terminated, its events at every sink: the finalizer may go
        (True, False, False, "Delivering"),  # an event still pending holds it, and says so
        (False, False, True, None),  # no sink configured: nothing would ever drain it
    ],
)
def test_a_terminating_subscription_is_released_once_billing_is_done(
    has_sink: bool, delivered: bool, released: bool, reason: str | None
) -> None:
    active = billing_step(step_inputs(activating())).status
    ending = inputs(now=at(10), status=active, deleting=True)  # its NetworkService is gone
    decision = lifecycle.step(ending)
    assert decision.state == "terminated" and decision.finished
    box = Outbox.from_status(active["billing"]["outbox"])
    if delivered:
        box = box.mark_delivered(box.ids)
    first = billing_step(step_inputs(ending, box=box, has_sink=has_sink))
    # the terminated fact and the final period's charge are new events: delivered in a later pass
    assert "terminated" in {ev.fact_of(e.type) for e in first.events}
    drained = first.box.mark_delivered(first.box.ids) if delivered else first.box
    final = inputs(now=at(11), status=first.status, deleting=True)
    result = billing_step(step_inputs(final, box=drained, has_sink=has_sink))
    assert result.released is released
    if reason is not None:  # (a released one is gone with its finalizer: nobody reads its status again)
        assert cond(result.status, "Released")["reason"] == reason
    if not has_sink:
        assert cond(result.status, "BillingDelivered")["reason"] == "NoSinkConfigured"


def test_usage_samples_are_recorded_while_active_and_moot_otherwise() -> None:
    samples = {"leaf1/Ethernet1/100/in": Sample(1000, at(1))}
    active = billing_step(step_inputs(activating(), samples=samples))
    assert active.applied == samples and active.status["billing"]["usage"]["counters"], "metered"
    waiting = inputs(status={"state": "pendingActive"})  # no NetworkService yet
    moot = billing_step(step_inputs(waiting, samples=samples))
    assert moot.applied == samples, "not active: dropped, never kept for later"
    assert moot.status["billing"]["usage"]["counters"] == []


def test_the_wakeup_is_the_requested_start_when_it_comes_before_the_period_end() -> None:
    start = at(90)
    life = inputs(spec=subscription(requestedStartDate=start.isoformat()))
    result = billing_step(step_inputs(life))
    assert result.status["state"] == "created"
    assert result.wake_at == start + SOON


@pytest.mark.parametrize(
    ("issued", "charged", "expected"),
    [
        ([], T0, None),
        # an onCycle bill is final once a later bill is issued too (its corrections landed there)
        ([IssuedBill("onCycle", at(-60 * 24 * 60), at(-30 * 24 * 60))], T0, None),
        (
            [
                IssuedBill("onCycle", at(-60 * 24 * 60), at(-30 * 24 * 60)),
                IssuedBill("onCycle", at(-30 * 24 * 60), at(-1)),
            ],
            T0,
            at(-30 * 24 * 60),
        ),
        # charges not recorded that far: nothing is final yet
        (
            [
                IssuedBill("onCycle", at(-60 * 24 * 60), at(-30 * 24 * 60)),
                IssuedBill("onCycle", at(-30 * 24 * 60), at(-1)),
            ],
            at(-45 * 24 * 60),
            None,
        ),
        # an offCycle bill is never the compaction point
        ([IssuedBill("offCycle", at(-60), at(-30)), IssuedBill("onCycle", at(-30), at(-1))], T0, None),
        ([IssuedBill("onCycle", at(-60), at(-30))], None, None),
    ],
)
def test_compactable_through(issued: list[IssuedBill], charged: datetime | None, expected: datetime | None) -> None:
    assert compactable_through(issued, charged) == expected


def _observed(ready_since: datetime, transitions: list[tuple[datetime, bool]], dropped: datetime | None = None) -> Any:
    """A Ready NetworkService as observe_service reads it from its raw status."""
    status = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Applied", "lastTransitionTime": iso(ready_since)}
        ],
        "startDate": iso(transitions[1][0] if len(transitions) > 1 else ready_since),
        "readyTransitions": [
            {"at": iso(t), "ready": r, "reason": "Applied" if r else "OperDown"} for t, r in transitions
        ],
        "readyTransitionsDroppedThrough": iso(dropped) if dropped else None,
    }
    return lifecycle.observe_service({"metadata": {"name": "site-a"}, "status": status})


def test_an_outage_the_watch_never_saw_is_recorded_from_the_services_ready_history() -> None:
    first = billing_step(step_inputs(activating()))
    assert first.status["billing"]["ledger"]["ready"] == [{"start": iso(at(-1))}]
    # A re-list: the next version seen is Ready again, since 20 min; its list holds the outage before it
    svc = _observed(at(20), [(at(-2), False), (at(-1), True), (at(10), False), (at(20), True)])
    result = billing_step(step_inputs(inputs(now=at(30), status=first.status, service=svc)))
    assert result.status["billing"]["ledger"]["ready"] == [
        {"start": iso(at(-1)), "end": iso(at(10))},
        {"start": iso(at(20))},
    ]
    assert result.ready_gap is None and not result.status["billing"]["ledger"].get("readyUnknown")
    again = billing_step(step_inputs(inputs(now=at(31), status=result.status, service=svc)))
    assert again.status["billing"]["ledger"] == result.status["billing"]["ledger"], "seen twice, counted once"


def test_a_ready_history_cut_past_what_the_ledger_saw_is_not_billed_and_is_said() -> None:
    first = billing_step(step_inputs(activating()))
    # more changes than the list keeps while the controller was blind: the newest dropped at 15 min (True)
    svc = _observed(at(25), [(at(18), False), (at(25), True)], dropped=at(15))
    result = billing_step(step_inputs(inputs(now=at(30), status=first.status, service=svc)))
    ledger = result.status["billing"]["ledger"]
    assert ledger["ready"] == [{"start": iso(at(15)), "end": iso(at(18))}, {"start": iso(at(25))}]
    assert ledger["readyUnknown"] == [{"start": iso(at(-1)), "end": iso(at(15))}]
    assert result.ready_gap == (at(-1), at(15))
    assert any("unknown, recorded as not Ready" in w for w in result.warnings)
    again = billing_step(step_inputs(inputs(now=at(31), status=result.status, service=svc)))
    assert again.ready_gap is None and again.status["billing"]["ledger"] == ledger


FEB = datetime(2025, 2, 1, tzinfo=T0.tzinfo)
REPRICED_FEB_20 = offering(
    productOfferingPrice=[
        {
            "name": "Monthly fee",
            "priceType": "recurring",
            "recurringChargePeriodType": "month",
            "price": {"unit": "EUR", "value": "49.90"},
            "validFor": {"endDateTime": "2025-02-20T00:00:00Z"},
        },
        {
            "name": "Monthly fee #2",
            "priceType": "recurring",
            "recurringChargePeriodType": "month",
            "price": {"unit": "EUR", "value": "59.90"},
            "validFor": {"startDateTime": "2025-02-20T00:00:00Z"},
        },
    ]
)


def february_closed(charged: datetime | None) -> tuple[lifecycle.SubscriptionInputs, changes.PlanVersion]:
    """Active and Ready since 1 February on one version; February closed (chargedThrough) if `charged`."""
    first = billing_step(step_inputs(activating(FEB + timedelta(minutes=1))))
    v1 = changes.snapshot("fiber-100", offering(), None, None)
    billing = {**first.status["billing"], "plans": [v1.model_dump(mode="json", exclude_none=True)]}
    if charged is not None:
        billing["chargedThrough"] = charged.strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {**first.status, "billing": billing}
    return inputs(now=T0, status=status, service=ready_service(FEB)), v1


def repriced_pass(life: lifecycle.SubscriptionInputs, v1: changes.PlanVersion) -> Any:
    billing = SubscriptionBilling.model_validate(dict(life.status)["billing"])
    plan = changes.plan_step(
        [v1],
        requested="fiber-100",
        requested_offering=REPRICED_FEB_20,
        bandwidth=None,
        current_offering=REPRICED_FEB_20,
        stored_pending=None,
        stored_rollout=None,
        billing_started=True,
        now=T0,
        period_end=MONTH_END,
        start_date=billing.ledger.startDate,
        billed_through=billing.ledger.billedThrough,
    )
    assert [c.at for c in plan.changes] == [datetime(2025, 2, 20, tzinfo=T0.tzinfo)], "dated at the price's start"
    return billing_step(step_inputs(life, plan=plan, billing=billing))


def test_a_revision_dated_back_into_a_closed_period_emits_the_facts_it_creates_there() -> None:
    """A price edit seen after the period holding its start was closed: the facts the new version adds to that
    period (the new price's charge from its start) get their events, or the bill would trace to ids no sink
    ever received; the facts already emitted keep their ids (their new amounts reach the bill as corrections)."""
    life, v1 = february_closed(T0.replace(day=1, hour=0))
    result = repriced_pass(life, v1)
    feb = Cycle.of("month", 1, "UTC").period_containing(FEB)
    kinds = sorted((ev.fact_of(e.type), (e.data or {}).get("price", "")) for e in result.events)
    assert kinds == [("changed", ""), ("charge.period", "Monthly fee #2 from 20250220T000000Z")], kinds
    (charge,) = [e for e in result.events if ev.fact_of(e.type) == "charge.period"]
    assert charge.id == ev.charge_period_id(REF, "Monthly fee #2 from 20250220T000000Z", feb)
    assert ev.charge_period_id(REF, "Monthly fee", feb) not in {e.id for e in result.events}, "emitted at the close"
    assert result.status["billing"]["chargedThrough"] == "2025-03-01T00:00:00Z"


def test_a_revision_dated_back_into_an_open_period_emits_only_its_changed_event() -> None:
    # February not closed yet: the catch-up of this very pass rates it with the new version
    life, v1 = february_closed(None)
    result = repriced_pass(life, v1)
    kinds = sorted(ev.fact_of(e.type) for e in result.events)
    assert kinds == ["changed", "charge.period", "charge.period"], "the close: the old fee to 20 Feb, the new after"


def test_usage_samples_are_cut_where_the_usage_price_changes() -> None:
    """An upgrade to an offering with another usage price at minute 10: the octets between the samples at
    minutes 1 and 21 are split 9 | 11 (in proportion to time), each in its own part of the month."""
    key = "leaf1/Ethernet1/100/in"
    traffic = {"name": "Traffic", "priceType": "usage", "unitOfMeasure": {"amount": 1, "units": "GB"}}
    cheap = offering(productOfferingPrice=[{**traffic, "price": {"unit": "EUR", "value": "0.50"}}])
    dear = offering(productOfferingPrice=[{**traffic, "price": {"unit": "EUR", "value": "0.90"}}])
    first = billing_step(step_inputs(activating(), samples={key: Sample(0, at(1))}))
    v1 = changes.snapshot("fiber-100", cheap, None, None)
    v2 = changes.snapshot("fiber-1g", dear, None, at(10))
    life = inputs(now=at(22), status=first.status, service=ready_service(at(-1)))
    result = billing_step(
        step_inputs(life, plan=changes.PlanOutcome((v1, v2)), offering=dear, samples={key: Sample(2_000, at(21))})
    )
    month = Cycle.of("month", 1, "UTC").period_containing(T0)
    assert result.status["billing"]["usage"]["windows"] == [
        {"start": iso(month.start), "end": iso(at(10)), "octets": "900"},
        {"start": iso(at(10)), "end": iso(month.end), "octets": "1100"},
    ]


# -- the month's usage.rated fact: one id whoever closes it (order chaos, "a December usage rated twice") --

KOLKATA = "Asia/Kolkata"
KOLKATA_MONTH = Cycle.of("month", 1, KOLKATA).period_containing(T0)
METERED = offering(
    productOfferingPrice=[
        *offering().model_dump(mode="json", exclude_none=True)["productOfferingPrice"],
        {
            "name": "Traffic",
            "priceType": "usage",
            "unitOfMeasure": {"amount": 1, "units": "GB"},
            "price": {"unit": "EUR", "value": "0.50"},
        },
    ]
)
COUNTER = "leaf1/Ethernet1/100/in"


def kolkata_pass(status: dict[str, Any] | None, now: datetime, octets: int, sampled: datetime) -> Any:
    life = (
        activating(now)
        if status is None
        else inputs(now=now, status=status, service=ready_service(KOLKATA_MONTH.end - timedelta(hours=2)))
    )
    life = replace(life, offering=METERED)
    return billing_step(
        step_inputs(
            life,
            offering=METERED,
            tz=KOLKATA,
            recorded_zone=KOLKATA,
            samples={COUNTER: Sample(octets, sampled)},
        )
    )


@pytest.mark.parametrize(
    ("case", "closing"),
    [
        ("closed a second after the month end", [(KOLKATA_MONTH.end + timedelta(seconds=1), 9 * 10**9)]),
        ("closed by the next process, 40 s later", [(KOLKATA_MONTH.end + timedelta(seconds=40), 11 * 10**9)]),
        (
            "a sample after the month end recorded first, closed later",
            [
                (KOLKATA_MONTH.end + timedelta(seconds=5), 10 * 10**9),
                (KOLKATA_MONTH.end + timedelta(seconds=30), 12 * 10**9),
            ],
        ),
    ],
)
def test_the_months_usage_is_one_fact_under_one_id_whichever_pass_closes_it(
    case: str, closing: list[tuple[datetime, int]]
) -> None:
    """The id of a month's usage.rated fact is the price and the month cut in the account's zone: never the
    sample times, the octets or the moment of the pass that closes it, so a close redone after a restart (other
    samples, later) is the same fact under the same id, and its amount is the month's own octets."""
    start = KOLKATA_MONTH.end - timedelta(hours=2)
    status = kolkata_pass(None, start, 0, start).status
    status = kolkata_pass(status, start + timedelta(hours=1), 4 * 10**9, start + timedelta(hours=1)).status
    events: list[Any] = []
    for now, octets in closing:
        result = kolkata_pass(status, now, octets, now)
        events += [e for e in result.events if ev.fact_of(e.type) == "usage.rated"]
        status = result.status
    assert [e.id for e in events] == [ev.usage_rated_id(REF, "Traffic", KOLKATA_MONTH)], case
    (event,) = events
    assert (event.data or {})["periodStart"] == KOLKATA_MONTH.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["billing"]["chargedThrough"] == KOLKATA_MONTH.end.strftime("%Y-%m-%dT%H:%M:%SZ")

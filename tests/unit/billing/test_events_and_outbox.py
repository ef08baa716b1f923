"""Billing events (ids, CloudEvent attributes) and the durable outbox."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from cloudevents.core.bindings.http import from_http, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat

from controller.api.subscription import SubscriptionStatus
from controller.billing import events as ev
from controller.billing import outbox as outbox_module
from controller.billing.events import BillingEvent, EventError, SubscriptionRef
from controller.billing.money import Money
from controller.billing.outbox import Outbox, OutboxFull
from controller.billing.periods import Period
from tests.unit.billing.conftest import utc

REF = SubscriptionRef("acme", "fiber-1", "6f1c1b9e-0000-4000-8000-000000000001", "acme-001")
NOV = Period(utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))


def charge(ref: SubscriptionRef = REF, amount: str = "49.90") -> BillingEvent:
    return ev.charge_period(ref, "Monthly fee", NOV, NOV, Money.of(amount, "EUR"), Money.of("0", "EUR"), NOV.seconds)


def test_ids_are_uuid5_of_the_fact_and_stable() -> None:
    first = ev.activated(REF, utc(2026, 11, 5, 8), "fiber")
    again = ev.activated(REF, utc(2026, 11, 5, 8), "fiber")
    assert first.id == again.id and uuid.UUID(first.id).version == 5
    # the same fact never gets two ids: activation is once per subscription whatever the time
    assert ev.activated(REF, utc(2026, 11, 6), "fiber").id == first.id
    # amounts are data, not identity: a recomputed amount keeps the id
    assert charge(amount="49.90").id == charge(amount="40.00").id == ev.charge_period_id(REF, "Monthly fee", NOV)
    ids = {
        first.id,
        ev.suspended(REF, utc(2026, 11, 10), "customer").id,
        ev.suspended(REF, utc(2026, 11, 20), "customer").id,  # a second suspension is a second fact
        ev.resumed(REF, utc(2026, 11, 12), "customer").id,
        ev.terminated(REF, utc(2026, 11, 30)).id,
        charge().id,
        ev.usage_rated_id(REF, "Traffic", NOV),
        ev.sla_credit_id(REF, NOV),
    }
    assert len(ids) == 8
    other = SubscriptionRef("acme", "fiber-1", "6f1c1b9e-0000-4000-8000-000000000002", "acme-001")
    assert ev.activated(other, utc(2026, 11, 5, 8), "fiber").id != first.id  # recreated object: new uid


def test_cloudevent_attributes() -> None:
    event = ev.suspended(REF, utc(2026, 11, 10, 12, 30, 15).replace(microsecond=5), "nonPayment")
    ce = event.to_cloudevent()
    assert ce.get_specversion() == "1.0"
    assert ce.get_type() == "dev.intent.telco.subscription.suspended.v1"
    assert ce.get_source() == "/apis/telco.intent.dev/v1alpha1/namespaces/acme/subscriptions/fiber-1"
    assert ce.get_subject() == "acme-001"
    assert ce.get_time() == utc(2026, 11, 10, 12, 30, 15)  # the occurrence, whole seconds
    assert ce.get_datacontenttype() == "application/json"
    assert ce.get_data() == {"subscription": "acme/fiber-1", "billingAccount": "acme-001", "reason": "nonPayment"}
    assert [ev.event_type(f) for f in ev.FACTS] == [
        f"dev.intent.telco.subscription.{f}.v1"
        for f in (
            "activated",
            "suspended",
            "resumed",
            "terminated",
            "changed",
            "charge.period",
            "usage.rated",
            "sla.credit",
        )
    ]


def test_amounts_are_decimal_strings_and_round_trip_both_http_modes() -> None:
    event = charge()
    assert event.data["amount"] == "49.90" and event.data["currency"] == "EUR"
    assert event.time == NOV.end
    for encode in (to_structured, to_binary):
        message = encode(event.to_cloudevent(), JSONFormat())
        back = BillingEvent.from_cloudevent(from_http(message, JSONFormat()))
        assert back == event
    assert event.to_json()["time"] == "2026-11-30T23:00:00Z"


def test_bad_events_name_the_field() -> None:
    with pytest.raises(EventError, match=r"^metadata.uid"):
        ev.event_id("", "activated")
    with pytest.raises(EventError, match=r"^fact: 'paid'"):
        ev.event_type("paid")
    with pytest.raises(EventError, match=r"^data.n: 1"):
        ev.make_event(REF, "activated", "", NOV.start, {"n": 1})  # type: ignore[dict-item]
    with pytest.raises(EventError, match=r"^metadata.uid: is required"):
        SubscriptionRef.from_object(
            {"metadata": {"namespace": "a", "name": "b"}, "spec": {"billingAccount": {"id": "x"}}}
        )


def events(n: int, start: int = 0) -> list[BillingEvent]:
    return [ev.suspended(REF, utc(2026, 1, 1) + timedelta(minutes=start + i), "customer") for i in range(n)]


def test_outbox_add_take_mark_delivered() -> None:
    now = utc(2026, 1, 1, 12)
    box = Outbox().add(events(3), now)
    assert box.depth == 3 and box.take(2) == events(2)
    assert box.add(events(3), now + timedelta(hours=1)) == box  # idempotent by id
    assert box.oldest_age(now + timedelta(minutes=5)) == timedelta(minutes=5)
    done = box.mark_delivered([events(3)[0].id, events(3)[2].id, "unknown"])
    assert done.ids == (events(3)[1].id,) and done.delivered_count == 2
    assert done.add(events(1), now) == done  # just delivered: not queued again
    empty = done.mark_delivered(done.ids)
    assert empty.depth == 0 and empty.oldest_age(now) is None and empty.delivered_count == 3


def test_outbox_lives_in_subscription_status() -> None:
    box = Outbox().add(events(2), utc(2026, 1, 1)).mark_delivered([events(1)[0].id])
    status = SubscriptionStatus.model_validate({"billing": {"outbox": box.to_status().model_dump(mode="json")}})
    assert status.billing is not None
    assert Outbox.from_status(status.billing.outbox) == box
    assert Outbox.from_status(status.billing.outbox.model_dump(mode="json")) == box


def test_full_outbox_refuses_everything_and_drops_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "MAX_PENDING", 4)
    box = Outbox().add(events(3), utc(2026, 1, 1))
    assert not box.would_fit(events(2, start=10))
    with pytest.raises(OutboxFull, match=r"3 events pending, 2 more would exceed 4"):
        box.add(events(2, start=10), utc(2026, 1, 1))
    assert box.depth == 3  # unchanged: the caller does not record the transition either
    assert box.add(events(1, start=10), utc(2026, 1, 1)).depth == 4


def test_delivery_condition_does_not_churn() -> None:
    box = Outbox().add(events(2), utc(2026, 1, 1))
    first = box.condition(utc(2026, 1, 1, 0, 1))
    later = box.condition(utc(2026, 1, 1, 5), previous=[first])
    assert (first.status, first.reason) == ("False", "Pending")
    assert later == first  # same status and message: nothing to write
    done = box.mark_delivered(box.ids).condition(utc(2026, 1, 1, 6), previous=[later])
    assert (done.status, done.reason, done.lastTransitionTime) == ("True", "Delivered", utc(2026, 1, 1, 6))
    full = box.condition(utc(2026, 1, 1, 7), previous=[done], full=True)
    assert (full.status, full.reason) == ("False", "OutboxFull")


def test_lifecycle_facts_map_to_billing_events() -> None:
    at = utc(2026, 11, 10, 8)
    assert ev.for_fact(REF, "activated", at, {"service": "fiber-1"}, offering="fiber") == ev.activated(REF, at, "fiber")
    assert ev.for_fact(REF, "suspended", at, {"reason": "PaymentHold"}) == ev.suspended(REF, at, "PaymentHold")
    assert ev.for_fact(REF, "resumed", at, {"reason": "PaymentReceived"}) == ev.resumed(REF, at, "PaymentReceived")
    assert ev.for_fact(REF, "terminated", at) == ev.terminated(REF, at)
    assert ev.for_fact(REF, "cancelled", at) is None and ev.for_fact(REF, "aborted", at) is None


def test_source_is_an_absolute_uri_with_the_cluster_identity() -> None:
    path = "/apis/telco.intent.dev/v1alpha1/namespaces/acme/subscriptions/fiber-1"
    assert REF.source == path
    ref = SubscriptionRef.from_object(
        {"metadata": {"namespace": "acme", "name": "fiber-1", "uid": REF.uid}, "spec": {"billingAccount": {"id": "a"}}},
        "https://k8s.example.net",
    )
    assert ref.source == "https://k8s.example.net" + path
    event = ev.activated(ref, utc(2026, 11, 1, 12), "fiber")
    assert event.source == ref.source and event.id == ev.activated(REF, utc(2026, 11, 1, 12), "fiber").id


def test_a_period_fact_rated_ahead_occurred_when_the_subscription_ended() -> None:
    month = Period(utc(2026, 11, 1), utc(2026, 12, 1))
    ended = utc(2026, 11, 10, 8, 30).replace(microsecond=400_000)
    zero = Money.zero("EUR")
    charge = ev.charge_period(REF, "Monthly fee", month, month, Money.of("49.90", "EUR"), zero, 100)
    assert charge.time == month.end
    final = ev.occurred_by(charge, ended)
    assert final.time == utc(2026, 11, 10, 8, 30) and final.id == charge.id and final.data == charge.data
    assert final.data["coverageEnd"] == "2026-12-01T00:00:00Z", "the coverage stays in the data"
    assert ev.occurred_by(charge, utc(2026, 12, 5)) is charge, "a period that already ended keeps its end"

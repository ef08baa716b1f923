"""The Deliverer against a real CloudEvents HTTP receiver on loopback, and the JSON Lines sink.

No Kubernetes here: the outbox is driven as the controller drives it (take pending, deliver,
mark delivered), with a sink that goes down, drops connections, and a controller that
"crashes" between delivery and the write that marks the events delivered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.billing import events as ev
from controller.billing.clock import FakeClock
from controller.billing.events import BillingEvent, SubscriptionRef
from controller.billing.money import Money
from controller.billing.outbox import Outbox
from controller.billing.periods import Cycle
from controller.billing.sinks import Deliverer, HttpSink, JsonlSink, Mode, RetryPolicy
from tests.support.cloudevents_receiver import CloudEventsReceiver

FAST = RetryPolicy(attempts=3, base_delay=0.02, max_delay=0.2)
START = FakeClock(datetime(2026, 11, 1, tzinfo=UTC))


@pytest.fixture
def receiver() -> Iterator[CloudEventsReceiver]:
    with CloudEventsReceiver() as rx:
        yield rx


def facts(subscriptions: int = 5) -> list[BillingEvent]:
    """A realistic mix: lifecycle facts and a few months of period charges per subscription."""
    out: list[BillingEvent] = []
    cycle = Cycle.of("month", 1, "Europe/Paris")
    for i in range(subscriptions):
        ref = SubscriptionRef("acme", f"fiber-{i}", f"uid-{i}", "acme-001")
        t = START.now()
        out.append(ev.activated(ref, t, "fiber", Money.of("99", "EUR")))
        period = cycle.period_containing(t)
        for month in range(3):
            out.append(
                ev.charge_period(
                    ref, "Monthly fee", period, period, Money.of("49.90", "EUR"), Money.of("0", "EUR"), period.seconds
                )
            )
            out.append(ev.suspended(ref, period.start + timedelta(days=3), "CustomerRequest"))
            out.append(ev.resumed(ref, period.start + timedelta(days=4), "CustomerRequest"))
            period = cycle.next(period)
            assert month < 3
        out.append(ev.terminated(ref, period.start))
    return out


async def drain(outbox: Outbox, deliverer: Deliverer, deadline: float = 20.0) -> tuple[Outbox, int]:
    """Deliver until the outbox is empty, as the controller's delivery loop does; returns passes."""
    passes = 0
    until = time.monotonic() + deadline
    while outbox.depth and time.monotonic() < until:
        report = await deliverer.deliver(outbox.take())
        outbox = outbox.mark_delivered(report.delivered)
        passes += 1
        if outbox.depth:
            await asyncio.sleep(0.05)
    return outbox, passes


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_every_event_arrives_once_with_its_attributes(receiver: CloudEventsReceiver, mode: Mode) -> None:
    events = facts()
    outbox = Outbox().add(events, START.now())

    async def go() -> Outbox:
        deliverer = Deliverer([HttpSink(receiver.url, mode=mode)], policy=FAST)
        try:
            box, _ = await drain(outbox, deliverer)
            return box
        finally:
            await deliverer.close()

    left = asyncio.run(go())
    assert left.depth == 0 and left.delivered_count == len(events)
    assert receiver.ids == {e.id for e in events} and receiver.redeliveries == {}
    assert {r.mode for r in receiver.received} == {mode}
    by_id = {e.get_id(): e for e in receiver.events}
    for sent in events:
        got = by_id[sent.id]
        assert BillingEvent.from_cloudevent(got) == sent
        assert got.get_specversion() == "1.0" and got.get_datacontenttype() == "application/json"
    charge = next(e for e in receiver.events if e.get_type().endswith("charge.period.v1"))
    assert charge.get_data()["amount"] == "49.90"


def test_sink_down_then_back_loses_nothing_and_never_doubles_an_identity(receiver: CloudEventsReceiver) -> None:
    events = facts()
    outbox = Outbox().add(events, START.now())
    receiver.down(seconds=1.0)

    async def go() -> tuple[Outbox, int, Deliverer]:
        deliverer = Deliverer([HttpSink(receiver.url, mode="binary")], policy=FAST)
        try:
            box, passes = await drain(outbox, deliverer)
            return box, passes, deliverer
        finally:
            await deliverer.close()

    left, passes, deliverer = asyncio.run(go())
    assert left.depth == 0, f"still pending after {passes} passes"
    assert passes > 1 and receiver.statuses[503] > 0  # it really was down
    assert deliverer.metrics.retries > 0 and deliverer.metrics.failures > 0
    assert receiver.ids == {e.id for e in events}  # nothing lost
    assert len(receiver.deliveries) == len(events)  # one (source, id) per fact
    assert receiver.redeliveries == {}  # 503s are not deliveries


def test_crash_between_delivery_and_marking_redelivers_under_the_same_ids(receiver: CloudEventsReceiver) -> None:
    events = facts(2)
    outbox = Outbox().add(events, START.now())

    async def deliver_with(deliverer: Deliverer, box: Outbox) -> Outbox:
        try:
            left, _ = await drain(box, deliverer)
            return left
        finally:
            await deliverer.close()

    # first run delivers everything, then "crashes" before the status write: the outbox is unchanged
    asyncio.run(deliver_with(Deliverer([HttpSink(receiver.url)], policy=FAST), outbox))
    # the restarted controller (no memory) delivers the same outbox again
    left = asyncio.run(deliver_with(Deliverer([HttpSink(receiver.url)], policy=FAST), outbox))
    assert left.depth == 0
    assert receiver.ids == {e.id for e in events} and len(receiver.deliveries) == len(events)
    assert receiver.redeliveries == {(e.source, e.id): 1 for e in events}  # counted, same identities


def test_dropped_connections_are_retried(receiver: CloudEventsReceiver) -> None:
    events = facts(1)
    receiver.drop(4)

    async def go() -> tuple[Outbox, Deliverer]:
        deliverer = Deliverer(
            [HttpSink(receiver.url, timeout=2)], policy=RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05)
        )
        try:
            box, _ = await drain(Outbox().add(events, START.now()), deliverer)
            return box, deliverer
        finally:
            await deliverer.close()

    left, deliverer = asyncio.run(go())
    assert left.depth == 0 and receiver.dropped == 4 and deliverer.metrics.retries >= 4
    assert receiver.ids == {e.id for e in events}


def test_jsonl_and_http_together(receiver: CloudEventsReceiver, tmp_path: Path) -> None:
    events = facts(2)
    path = tmp_path / "billing.jsonl"
    receiver.down(requests=2)  # the HTTP sink fails the first pass

    async def go() -> tuple[Outbox, list[list[str]]]:
        deliverer = Deliverer(
            [JsonlSink(path), HttpSink(receiver.url)], policy=RetryPolicy(attempts=2, base_delay=0.01)
        )
        box, reports = Outbox().add(events, START.now()), []
        try:
            for _ in range(5):
                report = await deliverer.deliver(box.take())
                reports.append(report.delivered)
                box = box.mark_delivered(report.delivered)
                if not box.depth:
                    break
            return box, reports
        finally:
            await deliverer.close()

    left, reports = asyncio.run(go())
    assert reports[0] == []  # the file had them all, the receiver none: nothing may leave the outbox
    assert left.depth == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == [e.id for e in events]  # each written once, in order
    assert lines[0]["type"] == "dev.intent.telco.subscription.activated.v1"
    assert lines[0]["source"] == "/apis/telco.intent.dev/v1alpha1/namespaces/acme/subscriptions/fiber-0"
    assert lines[0]["data"]["oneTimeAmount"] == "99.00"
    assert receiver.ids == {e.id for e in events}


@pytest.mark.parametrize("concurrency", [1, 8])
def test_throughput_to_the_real_receiver(receiver: CloudEventsReceiver, concurrency: int) -> None:
    ref = SubscriptionRef("acme", "bulk", "uid-bulk", "acme-001")
    events = [ev.suspended(ref, START.now() + timedelta(seconds=i), "CustomerRequest") for i in range(2000)]

    async def go() -> float:
        deliverer = Deliverer([HttpSink(receiver.url, mode="structured")], policy=FAST, concurrency=concurrency)
        try:
            await deliverer.deliver(events[:50])  # warm up the connection pool
            began = time.perf_counter()
            report = await deliverer.deliver(events[50:])
            elapsed = time.perf_counter() - began
            assert report.complete
            return len(events[50:]) / elapsed
        finally:
            await deliverer.close()

    rate = asyncio.run(go())
    print(f"\nDeliverer -> CloudEventsReceiver on loopback, concurrency {concurrency}: {rate:.0f} events/s")
    assert receiver.wait_for(len(events)) and len(receiver.ids) == len(events)
    assert rate > 50

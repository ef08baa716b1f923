"""Sinks and the Deliverer, with in-process fake sinks and a fake sleep (no network)."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from controller.billing import events as ev
from controller.billing.events import BillingEvent, SubscriptionRef
from controller.billing.sinks import Deliverer, HttpSink, JsonlSink, RetryPolicy, SinkError
from tests.unit.billing.conftest import utc

REF = SubscriptionRef("acme", "fiber-1", "uid-1", "acme-001")


def batch(n: int) -> list[BillingEvent]:
    return [ev.suspended(REF, utc(2026, 1, 1) + timedelta(minutes=i), "customer") for i in range(n)]


class FakeSink:
    def __init__(self, name: str, fail: int = 0, retryable: bool = True, refuse: set[str] | None = None) -> None:
        self.name = name
        self.fail = fail  # the next `fail` sends raise
        self.retryable = retryable
        self.refuse = refuse or set()
        self.got: list[str] = []
        self.calls = 0

    async def send(self, event: BillingEvent) -> None:
        self.calls += 1
        if event.id in self.refuse:
            raise SinkError(self.name, "HTTP 400", retryable=False)
        if self.fail > 0:
            self.fail -= 1
            raise SinkError(self.name, "HTTP 503", retryable=self.retryable)
        self.got.append(event.id)

    async def close(self) -> None:
        return None


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def run(deliverer: Deliverer, events: list[BillingEvent]):
    return asyncio.run(deliverer.deliver(events))


def test_retry_delays_grow_are_jittered_and_bounded() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 10)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(4.0, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 4.0 and len(set(delays)) == len(delays)


def test_transient_failures_are_retried_then_delivered() -> None:
    sink, sleeps = FakeSink("a", fail=2), Sleeps()
    deliverer = Deliverer([sink], policy=RetryPolicy(attempts=5), sleep=sleeps, rng=random.Random(1))
    report = run(deliverer, batch(3))
    assert report.delivered == [e.id for e in batch(3)] and report.complete
    assert len(sleeps.delays) == 2 and deliverer.metrics.retries == 2 and deliverer.metrics.delivered == 3


def test_a_sink_that_stays_down_keeps_events_pending() -> None:
    up, down = FakeSink("up"), FakeSink("down", fail=1000)
    deliverer = Deliverer([up, down], policy=RetryPolicy(attempts=3), sleep=Sleeps())
    report = run(deliverer, batch(4))
    assert report.delivered == [] and report.pending == [e.id for e in batch(4)]
    assert "down" in report.errors and deliverer.metrics.failures == 1
    assert down.calls == 3  # stopped after the first event exhausted its attempts
    assert up.got == [e.id for e in batch(4)]
    down.fail = 0  # back up: the next pass delivers; the healthy sink is not sent the events again
    report = run(deliverer, batch(4))
    assert report.delivered == [e.id for e in batch(4)]
    assert up.got == [e.id for e in batch(4)] and down.got == [e.id for e in batch(4)]
    assert deliverer.metrics.delivered == 4
    assert run(deliverer, batch(4)).delivered == [e.id for e in batch(4)]  # re-offered: no re-send
    assert deliverer.metrics.delivered == 4 and up.calls == 4


def test_a_refused_event_does_not_block_the_others() -> None:
    events = batch(3)
    sink = FakeSink("a", refuse={events[1].id})
    deliverer = Deliverer([sink], sleep=Sleeps())
    report = run(deliverer, events)
    assert report.delivered == [events[0].id, events[2].id] and report.pending == [events[1].id]
    assert sink.calls == 3 and deliverer.metrics.retries == 0


def test_concurrent_sends_and_duplicate_input() -> None:
    sink = FakeSink("a")
    deliverer = Deliverer([sink], concurrency=4, sleep=Sleeps())
    events = batch(10)
    report = run(deliverer, events + events[:3])
    assert report.delivered == [e.id for e in events] and sorted(sink.got) == sorted(e.id for e in events)


def test_deliverer_needs_unique_sinks() -> None:
    with pytest.raises(ValueError, match=r"sinks"):
        Deliverer([])
    with pytest.raises(ValueError, match=r"unique"):
        Deliverer([FakeSink("a"), FakeSink("a")])


def test_jsonl_sink_appends_cloudevents_json(tmp_path: Path) -> None:
    path = tmp_path / "events" / "billing.jsonl"
    sink = JsonlSink(path)
    deliverer = Deliverer([sink], sleep=Sleeps())
    run(deliverer, batch(2))
    run(deliverer, batch(3))  # only the third is new to this process
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == [e.id for e in batch(3)]
    assert lines[0]["specversion"] == "1.0" and lines[0]["data"]["reason"] == "customer"
    assert lines[0]["type"] == "dev.intent.telco.subscription.suspended.v1"


def test_jsonl_sink_reports_io_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = JsonlSink(blocker / "sub" / "x.jsonl")
    report = run(Deliverer([sink], policy=RetryPolicy(attempts=2), sleep=Sleeps()), batch(1))
    assert report.pending and sink.name in report.errors


def test_http_sink_encodes_structured_and_binary() -> None:
    event = batch(1)[0]
    headers, body = HttpSink("http://127.0.0.1:1/", mode="structured").encode(event)
    assert headers["content-type"] == "application/cloudevents+json"
    assert json.loads(body)["id"] == event.id
    headers, body = HttpSink("http://127.0.0.1:1/", mode="binary", headers={"authorization": "x"}).encode(event)
    assert headers["ce-id"] == event.id and headers["ce-specversion"] == "1.0"
    assert headers["content-type"] == "application/json" and headers["authorization"] == "x"
    assert json.loads(body)["reason"] == "customer"
    with pytest.raises(ValueError, match=r"mode"):
        HttpSink("http://x/", mode="batch")  # type: ignore[arg-type]


def test_http_sink_connection_refused_is_retryable() -> None:
    async def go() -> SinkError:
        sink = HttpSink("http://127.0.0.1:9/", timeout=2)
        try:
            await sink.send(batch(1)[0])
        except SinkError as exc:
            return exc
        finally:
            await sink.close()
        raise AssertionError("no error")

    error = asyncio.run(go())
    assert error.retryable and "127.0.0.1:9" in error.sink

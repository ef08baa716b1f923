"""The start-up timeline (controller/startup.py), the commerce layer's concurrent start-up lists and which
Subscriptions go first when a re-list queues every one of them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from controller import startup
from controller.commerce.index import CommerceIndex
from controller.commerce.runtime import list_concurrently


def test_a_phase_is_recorded_once_and_held_until_logging_is_flushed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="controller.startup")
    before = startup.since_exec()
    startup.mark("unit phase one")
    first = startup.reached()["unit phase one"]
    time.sleep(0.02)
    startup.mark("unit phase one")  # a second time changes nothing
    assert startup.reached()["unit phase one"] == first
    assert before <= first <= startup.since_exec()
    startup.flush()
    startup.mark("unit phase two")
    lines = [r.getMessage() for r in caplog.records if r.name == "controller.startup"]
    assert sum("unit phase one" in line for line in lines) == 1
    assert any(line.startswith("start-up: unit phase two at ") and "s CPU)" in line for line in lines)
    assert startup.reached()["unit phase two"] >= first + 0.02


def test_since_exec_counts_from_the_process_start_not_the_import() -> None:
    # This test process started well before this test ran (pytest's own imports and collection).
    assert startup.since_exec() > time.monotonic() - startup._IMPORTED


def test_the_start_up_lists_run_at_once_and_keep_their_order() -> None:
    in_flight, peak = 0, 0

    def lister(items: list[str], delay: float) -> Callable[[], Awaitable[list[str]]]:
        async def call() -> list[str]:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(delay)
            in_flight -= 1
            return items

        return call

    async def go() -> tuple[list[list[str] | Exception], float]:
        t0 = time.monotonic()
        calls = [("a", lister(["a1"], 0.3)), ("b", lister(["b1", "b2"], 0.1)), ("c", lister([], 0.2))]
        out = await list_concurrently(calls)
        return out, time.monotonic() - t0

    out, took = asyncio.run(go())
    assert out == [["a1"], ["b1", "b2"], []]  # the order given, not the order they finished in
    assert peak == 3
    assert took < 0.55  # one after the other would take 0.6 s


def test_a_failed_list_is_its_exception_and_the_others_still_count() -> None:
    async def ok() -> list[str]:
        await asyncio.sleep(0.01)
        return ["x"]

    async def broken() -> list[str]:
        raise OSError("connection refused")

    out = asyncio.run(list_concurrently([("ok", ok), ("broken", broken), ("ok again", ok)]))
    assert out[0] == ["x"] and out[2] == ["x"]
    assert isinstance(out[1], OSError)


def test_cancelling_the_start_up_cancels_every_list_under_way() -> None:
    cancelled: list[str] = []

    def slow(name: str) -> Callable[[], Awaitable[list[str]]]:
        async def call() -> list[str]:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            return []

        return call

    async def go() -> None:
        task = asyncio.create_task(list_concurrently([("a", slow("a")), ("b", slow("b"))]))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert sorted(cancelled) == ["a", "b"]


@pytest.mark.parametrize(
    ("meta", "status", "urgent"),
    [
        ({"generation": 3}, {"observedGeneration": 3}, False),  # handled: a re-list or billing pass finds it so
        ({"generation": 4}, {"observedGeneration": 3}, True),  # an order change not yet handled
        ({"generation": 1}, {}, True),  # a new order
        ({"generation": 3, "deletionTimestamp": "2026-12-03T12:00:00Z"}, {"observedGeneration": 3}, True),
    ],
)
def test_a_subscription_whose_spec_is_not_handled_yet_is_urgent(
    meta: dict[str, object], status: dict[str, object], urgent: bool
) -> None:
    index = CommerceIndex(cast(Any, None), cast(Any, None))  # spec_unhandled reads only the index
    index.subscriptions[("ns", "a")] = {"metadata": {"name": "a", "namespace": "ns", **meta}, "status": status}
    assert index.spec_unhandled(("ns", "a")) is urgent
    assert index.spec_unhandled(("ns", "gone")) is False

"""The one work queue (controller/workqueue.py) that the device reconciler and the commerce controllers share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from controller.workqueue import Slots, WorkQueue, backoff_delay


@pytest.mark.parametrize(
    ("attempt", "initial", "maximum", "expected"),
    [
        (1, 0.5, 30.0, 0.5),
        (2, 0.5, 30.0, 1.0),
        (4, 0.5, 30.0, 4.0),
        (7, 0.5, 30.0, 30.0),  # 32 capped
        (0, 1.0, 8.0, 1.0),  # never below the first delay
    ],
)
def test_backoff_delay_doubles_up_to_the_cap(attempt: int, initial: float, maximum: float, expected: float) -> None:
    assert backoff_delay(attempt, initial, maximum) == expected


class Recorder:
    """An `fn` that records its runs, how many overlap per key and in all, and fails as told."""

    def __init__(self, duration: float = 0.01, failures: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.duration = duration
        self.failures = dict(failures or {})
        self.active: dict[str, int] = {}
        self.max_per_key = 0
        self.max_total = 0

    async def __call__(self, key: str) -> None:
        self.calls.append(key)
        self.active[key] = self.active.get(key, 0) + 1
        self.max_per_key = max(self.max_per_key, self.active[key])
        self.max_total = max(self.max_total, sum(self.active.values()))
        try:
            await asyncio.sleep(self.duration)
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                raise RuntimeError(f"{key} failed")
        finally:
            self.active[key] -= 1


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def test_marks_before_and_during_a_run_coalesce_into_one_more_run() -> None:
    fn = Recorder(duration=0.5)  # long enough that the marks below surely land while it runs

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn)
        for _ in range(5):
            q.mark("a")  # gated: all five wait for open() as one run
        q.open()
        await asyncio.sleep(0)  # the run starts
        q.mark("a")  # while it runs: exactly one more
        q.mark("a")
        await asyncio.sleep(1.5)
        await q.close()

    run(body)
    assert fn.calls == ["a", "a"]
    assert fn.max_per_key == 1, "never two runs of one key at a time"


def test_nothing_runs_before_open_when_gated_and_at_once_when_not() -> None:
    gated, open_ = Recorder(), Recorder()

    async def body() -> None:
        a: WorkQueue[str] = WorkQueue("gated", gated)
        b: WorkQueue[str] = WorkQueue("open", open_, gated=False)
        a.mark("k")
        b.mark("k")
        await asyncio.sleep(0.05)
        assert gated.calls == [] and a.busy()
        assert open_.calls == ["k"]
        a.open()
        await asyncio.sleep(0.3)
        assert not a.busy()
        await a.close()
        await b.close()

    run(body)
    assert gated.calls == ["k"]


def test_a_failed_run_is_retried_with_backoff_and_the_count_resets_on_success() -> None:
    fn = Recorder(duration=0.001, failures={"bad": 2})

    async def body() -> None:
        # Delays of tenths of a second leave every check 0.1 s or more from a retry, for loaded machines.
        q: WorkQueue[str] = WorkQueue("t", fn, retry_initial=0.2, retry_max=1.0, gated=False)
        q.mark("bad")
        q.mark("good")
        await asyncio.sleep(0.1)
        assert fn.calls.count("bad") == 1
        await asyncio.sleep(0.25)  # first retry after 0.2 s
        assert fn.calls.count("bad") == 2
        await asyncio.sleep(0.15)  # the second waits 0.4 s
        assert fn.calls.count("bad") == 2
        await asyncio.sleep(0.35)
        assert fn.calls.count("bad") == 3
        assert q._attempts == {}, "a run that succeeded clears the backoff"
        await q.close()

    run(body)
    assert fn.calls.count("good") == 1


def test_without_reset_on_success_only_the_caller_resets_the_backoff() -> None:
    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", Recorder(0.0), retry_initial=1.0, retry_max=8.0, reset_on_success=False)
        assert [q.backoff("d") for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
        q.reset_backoff("d")
        assert q.backoff("d") == 1.0
        await q.close()

    run(body)


def test_only_the_earliest_wakeup_per_key_is_kept() -> None:
    fn = Recorder(duration=0.0)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, gated=False)
        q.mark_after("a", 0.2)
        q.mark_after("a", 0.02)  # earlier: replaces
        q.mark_after("a", 0.5)  # later: ignored
        q.mark_after("b", 0.02)
        q.forget("b")  # gone: its wake-up with it
        await asyncio.sleep(0.1)
        assert fn.calls == ["a"]
        await asyncio.sleep(0.5)
        await q.close()

    run(body)
    assert fn.calls == ["a"], "the later wake-ups were dropped, not queued"


def test_debounce_turns_a_burst_into_one_run() -> None:
    fn = Recorder(duration=0.0)

    async def body() -> None:
        # A window far longer than the burst, so a loaded machine cannot stretch the burst past it.
        q: WorkQueue[str] = WorkQueue("t", fn, debounce=0.5, gated=False)
        q.mark("dev")
        for _ in range(3):
            await asyncio.sleep(0.01)
            q.mark("dev")  # within the debounce: the same run
        await asyncio.sleep(1.0)
        await q.close()

    run(body)
    assert fn.calls == ["dev"]


def test_concurrency_bounds_runs_across_keys_and_after_run_sees_every_run() -> None:
    fn = Recorder(duration=0.02, failures={"k3": 1})
    seen: list[str] = []

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, concurrency=2, gated=False, retry_initial=10.0, after_run=seen.append)
        for i in range(6):
            q.mark(f"k{i}")
        await asyncio.sleep(0.2)
        await q.close()

    run(body)
    assert sorted(fn.calls) == [f"k{i}" for i in range(6)]
    assert fn.max_total == 2
    assert sorted(seen) == sorted(fn.calls), "after_run follows failed runs too"


def test_close_cancels_runs_and_timers_and_refuses_new_marks() -> None:
    fn = Recorder(duration=1.0)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, gated=False)
        q.mark("a")
        # The timer is due well after close (even on a loaded machine) and the wait after close
        # is longer than it, so a timer that close failed to cancel would run "b".
        q.mark_after("b", 0.5)
        await asyncio.sleep(0)  # "a" starts
        await q.close()
        q.mark("c")
        await asyncio.sleep(0.7)
        assert not q.busy()

    run(body)
    assert fn.calls == ["a"]


def test_suspend_stops_every_run_and_wakeup_and_open_runs_each_stopped_key_once() -> None:
    """A lapsed fence suspends the commerce layer: nothing may run until it is opened again, and then every
    key that was running, due again or waiting for its wake-up runs (once), as does a key marked meanwhile."""
    fn = Recorder(duration=1.0)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, gated=False)
        q.mark("a")
        await asyncio.sleep(0.005)  # "a" runs
        q.mark("a")  # due again after this run
        q.mark_after("b", 0.3)
        await q.suspend()
        assert fn.active["a"] == 0, "the run under way ended before suspend returned"
        q.mark("c")
        await asyncio.sleep(0.5)  # past b's wake-up: neither it nor c may run while suspended
        assert fn.calls == ["a"]
        q.open()
        await asyncio.sleep(0.005)
        assert sorted(fn.calls[1:]) == ["a", "b", "c"]
        await q.close()

    run(body)


def test_cancel_ends_the_run_of_one_key_and_its_wakeups_and_leaves_the_others() -> None:
    fn = Recorder(duration=1.0)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, gated=False)
        q.mark("a")
        q.mark("b")
        await asyncio.sleep(0.005)
        q.mark("a")  # a pending second run of "a" must not survive the cancel
        q.backoff("a")
        await q.cancel("a")
        assert fn.active["a"] == 0, "the run under way ended before cancel returned"
        assert fn.active["b"] == 1, "the other key's run goes on"
        await asyncio.sleep(0.6)  # past the backoff wake-up
        q.mark("a")  # a later mark runs again: the key was stopped, not banned
        await asyncio.sleep(0.005)
        await q.close()

    run(body)
    assert fn.calls == ["a", "b", "a"]


def test_a_key_cancelled_before_its_run_started_runs_again_when_marked() -> None:
    """A retry timer fired and the fence watchdog stopped the device in the same loop iteration: the
    run's task was cancelled before its first step, which never reaches its `finally`. The key used to
    stay "running" for good, so every later mark (the device taken back, each resync) was swallowed and
    its services kept their last outcome (seen: 337 services stuck DeviceUnavailable at 5,000)."""
    fn = Recorder()

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, gated=False)
        q.mark("a")  # its task exists but has not run a single step yet
        await q.cancel("a")
        assert not q.busy()
        q.mark("a")  # the device is driven again
        await asyncio.sleep(0.05)
        q.mark("a")  # and a resync later
        await asyncio.sleep(0.05)
        await q.close()

    run(body)
    assert fn.calls == ["a", "a"]


def test_a_mark_while_a_cancel_waits_runs_after_the_cancelled_run_ended() -> None:
    """A device taken back while its old run is still being stopped: the new run comes, never alongside."""
    fn = Recorder(duration=0.05)
    order: list[str] = []

    async def slow_to_stop(key: str) -> None:
        try:
            await fn(key)
        except asyncio.CancelledError:
            order.append("stopping")
            await asyncio.sleep(0.02)  # e.g. a gRPC call being torn down
            order.append("stopped")
            raise

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", slow_to_stop, gated=False)
        q.mark("a")
        await asyncio.sleep(0.01)
        cancelling = asyncio.create_task(q.cancel("a"))
        await asyncio.sleep(0.005)
        q.mark("a")
        await cancelling
        await asyncio.sleep(0.2)
        await q.close()

    run(body)
    assert fn.calls == ["a", "a"], "the mark made during the cancel is not lost"
    assert fn.max_per_key == 1, "never two runs of one key at a time"
    assert order == ["stopping", "stopped"]


def test_marks_while_a_run_waits_for_a_free_slot_are_that_run() -> None:
    """At the concurrency bound, a key waiting for a slot has not read anything yet: marks it gets meanwhile
    (a burst's watch events) are covered by the run it is waiting for, not one more run each."""
    fn = Recorder(duration=0.5)  # long enough that the marks below surely land while "busy" runs

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, concurrency=1, gated=False)
        q.mark("busy")
        q.mark("waiting")
        await asyncio.sleep(0)  # "busy" runs, "waiting" waits for the slot
        q.mark("waiting")
        q.mark("waiting")
        await asyncio.sleep(1.5)
        await q.close()

    run(body)
    assert fn.calls == ["busy", "waiting"]


def test_cancel_wakeup_drops_only_that_keys_timer() -> None:
    fn = Recorder(duration=0.0)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, gated=False)
        q.mark_after("a", 0.02)
        q.mark_after("b", 0.02)
        q.cancel_wakeup("a")
        q.cancel_wakeup("c")  # none pending: nothing happens
        await asyncio.sleep(0.08)
        await q.close()

    run(body)
    assert fn.calls == ["b"]


# -- urgent keys first (controller/workqueue.py, `urgent`; Slots) ------------------------------------------


def test_slots_let_an_urgent_waiter_in_before_earlier_ones() -> None:
    order: list[str] = []

    async def body() -> None:
        slots = Slots(1)
        await slots.acquire()  # held

        async def waiter(name: str, urgent: bool) -> None:
            await slots.acquire(urgent)
            order.append(name)
            await asyncio.sleep(0.01)
            slots.release()

        tasks = []
        for name, urgent in (("a", False), ("b", False), ("u", True), ("c", False), ("v", True)):
            tasks.append(asyncio.create_task(waiter(name, urgent)))
            await asyncio.sleep(0)  # each asks in this order
        assert slots.waiting() == 5
        slots.release()
        await asyncio.gather(*tasks)

    run(body)
    assert order == ["u", "v", "a", "b", "c"]


def test_a_cancelled_waiter_leaves_no_trace_and_a_slot_handed_to_it_goes_on() -> None:
    async def body() -> None:
        slots = Slots(1)
        await slots.acquire()
        gone = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert slots.waiting() == 0
        # Handed the slot by a release, then cancelled before it ran: the slot goes to the next waiter.
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)
        slots.release()
        await asyncio.wait_for(slots.acquire(), 1)  # nothing leaked: the one slot is free again

    run(body)


def test_when_the_gate_opens_urgent_keys_run_first() -> None:
    fn = Recorder(duration=0.02)

    async def body() -> None:
        urgent = {"k7", "k3"}
        q: WorkQueue[str] = WorkQueue("t", fn, concurrency=2, urgent=lambda k: k in urgent)
        for i in range(10):
            q.mark(f"k{i}")
        await asyncio.sleep(0.01)
        q.open()
        while q.busy():
            await asyncio.sleep(0.01)
        await q.close()

    run(body)
    assert sorted(fn.calls[:2]) == ["k3", "k7"]
    assert fn.calls[2:] == [f"k{i}" for i in range(10) if i not in (3, 7)]  # the rest in mark order


def test_an_urgent_mark_overtakes_a_queue_of_routine_ones() -> None:
    fn = Recorder(duration=0.05)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, concurrency=1, gated=False, urgent=lambda k: k == "order-change")
        for i in range(6):
            q.mark(f"routine{i}")
        await asyncio.sleep(0.01)  # routine0 runs, the other five wait for the slot
        q.mark("order-change")
        while q.busy():
            await asyncio.sleep(0.01)
        await q.close()

    run(body)
    assert fn.calls[:2] == ["routine0", "order-change"]
    assert fn.max_total == 1


def test_without_urgent_the_queue_keeps_mark_order() -> None:
    fn = Recorder(duration=0.01)

    async def body() -> None:
        q: WorkQueue[str] = WorkQueue("t", fn, concurrency=1)
        for i in range(5):
            q.mark(f"k{i}")
        q.open()
        while q.busy():
            await asyncio.sleep(0.01)
        await q.close()

    run(body)
    assert fn.calls == [f"k{i}" for i in range(5)]

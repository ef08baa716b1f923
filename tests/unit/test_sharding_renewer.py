"""The membership renew on a thread of its own (controller/sharding.py, issue 16): a starved event loop no
longer makes the renew late, so it no longer fences the replica off; a wedged loop still loses its
devices, and the fence still holds while the loop is stuck (every Set checks the deadline itself).
Real time, on purpose: the point is what happens while the loop does not run."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any

import pytest

from controller.sharding import COMMERCE, Conflict, Coordinator, Fenced, Timing, assign
from tests.unit.test_sharding import FakeLeases

TIMING = Timing(lease_duration=2.5, renew_deadline=1.5, renew_interval=0.2)


class ThreadedLeases(FakeLeases):
    """The in-memory store, also written from the renewer thread (replace_blocking)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.lock = threading.Lock()
        self.blocking: list[str] = []  # the thread each blocking renew ran on

    def _pulse(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._pulse()
        else:
            self.loop.call_soon_threadsafe(super()._pulse)

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return await super().replace(name, body)

    def replace_blocking(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._check()
            stored = self.items.get(name)
            if stored is None or stored["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
                raise Conflict("changed")
            self.blocking.append(threading.current_thread().name)
            return self._store(body)


async def eventually(condition: Any, seconds: float = 4.0) -> bool:
    """Whether `condition()` holds within `seconds`, looked at every 20 ms while the loop runs."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def started(
    off_loop: bool, lost: list[str] | None = None, store: ThreadedLeases | None = None
) -> tuple[Coordinator, ThreadedLeases]:
    store = store or ThreadedLeases(asyncio.get_running_loop())

    async def gain(unit: str, tenure: int) -> None:
        pass

    async def lose(unit: str) -> None:
        if lost is not None:
            lost.append(unit)

    a = Coordinator(store, "g", "a", lambda: ["pe-1"], gain, lose, timing=TIMING, renew_off_loop=off_loop)
    a.start()
    for _ in range(200):
        if a.drives("pe-1"):
            break
        await asyncio.sleep(0.02)
    assert a.drives("pe-1")
    return a, store


@pytest.mark.parametrize("off_loop", [True, False], ids=["renewer thread", "renew on the loop"])
def test_a_starved_loop_keeps_its_fence_only_with_the_renewer_thread(off_loop: bool) -> None:
    async def scenario() -> None:
        lost: list[str] = []
        a, store = await started(off_loop, lost)
        time.sleep(TIMING.renew_deadline + 0.5)  # the loop runs nothing for longer than the renew deadline
        assert a.fence_valid() is off_loop, "the fence is still valid when the loop gets to run again"
        if off_loop:
            assert set(store.blocking) == {"shard-renew"}
            assert a.drives("pe-1")
        await asyncio.sleep(0.5)
        assert bool(lost) is not off_loop, f"units stopped by the fence: {lost}"
        await a.close()

    asyncio.run(scenario())


def test_a_wedged_loop_loses_its_fence_and_is_fenced_before_it_runs_again() -> None:
    """The thread renews only while the loop beats: a loop stuck past the lease is treated as dead. And
    while it is stuck with its renews failing, the guard every Set checks says no at once."""

    async def scenario() -> None:
        a, store = await started(True)
        time.sleep(TIMING.lease_duration + TIMING.renew_deadline + 0.5)
        assert not a.fence_valid(), "no renew while the loop did not beat"
        with pytest.raises(Fenced):
            a.guard("pe-1")
        for _ in range(100):  # the loop runs again: it beats, the thread renews, the unit is driven again
            await asyncio.sleep(0.05)
            if a.drives("pe-1"):
                break
        assert a.drives("pe-1")
        store.down = True  # now the API server is gone, and the loop is stuck again
        time.sleep(TIMING.renew_deadline + 0.5)
        with pytest.raises(Fenced):
            a.guard("pe-1")  # before any callback (the watchdog) could run on the loop
        store.down = False
        await a.close()

    asyncio.run(scenario())


def test_a_renew_after_a_lapse_waits_until_the_loop_has_taken_the_units_out_of_play() -> None:
    """Past its deadline (a pause, the API server away), the thread could renew before the loop's watchdog
    ran: the units would be driven again with no look at their Leases, which another replica may hold
    by then. It renews only once the loop has processed the lapse."""

    async def scenario() -> None:
        a, store = await started(True)
        store.down = True
        time.sleep(TIMING.renew_deadline + 0.3)  # the loop stuck, the renews failing: the fence lapses
        store.down = False
        time.sleep(4 * TIMING.renew_interval)  # the API server is back; the loop is still stuck
        assert not a.fence_valid() and not a.drives("pe-1"), "renewed while the lapse was not processed"
        for _ in range(100):
            await asyncio.sleep(0.05)
            if a.drives("pe-1"):
                break
        assert a.drives("pe-1"), "driven again once the loop ran the lapse and the renew went through"
        await a.close()

    asyncio.run(scenario())


class SlowCreates(ThreadedLeases):
    """Creates that take three renew intervals (a loaded API server), counting how many are in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.slow = False
        self.in_flight = 0
        self.most_in_flight = 0

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.slow:
                await asyncio.sleep(3 * TIMING.renew_interval)
            return await super().create(body)
        finally:
            self.in_flight -= 1


def test_after_a_409_of_the_renewer_the_loop_renews_the_membership_once_at_a_time() -> None:
    """A renew that timed out but went through leaves the thread a stale resourceVersion: its next renew
    gets a 409 and hands the membership to the loop (create, 409, list, replace). On a slow API server
    the thread asked again every interval while that was under way; each later renew then failed on the
    first one's write and unset the membership it had recorded, prolonging the lapse (the 4-replica
    run of the 10,000-service bench, 2026-12-03: bursts of 409s). One loop renew at a time."""

    async def scenario() -> None:
        store = SlowCreates(asyncio.get_running_loop())
        a, _ = await started(True, store=store)
        assert a._member is not None
        store.slow, store.most_in_flight = True, 0  # from here on (the first create was at the start)
        with store.lock:  # the renew that timed out on the client, applied on the server
            store._store(copy.deepcopy(store.items[a._member.name]))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if store.most_in_flight and store.in_flight == 0 and a._member is not None:
                break
        assert store.most_in_flight == 1, f"{store.most_in_flight} membership renews on the loop at once"
        assert a._member is not None, "the membership was renewed again"
        await a.close()

    asyncio.run(scenario())


def test_a_slow_start_does_not_hold_up_the_next_units() -> None:
    """A unit whose start hangs (its Secrets or session on a struggling API server) kept the tick waiting,
    so no later unit was taken while the membership stayed live: the other replicas waited on this one
    (the CI run of 2026-12-03: a replica took `commerce`, then no device for 53 s). Starts run on their
    own now; the next tick takes the next unit."""

    async def scenario() -> None:
        store = ThreadedLeases(asyncio.get_running_loop())
        units = ["pe-1"]
        hang = asyncio.Event()
        gained: list[str] = []

        async def gain(unit: str, tenure: int) -> None:
            gained.append(unit)
            if unit == "pe-1":
                await hang.wait()

        async def lose(unit: str) -> None:
            pass

        a = Coordinator(store, "g", "a", lambda: list(units), gain, lose, timing=TIMING)
        a.start()
        assert await eventually(lambda: "pe-1" in gained) and "pe-2" not in gained, gained
        units.append("pe-2")
        a.poke()
        assert await eventually(lambda: "pe-2" in gained), "a new unit was taken while another unit's start hangs"
        assert a.drives("pe-2") and a.drives("pe-1")
        hang.set()
        await a.close()

    asyncio.run(scenario())


class HangingCreates(ThreadedLeases):
    """A create that never answers (the coordinator's tick stuck on it), until `hang` is cleared."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.hang = False

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        while self.hang:
            await asyncio.sleep(0.05)
        return await super().create(body)


def test_a_stuck_tick_costs_the_membership_although_the_loop_runs() -> None:
    """The renewer thread renewed while the event loop ran, whatever the coordinator did: a tick stuck on
    one call kept the membership live with nothing coordinated (no hand-over, no take-over), so the
    others waited for good. It renews only while ticks end: stuck for the lease duration, the replica
    lapses like a dead one (its units fenced off, others may take them); once the tick ends it is back."""

    async def scenario() -> None:
        store = HangingCreates(asyncio.get_running_loop())
        units = ["pe-1"]
        lost: list[str] = []

        async def gain(unit: str, tenure: int) -> None:
            pass

        async def lose(unit: str) -> None:
            lost.append(unit)

        a = Coordinator(store, "g", "a", lambda: list(units), gain, lose, timing=TIMING)
        a.start()
        assert await eventually(lambda: a.drives("pe-1"))
        store.hang = True
        units.append("pe-2")  # its Lease create hangs: the tick does not end
        a.poke()
        await asyncio.sleep(TIMING.lease_duration + TIMING.renew_deadline + 0.5)  # the loop itself runs
        assert not a.fence_valid(), "the membership was renewed while no tick ended"
        assert not a.drives("pe-1") and set(lost) == {"pe-1", COMMERCE}, lost
        store.hang = False
        assert await eventually(lambda: a.drives("pe-1") and a.drives("pe-2"), 10), "driven again once the tick ended"
        await a.close()

    asyncio.run(scenario())


class SlowUnitWrites(ThreadedLeases):
    """Unit Lease writes (on the loop) that take `delay` seconds each: an API server short of CPU."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.delay = 0.0

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        return await super().replace(name, body)


def test_a_long_tick_that_keeps_making_steps_keeps_the_membership() -> None:
    """A replica handing many units to a newcomer, one slow Lease write after another, has a tick longer
    than the lease; it is not stuck, so its membership must not lapse meanwhile (proof of life is a step
    that ended, not only a whole tick)."""

    async def scenario() -> None:
        store = SlowUnitWrites(asyncio.get_running_loop())
        units = [f"pe-{i}" for i in range(16)]
        handed = [u for u, owner in assign(units, ["a", "b"]).items() if owner == "b"]
        steps = 0.6  # per release: all of them together take longer than the lease
        assert len(handed) * steps > TIMING.lease_duration + 0.5, handed

        async def gain(unit: str, tenure: int) -> None:
            pass

        async def lose(unit: str) -> None:
            pass

        a = Coordinator(store, "g", "a", lambda: units, gain, lose, timing=TIMING)
        a.start()
        assert await eventually(lambda: all(a.drives(u) for u in units))
        store.delay = steps
        b = Coordinator(store, "g", "b", lambda: units, gain, lose, timing=TIMING)
        b.start()
        lapsed = False
        deadline = time.monotonic() + len(handed) * steps + 4 * TIMING.lease_duration
        while time.monotonic() < deadline and not all(b.drives(u) for u in handed):
            lapsed = lapsed or not a.fence_valid()
            await asyncio.sleep(0.05)
        assert all(b.drives(u) for u in handed), "the units were handed over"
        assert not lapsed, "the replica handing its units over lapsed while it made steps"
        await asyncio.gather(a.close(), b.close())

    asyncio.run(scenario())

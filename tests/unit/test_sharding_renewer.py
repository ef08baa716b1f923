"""The membership renew on a thread of its own (controller/sharding.py, issue 16): a starved event loop no
longer makes the renew late, so it no longer fences the replica off; a wedged loop still loses its
devices, and the fence still holds while the loop is stuck (every Set checks the deadline itself).
Real time, on purpose: the point is what happens while the loop does not run."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from controller.sharding import Conflict, Coordinator, Fenced, Timing
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


async def started(off_loop: bool, lost: list[str] | None = None) -> tuple[Coordinator, ThreadedLeases]:
    store = ThreadedLeases(asyncio.get_running_loop())

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

"""The controller's one work queue: keyed, coalescing, one run per key at a time.

Every level-triggered loop of the controller (a NetworkDevice's reconcile pass, a Subscription's,
an Invoice's, a ProductOffering's or a BillingAccount's status) is "run `fn(key)` again until it
has seen the latest of everything that marked `key`". `WorkQueue` is that, once:

- `mark(key)` asks for a run; marks while one is waiting (for the gate, the debounce or a free slot)
  are that run, marks while one is running coalesce into one more run;
- at most one run per key at a time, and at most `concurrency` runs in all (None: no bound);
- `mark_after(key, delay)` keeps only the earliest pending wake-up per key;
- a run that raises is logged, counted and retried with exponential backoff (`backoff`);
- with `debounce` a run waits that long first, so a burst of marks becomes one run;
- with `gated` nothing runs before `open()` (the caller primes its indexes first);
- with `urgent`, a key it says is urgent (e.g. a spec changed and not yet handled) takes the next free
  slot before every waiting key that is not, also when the gate opens on a whole re-list: an order
  change seen at a restart, or during a billing pass that marked every Subscription, is not queued
  behind hundreds of passes that find nothing to do.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from . import metrics

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class Slots:
    """At most `size` holders at once. A waiter asking as urgent is let in before every waiter that is not;
    waiters of the same urgency in the order they asked (as asyncio.Semaphore does)."""

    def __init__(self, size: int) -> None:
        self._free = size
        # Only live waiters (a cancelled one removes itself): `_free > 0` implies nobody waits.
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self, urgent: bool = False) -> None:
        if self._free > 0:
            self._free -= 1
            return
        entry = (0 if urgent else 1, next(self._order), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        if self._waiting:
            heapq.heappop(self._waiting)[2].set_result(None)
        else:
            self._free += 1


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """The wait before retry number `attempt` (1-based): `initial` doubled each time, at most `maximum`."""
    return min(maximum, initial * 2 ** max(0, attempt - 1))


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str,
        fn: Callable[[K], Awaitable[None]],
        *,
        concurrency: int | None = 16,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        debounce: float = 0.0,
        gated: bool = True,
        reset_on_success: bool = True,
        after_run: Callable[[K], None] | None = None,
        urgent: Callable[[K], bool] | None = None,
    ) -> None:
        """`name` labels the metrics and logs; `reset_on_success=False` leaves the backoff count to the
        caller (`reset_backoff`), for loops whose passes return normally while still failing; `after_run`
        is called after every run, failed or not; `urgent(key)` is asked when the key's run waits for a
        slot (with a `concurrency` bound only)."""
        self.name = name
        self._fn = fn
        self._slots = Slots(concurrency) if concurrency else None
        self._urgent = urgent
        self._gate = asyncio.Event()
        if not gated:
            self._gate.set()
        self._debounce = debounce
        self._retry = (retry_initial, retry_max)
        self._reset_on_success = reset_on_success
        self._after_run = after_run
        self._again: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._attempts: dict[K, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The key's task, from its mark until it ends (waiting for the gate, debouncing or running): the
        # one record of "a run is due or under way". Only the task itself or `cancel` removes it, the
        # task only if it is still the one recorded: a task cancelled before its first step never runs
        # its `finally`, and the key must not stay marked as running for good (it would never run again).
        self._task_of: dict[K, asyncio.Task[None]] = {}
        self._cancelling: dict[K, asyncio.Task[None]] = {}  # a cancelled run still ending: the next waits
        self._closed = False
        self._held: set[K] = set()  # keys due when `suspend` stopped them: run again by `resume`
        self.marks: Counter[K] = Counter()  # how often each key was marked (tests, debugging)

    def open(self) -> None:
        """Let runs start; after `suspend`, run again every key it stopped (a wake-up comes early: its run
        decides again when it is due)."""
        self._gate.set()
        held, self._held = self._held, set()
        for key in held:
            self.mark(key)

    def mark(self, key: K) -> None:
        if self._closed:
            return
        self.marks[key] += 1
        if key in self._task_of:
            self._again.add(key)
            return
        task = asyncio.create_task(self._run(key), name=f"{self.name}:{key}")
        self._tasks.add(task)
        self._task_of[key] = task
        task.add_done_callback(self._tasks.discard)

    def mark_after(self, key: K, delay: float) -> None:
        """Run `key` again in `delay` seconds (an earlier pending wake-up wins)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        existing = self._timers.get(key)
        if existing is not None and not existing.cancelled() and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def cancel_wakeup(self, key: K) -> None:
        """Drop `key`'s pending wake-up (a run decided it is not needed any more)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def backoff(self, key: K) -> float:
        """Schedule a retry of `key` after the next backoff delay; returns that delay."""
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        delay = backoff_delay(attempt, *self._retry)
        self.mark_after(key, delay)
        return delay

    def reset_backoff(self, key: K) -> None:
        self._attempts.pop(key, None)

    def forget(self, key: K) -> None:
        """`key` is gone: drop its wake-up and backoff (a run under way finishes)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._attempts.pop(key, None)
        self.marks.pop(key, None)

    async def cancel(self, key: K) -> None:
        """Stop `key` now (another replica takes it over): forget it, cancel a run under way and wait
        until it has ended, so nothing more is done for it. A mark after this call (also one made while
        it waits) starts a fresh run, which begins only once the cancelled one has ended."""
        self.forget(key)
        self._again.discard(key)
        task = self._task_of.pop(key, None)
        if task is not None:
            task.cancel()
            self._cancelling[key] = task
            try:
                await asyncio.gather(task, return_exceptions=True)
            finally:
                if self._cancelling.get(key) is task:
                    del self._cancelling[key]

    def busy(self) -> bool:
        """Whether any run is waiting or under way."""
        return bool(self._task_of)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.mark(key)

    async def _run(self, key: K) -> None:
        try:
            ending = self._cancelling.get(key)
            if ending is not None:  # one run per key at a time, also across a cancel
                await asyncio.wait([ending])
            if not self._gate.is_set():
                await self._gate.wait()
                if self._urgent is not None and not self._urgent(key):
                    # The gate wakes every waiting run in one step of the loop, in the order they were
                    # marked: the others ask for a slot one step later, after the urgent ones have.
                    await asyncio.sleep(0)
            while True:
                if self._debounce > 0:
                    await asyncio.sleep(self._debounce)  # let the burst arrive
                slots = self._slots
                if slots is not None:
                    await slots.acquire(self._urgent is not None and self._urgent(key))
                try:
                    # Marks until now are this run's: it reads the state only from here on. (Cleared before
                    # waiting for the slot, a burst of orders queued behind the concurrency bound ran each
                    # key once more for every mark it got while waiting.)
                    self._again.discard(key)
                    await self._once(key)
                finally:
                    if slots is not None:
                        slots.release()
                if key not in self._again:
                    return
        finally:
            if self._task_of.get(key) is asyncio.current_task():
                del self._task_of[key]

    async def _once(self, key: K) -> None:
        started = time.perf_counter()
        try:
            await self._fn(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s: reconcile failed", self.name, key)
            metrics.RECONCILES.labels(self.name, "error").inc()
            self.backoff(key)
        else:
            if self._reset_on_success:
                self._attempts.pop(key, None)
            metrics.RECONCILES.labels(self.name, "ok").inc()
        finally:
            metrics.RECONCILE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            if self._after_run is not None:
                self._after_run(key)

    async def suspend(self) -> None:
        """Stop every run and wake-up until `open`, remembering which keys were due; marks meanwhile
        wait at the gate. For a layer whose writes must stop now but whose state is worth keeping."""
        self._gate.clear()
        self._held |= set(self._task_of) | set(self._timers) | self._again
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._again.clear()
        running = [t for t in self._task_of.values() if not t.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for key, task in list(self._task_of.items()):
            if task in running:  # a mark after the cancel made a new run: it waits at the gate
                del self._task_of[key]

    async def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._task_of.clear()


__all__ = ["Slots", "WorkQueue", "backoff_delay"]

"""The admission webhooks, served by Kopf (docs/admission.md): validating for the five kinds, and mutating
for Subscriptions and NetworkServices (stored with the controller's finalizer, one API write less each).

Imported only when --webhook-port is set: Kopf refuses to start with admission handlers and no server.
Each handler reads what its decision needs from a watch-fed cache of the API server (`KindWatch`,
shown fresh for each request by the rule in `Admission._fresh`), within a bound well inside the
webhook's timeoutSeconds, and refuses naming the field; the decisions are in controller/admission.py.
Every replica serves admission, the standby ones too: nothing here goes through the Replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import kopf

from .. import admission
from ..api import GROUP, KINDS, VERSION
from ..billing.clock import OffsetClock
from ..kube import Kube
from ..metrics import ADMISSION_LISTED_OBJECTS, ADMISSION_LISTS

log = logging.getLogger(__name__)

# The chart's timeoutSeconds is 5 by default (10 at most): the reads must finish well before the API
# server gives up on the webhook and applies the failurePolicy.
READ_TIMEOUT_SECONDS = 3.0
# 422 Unprocessable Entity, as for an object the schema refuses.
REFUSED = 422
UNAVAILABLE = 503
NAMESPACED = frozenset(kind.PLURAL for kind in KINDS if kind.SCOPE == "Namespaced")
# Rendered NetworkService versions kept between requests (a few KB each).
RENDERS_KEPT = 50_000
# How long a round waits for the watches to reach its barrier before it lists the kind instead (a longer
# wait for kinds being written was measured and made bursts slower: docs/admission.md).
CATCH_UP_SECONDS = 0.1
# A kind with at most this many objects, and not being written, is listed for each round instead: its
# list costs about what the barrier does, and a kind nobody writes (offerings, accounts, devices) would
# be listed anyway after CATCH_UP_SECONDS, so a round saves that wait and one round trip. Larger kinds,
# and kinds being written (BUSY_EVENTS changes within the last BUSY_SECONDS: their own events usually
# end the wait), keep the barrier, which spares a list of the whole kind.
DIRECT_LIST_OBJECTS = 250
BUSY_EVENTS = 10
BUSY_SECONDS = 1.0
# A KindWatch's list serves the watch as well as the requests waiting for it: it may outlast one
# request's budget (the first list of a large kind on a loaded machine), and the next request uses it.
LIST_TIMEOUT_SECONDS = 30.0
Items = TypeVar("Items")


class Admission:
    """What the handlers share: an API client of their own (a standby replica has no Controller) and
    the controller's clock (sellability depends on it; tests move it forward).

    With `cache` (the default) the kinds decisions read are kept by list+watch in Stores whose indexes
    are updated per event; a request is judged against them once they are shown fresh (`_fresh`).
    Without it, every round of requests lists each kind anew (SharedLists), as before the cache."""

    def __init__(
        self, kube: Kube, clock: OffsetClock, namespaces: list[str] | None = None, *, cache: bool = True
    ) -> None:
        self.kube = kube
        self.clock = clock
        # A controller watching some namespaces may list namespaced kinds only there (the chart's Roles),
        # so it judges against those; the cluster-scoped kinds are read cluster-wide in both modes.
        self.namespaces = list(namespaces or [])
        self.cache = cache
        self.renders: dict[Any, Any] = {}  # World.renders, kept across requests
        self.lists: SharedLists[admission.Listing] = SharedLists()
        self.barriers: SharedLists[int] = SharedLists()
        self.stores: dict[str, admission.Store] = {}
        self.watches: dict[str, list[KindWatch]] = {}
        self.reserved = admission.Reservations()

    async def judge(
        self, plural: str, operation: str, new: dict[str, Any], old: dict[str, Any] | None, dryrun: bool = False
    ) -> None:
        """Returns when the request is admitted; raises kopf.AdmissionError naming the fields otherwise.

        An admitted port/VLAN or subnet is reserved (`self.reserved`) until the Store shows its object, so
        a request judged meanwhile cannot take it too: the check and the reservation run with no await
        between them, so no other request of this process is judged in between. A dry run reserves nothing."""
        hook = admission.WEBHOOKS[plural]
        request = admission.Request(plural, operation, new, old, self.clock.now())
        if not admission.changes_intent(request):
            return
        world = await self._read(hook.reads)
        at = time.monotonic()
        self.reserved.expire(at)
        if not self.cache:  # the Stores tell the reservations what they show; lists do not
            self.reserved.settle(world)
        claims = admission.claims_of(plural, new, world)  # once: judged against, then reserved
        problems = admission.review(request, world, self.reserved, at, claims)
        if not problems and not dryrun:
            for held in admission.reservations(request, world, at, claims):
                self.reserved.reserve(held)
        if problems:
            message = admission.refusal(problems)
            meta = new.get("metadata") or {}
            where = "/".join(str(p) for p in (meta.get("namespace"), meta.get("name")) if p)
            log.info("admission: refused %s of %s %s: %s", operation, new.get("kind"), where, message)
            raise kopf.AdmissionError(message, code=REFUSED)

    async def _read(self, plurals: tuple[str, ...]) -> admission.World:
        read = self._fresh if self.cache else self._list
        try:
            lists = await asyncio.wait_for(asyncio.gather(*(read(p) for p in plurals)), READ_TIMEOUT_SECONDS)
        except Exception as exc:  # fail closed, as failurePolicy Fail does: we cannot tell
            log.warning("admission: reading %s failed: %s", ", ".join(plurals), exc)
            raise kopf.AdmissionError(
                f"the admission webhook could not read {', '.join(plurals)} to check this request"
                f" ({type(exc).__name__}); try again",
                code=UNAVAILABLE,
            ) from None
        if len(self.renders) > RENDERS_KEPT:  # versions long replaced pile up: start afresh
            self.renders.clear()
        return admission.World(dict(zip(plurals, lists, strict=True)), self.renders)

    async def _fresh(self, plural: str) -> admission.Listing:
        """The Store of `plural` once it holds everything committed before this request arrived.

        The rule (docs/admission.md): a consistent `limit=1` list made after the request arrived (one per
        round of requests, shared as SharedLists shares lists) gives the collection's resourceVersion r;
        the Store may judge once each of its watches has delivered an event or bookmark at r or later,
        since a watch delivers a kind's changes in resourceVersion order. A kind nobody writes gets no
        such event in time (bookmarks come about once a minute), so after CATCH_UP_SECONDS the watch
        re-lists instead: a consistent list, at r or later, applied as a diff (only changed objects are
        re-indexed), the watch's events up to it then skipped.

        A small kind not being written (at most DIRECT_LIST_OBJECTS objects, fewer than BUSY_EVENTS
        changes in the last BUSY_SECONDS) skips the barrier and the wait: each watch of it lists its
        scope in a list that starts after the request arrived (shared as SharedLists shares lists),
        which shows the same."""
        watches = self._watches(plural)
        small = len(self.stores[plural]) <= DIRECT_LIST_OBJECTS
        if small and all(w.synced and not w.busy() for w in watches):
            await asyncio.gather(*(w.refresh() for w in watches))
        else:
            r = await self.barriers.fresh(plural, lambda: self._barrier(plural))
            await asyncio.gather(*(w.catch_up(r) for w in watches))
        return self.stores[plural]

    def start(self) -> None:
        """Start the watches of every kind a webhook reads, so the first requests find them listed."""
        if self.cache:
            for plural in dict.fromkeys(p for hook in admission.WEBHOOKS.values() for p in hook.reads):
                self._watches(plural)

    async def ready(self) -> None:
        """Until every started watch has made its first list (benchmarks, tests)."""
        for watches in list(self.watches.values()):
            for watch in watches:
                while not watch.synced:
                    await asyncio.sleep(0.05)

    def _watches(self, plural: str) -> list[KindWatch]:
        if plural not in self.watches:
            store = self.stores[plural] = admission.Store(plural)
            store.observers.append(self.reserved.observed)
            scopes: list[str | None] = list(self._scopes(plural))
            self.watches[plural] = [KindWatch(self.kube, plural, scope, store) for scope in scopes]
            for watch in self.watches[plural]:
                watch.start()
        return self.watches[plural]

    def _scopes(self, plural: str) -> list[str | None]:
        if not self.namespaces or plural not in NAMESPACED:
            return [None]
        return list(dict.fromkeys(self.namespaces))

    async def _barrier(self, plural: str) -> int:
        # The collection's resourceVersion is the store's revision: one namespace tells it for all.
        _, version = await self.kube.list_page(plural, self._scopes(plural)[0], READ_TIMEOUT_SECONDS, limit=1)
        return int(version)

    async def close(self) -> None:
        for watches in self.watches.values():
            for watch in watches:
                await watch.stop()

    async def _list(self, plural: str) -> admission.Listing:
        return await self.lists.fresh(plural, lambda: self._list_now(plural))

    async def _list_now(self, plural: str) -> admission.Listing:
        # One Listing for every request this list serves: the indexes decisions build over it (claims by
        # endpoint, services by device path and subnet) are built once per list, not once per request.
        if not self.namespaces or plural not in NAMESPACED:
            return admission.Listing(await self.kube.list_all(plural, timeout=READ_TIMEOUT_SECONDS))
        found = await asyncio.gather(
            *(self.kube.list_in(plural, ns, timeout=READ_TIMEOUT_SECONDS) for ns in self.namespaces)
        )
        return admission.Listing(obj for objects in found for obj in objects)


class KindWatch:
    """One plural in one scope (a namespace, or the cluster for None) kept in a Store by list+watch.

    `rv` is the newest resourceVersion the Store reflects for this scope: that of the last list, event
    or bookmark. Events at or below it are already in the Store (a list made since) and are skipped.
    On 410 Gone the scope is listed again; on any other watch failure the watch resumes from `rv`
    after a pause (a resumed watch that is too old answers 410). Events and lists are applied under one
    lock, so a list never interleaves with the events of its own watch."""

    def __init__(self, kube: Kube, plural: str, namespace: str | None, store: admission.Store) -> None:
        self.kube = kube
        self.plural = plural
        self.namespace = namespace
        self.store = store
        self.rv = 0
        self.synced = False
        self.lists = 0  # lists made (initial, after 410, and for rounds the watch did not reach in time)
        self.gone = 0  # 410s seen
        self._lock = asyncio.Lock()
        self._moved = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._relisting: asyncio.Future[None] | None = None
        self._refreshes: SharedLists[None] = SharedLists()
        self._changes: deque[float] = deque(maxlen=BUSY_EVENTS)  # when the last changes were applied

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        from ..sharding import Gone

        pause = 0.2
        while True:
            try:
                if not self.synced:
                    await self.relist(0, "gone" if self.gone else "start")
                async for event in self.kube.watch(self.plural, self.namespace, str(self.rv), READ_TIMEOUT_SECONDS):
                    async with self._lock:
                        self.apply(event)
                    pause = 0.2
            except Gone as exc:
                log.info("admission: %s watch from %s is gone (%s): listing again", self.plural, self.rv, exc)
                self.gone += 1
                self.synced = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("admission: %s watch failed (%s): resuming from %s", self.plural, exc, self.rv)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def apply(self, event: Mapping[str, Any]) -> None:
        """One watch event into the Store (under the lock)."""
        kind, obj = event.get("type"), event.get("object") or {}
        version = int((obj.get("metadata") or {}).get("resourceVersion") or 0)
        if kind == "BOOKMARK" or version <= self.rv:  # a bookmark, or already in the Store by a list since
            self._advance(version)
            return
        if kind == "DELETED":
            self.store.delete(obj)
        elif kind in ("ADDED", "MODIFIED"):
            self.store.put(obj)
        self._changes.append(time.monotonic())
        self._advance(version)

    def busy(self) -> bool:
        """Whether the kind is being written: BUSY_EVENTS changes within the last BUSY_SECONDS."""
        full = len(self._changes) == self._changes.maxlen
        return full and time.monotonic() - self._changes[0] <= BUSY_SECONDS

    def _advance(self, version: int) -> None:
        if version > self.rv:
            self.rv = version
            self._moved.set()
            self._moved = asyncio.Event()

    async def relist(self, at_least: int, reason: str = "behind") -> None:
        """List the scope and make the Store's objects of it those listed (unless it is already at
        `at_least`: another round's list got there first). Shielded: a request that gives up (its
        budget) does not cancel the list the watch and the other requests wait for."""
        if self._relisting is None or self._relisting.done():
            self._relisting = asyncio.ensure_future(self._relist(at_least, reason))
            self._relisting.add_done_callback(_retrieved)
        await asyncio.shield(self._relisting)
        if not (self.synced and self.rv >= at_least):  # joined a list that started before `at_least`
            await self.relist(at_least, reason)

    async def refresh(self) -> None:
        """List the scope in a list that starts after this call (one for every call made before it
        starts), whatever the watch has reached: the Store then holds everything committed before."""
        await self._refreshes.fresh(self.plural, lambda: self._relist(None, "small"))

    async def _relist(self, at_least: int | None, reason: str) -> None:
        async with self._lock:
            if at_least is not None and self.synced and self.rv >= at_least:
                return
            items, version = await self.kube.list_page(self.plural, self.namespace, LIST_TIMEOUT_SECONDS)
            self.lists += 1
            ADMISSION_LISTS.labels(self.plural, reason).inc()
            ADMISSION_LISTED_OBJECTS.labels(self.plural).inc(len(items))
            self.store.replace(items, self.namespace)
            self.rv = max(self.rv, int(version)) if self.synced else int(version)
            self.synced = True
            self._moved.set()
            self._moved = asyncio.Event()

    async def reach(self, version: int, timeout: float) -> bool:
        """Whether the Store reflects this scope at `version` or later within `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (self.synced and self.rv >= version):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)
        return True

    async def catch_up(self, version: int) -> None:
        if not await self.reach(version, CATCH_UP_SECONDS):
            await self.relist(version)


class SharedLists(Generic[Items]):
    """One list of a plural for every request that arrived before that list started.

    A request must see everything admitted before it arrived, so it never takes a list already under way;
    it waits for the next one, which starts when the current one ends and serves every request that came
    in meanwhile. In a burst of creates (each judged against every NetworkService and Subscription) that
    is one list per plural at a time instead of one per request, each a read of the whole kind."""

    def __init__(self) -> None:
        self._next: dict[str, asyncio.Future[Items]] = {}  # not started yet: joinable
        self._running: set[str] = set()
        self.started = 0  # lists made (tests)

    async def fresh(self, plural: str, fetch: Callable[[], Awaitable[Items]]) -> Items:
        future = self._next.get(plural)
        if future is None:
            future = self._next[plural] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieved)
            if plural not in self._running:
                self._start(plural, fetch)
        # shielded: a request that gives up (its timeout) does not cancel the list the others wait for
        return await asyncio.shield(future)

    def _start(self, plural: str, fetch: Callable[[], Awaitable[Items]]) -> None:
        future = self._next.pop(plural)
        self._running.add(plural)
        self.started += 1
        task = asyncio.ensure_future(fetch())

        def done(t: asyncio.Future[Items]) -> None:
            self._running.discard(plural)
            if t.cancelled():
                future.cancel()
            elif (exc := t.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(t.result())
            if plural in self._next:  # requests that arrived while it ran: their own list, now
                self._start(plural, fetch)

        task.add_done_callback(done)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # every waiter may have timed out: not an "exception never retrieved"


class _RefusalIsNoError(logging.Filter):
    """Kopf logs every refused request as an ERROR ("Webhook ... failed permanently"); a refusal is the
    webhook working, logged at INFO above, so Kopf's line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not (text.startswith("Webhook ") and "failed permanently" in text)


logging.getLogger("kopf.objects").addFilter(_RefusalIsNoError())
# One access line per admission request at INFO would be most of the log.
logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _register(plural: str) -> None:
    @kopf.on.validate(GROUP, VERSION, plural, id=plural, operations=["CREATE", "UPDATE"])
    async def validate(body: Any, memo: Any, **kwargs: Any) -> None:
        checker: Admission = memo.admission
        old = kwargs.get("old")
        await checker.judge(
            plural,
            kwargs["operation"],
            dict(body),
            dict(old) if old is not None else None,
            dryrun=bool(kwargs.get("dryrun")),
        )


for _plural in admission.WEBHOOKS:
    _register(_plural)


def _register_finalizer(plural: str) -> None:
    # Reads nothing and decides from the object alone, so it answers within the registration's 2 s.
    @kopf.on.mutate(GROUP, VERSION, plural, id=admission.finalizer_path(plural).lstrip("/"), operations=["CREATE"])
    async def add_finalizer(body: Any, patch: kopf.Patch, **_: Any) -> None:
        finalizers = admission.finalizers_at_admission(dict(body))
        if finalizers is not None:
            patch.metadata["finalizers"] = finalizers


for _plural in admission.FINALIZED:
    _register_finalizer(_plural)

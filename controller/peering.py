"""Active/standby with Kopf peering: this replica works only while no live peer outranks it.

Kopf pauses only its own watch streams when a peer with a higher (or the same) priority shows up in
the peering object. Everything the controller runs itself (gNMI sessions, per-device reconcile
workers, the resync, the billing loops) would go on with a stale view: split brain
(docs/reliability.md, bug 6). So while this replica stands by it has no Controller at all: pausing
stops and drops the Controller (no device I/O, no API writes, no state kept), resuming builds a new
one, which fills itself from the list Kopf makes when its watch streams restart.

How we learn that Kopf paused us: Kopf keeps the pause in an internal toggle (`operator_paused`,
created inside `kopf.spawn_tasks`) that no public API, handler kwarg or setting exposes; its
"Pausing operations in favour of ..." line is log text; a handler on the peering object would be
paused with the rest. So the controller watches the peering object itself and applies Kopf's rule
(kopf/_core/engines/peering.py, `process_peering_event`): stand by while any live peer (lastseen +
lifetime still ahead) other than this replica has a priority higher than or equal to ours, and look
again when the earliest such peer expires. The peering object's format is the protocol between
Kopf replicas (of different versions too), so this relies on nothing private; Kopf is given this
replica's identity (`kopf.operator(identity=...)`) so that both skip the same entry as "self".

Two watchers of one object see a change at slightly different moments; both orders are safe:
- a handler event that arrives while we stand by is applied only if a fresh read of the peering
  object says we are active after all (Kopf resumed and re-lists before our watch saw it: we resume
  first, then apply it); otherwise it is dropped, since Kopf re-lists everything when it resumes;
- resuming before Kopf does nothing: the new Controller starts empty and waits for the re-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import getpass
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .times import parse_time

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = 60  # what Kopf assumes for a peer whose entry names no lifetime
GROUPS = ("kopf.dev", "zalando.org")  # Kopf's peering CRDs: current and legacy group
DROP_WARNING_AFTER = 10.0  # seconds standing by after which a delivered event means disagreement


def describe(kind: str, obj: Mapping[str, Any], event_type: str | None) -> str:
    """A watch event as the replica's log lines name it, e.g. `Subscription ns/a (MODIFIED)`."""
    meta = obj["metadata"]
    name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    return f"{kind} {name} ({event_type or 'listed'})"


@functools.cache
def own_identity() -> str:
    """This replica's key in the peering object, given to Kopf too: POD_ID (the chart sets the pod
    name), else Kopf's own scheme, user@host/start time/random."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry for the uid (a container)
        user = "controller"
    started = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"{user}@{socket.gethostname()}/{started}/{secrets.token_hex(2)}"


# -- the rule (pure) --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int
    deadline: dt.datetime  # lastseen + lifetime: presumed dead from then on

    def __str__(self) -> str:
        return f"{self.identity} (priority {self.priority})"


def peers(status: Mapping[str, Any] | None, now: dt.datetime) -> list[Peer]:
    """The entries of a peering object's status, as Kopf reads them (a missing lastseen is now,
    a missing lifetime 60 s); entries that are not peers are skipped."""
    out: list[Peer] = []
    for identity, info in (status or {}).items():
        if not isinstance(info, Mapping):
            continue
        try:
            priority = int(info.get("priority", 0))
            lifetime = int(info.get("lifetime", DEFAULT_LIFETIME))
        except (TypeError, ValueError):
            continue
        lastseen = parse_time(info.get("lastseen")) or now  # zone-less is UTC, as Kopf reads it
        out.append(Peer(str(identity), priority, lastseen + dt.timedelta(seconds=lifetime)))
    return out


@dataclass(frozen=True)
class Verdict:
    blockers: tuple[Peer, ...] = ()  # live peers this replica gives way to
    unseen: tuple[str, ...] = ()  # peering objects not seen yet: Kopf stands by until it sees them

    @property
    def paused(self) -> bool:
        return bool(self.blockers or self.unseen)

    @property
    def recheck_at(self) -> dt.datetime | None:
        """When the earliest blocker expires, unless it keeps itself alive meanwhile."""
        return min((p.deadline for p in self.blockers), default=None)

    def describe(self) -> str:
        if self.blockers:
            return "in favour of " + ", ".join(str(p) for p in self.blockers)
        if self.unseen:
            return "the peering object is not there yet (" + ", ".join(self.unseen) + ")"
        return "no live replica with a higher or equal priority"


def judge(
    statuses: Mapping[str | None, Mapping[str, Any] | None], *, identity: str, priority: int, now: dt.datetime
) -> Verdict:
    """Kopf's rule over every peering object this replica is in (one per watched namespace, or the
    cluster one; None: not seen): stand by while another live peer's priority is >= ours."""
    blockers: list[Peer] = []
    unseen: list[str] = []
    for location, status in statuses.items():
        if status is None:
            unseen.append(location or "cluster-wide")
            continue
        blockers += [
            p for p in peers(status, now) if p.identity != identity and p.deadline > now and p.priority >= priority
        ]
    blockers.sort(key=lambda p: (-p.priority, p.identity))
    return Verdict(tuple(blockers), tuple(unseen))


# -- the replica: a Controller while active, none while standing by -------------------------------
class Stoppable(Protocol):
    def start(self) -> None: ...

    async def pause(self) -> None: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=Stoppable)


@dataclass(eq=False)
class _Call:
    """A handler's call into the Controller, cancelled if the replica pauses meanwhile."""

    task: asyncio.Task[Any]
    controller: Any
    done: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False


class Replica(Generic[C]):
    """What the Kopf handlers call: the Controller while this replica is active, none while it stands
    by. Pausing stops the Controller and forgets it; resuming builds a new one (`factory`)."""

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self.controller: C | None = None
        self.monitor: PeeringMonitor | None = None
        self._calls: set[_Call] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._paused_at = time.monotonic()
        self._warned_at = -1e9

    @property
    def active(self) -> bool:
        return self.controller is not None

    def resume(self, message: str) -> None:
        if self.controller is not None:
            return
        log.info("%s", message)
        controller = self._factory()
        controller.start()
        self.controller = controller

    async def pause(self, message: str) -> None:
        controller, self.controller = self.controller, None
        if controller is None:
            return
        self._paused_at = time.monotonic()
        log.info("%s", message)
        calls = [c for c in self._calls if c.controller is controller]
        for call in calls:  # a handler half way through, e.g. about to open a device session
            call.cancelled = True
            call.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_all_done(calls), 5)
        await _stop(controller)
        stragglers = [c for c in calls if not c.done.is_set()]
        if stragglers:  # a call that ignored the cancellation: stop whatever it starts, once it ends
            task = asyncio.create_task(_stop_after(stragglers, controller), name="peering-stop-stragglers")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def run(self, what: str, fn: Callable[[C], Awaitable[None] | None]) -> None:
        """Apply a watch event (`fn`) to the Controller; drop it while this replica stands by."""
        controller = self.controller
        if controller is None and self.monitor is not None and await self.monitor.confirm():
            controller = self.controller
        if controller is None:
            self._dropped(what)
            return
        task = asyncio.current_task()
        assert task is not None
        call = _Call(task, controller)
        self._calls.add(call)
        balanced = False
        try:
            result = fn(controller)
            if result is not None:
                await result
        except asyncio.CancelledError:
            if call.cancelled:
                balanced = True
                if task.uncancel() == 0:  # only our cancellation: the event is moot, Kopf re-lists
                    log.debug("%s: dropped, this replica paused meanwhile", what)
                    return
            raise
        except Exception as exc:
            if call.cancelled:  # e.g. the stopped Controller's closed API client
                log.debug("%s: failed after this replica paused (%s); dropped", what, exc)
                return
            raise
        finally:
            if call.cancelled and not balanced:
                task.uncancel()  # the call swallowed our cancellation; keep the task's count right
            self._calls.discard(call)
            call.done.set()

    def _dropped(self, what: str) -> None:
        now = time.monotonic()
        if now - self._paused_at > DROP_WARNING_AFTER and now - self._warned_at > 60:
            self._warned_at = now
            log.warning(
                "Kopf delivered %s although the peering object says this replica stands by; dropped"
                " (does Kopf's peering disagree with controller/peering.py?)",
                what,
            )
        else:
            log.debug("%s: dropped, this replica stands by", what)

    async def close(self) -> None:
        """Operator shutdown: stop watching the peering object; close the Controller gracefully."""
        if self.monitor is not None:
            await self.monitor.close()
        for task in list(self._stopping):
            task.cancel()
        controller, self.controller = self.controller, None
        if controller is not None:
            await controller.close()


async def _all_done(calls: Sequence[_Call]) -> None:
    for call in calls:
        await call.done.wait()


async def _stop(controller: Stoppable) -> None:
    try:
        await controller.pause()
    except Exception:
        log.exception("stopping the controller for the pause failed")


async def _stop_after(calls: Sequence[_Call], controller: Stoppable) -> None:
    await _all_done(calls)
    await _stop(controller)


# -- watching the peering object ---------------------------------------------------------------------
class PeeringMonitor:
    """Watches this replica's peering object(s) and pauses or resumes the Replica by Kopf's rule."""

    def __init__(
        self,
        replica: Replica[Any],
        *,
        name: str,
        identity: str,
        priority: int,
        namespaces: Sequence[str] = (),
        clusterwide: bool = True,
        api: Any = None,
    ) -> None:
        self.replica = replica
        self.name = name
        self.identity = identity
        self.priority = priority
        # Kopf's places: the ClusterKopfPeering, or a KopfPeering in every watched namespace.
        self.locations: list[str | None] = [None] if clusterwide or not namespaces else list(namespaces)
        self._statuses: dict[str | None, Mapping[str, Any] | None] = dict.fromkeys(self.locations)
        self._api = api
        self._kube: Any = None
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self._watches: list[Any] = []
        self._verdict: Verdict | None = None
        replica.monitor = self

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, watch: bool = True) -> None:
        if self._api is None:
            from .kube import Kube

            self._kube = Kube(workers=1)
            self._api = self._kube.custom
        loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="peering-monitor")
        for location in self.locations if watch else ():
            threading.Thread(
                target=self._watch, args=(loop, location), name=f"peering-{location or 'cluster'}", daemon=True
            ).start()

    async def close(self) -> None:
        self._stopping.set()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(False)
        for watch in list(self._watches):
            with contextlib.suppress(Exception):
                watch.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._kube is not None:
            self._kube.close()

    async def confirm(self) -> bool:
        """Whether this replica is active, after a fresh read of the peering object: a handler event
        arrived while we stand by, so Kopf may have resumed before our watch saw why."""
        if self.replica.active:
            return True
        if self._stopping.is_set():
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        return await waiter

    # -- the loop: every change, every expiry of a blocker and every confirm() ---------------------
    async def _run(self) -> None:
        refresh = True
        while True:
            waiters, self._waiters = self._waiters, []
            try:
                if refresh or waiters:
                    await self._refresh()
                verdict = judge(self._statuses, identity=self.identity, priority=self.priority, now=_now())
                await self._apply(verdict)
                timeout: float | None = None
                if verdict.recheck_at is not None:
                    timeout = max(0.0, (verdict.recheck_at - _now()).total_seconds()) + 0.05
            except Exception:  # never stop watching: look again in a second
                log.exception("peering %s: evaluating the peering object failed", self.name)
                timeout, refresh = 1.0, True
            else:
                refresh = False
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(self.replica.active)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _apply(self, verdict: Verdict) -> None:
        first = self._verdict is None
        self._verdict = verdict
        where = f"peering {self.name!r}"
        if verdict.paused:
            if self.replica.active:
                await self.replica.pause(
                    f"Pausing ({where}): {verdict.describe()}. Stopping every device session, reconcile"
                    " and billing task and dropping this replica's view until it is the active one again"
                )
            elif first:
                log.info("Standing by (%s): %s", where, verdict.describe())
        elif not self.replica.active:
            self.replica.resume(
                f"Resuming ({where}): {verdict.describe()}; this replica is the active one and rebuilds"
                " its view from a fresh list"
            )

    def seen(self, location: str | None, body: Mapping[str, Any] | None) -> None:
        """The peering object as listed or watched (None: not there). A deleted object keeps its last
        status, as in Kopf, which judges the DELETED event's body and then hears nothing more."""
        if body is not None:
            self._statuses[location] = dict(body.get("status") or {})
        self._wake.set()

    async def _refresh(self) -> None:
        for location in self.locations:
            try:
                body = await asyncio.wait_for(asyncio.to_thread(self._read, location), 10)
            except Exception as exc:
                log.warning(
                    "peering %s: reading the peering object failed (%s); using the last one seen", self.name, exc
                )
                continue
            self.seen(location, body)

    # -- Kubernetes (blocking; threads) ---------------------------------------------------------------
    def _read(self, location: str | None) -> dict[str, Any] | None:
        from kubernetes.client import ApiException

        for group in GROUPS:
            try:
                if location is None:
                    return dict(self._api.get_cluster_custom_object(group, "v1", "clusterkopfpeerings", self.name))
                return dict(self._api.get_namespaced_custom_object(group, "v1", location, "kopfpeerings", self.name))
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return None

    def _lister(self, group: str, location: str | None) -> Callable[..., Any]:
        if location is None:
            return functools.partial(self._api.list_cluster_custom_object, group, "v1", "clusterkopfpeerings")
        return functools.partial(self._api.list_namespaced_custom_object, group, "v1", location, "kopfpeerings")

    def _watch(self, loop: asyncio.AbstractEventLoop, location: str | None) -> None:
        """List and watch the peering object (a field selector on its name), for ever."""
        import kubernetes
        from kubernetes.client import ApiException

        watch = kubernetes.watch.Watch()
        self._watches.append(watch)
        selector = f"metadata.name={self.name}"

        def post(body: Mapping[str, Any] | None) -> None:
            loop.call_soon_threadsafe(self.seen, location, body)

        failures = 0
        while not self._stopping.is_set():
            try:
                for group in GROUPS:
                    lister = self._lister(group, location)
                    try:
                        listing = lister(field_selector=selector)
                        break
                    except ApiException as exc:
                        if exc.status != 404:
                            raise
                else:  # no peering CRD: Kopf stands by as well; look again later
                    self._stopping.wait(5)
                    continue
                failures = 0
                items = listing.get("items") or []
                post(items[0] if items else None)
                version = listing["metadata"]["resourceVersion"]
                stream = watch.stream(
                    lister, field_selector=selector, resource_version=version, timeout_seconds=50, _request_timeout=70
                )
                for event in stream:
                    if self._stopping.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        post(event["raw_object"])
                    elif event["type"] == "ERROR":
                        break
            except RuntimeError:  # the event loop is closed: the process is ending
                return
            except Exception as exc:
                if self._stopping.is_set():
                    return
                failures += 1
                where = location or "cluster-wide"
                if failures == 3:  # not a mere reconnect: say so once, then keep trying quietly
                    log.warning("peering %s: cannot watch the peering object (%s): %s", self.name, where, exc)
                else:
                    log.debug("peering %s: watch (%s) ended: %s; listing again", self.name, where, exc)
                self._stopping.wait(min(30, 2 ** min(failures - 1, 5)))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

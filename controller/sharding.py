"""Several active replicas share the devices through coordination.k8s.io Leases (docs/sharding.md).

The unit of work is a device (the name a NetworkDevice or a service endpoint gives it) plus one
`commerce` unit for the billing layer. Each replica keeps a membership Lease renewed; the live
replicas are the holders of membership Leases seen renewed within their duration. Every unit is
assigned by rendezvous hashing over the live replicas, so a replica joining or leaving moves only
its own share. Ownership itself is a per-unit Lease: the assigned replica takes it only when it is
absent, released, or held by a replica whose membership has expired; it is written only when the
owner changes (not renewed: the holder's membership Lease is what keeps it valid), so the API cost
is one renew per replica per period, not one per device.

Fencing: a replica drives its units only until `renew_deadline` after the moment it *sent* its last
successful renew. Others judge a membership expired only after seeing it unchanged for the whole
`lease_duration` on their own clock, which starts no earlier than that send. With renew_deadline <
lease_duration, the old owner stops before a new one can start (the gap covers a Set in flight).
A lapse whose unit Leases nobody took is cheap: the units are suspended (no Set, state kept) and
resumed at the same tenure (`after_fence`); the renew itself runs on a thread of its own.

Expiry is judged by local observation (when this replica first saw a Lease's current version), as
client-go's leader election does, so clocks need not agree between nodes, only run at about the
same rate. The Leases are listed once and then watched (resourceVersion; a new list on 410 Gone or
any error). A watch can lag or stall without saying so, so expiry is judged against the moment up to
which the view is known complete: the send time of this replica's own latest renew that the watch
has echoed back (everything committed before that renew came before it in the stream), or of the
latest list. A stalled watch therefore delays take-overs; it never makes a live Lease look expired.
The pure parts (assignment, the plan for one tick, the view) are here; `Coordinator` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .api import GROUP

log = logging.getLogger(__name__)

COMMERCE = "commerce"  # the unit that runs subscriptions, billing and invoices: one replica at a time
GROUP_LABEL = f"{GROUP}/shard-group"
ROLE_LABEL = f"{GROUP}/shard-role"  # member or unit
UNIT_ANNOTATION = f"{GROUP}/shard-unit"


class Fenced(Exception):
    """This replica may not write to the device: it does not own it, or its lease renew is overdue."""


# -- assignment (pure) ------------------------------------------------------------------------------
def score(replica: str, unit: str) -> int:
    """Rendezvous weight of `replica` for `unit`: a stable 64-bit hash of both."""
    return int.from_bytes(hashlib.sha256(f"{replica}\0{unit}".encode()).digest()[:8], "big")


def owner_of(unit: str, replicas: Collection[str]) -> str | None:
    """The replica that should own `unit`: the highest weight (ties by name); None without replicas."""
    return max(replicas, key=lambda r: (score(r, unit), r), default=None)


def assign(units: Iterable[str], replicas: Collection[str]) -> dict[str, str]:
    """Every unit's owner among `replicas` (empty when there are none)."""
    if not replicas:
        return {}
    return {u: owner for u in units if (owner := owner_of(u, replicas)) is not None}


# -- Leases as read (pure) --------------------------------------------------------------------------
_NAME = re.compile(r"[^a-z0-9-]+")


def _dns(text: str, limit: int) -> str:
    """`text` as a DNS label part, with a hash when it had to be changed or cut (names stay distinct)."""
    clean = _NAME.sub("-", text.lower()).strip("-")
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[: limit - 9].strip('-')}-{digest}".strip("-")


def member_lease_name(group: str, identity: str) -> str:
    return f"{group}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def unit_lease_name(group: str, unit: str) -> str:
    return f"{group}-unit-{_dns(unit, 200)}"


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    holder: str  # "" once released
    duration: float
    renew_time: str
    transitions: int
    resource_version: str
    role: str  # member or unit
    unit: str | None = None

    @property
    def version(self) -> tuple[str, str]:
        """What changes on every renew or hand-over: expiry is counted from when this was first seen."""
        return (self.holder, self.renew_time)


def lease_record(body: Mapping[str, Any]) -> LeaseRecord | None:
    """A Lease dict (the API's JSON form) as a record; None if it is not one of ours."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    role = labels.get(ROLE_LABEL)
    if role not in ("member", "unit"):
        return None
    spec = body.get("spec") or {}
    renew = spec.get("renewTime") or spec.get("acquireTime") or ""
    return LeaseRecord(
        name=str(meta.get("name", "")),
        holder=str(spec.get("holderIdentity") or ""),
        duration=float(spec.get("leaseDurationSeconds") or 0),
        renew_time=str(renew),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
        role=str(role),
        unit=(meta.get("annotations") or {}).get(UNIT_ANNOTATION),
    )


class Observer:
    """When this replica first saw each Lease's current version (its own monotonic clock)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[str, str], float]] = {}

    def observe(self, records: Iterable[LeaseRecord], now: float) -> None:
        present = set()
        for r in records:
            present.add(r.name)
            known = self._seen.get(r.name)
            if known is None or known[0] != r.version:
                self._seen[r.name] = (r.version, now)
        for name in set(self._seen) - present:
            del self._seen[name]

    def see(self, record: LeaseRecord, now: float) -> None:
        known = self._seen.get(record.name)
        if known is None or known[0] != record.version:
            self._seen[record.name] = (record.version, now)

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def expired(self, record: LeaseRecord, now: float | None) -> bool:
        """Released, or unchanged for its whole duration since we first saw this version (`now`: the
        moment up to which our view is known complete; None: not known, so nothing has expired)."""
        if not record.holder:
            return True
        seen = self._seen.get(record.name)
        return now is not None and seen is not None and seen[0] == record.version and now - seen[1] >= record.duration


@dataclass
class LeaseView:
    """The group's Leases as this replica knows them: one list, then the watch's events in order.

    Our own unit Lease writes go in at once (`wrote`), or the next tick would plan on the state before
    them; the watch still delivers events from before such a write, so a Lease we wrote is *pinned*:
    events for it are ignored until the stream reaches the version we wrote. The stream may also be
    quicker than the write's answer: a version it already delivered is never pinned (it would hold
    the Lease stale for good). A list clears the pins (no unit Lease write runs during one: both
    happen under the coordinator's lock)."""

    records: dict[str, LeaseRecord] = field(default_factory=dict)
    resource_version: str = ""  # where the watch resumes
    synced: bool = False  # listed at least once
    _pinned: dict[str, str] = field(default_factory=dict)  # name -> the resourceVersion we wrote
    _delivered: dict[str, deque[str]] = field(default_factory=dict)  # name -> its latest versions on the stream

    def reset(self, items: Iterable[Mapping[str, Any]], resource_version: str) -> None:
        self.records = {r.name: r for b in items if (r := lease_record(b)) is not None}
        self.resource_version = resource_version
        self._pinned.clear()
        self._delivered.clear()
        self.synced = True

    def apply(self, event: Mapping[str, Any]) -> tuple[str, LeaseRecord | None, bool] | None:
        """One watch event. None if it changes nothing we keep (a bookmark, a stale event); else the
        Lease's name, its record now (None: deleted), and whether its holder or presence changed
        (what can change a plan; a renew does not)."""
        body = event.get("object") or {}
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if version:
            self.resource_version = version
        kind = event.get("type")
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return None  # BOOKMARK: only the resume point moves
        record = lease_record(body)
        if record is None:
            return None
        self._delivered.setdefault(record.name, deque(maxlen=8)).append(version)
        pinned = self._pinned.get(record.name)
        if pinned is not None:
            if version != pinned:
                return None  # from before our own write: stale
            del self._pinned[record.name]
        old = self.records.get(record.name)
        if kind == "DELETED":
            self.records.pop(record.name, None)
            return record.name, None, old is not None
        self.records[record.name] = record
        return record.name, record, old is None or old.holder != record.holder

    def wrote(self, stored: Mapping[str, Any]) -> LeaseRecord | None:
        """Our own write's answer, ahead of its watch event."""
        record = lease_record(stored)
        if record is not None and record.resource_version not in self._delivered.get(record.name, ()):
            self.records[record.name] = record
            self._pinned[record.name] = record.resource_version
        return record


@dataclass(frozen=True)
class Plan:
    keep: frozenset[str] = frozenset()  # units held and assigned here: drive them
    acquire: tuple[tuple[str, LeaseRecord | None], ...] = ()  # create (None) or take over
    release: tuple[tuple[str, LeaseRecord], ...] = ()  # held here, assigned elsewhere: stop, then release
    waiting: tuple[tuple[str, str], ...] = ()  # (unit, holder): assigned here, still held by a live replica


def live_members(members: Iterable[LeaseRecord], observer: Observer, now: float | None) -> set[str]:
    return {m.holder for m in members if m.holder and not observer.expired(m, now)}


def plan(
    me: str,
    units: Collection[str],
    live: Collection[str],
    leases: Mapping[str, LeaseRecord],
    expired: Callable[[LeaseRecord], bool],
    fenced: bool = False,
) -> Plan:
    """What this replica does with each unit in one tick (`leases`: the unit Leases, by unit).

    A unit held by a live replica other than the assigned one waits for that replica to release it;
    one whose holder is not live (membership expired or gone) is taken once its own Lease has also
    been seen unchanged for its duration, so a holder that deleted its membership is waited out too.
    While fenced (our renew is overdue) nothing is kept or acquired: everything is let go."""
    replicas = set(live) | {me}
    keep: set[str] = set()
    acquire: list[tuple[str, LeaseRecord | None]] = []
    release: list[tuple[str, LeaseRecord]] = []
    waiting: list[tuple[str, str]] = []
    for unit in sorted(set(units) | {u for u, r in leases.items() if r.holder == me}):
        lease = leases.get(unit)
        assigned = owner_of(unit, replicas) == me and unit in units
        if fenced:
            continue
        if not assigned:
            if lease is not None and lease.holder == me:
                release.append((unit, lease))
            continue
        if lease is None:
            acquire.append((unit, None))
        elif lease.holder == me:
            keep.add(unit)
        elif not lease.holder or (lease.holder not in live and expired(lease)):
            acquire.append((unit, lease))
        else:
            waiting.append((unit, lease.holder))
    return Plan(frozenset(keep), tuple(acquire), tuple(release), tuple(waiting))


def after_fence(
    me: str,
    suspended: Mapping[str, int],
    leases: Mapping[str, LeaseRecord],
    keep: Collection[str],
    fenced: bool,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What becomes of the units a lapsed fence suspended (`suspended`: unit -> the tenure it was driven
    at; their sessions and service records were kept): (resume, stop).

    A unit is resumed, with one whole-device pass, only if it is still ours to keep and its Lease still
    names us with the same tenure: nobody took it meanwhile, so nobody else can have written to the
    device (every take adds 1 to leaseTransitions). Anything else (another holder, a new tenure, a
    release, a deleted Lease, a unit now assigned elsewhere) is stopped in full, as before suspensions
    existed. While still fenced, nothing is decided: the units stay suspended."""
    if fenced:
        return (), ()
    resume: list[str] = []
    stop: list[str] = []
    for unit, tenure in sorted(suspended.items()):
        lease = leases.get(unit)
        if unit in keep and lease is not None and lease.holder == me and lease.transitions == tenure:
            resume.append(unit)
        else:
            stop.append(unit)
    return tuple(resume), tuple(stop)


# -- the coordinator (I/O) --------------------------------------------------------------------------
LeaseBodies = list[dict[str, Any]]  # Leases in the API's JSON form


class LeaseApi(Protocol):
    """The Lease calls the coordinator needs (dicts in the API's JSON form)."""

    async def list(self) -> list[dict[str, Any]]: ...

    async def snapshot(self) -> tuple[LeaseBodies, str]:
        """The Leases and the list's resourceVersion (where a watch starts)."""
        ...

    def watch(self, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Events after `resource_version` ({"type", "object"}); ends when the server closes the watch;
        raises Gone when that version is too old to resume from."""
        ...

    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def delete(self, name: str) -> None: ...


class Conflict(Exception):
    """Someone else wrote the Lease first (409), or it is gone."""


class Gone(Exception):
    """410: the watch's resourceVersion is too old (compacted); list again."""


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0  # how long others wait on a silent replica before taking its units
    renew_deadline: float = 10.0  # a replica stops driving this long after its last renew was sent
    renew_interval: float = 2.0  # how often it renews (and looks at the Leases)

    def __post_init__(self) -> None:
        if not 0 < self.renew_interval < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "shard lease timing: expected 0 < renew interval < renew deadline < lease duration, got"
                f" {self.renew_interval} / {self.renew_deadline} / {self.lease_duration}"
            )


Gain = Callable[[str, int], Awaitable[None]]
Lose = Callable[[str], Awaitable[None]]
Suspend = Callable[[str], Awaitable[bool]]  # True: what was learnt is kept (resumable); False: stopped in full
Resume = Callable[[str, int], Awaitable[None]]


@dataclass
class Coordinator:
    """This replica's membership and its units. `units()` names what exists; `on_gain(unit, tenure)`
    starts driving a unit (tenure: the unit Lease's transitions count, which grows with every new
    owner), `on_lose(unit)` stops it and must return only once nothing more is sent to it.

    For one unit, `on_gain` and `on_lose` never overlap and alternate (a gain, then a lose, ...): the
    fence watchdog stops units from tasks of its own while a tick may be starting them, and a stop
    that ran alongside a start tore down what the start had just built (a session, queued work).
    `on_gain` runs only while the fence is valid. Gains of one tick run concurrently, at most
    `gain_concurrency` at a time, after all of that tick's unit Leases were written: after a
    failover, the lost replica's devices are taken together, not one after another. The loop does not
    wait for them: the next tick (a hand-over, another take-over) never queues behind a slow start.

    With `on_suspend`/`on_resume`, a lapsed fence is cheap: `on_suspend(unit)` stops the unit's writes
    (and must return only once nothing more is sent) but may keep its session and records. Once a renew
    is on time again, a unit whose Lease still names us at the same tenure is confirmed with one write
    of its Lease conditioned on the version read (so a take racing it fails) and `on_resume(unit,
    tenure)` runs; any other is stopped with `on_lose` (`after_fence`). Suspend and resume take part in
    the same alternation: gain, (suspend, resume)*, lose."""

    api: LeaseApi
    group: str
    identity: str
    units: Callable[[], Collection[str]]
    on_gain: Gain
    on_lose: Lose
    timing: Timing = field(default_factory=Timing)
    clock: Callable[[], float] = time.monotonic
    gain_concurrency: int = 8  # units started at once (each reads its Secrets and opens a session)
    on_suspend: Suspend | None = None  # None: a lapsed fence stops every unit in full (on_lose)
    on_resume: Resume | None = None
    renew_off_loop: bool = True  # renew on a thread of its own when the API has replace_blocking
    held: dict[str, int] = field(default_factory=dict)  # unit -> tenure, while driving it
    suspended: dict[str, int] = field(default_factory=dict)  # unit -> tenure: fenced off, its state kept
    resumes: int = 0  # suspended units taken up again without a stop and start
    observer: Observer = field(default_factory=Observer)
    live: set[str] = field(default_factory=set)
    holders: dict[str, str] = field(default_factory=dict)  # unit -> holder, as last seen
    view: LeaseView = field(default_factory=LeaseView)
    relists: int = 0  # lists after the first (410 Gone, a failed watch)
    _renewed_at: float | None = None  # when the last successful renew was sent
    _member: LeaseRecord | None = None
    _fresh_at: float | None = None  # every Lease write committed before this moment is in `view`
    _unechoed: tuple[str, float] | None = None  # our last renew (resourceVersion, sent), not yet seen on the watch
    _echoed: str = ""  # the last version of our membership Lease the watch delivered
    _task: asyncio.Task[None] | None = None
    _watching: asyncio.Task[None] | None = None
    _watchdog: asyncio.TimerHandle | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closing: bool = False
    _background: set[asyncio.Task[None]] = field(default_factory=set)  # fence stops, starts, loop renews
    _recreating: asyncio.Task[None] | None = None  # the loop's renew after a 409 of the renewer thread
    _transit: dict[str, asyncio.Lock] = field(default_factory=dict)  # unit -> held while it starts or stops
    _started: set[str] = field(default_factory=set)  # on_gain done, no on_lose since
    _taken_at: dict[str, float] = field(default_factory=dict)  # unit -> when its take was written (the start's log)
    _renewer: threading.Thread | None = None
    _renewer_stop: threading.Event = field(default_factory=threading.Event)
    _beat: float | None = None  # when the coordinator last ended a tick or a step of one (for the renewer thread)
    _starting: set[str] = field(default_factory=set)  # units whose start or resume is queued or running
    _gate: asyncio.Semaphore | None = None  # at most gain_concurrency starts at once
    _reported: tuple[int, tuple[str, ...]] = (-1, ())  # what _report last logged

    # -- what the rest of the controller asks --------------------------------------------------------
    def fence_valid(self) -> bool:
        return self._renewed_at is not None and self.clock() < self._renewed_at + self.timing.renew_deadline

    def drives(self, unit: str) -> bool:
        return unit in self.held and self.fence_valid()

    def keeps(self, unit: str) -> bool:
        """Whether this replica keeps what it learnt of `unit` (driven, or suspended by a lapsed fence and
        maybe resumed): its service records must stay current, though nothing is written to it."""
        return unit in self.held or unit in self.suspended

    def guard(self, unit: str) -> tuple[tuple[str, str], ...]:
        """Checked right before every Set: the metadata that names this replica and its tenure."""
        if not self.drives(unit):
            raise Fenced(f"replica {self.identity} does not drive {unit} (not its owner, or its lease renew is late)")
        return (("x-telco-replica", self.identity), ("x-telco-tenure", str(self.held[unit])))

    def holder_of(self, unit: str) -> str | None:
        """Who holds the unit's Lease as last seen (None: not known)."""
        if unit in self.held:
            return self.identity
        return self.holders.get(unit)

    def poke(self) -> None:
        """A unit appeared (a new NetworkDevice, a service naming a new device): look now."""
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shard-coordinator")

    def follow(self) -> asyncio.Task[None]:
        """Start keeping `view` current (a list, then the watch), once."""
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch(), name="shard-lease-watch")
        return self._watching

    async def close(self) -> None:
        """Graceful stop: let go of every unit (stopping first), then release the membership.

        The loop is let finish the step under way rather than cancelled in it: a Lease write runs on a
        thread of the API client and lands whether or not its caller is still there, so a take cancelled
        halfway could leave a Lease ours on the server that nothing here knows to release. Every unit Lease
        the API server shows held by this replica is released, not only those driven: one whose start
        failed (retried by the next tick) is ours too."""
        self._closing = True
        self._renewer_stop.set()
        if self._task is not None:
            self._wake.set()
            with contextlib.suppress(TimeoutError):  # half the deadline: a pod's grace period holds the rest
                await asyncio.wait_for(asyncio.shield(self._task), self.timing.renew_deadline / 2)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._renewer is not None:  # a renew under way ends within the API timeout
            await asyncio.to_thread(self._renewer.join, self.timing.renew_deadline)
        if self._watchdog is not None:
            self._watchdog.cancel()
        async with self._busy:
            leases = await self._unit_leases()
            suspended = list(self.suspended)
            for unit in suspended:  # fenced off but still ours: stopped in full and released like the rest
                await self._stop_suspended(unit)
            for unit in [*self.held, *suspended]:
                await self._lose(unit)
            for unit, lease in leases.items():
                if lease.holder == self.identity:
                    with contextlib.suppress(Exception):
                        await self.api.replace(lease.name, self._unit_body(unit, lease, holder=""))
            if self._member is not None:
                with contextlib.suppress(Exception):
                    await self.api.delete(self._member.name)

    async def _run(self) -> None:
        watching = self.follow()
        await self._renew()
        blocking = getattr(self.api, "replace_blocking", None) if self.renew_off_loop else None
        if blocking is not None:
            self._beat = self.clock()
            renewing: asyncio.Task[None] | None = None
            loop = asyncio.get_running_loop()
            self._renewer = threading.Thread(
                target=self._renew_off_loop, args=(blocking, loop), name="shard-renew", daemon=True
            )
            self._renewer.start()
        else:
            renewing = asyncio.create_task(self._renew_loop(), name="shard-renew")
        try:
            while not self._closing:
                try:
                    async with self._busy:
                        await self._step(renew=False)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never stop: the fence watchdog stops the devices if this keeps failing
                    log.exception("shard coordinator: tick failed")
                self._progressed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.timing.renew_interval)
                self._wake.clear()
        finally:
            self._renewer_stop.set()
            tasks = [t for t in (renewing, watching) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._watching = None

    async def _renew_loop(self) -> None:
        """Renews on its own schedule: a long tick (many devices taken at once, each reading its Secrets)
        must never make the renew late and so fence this replica off its own devices."""
        while True:
            await asyncio.sleep(self.timing.renew_interval)
            await self._renew()

    async def tick(self, renew: bool = True) -> None:
        """One look at the Leases as the watch has them (`view`): keep, take, release; returns once the
        units it took or resumed have been started."""
        await asyncio.gather(*await self._step(renew))

    async def _step(self, renew: bool = True) -> list[asyncio.Task[None]]:
        """A tick up to its Lease writes; the starts of what it took or resumed are left running (the
        tasks returned), so a slow start (Secrets, a session) never holds up the next tick."""
        if self._closing:
            return []  # close() lets go of everything: nothing new is taken or started
        if renew:
            await self._renew()
        if not self.view.synced:
            return []  # not listed yet: the first list wakes the loop
        listing = list(self.view.records.values())
        members = [r for r in listing if r.role == "member"]
        leases = {r.unit: r for r in listing if r.role == "unit" and r.unit}
        self.holders = {u: r.holder for u, r in leases.items()}
        fresh = self._fresh_at
        if self.on_suspend is not None and not self.fence_valid():
            self._fence_lapsed()  # the watchdog may be late on a starved loop: suspend, never stop in full here
        live = live_members(members, self.observer, fresh) | ({self.identity} if self.fence_valid() else set())
        if live != self.live:
            log.info("shard: live replicas now %s", ", ".join(sorted(live)) or "none")
        self.live = live
        step = plan(
            self.identity,
            set(self.units()) | {COMMERCE},
            self.live,
            leases,
            lambda r: self.observer.expired(r, self._fresh_at),
            fenced=not self.fence_valid(),
        )
        self._report(len(step.keep) + len(step.acquire), step.waiting)
        for unit in list(self.held):  # held here but the Lease says otherwise (or fenced): stop at once
            if unit not in step.keep and not any(u == unit for u, _ in step.release):
                await self._lose(unit)
                self._progressed()
        resume, stop = after_fence(self.identity, self.suspended, leases, step.keep, fenced=not self.fence_valid())
        for unit in stop:  # its Lease moved, or it is no longer ours to keep: stopped in full, as before
            await self._stop_suspended(unit)
            self._progressed()
        for unit, lease in step.release:
            await self._lose(unit)
            try:
                self.view.wrote(await self.api.replace(lease.name, self._unit_body(unit, lease, holder="")))
                log.info("shard: released %s (assigned to another replica now)", unit)
            except Conflict:
                pass  # changed meanwhile: judged again at the next tick
            self._progressed()
        gains: list[tuple[str, int]] = []
        for unit in sorted(step.keep):
            # Ours by its Lease but not driven, e.g. after our renew was late and is on time again. Not
            # while it is still being stopped (the watchdog's stop ends first; it wakes us), nor fenced; a
            # suspended one is resumed instead (below).
            idle = unit not in self.held and unit not in self.suspended and not self._in_transit(unit)
            if idle and self.fence_valid():
                tenure = leases[unit].transitions
                self.held[unit] = tenure
                gains.append((unit, tenure))
        failed: list[BaseException] = []
        takes = [(u, c) for u, c in step.acquire if not self._in_transit(u)]
        for result in await self._bounded([self._take(unit, current) for unit, current in takes]):
            if isinstance(result, tuple):
                gains.append(result)
            elif isinstance(result, BaseException):
                failed.append(result)
        starts = [self._starting_task(unit, self._gain(unit, tenure)) for unit, tenure in gains]
        for unit in resume:
            if not self._in_transit(unit):
                starts.append(self._starting_task(unit, self._resume(unit, leases[unit])))
        if failed:
            raise failed[0]  # logged by the loop (the starts above run on); the next tick tries the rest again
        return starts

    def _starting_task(self, unit: str, start: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """`start` (a gain or a resume of `unit`) as a task of its own, at most `gain_concurrency` at once;
        the unit counts as in transit from now on, so no later tick starts or resumes it a second time."""
        self._starting.add(unit)
        if self._gate is None:
            self._gate = asyncio.Semaphore(max(1, self.gain_concurrency))
        gate = self._gate

        async def gated() -> None:
            try:
                async with gate:
                    await start
            finally:
                self._starting.discard(unit)
                start.close()  # never run (cancelled while queued at the gate): no "never awaited" warning

        task = asyncio.create_task(gated(), name=f"shard-start-{unit}")
        self._keep(task)
        return task

    def _report(self, assigned: int, waiting: tuple[tuple[str, str], ...]) -> None:
        """Log what this replica waits for when that changes: a hand-over that never comes is then in
        the log, not only in its absence (a replica that drives nothing while its membership is live)."""
        holders = tuple(sorted({holder for _, holder in waiting}))
        if (assigned, holders) != self._reported:
            self._reported = (assigned, holders)
            if waiting:
                log.info(
                    "shard: %d unit(s) assigned here, %d still held by %s (waiting for their release or expiry)",
                    assigned + len(waiting),
                    len(waiting),
                    ", ".join(holders),
                )
            else:
                log.info("shard: %d unit(s) assigned here, none held elsewhere", assigned)

    async def _bounded(self, calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
        """Run `calls` concurrently, at most `gain_concurrency` at a time; their results or exceptions."""
        gate = asyncio.Semaphore(max(1, self.gain_concurrency))

        async def one(call: Coroutine[Any, Any, Any]) -> Any:
            async with gate:
                return await call

        return list(await asyncio.gather(*(one(c) for c in calls), return_exceptions=True))

    async def _take(self, unit: str, current: LeaseRecord | None) -> tuple[str, int] | None:
        """Write the unit's Lease with us as holder; (unit, tenure) if we got it (None: someone was first)."""
        if not self.fence_valid() or self._closing:
            return None
        tenure = 0 if current is None else current.transitions + 1
        name = unit_lease_name(self.group, unit)
        body = self._unit_body(unit, current, holder=self.identity, transitions=tenure)
        try:
            if current is None:
                self.view.wrote(await self.api.create(body))
            else:
                self.view.wrote(await self.api.replace(name, body))
        except Conflict:
            return None  # another replica took or changed it first: judged again next tick
        finally:
            self._progressed()
        log.info("shard: took %s (tenure %d)", unit, tenure)
        self.held[unit] = tenure
        self._taken_at[unit] = self.clock()
        return unit, tenure

    def _keep(self, task: asyncio.Task[None]) -> None:
        """Hold a reference to a task of the coordinator's own until it ends (the loop keeps only weak ones)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _progressed(self) -> None:
        """The renewer thread's proof that this replica still coordinates: a tick, or a step of one (a
        take, a stop, a release), that ended; not merely a loop that runs. Stuck on one step for the
        lease duration, it must lose the membership, or the others would wait on it for good. A long
        tick that keeps making steps (many releases on a slow API server) keeps it."""
        self._beat = self.clock()

    def _in_transit(self, unit: str) -> bool:
        """Being started, resumed or stopped: no tick decides anything about it until that has ended."""
        if unit in self._starting:
            return True
        lock = self._transit.get(unit)
        return lock is not None and lock.locked()

    def _unit_lock(self, unit: str) -> asyncio.Lock:
        return self._transit.setdefault(unit, asyncio.Lock())

    async def _gain(self, unit: str, tenure: int) -> None:
        """Start driving `unit` (held at `tenure`), after any stop of it under way has ended."""
        async with self._unit_lock(unit):
            if self.held.get(unit) != tenure:
                return  # stopped meanwhile (the fence): nothing to start
            if not self.fence_valid():
                del self.held[unit]  # our renew is late: the Lease is still ours, a later tick starts it
                return
            began = self.clock()
            taken = self._taken_at.pop(unit, None)
            try:
                await self.on_gain(unit, tenure)
                self._started.add(unit)
                if taken is not None:  # a failover's take: where its time goes (docs/sharding.md)
                    log.info(
                        "shard: started %s in %.2fs, %.2fs after its take", unit, self.clock() - began, began - taken
                    )
            except Exception:
                log.exception("shard: starting %s failed; stopping it, the next tick starts it again", unit)
                self.held.pop(unit, None)
                await self._lose_logged(unit)

    async def _lose(self, unit: str) -> None:
        """Stop driving `unit`: drives() is False from this call on; `on_lose` runs once a start of the
        unit under way has ended, and the loop is woken afterwards (a unit still ours is taken up again)."""
        if self.held.pop(unit, None) is None:
            return
        await self._stop(unit)

    async def _lose_logged(self, unit: str) -> None:
        """`on_lose`, its failure logged: a unit being let go is let go whatever its stop raised."""
        try:
            await self.on_lose(unit)
        except Exception:
            log.exception("shard: stopping %s failed", unit)

    async def _stop(self, unit: str) -> None:
        """`on_lose` for a unit already taken out of `held`."""
        async with self._unit_lock(unit):
            self._started.discard(unit)
            await self._lose_logged(unit)
        self._wake.set()

    async def _suspend(self, unit: str, tenure: int) -> None:
        """The fence lapsed: `on_suspend` stops the unit's writes (drives() is already False) and keeps its
        state, once a start under way has ended. A unit that was never started has nothing to keep."""
        async with self._unit_lock(unit):
            if self.suspended.get(unit) != tenure:
                return  # stopped in full meanwhile
            kept = False
            if unit in self._started and self.on_suspend is not None:
                try:
                    kept = await self.on_suspend(unit)  # False: it stopped the unit in full itself
                except Exception:
                    log.exception("shard: suspending %s failed; stopping it", unit)
                    with contextlib.suppress(Exception):
                        await self.on_lose(unit)
            if not kept:
                self.suspended.pop(unit, None)
                self._started.discard(unit)
        self._wake.set()

    async def _stop_suspended(self, unit: str) -> None:
        """A suspended unit whose Lease moved (or that is let go): stopped in full, as every unit was on a
        lapse before suspensions existed."""
        if self.suspended.pop(unit, None) is None:
            return
        async with self._unit_lock(unit):
            if unit in self._started:  # else its suspension found nothing started: nothing to stop
                self._started.discard(unit)
                await self._lose_logged(unit)
        self._wake.set()

    async def _resume(self, unit: str, lease: LeaseRecord) -> None:
        """Take up a suspended unit whose Lease still names us at its tenure (`after_fence`): first a write
        of that Lease conditioned on the version we read, so a take by another replica that raced our
        view fails (or makes this fail and the unit is stopped in full); then `on_resume`."""
        tenure = lease.transitions
        if not self.fence_valid() or self.suspended.get(unit) != tenure:
            return
        try:
            self.view.wrote(await self.api.replace(lease.name, self._unit_body(unit, lease, holder=self.identity)))
        except Conflict:
            log.info("shard: %s changed while this replica was fenced off: stopping it in full", unit)
            await self._stop_suspended(unit)
            return
        except Exception as exc:  # the API server again: it stays suspended, the next tick tries again
            log.warning("shard: confirming %s after a lapsed fence failed (%s)", unit, exc)
            return
        async with self._unit_lock(unit):
            if self.suspended.get(unit) != tenure or not self.fence_valid():
                return  # stopped meanwhile, or fenced again (then it stays suspended)
            del self.suspended[unit]
            self.held[unit] = tenure
            try:
                assert self.on_resume is not None
                await self.on_resume(unit, tenure)
                self.resumes += 1
                log.info("shard: resumed %s (tenure %d unchanged: session and records kept)", unit, tenure)
            except Exception:
                log.exception("shard: resuming %s failed; stopping it, the next tick starts it again", unit)
                self.held.pop(unit, None)
                self._started.discard(unit)
                await self._lose_logged(unit)
        self._wake.set()

    # -- the view: one list, then the watch -----------------------------------------------------------
    async def _watch(self) -> None:
        """Keeps `view` current: a list, then a watch from its resourceVersion, resumed when the server
        ends it; listed again after 410 Gone or any error (after a pause, so a lost API server is not
        hammered). Meanwhile ticks plan on the view as it is: only our own echoed renews move
        `_fresh_at`, so a stale view can delay a take-over but never cause one."""
        relist, gone = True, 0
        while True:
            try:
                if relist:
                    await self._relist()
                    relist = False
                async for event in self.api.watch(self.view.resource_version):
                    gone = 0
                    self._on_event(event)
            except asyncio.CancelledError:
                raise
            except Gone:
                relist, gone = True, gone + 1
                log.info("shard: the Lease watch's resourceVersion is too old: listing again")
                await asyncio.sleep(self.timing.renew_interval if gone > 1 else 0)  # at once, the first time
            except Exception as exc:
                relist = True
                log.warning("shard: the Lease watch failed (%s): listing again", exc)
                await asyncio.sleep(self.timing.renew_interval)

    async def _relist(self) -> None:
        async with self._busy:  # no unit Lease write of ours runs during the list (LeaseView's pins)
            sent = self.clock()
            items, version = await self.api.snapshot()
            if self.view.synced:
                self.relists += 1
            self.view.reset(items, version)
            self.observer.observe(self.view.records.values(), self.clock())
            self._confirm(sent)  # a list shows every write committed before it was sent
        self._wake.set()

    def _on_event(self, event: Mapping[str, Any]) -> None:
        change = self.view.apply(event)
        if change is None:
            return
        name, record, changed = change
        if record is None:
            self.observer.forget(name)
        else:
            self.observer.see(record, self.clock())
            if name == member_lease_name(self.group, self.identity):
                self._echoed = record.resource_version
                if self._unechoed is not None and self._unechoed[0] == record.resource_version:
                    self._confirm(self._unechoed[1])  # the stream is complete up to that renew
                    self._unechoed = None
        if changed:
            self._wake.set()

    def _confirm(self, at: float) -> None:
        self._fresh_at = at if self._fresh_at is None else max(self._fresh_at, at)

    # -- membership ----------------------------------------------------------------------------------
    async def _renew(self) -> None:
        if self.held and not self.fence_valid():
            # The watchdog has not run yet (a starved loop): the units go through the lapse first, so a
            # renew never makes a unit driven again without the check of its Lease (`after_fence`).
            self._fence_lapsed()
        sent = self.clock()
        name = member_lease_name(self.group, self.identity)
        body = self._lease_body(
            name,
            "member",
            holder=self.identity,
            transitions=0,
            resource_version=self._member.resource_version if self._member else None,
        )
        try:
            if self._member is None:
                try:
                    stored = await self.api.create(body)
                except Conflict:  # ours from before a restart of this process? never: identities are unique
                    stored = next(b for b in await self.api.list() if (b.get("metadata") or {}).get("name") == name)
                    body["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
                    stored = await self.api.replace(name, body)
            else:
                stored = await self.api.replace(name, body)
        except Exception as exc:
            self._member = None if isinstance(exc, Conflict) else self._member
            late = "" if self.fence_valid() else "; past the renew deadline: not driving any device"
            log.warning("shard: renewing the membership Lease %s failed (%s)%s", name, exc, late)
            return
        self._member = lease_record(stored)
        self._renewed_at = sent if self._renewed_at is None else max(self._renewed_at, sent)
        self._renewed(stored, sent)

    def _renewed(self, stored: Mapping[str, Any], sent: float) -> None:
        """On the loop, after a renew sent at `sent` went through (here or on the renewer thread)."""
        if self._closing:
            return
        self._arm_watchdog()
        version = str((stored.get("metadata") or {}).get("resourceVersion") or "")
        if version and version == self._echoed:  # the watch was quicker than the answer
            self._confirm(sent)
        else:
            self._unechoed = (version, sent)

    # -- the renewer thread (an API with replace_blocking) ----------------------------------------------
    def _renew_off_loop(self, replace: Callable[[str, dict[str, Any]], dict[str, Any]], loop: Any) -> None:
        """Renews the membership with a blocking client on a thread of its own, so a starved event loop
        does not make the renew late and fence this replica off (issue 16). It renews only while the loop
        has ended a tick within `lease_duration`: a wedged loop, or a tick stuck on something, must lose
        its devices like a dead process, or the other replicas would wait on this one for good. The
        fence itself needs no thread: every Set checks fence_valid(), which reads the clock and the last
        renew's send time. This thread also hands a lapse to the loop's watchdog as soon as it sees one."""
        late = False
        while not self._renewer_stop.wait(self.timing.renew_interval):
            member, beat = self._member, self._beat
            if beat is not None and self.clock() - beat > self.timing.lease_duration:
                if not late:
                    idle = self.clock() - beat
                    log.warning(
                        "shard: no coordinator tick has ended for %.0fs (a wedged event loop or a stuck tick):"
                        " no more membership renews",
                        idle,
                    )
                late = True
                self._lapse_from_thread(loop)
                continue
            late = False
            if self.held and not self.fence_valid():
                # Lapsed (e.g. the process was stopped): the loop must take the units out of `held` before
                # a renew makes the fence valid again, or they would be driven with no check of their Leases.
                self._lapse_from_thread(loop)
                continue
            if member is None:  # created (or found again after a conflict) by the loop's own renew
                self._call_loop(loop, self._renew_if_unowned)
                continue
            sent = self.clock()
            body = self._lease_body(
                member.name, "member", holder=self.identity, transitions=0, resource_version=member.resource_version
            )
            try:
                stored = replace(member.name, body)
            except Exception as exc:
                if isinstance(exc, Conflict) and self._member is member:
                    self._member = None
                state = "" if self.fence_valid() else "; past the renew deadline: not driving any device"
                log.warning("shard: renewing the membership Lease %s failed (%s)%s", member.name, exc, state)
                self._lapse_from_thread(loop)
                continue
            if self._renewer_stop.is_set():
                return
            self._member = lease_record(stored)
            self._renewed_at = sent if self._renewed_at is None else max(self._renewed_at, sent)
            self._call_loop(loop, self._renewed, stored, sent)

    def _renew_if_unowned(self) -> None:
        # One at a time: on a slow API server (create, 409, list, replace: seconds) the thread asks again
        # every renew interval, and a second renew would 409 on the first one's write and unset the
        # membership it had just recorded, prolonging the lapse (the 10,000-service bench, issue 16).
        if self._member is None and not self._closing and (self._recreating is None or self._recreating.done()):
            task = asyncio.create_task(self._renew(), name="shard-renew-create")
            self._recreating = task
            self._keep(task)

    def _lapse_from_thread(self, loop: Any) -> None:
        if self.held and not self.fence_valid():
            self._call_loop(loop, self._fence_lapsed)

    def _call_loop(self, loop: Any, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            loop.call_soon_threadsafe(fn, *args)

    def _arm_watchdog(self) -> None:
        """Stop every unit at the renew deadline, whatever the loop is doing (a hung API call)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        assert self._renewed_at is not None
        delay = self._renewed_at + self.timing.renew_deadline - self.clock()
        self._watchdog = asyncio.get_running_loop().call_later(max(0.0, delay), self._fence_lapsed)

    def _fence_lapsed(self) -> None:
        if self.fence_valid() or not self.held:
            return
        suspend = self.on_suspend is not None
        log.warning(
            "shard: no membership renew for %.0fs: stopping all %d unit(s) before the Lease can expire%s",
            self.timing.renew_deadline,
            len(self.held),
            " (their writes; sessions and records are kept while the Leases stay ours)" if suspend else "",
        )
        # drives() is already False for all of them; this stops the work. Out of `held` at once, so a renew
        # right after this (the renewer thread's) cannot make them driven again without their Leases' check.
        for unit in list(self.held):
            tenure = self.held.pop(unit)
            if suspend:
                self.suspended[unit] = tenure
                task = asyncio.create_task(self._suspend(unit, tenure), name=f"shard-fence-{unit}")
            else:
                task = asyncio.create_task(self._stop(unit), name=f"shard-fence-{unit}")
            self._keep(task)

    # -- bodies --------------------------------------------------------------------------------------
    def _unit_body(
        self, unit: str, lease: LeaseRecord | None, holder: str, transitions: int | None = None
    ) -> dict[str, Any]:
        body = self._lease_body(
            unit_lease_name(self.group, unit),
            "unit",
            holder=holder,
            transitions=lease.transitions if transitions is None and lease else transitions or 0,
            resource_version=lease.resource_version if lease else None,
        )
        body["metadata"]["annotations"] = {UNIT_ANNOTATION: unit}
        return body

    def _lease_body(
        self, name: str, role: str, holder: str, transitions: int, resource_version: str | None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {GROUP_LABEL: self.group, ROLE_LABEL: role}}
        if resource_version:
            meta["resourceVersion"] = resource_version
        now = rfc3339_micro(dt.datetime.now(dt.UTC))
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": int(self.timing.lease_duration + 0.999),
                "renewTime": now,
                "acquireTime": now,
                "leaseTransitions": transitions,
            },
        }

    async def _unit_leases(self) -> dict[str, LeaseRecord]:
        try:
            listing = [r for b in await self.api.list() if (r := lease_record(b)) is not None]
        except Exception:
            return {}
        return {r.unit: r for r in listing if r.role == "unit" and r.unit}


def rfc3339_micro(at: dt.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def replica_identity() -> str:
    """This process's name in the shard Leases and in the x-telco-replica metadata: the pod (POD_ID, which
    the chart sets) or host name, plus a random part, so that a restarted process is a new replica."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}-{secrets.token_hex(3)}"


__all__ = [
    "COMMERCE",
    "Coordinator",
    "Fenced",
    "Gone",
    "LeaseRecord",
    "LeaseView",
    "Observer",
    "Plan",
    "Timing",
    "after_fence",
    "assign",
    "lease_record",
    "owner_of",
    "plan",
    "replica_identity",
]

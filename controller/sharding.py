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

Expiry is judged by local observation (when this replica first saw a Lease's current version), as
client-go's leader election does, so clocks need not agree between nodes, only run at about the
same rate. The pure parts (assignment, the plan for one tick) are here; `Coordinator` does the I/O.
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
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
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

    def expired(self, record: LeaseRecord, now: float) -> bool:
        """Released, or unchanged for its whole duration since we first saw this version."""
        if not record.holder:
            return True
        seen = self._seen.get(record.name)
        return seen is not None and seen[0] == record.version and now - seen[1] >= record.duration


@dataclass(frozen=True)
class Plan:
    keep: frozenset[str] = frozenset()  # units held and assigned here: drive them
    acquire: tuple[tuple[str, LeaseRecord | None], ...] = ()  # create (None) or take over
    release: tuple[tuple[str, LeaseRecord], ...] = ()  # held here, assigned elsewhere: stop, then release
    waiting: tuple[tuple[str, str], ...] = ()  # (unit, holder): assigned here, still held by a live replica


def live_members(members: Iterable[LeaseRecord], observer: Observer, now: float) -> set[str]:
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


# -- the coordinator (I/O) --------------------------------------------------------------------------
class LeaseApi(Protocol):
    """The Lease calls the coordinator needs (dicts in the API's JSON form)."""

    async def list(self) -> list[dict[str, Any]]: ...

    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def delete(self, name: str) -> None: ...


class Conflict(Exception):
    """Someone else wrote the Lease first (409), or it is gone."""


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


@dataclass
class Coordinator:
    """This replica's membership and its units. `units()` names what exists; `on_gain(unit, tenure)`
    starts driving a unit (tenure: the unit Lease's transitions count, which grows with every new
    owner), `on_lose(unit)` stops it and must return only once nothing more is sent to it."""

    api: LeaseApi
    group: str
    identity: str
    units: Callable[[], Collection[str]]
    on_gain: Gain
    on_lose: Lose
    timing: Timing = field(default_factory=Timing)
    clock: Callable[[], float] = time.monotonic
    held: dict[str, int] = field(default_factory=dict)  # unit -> tenure, while driving it
    observer: Observer = field(default_factory=Observer)
    live: set[str] = field(default_factory=set)
    holders: dict[str, str] = field(default_factory=dict)  # unit -> holder, as last listed
    _renewed_at: float | None = None  # when the last successful renew was sent
    _member: LeaseRecord | None = None
    _task: asyncio.Task[None] | None = None
    _watchdog: asyncio.TimerHandle | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closing: bool = False
    _stopping: set[asyncio.Task[None]] = field(default_factory=set)

    # -- what the rest of the controller asks --------------------------------------------------------
    def fence_valid(self) -> bool:
        return self._renewed_at is not None and self.clock() < self._renewed_at + self.timing.renew_deadline

    def drives(self, unit: str) -> bool:
        return unit in self.held and self.fence_valid()

    def guard(self, unit: str) -> tuple[tuple[str, str], ...]:
        """Checked right before every Set: the metadata that names this replica and its tenure."""
        if not self.drives(unit):
            raise Fenced(f"replica {self.identity} does not drive {unit} (not its owner, or its lease renew is late)")
        return (("x-telco-replica", self.identity), ("x-telco-tenure", str(self.held[unit])))

    def holder_of(self, unit: str) -> str | None:
        """Who holds the unit's Lease as last listed (None: not known)."""
        if unit in self.held:
            return self.identity
        return self.holders.get(unit)

    def poke(self) -> None:
        """A unit appeared (a new NetworkDevice, a service naming a new device): look now."""
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shard-coordinator")

    async def close(self) -> None:
        """Graceful stop: let go of every unit (stopping first), then release the membership."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._watchdog is not None:
            self._watchdog.cancel()
        async with self._busy:
            leases = await self._unit_leases()
            for unit in list(self.held):
                await self._lose(unit)
                lease = leases.get(unit)
                if lease is not None and lease.holder == self.identity:
                    with contextlib.suppress(Exception):
                        await self.api.replace(lease.name, self._unit_body(unit, lease, holder=""))
            if self._member is not None:
                with contextlib.suppress(Exception):
                    await self.api.delete(self._member.name)

    async def _run(self) -> None:
        await self._renew()
        renewing = asyncio.create_task(self._renew_loop(), name="shard-renew")
        try:
            while True:
                try:
                    async with self._busy:
                        await self.tick(renew=False)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never stop: the fence watchdog stops the devices if this keeps failing
                    log.exception("shard coordinator: tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.timing.renew_interval)
                self._wake.clear()
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _renew_loop(self) -> None:
        """Renews on its own schedule: a long tick (many devices taken at once, each reading its Secrets)
        must never make the renew late and so fence this replica off its own devices."""
        while True:
            await asyncio.sleep(self.timing.renew_interval)
            await self._renew()

    async def tick(self, renew: bool = True) -> None:
        if renew:
            await self._renew()
        listing = [r for b in await self.api.list() if (r := lease_record(b)) is not None]
        now = self.clock()
        self.observer.observe(listing, now)
        members = [r for r in listing if r.role == "member"]
        leases = {r.unit: r for r in listing if r.role == "unit" and r.unit}
        self.holders = {u: r.holder for u, r in leases.items()}
        self.live = live_members(members, self.observer, now) | ({self.identity} if self.fence_valid() else set())
        step = plan(
            self.identity,
            set(self.units()) | {COMMERCE},
            self.live,
            leases,
            lambda r: self.observer.expired(r, self.clock()),
            fenced=not self.fence_valid(),
        )
        for unit in list(self.held):  # held here but the Lease says otherwise (or fenced): stop at once
            if unit not in step.keep and not any(u == unit for u, _ in step.release):
                await self._lose(unit)
        for unit, lease in step.release:
            await self._lose(unit)
            try:
                await self.api.replace(lease.name, self._unit_body(unit, lease, holder=""))
                log.info("shard: released %s (assigned to another replica now)", unit)
            except Conflict:
                pass  # changed meanwhile: judged again at the next tick
        for unit in step.keep:
            if unit not in self.held:  # e.g. after our renew was late and is on time again
                tenure = leases[unit].transitions
                self.held[unit] = tenure
                await self.on_gain(unit, tenure)
        for unit, current in step.acquire:
            if not self.fence_valid():
                break
            tenure = 0 if current is None else current.transitions + 1
            name = unit_lease_name(self.group, unit)
            body = self._unit_body(unit, current, holder=self.identity, transitions=tenure)
            try:
                if current is None:
                    await self.api.create(body)
                else:
                    await self.api.replace(name, body)
            except Conflict:
                continue  # another replica took or changed it first: judged again next tick
            log.info("shard: took %s (tenure %d)", unit, tenure)
            self.held[unit] = tenure
            await self.on_gain(unit, tenure)

    async def _lose(self, unit: str) -> None:
        if self.held.pop(unit, None) is None:
            return
        try:
            await self.on_lose(unit)
        except Exception:
            log.exception("shard: stopping %s failed", unit)

    # -- membership ----------------------------------------------------------------------------------
    async def _renew(self) -> None:
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
        self._renewed_at = sent
        self._arm_watchdog()

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
        log.warning(
            "shard: no membership renew for %.0fs: stopping all %d unit(s) before the Lease can expire",
            self.timing.renew_deadline,
            len(self.held),
        )
        for unit in list(self.held):  # drives() is already False for all of them; this stops the work
            task = asyncio.create_task(self._lose(unit), name=f"shard-fence-{unit}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

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
    "LeaseRecord",
    "Observer",
    "Plan",
    "Timing",
    "assign",
    "lease_record",
    "owner_of",
    "plan",
    "replica_identity",
]

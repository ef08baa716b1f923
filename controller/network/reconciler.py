"""Drive every device to the merged intent of the NetworkServices that use it.

Level-triggered: a device is marked dirty by a service change, a subscription update
(drift, a port going down), a reconnect, a retry or the periodic resync, and its worker then
reconciles it: render each service -> observe the device -> preflight (a service the device
cannot take, e.g. for a missing port, is refused alone) -> merge the others' claims -> plan
against what was observed -> one transactional Set -> read back and verify what it wrote ->
status. After a connect, a resync or a retry the pass compares the whole device (a fresh Get);
otherwise only the services and entries that changed, observed through the subscription's
cache. Bursts of changes collapse into one pass, so a device gets one Set per burst (more only
when the device refuses it: the owners are then tried one at a time so one bad service does not
block the others), and none when nothing differs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import grpc

from .. import metrics, startup
from ..api.common import API_VERSION
from ..api.networkservice import Endpoint as EndpointSpec
from ..api.networkservice import NetworkServiceSpec
from ..conditions import Cond, is_true, merge_conditions
from ..gnmi.client import GnmiError
from ..intent import (
    Claim,
    DeviceIntent,
    Drift,
    GPath,
    ManagedEntry,
    MergeResult,
    PathElem,
    ServiceKey,
    SetPlan,
    merge,
    observe,
    render,
    rfc7951,
    verify,
)
from ..intent.normalise import build_tree, extract, normalise
from ..intent.ownership import entry_root, from_status, leaf_paths, shared_root, to_status
from ..intent.render import uses_legacy_vlan, with_legacy_vlan
from ..kube import FINALIZER, Conflict, Kube, NotFound, Ref
from ..settings import Settings
from ..sharding import COMMERCE, Fenced
from ..statuswriter import StatusWriter, shared_value
from ..times import parse_rfc3339
from ..workqueue import WorkQueue
from .devicepass import DevicePass, Member, applied_in_status, device_pass, restricted
from .devicepass import precedence as claim_precedence
from .outcome import EndpointOutcome, Phase, ServiceView, ready_history, service_status
from .session import DeviceSession

log = logging.getLogger(__name__)
Endpoint = tuple[str, str, int]  # device, port, vlan
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(slots=True)
class ServiceRecord:
    """What the controller knows of one NetworkService, from its latest watch event (one per service:
    slotted, with the render made once per spec and kept)."""

    key: ServiceKey
    uid: str
    generation: int
    created: str
    resource_version: str
    spec: NetworkServiceSpec | None
    invalid: str | None
    deleting: bool
    finalizers: list[str]
    status: dict[str, Any]
    metered: bool = False  # labelled usage-priced: the replicas driving its devices publish its counters
    _endpoints: list[Endpoint] = field(init=False, repr=False, compare=False, default_factory=list)
    _devices: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _rendered: tuple[ManagedEntry, ...] | None = field(init=False, repr=False, compare=False, default=None)
    _created_at: dt.datetime | None = field(init=False, repr=False, compare=False, default=None)
    _ref: Ref | None = field(init=False, repr=False, compare=False, default=None)

    @property
    def created_at(self) -> dt.datetime:
        if self._created_at is None:  # parsed once: every pass of its device orders the services by it
            self._created_at = _created_time(self.created) if self.created else EPOCH
        return self._created_at

    @property
    def ref(self) -> Ref:
        if self._ref is None:  # made once: the status writer's maps then hold this one object as their key
            self._ref = Ref("networkservices", self.key.name, self.key.namespace)
        return self._ref

    @property
    def body(self) -> dict[str, Any]:
        """What Events about the service and its finalizer release read of it (kube.event, set_finalizers),
        made when asked from the record's own fields: kept per service, it was a copy of them."""
        metadata: dict[str, Any] = {"name": self.key.name, "namespace": self.key.namespace, "uid": self.uid}
        metadata.update(resourceVersion=self.resource_version, generation=self.generation)
        metadata["finalizers"] = list(self.finalizers)
        return {"apiVersion": API_VERSION, "kind": "NetworkService", "metadata": metadata}

    def __post_init__(self) -> None:
        # Computed once: reconcile passes ask for these for every member service.
        self._endpoints = [(e.device, e.port, e.vlanId) for e in self.spec.endpoints] if self.spec else []
        self._devices = _shared_set(frozenset(e[0] for e in self._endpoints))

    @property
    def rendered(self) -> tuple[ManagedEntry, ...]:
        if self._rendered is None:
            self._rendered = tuple(render(self.key, self.spec)) if self.spec else ()
        return self._rendered

    def keep_render(self, old: ServiceRecord) -> None:
        """Use `old`'s render: the same spec (or, while this one is unusable, what the devices still hold)."""
        self._rendered = old.rendered

    def endpoints(self) -> list[Endpoint]:
        return self._endpoints

    def devices(self) -> frozenset[str]:
        return self._devices

    def same_intent(self, other: ServiceRecord) -> bool:
        """Whether `other` asks the devices for the same thing (e.g. only its status or labels differ)."""
        return (
            self.uid == other.uid
            and self.generation == other.generation
            and self.deleting == other.deleting
            and self.spec == other.spec
            and self.invalid == other.invalid
        )

    def applied_elsewhere(self) -> list[Endpoint]:
        """Endpoints the stored status says are configured but the spec no longer names: what an earlier
        controller run applied for a spec that changed while nobody was watching."""
        current = set(self._endpoints)
        found = []
        for e in self.status.get("endpoints", []) or []:
            try:
                endpoint = (str(e["device"]), str(e["port"]), int(e["vlanId"]))
            except (KeyError, TypeError, ValueError):
                continue
            if e.get("applied") and endpoint not in current:
                found.append(endpoint)
        return found


@lru_cache(maxsize=4096)
def _created_time(text: str) -> dt.datetime:
    """One object per creation second: the services of one burst share theirs."""
    return parse_rfc3339(text, "metadata.creationTimestamp")


_SETS: dict[frozenset[Any], frozenset[Any]] = {}
_T = TypeVar("_T")


def _shared_set(members: frozenset[_T]) -> frozenset[_T]:
    """The one frozenset of these members (most services use one device; the empty set is no singleton
    either: each cost 216 bytes). Sets no service uses stay until the table is full, then it starts again."""
    if len(_SETS) > 65536:
        _SETS.clear()
    return _SETS.setdefault(members, members)


class DeviceFacts(Protocol):
    """What the controller knows of a NetworkDevice object (None: no such object seen)."""

    config_error: str | None


@dataclass
class DeviceStats:
    sets: int = 0
    set_ops: int = 0
    gets: int = 0
    drift_repairs: int = 0
    reconciles: int = 0
    failures: int = 0


@dataclass
class NetworkReconciler:
    kube: Kube
    writer: StatusWriter
    settings: Settings
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    services: dict[ServiceKey, ServiceRecord] = field(default_factory=dict)
    sessions: dict[str, DeviceSession] = field(default_factory=dict)
    stats: dict[str, DeviceStats] = field(default_factory=lambda: defaultdict(DeviceStats))
    on_service_status: Callable[[ServiceRecord, dict[str, Any]], None] | None = None
    on_device_pass: Callable[[str], None] | None = None
    # The NetworkDevice object behind a device name, as the controller last saw it (None: not seen).
    device_facts: Callable[[str], DeviceFacts | None] = lambda name: None
    _outcomes: dict[ServiceKey, dict[Endpoint, EndpointOutcome]] = field(default_factory=lambda: defaultdict(dict))
    _plans: dict[ServiceKey, dict[str, list[dict[str, Any]]]] = field(default_factory=lambda: defaultdict(dict))
    # Devices verified once, per service: shared sets (`_shared_set`), replaced, never changed in place.
    _applied: dict[ServiceKey, frozenset[str]] = field(default_factory=dict)
    _torn_down: dict[ServiceKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    # One pass per device at a time; marks during a pass coalesce into one more, after the debounce.
    _queue: WorkQueue[str] = field(init=False)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _releasing: set[ServiceKey] = field(default_factory=set)
    _by_device: dict[str, set[ServiceKey]] = field(default_factory=lambda: defaultdict(set))
    # Leaves services owned on a device that their current spec may no longer need, until a pass removes them.
    _retired: dict[str, dict[ServiceKey, set[GPath]]] = field(default_factory=lambda: defaultdict(dict))
    # Shared entries (VRFs) the controller created, by device: only those are ever removed.
    _created: dict[str, set[GPath]] = field(default_factory=lambda: defaultdict(set))
    # Devices whose Capabilities advertise an openconfig-vlan older than 3.0.0 (the legacy VLAN form).
    _legacy_vlan: dict[str, bool] = field(default_factory=dict)
    # The generation of each service last verified on each device: a difference while a newer spec is
    # being applied is the controller's own change, never drift.
    _settled: dict[ServiceKey, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    # Devices whose NetworkDevice object a GET found missing (cleared when the object appears).
    _gone: set[str] = field(default_factory=set)
    # Incremental passes: a service change or a subscription update re-checks only what it touched.
    _full: set[str] = field(default_factory=set)  # devices whose next pass compares everything
    _scope: dict[str, set[ServiceKey]] = field(default_factory=lambda: defaultdict(set))
    _intents: dict[str, DeviceIntent] = field(default_factory=dict)  # as of the last pass
    _drifts: dict[str, dict[GPath, Drift]] = field(default_factory=dict)  # what differed after it
    _refusals: dict[str, dict[ServiceKey, tuple[str, str]]] = field(default_factory=dict)
    _refused_at: dict[str, dict[ServiceKey, int]] = field(default_factory=dict)  # the generation refused
    _removed: dict[str, set[GPath]] = field(default_factory=lambda: defaultdict(set))  # our own deletes
    _merged: dict[str, tuple[tuple[Any, ...], MergeResult]] = field(default_factory=dict)
    _looking_up: set[str] = field(default_factory=set)
    # Sharding (controller/sharding.py): the devices this replica drives (all, unsharded); a service's
    # status is written by the replica driving its first endpoint's device (`home_unit`), the others
    # report their endpoints under status.shards, which that writer reads.
    drives: Callable[[str], bool] = lambda device: True
    identity: str = ""
    # The replica that holds a device's Lease (None: unknown): a report by anyone else is ignored.
    holder_of: Callable[[str], str | None] = lambda device: None
    _home: dict[ServiceKey, bool] = field(default_factory=dict)
    # Devices taken over, until their first Set: when, and whether a pass found the session synced (the
    # failover's log of where a taken device waits, docs/sharding.md).
    _adopted: dict[str, tuple[float, bool]] = field(default_factory=dict)
    # status.owned of a service on a device it is applied to, as last built, with what it was built from
    # (the render, the legacy VLAN form, the shared entries the controller created there): a publish then
    # costs no re-normalising, and the written status holds this same object.
    _owned_items: dict[tuple[ServiceKey, str], tuple[tuple[Any, ...], dict[str, Any] | None]] = field(
        default_factory=dict
    )

    # -- inputs ---------------------------------------------------------------------------
    def upsert_service(self, record: ServiceRecord) -> None:
        old = self.services.get(record.key)
        self.services[record.key] = record
        if old is not None and old.same_intent(record):
            # Typically the watch echo of our own status write: nothing for the devices to do.
            if old.spec is not None:
                record.keep_render(old)  # the same spec: keep its render
            home = self.is_home(record)
            forged = self.writer.forgery(record.ref, record.resource_version, record.status) if home else []
            if forged:  # someone else wrote status: recompute it from our own outcomes, rewrite it
                self.writer.report_forgery({**record.body, "status": record.status}, forged)
                self.writer.distrust(record.ref, record.status)
                self.publish(record)
            elif home and old.status.get("shards") != record.status.get("shards"):
                self.publish(record)  # another replica reported its endpoints
            if record.deleting:
                self._maybe_finish_teardown(record)
            return
        self._remember_stale(old, record)
        for device in old.devices() if old else ():
            self._by_device[device].discard(record.key)
        for device in record.devices():
            self._by_device[device].add(record.key)
        if record.key in self._applied:
            self._applied[record.key] = _shared_set(self._applied[record.key] & record.devices())
        touched = record.devices() | (old.devices() if old else set())
        self._outcomes[record.key] = {
            ep: o for ep, o in self._outcomes[record.key].items() if ep in set(record.endpoints())
        }
        if record.invalid is not None:
            self.publish(record)
        for device in touched:
            self.mark_service(device, record.key)
        if record.deleting:
            self._maybe_finish_teardown(record)

    def _remember_stale(self, old: ServiceRecord | None, record: ServiceRecord) -> None:
        """Keep the leaves the previous spec owned that the new one may not need, for the devices to drop."""
        if record.spec is None:
            # An unusable spec changes nothing on the devices until it is fixed: what they hold is still
            # the last usable render, which the fixed spec is compared with.
            if old is not None and old.uid == record.uid:
                record.keep_render(old)
            return
        if old is not None and old.uid == record.uid:
            before = {d: self.owned_leaves(old, d) for d in old.devices()}
        elif old is None:
            before = self._owned_from_status(record)
        else:
            return
        for device, leaves in before.items():
            gone = leaves - self.owned_leaves(record, device)
            if gone:
                self._retired[device].setdefault(record.key, set()).update(gone)

    def _owned_from_status(self, record: ServiceRecord) -> dict[str, set[GPath]]:
        """First sight (e.g. after a restart): what the stored status says the controller owns for the
        service, and which shared entries it created. A status from before ownership was recorded names
        only endpoints: what the spec would have rendered for those it dropped."""
        if "owned" not in record.status:
            return {
                d: {leaf for e in _render_endpoint(record, ep) if not e.shared for leaf in _entry_leaves(e)}
                for ep in record.applied_elsewhere()
                for d in (ep[0],)
            }
        owned = from_status(record.status.get("owned"))
        for device, leaves in owned.items():
            self._created[device].update(r for leaf in leaves if (r := shared_root(leaf)) is not None)
        return owned

    def owned_leaves(self, record: ServiceRecord, device: str) -> set[GPath]:
        """The leaves the service's current render writes on `device`: a shared entry's only when the
        controller created it there."""
        created = self._created.get(device, set())
        return {
            leaf
            for e in self._device_entries(record, device)
            if not e.shared or e.path in created
            for leaf in _entry_leaves(e)
        }

    def _device_entries(self, record: ServiceRecord, device: str) -> tuple[ManagedEntry, ...]:
        """The service's render for `device`, in the form the device's models take."""
        mine = tuple(e for e in record.rendered if e.device == device)
        return with_legacy_vlan(mine) if self._legacy_vlan.get(device) else mine

    def device_seen(self, device: str) -> None:
        """The NetworkDevice object exists (a watch event)."""
        self._gone.discard(device)

    def device_removed(self, device: str) -> None:
        """The NetworkDevice object was deleted (a watch event): deletions on it need no cleanup."""
        self._gone.add(device)

    def remove_service(self, key: ServiceKey) -> None:
        record = self.services.pop(key, None)
        for device in record.devices() if record else ():
            self._by_device[device].discard(key)
            self._owned_items.pop((key, device), None)
        self._outcomes.pop(key, None)
        self._plans.pop(key, None)
        self._torn_down.pop(key, None)
        self._applied.pop(key, None)
        self._settled.pop(key, None)
        if record is not None:
            self.writer.forget(record.ref)

    def attach_session(self, session: DeviceSession) -> None:
        self.sessions[session.name] = session
        self.mark_dirty(session.name)

    async def detach_session(self, name: str) -> None:
        session = self.take_session(name)
        if session is not None:
            await session.close()

    def take_session(self, name: str) -> DeviceSession | None:
        """Remove the device's session without closing it (the caller closes it): replacing a session
        this way does not yield between taking the old one and attaching the new."""
        session = self.sessions.pop(name, None)
        self.mark_dirty(name)
        return session

    def mark_dirty(self, device: str) -> None:
        """Compare the whole device with its intent at the next pass (a fresh Get)."""
        self._full.add(device)
        self._wake(device)

    def mark_service(self, device: str, key: ServiceKey) -> None:
        """Re-check one service's entries on `device` (and what else the pass finds changed)."""
        self._scope[device].add(key)
        self._wake(device)

    def mark_changed(self, device: str) -> None:
        """The subscription reported changes: re-check the entries they touched."""
        self._wake(device)

    def _wake(self, device: str) -> None:
        if not self.drives(device):
            return  # another replica drives it
        self._queue.mark(device)

    def resync(self, skip: Collection[str] = ()) -> None:
        for device in set(self.sessions) | {d for r in self.services.values() for d in r.devices()}:
            if device not in skip and self.drives(device):
                self.mark_dirty(device)

    async def close(self) -> None:
        await self._queue.close()
        # Finalizer releases, device look-ups and Events still under way: a later run redoes what matters.
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)

    def named_devices(self) -> set[str]:
        """Every device some service names (a shard unit even without a NetworkDevice object)."""
        return {d for d, keys in self._by_device.items() if keys}

    async def drop_device(self, device: str) -> None:
        """Stop driving `device` (another replica takes it): end its worker and session and forget what
        was learnt from it. Returns once nothing more is sent to it."""
        await self._queue.cancel(device)
        session = self.sessions.pop(device, None)
        if session is not None:
            await session.close()
        for cache in (self._intents, self._drifts, self._refusals, self._refused_at, self._merged, self._scope):
            cache.pop(device, None)
        self._full.discard(device)
        self._adopted.pop(device, None)
        self._removed.pop(device, None)
        self._created.pop(device, None)
        self._retired.pop(device, None)
        for key in self._by_device.get(device, ()):
            outcomes = self._outcomes.get(key, {})
            for ep in [ep for ep in outcomes if ep[0] == device]:
                del outcomes[ep]
            if device in self._applied.get(key, ()):
                self._applied[key] = _shared_set(self._applied[key] - {device})
            self._settled.get(key, {}).pop(device, None)
            self._torn_down.get(key, set()).discard(device)

    async def suspend_device(self, device: str) -> None:
        """The shard fence lapsed: end the device's pass under way and send nothing more, but keep its
        session and what was learnt (its Lease may still be ours). Marks while suspended are dropped
        (drives() is False); `resume_device` makes up for them with a whole-device pass. A pass cancelled
        part-way is like one that failed part-way: the next one compares the whole device."""
        await self._queue.cancel(device)
        self._full.add(device)

    def resume_device(self, device: str) -> None:
        """Driven again at the same tenure after a suspension: compare the whole device (a fresh Get)."""
        self.mark_dirty(device)

    def adopt_device(self, device: str) -> None:
        """Start driving `device`: what the controller created and still has to remove there comes from
        the services' stored status (written by the previous owner), then a whole-device pass."""
        for record in self.members(device):
            owned = self._reported_owned(record, device) or from_status(record.status.get("owned")).get(device, set())
            self._created[device].update(r for leaf in owned if (r := shared_root(leaf)) is not None)
            if record.spec is not None:
                gone = owned - self.owned_leaves(record, device)
                if gone:
                    self._retired[device].setdefault(record.key, set()).update(gone)
        self._adopted[device] = (time.monotonic(), False)
        self.mark_dirty(device)

    # -- the per-device loop --------------------------------------------------------------
    def __post_init__(self) -> None:
        self._queue = WorkQueue(
            "NetworkDevice",
            self._pass,
            concurrency=None,
            retry_initial=self.settings.retry_initial_seconds,
            retry_max=self.settings.retry_max_seconds,
            debounce=self.settings.debounce_seconds,
            gated=False,
            reset_on_success=False,  # a pass that finds the device unreachable returns normally
            after_run=self._after_pass,
        )

    async def _pass(self, device: str) -> None:
        try:
            await self._reconcile(device)
            startup.mark("first device pass")
        except Fenced as exc:  # the shard coordinator is taking the device away: send nothing more
            log.info("device %s: %s", device, exc)
        except Exception:
            self._full.add(device)  # the retry compares the whole device (the queue logs and schedules it)
            raise

    def _after_pass(self, device: str) -> None:
        if self.on_device_pass is not None:
            self.on_device_pass(device)

    def _schedule_retry(self, device: str) -> None:
        self._full.add(device)
        self._queue.backoff(device)

    def members(self, device: str) -> list[ServiceRecord]:
        return [self.services[k] for k in self._by_device.get(device, ()) if k in self.services]

    async def _reconcile(self, device: str) -> None:
        stats = self.stats[device]
        stats.reconciles += 1
        members = self.members(device)
        session = self.sessions.get(device)
        if session is None or not session.connected:
            self._device_unavailable(device, members, session)
            return
        self._gone.discard(device)
        if not session.synced:
            # The subscription's initial state (e.g. oper-status) is still arriving; a pass now would
            # publish statuses lacking it. Its sync_response marks the device dirty again.
            return
        adopted = self._adopted.get(device)
        if adopted is not None and not adopted[1]:
            self._adopted[device] = (adopted[0], True)
            log.info(
                "device %s: first pass over a synced session since it was taken, %.2fs after, %d services",
                device,
                time.monotonic() - adopted[0],
                len(members),
            )
        live = [r for r in members if not r.deleting and r.spec is not None]
        leaving = [r for r in members if r.deleting and device not in self._torn_down[r.key]]
        self._legacy_vlan[device] = uses_legacy_vlan(session.capabilities.models if session.capabilities else ())
        rendered = {r.key: self._device_entries(r, device) for r in live}
        applying = [r for r in live if r.spec is not None and not r.spec.dryRun]

        retired = {k: set(leaves) for k, leaves in self._retired.get(device, {}).items()}
        for r in leaving:
            retired.setdefault(r.key, set()).update(self.owned_leaves(r, device))
        retired_roots = {root for leaves in retired.values() for leaf in leaves if (root := entry_root(leaf))}
        created = self._created[device]
        scope = self._take_scope(device, session)
        refused: dict[ServiceKey, tuple[str, str]] = {}
        try:
            if scope is None:
                tree = observe(await session.get_config())
                stats.gets += 1
            else:
                # From the subscription's cache: only the entries in scope, the ports they hang off
                # and what is being removed. Entries outside it were found as intended before.
                wanted = {e.path for k in scope if k in rendered for e in rendered[k]}
                ports = {port for p in wanted if (port := _port_config(p)) is not None}
                snapshot = session.snapshot(sorted(wanted | ports | retired_roots, key=GPath.sort_key))
                tree = observe(snapshot)
                unseen = sorted(p for p in ports if tree.extract(p) is None)
                if unseen:
                    # The subscription never reported these ports: ask the device rather than call them missing.
                    found = await self._read_ports(session, unseen)
                    if found:
                        tree = observe(build_tree(found, snapshot))
                # A refusal stands until the next whole-device pass (a reconnect, a resync, a retry) or a new
                # spec: the same Set would only be refused again. A conflict is re-judged when in scope.
                refused = {
                    k: why
                    for k, why in self._refusals.get(device, {}).items()
                    if k in rendered
                    and (
                        (k not in scope and why[0] != "ConflictingClaim")
                        or (why[0] == "DeviceRejected" and self._refused_generation(device, k))
                    )
                }
        except GnmiError as exc:
            self._transient(device, members, exc)
            return

        # Problems only the device reveals (a port it lacks) refuse that service alone, before merging,
        # so one bad service never blocks the batched Set of the others.
        members_now = [
            Member(
                r.key,
                self._precedence(r, device),
                rendered[r.key],
                dry_run=bool(r.spec and r.spec.dryRun),
                # A `report` service whose spec was verified keeps its drift: reported, not reverted.
                report_only=bool(r.spec and r.spec.driftPolicy == "report") and self._is_settled(r, device),
                # While a new spec (a suspend, a resume, a changed order) is being applied, the
                # difference is the controller's own change, not drift.
                settled=self._is_settled(r, device),
            )
            for r in live
        ]

        def run_pass(refusals: dict[ServiceKey, tuple[str, str]]) -> DevicePass:
            return device_pass(
                device,
                tree,
                members_now,
                retired=retired,
                created=created,
                refused=refusals,
                scope=scope,
                merge_claims=lambda claims: self._merge(device, claims, applying),
            )

        result = run_pass(refused)
        refused = dict(result.refused)
        intent, checking = result.intent, result.assessment
        # What differs now, within the scope, and as found before outside it; the read-back updates it.
        scoped = intent.entries if scope is None else restricted(intent, scope).entries
        earlier = self._drifts.get(device, {}) if scope is not None else {}
        drifts = list(checking.drifts) + [
            d for path, d in earlier.items() if path in intent.entries and path not in scoped
        ]
        report_only = {m.key for m in members_now if m.report_only}
        drift_before = dict(result.reverted)
        to_send = result.send
        for key, dry_plan in result.dry_runs.items():
            self._plans[key][device] = dry_plan.to_json()

        if not to_send.is_empty:
            # Read back only the entries the Set writes into: the others were just found as intended.
            read_back: list[GPath] | None = to_send.entries_written(intent)
            try:
                await self._send(session, to_send)
            except GnmiError as exc:
                if exc.transient:
                    self._transient(device, members, exc)
                    return
                rejected = await self._isolate(session, to_send, exc)
                refused.update(rejected)
                read_back = None  # the intent changed under the plan: read back everything
                again_pass = run_pass(refused)
                intent, rest = again_pass.intent, again_pass.send
                if not rest.is_empty:
                    try:
                        await self._send(session, rest)
                    except GnmiError as again:
                        self._transient(device, members, again)
                        return
            for owner in to_send.owners - set(refused):
                if owner in drift_before:
                    self._drift_reverted(device, owner, drift_before[owner])
            self._removed[device].update(op.path for op in to_send.deletes)
            self._track_created(device, intent, to_send)
            try:
                drifts = await self._read_back(session, intent, drifts, read_back)
            except GnmiError as exc:
                self._transient(device, members, exc)
                return
            # The oper-status of new subinterfaces follows on the subscription within milliseconds.
            await session.wait_for_leaves(
                [
                    oper_status_path(port, vlan)
                    for r in applying
                    if r.key not in refused
                    for (d, port, vlan) in r.endpoints()
                    if d == device
                ],
                timeout=0.5,
            )
        self._queue.reset_backoff(device)
        # What the device held for earlier specs is gone now (or was never there, or is not ours alone).
        pending = self._retired.get(device, {})
        for key in retired:
            pending.pop(key, None)
        created.intersection_update(intent.entries)
        self._intents[device] = intent
        self._drifts[device] = {d.path: d for d in drifts}
        self._refusals[device] = dict(refused)
        self._refused_at[device] = {k: self.services[k].generation for k in refused if k in self.services}

        remaining = _drift_by_owner(drifts)
        for r in leaving:
            self._torn_down[r.key].add(device)
            self._maybe_finish_teardown(r)
        for r in live:
            if scope is not None and r.key not in scope:
                continue  # nothing it depends on changed: its status stands
            for ep in r.endpoints():
                if ep[0] != device:
                    continue
                outcome = self._endpoint_outcome(
                    r, ep, session, refused.get(r.key), remaining.get(r.key), r.key in report_only
                )
                self._outcomes[r.key][ep] = outcome
                if outcome.phase in (Phase.APPLIED, Phase.DISABLED):
                    applied = self._applied.get(r.key, frozenset())
                    if device not in applied:
                        self._applied[r.key] = _shared_set(applied | {device})
                    self._settled[r.key][device] = r.generation
            if r.key in report_only and r.key in remaining and not _had_drift(self.writer.latest(r.ref, r.status)):
                metrics.DRIFT_EVENTS.labels(device, "reported").inc()
                self._spawn(
                    self.kube.event(
                        r.body,
                        "Warning",
                        "DriftDetected",
                        f"{device}: {remaining[r.key]} (policy report: not reverted)",
                    )
                )
            self.publish(r)

    def _merge(self, device: str, claims: list[Claim], records: list[ServiceRecord]) -> MergeResult:
        """merge(), reused while the same versions of the same services claim the device: most passes
        (our own Set's echo, oper-status, drift) change no claim, and merging is linear in the device."""
        versions = {r.key: (r.uid, r.generation) for r in records}
        signature = tuple((c.key, c.created, versions.get(c.key)) for c in claims)
        cached = self._merged.get(device)
        if cached is not None and cached[0] == signature:
            return cached[1]
        result = merge(device, claims)
        self._merged[device] = (signature, result)
        return result

    def _take_scope(self, device: str, session: DeviceSession) -> set[ServiceKey] | None:
        """The services this pass re-checks, or None for all of them (a whole-device comparison).

        Everything after a (re)connect, a resync, a retry, or a change the controller cannot place;
        otherwise the services changed since the last pass and the owners of the entries the
        subscription reported changed (our own Set's echo included: cheap, from the cache)."""
        scope = self._scope.pop(device, set())
        changed = session.take_changed_paths()
        full = device in self._full or device not in self._intents
        self._full.discard(device)
        if full:
            self._removed.pop(device, None)
            return None
        entries = self._intents[device].entries
        removed = self._removed.get(device, set())
        for path in changed:
            owner = next(
                (entries[p].owners for n in range(len(path.elems), 0, -1) if (p := GPath(path.elems[:n])) in entries),
                None,
            )
            if owner is not None:
                scope.update(owner)
            elif not any(r.is_prefix_of(path) for r in removed) and not _is_port_state(path):
                return None  # e.g. a port deleted under our entries: compare everything
        return scope

    async def _read_back(
        self, session: DeviceSession, intent: DeviceIntent, before: list[Drift], paths: list[GPath] | None
    ) -> list[Drift]:
        """What still differs after a Set: the entries at `paths` read again from the device (all of them
        when None), the others as they were before it."""
        stats = self.stats[session.name]
        if paths is not None:
            if not paths:
                return before  # the Set only removed what no service needs any more
            try:
                tree = observe(await session.get_entries(paths))
                stats.gets += 1
                written = set(paths)
                untouched = [d for d in before if d.path not in written]
                created = self._created[session.name]
                return sorted([*untouched, *verify(intent, tree, only=paths, created=created)], key=lambda d: d.path)
            except GnmiError as exc:
                if exc.code is not grpc.StatusCode.NOT_FOUND:
                    raise
                # An entry the Set should have written is missing: compare the whole device.
        tree = observe(await session.get_config())
        stats.gets += 1
        return verify(intent, tree, created=self._created[session.name])

    def _refused_generation(self, device: str, key: ServiceKey) -> bool:
        """Whether the service's current generation is the one the device refused."""
        record = self.services.get(key)
        return record is not None and self._refused_at.get(device, {}).get(key) == record.generation

    async def _read_ports(self, session: DeviceSession, ports: list[GPath]) -> list[tuple[GPath, Any]]:
        """The config of each port the device has, one Get per port (a Get of several answers NOT_FOUND
        for all when one is missing)."""
        found: list[tuple[GPath, Any]] = []
        for port in ports:
            try:
                value = extract(await session.get_entries([port]), port)
                if value is not None:
                    found.append((port, value))
            except GnmiError as exc:
                if exc.code is not grpc.StatusCode.NOT_FOUND:
                    raise
            self.stats[session.name].gets += 1
        return found

    def _is_settled(self, record: ServiceRecord, device: str) -> bool:
        """Whether the service's current spec was verified on `device` (by this run, or by the one whose
        status says so): only then is a difference drift."""
        known = self._settled.get(record.key, {}).get(device)
        if known is not None:
            return known == record.generation
        return record.status.get("observedGeneration") == record.generation and applied_in_status(record.status, device)

    def _track_created(self, device: str, intent: DeviceIntent, sent: SetPlan) -> None:
        """A shared entry written whole was absent: the controller created it, and may remove it later."""
        for op in sent.updates:
            if op.path in intent.entries and shared_root(op.path) == op.path:
                self._created[device].add(op.path)

    def _precedence(self, record: ServiceRecord, device: str) -> dt.datetime:
        """When the service's claim on `device` counts from (see devicepass.precedence)."""
        applied = device in self._applied.get(record.key, ()) or applied_in_status(record.status, device)
        return claim_precedence(record.created_at, applied)

    def _drift_reverted(self, device: str, owner: ServiceKey, what: str) -> None:
        self.stats[device].drift_repairs += 1
        metrics.DRIFT_EVENTS.labels(device, "reverted").inc()
        record = self.services.get(owner)
        if record is not None:
            self._spawn(self.kube.event(record.body, "Normal", "DriftReverted", f"{device}: {what} (put back)"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, session: DeviceSession, set_plan: SetPlan) -> None:
        adopted = self._adopted.pop(session.name, None)
        if adopted is not None:
            log.info(
                "device %s: first Set since it was taken, %.2fs after (%d operations)",
                session.name,
                time.monotonic() - adopted[0],
                len(set_plan.operations),
            )
        stats = self.stats[session.name]
        stats.sets += 1
        stats.set_ops += len(set_plan.operations)
        ietf = session.encoding == rfc7951.JSON_IETF
        await session.client.set(
            deletes=[op.path.to_proto() for op in set_plan.deletes],
            replaces=[
                (op.path.to_proto(), rfc7951.encode(op.value, op.path) if ietf else op.value)
                for op in set_plan.replaces
            ],
            updates=[
                (op.path.to_proto(), rfc7951.encode(op.value, op.path) if ietf else op.value) for op in set_plan.updates
            ],
            encoding=session.encoding,
        )

    async def _isolate(
        self, session: DeviceSession, rejected: SetPlan, exc: GnmiError
    ) -> dict[ServiceKey, tuple[str, str]]:
        """A batched Set was refused: find whose operations the device refuses, one owner at a time,
        so one bad service cannot block the others on the device. Owners that pass are applied here."""
        owners = sorted(rejected.owners)
        if len(owners) <= 1:
            return {o: ("DeviceRejected", exc.message) for o in owners}
        failed: dict[ServiceKey, tuple[str, str]] = {}
        for owner in owners:
            try:
                await self._send(session, rejected.for_owner(owner))
            except GnmiError as single:
                if single.transient:
                    raise
                failed[owner] = ("DeviceRejected", single.message)
        return failed

    def _endpoint_outcome(
        self,
        record: ServiceRecord,
        ep: Endpoint,
        session: DeviceSession,
        refused: tuple[str, str] | None,
        drift: str | None,
        report_only: bool,
    ) -> EndpointOutcome:
        device, port, vlan = ep
        if refused is not None:
            return EndpointOutcome(device, port, vlan, Phase.FAILED, refused[0], refused[1])
        assert record.spec is not None
        if record.spec.dryRun:
            return EndpointOutcome(device, port, vlan, Phase.DRY_RUN, "DryRun")
        if drift and not report_only:
            return EndpointOutcome(
                device,
                port,
                vlan,
                Phase.RETRYING,
                "VerifyFailed",
                f"the device does not hold the intent after the Set: {drift}",
            )
        oper = session.leaves.get(oper_status_path(port, vlan))
        oper_up = None if oper is None else str(oper).upper() == "UP"
        phase = Phase.APPLIED if record.spec.adminState == "enabled" else Phase.DISABLED
        return EndpointOutcome(
            device,
            port,
            vlan,
            phase,
            "Applied",
            oper_up=oper_up,
            oper_required=session.target.reports_oper_status,
            drift=drift if report_only else None,
        )

    def _device_unavailable(self, device: str, members: list[ServiceRecord], session: DeviceSession | None) -> None:
        """No usable session. Only a NetworkDevice known to be gone releases deletions without cleanup;
        anything else (a Secret being rotated, an API outage, the startup order of watch events) waits."""
        facts = self.device_facts(device)
        if session is not None:
            if session.error is None:
                return  # the first connection is still being made: its outcome marks the device dirty
            reason = "DeviceUnauthenticated" if session.error.unauthenticated else "DeviceUnreachable"
            message = f"{device}: {session.error.message}"
        elif facts is not None and facts.config_error is not None:
            reason, message = "DeviceMisconfigured", f"NetworkDevice {device} cannot be used: {facts.config_error}"
        elif facts is not None:
            return  # its session is being set up
        elif device not in self._gone:
            # Not seen (yet): at startup services often arrive before their device. Ask the API once;
            # until it answers, keep what the services say now rather than flap them.
            self._look_up(device)
            return
        else:
            reason, message = "DeviceNotFound", f"NetworkDevice {device} does not exist"
        for r in members:
            if r.deleting:
                if reason == "DeviceNotFound":
                    # Nothing to remove from a device that no longer exists.
                    self._torn_down[r.key].add(device)
                    self._maybe_finish_teardown(r)
                continue
            for ep in r.endpoints():
                if ep[0] == device:
                    self._outcomes[r.key][ep] = EndpointOutcome(*ep, Phase.RETRYING, reason, message)
            self.publish(r)
        self.publish_teardown_waits(members, reason, message)

    def _look_up(self, device: str) -> None:
        if device in self._looking_up:
            return
        self._looking_up.add(device)

        async def look_up() -> None:
            try:
                await self.kube.get(Ref("networkdevices", device))
            except NotFound:
                self._gone.add(device)
                self.mark_dirty(device)
            except Exception as exc:  # the API is unreachable: ask again later
                log.info("cannot tell whether NetworkDevice %s exists: %s", device, exc)
                self._schedule_retry(device)
            else:
                # It exists: its watch event brings the session. Should the event never come, re-ask.
                self._schedule_retry(device)
            finally:
                self._looking_up.discard(device)

        self._spawn(look_up())

    def _transient(self, device: str, members: list[ServiceRecord], exc: GnmiError) -> None:
        self.stats[device].failures += 1
        for r in members:
            if r.deleting:
                continue
            for ep in r.endpoints():
                if ep[0] == device:
                    self._outcomes[r.key][ep] = EndpointOutcome(*ep, Phase.RETRYING, "DeviceUnavailable", str(exc))
            self.publish(r)
        self.publish_teardown_waits(members, "DeviceUnavailable", str(exc))
        self._schedule_retry(device)

    def publish_teardown_waits(self, members: list[ServiceRecord], reason: str, message: str) -> None:
        now = self.clock()
        for r in members:
            if r.deleting and self.is_home(r):
                current = self.writer.latest(r.ref, r.status)
                conds = merge_conditions(
                    current.get("conditions"),
                    [
                        Cond("Ready", "False", "Terminating", f"waiting to remove the configuration: {message}"),
                        Cond("Progressing", "True", reason, message),
                    ],
                    r.generation,
                    now,
                )
                status = {"conditions": conds, "state": "reserved", "operatingStatus": "stopping"}
                self.writer.submit(r.ref, {**status, **ready_history(current, conds)}, current)

    # -- outputs ---------------------------------------------------------------------------
    def home_unit(self, record: ServiceRecord) -> str:
        """The shard unit whose replica writes the service's status: its first endpoint's device (the
        commerce unit for a spec without endpoints, e.g. an invalid one)."""
        endpoints = record.endpoints()
        return endpoints[0][0] if endpoints else COMMERCE

    def is_home(self, record: ServiceRecord) -> bool:
        home = self.drives(self.home_unit(record))
        if self._home.get(record.key) is not None and self._home[record.key] != home:
            self.writer.forget(record.ref)  # the other role's last write says nothing about this one
        self._home[record.key] = home
        return home

    def _report_of(self, record: ServiceRecord, device: str) -> dict[str, Any] | None:
        """The report for `device` in the stored status, if its replica still holds the device and it is
        about the current generation."""
        report = (record.status.get("shards") or {}).get(device)
        if not isinstance(report, dict) or report.get("observedGeneration") != record.generation:
            return None
        holder = self.holder_of(device)
        if holder is not None and report.get("replica") != holder:
            return None
        return report

    def _reported_owned(self, record: ServiceRecord, device: str) -> set[GPath]:
        report = (record.status.get("shards") or {}).get(device)
        if not isinstance(report, dict):
            return set()
        return from_status([{"device": device, "entries": report.get("owned") or []}]).get(device, set())

    def _foreign_outcomes(self, record: ServiceRecord) -> dict[Endpoint, EndpointOutcome]:
        found: dict[Endpoint, EndpointOutcome] = {}
        for device in record.devices():
            if self.drives(device) or (report := self._report_of(record, device)) is None:
                continue
            for e in report.get("endpoints") or []:
                try:
                    outcome = EndpointOutcome(
                        device,
                        str(e["port"]),
                        int(e["vlanId"]),
                        Phase(e["phase"]),
                        str(e["reason"]),
                        str(e.get("message") or ""),
                        oper_up=e.get("operUp"),
                        oper_required=bool(e.get("operRequired", True)),
                        drift=e.get("drift"),
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                found[(device, outcome.port, outcome.vlan_id)] = outcome
        return found

    def _report(self, record: ServiceRecord) -> None:
        """This replica drives some of the service's devices but not the first: write what it found
        there under status.shards.<device>, for the replica that writes the rest."""
        reports: dict[str, Any] = {}
        for device in sorted(d for d in record.devices() if self.drives(d)):
            endpoints = []
            for ep in record.endpoints():
                if ep[0] != device:
                    continue
                o = self._outcomes.get(record.key, {}).get(ep) or EndpointOutcome(*ep, Phase.PENDING, "Pending")
                endpoints.append(
                    {
                        "port": o.port,
                        "vlanId": o.vlan_id,
                        "phase": str(o.phase),
                        "reason": o.reason,
                        "message": o.message,
                        "operRequired": o.oper_required,
                        **({"operUp": o.oper_up} if o.oper_up is not None else {}),
                        **({"drift": o.drift} if o.drift else {}),
                    }
                )
            leaves = set(self._retired.get(device, {}).get(record.key, ()))
            if device in self._applied.get(record.key, ()):
                leaves |= self.owned_leaves(record, device)
            owned = to_status({device: leaves})
            reports[device] = {
                "replica": self.identity,
                "observedGeneration": record.generation,
                "endpoints": endpoints,
                "owned": owned[0]["entries"] if owned else [],
                "tornDown": device in self._torn_down.get(record.key, ()),
            }
        if reports:
            stored = {d: r for d, r in (record.status.get("shards") or {}).items() if d in reports}
            self.writer.submit(record.ref, {"shards": reports}, {"shards": stored})

    def publish(self, record: ServiceRecord) -> None:
        if not self.is_home(record):
            self._report(record)
            return
        if record.deleting:
            return
        current = self.writer.latest(record.ref, record.status)
        known = {**self._outcomes[record.key], **self._foreign_outcomes(record)}
        if record.invalid is None and any(ep not in known for ep in record.endpoints()) and _ready_now(record, current):
            # After a restart: another device of this service has not been checked yet. Saying
            # "Pending" meanwhile would flap a working service (and bill it as an outage).
            return
        plans = [op for ops in self._plans.get(record.key, {}).values() for op in ops]
        view = ServiceView(
            generation=record.generation,
            admin_enabled=bool(record.spec and record.spec.adminState == "enabled"),
            dry_run=bool(record.spec and record.spec.dryRun),
            current=current,
            invalid=record.invalid,
            plan=plans,
        )
        outcomes = [known.get(ep) or EndpointOutcome(*ep, Phase.PENDING, "Pending") for ep in record.endpoints()]
        status = service_status(view, outcomes, self.clock())
        status["owned"] = self._owned_status(record, current)
        self.writer.submit(record.ref, status, current)
        if self.on_service_status is not None:
            self.on_service_status(record, status)

    def _owned_status(self, record: ServiceRecord, current: dict[str, Any]) -> list[dict[str, Any]]:
        """`status.owned`: the leaves the controller wrote for the service on each device, and those it
        still has to remove; for a device not reconciled yet in this run, what the stored status said."""
        previous: dict[str, set[GPath]] | None = None
        devices = set(record.devices()) | {d for d, pending in self._retired.items() if record.key in pending}
        owned = current.get("owned")
        stored = (
            [i for i in owned if isinstance(i, dict) and isinstance(i.get("device"), str)]
            if isinstance(owned, list)
            else []
        )
        unreconciled = [i for i in stored if i["device"] not in self._intents]
        if unreconciled or any(d not in self._intents for d in record.devices()):
            # Only devices no pass of this run has reconciled yet are taken from the stored status:
            # parsing all of it on every publish was the largest part of building a status.
            previous = from_status(unreconciled)
            devices |= set(previous)
        out = []
        for device in sorted(devices):
            retired = self._retired.get(device, {}).get(record.key)
            applied = device in self._applied.get(record.key, ())
            if applied and not retired and self.drives(device):
                item = self._owned_item(record, device)  # the common case, cached
                if item is not None:
                    out.append(item)
                continue
            leaves = set(retired or ())
            if applied:
                leaves |= self.owned_leaves(record, device)
            elif device not in self._intents and previous is not None:
                leaves |= previous.get(device, set())
            if not self.drives(device) and self._report_of(record, device) is not None:
                leaves = self._reported_owned(record, device)
            out += to_status({device: leaves})
        return out

    def _owned_item(self, record: ServiceRecord, device: str) -> dict[str, Any] | None:
        """status.owned's item for `device`, where the service is applied and nothing of it is retired:
        its current render's owned leaves, built once per render (and shared entries created there)."""
        created = self._created.get(device, set())
        shared = _shared_set(
            frozenset(e.path for e in record.rendered if e.device == device and e.shared and e.path in created)
        )
        stamp = (record.rendered, self._legacy_vlan.get(device, False), shared)
        cached = self._owned_items.get((record.key, device))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        items = to_status({device: self.owned_leaves(record, device)})
        # Shared (statuswriter.shared_value): its leaf lists are every service's, and the stored status that
        # the write of it leaves, compacted, is then this same object.
        item = shared_value(items[0]) if items else None
        self._owned_items[(record.key, device)] = (stamp, item)
        return item

    def _maybe_finish_teardown(self, record: ServiceRecord) -> None:
        if not self.is_home(record):
            self._report(record)  # says tornDown for the devices done here
            return
        torn_down = self._torn_down[record.key] | {
            d
            for d in record.devices()
            if not self.drives(d) and (report := self._report_of(record, d)) is not None and report.get("tornDown")
        }
        if record.devices() <= torn_down and record.key not in self._releasing:
            self._releasing.add(record.key)
            self._spawn(self._release(record))

    async def _release(self, record: ServiceRecord) -> None:
        """Remove our finalizer now that the devices no longer hold the service (re-read on conflict)."""
        try:
            await self._release_with_retries(record)
        except Exception as exc:  # e.g. the API server is down: try again, the devices are clean already
            delay = min(self.settings.retry_max_seconds, 2.0)
            log.warning("releasing %s failed (%s); retrying in %.0fs", record.ref, exc, delay)
            asyncio.get_running_loop().call_later(delay, self._release_again, record.key)
        finally:
            self._releasing.discard(record.key)

    def _release_again(self, key: ServiceKey) -> None:
        record = self.services.get(key)
        if record is not None and record.deleting:
            self._maybe_finish_teardown(record)

    async def _release_with_retries(self, record: ServiceRecord) -> None:
        body = record.body
        for _ in range(5):
            finalizers = list(body["metadata"].get("finalizers") or [])
            if FINALIZER not in finalizers:
                return
            try:
                await self.kube.set_finalizers(
                    record.ref, [f for f in finalizers if f != FINALIZER], body["metadata"]["resourceVersion"]
                )
                return
            except Conflict:
                try:
                    body = await self.kube.get(record.ref)
                except NotFound:
                    return
            except NotFound:
                return
        log.warning("could not release %s after 5 conflicts; the next event retries", record.ref)


def oper_status_path(port: str, vlan: int) -> GPath:
    return GPath.of(
        "interfaces",
        ("interface", {"name": port}),
        "subinterfaces",
        ("subinterface", {"index": str(vlan)}),
        "state",
        "oper-status",
    )


_CONFIG = PathElem("config")


def _port_config(path: GPath) -> GPath | None:
    """For an entry under a port, the port's config container: whether the port exists."""
    elems = path.elems
    if len(elems) > 2 and elems[0].name == "interfaces" and elems[1].name == "interface":
        return GPath((elems[0], elems[1], _CONFIG))
    return None


def _is_port_state(path: GPath) -> bool:
    """A port's own operational state (not config, not one of our subinterfaces): nothing to re-check;
    the subinterfaces' own oper-status lies inside their entries."""
    names = [e.name for e in path.elems]
    return names[:2] == ["interfaces", "interface"] and "subinterfaces" not in names and "state" in names


def _entry_leaves(entry: ManagedEntry) -> list[GPath]:
    return list(leaf_paths(entry.path, normalise(entry.value, entry.path)))


def _render_endpoint(record: ServiceRecord, endpoint: Endpoint) -> list[ManagedEntry]:
    """The entries `record`'s spec would need for one endpoint (e.g. one it no longer names)."""
    assert record.spec is not None
    device, port, vlan = endpoint
    spec = record.spec.model_copy(
        update={"endpoints": [EndpointSpec.model_construct(device=device, port=port, vlanId=vlan, ipv4Address=None)]}
    )
    return render(record.key, spec)


def _drift_by_owner(drifts: list[Any]) -> dict[ServiceKey, str]:
    out: dict[ServiceKey, str] = {}
    for d in drifts:
        for owner in d.owners:
            out.setdefault(owner, d.description)
    return out


def _ready_now(record: ServiceRecord, status: dict[str, Any]) -> bool:
    """Whether `status` says Ready for the record's current generation."""
    if status.get("observedGeneration") != record.generation:
        return False
    return is_true(status, "Ready")


def _had_drift(status: dict[str, Any]) -> bool:
    return is_true(status, "DriftDetected")

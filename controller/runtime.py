"""The running controller: the parts the Kopf handlers call, wired once at startup."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from . import metrics
from .announce import Announcer
from .api.common import ApiModel, validation_message
from .api.networkdevice import NetworkDeviceSpec
from .api.networkservice import METERED_LABEL, NetworkServiceSpec
from .billing.clock import OffsetClock
from .commerce.runtime import CommerceController
from .gnmi.client import Target
from .intent.render import ServiceKey
from .kube import FINALIZER, Conflict, Kube, KubeLeases, NotFound, Ref
from .network.devices import DeviceConfigError, SecretUnavailable, device_status, port_names, target_for
from .network.reconciler import NetworkReconciler, ServiceRecord
from .network.session import DeviceSession
from .network.usage import UsagePublisher
from .settings import Settings
from .sharding import COMMERCE, Coordinator, Timing, replica_identity
from .statuswriter import StatusWriter, differs, shared_value

log = logging.getLogger(__name__)
# A NetworkDevice's status.services (how many services it holds) follows this long after a pass changed
# only that: in a burst of applies each pass changed it, one status write per service. At 2 s a burst of
# 300 Subscriptions on 20 devices still made 0.7 device status writes per Subscription (ab_convergence).
DEVICE_COUNT_DELAY_SECONDS = 5.0


@dataclass
class DeviceRecord:
    name: str
    body: dict[str, Any]
    target: Target | None = None
    config_error: str | None = None
    # A Secret that cannot be read for now (API server down, timeout, 5xx): the target, session and
    # config_error built before are kept; shown as WaitingForSecret only while there is no target yet.
    secret_unavailable: str | None = None


def lean(body: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields: kept for every object, they would be most of its memory."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def interned(value: Any) -> Any:
    """`value` (parsed JSON) with its short strings the interned, shared ones: validated, a spec keeps the
    strings it was given (device and port names, addresses, enum values every other spec repeats)."""
    if type(value) is dict:
        return {sys.intern(k): interned(v) for k, v in value.items()}
    if type(value) is list:
        return [interned(v) for v in value]
    if type(value) is str and len(value) <= 64:
        return sys.intern(value)
    return value


_FIELDS_SET: dict[frozenset[str], set[str]] = {}
M = TypeVar("M", bound=ApiModel)


def lean_spec(model: M) -> M:
    """`model` and its nested models with one `model_fields_set` per set of fields given (a set costs
    216 bytes; specs repeat a few). Nothing assigns to a spec's fields, the one thing that adds to it;
    `model_copy` copies it first."""
    for m in _models(model):
        fields = m.__pydantic_fields_set__
        object.__setattr__(m, "__pydantic_fields_set__", _FIELDS_SET.setdefault(frozenset(fields), fields))
    return model


def _models(model: ApiModel) -> list[ApiModel]:
    found = [model]
    for value in vars(model).values():
        items = value if isinstance(value, list) else [value]
        found += [m for v in items if isinstance(v, ApiModel) for m in _models(v)]
    return found


def _same_device_intent(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two versions of a NetworkDevice ask for the same session (only status or labels differ)."""
    return old["metadata"].get("uid") == new["metadata"].get("uid") and old.get("spec") == new.get("spec")


class Controller:
    def __init__(self, settings: Settings, kube: Kube | None = None) -> None:
        self.settings = settings
        self.kube = kube or Kube()
        self.writer = StatusWriter(self.kube, Announcer(self.kube))
        # One clock for the whole controller: the wall clock plus the offset a test may set (0 in
        # production), never going backwards (docs/commerce.md).
        self.clock = OffsetClock(settings.clock_offset_seconds, settings.clock_offset_file)
        self.devices: dict[str, DeviceRecord] = {}
        # Sharded (--shard-group): this replica drives only the devices whose Lease it holds, and runs
        # the commerce layer only while it holds the commerce unit (controller/sharding.py).
        self.shards: Coordinator | None = None
        self._leases: KubeLeases | None = None
        if settings.shard_group:
            timing = Timing(
                settings.shard_lease_seconds, settings.shard_renew_deadline_seconds, settings.shard_renew_seconds
            )
            self._leases = KubeLeases(
                self.kube,
                settings.shard_namespace,
                settings.shard_group,
                timing.renew_interval,
                watch_idle=timing.lease_duration,
            )
            self.shards = Coordinator(
                self._leases,
                settings.shard_group,
                replica_identity(),
                units=self._units,
                on_gain=self._gain,
                on_lose=self._lose,
                timing=timing,
                on_suspend=self._suspend,
                on_resume=self._resume,
            )
        # Built with its callbacks: the device count per pass, and what is known of each NetworkDevice.
        self.network = NetworkReconciler(
            self.kube,
            self.writer,
            settings,
            clock=self.clock.now,
            on_device_pass=self.publish_device,
            device_facts=self.devices.get,
            drives=self.drives,
            identity=self.shards.identity if self.shards else "",
            holder_of=self.shards.holder_of if self.shards else (lambda device: None),
        )
        self.commerce: CommerceController | None = None if self.shards else self._new_commerce()
        # Sharded: the counters of usage-priced services on this replica's devices, for the commerce holder.
        self.usage: UsagePublisher | None = None
        self._usage_task: asyncio.Task[None] | None = None
        if self.shards is not None:
            self.usage = UsagePublisher(
                self.network,
                self.writer,
                self.shards.identity,
                settings.usage_interval_seconds,
                clock=self.clock.now,
                drives=self.drives,
                direct=lambda: self.commerce is not None,
                device_status=self._device_status,
            )
        self._resync: asyncio.Task[None] | None = None
        self._named: set[str] = set()  # devices named by services not yet handed to the reconciler
        self._unfinalized: dict[ServiceKey, dict[str, Any]] = {}  # those services, for their writer-to-be
        self._relist: asyncio.Task[None] | None = None
        self._relist_wanted = False
        self._removed_since_list: set[ServiceKey] = set()  # deleted while a re-list was under way
        self._listed_for: set[str] = set()  # devices held when the latest list of NetworkServices began
        self._taking_up: dict[str, set[asyncio.Task[None]]] = {}  # per device: finalizers being added
        self._count_writes: dict[str, asyncio.TimerHandle] = {}  # devices whose new service count waits
        self._refresh_on_resume: set[str] = set()  # suspended devices whose refresh was skipped meanwhile

    def _new_commerce(self) -> CommerceController:
        return CommerceController(
            self.kube,
            self.writer,
            self.settings,
            self.clock,
            # only the sessions of devices this replica drives now (all, unsharded)
            sessions=lambda: {d: s for d, s in self.network.sessions.items() if self.drives(d)},
            holder_of=self.shards.holder_of if self.shards is not None else None,
            device_usage=lambda name: (self._device_status(name) or {}).get("usage"),
        )

    def _device_status(self, name: str) -> dict[str, Any] | None:
        """A NetworkDevice's status as its latest watch event showed it (None: no such device known)."""
        record = self.devices.get(name)
        return record.body.get("status") if record is not None else None

    def drives(self, unit: str) -> bool:
        """Whether this replica drives `unit` (a device, or the commerce layer): always, unsharded."""
        return self.shards is None or self.shards.drives(unit)

    def keeps(self, unit: str) -> bool:
        """Whether this replica keeps `unit`'s records: it drives it, or a lapsed fence suspended it (the
        records must stay current for its resumption, though nothing is written meanwhile)."""
        return self.shards is None or self.shards.keeps(unit)

    def commerce_event(self, apply: Callable[[CommerceController], None]) -> None:
        """A commerce watch event: applied while this replica runs the commerce layer, else dropped (the
        replica that runs it lists everything when it takes over)."""
        if self.commerce is not None:
            apply(self.commerce)

    # -- shard units (controller/sharding.py) -------------------------------------------------------
    def _name_units(self, record: ServiceRecord) -> None:
        """The service's devices are units to assign even without a NetworkDevice, or nobody would own them."""
        if self.shards is not None and not record.devices() <= self._named:
            self._named |= record.devices()
            self.shards.poke()

    def _elsewhere(self, key: ServiceKey, body: dict[str, Any]) -> bool:
        """Sharded: a finalized service this replica does not keep, none of whose devices it drives (read
        from the raw spec, before the full validation every other event of it would cost)."""
        if (
            self.shards is None
            or key in self.network.services
            or FINALIZER not in (body["metadata"].get("finalizers") or [])
        ):
            return False
        endpoints = (body.get("spec") or {}).get("endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            return False  # an invalid spec: the full path judges it
        devices = [d for e in endpoints if isinstance(e, dict) and isinstance(d := e.get("device"), str)]
        if len(devices) != len(endpoints):
            return False
        if any(self.keeps(d) for d in devices):
            return False
        self._uncovered(devices)
        if not set(devices) <= self._named:
            self._named |= set(devices)
            self.shards.poke()
        return True

    def _concerns(self, record: ServiceRecord) -> bool:
        """Whether this replica needs the service: it drives one of its devices or writes its status."""
        return any(self.keeps(d) for d in record.devices()) or self.network.is_home(record)

    def _relist_soon(self, unit: str) -> None:
        """A device became ours: its services, dropped while another replica drove it, come from one
        list of every NetworkService (one list for all the devices gained in a burst). A list sent after
        the device was already ours (its Lease taken) brings them, so a start that comes later (waiting
        for a start slot) asks for none: in a failover each such start cost one more list of everything."""
        if unit in self._listed_for:
            return
        self._relist_wanted = True
        if self._relist is None or self._relist.done():
            self._relist = asyncio.create_task(self._relist_services(), name="shard-relist")

    def _uncovered(self, devices: Iterable[str]) -> None:
        """An event of a service on `devices` was dropped: the latest list no longer covers them (e.g. one
        was let go for a moment, its start refused by a lapsed fence), so taking one up lists again."""
        if self._listed_for:
            self._listed_for.difference_update(devices)

    async def _relist_services(self) -> None:
        while self._relist_wanted:
            await asyncio.sleep(0.2)  # the rest of the burst of gains
            self._relist_wanted = False
            self._removed_since_list.clear()
            # From here every event of a service on these devices is kept (keeps()), and the list is sent
            # after this: together they cover each of these devices' services.
            self._listed_for = set(self.shards.held) if self.shards is not None else set()
            log.info("listing every NetworkService for the devices this replica took")
            began = time.monotonic()
            try:
                bodies = await self.kube.list_all("networkservices", urgent=True)  # every taken device waits
            except Exception as exc:
                log.warning("listing NetworkServices for the devices this replica took failed (%s); again in 2 s", exc)
                self._listed_for = set()
                await asyncio.sleep(2)
                self._relist_wanted = True
                continue
            listed = time.monotonic()
            # The finalized services first: taking one up is no API call. Those still waiting for their
            # finalizer each need a write, so they go after, together, not one after another ahead of
            # the rest of the list (which waited 34-50 s for them in a failover, docs/sharding.md).
            waiting: list[dict[str, Any]] = []
            added = 0
            for i, body in enumerate(bodies):
                meta = body.get("metadata") or {}
                if FINALIZER not in (meta.get("finalizers") or []) and not meta.get("deletionTimestamp"):
                    waiting.append(body)
                    continue
                added += await self._take_up_listed(body)
                if i % 256 == 255:
                    await asyncio.sleep(0)  # a long list must not hold the loop (renews, Sets) for long
            found = await asyncio.gather(*(self._take_up_listed(b) for b in waiting), return_exceptions=True)
            for body, result in zip(waiting, found, strict=True):
                if isinstance(result, Exception):
                    log.warning("taking up NetworkService %s failed: %s", body["metadata"].get("name"), result)
            added += sum(r for r in found if isinstance(r, int))
            log.info(
                "listed %d NetworkServices in %.2fs; %d taken up in %.2fs (%d without our finalizer)",
                len(bodies),
                listed - began,
                added,
                time.monotonic() - listed,
                len(waiting),
            )

    async def _take_up_listed(self, body: dict[str, Any]) -> int:
        """A listed service unknown here (and not deleted since the list), as if its event came now; 1 if
        this replica keeps it."""
        meta = body.get("metadata") or {}
        key = ServiceKey(meta.get("namespace", ""), meta.get("name", ""))
        if key in self.network.services or key in self._removed_since_list:
            return 0
        await self.upsert_service(body, urgent=True)
        return int(key in self.network.services)

    def _units(self) -> set[str]:
        return set(self.devices) | self.network.named_devices() | self._named

    async def _gain(self, unit: str, tenure: int) -> None:
        if unit == COMMERCE:
            self.commerce = self._new_commerce()
            self.commerce.start()  # it lists every commerce object before its first pass
            return
        began = time.monotonic()
        self.network.adopt_device(unit)
        self._relist_soon(unit)
        await self.refresh_device(unit)
        log.info("device %s: Secrets read and session started in %.2fs", unit, time.monotonic() - began)
        self._take_up_unfinalized(unit)

    def _take_up_unfinalized(self, unit: str) -> None:
        """The services on `unit` whose finalizer waited for its writer (this replica may write their
        status now), taken up beside the start, not in it: each is an API write, and a start holds one
        of the few start slots. Awaited one after another in the start, they held each slot 5-15 s in a
        failover, and the lost replica's last devices waited 30 s for a slot (docs/sharding.md)."""
        bodies = []
        for body in list(self._unfinalized.values()):
            endpoints = (body.get("spec") or {}).get("endpoints") or []
            if any(isinstance(e, dict) and e.get("device") == unit for e in endpoints):
                bodies.append(body)
        if not bodies:
            return
        task = asyncio.create_task(self._take_up(unit, bodies), name=f"take-up-{unit}")
        self._taking_up.setdefault(unit, set()).add(task)
        task.add_done_callback(lambda t: self._taking_up.get(unit, set()).discard(t))

    async def _take_up(self, unit: str, bodies: list[dict[str, Any]]) -> None:
        began = time.monotonic()
        results = await asyncio.gather(*(self.upsert_service(b, urgent=True) for b in bodies), return_exceptions=True)
        failed = [(b, r) for b, r in zip(bodies, results, strict=True) if isinstance(r, Exception)]
        for body, exc in failed:
            # As a failed start did before: it waits for the unit's next start (or the service's next event).
            key = ServiceKey(body["metadata"]["namespace"], body["metadata"]["name"])
            self._unfinalized.setdefault(key, body)
            log.warning("device %s: taking up NetworkService %s failed: %s", unit, key.name, exc)
        log.info(
            "device %s: %d services without our finalizer taken up in %.2fs",
            unit,
            len(bodies) - len(failed),
            time.monotonic() - began,
        )

    async def _stop_taking_up(self, unit: str) -> None:
        tasks = self._taking_up.pop(unit, set())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_all_taking_up(self) -> None:
        for unit in list(self._taking_up):
            await self._stop_taking_up(unit)

    async def _suspend(self, unit: str) -> bool:
        """The fence lapsed: stop the device's passes (no Set until it is resumed), but keep its session
        and the records of its services, as its Lease may still be ours when the renew is on time again.
        The commerce layer likewise stops every pass and delivery but keeps its index."""
        if unit == COMMERCE:
            if self.commerce is None:
                return False
            await self.commerce.suspend()
            return True
        await self.network.suspend_device(unit)
        return True

    async def _resume(self, unit: str, tenure: int) -> None:
        """Its Lease still names this replica at the same tenure: nobody else wrote to the device, so one
        whole-device pass over the session and records kept is enough (no reconnect, no re-list)."""
        if unit == COMMERCE:
            if self.commerce is not None:
                self.commerce.resume()
            return
        if unit in self._refresh_on_resume:  # a refresh (a NetworkDevice change, the resync) skipped meanwhile
            self._refresh_on_resume.discard(unit)
            await self.refresh_device(unit)
        self.network.resume_device(unit)
        self._take_up_unfinalized(unit)

    async def _lose(self, unit: str) -> None:
        if unit == COMMERCE:
            commerce, self.commerce = self.commerce, None
            if commerce is not None:
                await commerce.close()
            return
        self._refresh_on_resume.discard(unit)
        self._listed_for.discard(unit)  # taken again later, its services come from a new list
        await self._stop_taking_up(unit)
        record = self.devices.get(unit)
        if record is not None:
            record.target = None  # the next owner-ship opens a fresh session
        members = self.network.members(unit)
        await self.network.drop_device(unit)
        self.writer.forget(Ref("networkdevices", unit))
        for service in members:  # another replica drives it now: keep only what this one still needs
            if not self._concerns(service):
                self.network.remove_service(service.key)

    def now(self) -> dt.datetime:
        return self.clock.now()

    def start(self) -> None:
        self._resync = asyncio.create_task(self._resync_loop(), name="resync")
        if self.shards is not None:
            self.shards.start()
            if self.usage is not None:
                self._usage_task = asyncio.create_task(self.usage.run(), name="usage-publish")
        elif self.commerce is not None:
            self.commerce.start()

    def _cancel_count_writes(self) -> None:
        for timer in self._count_writes.values():
            timer.cancel()
        self._count_writes.clear()

    async def close(self) -> None:
        self._cancel_count_writes()
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        if self._relist is not None:
            self._relist.cancel()
            await asyncio.gather(self._relist, return_exceptions=True)
        await self._stop_all_taking_up()
        if self._usage_task is not None:
            self._usage_task.cancel()
            await asyncio.gather(self._usage_task, return_exceptions=True)
        if self.shards is not None:
            await self.shards.close()  # stops every unit, then releases the Leases for the others
        if self.commerce is not None:
            await self.commerce.close()
        await self.network.close()
        await self.writer.flush()
        if self._leases is not None:
            self._leases.close()
        self.kube.close()

    async def _resync_loop(self) -> None:
        """Level-triggered safety net: re-read each device's Secrets and compare the whole device with its
        intent once per period (Gets only when in sync). Devices are spread over the period, so a fleet's
        whole-device passes never all land at once, with a change arriving meanwhile queued behind them."""
        while True:
            names = list(self.devices)
            for name in names:
                await asyncio.sleep(self.settings.resync_seconds / len(names))
                if name not in self.devices:
                    continue
                try:
                    await self.refresh_device(name)
                except Exception:  # one device must never stop the resync of the others
                    log.exception("refreshing device %s failed", name)
                self.network.mark_dirty(name)
            if not names:
                await asyncio.sleep(self.settings.resync_seconds)
            self.network.resync(skip=names)  # devices that services name but no NetworkDevice defines

    # -- NetworkDevice -----------------------------------------------------------------------
    async def upsert_device(self, body: dict[str, Any]) -> None:
        body = lean(body)
        name = body["metadata"]["name"]
        self.network.device_seen(name)
        known = self.devices.get(name)
        if known is None and self.shards is not None:
            self.shards.poke()  # a new unit to assign
        usage = (body.get("status") or {}).get("usage")
        if usage and (known is None or (known.body.get("status") or {}).get("usage") != usage):
            # Sharded: another replica's counters for the Subscriptions on this device (docs/sharding.md).
            self.commerce_event(lambda c: c.observe_device_usage(name, usage))
        if known is not None and _same_device_intent(known.body, body):
            known.body = body  # e.g. the echo of our own status write: the target cannot have changed
            ref = Ref("networkdevices", name)
            forged = self.writer.forgery(ref, str(body["metadata"].get("resourceVersion") or ""), body.get("status"))
            if forged:  # someone else wrote its status: recompute it from the session, rewrite it
                self.writer.report_forgery(body, forged)
                self.writer.distrust(ref, body.get("status"))
                self.publish_device(name)
            return
        record = known or DeviceRecord(name, body)
        record.body = body
        self.devices[name] = record
        await self.refresh_device(name)
        self.network.mark_dirty(name)  # its services hear about a new or changed device now

    async def refresh_device(self, name: str) -> None:
        """(Re)build the device's target from spec and Secrets; replace the session when it changed."""
        record = self.devices.get(name)
        if record is None or not self.drives(name):
            if record is not None and self.keeps(name):
                self._refresh_on_resume.add(name)  # suspended by a lapsed fence: done when it is resumed
            return
        config_error: str | None = None
        try:
            spec = NetworkDeviceSpec.model_validate(record.body.get("spec", {}))
            target = await target_for(spec, self.kube)
        except ValidationError as exc:
            target, config_error = None, validation_message(exc)
        except DeviceConfigError as exc:
            target, config_error = None, str(exc)
        except SecretUnavailable as exc:
            # Nothing is known to be wrong with the device: keep its target, session and status as they
            # are (an API outage must not tear down healthy sessions); the next refresh tries again.
            if record.secret_unavailable is None:
                log.warning("NetworkDevice %s: %s; keeping its current session, if any", name, exc)
            record.secret_unavailable = f"{exc}; trying again at the next resync"
            if record.target is None:
                self.publish_device(name)  # never had a target: WaitingForSecret (or its config error)
            return
        if not self.drives(name) or self.devices.get(name) is not record:
            return  # stopped (or replaced) while its Secrets were read: the next owner-ship reads them again
        if record.secret_unavailable is not None:
            log.info("NetworkDevice %s: its Secrets are readable again", name)
        record.config_error, record.secret_unavailable = config_error, None
        if target != record.target or (target is not None and name not in self.network.sessions):
            # A new target, or none of its session is left (a stop dropped it): level-triggered, so a
            # resync always brings the session back. The swap itself does not yield, so a stop of the
            # device cannot fall between the two halves and leave it without a session for good.
            record.target = target
            old = self.network.take_session(name)
            if target is not None:
                session = DeviceSession(
                    name,
                    target,
                    on_change=self._device_changed,
                    on_state=self.publish_device,
                    on_update=self.network.mark_changed,
                    set_guard=(lambda: shards.guard(name)) if (shards := self.shards) is not None else None,
                )
                self.network.attach_session(session)
                session.start()
            if old is not None:
                await old.close()
        self.publish_device(name)

    async def remove_device(self, name: str) -> None:
        self.devices.pop(name, None)
        self.network.device_removed(name)
        await self.network.detach_session(name)

    def _device_changed(self, name: str) -> None:
        self.network.mark_dirty(name)
        self.publish_device(name)

    def publish_device(self, name: str, count_now: bool = False) -> None:
        record = self.devices.get(name)
        if record is None or not self.drives(name):
            return
        meta = record.body["metadata"]
        ref = Ref("networkdevices", name)
        current = self.writer.latest(ref, record.body.get("status"))
        session = self.network.sessions.get(name)
        status = device_status(
            generation=meta.get("generation", 0),
            current=current,
            session=session,
            config_error=record.config_error,
            waiting=record.secret_unavailable,
            services=len(self.network.members(name)),
            now=self.now(),
            ports=port_names(session),
        )
        if not count_now and [k for k in status if differs({k: status[k]}, current)] == ["services"]:
            if name not in self._count_writes:
                self._count_writes[name] = asyncio.get_running_loop().call_later(
                    DEVICE_COUNT_DELAY_SECONDS, self._write_count, name
                )
        else:
            self.writer.submit(ref, status, current)
        sessions = self.network.sessions.values()
        metrics.DEVICES_REACHABLE.set(sum(1 for s in sessions if s.connected))
        metrics.DEVICES_TOTAL.set(len(self.devices))

    def _write_count(self, name: str) -> None:
        self._count_writes.pop(name, None)
        self.publish_device(name, count_now=True)

    # -- NetworkService -----------------------------------------------------------------------
    async def upsert_service(self, body: dict[str, Any], urgent: bool = False) -> None:
        """`urgent`: a service of a device just taken over (its finalizer write goes before queued status
        writes: the lost replica's backlog is what the failover waits for)."""
        body = lean(body)
        if self.commerce is not None:
            self.commerce.observe_service(body)  # a Subscription follows the NetworkService it owns
        meta = body["metadata"]
        key = ServiceKey(meta["namespace"], meta["name"])
        self._unfinalized.pop(key, None)
        if self._elsewhere(key, body):
            return  # every replica sees every event: one that concerns none of ours costs only this look
        spec: NetworkServiceSpec | None = None
        invalid: str | None = None
        try:
            spec = lean_spec(NetworkServiceSpec.model_validate(interned(body.get("spec", {}))))
        except ValidationError as exc:
            invalid = validation_message(exc)
        record = ServiceRecord(
            key=key,
            uid=meta["uid"],
            generation=meta.get("generation", 0),
            created=sys.intern(meta.get("creationTimestamp", "")),  # one burst's services share their seconds
            resource_version=meta.get("resourceVersion", ""),
            spec=spec,
            invalid=invalid,
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=shared_value(list(meta.get("finalizers") or [])),  # one list for all: all have the same
            status=self.writer.shared(Ref("networkservices", key.name, key.namespace), body.get("status") or {}),
            metered=(meta.get("labels") or {}).get(METERED_LABEL) == "true",
        )
        if record.deleting and FINALIZER not in record.finalizers:
            self.network.remove_service(key)  # nothing of ours to clean up
            return
        if not record.deleting and FINALIZER not in record.finalizers:
            if self.shards is not None and not self.network.is_home(record):
                # The replica writing its status adds the finalizer (that event follows, or this one is
                # taken up again if this replica becomes that writer).
                self._unfinalized[key] = body
                self._name_units(record)
                return
            # Our finalizer first, so a deletion always waits for the device cleanup. Carry on
            # with the object the write returns rather than waiting for its watch event.
            try:
                body = await self.kube.set_finalizers(
                    record.ref, [*record.finalizers, FINALIZER], record.resource_version, urgent=urgent
                )
            except (Conflict, NotFound):
                return  # a newer event follows
            await self.upsert_service(body, urgent)
            return
        if self.shards is not None:
            self._name_units(record)
            if key not in self.network.services and not self._concerns(record):
                self._uncovered(record.devices())
                return  # the replicas driving its devices keep it; a re-list brings it if one becomes ours
        self.network.upsert_service(record)

    def remove_service(self, namespace: str, name: str) -> None:
        self.network.remove_service(ServiceKey(namespace, name))
        self._unfinalized.pop(ServiceKey(namespace, name), None)
        if self._relist is not None and not self._relist.done():
            self._removed_since_list.add(ServiceKey(namespace, name))
        if self.commerce is not None:
            self.commerce.forget_service(namespace, name)

    # -- peering (controller/peering.py): another replica is the active one ------------------------
    async def pause(self) -> None:
        """Stand down for good, writing nothing more: stop the resync, the billing loops, every reconcile
        worker, device session and background write, and drop queued status writes (this replica's view
        is stale now). Idempotent. The replica builds a new Controller from a fresh list on resume."""
        self._cancel_count_writes()
        if self._resync is not None:
            self._resync.cancel()
        await self._stop_all_taking_up()
        await self.network.close()
        if self.commerce is not None:
            await self.commerce.close()
        await self.writer.discard()
        if self._resync is not None:
            await asyncio.gather(self._resync, return_exceptions=True)
        self.devices.clear()
        self.network.services.clear()  # a release retry timer finds nothing left to do
        for gauge in (metrics.DEVICES_REACHABLE, metrics.DEVICES_TOTAL, metrics.OUTBOX_DEPTH):
            gauge.set(0)
        metrics.OUTBOX_OLDEST_SECONDS.set(0)
        self.kube.close()  # any call still under way fails instead of writing

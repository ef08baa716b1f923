"""Drive every device to the merged intent of the NetworkServices that use it.

Level-triggered: a device is marked dirty by a service change, a subscription update
(drift, a port going down), a reconnect or the periodic resync, and its worker then
reconciles the whole device: render -> merge -> fresh Get -> preflight -> plan ->
one transactional Set -> read back -> verify -> status. Bursts of changes collapse
into one pass, so a device gets one Set per burst, and none when nothing differs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..api.networkservice import NetworkServiceSpec
from ..conditions import Cond, merge_conditions
from ..gnmi.client import GnmiError
from ..intent import Claim, GPath, ManagedEntry, ServiceKey, SetPlan, merge, observe, plan, preflight, render, verify
from ..kube import FINALIZER, Conflict, Kube, NotFound, Ref
from ..settings import Settings
from ..statuswriter import StatusWriter
from .outcome import EndpointOutcome, Phase, ServiceView, service_status
from .session import DeviceSession

log = logging.getLogger(__name__)
Endpoint = tuple[str, str, int]  # device, port, vlan
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass
class ServiceRecord:
    """What the controller knows of one NetworkService, from its latest watch event."""

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
    body: dict[str, Any]

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.created.replace("Z", "+00:00")) if self.created else EPOCH

    @property
    def ref(self) -> Ref:
        return Ref("networkservices", self.key.name, self.key.namespace)

    def __post_init__(self) -> None:
        # Computed once: reconcile passes ask for these for every member service.
        self._endpoints = [(e.device, e.port, e.vlanId) for e in self.spec.endpoints] if self.spec else []
        self._devices = frozenset(e[0] for e in self._endpoints)
        self.rendered: tuple[ManagedEntry, ...] = tuple(render(self.key, self.spec)) if self.spec else ()

    def endpoints(self) -> list[Endpoint]:
        return self._endpoints

    def devices(self) -> frozenset[str]:
        return self._devices


@dataclass
class DeviceStats:
    sets: int = 0
    set_ops: int = 0
    gets: int = 0
    drift_repairs: int = 0
    reconciles: int = 0
    failures: int = 0
    retry_attempt: int = 0


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
    _outcomes: dict[ServiceKey, dict[Endpoint, EndpointOutcome]] = field(default_factory=lambda: defaultdict(dict))
    _plans: dict[ServiceKey, dict[str, list[dict[str, Any]]]] = field(default_factory=lambda: defaultdict(dict))
    _applied: set[tuple[ServiceKey, str]] = field(default_factory=set)  # (service, device) verified once
    _torn_down: dict[ServiceKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    _dirty: dict[str, asyncio.Event] = field(default_factory=dict)
    _workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _retry: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _releasing: set[ServiceKey] = field(default_factory=set)
    _by_device: dict[str, set[ServiceKey]] = field(default_factory=lambda: defaultdict(set))

    # -- inputs ---------------------------------------------------------------------------
    def upsert_service(self, record: ServiceRecord) -> None:
        old = self.services.get(record.key)
        self.services[record.key] = record
        for device in old.devices() if old else ():
            self._by_device[device].discard(record.key)
        for device in record.devices():
            self._by_device[device].add(record.key)
        for key, device in list(self._applied):
            if key == record.key and device not in record.devices():
                self._applied.discard((key, device))
        touched = record.devices() | (old.devices() if old else set())
        self._outcomes[record.key] = {
            ep: o for ep, o in self._outcomes[record.key].items() if ep in set(record.endpoints())
        }
        if record.invalid is not None:
            self.publish(record)
        for device in touched:
            self.mark_dirty(device)
        if record.deleting:
            self._maybe_finish_teardown(record)

    def remove_service(self, key: ServiceKey) -> None:
        record = self.services.pop(key, None)
        for device in record.devices() if record else ():
            self._by_device[device].discard(key)
        self._outcomes.pop(key, None)
        self._plans.pop(key, None)
        self._torn_down.pop(key, None)
        self._applied = {(k, d) for k, d in self._applied if k != key}
        if record is not None:
            self.writer.forget(record.ref)

    def attach_session(self, session: DeviceSession) -> None:
        self.sessions[session.name] = session
        self.mark_dirty(session.name)

    async def detach_session(self, name: str) -> None:
        session = self.sessions.pop(name, None)
        if session is not None:
            await session.close()
        self.mark_dirty(name)

    def mark_dirty(self, device: str) -> None:
        event = self._dirty.get(device)
        if event is None:
            event = self._dirty[device] = asyncio.Event()
            self._workers[device] = asyncio.create_task(self._worker(device), name=f"reconcile-{device}")
        event.set()

    def resync(self) -> None:
        for device in set(self.sessions) | {d for r in self.services.values() for d in r.devices()}:
            self.mark_dirty(device)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        for handle in self._retry.values():
            handle.cancel()
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)

    # -- the per-device loop --------------------------------------------------------------
    async def _worker(self, device: str) -> None:
        event = self._dirty[device]
        while True:
            await event.wait()
            await asyncio.sleep(self.settings.debounce_seconds)  # let the burst arrive
            event.clear()
            started = time.perf_counter()
            result = "ok"
            try:
                await self._reconcile(device)
            except Exception:  # a bug must not kill the device's worker
                result = "error"
                log.exception("reconcile of device %s failed", device)
                self._schedule_retry(device)
            finally:
                if self.on_device_pass is not None:
                    self.on_device_pass(device)
                metrics.RECONCILES.labels("NetworkDevice", result).inc()
                metrics.RECONCILE_SECONDS.labels("NetworkDevice").observe(time.perf_counter() - started)

    def _schedule_retry(self, device: str) -> None:
        stats = self.stats[device]
        delay = min(self.settings.retry_max_seconds, self.settings.retry_initial_seconds * 2**stats.retry_attempt)
        stats.retry_attempt += 1
        if device in self._retry:
            self._retry[device].cancel()
        self._retry[device] = asyncio.get_running_loop().call_later(delay, self.mark_dirty, device)

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
        live = [r for r in members if not r.deleting and r.spec is not None]
        leaving = [r for r in members if r.deleting and device not in self._torn_down[r.key]]
        rendered = {r.key: tuple(e for e in r.rendered if e.device == device) for r in live}
        applying = [r for r in live if r.spec is not None and not r.spec.dryRun]

        def claims(records: list[ServiceRecord], exclude: Collection[ServiceKey]) -> list[Claim]:
            return [Claim(r.key, self._precedence(r, device), rendered[r.key]) for r in records if r.key not in exclude]

        try:
            tree = observe(await session.get_config())
            stats.gets += 1
        except GnmiError as exc:
            self._transient(device, members, exc)
            return

        # Problems only the device reveals (a port it lacks) refuse that service alone, before merging,
        # so one bad service never blocks the batched Set of the others.
        refused: dict[ServiceKey, tuple[str, str]] = {
            owner: ("PortNotFound" if any("port" in p for p in problems) else "PreflightFailed", "; ".join(problems))
            for owner, problems in preflight(device, [e for es in rendered.values() for e in es], tree).items()
        }
        intent, conflicts = merge(device, claims(applying, refused))
        for conflict in conflicts:
            refused.setdefault(conflict.service, ("ConflictingClaim", conflict.message))
        teardown = [e for r in leaving for e in r.rendered if e.device == device]
        drift_before = _drift_by_owner(verify(intent, tree))
        # A `report` service that was applied before keeps its drift: reported, not reverted.
        report_only = {
            r.key for r in applying if r.spec and r.spec.driftPolicy == "report" and (r.key, device) in self._applied
        }
        to_send = plan(intent, tree, teardown).without_owners(report_only)

        for r in live:  # dry runs: what the Set would carry if the service were applied now
            if r.spec is not None and r.spec.dryRun and r.key not in refused:
                dry = merge(
                    device, [*claims(applying, refused), Claim(r.key, self._precedence(r, device), rendered[r.key])]
                )
                lost = [c for c in dry.conflicts if c.service == r.key]
                if lost:
                    refused[r.key] = ("ConflictingClaim", lost[0].message)
                self._plans[r.key][device] = plan(dry.intent, tree).for_owner(r.key).to_json()

        if not to_send.is_empty:
            try:
                await self._send(session, to_send)
            except GnmiError as exc:
                if exc.transient:
                    self._transient(device, members, exc)
                    return
                rejected = await self._isolate(session, to_send, exc)
                refused.update(rejected)
                intent, _ = merge(device, claims(applying, refused))
                rest = plan(intent, tree, teardown).without_owners(report_only)
                if not rest.is_empty:
                    try:
                        await self._send(session, rest)
                    except GnmiError as again:
                        self._transient(device, members, again)
                        return
            for owner in to_send.owners - set(refused):
                if (owner, device) in self._applied and owner in drift_before:
                    self._drift_reverted(device, owner, drift_before[owner])
            try:
                tree = observe(await session.get_config())  # read back what the device now holds
                stats.gets += 1
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
        stats.retry_attempt = 0

        remaining = _drift_by_owner(verify(intent, tree))
        for r in leaving:
            self._torn_down[r.key].add(device)
            self._maybe_finish_teardown(r)
        for r in live:
            for ep in r.endpoints():
                if ep[0] != device:
                    continue
                outcome = self._endpoint_outcome(
                    r, ep, session, refused.get(r.key), remaining.get(r.key), r.key in report_only
                )
                self._outcomes[r.key][ep] = outcome
                if outcome.phase in (Phase.APPLIED, Phase.DISABLED):
                    self._applied.add((r.key, device))
            if r.key in report_only and r.key in remaining and not _had_drift(r):
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

    def _precedence(self, record: ServiceRecord, device: str) -> dt.datetime:
        """When the service's claim on `device` counts from. A service already configured there keeps its
        claim against any newcomer: creation times have one-second resolution, and a tie would
        otherwise go by name and could take a working service's port away."""
        if (record.key, device) in self._applied or any(
            e.get("applied") and e.get("device") == device for e in record.status.get("endpoints", []) or []
        ):
            return EPOCH
        return record.created_at

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
        stats = self.stats[session.name]
        stats.sets += 1
        stats.set_ops += len(set_plan.operations)
        await session.client.set(
            deletes=[op.path.to_proto() for op in set_plan.deletes],
            replaces=[(op.path.to_proto(), op.value) for op in set_plan.replaces],
            updates=[(op.path.to_proto(), op.value) for op in set_plan.updates],
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
            device, port, vlan, phase, "Applied", oper_up=oper_up, drift=drift if report_only else None
        )

    def _device_unavailable(self, device: str, members: list[ServiceRecord], session: DeviceSession | None) -> None:
        if session is None:
            reason, message = "DeviceNotFound", f"NetworkDevice {device} does not exist"
        else:
            reason = "DeviceUnauthenticated" if session.error and session.error.unauthenticated else "DeviceUnreachable"
            message = f"{device}: {session.error.message if session.error else 'connecting'}"
        for r in members:
            if r.deleting:
                if session is None:
                    # Nothing to remove from a device the controller no longer manages.
                    self._torn_down[r.key].add(device)
                    self._maybe_finish_teardown(r)
                continue
            for ep in r.endpoints():
                if ep[0] == device:
                    self._outcomes[r.key][ep] = EndpointOutcome(*ep, Phase.RETRYING, reason, message)
            self.publish(r)
        self.publish_teardown_waits(members, reason, message)

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
            if r.deleting:
                conds = merge_conditions(
                    r.status.get("conditions"),
                    [
                        Cond("Ready", "False", "Terminating", f"waiting to remove the configuration: {message}"),
                        Cond("Progressing", "True", reason, message),
                    ],
                    r.generation,
                    now,
                )
                self.writer.submit(
                    r.ref, {"conditions": conds, "state": "reserved", "operatingStatus": "stopping"}, r.status
                )

    # -- outputs ---------------------------------------------------------------------------
    def publish(self, record: ServiceRecord) -> None:
        if record.deleting:
            return
        plans = [op for ops in self._plans.get(record.key, {}).values() for op in ops]
        view = ServiceView(
            generation=record.generation,
            admin_enabled=bool(record.spec and record.spec.adminState == "enabled"),
            dry_run=bool(record.spec and record.spec.dryRun),
            current=record.status,
            invalid=record.invalid,
            plan=plans,
        )
        outcomes = [
            self._outcomes[record.key].get(ep) or EndpointOutcome(*ep, Phase.PENDING, "Pending")
            for ep in record.endpoints()
        ]
        status = service_status(view, outcomes, self.clock())
        self.writer.submit(record.ref, status, record.status)
        if self.on_service_status is not None:
            self.on_service_status(record, status)

    def _maybe_finish_teardown(self, record: ServiceRecord) -> None:
        if record.devices() <= self._torn_down[record.key] and record.key not in self._releasing:
            self._releasing.add(record.key)
            self._spawn(self._release(record))

    async def _release(self, record: ServiceRecord) -> None:
        """Remove our finalizer now that the devices no longer hold the service (re-read on conflict)."""
        try:
            await self._release_with_retries(record)
        finally:
            self._releasing.discard(record.key)

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


def _drift_by_owner(drifts: list[Any]) -> dict[ServiceKey, str]:
    out: dict[ServiceKey, str] = {}
    for d in drifts:
        for owner in d.owners:
            out.setdefault(owner, d.description)
    return out


def _had_drift(record: ServiceRecord) -> bool:
    for cond in record.status.get("conditions", []) or []:
        if cond.get("type") == "DriftDetected":
            return cond.get("status") == "True"
    return False

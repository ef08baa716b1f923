"""The running controller: the parts the Kopf handlers call, wired once at startup."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import metrics
from .announce import Announcer
from .api.common import validation_message
from .api.networkdevice import NetworkDeviceSpec
from .api.networkservice import NetworkServiceSpec
from .billing.clock import OffsetClock
from .commerce.runtime import CommerceController
from .gnmi.client import Target
from .intent.render import ServiceKey
from .kube import FINALIZER, Conflict, Kube, NotFound, Ref
from .network.devices import DeviceConfigError, SecretUnavailable, device_status, target_for
from .network.reconciler import NetworkReconciler, ServiceRecord
from .network.session import DeviceSession
from .settings import Settings
from .statuswriter import StatusWriter

log = logging.getLogger(__name__)


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


# What Events about an object and its finalizer release read of it (kube.event, set_finalizers).
_SUBJECT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "finalizers")


def event_subject(body: dict[str, Any]) -> dict[str, Any]:
    """The part of an object the controller keeps to post Events about it and release its finalizer:
    kept per object, the rest of its metadata (labels, annotations, owners) would be most of a record."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in _SUBJECT_METADATA if k in meta},
    }


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
        # Built with its callbacks: the device count per pass, and what is known of each NetworkDevice.
        self.network = NetworkReconciler(
            self.kube,
            self.writer,
            settings,
            clock=self.clock.now,
            on_device_pass=self.publish_device,
            device_facts=self.devices.get,
        )
        self.commerce = CommerceController(
            self.kube, self.writer, settings, self.clock, sessions=lambda: self.network.sessions
        )
        self._resync: asyncio.Task[None] | None = None

    def now(self) -> dt.datetime:
        return self.clock.now()

    def start(self) -> None:
        self._resync = asyncio.create_task(self._resync_loop(), name="resync")
        self.commerce.start()

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await self.commerce.close()
        await self.network.close()
        await self.writer.flush()
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
        if record is None:
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
        if record.secret_unavailable is not None:
            log.info("NetworkDevice %s: its Secrets are readable again", name)
        record.config_error, record.secret_unavailable = config_error, None
        if target != record.target:
            record.target = target
            await self.network.detach_session(name)
            if target is not None:
                session = DeviceSession(
                    name,
                    target,
                    on_change=self._device_changed,
                    on_state=self.publish_device,
                    on_update=self.network.mark_changed,
                )
                self.network.attach_session(session)
                session.start()
        self.publish_device(name)

    async def remove_device(self, name: str) -> None:
        self.devices.pop(name, None)
        self.network.device_removed(name)
        await self.network.detach_session(name)

    def _device_changed(self, name: str) -> None:
        self.network.mark_dirty(name)
        self.publish_device(name)

    def publish_device(self, name: str) -> None:
        record = self.devices.get(name)
        if record is None:
            return
        meta = record.body["metadata"]
        ref = Ref("networkdevices", name)
        current = self.writer.latest(ref, record.body.get("status"))
        status = device_status(
            generation=meta.get("generation", 0),
            current=current,
            session=self.network.sessions.get(name),
            config_error=record.config_error,
            waiting=record.secret_unavailable,
            services=len(self.network.members(name)),
            now=self.now(),
        )
        self.writer.submit(ref, status, current)
        sessions = self.network.sessions.values()
        metrics.DEVICES_REACHABLE.set(sum(1 for s in sessions if s.connected))
        metrics.DEVICES_TOTAL.set(len(self.devices))

    # -- NetworkService -----------------------------------------------------------------------
    async def upsert_service(self, body: dict[str, Any]) -> None:
        body = lean(body)
        self.commerce.observe_service(body)  # a Subscription follows the NetworkService it owns
        meta = body["metadata"]
        key = ServiceKey(meta["namespace"], meta["name"])
        spec: NetworkServiceSpec | None = None
        invalid: str | None = None
        try:
            spec = NetworkServiceSpec.model_validate(body.get("spec", {}))
        except ValidationError as exc:
            invalid = validation_message(exc)
        record = ServiceRecord(
            key=key,
            uid=meta["uid"],
            generation=meta.get("generation", 0),
            created=meta.get("creationTimestamp", ""),
            resource_version=meta.get("resourceVersion", ""),
            spec=spec,
            invalid=invalid,
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=list(meta.get("finalizers") or []),
            status=self.writer.shared(Ref("networkservices", key.name, key.namespace), body.get("status") or {}),
            body=event_subject(body),
        )
        if record.deleting and FINALIZER not in record.finalizers:
            self.network.remove_service(key)  # nothing of ours to clean up
            return
        if not record.deleting and FINALIZER not in record.finalizers:
            # Our finalizer first, so a deletion always waits for the device cleanup. Carry on
            # with the object the write returns rather than waiting for its watch event.
            try:
                body = await self.kube.set_finalizers(
                    record.ref, [*record.finalizers, FINALIZER], record.resource_version
                )
            except (Conflict, NotFound):
                return  # a newer event follows
            await self.upsert_service(body)
            return
        self.network.upsert_service(record)

    def remove_service(self, namespace: str, name: str) -> None:
        self.network.remove_service(ServiceKey(namespace, name))
        self.commerce.forget_service(namespace, name)

    # -- peering (controller/peering.py): another replica is the active one ------------------------
    async def pause(self) -> None:
        """Stand down for good, writing nothing more: stop the resync, the billing loops, every reconcile
        worker, device session and background write, and drop queued status writes (this replica's view
        is stale now). Idempotent. The replica builds a new Controller from a fresh list on resume."""
        if self._resync is not None:
            self._resync.cancel()
        await self.network.close()
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

"""Operator start and stop: Kopf settings and the controller's shared parts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import kopf

from .. import memory, metrics, webview
from .. import startup as timeline
from ..billing.clock import OffsetClock
from ..kube import Kube
from ..peering import PeeringMonitor, Replica, own_identity
from ..runtime import Controller
from ..settings import Settings

SETTINGS = Settings()  # replaced by the CLI before kopf starts
# The run's Replica, for what lives outside Kopf's memo: the TMF facade asks it whether this replica
# sends the hubs' events (controller/__main__.py).
REPLICA: Replica[Controller] | None = None
# How often the webhook server looks for a renewed certificate (cert-manager renews well before expiry).
CERT_CHECK_SECONDS = 60.0


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's "last handled" diff base, kept empty: only change handlers (on.create/update/field) read it,
    and the controller has none (it takes raw watch events). Kopf builds one for every watch event anyway,
    a deep copy of the whole object, status included, then diffs it (several per cent of the controller's
    CPU in a burst of creates, profiled). tests/unit/test_kopf_settings.py fails if a change handler appears."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.diffbase_storage = NoDiffBase()
    # Restart watches that went silent (a dead connection would otherwise stall us).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 30
    if SETTINGS.peering:
        settings.peering.name = SETTINGS.peering
        settings.peering.priority = SETTINGS.priority
        # How long a replica's keep-alive counts: a standby takes over this long after the active
        # replica dies at the latest (Kopf's default is 60 s; keep-alives go 5-10 s before expiry).
        settings.peering.lifetime = SETTINGS.peering_lifetime
        settings.peering.mandatory = True
    else:
        settings.peering.standalone = True
    if SETTINGS.metrics_port:
        metrics.serve(SETTINGS.metrics_port, SETTINGS.metrics_address)
    # What a burst freed goes back to the system once it is over (controller/memory.py).
    memo.releaser = asyncio.create_task(memory.Releaser().run(), name="memory-release")
    if SETTINGS.webhook_port:
        serve_admission(settings, memo)
    if SETTINGS.web_port:
        kube = Kube()  # its own client: the page reads the API server, active or standby alike
        memo.web = await webview.serve(
            SETTINGS.web_port,
            SETTINGS.web_address,
            lambda: webview.collect(kube.list_all, kube.list_in, SETTINGS.namespaces),
            lambda: dt.datetime.now(dt.UTC),
        )
    # The handlers reach the Controller through the Replica, one object for the whole run (Kopf gives
    # each object a shallow copy of this memo): with peering it holds a Controller only while this
    # replica is the active one (controller/peering.py).
    replica: Replica[Controller] = Replica(lambda: Controller(SETTINGS))
    memo.replica = replica
    global REPLICA
    REPLICA = replica
    if SETTINGS.peering:
        PeeringMonitor(
            replica,
            name=SETTINGS.peering,
            identity=own_identity(),
            priority=SETTINGS.priority,
            namespaces=SETTINGS.namespaces,
            clusterwide=settings.peering.clusterwide,
        ).start()
    elif SETTINGS.shard_group:
        replica.resume(
            f"Active (shard group {SETTINGS.shard_group!r}: driving the devices whose Lease this replica holds)"
        )
    else:
        replica.resume("Active (standalone, no peering)")
    timeline.mark("Kopf startup handlers done")


def serve_admission(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Kopf's webhook server on --webhook-address:--webhook-port with the certificate in --webhook-cert-dir,
    re-read when cert-manager renews it. It opens its port only once Kopf has scanned the resources, so a
    connection refused means "not serving yet" rather than a 404. The chart or the tests register it."""
    from .admission import Admission  # importing it registered the handlers (controller/__main__.py)

    assert SETTINGS.webhook_cert_dir is not None  # settings.resolve refuses a port without a cert dir
    cert_dir = Path(SETTINGS.webhook_cert_dir)
    settings.admission.server = kopf.WebhookServer(
        addr=SETTINGS.webhook_address,
        port=SETTINGS.webhook_port,
        certfile=str(cert_dir / "tls.crt"),
        pkeyfile=str(cert_dir / "tls.key"),
        file_check_interval=CERT_CHECK_SECONDS,
    )
    clock = OffsetClock(SETTINGS.clock_offset_seconds, SETTINGS.clock_offset_file)
    memo.admission = Admission(Kube(), clock, SETTINGS.namespaces)
    memo.admission.start()  # the watch-fed cache lists each kind now, not at the first request


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    replica: Replica[Controller] | None = getattr(memo, "replica", None)
    if replica is not None:
        await replica.close()
    web = getattr(memo, "web", None)
    if web is not None:
        await web.cleanup()
    releaser: asyncio.Task[None] | None = getattr(memo, "releaser", None)
    if releaser is not None:
        releaser.cancel()

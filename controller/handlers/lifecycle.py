"""Operator start and stop: Kopf settings and the controller's shared parts."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kopf

from .. import metrics, webview
from ..kube import Kube
from ..peering import PeeringMonitor, Replica, own_identity
from ..runtime import Controller
from ..settings import Settings

SETTINGS = Settings()  # replaced by the CLI before kopf starts


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
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
    if SETTINGS.peering:
        PeeringMonitor(
            replica,
            name=SETTINGS.peering,
            identity=own_identity(),
            priority=SETTINGS.priority,
            namespaces=SETTINGS.namespaces,
            clusterwide=settings.peering.clusterwide,
        ).start()
    else:
        replica.resume("Active (standalone, no peering)")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    replica: Replica[Controller] | None = getattr(memo, "replica", None)
    if replica is not None:
        await replica.close()
    web = getattr(memo, "web", None)
    if web is not None:
        await web.cleanup()

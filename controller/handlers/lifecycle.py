"""Operator start and stop: Kopf settings and the controller's shared parts."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .. import metrics
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
        settings.peering.mandatory = True
    else:
        settings.peering.standalone = True
    if SETTINGS.metrics_port:
        metrics.serve(SETTINGS.metrics_port, SETTINGS.metrics_address)
    controller = Controller(SETTINGS)
    controller.start()
    memo.controller = controller


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.close()

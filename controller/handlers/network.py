"""Kopf handlers for NetworkDevice and NetworkService: decode the event, call the controller.

They use raw watch events (`on.event`) rather than Kopf's change handlers: the
controller is level-triggered and writes its own status and finalizer, so Kopf keeps
no per-object progress annotations and an object costs only the writes it needs.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION
from ..runtime import Controller


@kopf.on.event(GROUP, VERSION, "networkdevices")
async def network_device_event(event: Any, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    obj = dict(event["object"])
    if event["type"] == "DELETED":
        await controller.remove_device(obj["metadata"]["name"])
    else:
        await controller.upsert_device(obj)


@kopf.on.event(GROUP, VERSION, "networkservices")
async def network_service_event(event: Any, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    obj = dict(event["object"])
    if event["type"] == "DELETED":
        controller.remove_service(obj["metadata"]["namespace"], obj["metadata"]["name"])
    else:
        await controller.upsert_service(obj)

"""Kopf handlers for NetworkDevice and NetworkService: decode the event, call the controller.

They use raw watch events (`on.event`) rather than Kopf's change handlers: the
controller is level-triggered and writes its own status and finalizer, so Kopf keeps
no per-object progress annotations and an object costs only the writes it needs.
Events reach the Controller through the Replica (controller/peering.py), which drops
them while this replica stands by for another one.
"""

from __future__ import annotations

from typing import Any

import kopf

from .. import startup
from ..api import GROUP, VERSION
from ..peering import Replica, describe
from ..runtime import Controller


@kopf.on.event(GROUP, VERSION, "networkdevices")
async def network_device_event(event: Any, memo: Any, **_: Any) -> None:
    startup.mark("first NetworkDevice event")
    replica: Replica[Controller] = memo.replica
    obj = dict(event["object"])
    name = obj["metadata"]["name"]
    what = describe("NetworkDevice", obj, event["type"])
    if event["type"] == "DELETED":
        await replica.run(what, lambda c: c.remove_device(name))
    else:
        await replica.run(what, lambda c: c.upsert_device(obj))


@kopf.on.event(GROUP, VERSION, "networkservices")
async def network_service_event(event: Any, memo: Any, **_: Any) -> None:
    startup.mark("first NetworkService event")
    replica: Replica[Controller] = memo.replica
    obj = dict(event["object"])
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    what = describe("NetworkService", obj, event["type"])
    if event["type"] == "DELETED":
        await replica.run(what, lambda c: c.remove_service(namespace, name))
    else:
        await replica.run(what, lambda c: c.upsert_service(obj))

"""Kopf handlers for ProductOffering, Subscription and Invoice: decode the event, call the controller.

Like the network handlers they take raw watch events (`on.event`): the CommerceController keeps
indexes and reconciles level-triggered, writing its own status, finalizer and children. The
NetworkService events it needs reach it through runtime.Controller.upsert_service.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION
from ..runtime import Controller


@kopf.on.event(GROUP, VERSION, "productofferings")
async def product_offering_event(event: Any, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    obj = dict(event["object"])
    if event["type"] == "DELETED":
        controller.commerce.remove_offering(obj["metadata"]["name"])
    else:
        controller.commerce.upsert_offering(obj)


@kopf.on.event(GROUP, VERSION, "subscriptions")
async def subscription_event(event: Any, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    obj = dict(event["object"])
    if event["type"] == "DELETED":
        controller.commerce.remove_subscription(obj["metadata"]["namespace"], obj["metadata"]["name"])
    else:
        controller.commerce.upsert_subscription(obj)


@kopf.on.event(GROUP, VERSION, "invoices")
async def invoice_event(event: Any, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    obj = dict(event["object"])
    if event["type"] == "DELETED":
        controller.commerce.remove_invoice(obj["metadata"]["namespace"], obj["metadata"]["name"])
    else:
        controller.commerce.upsert_invoice(obj)

"""Kopf handlers for ProductOffering, BillingAccount, Subscription and Invoice: decode the event, call the controller.

Like the network handlers they take raw watch events (`on.event`): the CommerceController keeps
indexes and reconciles level-triggered, writing its own status, finalizer and children. The
NetworkService events it needs reach it through runtime.Controller.upsert_service. Events go
through the Replica (controller/peering.py), which drops them while this replica stands by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from .. import startup
from ..api import GROUP, VERSION
from ..commerce.runtime import CommerceController
from ..peering import Replica, describe
from ..runtime import Controller


@kopf.on.event(GROUP, VERSION, "productofferings")
async def product_offering_event(event: Any, memo: Any, **_: Any) -> None:
    startup.mark("first ProductOffering event")
    replica: Replica[Controller] = memo.replica
    obj = dict(event["object"])
    name = obj["metadata"]["name"]
    what = describe("ProductOffering", obj, event["type"])
    if event["type"] == "DELETED":
        await replica.run(what, lambda c: c.commerce_event(lambda cc: cc.remove_offering(name)))
    else:
        await replica.run(what, lambda c: c.commerce_event(lambda cc: cc.upsert_offering(obj)))


async def _namespaced(
    event: Any,
    memo: Any,
    kind: str,
    upsert: Callable[[CommerceController, dict[str, Any]], None],
    remove: Callable[[CommerceController, str, str], None],
) -> None:
    """A namespaced kind's watch event, handed to the commerce controller (through the Replica)."""
    startup.mark(f"first {kind} event")
    replica: Replica[Controller] = memo.replica
    obj = dict(event["object"])
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    what = describe(kind, obj, event["type"])
    if event["type"] == "DELETED":
        await replica.run(what, lambda c: c.commerce_event(lambda cc: remove(cc, namespace, name)))
    else:
        await replica.run(what, lambda c: c.commerce_event(lambda cc: upsert(cc, obj)))


@kopf.on.event(GROUP, VERSION, "subscriptions")
async def subscription_event(event: Any, memo: Any, **_: Any) -> None:
    await _namespaced(
        event, memo, "Subscription", CommerceController.upsert_subscription, CommerceController.remove_subscription
    )


@kopf.on.event(GROUP, VERSION, "invoices")
async def invoice_event(event: Any, memo: Any, **_: Any) -> None:
    await _namespaced(event, memo, "Invoice", CommerceController.upsert_invoice, CommerceController.remove_invoice)


@kopf.on.event(GROUP, VERSION, "billingaccounts")
async def billing_account_event(event: Any, memo: Any, **_: Any) -> None:
    await _namespaced(
        event, memo, "BillingAccount", CommerceController.upsert_account, CommerceController.remove_account
    )

"""TMF637 Product Inventory (product from Subscription) and TMF638 Service Inventory (service from
NetworkService), pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import account, catalog
from .resources import PART, Collection, Resource, characteristic, compact, customer, namespaced_id, object_id, ref

PRODUCT_BASE = "/tmf-api/productInventory/v4"
SERVICE_BASE = "/tmf-api/serviceInventory/v4"
ORDER_BASE = "/tmf-api/productOrderingManagement/v4"
# The productOrders placed on a Subscription through TMF622, recorded on it (no second database): a JSON
# list of {"n", "action", "orderDate", ...} (controller/tmf/ordering.py writes and reads them).
ORDER_ANNOTATION = "tmf.telco.intent.dev/product-orders"


def _characteristics(spec: Mapping[str, Any], keys: tuple[str, ...]) -> list[Resource]:
    out = []
    for key in keys:
        value = spec.get(key)
        if value is None:
            continue
        kind = "array" if isinstance(value, list) else "number" if isinstance(value, int) else "string"
        out.append(characteristic(key, value, kind))
    return out


def related_parties(namespace: str, spec: Mapping[str, Any]) -> list[Resource]:
    """The parties of the order; the customer is the namespace (one per customer), whatever else is named."""
    parties = [
        {"id": namespace, "name": p.get("name"), "role": p.get("role"), "@referredType": "Organization"}
        for p in spec.get("relatedParty") or []
    ]
    if not any(p["role"] == "customer" for p in parties):
        parties.append(customer(namespace))
    return parties


def billing_account_ref(namespace: str, spec: Mapping[str, Any]) -> Resource | None:
    if (named := spec.get("billingAccountRef")) is not None:
        return ref(f"{account.BASE}/billingAccount", namespaced_id(namespace, named["name"]), "BillingAccount")
    if (inline := spec.get("billingAccount")) is not None:  # deprecated inline account: no resource to link
        return {"id": inline["id"], "@referredType": "BillingAccount"}
    return None


def product(obj: Mapping[str, Any]) -> list[Resource]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj["metadata"]
    ns = meta["namespace"]
    pid = object_id(obj)
    offering = (spec.get("productOffering") or {}).get("name")
    service = (status.get("realizingService") or {}).get("name")
    orders = order_records(obj)
    return [
        compact(
            {
                "id": pid,
                "href": f"{PRODUCT_BASE}/product/{pid}",
                "name": meta["name"],
                "isBundle": False,
                "isCustomerVisible": True,
                "orderDate": meta.get("creationTimestamp"),
                "startDate": status.get("startDate"),
                "terminationDate": status.get("terminationDate"),
                "status": status.get("state"),
                "productOffering": ref(f"{catalog.BASE}/productOffering", offering, "ProductOffering", offering)
                if offering
                else None,
                "billingAccount": billing_account_ref(ns, spec),
                "relatedParty": related_parties(ns, spec),
                "productCharacteristic": _characteristics(
                    spec,
                    (
                        "endpoints",
                        "vrf",
                        "bandwidthMbps",
                        "requestedStartDate",
                        "requestedTerminationDate",
                        "desiredState",
                    ),
                ),
                "realizingService": [ref(f"{SERVICE_BASE}/service", namespaced_id(ns, service), "Service", service)]
                if service
                else None,
                "productOrderItem": [
                    {
                        "orderItemId": "1",
                        "orderItemAction": record["action"],
                        "productOrderId": order_id(pid, record),
                        "productOrderHref": f"{ORDER_BASE}/productOrder/{order_id(pid, record)}",
                        "@referredType": "ProductOrder",
                    }
                    for record in orders
                ],
                "@type": "Product",
            }
        )
    ]


def order_records(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The productOrders recorded on a Subscription, oldest first; an annotation edited into something
    else by hand is read as none (it is ours to write, and never trusted beyond its shape)."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(ORDER_ANNOTATION)
    if not text:
        return []
    try:
        records = json.loads(text)
    except ValueError:
        return []
    if not isinstance(records, list):
        return []
    return [
        r
        for r in records
        if isinstance(r, dict) and isinstance(r.get("n"), int) and r.get("action") in ("add", "modify", "delete")
    ]


def order_id(product_id: str, record: Mapping[str, Any]) -> str:
    """A productOrder's id: its Subscription's id and its sequence number there."""
    return f"{product_id}{PART}{record['n']}"


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def service(obj: Mapping[str, Any]) -> list[Resource]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj["metadata"]
    ns = meta["namespace"]
    sid = object_id(obj)
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Subscription"), None)
    ready = _condition(status, "Ready")
    devices = sorted({e["device"] for e in spec.get("endpoints") or [] if "device" in e})
    return [
        compact(
            {
                "id": sid,
                "href": f"{SERVICE_BASE}/service/{sid}",
                "name": meta["name"],
                "category": "CustomerFacingService",
                "serviceType": spec.get("serviceType"),
                "state": status.get("state"),
                "hasStarted": status.get("startDate") is not None,
                "isServiceEnabled": spec.get("adminState", "enabled") == "enabled",
                "isStateful": True,
                "startDate": status.get("startDate"),
                "serviceDate": meta.get("creationTimestamp"),
                "serviceCharacteristic": [
                    *_characteristics(spec, ("endpoints", "vrf", "adminState")),
                    *(
                        [characteristic("operatingStatus", status["operatingStatus"], "string")]
                        if status.get("operatingStatus")
                        else []
                    ),
                ],
                "relatedParty": [customer(ns)],
                "relatedEntity": [
                    {
                        **ref(f"{PRODUCT_BASE}/product", namespaced_id(ns, owner["name"]), "Product", owner["name"]),
                        "role": "realizes",
                    }
                ]
                if owner
                else None,
                "supportingResource": [
                    {"id": device, "name": device, "@referredType": "NetworkDevice"} for device in devices
                ],
                "note": [
                    {"text": ready["message"], "author": "telco-intent-controller", "date": ready["lastTransitionTime"]}
                ]
                if ready and ready.get("status") != "True" and ready.get("message") and ready.get("lastTransitionTime")
                else None,
                "@type": "Service",
            }
        )
    ]


PRODUCT = Collection(
    api="TMF637",
    base=PRODUCT_BASE,
    name="product",
    plural="subscriptions",
    namespaced=True,
    render=product,
    attributes=frozenset(
        {
            "id", "href", "name", "isBundle", "isCustomerVisible", "orderDate", "startDate", "terminationDate",
            "status", "productOffering", "billingAccount", "relatedParty", "productCharacteristic",
            "realizingService", "productOrderItem", "@type",
        }
    ),
)  # fmt: skip
SERVICE = Collection(
    api="TMF638",
    base=SERVICE_BASE,
    name="service",
    plural="networkservices",
    namespaced=True,
    render=service,
    attributes=frozenset(
        {
            "id", "href", "name", "category", "serviceType", "state", "hasStarted", "isServiceEnabled",
            "isStateful", "startDate", "serviceDate", "serviceCharacteristic", "relatedParty", "relatedEntity",
            "supportingResource", "note", "@type",
        }
    ),
)  # fmt: skip

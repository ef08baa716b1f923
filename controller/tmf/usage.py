"""TMF635 Usage Management: usage from a Subscription's usage meter (the octets measured per billing
period, not yet invoiced), pure. A product without usage pricing has no meter, hence no usage."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import inventory
from .resources import PART, Collection, Resource, compact, customer, object_id, ref

BASE = "/tmf-api/usageManagement/v4"


def _key(start: str) -> str:
    """A window's part key: its start as seconds since the epoch (the window's identity)."""
    return str(int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()))


def usages(obj: Mapping[str, Any]) -> list[Resource]:
    meta = obj["metadata"]
    ns = meta["namespace"]
    pid = object_id(obj)
    windows = (((obj.get("status") or {}).get("billing") or {}).get("usage") or {}).get("windows") or []
    out = []
    for window in windows:
        uid = f"{pid}{PART}{_key(window['start'])}"
        out.append(
            compact(
                {
                    "id": uid,
                    "href": f"{BASE}/usage/{uid}",
                    "description": f"octets measured from {window['start']} to {window['end']}",
                    "usageDate": window["end"],
                    "usageType": "data",
                    "status": "rated",  # measured and waiting for its period's invoice
                    "usageCharacteristic": [
                        {"name": "octets", "valueType": "integer", "value": int(window["octets"])},
                        {"name": "periodStart", "valueType": "dateTime", "value": window["start"]},
                        {"name": "periodEnd", "valueType": "dateTime", "value": window["end"]},
                    ],
                    "relatedParty": [customer(ns)],
                    "ratedProductUsage": [
                        {
                            "isBilled": False,
                            "productRef": ref(f"{inventory.PRODUCT_BASE}/product", pid, "Product", meta["name"]),
                        }
                    ],
                    "@type": "Usage",
                }
            )
        )
    return out


USAGE = Collection(
    api="TMF635",
    base=BASE,
    name="usage",
    plural="subscriptions",
    namespaced=True,
    render=usages,
    attributes=frozenset(
        {
            "id", "href", "description", "usageDate", "usageType", "status", "usageCharacteristic",
            "relatedParty", "ratedProductUsage", "@type",
        }
    ),
)  # fmt: skip
COLLECTIONS = (USAGE,)

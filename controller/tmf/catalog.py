"""TMF620 Product Catalog Management: productOffering from ProductOffering, pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .resources import Collection, Resource, compact, money, object_id

BASE = "/tmf-api/productCatalogManagement/v4"
PRICE_PERIOD = {"day": "day", "week": "week", "month": "month", "year": "year"}


def _price(price: Mapping[str, Any], offering_id: str, index: int) -> Resource:
    """An embedded ProductOfferingPriceRefOrValue: the custom resource keeps prices inside the offering."""
    return compact(
        {
            "id": f"{offering_id}~price-{index}",
            "name": price.get("name"),
            "priceType": price.get("priceType"),
            "recurringChargePeriod": PRICE_PERIOD.get(price.get("recurringChargePeriodType") or ""),
            "recurringChargePeriodLength": price.get("recurringChargePeriodLength")
            if price.get("priceType") == "recurring"
            else None,
            "price": {"taxIncludedAmount": money(price["price"])} if price.get("price") else None,
            "unitOfMeasure": {"amount": float(uom["amount"]), "units": uom["units"]}
            if (uom := price.get("unitOfMeasure"))
            else None,
            "validFor": price.get("validFor"),
            "@type": "ProductOfferingPrice",
        }
    )


def product_offering(obj: Mapping[str, Any]) -> list[Resource]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj["metadata"]
    oid = object_id(obj)
    candidate = spec.get("serviceCandidate") or {}
    return [
        compact(
            {
                "id": oid,
                "href": f"{BASE}/productOffering/{oid}",
                "name": spec.get("name") or meta["name"],
                "description": spec.get("description") or None,
                "version": spec.get("version"),
                "lifecycleStatus": spec.get("lifecycleStatus"),
                # isSellable as TMF620 means it: can be ordered now (the controller's judgement, with the clock).
                "isSellable": status.get("sellable") if status.get("sellable") is not None else spec.get("isSellable"),
                "statusReason": status.get("sellableReason"),
                "isBundle": False,
                "lastUpdate": meta.get("creationTimestamp"),
                "validFor": spec.get("validFor"),
                "productOfferingPrice": [
                    _price(p, oid, i) for i, p in enumerate(spec.get("productOfferingPrice") or [])
                ],
                "serviceCandidate": compact(
                    {
                        "id": candidate.get("serviceType"),
                        "name": candidate.get("serviceType"),
                        "@referredType": "ServiceCandidate",
                    }
                )
                if candidate
                else None,
                "@type": "ProductOffering",
            }
        )
    ]


PRODUCT_OFFERING = Collection(
    api="TMF620",
    base=BASE,
    name="productOffering",
    plural="productofferings",
    namespaced=False,
    render=product_offering,
    attributes=frozenset(
        {
            "id", "href", "name", "description", "version", "lifecycleStatus", "isSellable", "statusReason",
            "isBundle", "lastUpdate", "validFor", "productOfferingPrice", "serviceCandidate", "@type",
        }
    ),
)  # fmt: skip
COLLECTIONS = (PRODUCT_OFFERING,)

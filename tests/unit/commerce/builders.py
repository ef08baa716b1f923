"""Builders for the commerce tests: valid specs with overrides, and condition lookups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.api.productoffering import ProductOfferingSpec
from controller.api.subscription import SubscriptionSpec
from controller.commerce.lifecycle import ServiceObservation, SubscriptionInputs

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(minutes: float = 0, *, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def offering_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Fiber 100",
        "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
        "productOfferingPrice": [
            {
                "name": "Monthly fee",
                "priceType": "recurring",
                "recurringChargePeriodType": "month",
                "price": {"unit": "EUR", "value": "49.90"},
            }
        ],
    }
    doc.update(over)
    return doc


def offering(**over: Any) -> ProductOfferingSpec:
    return ProductOfferingSpec.model_validate(offering_doc(**over))


def endpoint(device: str = "leaf1", port: str = "Ethernet1", vlan: int = 100, ip: str | None = "192.0.2.1/30") -> dict:
    doc: dict[str, Any] = {"device": device, "port": port, "vlanId": vlan}
    if ip is not None:
        doc["ipv4Address"] = ip
    return doc


def subscription(**over: Any) -> SubscriptionSpec:
    doc: dict[str, Any] = {
        "productOffering": {"name": "fiber-100"},
        "billingAccount": {"id": "acme-1"},
        "endpoints": [endpoint()],
    }
    doc.update(over)
    return SubscriptionSpec.model_validate(doc)


def ready_service(since: datetime, **over: Any) -> ServiceObservation:
    fields: dict[str, Any] = {
        "exists": True,
        "ready": "True",
        "ready_reason": "Applied",
        "ready_message": "configured and verified on 1 endpoint(s)",
        "ready_since": since,
    }
    fields.update(over)
    return ServiceObservation(**fields)


def pending_service(**over: Any) -> ServiceObservation:
    fields: dict[str, Any] = {
        "exists": True,
        "ready": "False",
        "ready_reason": "DeviceUnreachable",
        "ready_message": "leaf1/Ethernet1.100: connection refused",
    }
    fields.update(over)
    return ServiceObservation(**fields)


def failed_service(since: datetime, **over: Any) -> ServiceObservation:
    fields: dict[str, Any] = {
        "exists": True,
        "ready": "False",
        "ready_reason": "PortNotFound",
        "ready_message": "leaf1/Ethernet1.100: port Ethernet1 does not exist on device leaf1",
        "degraded": True,
        "degraded_reason": "PortNotFound",
        "degraded_message": "leaf1/Ethernet1.100: port Ethernet1 does not exist on device leaf1",
        "degraded_since": since,
    }
    fields.update(over)
    return ServiceObservation(**fields)


def inputs(**over: Any) -> SubscriptionInputs:
    fields: dict[str, Any] = {
        "name": "site-a",
        "generation": 1,
        "spec": subscription(),
        "now": T0,
        "status": {},
        "offering": offering(),
    }
    fields.update(over)
    return SubscriptionInputs(**fields)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in status.get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    raise AssertionError(f"no {type_} condition in {status.get('conditions')}")

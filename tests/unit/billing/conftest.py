"""Builders shared by the billing unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.api.productoffering import ProductOfferingSpec
from controller.billing.events import SubscriptionRef
from controller.billing.invoice import BillingInput
from controller.billing.ledger import Ledger
from controller.billing.rating import Meter


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def offering(*prices: dict[str, Any], sla: dict[str, str] | None = None, **extra: Any) -> ProductOfferingSpec:
    spec: dict[str, Any] = {
        "name": "Fiber",
        "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
        "productOfferingPrice": list(prices) or [monthly("49.90")],
        **extra,
    }
    if sla:
        spec["serviceLevelAgreement"] = sla
    return ProductOfferingSpec.model_validate(spec)


def monthly(value: str, currency: str = "EUR", name: str = "Monthly fee", length: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "priceType": "recurring",
        "recurringChargePeriodType": "month",
        "recurringChargePeriodLength": length,
        "price": {"unit": currency, "value": value},
    }


def recurring(unit: str, value: str, currency: str = "EUR", name: str = "Fee", length: int = 1) -> dict[str, Any]:
    return {**monthly(value, currency, name, length), "recurringChargePeriodType": unit}


def one_time(value: str, currency: str = "EUR", name: str = "Setup") -> dict[str, Any]:
    return {"name": name, "priceType": "oneTime", "price": {"unit": currency, "value": value}}


def usage(value: str, units: str = "GB", amount: int = 1, currency: str = "EUR") -> dict[str, Any]:
    return {
        "name": "Traffic",
        "priceType": "usage",
        "unitOfMeasure": {"amount": amount, "units": units},
        "price": {"unit": currency, "value": value},
    }


def discount(
    *, percentage: str | None = None, value: str | None = None, start: str | None = None, end: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "Promo", "priceType": "discount"}
    if percentage is not None:
        out["percentage"] = percentage
    if value is not None:
        out["price"] = {"unit": "EUR", "value": value}
    valid = {k: v for k, v in (("startDateTime", start), ("endDateTime", end)) if v}
    if valid:
        out["validFor"] = valid
    return out


def ref(name: str = "fiber-1", account: str = "acme-001", namespace: str = "acme") -> SubscriptionRef:
    return SubscriptionRef(namespace, name, f"uid-{name}", account)


def billing_input(
    spec: ProductOfferingSpec,
    ledger: Ledger,
    *,
    name: str = "fiber-1",
    account: str = "acme-001",
    tz: str = "UTC",
    meter: Meter | None = None,
) -> BillingInput:
    return BillingInput(ref(name, account), "fiber", spec, ledger, meter or Meter(), tz)


def delivered(start: datetime, end: datetime | None = None) -> Ledger:
    """A ledger active and Ready from start (until end, if given)."""
    ledger = Ledger().record(start, subscription_active=True, service_ready=True)
    if end is not None:
        ledger = ledger.record(end, subscription_active=False)
    return ledger

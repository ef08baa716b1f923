"""The billing fields of Subscription and Invoice status: bounded, described, round-trip."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from controller import crdgen
from controller.api.invoice import BillLine, Invoice, InvoiceStatus
from controller.api.subscription import Subscription, SubscriptionBilling, SubscriptionStatus
from controller.billing import events as ev
from controller.billing import ledger as ledger_module
from controller.billing import outbox as outbox_module
from controller.billing.events import SubscriptionRef
from controller.billing.ledger import Ledger
from controller.billing.money import Money
from controller.billing.outbox import Outbox
from controller.billing.periods import Cycle
from controller.billing.rating import MAX_COUNTERS, MAX_WINDOWS, Meter
from tests.unit.billing.conftest import utc

# the longest names the API allows
REF = SubscriptionRef("n" * 63, "s" * 253, "6f1c1b9e-0000-4000-8000-000000000001", "a" * 63)


def worst_case_billing() -> SubscriptionBilling:
    """Every bounded list full, with the longest names."""
    ledger = Ledger().record(utc(2026, 1, 1), subscription_active=True, service_ready=True)
    t = utc(2026, 1, 1)
    while len(ledger.ready) < ledger_module.MAX_INTERVALS:
        t += timedelta(minutes=1)
        ledger = ledger.record(t, service_ready=False, subscription_active=False)
        t += timedelta(minutes=1)
        ledger = ledger.record(t, service_ready=True, subscription_active=True)
    cycle = Cycle.of("day", 1, "UTC")
    meter = Meter()
    for i in range(MAX_COUNTERS):
        meter = meter.observe(f"{'d' * 200}/{i}", 0, utc(2026, 1, 1), cycle)
        meter = meter.observe(f"{'d' * 200}/{i}", 10**19, utc(2026, 1, MAX_WINDOWS), cycle)
    box = Outbox()
    period = cycle.period_containing(utc(2026, 1, 1))
    for i in range(outbox_module.MAX_PENDING):
        period = cycle.next(period)
        amount = Money.of("999999999999999.99", "EUR")
        box = box.add([ev.charge_period(REF, "p" * 128, period, period, amount, amount, 86400 + i)], utc(2026, 3, 1))
    return SubscriptionBilling(ledger=ledger.to_status(), outbox=box.to_status(), usage=meter.to_status())


def test_worst_case_billing_status_fits_comfortably_in_an_object() -> None:
    billing = worst_case_billing()
    size = len(json.dumps(billing.model_dump(mode="json", exclude_none=True)))
    assert size < 256 * 1024, size  # etcd's limit is 1.5 MiB per object
    again = SubscriptionBilling.model_validate_json(billing.model_dump_json())
    assert again == billing


def test_bounds_are_enforced_by_the_models() -> None:
    billing = worst_case_billing()
    with pytest.raises(ValidationError):
        SubscriptionBilling.model_validate(
            {**billing.model_dump(mode="json"), "ledger": {"ready": [{"start": "2026-01-01T00:00:00Z"}] * 129}}
        )
    with pytest.raises(ValidationError):
        SubscriptionStatus.model_validate(
            {"billing": {"usage": {"counters": [{"key": "k", "octets": "-1", "time": "2026-01-01T00:00:00Z"}]}}}
        )


def test_crd_schema_bounds_every_new_list_and_string() -> None:
    def walk(node: dict, path: str) -> list[str]:
        problems = []
        if node.get("type") == "array" and "maxItems" not in node:
            problems.append(path)
        if (
            node.get("type") == "string"
            and "maxLength" not in node
            and node.get("format") != "date-time"
            and "enum" not in node
        ):
            problems.append(path)
        if node.get("type") == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(path)
        for name, sub in node.get("properties", {}).items():
            problems += walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                problems += walk(node[key], f"{path}[]")
        return problems

    sub = crdgen.openapi_schema(Subscription)["properties"]["status"]["properties"]["billing"]
    assert walk(sub, "status.billing") == []
    inv = crdgen.openapi_schema(Invoice)["properties"]["status"]["properties"]
    for name in ("amountPaid", "amountDue", "overdue", "settledDate", "contentDigest", "lines", "taxItem"):
        assert walk(inv[name], f"status.{name}") == [], name


def test_signed_amounts_on_bill_lines() -> None:
    line = BillLine.model_validate(
        {
            "id": "x",
            "type": "credit",
            "name": "SLA credit",
            "subscription": "acme/fiber-1",
            "periodCoverage": {"startDateTime": "2026-11-01T00:00:00Z"},
            "taxExcludedAmount": {"unit": "EUR", "value": "-4.99"},
        }
    )
    assert line.taxExcludedAmount.value == "-4.99"
    with pytest.raises(ValidationError):
        InvoiceStatus.model_validate({"amountDue": {"unit": "EUR", "value": "1e3"}})
    with pytest.raises(ValidationError):
        InvoiceStatus.model_validate({"contentDigest": "md5:abc"})

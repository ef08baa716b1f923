"""CR -> TMF resource mappings (pure), table-tested; the integration test checks them against the
published documents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.tmf import account, bill, catalog, inventory
from controller.tmf.resources import ParsedId, money, parse_id


def meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z", **extra}
    if namespace:
        out["namespace"] = namespace
    return out


@pytest.mark.parametrize(
    "text,namespaced,part,expected",
    [
        ("fiber-100", False, False, ParsedId(None, "fiber-100")),
        ("acme.hq", True, False, ParsedId("acme", "hq")),
        ("acme.hq.branch", True, False, ParsedId("acme", "hq.branch")),
        ("acme.inv~6f1c", True, True, ParsedId("acme", "inv", "6f1c")),
        ("acme.a~b~3", True, True, None),  # a name never holds ~
        ("hq", True, False, None),
        ("Acme.hq", True, False, None),
        ("acme.", True, False, None),
        ("../etc", False, False, None),
        ("acme.hq", True, True, None),
        ("a" * 64 + ".hq", True, False, None),
    ],
)
def test_ids_name_namespace_and_name(text: str, namespaced: bool, part: bool, expected: ParsedId | None) -> None:
    assert parse_id(text, namespaced=namespaced, part=part) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, None),
        ({"unit": "EUR", "value": "59.88"}, {"unit": "EUR", "value": 59.88}),
        ({"unit": "USD", "value": "-1.5"}, {"unit": "USD", "value": -1.5}),
    ],
)
def test_money_is_a_number_in_tmf(value: dict[str, str] | None, expected: dict[str, Any] | None) -> None:
    assert money(value) == expected


OFFERING = {
    "metadata": meta("fiber-100"),
    "spec": {
        "name": "Fiber 100",
        "lifecycleStatus": "Active",
        "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
        "productOfferingPrice": [
            {
                "name": "Monthly",
                "priceType": "recurring",
                "recurringChargePeriodType": "month",
                "recurringChargePeriodLength": 1,
                "price": {"unit": "EUR", "value": "49.90"},
            },
            {
                "name": "Per GB",
                "priceType": "usage",
                "unitOfMeasure": {"amount": 1, "units": "GB"},
                "price": {"unit": "EUR", "value": "0.10"},
            },
        ],
    },
    "status": {"sellable": False, "sellableReason": "outside validFor"},
}


def test_a_product_offering() -> None:
    (po,) = catalog.product_offering(OFFERING)
    assert po["id"] == "fiber-100" and po["href"] == "/tmf-api/productCatalogManagement/v4/productOffering/fiber-100"
    assert po["@type"] == "ProductOffering" and po["name"] == "Fiber 100"
    assert po["isSellable"] is False and po["statusReason"] == "outside validFor"
    monthly, usage = po["productOfferingPrice"]
    assert monthly["recurringChargePeriod"] == "month" and monthly["price"]["taxIncludedAmount"]["value"] == 49.9
    assert usage["unitOfMeasure"] == {"amount": 1.0, "units": "GB"} and "recurringChargePeriod" not in usage


SUBSCRIPTION = {
    "metadata": meta(
        "hq",
        "acme",
        annotations={
            inventory.ORDER_ANNOTATION: json.dumps([{"n": 1, "action": "add", "orderDate": "2026-01-01T00:00:00Z"}])
        },
    ),
    "spec": {
        "productOffering": {"name": "fiber-100"},
        "billingAccountRef": {"name": "acme-001"},
        "relatedParty": [{"role": "technical", "name": "Bob"}],
        "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 101}],
        "bandwidthMbps": 200,
    },
    "status": {"state": "active", "startDate": "2026-01-02T00:00:00Z", "realizingService": {"name": "hq"}},
}


def test_a_product_from_a_subscription() -> None:
    (p,) = inventory.product(SUBSCRIPTION)
    assert p["id"] == "acme.hq" and p["status"] == "active" and p["startDate"] == "2026-01-02T00:00:00Z"
    assert p["productOffering"]["id"] == "fiber-100"
    assert p["billingAccount"] == {
        "id": "acme.acme-001",
        "href": "/tmf-api/accountManagement/v4/billingAccount/acme.acme-001",
        "@referredType": "BillingAccount",
    }
    roles = {(r["role"], r["id"]) for r in p["relatedParty"]}
    assert roles == {("technical", "acme"), ("customer", "acme")}  # the namespace is the customer
    chars = {c["name"]: c["value"] for c in p["productCharacteristic"]}
    assert chars == {
        "endpoints": SUBSCRIPTION["spec"]["endpoints"],
        "bandwidthMbps": 200,
    }
    assert p["realizingService"][0]["id"] == "acme.hq"
    assert p["productOrderItem"][0]["productOrderId"] == "acme.hq~1"


@pytest.mark.parametrize(
    "annotation", ["not json", "{}", '[{"n": "1", "action": "add"}]', '[{"n": 1, "action": "steal"}]']
)
def test_a_hand_edited_order_annotation_reads_as_no_orders(annotation: str) -> None:
    obj = {**SUBSCRIPTION, "metadata": meta("hq", "acme", annotations={inventory.ORDER_ANNOTATION: annotation})}
    assert inventory.order_records(obj) == []


def test_a_deprecated_inline_account_is_referenced_without_a_link() -> None:
    spec = {**SUBSCRIPTION["spec"], "billingAccount": {"id": "legacy-7"}}
    del spec["billingAccountRef"]
    (p,) = inventory.product({**SUBSCRIPTION, "spec": spec})
    assert p["billingAccount"] == {"id": "legacy-7", "@referredType": "BillingAccount"}


def test_a_service_from_a_network_service() -> None:
    obj = {
        "metadata": meta("hq", "acme", ownerReferences=[{"kind": "Subscription", "name": "hq"}]),
        "spec": {
            "serviceType": "l3vpn",
            "vrf": "blue",
            "adminState": "disabled",
            "endpoints": [
                {"device": "pe2", "port": "Ethernet1", "vlanId": 5},
                {"device": "pe1", "port": "Ethernet1", "vlanId": 5},
            ],
        },
        "status": {
            "state": "inactive",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "message": "device down",
                    "lastTransitionTime": "2026-01-03T00:00:00Z",
                }
            ],
        },
    }
    (s,) = inventory.service(obj)
    assert s["id"] == "acme.hq" and s["state"] == "inactive" and s["isServiceEnabled"] is False
    assert s["hasStarted"] is False
    assert [r["id"] for r in s["supportingResource"]] == ["pe1", "pe2"]
    assert s["relatedEntity"][0]["id"] == "acme.hq" and s["relatedEntity"][0]["role"] == "realizes"
    assert s["note"] == [{"text": "device down", "author": "telco-intent-controller", "date": "2026-01-03T00:00:00Z"}]


def test_a_billing_account() -> None:
    obj = {
        "metadata": meta("acme-001", "acme"),
        "spec": {
            "name": "Acme",
            "accountType": "business",
            "state": "Suspended",
            "paymentPlan": {"planType": "prepaid"},
            "contact": [
                {
                    "contactName": "AP",
                    "contactType": "billing",
                    "contactMedium": [{"mediumType": "phone", "value": "+33 1"}],
                }
            ],
            "creditLimit": {"unit": "EUR", "value": "10"},
        },
        "status": {"accountBalance": [{"balanceType": "credit", "amount": {"unit": "EUR", "value": "-3.5"}}]},
    }
    (a,) = account.billing_account(obj)
    assert a["id"] == "acme.acme-001" and a["state"] == "Suspended" and a["relatedParty"][0]["id"] == "acme"
    assert a["contact"][0]["contactMedium"] == [{"mediumType": "phone", "characteristic": {"phoneNumber": "+33 1"}}]
    assert a["accountBalance"][0]["amount"] == {"unit": "EUR", "value": -3.5}
    assert a["creditLimit"] == {"unit": "EUR", "value": 10.0} and a["paymentPlan"][0]["planType"] == "prepaid"


INVOICE = {
    "metadata": meta("inv-1", "acme"),
    "spec": {
        "billingAccount": "acme-001",
        "billingPeriod": {"startDateTime": "2026-01-01T00:00:00Z", "endDateTime": "2026-02-01T00:00:00Z"},
    },
    "status": {
        "state": "partiallyPaid",
        "billNo": "A-1",
        "amountDue": {"unit": "EUR", "value": "10.00"},
        "taxItem": [{"taxCategory": "VAT", "taxRate": "5.5", "taxAmount": {"unit": "EUR", "value": "1.00"}}],
        "lines": [
            {
                "id": "l1",
                "type": "recurringCharge",
                "name": "Monthly",
                "subscription": "acme/hq",
                "periodCoverage": {"startDateTime": "2026-01-01T00:00:00Z"},
                "taxExcludedAmount": {"unit": "EUR", "value": "9"},
            },
            {
                "id": "l2",
                "type": "credit",
                "name": "SLA credit",
                "subscription": "acme/hq",
                "periodCoverage": {},
                "taxExcludedAmount": {"unit": "EUR", "value": "-1"},
            },
        ],
    },
}


def test_a_customer_bill_and_its_rates() -> None:
    (b,) = bill.customer_bill(INVOICE)
    assert b["id"] == "acme.inv-1" and b["state"] == "partiallyPaid" and b["billNo"] == "A-1"
    assert b["taxItem"] == [{"taxCategory": "VAT", "taxRate": 5.5, "taxAmount": {"unit": "EUR", "value": 1.0}}]
    assert b["billingAccount"]["id"] == "acme.acme-001"
    rates = bill.applied_rates(INVOICE)
    assert [r["id"] for r in rates] == ["acme.inv-1~l1", "acme.inv-1~l2"]
    assert all(r["isBilled"] and r["bill"]["id"] == "acme.inv-1" and r["product"]["id"] == "acme.hq" for r in rates)
    account_line = {**INVOICE["status"]["lines"][0], "id": "l3", "subscription": ""}
    carried = {**INVOICE, "status": {**INVOICE["status"], "lines": [account_line]}}
    assert "product" not in bill.applied_rates(carried)[0]
    draft = {**INVOICE, "status": {**INVOICE["status"], "state": "new"}}
    assert not any(r["isBilled"] for r in bill.applied_rates(draft))

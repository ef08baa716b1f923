"""TMF678 Customer Bill Management: customerBill from Invoice, appliedCustomerBillingRate from its lines,
pure."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from . import inventory
from .resources import PART, Collection, Resource, compact, customer, money, namespaced_id, object_id, ref

BASE = "/tmf-api/customerBillManagement/v4"
ACCOUNT_BASE = "/tmf-api/accountManagement/v4"


def _account(namespace: str, spec: Mapping[str, Any]) -> Resource | None:
    name = spec.get("billingAccount")
    return ref(f"{ACCOUNT_BASE}/billingAccount", namespaced_id(namespace, name), "BillingAccount") if name else None


def customer_bill(obj: Mapping[str, Any]) -> list[Resource]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj["metadata"]
    ns = meta["namespace"]
    bid = object_id(obj)
    return [
        compact(
            {
                "id": bid,
                "href": f"{BASE}/customerBill/{bid}",
                "billNo": status.get("billNo"),
                "billDate": status.get("billDate"),
                "paymentDueDate": status.get("paymentDueDate"),
                "lastUpdate": meta.get("creationTimestamp"),
                "runType": spec.get("runType"),
                "category": "normal",
                "state": status.get("state"),
                "billingAccount": _account(ns, spec),
                "billingPeriod": spec.get("billingPeriod"),
                "amountDue": money(status.get("amountDue")),
                "remainingAmount": money(status.get("amountDue")),
                "taxExcludedAmount": money(status.get("taxExcludedAmount")),
                "taxIncludedAmount": money(status.get("taxIncludedAmount")),
                "taxItem": [
                    {
                        "taxCategory": t["taxCategory"],
                        "taxRate": float(Decimal(t["taxRate"])),
                        "taxAmount": money(t["taxAmount"]),
                    }
                    for t in status.get("taxItem") or []
                ],
                "relatedParty": [customer(ns)],
                "@type": "CustomerBill",
            }
        )
    ]


def applied_rates(obj: Mapping[str, Any]) -> list[Resource]:
    """One appliedCustomerBillingRate per bill line of an issued invoice (a draft has none to show)."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj["metadata"]
    ns = meta["namespace"]
    bid = object_id(obj)
    issued = status.get("state") not in (None, "new", "onHold")
    out = []
    for line in status.get("lines") or []:
        rid = f"{bid}{PART}{line['id']}"
        # the line names its Subscription as namespace/name; empty on an account-level line
        sub_ns, _, sub_name = (line.get("subscription") or "").rpartition("/")
        out.append(
            compact(
                {
                    "id": rid,
                    "href": f"{BASE}/appliedCustomerBillingRate/{rid}",
                    "name": line.get("name"),
                    "type": line.get("type"),
                    "date": status.get("billDate"),
                    "isBilled": issued,
                    "periodCoverage": line.get("periodCoverage"),
                    "taxExcludedAmount": money(line.get("taxExcludedAmount")),
                    "bill": {"id": bid, "href": f"{BASE}/customerBill/{bid}", "@referredType": "CustomerBill"},
                    "billingAccount": _account(ns, spec),
                    "product": ref(
                        f"{inventory.PRODUCT_BASE}/product", namespaced_id(sub_ns or ns, sub_name), "Product", sub_name
                    )
                    if sub_name
                    else None,
                    "@type": "AppliedCustomerBillingRate",
                }
            )
        )
    return out


CUSTOMER_BILL = Collection(
    api="TMF678",
    base=BASE,
    name="customerBill",
    plural="invoices",
    namespaced=True,
    render=customer_bill,
    attributes=frozenset(
        {
            "id", "href", "billNo", "billDate", "paymentDueDate", "lastUpdate", "runType", "category", "state",
            "billingAccount", "billingPeriod", "amountDue", "remainingAmount", "taxExcludedAmount",
            "taxIncludedAmount", "taxItem", "relatedParty", "@type",
        }
    ),
)  # fmt: skip
APPLIED_RATE = Collection(
    api="TMF678",
    base=BASE,
    name="appliedCustomerBillingRate",
    plural="invoices",
    namespaced=True,
    render=applied_rates,
    attributes=frozenset(
        {
            "id", "href", "name", "type", "date", "isBilled", "periodCoverage", "taxExcludedAmount", "bill",
            "billingAccount", "product", "@type",
        }
    ),
)  # fmt: skip
COLLECTIONS = (CUSTOMER_BILL, APPLIED_RATE)

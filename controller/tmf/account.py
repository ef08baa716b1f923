"""TMF666 Account Management: billingAccount from BillingAccount, pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .resources import Collection, Resource, compact, customer, money, object_id

BASE = "/tmf-api/accountManagement/v4"


def billing_account(obj: Mapping[str, Any]) -> list[Resource]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj["metadata"]
    ns = meta["namespace"]
    aid = object_id(obj)
    plan = spec.get("paymentPlan")
    since = {"startDateTime": meta.get("creationTimestamp")}  # TMF666 requires a validFor the CR does not keep
    return [
        compact(
            {
                "id": aid,
                "href": f"{BASE}/billingAccount/{aid}",
                "name": spec.get("name") or meta["name"],
                "accountType": spec.get("accountType"),
                "state": spec.get("state"),
                "lastModified": meta.get("creationTimestamp"),
                # the customer is the namespace, one per customer (TMF666 requires a related party)
                "relatedParty": [customer(ns)],
                "contact": [
                    compact(
                        {
                            "contactName": c.get("contactName"),
                            "contactType": c.get("contactType"),
                            "validFor": since,
                            "contactMedium": [
                                {"mediumType": m["mediumType"], "characteristic": _medium(m)}
                                for m in c.get("contactMedium") or []
                            ],
                        }
                    )
                    for c in spec.get("contact") or []
                ],
                "creditLimit": money(spec.get("creditLimit")),
                "accountBalance": [
                    {
                        "balanceType": b["balanceType"],
                        "amount": money(b["amount"]),
                        "validFor": since,
                    }
                    for b in status.get("accountBalance") or []
                ],
                "paymentPlan": [{"planType": plan.get("planType"), "numberOfPayments": 1, "@type": "PaymentPlan"}]
                if plan
                else None,
                "taxExemption": [
                    compact(
                        {
                            "issuingJurisdiction": t.get("issuingJurisdiction"),
                            "certificateNumber": t.get("certificateNumber"),
                            "reason": t.get("reason"),
                            "validFor": t.get("validFor") or since,
                        }
                    )
                    for t in spec.get("taxExemption") or []
                ],
                "@type": "BillingAccount",
            }
        )
    ]


def _medium(medium: Mapping[str, Any]) -> Resource:
    key = {"email": "emailAddress", "phone": "phoneNumber", "postalAddress": "street1"}[medium["mediumType"]]
    return {key: medium["value"]}


BILLING_ACCOUNT = Collection(
    api="TMF666",
    base=BASE,
    name="billingAccount",
    plural="billingaccounts",
    namespaced=True,
    render=billing_account,
    attributes=frozenset(
        {
            "id", "href", "name", "accountType", "state", "lastModified", "relatedParty", "contact",
            "creditLimit", "accountBalance", "paymentPlan", "taxExemption", "@type",
        }
    ),
)  # fmt: skip
COLLECTIONS = (BILLING_ACCOUNT,)

"""The read-only web page and the NOT READY table: what a person sees, from the table of live objects."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from controller.status import not_ready, render
from controller.webview import page
from tests.gitops_cases import DEVICES, INVOICES, SERVICES, SUBSCRIPTIONS, T0, Case


def named(case: Case, name: str, namespace: str | None = "acme", **spec: Any) -> dict[str, Any]:
    obj = {**case.obj, "metadata": {**case.obj["metadata"], "name": name}}
    if namespace is None:
        obj["metadata"].pop("namespace", None)
    obj["spec"] = {**obj.get("spec", {}), **spec}
    return obj


def case(cases: list[Case], name: str) -> Case:
    return next(c for c in cases if c.name == name)


ENDPOINT = [{"device": "pe1", "port": "Ethernet1", "vlanId": 101}]
SUB_SPEC = {
    "productOffering": {"name": "fiber-100"},
    "billingAccount": {"id": "acme-1"},
    "endpoints": ENDPOINT,
    "relatedParty": [{"role": "customer", "name": "ACME <Corp>"}],
}
ITEMS = {
    "productofferings": [],
    "subscriptions": [
        named(case(SUBSCRIPTIONS, "subscription-active"), "hq", **SUB_SPEC),
        named(case(SUBSCRIPTIONS, "subscription-offering-missing"), "branch", **SUB_SPEC),
    ],
    "networkservices": [named(case(SERVICES, "service-applied"), "hq", endpoints=ENDPOINT)],
    "networkdevices": [
        named(case(DEVICES, "device-in-sync"), "pe1", None, address="192.0.2.11"),
        named(case(DEVICES, "device-unreachable"), "pe2", None, address="192.0.2.12"),
    ],
    "invoices": [named(case(INVOICES, "invoice-sent"), "acme-1-2026-11", billingAccount="acme-1")],
}


def text_of(page_html: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, whitespace collapsed."""
    body = page_html[page_html.index("<body>") :]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_not_ready_names_each_object_with_what_to_do() -> None:
    rows = {(kind, name): (reason, message) for kind, name, reason, message in not_ready(ITEMS)}
    assert set(rows) == {("Subscription", "acme/branch"), ("NetworkDevice", "pe2")}
    assert rows[("Subscription", "acme/branch")][0] == "OfferingNotFound"
    assert "create the ProductOffering" in rows[("Subscription", "acme/branch")][1]
    assert "check spec.address" in rows[("NetworkDevice", "pe2")][1]
    assert "NOT READY" in render(ITEMS) and "OfferingNotFound" in render(ITEMS)


def test_the_page_shows_customers_devices_and_what_is_not_ready() -> None:
    rendered = page(ITEMS, T0)
    assert "<script" not in rendered and "ACME &lt;Corp&gt;" in rendered, "escaped, no script"
    seen = text_of(rendered)
    customer = seen[seen.index("ACME <Corp>") : seen.index("Devices")]
    assert "acme/hq fiber-100 active True Active active running" in customer
    assert "acme/branch fiber-100 created False OfferingNotFound no service" in customer
    assert "acme/acme-1-2026-11 sent 59.88 EUR" in customer, "the open invoice of the customer's account"
    devices = seen[seen.index("Devices") : seen.index("Not Ready")]
    assert "pe1 Ready True (Connected)" in devices and "Ethernet1.101 acme/hq True Applied" in devices
    assert "pe2 Ready False (Unreachable)" in devices
    stuck = seen[seen.index("Not Ready") :]
    assert "Subscription acme/branch OfferingNotFound" in stuck and "NetworkDevice pe2 Unreachable" in stuck
    assert dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") in seen


def test_a_subscription_on_a_billing_account_shows_with_that_accounts_open_bills() -> None:
    by_ref = {k: v for k, v in SUB_SPEC.items() if k not in ("billingAccount", "relatedParty")}
    sub = named(case(SUBSCRIPTIONS, "subscription-active"), "kiosk", **by_ref, billingAccountRef={"name": "acme-2"})
    sub["spec"].pop("billingAccount", None)
    bill = named(case(INVOICES, "invoice-sent"), "acme-2-2026-11", billingAccount="acme-2")
    seen = text_of(page({**ITEMS, "subscriptions": [sub], "invoices": [bill]}, T0))
    customer = seen[seen.index("account acme-2") : seen.index("Devices")]
    assert "acme/kiosk fiber-100 active" in customer and "acme/acme-2-2026-11 sent 59.88 EUR" in customer
    assert "acme-2" in render({**ITEMS, "subscriptions": [sub], "invoices": [bill]})

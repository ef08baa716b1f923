"""End to end through the TM Forum APIs: the controller serves them (--tmf-port) beside its reconcilers,
on a strict simulated router. A productOrder POSTed over HTTPS becomes a Subscription, the network is
configured, the order completes, registered listeners receive ProductOrderStateChangeEvent and
ProductStateChangeEvent, and the bill appears in TMF678 (each answer and notification validated
against the published documents).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes
import pytest

from localcluster.cluster import free_port
from localcluster.webhook import serving_certificate
from tests.harness import GROUP, VERSION, condition, registered_webhook, wait_for
from tests.integration.test_commerce import subscription
from tests.reliability.rig import Rig, rig
from tests.support.tmf_client import Client
from tests.support.tmf_listener import Listener
from tests.support.tmf_spec import contract
from tests.unit.commerce.builders import offering_doc

PREFIX = "tmfe"
DEVICE = "tmfe-r1"
ORDERING = "/tmf-api/productOrderingManagement/v4"
PRODUCTS = "/tmf-api/productInventory/v4"
BILLS = "/tmf-api/customerBillManagement/v4"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    directory = tmp_path_factory.mktemp("tmfe-certs")
    return directory, serving_certificate(directory)


@pytest.fixture(scope="module")
def r(
    kubeconfig: Path, crds: Any, tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, bytes]
) -> Iterator[Rig]:
    port = free_port()
    # billing passes every 2 s: the bill is issued as soon as its period ends
    args = ("--tmf-port", str(port), "--tmf-cert-dir", str(certs[0]), "--billing-interval-seconds", "2")
    with rig(
        kubeconfig, tmp_path_factory.mktemp("tmfe"), PREFIX, (DEVICE,), controller=False, controller_args=args
    ) as the_rig:
        the_rig.start_controller(webhook=True)  # the admission webhook too (registered by the test needing it)
        the_rig.tmf_port = port  # type: ignore[attr-defined]
        yield the_rig


def partner_token(r: Rig, account: str = "tmfe-partner") -> str:
    """A ServiceAccount allowed to order, read and watch in the rig's namespace."""
    ns = r.namespace
    rbac = kubernetes.client.RbacAuthorizationV1Api(r.api.client)
    r.api.core.create_namespaced_service_account(ns, {"metadata": {"name": account}})
    verbs = ["get", "list", "watch", "create", "patch"]
    kinds = ["subscriptions", "networkservices", "billingaccounts", "invoices"]
    rbac.create_namespaced_role(
        ns,
        {"metadata": {"name": account}, "rules": [{"apiGroups": [GROUP], "resources": kinds, "verbs": verbs}]},
    )
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": subject,
        },
    )
    token = r.api.core.create_namespaced_service_account_token(account, ns, {"spec": {"expirationSeconds": 3600}})
    return str(token.status.token)


def conforms(api_name: str, body: dict[str, Any]) -> None:
    doc = contract().docs[api_name]
    jsonschema.Draft4Validator(
        {"$ref": f"#/definitions/{body['eventType']}", "definitions": doc["definitions"]}
    ).validate(body)


def test_an_order_over_http_is_provisioned_completed_notified_and_billed(r: Rig, certs: tuple[Path, bytes]) -> None:
    ns = r.namespace
    offering, account, name = "tmfe-fiber", "tmfe-acct", "tmfe-site"
    r.api.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ProductOffering",
            "metadata": {"name": offering},
            "spec": offering_doc(lifecycleStatus="Active"),
        }
    )
    r.api.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BillingAccount",
            "metadata": {"name": account, "namespace": ns},
            "spec": {"name": "TMF E2E Corp", "currency": "EUR", "timeZone": "UTC"},
        }
    )
    client = Client(r.tmf_port, certs[1], partner_token(r))  # type: ignore[attr-defined]
    wait_for("the TMF APIs up", lambda: _up(client), 30)
    listener = Listener()
    hubs: list[str] = []
    try:
        for base, query in (
            (ORDERING, "eventType=ProductOrderStateChangeEvent"),
            (PRODUCTS, "eventType=ProductStateChangeEvent"),
        ):
            registered = client.call("POST", f"{base}/hub", {"callback": listener.url, "query": query})
            assert registered.status == 201
            hubs.append(f"{base}/hub/{registered.body['id']}")
        order = client.call(
            "POST",
            f"{ORDERING}/productOrder",
            {
                "billingAccount": {"id": f"{ns}.{account}"},
                "productOrderItem": [
                    {
                        "id": "1",
                        "action": "add",
                        "productOffering": {"id": offering},
                        "product": {
                            "name": name,
                            "productCharacteristic": [
                                {
                                    "name": "endpoints",
                                    "value": [
                                        {
                                            "device": DEVICE,
                                            "port": "Ethernet1",
                                            "vlanId": 801,
                                            "ipv4Address": "100.80.1.1/30",
                                        }
                                    ],
                                }
                            ],
                        },
                    }
                ],
            },
        )
        assert order.status == 201, order.body
        path = f"{ORDERING}/productOrder/{order.body['id']}"
        wait_for("the order completed", lambda: client.call("GET", path).body["state"] == "completed", 60)
        sub = r.api.get("subscriptions", name, ns)
        assert sub is not None and sub["status"]["state"] == "active"
        service = r.api.get("networkservices", name, ns)
        assert condition(service, "Ready")["status"] == "True"  # type: ignore[index]  # configured on the router
        product = client.call("GET", f"{PRODUCTS}/product/{ns}.{name}").body
        assert product["status"] == "active" and product["realizingService"][0]["id"] == f"{ns}.{name}"

        def notified(type_: str, test: Any) -> list[dict[str, Any]]:
            return [e for e in listener.of_type(type_) if test(e)]

        wait_for(
            "ProductOrderStateChangeEvent completed",
            lambda: notified(
                "ProductOrderStateChangeEvent", lambda e: e["event"]["productOrder"]["state"] == "completed"
            ),
            30,
        )
        wait_for(
            "ProductStateChangeEvent active",
            lambda: notified("ProductStateChangeEvent", lambda e: e["event"]["product"]["status"] == "active"),
            30,
        )
        for e in listener.of_type("ProductOrderStateChangeEvent"):
            conforms("TMF622", e)
        for e in listener.of_type("ProductStateChangeEvent"):
            conforms("TMF637", e)
        ids = [e["eventId"] for _, e in listener.received]
        assert len(ids) == len(set(ids)), "no event delivered twice"

        # a bill for the account, over a window the subscription was active in, appears in TMF678
        start = datetime.fromisoformat(sub["status"]["startDate"]) - timedelta(minutes=1)
        end = (max(start + timedelta(minutes=1, seconds=8), datetime.now(UTC) + timedelta(seconds=4))).replace(
            microsecond=0
        )
        invoice = "tmfe-bill"
        r.api.apply(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Invoice",
                "metadata": {"name": invoice, "namespace": ns},
                "spec": {
                    "billingAccount": account,
                    "billingPeriod": {
                        "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                },
            }
        )
        bill_path = f"{BILLS}/customerBill/{ns}.{invoice}"

        def issued() -> bool:
            got = client.call("GET", bill_path, check=False)
            return got.status == 200 and got.body.get("state") not in (None, "new", "onHold")

        try:
            wait_for("the customerBill issued", issued, 60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; invoice: {r.api.get('invoices', invoice, ns)}") from None
        bill = client.call("GET", bill_path).body
        assert bill["billingAccount"]["id"] == f"{ns}.{account}" and bill["amountDue"]["unit"] == "EUR"
        rates = client.call("GET", f"{BILLS}/appliedCustomerBillingRate?product.id={ns}.{name}").body
        assert rates, json.dumps((r.api.get("invoices", invoice, ns) or {}).get("status"))
        assert all(rate["bill"]["id"] == f"{ns}.{invoice}" for rate in rates)

        # and the product is terminated through the API too
        ended = client.call(
            "POST",
            f"{ORDERING}/productOrder",
            {"productOrderItem": [{"id": "1", "action": "delete", "product": {"id": f"{ns}.{name}"}}]},
        )
        assert ended.status == 201
        wait_for(
            "the delete order completed",
            lambda: client.call("GET", f"{ORDERING}/productOrder/{ended.body['id']}").body["state"] == "completed",
            60,
        )
    finally:
        for hub in hubs:
            client.call("DELETE", hub)
        listener.close()
        r.api.delete("subscriptions", name, ns)
        r.api.delete("productofferings", offering)


def _up(client: Client) -> bool:
    try:
        return client.call("GET", f"{PRODUCTS}/product").status == 200
    except OSError:
        return False


def _denied_by_webhook(r: Rig, body: dict[str, Any]) -> bool:
    ns = body["metadata"]["namespace"]
    try:
        r.api.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "subscriptions", body, dry_run="All")
    except kubernetes.client.ApiException as exc:
        return "denied the request" in str(exc.body)
    return False


def test_an_order_the_admission_webhook_refuses_is_a_422_naming_why(r: Rig, certs: tuple[Path, bytes]) -> None:
    """Orders are written through the Kubernetes API: the validating webhook judges them like any apply."""
    ns = r.namespace
    client = Client(r.tmf_port, certs[1], partner_token(r, "tmfe-webhook"))  # type: ignore[attr-defined]
    wait_for("the TMF APIs up", lambda: _up(client), 30)
    assert r.controller is not None
    order = {
        "billingAccount": {"id": f"{ns}.tmfe-acct"},
        "productOrderItem": [
            {
                "id": "1",
                "action": "add",
                "productOffering": {"id": "tmfe-no-such-offering"},
                "product": {
                    "name": "tmfe-refused",
                    "productCharacteristic": [
                        {"name": "endpoints", "value": [{"device": DEVICE, "port": "Ethernet2", "vlanId": 802}]}
                    ],
                },
            }
        ],
    }
    with registered_webhook(r.api, r.controller, "tmfe-webhook"):
        # The API server takes up a new webhook configuration a moment after it is created: order only
        # once a server dry run of such a Subscription is refused by it.
        probe = subscription(ns, "tmfe-probe", "tmfe-no-such-offering", "tmfe-acct", DEVICE, "Ethernet2", 803)
        wait_for("the webhook judging Subscriptions", lambda: _denied_by_webhook(r, probe), 30)
        refused = client.call("POST", f"{ORDERING}/productOrder", order)
    assert refused.status == 422, refused.body
    assert "tmfe-no-such-offering does not exist" in refused.body["message"], refused.body
    assert r.api.get("subscriptions", "tmfe-refused", ns) is None

"""The TM Forum Open API facade against the real local API server: every operation it serves, each
answer validated against the published documents (docs/tmf/), Kubernetes doing the authentication
(TokenReview) and authorization (SubjectAccessReview), and hostile requests refused with a 4xx,
nothing stored.

No controller runs here: the test writes the objects' status itself (as the controller would), so the
mapping of each state is exercised; tests/integration/test_tmf_e2e.py runs the whole order through one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from controller.tmf.hubs import delivered_at
from localcluster.webhook import serving_certificate
from tests.harness import GROUP, VERSION, Api, wait_for
from tests.kube import Kubectl
from tests.support.tmf_client import Answer, Client, FacadeThread
from tests.support.tmf_spec import contract
from tests.unit.commerce.builders import offering_doc

ACME, GLOBEX, PARTNERS = "tmf-acme", "tmf-globex", "tmf-partners"
OFFERING = "tmf-fiber-100"
NOW = "2026-01-05T10:00:00Z"  # a fixed instant: statuses carry recorded times, none depends on today
CATALOG = "/tmf-api/productCatalogManagement/v4"
ORDERING = "/tmf-api/productOrderingManagement/v4"
PRODUCTS = "/tmf-api/productInventory/v4"
SERVICES = "/tmf-api/serviceInventory/v4"
ACCOUNTS = "/tmf-api/accountManagement/v4"
BILLS = "/tmf-api/customerBillManagement/v4"
USAGE = "/tmf-api/usageManagement/v4"
READS = (
    f"{CATALOG}/productOffering",
    f"{PRODUCTS}/product",
    f"{SERVICES}/service",
    f"{ACCOUNTS}/billingAccount",
    f"{BILLS}/customerBill",
    f"{BILLS}/appliedCustomerBillingRate",
    f"{ORDERING}/productOrder",
    f"{USAGE}/usage",
)
KINDS = ["productofferings", "subscriptions", "networkservices", "billingaccounts", "invoices"]


def _obj(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}


def _cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW}


def set_status(api: Api, plural: str, namespace: str | None, name: str, status: dict[str, Any]) -> None:
    if namespace is None:
        api.custom.patch_cluster_custom_object_status(GROUP, VERSION, plural, name, {"status": status})
    else:
        api.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status})


def subscription_spec(account: str, vlan: int, **over: Any) -> dict[str, Any]:
    return {
        "productOffering": {"name": OFFERING},
        "billingAccountRef": {"name": account},
        "relatedParty": [{"role": "customer", "name": "Customer Corp"}],
        "endpoints": [{"device": "tmf-pe1", "port": "Ethernet1", "vlanId": vlan, "ipv4Address": "100.70.0.1/30"}],
        **over,
    }


def seed(api: Api) -> None:
    """An offering, and in each customer namespace an account, an active product, its service and an
    issued bill with one line."""
    api.apply(_obj("ProductOffering", OFFERING, offering_doc(lifecycleStatus="Active")))
    set_status(
        api, "productofferings", None, OFFERING, {"sellable": True, "sellableReason": "Active", "conditions": []}
    )
    for i, ns in enumerate((ACME, GLOBEX)):
        account = f"{ns}-001"
        api.apply(
            _obj(
                "BillingAccount",
                account,
                {
                    "name": f"{ns} Corp",
                    "currency": "EUR",
                    "timeZone": "Europe/Paris",
                    "contact": [
                        {"contactName": "AP", "contactMedium": [{"mediumType": "email", "value": "ap@x.example"}]}
                    ],
                    "creditLimit": {"unit": "EUR", "value": "5000.00"},
                },
                ns,
            )
        )
        set_status(
            api,
            "billingaccounts",
            ns,
            account,
            {
                "subscriptions": 1,
                "accountBalance": [{"balanceType": "outstanding", "amount": {"unit": "EUR", "value": "59.88"}}],
            },
        )
        api.apply(_obj("Subscription", "hq", subscription_spec(account, 300 + i), ns))
        set_status(
            api,
            "subscriptions",
            ns,
            "hq",
            {
                "state": "active",
                "startDate": NOW,
                "realizingService": {"name": "hq"},
                "billing": {"usage": {"windows": [WINDOW]}},
                "conditions": [_cond("Ready", "True", "Active")],
            },
        )
        api.apply(
            _obj(
                "NetworkService",
                "hq",
                {
                    "serviceType": "internetAccess",
                    "bandwidthMbps": 100,
                    "endpoints": subscription_spec(account, 300 + i)["endpoints"],
                },
                ns,
            )
        )
        set_status(
            api,
            "networkservices",
            ns,
            "hq",
            {
                "state": "active",
                "operatingStatus": "running",
                "startDate": NOW,
                "conditions": [_cond("Ready", "True", "Applied")],
            },
        )
        api.apply(
            _obj(
                "Invoice",
                "inv-2025-12",
                {
                    "billingAccount": account,
                    "billingPeriod": {"startDateTime": "2025-12-01T00:00:00Z", "endDateTime": "2026-01-01T00:00:00Z"},
                    "runType": "onCycle",
                },
                ns,
            )
        )
        eur = "EUR"
        set_status(
            api,
            "invoices",
            ns,
            "inv-2025-12",
            {
                "state": "sent",
                "billNo": f"{ns}-2025-12",
                "billDate": NOW,
                "paymentDueDate": "2026-02-04T10:00:00Z",
                "taxExcludedAmount": {"unit": eur, "value": "49.90"},
                "taxIncludedAmount": {"unit": eur, "value": "59.88"},
                "amountDue": {"unit": eur, "value": "59.88"},
                "taxItem": [{"taxCategory": "VAT", "taxRate": "20", "taxAmount": {"unit": eur, "value": "9.98"}}],
                "lines": [
                    {
                        "id": "6f1c2a52-2d35-5d8e-9b7e-2a0c5e3f4a10",
                        "type": "recurringCharge",
                        "name": "Monthly fee",
                        "subscription": f"{ns}/hq",
                        "periodCoverage": {
                            "startDateTime": "2025-12-01T00:00:00Z",
                            "endDateTime": "2026-01-01T00:00:00Z",
                        },
                        "taxExcludedAmount": {"unit": eur, "value": "49.90"},
                    }
                ],
            },
        )


WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z", "octets": "123456789"}
USAGE_KEY = "1767225600"  # the window's start, in seconds since the epoch


def token_for(api: Api, namespace: str, name: str) -> str:
    api.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = api.core.create_namespaced_service_account_token(name, namespace, {"spec": {"expirationSeconds": 3600}})
    return str(request.status.token)


def grant(api: Api, namespace: str | None, account: str, verbs: list[str], name: str) -> None:
    """RBAC for ServiceAccount tmf-partners/<account>: `verbs` on the kinds, in one namespace or everywhere."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(api.client)
    rule = {"apiGroups": [GROUP], "resources": KINDS, "verbs": verbs}
    subject = {"kind": "ServiceAccount", "name": account, "namespace": PARTNERS}
    if namespace is None:
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": [rule]})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [subject],
            }
        )
    else:
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": [rule]})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            },
        )


@pytest.fixture(scope="module")
def api(crds: Kubectl) -> Api:
    api = Api(crds.kubeconfig)
    for ns in (ACME, GLOBEX, PARTNERS):
        api.ensure_namespace(ns)
    seed(api)
    return api


@pytest.fixture(scope="module")
def tokens(api: Api) -> dict[str, str]:
    """operator: get/list everywhere, create/patch too; partner: all that in tmf-acme only; nobody: nothing."""
    found = {who: token_for(api, PARTNERS, f"tmf-{who}") for who in ("operator", "partner", "nobody")}
    grant(api, None, "tmf-operator", ["get", "list", "watch", "create", "patch"], "tmf-operator")
    cluster_catalog = "tmf-partner-catalog"
    rbac = kubernetes.client.RbacAuthorizationV1Api(api.client)
    rbac.create_cluster_role(
        {
            "metadata": {"name": cluster_catalog},
            "rules": [{"apiGroups": [GROUP], "resources": ["productofferings"], "verbs": ["get", "list"]}],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": cluster_catalog},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_catalog},
            "subjects": [{"kind": "ServiceAccount", "name": "tmf-partner", "namespace": PARTNERS}],
        }
    )
    grant(api, ACME, "tmf-partner", ["get", "list", "watch", "create", "patch"], "tmf-partner")
    return found


@pytest.fixture(scope="module")
def facade(api: Api, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FacadeThread, bytes]]:
    certs = tmp_path_factory.mktemp("tmf-certs")
    ca = serving_certificate(certs)
    running = FacadeThread(crds.kubeconfig, certs)
    try:
        yield running, ca
    finally:
        running.close()


@pytest.fixture
def operator(facade: tuple[FacadeThread, bytes], tokens: dict[str, str]) -> Client:
    return Client(facade[0].port, facade[1], tokens["operator"])


@pytest.fixture
def partner(facade: tuple[FacadeThread, bytes], tokens: dict[str, str]) -> Client:
    return Client(facade[0].port, facade[1], tokens["partner"])


def ids(answer: Answer) -> set[str]:
    return {r["id"] for r in answer.body}


# -- reads ------------------------------------------------------------------------------------


def test_every_read_operation_lists_and_retrieves_what_the_cluster_holds(operator: Client) -> None:
    expected = {
        f"{CATALOG}/productOffering": {OFFERING},
        f"{PRODUCTS}/product": {f"{ACME}.hq", f"{GLOBEX}.hq"},
        f"{SERVICES}/service": {f"{ACME}.hq", f"{GLOBEX}.hq"},
        f"{ACCOUNTS}/billingAccount": {f"{ACME}.{ACME}-001", f"{GLOBEX}.{GLOBEX}-001"},
        f"{BILLS}/customerBill": {f"{ACME}.inv-2025-12", f"{GLOBEX}.inv-2025-12"},
        f"{USAGE}/usage": {f"{ns}.hq~{USAGE_KEY}" for ns in (ACME, GLOBEX)},
        f"{BILLS}/appliedCustomerBillingRate": {
            f"{ns}.inv-2025-12~6f1c2a52-2d35-5d8e-9b7e-2a0c5e3f4a10" for ns in (ACME, GLOBEX)
        },
    }
    for path, want in expected.items():
        listed = operator.call("GET", path)
        assert listed.status == 200
        assert want <= ids(listed), f"{path}: {ids(listed)}"
        assert int(listed.headers["X-Total-Count"]) >= len(want)
        assert int(listed.headers["X-Result-Count"]) == len(listed.body)
        for resource_id in want:
            got = operator.call("GET", f"{path}/{resource_id}")
            assert got.status == 200 and got.body["id"] == resource_id
            assert got.body["href"] == f"{path}/{resource_id}"
            assert got.body["@type"] == path.rsplit("/", 1)[1][0].upper() + path.rsplit("/", 1)[1][1:]
    product = operator.call("GET", f"{PRODUCTS}/product/{ACME}.hq").body
    assert product["status"] == "active"
    assert product["productOffering"]["id"] == OFFERING
    assert product["billingAccount"]["id"] == f"{ACME}.{ACME}-001"
    assert product["realizingService"][0]["id"] == f"{ACME}.hq"
    bill = operator.call("GET", f"{BILLS}/customerBill/{ACME}.inv-2025-12").body
    assert bill["state"] == "sent" and bill["amountDue"] == {"unit": "EUR", "value": 59.88}
    assert bill["billingAccount"]["id"] == f"{ACME}.{ACME}-001"


def test_fields_offset_limit_and_filters_follow_tmf630(operator: Client) -> None:
    path = f"{PRODUCTS}/product"
    everything = operator.call("GET", path)
    total = int(everything.headers["X-Total-Count"])
    first = operator.call("GET", f"{path}?offset=0&limit=1")
    second = operator.call("GET", f"{path}?offset=1&limit=1")
    assert first.headers["X-Total-Count"] == str(total) and first.headers["X-Result-Count"] == "1"
    assert ids(first) != ids(second) and ids(first) | ids(second) <= ids(everything)
    beyond = operator.call("GET", f"{path}?offset={total}")
    assert beyond.status == 200 and beyond.body == [] and beyond.headers["X-Result-Count"] == "0"
    trimmed = operator.call("GET", f"{path}/{ACME}.hq?fields=status,name")
    assert set(trimmed.body) == {"id", "href", "@type", "status", "name"}
    active = operator.call("GET", f"{path}?status=active")
    assert {f"{ACME}.hq", f"{GLOBEX}.hq"} <= ids(active)
    assert all(p["status"] == "active" for p in active.body)
    assert operator.call("GET", f"{path}?status=suspended,terminated").body == [] or all(
        p["status"] in ("suspended", "terminated")
        for p in operator.call("GET", f"{path}?status=suspended,terminated").body
    )
    by_account = operator.call("GET", f"{path}?billingAccount.id={GLOBEX}.{GLOBEX}-001")
    assert ids(by_account) == {f"{GLOBEX}.hq"}
    by_party = operator.call("GET", f"{path}?relatedParty.role=customer&relatedParty.id={ACME}")
    assert f"{ACME}.hq" in ids(by_party) and f"{GLOBEX}.hq" not in ids(by_party)


def test_the_cache_follows_the_cluster(api: Api, operator: Client) -> None:
    """A kubectl-style change shows in the API without a restart: the cache watches."""
    api.apply(_obj("Subscription", "watched", subscription_spec(f"{ACME}-001", 320), ACME))
    path = f"{PRODUCTS}/product/{ACME}.watched"
    wait_for("the new product listed", lambda: operator.call("GET", path, check=False).status == 200, 20)
    set_status(api, "subscriptions", ACME, "watched", {"state": "suspended"})
    wait_for("its new state", lambda: operator.call("GET", path).body.get("status") == "suspended", 20)
    api.delete("subscriptions", "watched", ACME)
    wait_for("it gone", lambda: operator.call("GET", path).status == 404, 20)


# -- authentication and authorization (Kubernetes decides) ---------------------------------------


def test_a_token_allowed_in_one_namespace_is_refused_in_another(partner: Client, api: Api) -> None:
    assert partner.call("GET", f"{PRODUCTS}/product/{ACME}.hq").status == 200
    refused = partner.call("GET", f"{PRODUCTS}/product/{GLOBEX}.hq")
    assert refused.status == 403 and "tmf-globex" in refused.body["message"]
    # a refusal says nothing of existence: a missing product in globex is refused alike
    assert partner.call("GET", f"{PRODUCTS}/product/{GLOBEX}.nothing-here").status == 403
    listed = partner.call("GET", f"{PRODUCTS}/product")
    assert listed.status == 200 and all(i.startswith(f"{ACME}.") for i in ids(listed)) and f"{ACME}.hq" in ids(listed)
    assert partner.call("GET", f"{BILLS}/customerBill/{GLOBEX}.inv-2025-12").status == 403
    assert partner.call("GET", f"{CATALOG}/productOffering/{OFFERING}").status == 200
    before = api.custom.list_namespaced_custom_object(GROUP, VERSION, GLOBEX, "subscriptions")["items"]
    order = partner.call("POST", f"{ORDERING}/productOrder", add_order(f"{GLOBEX}.{GLOBEX}-001", "sneaky", 330))
    assert order.status == 403
    after = api.custom.list_namespaced_custom_object(GROUP, VERSION, GLOBEX, "subscriptions")["items"]
    assert len(after) == len(before)


def test_no_token_a_bad_token_and_no_rights_are_refused(
    facade: tuple[FacadeThread, bytes], tokens: dict[str, str]
) -> None:
    thread, ca = facade
    path = f"{PRODUCTS}/product"
    missing = Client(thread.port, ca, None).call("GET", path)
    assert missing.status == 401 and missing.headers.get("WWW-Authenticate") == "Bearer"
    assert Client(thread.port, ca, "not-a-token").call("GET", path).status == 401
    nobody = Client(thread.port, ca, tokens["nobody"])
    assert nobody.call("GET", path).status == 403
    assert nobody.call("GET", f"{path}/{ACME}.hq").status == 403


# -- ordering (TMF622) ------------------------------------------------------------------------


def add_order(account_id: str, name: str, vlan: int, **over: Any) -> dict[str, Any]:
    return {
        "externalId": f"crm-{name}",
        "billingAccount": {"id": account_id},
        "relatedParty": [
            {"id": "cust-1", "name": "Customer Corp", "role": "customer", "@referredType": "Organization"}
        ],
        "productOrderItem": [
            {
                "id": "1",
                "action": "add",
                "productOffering": {"id": OFFERING},
                "product": {
                    "name": name,
                    "productCharacteristic": [
                        {"name": "endpoints", "value": [{"device": "tmf-pe1", "port": "Ethernet2", "vlanId": vlan}]}
                    ],
                },
            }
        ],
        **over,
    }


def test_an_add_order_creates_a_subscription_and_its_state_follows_it(api: Api, partner: Client) -> None:
    created = partner.call("POST", f"{ORDERING}/productOrder", add_order(f"{ACME}.{ACME}-001", "ordered", 340))
    assert created.status == 201, created.body
    order_id = created.body["id"]
    assert order_id == f"{ACME}.ordered~1" and created.body["state"] == "acknowledged"
    sub = api.get("subscriptions", "ordered", ACME)
    assert sub is not None and sub["spec"]["productOffering"] == {"name": OFFERING}
    assert sub["spec"]["billingAccountRef"] == {"name": f"{ACME}-001"}
    assert sub["spec"]["endpoints"] == [{"device": "tmf-pe1", "port": "Ethernet2", "vlanId": 340}]
    path = f"{ORDERING}/productOrder/{order_id}"
    assert partner.call("GET", path).body["externalId"] == "crm-ordered"
    set_status(api, "subscriptions", ACME, "ordered", {"state": "pendingActive"})
    wait_for("the order in progress", lambda: partner.call("GET", path).body["state"] == "inProgress", 20)
    set_status(api, "subscriptions", ACME, "ordered", {"state": "active", "startDate": NOW})
    wait_for("the order completed", lambda: partner.call("GET", path).body["state"] == "completed", 20)
    done = partner.call("GET", path).body
    assert done["completionDate"] == NOW and done["productOrderItem"][0]["state"] == "completed"
    assert order_id in ids(partner.call("GET", f"{ORDERING}/productOrder?state=completed"))
    product = partner.call("GET", f"{PRODUCTS}/product/{ACME}.ordered").body
    assert product["productOrderItem"][0]["productOrderId"] == order_id
    # the same name again is a conflict, and nothing changes
    again = partner.call("POST", f"{ORDERING}/productOrder", add_order(f"{ACME}.{ACME}-001", "ordered", 341))
    assert again.status == 409
    # a completed add cannot be cancelled
    refused = partner.call("POST", f"{ORDERING}/cancelProductOrder", {"productOrder": {"id": order_id}})
    assert refused.status == 409
    # modify (the rate), then delete: orders 2 and 3 on the same product
    modify = {
        "productOrderItem": [
            {
                "id": "1",
                "action": "modify",
                "product": {
                    "id": f"{ACME}.ordered",
                    "productCharacteristic": [{"name": "bandwidthMbps", "value": 100}],
                },
            }
        ]
    }
    changed = partner.call("POST", f"{ORDERING}/productOrder", modify)
    assert changed.status == 201 and changed.body["id"] == f"{ACME}.ordered~2", changed.body
    assert api.get("subscriptions", "ordered", ACME)["spec"]["bandwidthMbps"] == 100  # type: ignore[index]
    ended = partner.call(
        "POST",
        f"{ORDERING}/productOrder",
        {"productOrderItem": [{"id": "1", "action": "delete", "product": {"id": f"{ACME}.ordered"}}]},
    )
    assert ended.status == 201 and ended.body["state"] == "inProgress"
    assert api.get("subscriptions", "ordered", ACME)["spec"]["desiredState"] == "terminated"  # type: ignore[index]
    set_status(api, "subscriptions", ACME, "ordered", {"state": "terminated", "terminationDate": NOW})
    wait_for(
        "the delete order completed",
        lambda: partner.call("GET", f"{ORDERING}/productOrder/{ACME}.ordered~3").body["state"] == "completed",
        20,
    )


def test_an_add_order_not_yet_done_can_be_cancelled(api: Api, partner: Client) -> None:
    created = partner.call("POST", f"{ORDERING}/productOrder", add_order(f"{ACME}.{ACME}-001", "cancel-me", 350))
    assert created.status == 201
    cancel = partner.call(
        "POST",
        f"{ORDERING}/cancelProductOrder",
        {"productOrder": {"id": created.body["id"]}, "cancellationReason": "changed mind"},
    )
    assert cancel.status == 201 and cancel.body["productOrder"]["id"] == created.body["id"]
    assert api.get("subscriptions", "cancel-me", ACME)["spec"]["desiredState"] == "terminated"  # type: ignore[index]
    path = f"{ORDERING}/productOrder/{created.body['id']}"
    assert partner.call("GET", path).body["state"] == "pendingCancellation"
    set_status(api, "subscriptions", ACME, "cancel-me", {"state": "cancelled"})
    wait_for("the order cancelled", lambda: partner.call("GET", path).body["state"] == "cancelled", 20)
    assert (
        partner.call("POST", f"{ORDERING}/cancelProductOrder", {"productOrder": {"id": f"{ACME}.nothing~1"}}).status
        == 422
    )


# -- hostile requests: a clear 4xx, never a 500, nothing stored ----------------------------------

HOSTILE: list[tuple[str, dict[str, Any], int, str]] = [
    # (what, request, expected status, a word the message must contain)
    ("not JSON", {"raw": b"{not json"}, 400, "JSON"),
    ("JSON but not an object", {"body": [1, 2]}, 400, "object"),
    ("NaN", {"raw": b'{"productOrderItem": NaN}'}, 400, "JSON"),
    ("nested a million deep", {"raw": b"[" * 60000 + b"]" * 60000}, 413, "larger"),
    ("nested deep but small", {"raw": b"[" * 30000 + b"]" * 30000}, 400, "JSON"),
    ("too large", {"raw": b'{"externalId": "' + b"x" * 70000 + b'"}'}, 413, "larger"),
    ("wrong content type", {"raw": b"{}", "content_type": "text/plain"}, 415, "Content-Type"),
    ("not UTF-8", {"raw": b'{"externalId": "\xff"}'}, 400, "JSON"),
    ("no items", {"body": {"productOrderItem": []}}, 400, "productOrderItem"),
    ("items of the wrong type", {"body": {"productOrderItem": "add"}}, 400, "productOrderItem"),
    ("an unknown field", {"body": {"productOrderItem": [{"id": "1", "action": "add"}], "bogus": 1}}, 400, "bogus"),
    ("an unknown action", {"body": {"productOrderItem": [{"id": "1", "action": "steal"}]}}, 400, "action"),
    ("a number for a string", {"body": {"productOrderItem": [{"id": 1, "action": "add"}]}}, 400, "id"),
    ("no offering", {"body": {"productOrderItem": [{"id": "1", "action": "add"}]}}, 422, "productOffering"),
    (
        "two items",
        {"body": {"productOrderItem": [{"id": "1", "action": "add"}, {"id": "2", "action": "add"}]}},
        422,
        "one item",
    ),
    (
        "no account",
        {"body": {k: v for k, v in add_order("x", "hostile-1", 360).items() if k != "billingAccount"}},
        422,
        "billingAccount",
    ),
    ("a bad account id", {"body": add_order("../../etc", "hostile-2", 360)}, 422, "billingAccount"),
    ("a bad name", {"body": add_order(f"{ACME}.{ACME}-001", "Robert'); DROP TABLE", 360)}, 422, "name"),
    ("a VLAN out of range", {"body": add_order(f"{ACME}.{ACME}-001", "hostile-3", 5000)}, 422, "vlanId"),
    (
        "an unknown characteristic",
        {
            "body": {
                **add_order(f"{ACME}.{ACME}-001", "hostile-4", 360),
                "productOrderItem": [
                    {
                        "id": "1",
                        "action": "add",
                        "productOffering": {"id": OFFERING},
                        "product": {"productCharacteristic": [{"name": "rootPassword", "value": "x"}]},
                    }
                ],
            }
        },
        422,
        "rootPassword",
    ),
    (
        "modify of nothing",
        {"body": {"productOrderItem": [{"id": "1", "action": "modify", "product": {"id": f"{ACME}.hq"}}]}},
        422,
        "modify",
    ),
    (
        "modify of a missing product",
        {
            "body": {
                "productOrderItem": [
                    {
                        "id": "1",
                        "action": "modify",
                        "product": {"id": f"{ACME}.ghost"},
                        "productOffering": {"id": OFFERING},
                    }
                ]
            }
        },
        422,
        "no such product",
    ),
]


@pytest.mark.parametrize("what,request_,status,word", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_orders_are_refused_and_nothing_is_stored(
    api: Api, operator: Client, what: str, request_: dict[str, Any], status: int, word: str
) -> None:
    body = request_.get("body")
    before = {
        (o["metadata"]["namespace"], o["metadata"]["name"], o["metadata"]["resourceVersion"])
        for o in api.custom.list_cluster_custom_object(GROUP, VERSION, "subscriptions")["items"]
    }
    answer = operator.call(
        "POST",
        f"{ORDERING}/productOrder",
        body,
        raw=request_.get("raw"),
        content_type=request_.get("content_type", "application/json"),
    )
    assert answer.status == status, f"{what}: {answer.status} {answer.body}"
    assert word.lower() in answer.body["message"].lower(), answer.body
    after = {
        (o["metadata"]["namespace"], o["metadata"]["name"], o["metadata"]["resourceVersion"])
        for o in api.custom.list_cluster_custom_object(GROUP, VERSION, "subscriptions")["items"]
    }
    assert after == before, f"{what}: something was stored"


HOSTILE_QUERIES = [
    ("offset not a number", "?offset=abc", 400, "offset"),
    ("negative offset", "?offset=-1", 400, "offset"),
    ("limit too large", "?limit=100000", 400, "limit"),
    ("limit twice", "?limit=1&limit=2", 400, "more than once"),
    ("an unknown field", "?fields=password", 400, "fields"),
    ("an unknown attribute", "?secret=1", 400, "secret"),
    ("sort", "?sort=name", 400, "sort"),
    ("injection in a filter", "?status=active'%20OR%20'1'='1", 200, ""),
    ("a regex in a filter", "?name=.*", 200, ""),
    ("a path escape in a filter", "?relatedParty.id=../../..", 200, ""),
    ("a very long filter", "?name=" + "a" * 5000, 400, "longer"),
]


@pytest.mark.parametrize("what,query,status,word", HOSTILE_QUERIES, ids=[h[0] for h in HOSTILE_QUERIES])
def test_hostile_queries_get_a_clear_answer(operator: Client, what: str, query: str, status: int, word: str) -> None:
    answer = operator.call("GET", f"{PRODUCTS}/product{query}")
    assert answer.status == status, f"{what}: {answer.status} {answer.body}"
    if status == 200:
        assert answer.body == [], f"{what}: a filter value is compared as text, never interpreted"
    else:
        assert word in answer.body["message"], answer.body


def test_unknown_paths_methods_and_ids_get_error_bodies(operator: Client) -> None:
    nowhere = operator.call("GET", "/tmf-api/nothing/v4/thing", check=False)
    assert nowhere.status == 404 and nowhere.body["code"] == "404" and nowhere.body["reason"]
    assert operator.call("DELETE", f"{PRODUCTS}/product/{ACME}.hq").status == 405
    assert operator.call("GET", f"{PRODUCTS}/product/not-namespaced").status == 404
    assert operator.call("GET", f"{PRODUCTS}/product/{ACME}.UPPER").status == 404
    assert operator.call("GET", f"{BILLS}/appliedCustomerBillingRate/{ACME}.inv-2025-12").status == 404
    assert operator.call("GET", f"{PRODUCTS}/product/{ACME}.hq?offset=1").status == 400


def test_self_signed_tls_by_default(api: Api, crds: Kubectl) -> None:
    """Without a certificate directory the facade still speaks only TLS, with a certificate it made."""
    thread = FacadeThread(crds.kubeconfig, None)
    try:
        pem = thread.running.self_signed_pem
        assert pem is not None and pem.startswith(b"-----BEGIN CERTIFICATE-----")
        answer = Client(thread.port, pem, None).call("GET", f"{PRODUCTS}/product")
        assert answer.status == 401
    finally:
        thread.close()


# -- event hubs (TMF688 style) -----------------------------------------------------------------


def notification_conforms(api_name: str, body: dict[str, Any]) -> None:
    """A notification validated against its event definition in the API's document."""
    import jsonschema

    doc = contract().docs[api_name]
    schema = {"$ref": f"#/definitions/{body['eventType']}", "definitions": doc["definitions"]}
    jsonschema.Draft4Validator(schema).validate(body)


def test_a_listener_gets_state_change_events_only_where_its_owner_may_read(api: Api, partner: Client) -> None:
    from tests.support.tmf_listener import Listener

    listener = Listener()
    try:
        registered = partner.call(
            "POST", f"{PRODUCTS}/hub", {"callback": listener.url, "query": "eventType=ProductStateChangeEvent"}
        )
        assert registered.status == 201 and registered.body["callback"] == listener.url
        cm = api.core.read_namespaced_config_map("telco-intent-tmf-hubs", "default")
        assert registered.body["id"] in (cm.data or {}), "the registration is kept in the cluster"
        for ns in (GLOBEX, ACME):
            set_status(api, "subscriptions", ns, "hq", {"state": "suspended"})
        wait_for("the acme event", lambda: listener.of_type("ProductStateChangeEvent"), 20)
        (event,) = listener.of_type("ProductStateChangeEvent")
        assert event["event"]["product"]["id"] == f"{ACME}.hq" and event["event"]["product"]["status"] == "suspended"
        notification_conforms("TMF637", event)
        assert listener.received[0][0] == "/callback/listener/productStateChangeEvent"
        # an attribute change is not a state change: this listener asked for state changes only
        api.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ACME, "subscriptions", "hq", {"spec": {"vrf": "blue"}}
        )
        listener.refusing = True  # down: the next event waits in the outbox, and is retried
        set_status(api, "subscriptions", ACME, "hq", {"state": "active"})
        wait_for("an attempt refused", lambda: listener.attempts >= 2, 20)
        outbox = api.core.read_namespaced_config_map("telco-intent-tmf-outbox", "default").data or {}
        assert any(
            k.endswith(registered.body["id"]) and delivered_at(v) is None for k, v in outbox.items()
        ), "the undelivered event is in the outbox"
        listener.refusing = False
        wait_for("the retried event", lambda: len(listener.of_type("ProductStateChangeEvent")) == 2, 30)
        ids_seen = [e["eventId"] for e in listener.of_type("ProductStateChangeEvent")]
        assert len(set(ids_seen)) == 2
        assert partner.call("DELETE", f"{PRODUCTS}/hub/{registered.body['id']}").status == 204
        assert partner.call("DELETE", f"{PRODUCTS}/hub/{registered.body['id']}").status == 404
    finally:
        api.custom.patch_namespaced_custom_object(GROUP, VERSION, ACME, "subscriptions", "hq", {"spec": {"vrf": None}})
        set_status(api, "subscriptions", GLOBEX, "hq", {"state": "active"})
        listener.close()


def test_an_event_queued_when_the_facade_stops_is_sent_by_the_next_with_the_same_id(
    api: Api,
    crds: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
    tokens: dict[str, str],
    facade: tuple[FacadeThread, bytes],
) -> None:
    from tests.support.tmf_listener import Listener

    # The module's facade shares the hubs' ConfigMaps; were it a deliverer too, two replicas would send
    # the same entry (at least once, not exactly once): in a cluster `delivers()` names only one.
    facade[0].delivering = False
    try:
        certs = tmp_path_factory.mktemp("tmf-restart")
        ca = serving_certificate(certs)
        listener = Listener()
        listener.refusing = True
        first = FacadeThread(crds.kubeconfig, certs)
        try:
            client = Client(first.port, ca, tokens["operator"])
            hub = client.call(
                "POST", f"{SERVICES}/hub", {"callback": listener.url, "query": "eventType=ServiceStateChangeEvent"}
            )
            assert hub.status == 201
            set_status(api, "networkservices", GLOBEX, "hq", {"state": "inactive"})
            wait_for("a refused attempt", lambda: listener.attempts >= 1, 20)
        finally:
            first.close()
        refused_at = listener.attempts
        listener.refusing = False
        second = FacadeThread(crds.kubeconfig, certs)
        try:
            wait_for("the queued event after the restart", lambda: listener.of_type("ServiceStateChangeEvent"), 30)
            events = listener.of_type("ServiceStateChangeEvent")
            assert len(events) == 1, [(e.get("eventId"), e.get("eventTime"), e["event"]["service"]) for e in events]
            (event,) = events
            assert (
                event["event"]["service"]["id"] == f"{GLOBEX}.hq" and event["event"]["service"]["state"] == "inactive"
            )
            notification_conforms("TMF638", event)
            assert listener.attempts > refused_at
            Client(second.port, ca, tokens["operator"]).call("DELETE", f"{SERVICES}/hub/{hub.body['id']}")
        finally:
            second.close()
            set_status(api, "networkservices", GLOBEX, "hq", {"state": "active"})
            listener.close()
    finally:
        facade[0].delivering = True


def test_hub_registrations_are_checked(
    operator: Client, tokens: dict[str, str], facade: tuple[FacadeThread, bytes]
) -> None:
    for body, word in (
        ({"callback": "ftp://x"}, "callback"),
        ({"callback": "http://127.0.0.1:1/x", "query": "eventType=Nonsense"}, "eventType"),
        ({"callback": "http://127.0.0.1:1/x", "query": "secret=1"}, "secret"),
        ({"callback": "http://127.0.0.1:1/x", "extra": 1}, "extra"),
        ([], "object"),
    ):
        answer = operator.call("POST", f"{PRODUCTS}/hub", body)
        assert answer.status == 400 and word in answer.body["message"], answer.body
    nobody = Client(facade[0].port, facade[1], tokens["nobody"])
    assert nobody.call("POST", f"{PRODUCTS}/hub", {"callback": "http://127.0.0.1:1/x"}).status == 403


def test_every_served_operation_was_checked_against_the_documents() -> None:
    """Runs last in this module: each operation the facade serves answered at least once with success,
    validated against its document (by Client.call)."""
    served = {
        ("TMF620", "GET", "/productOffering"),
        ("TMF620", "GET", "/productOffering/{id}"),
        ("TMF622", "GET", "/productOrder"),
        ("TMF622", "GET", "/productOrder/{id}"),
        ("TMF622", "POST", "/productOrder"),
        ("TMF622", "POST", "/cancelProductOrder"),
        ("TMF637", "GET", "/product"),
        ("TMF637", "GET", "/product/{id}"),
        ("TMF638", "GET", "/service"),
        ("TMF638", "GET", "/service/{id}"),
        ("TMF666", "GET", "/billingAccount"),
        ("TMF666", "GET", "/billingAccount/{id}"),
        ("TMF678", "GET", "/customerBill"),
        ("TMF678", "GET", "/customerBill/{id}"),
        ("TMF678", "GET", "/appliedCustomerBillingRate"),
        ("TMF678", "GET", "/appliedCustomerBillingRate/{id}"),
        ("TMF635", "GET", "/usage"),
        ("TMF635", "GET", "/usage/{id}"),
        ("TMF637", "POST", "/hub"),
        ("TMF637", "DELETE", "/hub/{id}"),
        ("TMF638", "POST", "/hub"),
        ("TMF638", "DELETE", "/hub/{id}"),
    }
    succeeded = {(a, m, t) for a, m, t, s in contract().checked if s in (200, 201, 204)}
    assert served <= succeeded, f"not exercised: {sorted(served - succeeded)}"

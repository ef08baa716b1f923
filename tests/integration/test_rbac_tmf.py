"""Security: the TM Forum APIs run with exactly the Helm chart's RBAC (tmf.enabled), as its ServiceAccount.

The chart is rendered with tmf.enabled, its ServiceAccount, (Cluster)Roles and bindings are applied to the
test API server, and the facade runs with a TokenRequest token of that ServiceAccount, in the release
namespace (POD_NAMESPACE, as in the pod). A partner then works through it: a list (TokenReview,
SubjectAccessReview, the watch cache's cluster-wide list and watch), an add, modify and delete order
(Subscription create, get, patch), a hub registration, an event through the outbox and its removal (the two
ConfigMaps). Nothing the facade does is refused for its own identity, and what the rules leave out is denied.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from controller.tmf.hubs import HUBS_CONFIGMAP, OUTBOX_CONFIGMAP, delivered_at
from tests.harness import GROUP, VERSION, Api, wait_for
from tests.integration.test_chart import helm as helm  # the session fixture that builds bin/helm
from tests.integration.test_chart import render
from tests.integration.test_rbac import can_i, service_account_kubeconfig
from tests.integration.test_tmf_api import OFFERING, add_order
from tests.kube import Kubectl
from tests.support.tmf_client import Client, FacadeThread
from tests.support.tmf_listener import Listener
from tests.unit.commerce.builders import offering_doc

RELEASE = "tmf-rbac"  # its own ClusterRole names: test_rbac.py's release keeps its own
RELEASE_NS = "tmf-rbac-system"
CUSTOMER, OTHER, PARTNERS = "tmf-rbac-acme", "tmf-rbac-globex", "tmf-rbac-partners"
ACCOUNT = "acme-001"
ORDERING = "/tmf-api/productOrderingManagement/v4"
PRODUCTS = "/tmf-api/productInventory/v4"
VALUES: dict[str, Any] = {"tmf": {"enabled": True, "port": 8443}}
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.fixture(scope="module")
def identity(helm: Path, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's RBAC (tmf.enabled) applied; a kubeconfig holding a token of its ServiceAccount."""
    chart = render(helm, tmp_path_factory.mktemp("chart"), VALUES, release=RELEASE, namespace=RELEASE_NS)
    api = Api(crds.kubeconfig)
    for ns in (RELEASE_NS, CUSTOMER, OTHER, PARTNERS):
        api.ensure_namespace(ns)
    docs = [d for d in chart if d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in docs} == RBAC_KINDS
    crds.apply(docs)
    (sa,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    return service_account_kubeconfig(crds, sa, RELEASE_NS, tmp_path_factory.mktemp("identity"))


@pytest.fixture(scope="module")
def api(crds: Kubectl, identity: Path) -> Api:
    """An offering, and the customer's billing account; a partner allowed to order in CUSTOMER only."""
    api = Api(crds.kubeconfig)
    api.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ProductOffering",
            "metadata": {"name": OFFERING},
            "spec": offering_doc(lifecycleStatus="Active"),
        }
    )
    api.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BillingAccount",
            "metadata": {"name": ACCOUNT, "namespace": CUSTOMER},
            "spec": {"name": "Acme Corp", "currency": "EUR", "timeZone": "Europe/Paris"},
        }
    )
    api.core.create_namespaced_service_account(PARTNERS, {"metadata": {"name": "partner"}})
    rbac = kubernetes.client.RbacAuthorizationV1Api(api.client)
    kinds = ["productofferings", "subscriptions", "networkservices", "billingaccounts", "invoices"]
    rbac.create_namespaced_role(
        CUSTOMER,
        {
            "metadata": {"name": "tmf-rbac-partner"},
            "rules": [{"apiGroups": [GROUP], "resources": kinds, "verbs": ["get", "list", "watch", "create", "patch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        CUSTOMER,
        {
            "metadata": {"name": "tmf-rbac-partner"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tmf-rbac-partner"},
            "subjects": [{"kind": "ServiceAccount", "name": "partner", "namespace": PARTNERS}],
        },
    )
    return api


@pytest.fixture(scope="module")
def partner(api: Api, identity: Path) -> Iterator[Client]:
    """The facade as the chart's ServiceAccount, in the release namespace; a client with the partner's token."""
    before = os.environ.get("POD_NAMESPACE")
    os.environ["POD_NAMESPACE"] = RELEASE_NS  # as the Deployment sets it: where the hub ConfigMaps go
    try:
        facade = FacadeThread(identity, None)  # no certificate Secret: self-signed, as by default
    finally:
        if before is None:
            del os.environ["POD_NAMESPACE"]
        else:
            os.environ["POD_NAMESPACE"] = before
    token = api.core.create_namespaced_service_account_token(
        "partner", PARTNERS, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    try:
        assert facade.running.self_signed_pem is not None
        yield Client(facade.port, facade.running.self_signed_pem, token)
    finally:
        facade.close()


def test_the_facade_works_with_the_charts_rbac(api: Api, partner: Client) -> None:
    listener = Listener()
    try:
        hub = partner.call("POST", f"{ORDERING}/hub", {"callback": listener.url})
        assert hub.status == 201, hub.body
        registrations = api.core.read_namespaced_config_map(HUBS_CONFIGMAP, RELEASE_NS).data or {}
        assert hub.body["id"] in registrations, "the registration is kept in the release namespace"

        listed = partner.call("GET", f"{PRODUCTS}/product")
        assert listed.status == 200 and listed.headers["X-Total-Count"] == "0", listed.body

        order = add_order(f"{CUSTOMER}.{ACCOUNT}", "hq", 300)
        created = partner.call("POST", f"{ORDERING}/productOrder", order)
        assert created.status == 201, created.body  # a 503 would be the facade's own RBAC refusing the create
        assert api.get("subscriptions", "hq", CUSTOMER) is not None
        # The create event went through the outbox ConfigMap (written before it is sent) to the listener.
        wait_for("the ProductOrderCreateEvent", lambda: listener.of_type("ProductOrderCreateEvent"), 30)

        modify = {
            "productOrderItem": [
                {
                    "id": "1",
                    "action": "modify",
                    "product": {
                        "id": f"{CUSTOMER}.hq",
                        "productCharacteristic": [{"name": "bandwidthMbps", "value": 50}],
                    },
                }
            ]
        }
        changed = partner.call("POST", f"{ORDERING}/productOrder", modify)
        assert changed.status == 201, changed.body
        assert api.get("subscriptions", "hq", CUSTOMER)["spec"]["bandwidthMbps"] == 50  # type: ignore[index]
        ended = partner.call(
            "POST",
            f"{ORDERING}/productOrder",
            {"productOrderItem": [{"id": "1", "action": "delete", "product": {"id": f"{CUSTOMER}.hq"}}]},
        )
        assert ended.status == 201, ended.body
        assert api.get("subscriptions", "hq", CUSTOMER)["spec"]["desiredState"] == "terminated"  # type: ignore[index]

        # The partner's own rights are the cluster's: refused in another namespace (403, not the facade's 503).
        elsewhere = {**order, "billingAccount": {"id": f"{OTHER}.{ACCOUNT}"}}
        assert partner.call("POST", f"{ORDERING}/productOrder", elsewhere).status == 403

        assert partner.call("DELETE", f"{ORDERING}/hub/{hub.body['id']}").status == 204
        registrations = api.core.read_namespaced_config_map(HUBS_CONFIGMAP, RELEASE_NS).data or {}
        assert hub.body["id"] not in registrations
        wait_for(
            "every event in the outbox delivered (a tombstone each)",
            lambda: all(
                delivered_at(text) is not None
                for text in (api.core.read_namespaced_config_map(OUTBOX_CONFIGMAP, RELEASE_NS).data or {}).values()
            ),
            30,
        )
    finally:
        listener.close()


ALLOWED = [
    ("create", "tokenreviews.authentication.k8s.io", None),
    ("create", "subjectaccessreviews.authorization.k8s.io", None),
    ("create", "subscriptions.telco.intent.dev", CUSTOMER),
    ("create", "configmaps", RELEASE_NS),
    ("get", f"configmaps/{HUBS_CONFIGMAP}", RELEASE_NS),
    ("patch", f"configmaps/{OUTBOX_CONFIGMAP}", RELEASE_NS),
]
DENIED = [
    ("list", "configmaps", RELEASE_NS),
    ("watch", "configmaps", RELEASE_NS),
    ("get", "configmaps/someone-elses", RELEASE_NS),
    ("patch", "configmaps/someone-elses", RELEASE_NS),
    ("update", f"configmaps/{HUBS_CONFIGMAP}", RELEASE_NS),
    ("delete", f"configmaps/{OUTBOX_CONFIGMAP}", RELEASE_NS),
    ("get", f"configmaps/{HUBS_CONFIGMAP}", CUSTOMER),
    ("create", "configmaps", CUSTOMER),
    ("delete", "subscriptions.telco.intent.dev", CUSTOMER),
    ("update", "subscriptions.telco.intent.dev", CUSTOMER),
    ("create", "billingaccounts.telco.intent.dev", CUSTOMER),
    ("create", "productofferings.telco.intent.dev", None),
    ("create", "localsubjectaccessreviews.authorization.k8s.io", CUSTOMER),
    ("create", "serviceaccounts/token", PARTNERS),
    ("impersonate", "serviceaccounts", PARTNERS),
]


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED, ids=[" ".join(map(str, a)) for a in ALLOWED])
def test_the_identity_may_do_what_the_facade_needs(
    identity: Path, verb: str, resource: str, namespace: str | None
) -> None:
    assert can_i(identity, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), DENIED, ids=[" ".join(map(str, d)) for d in DENIED])
def test_what_the_facade_does_not_need_is_denied(
    identity: Path, verb: str, resource: str, namespace: str | None
) -> None:
    assert not can_i(identity, verb, resource, namespace), f"the chart lets the facade {verb} {resource}"

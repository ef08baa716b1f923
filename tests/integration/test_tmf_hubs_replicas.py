"""Two facade replicas sharing the hubs' ConfigMaps against the real local API server (as every
controller replica serves the APIs): a listener registered on one is deleted on the other, each event
reaches the listener once per id although both replicas see every change, and when the delivering
replica stops the other sends what was queued and what happens next. A refused ConfigMap write is a
503 naming the facade's own permission.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest

from localcluster.webhook import serving_certificate
from tests.harness import GROUP, Api, wait_for
from tests.integration.test_tmf_api import _obj, set_status, subscription_spec, token_for
from tests.kube import Kubectl
from tests.support.tmf_client import Client, FacadeThread
from tests.support.tmf_listener import Listener

NS = "tmf-replicas"
PRODUCTS = "/tmf-api/productInventory/v4"
STATE_CHANGES = {"query": "eventType=ProductStateChangeEvent"}


@dataclass
class Cluster:
    api: Api
    kubeconfig: Path
    certs: Path
    ca: bytes
    token: str  # may get/list/watch subscriptions in NS


@pytest.fixture(scope="module")
def cluster(crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    api = Api(crds.kubeconfig)
    api.ensure_namespace(NS)
    api.apply(_obj("Subscription", "hq", subscription_spec(f"{NS}-001", 900), NS))
    set_status(api, "subscriptions", NS, "hq", {"state": "active"})
    token = token_for(api, NS, "tmf-watcher")
    rbac = kubernetes.client.RbacAuthorizationV1Api(api.client)
    rule = {"apiGroups": [GROUP], "resources": ["subscriptions"], "verbs": ["get", "list", "watch"]}
    rbac.create_namespaced_role(NS, {"metadata": {"name": "tmf-watcher"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        NS,
        {
            "metadata": {"name": "tmf-watcher"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tmf-watcher"},
            "subjects": [{"kind": "ServiceAccount", "name": "tmf-watcher", "namespace": NS}],
        },
    )
    certs = tmp_path_factory.mktemp("tmf-replicas")
    return Cluster(api, crds.kubeconfig, certs, serving_certificate(certs), token)


class Replicas:
    """Facades a and b; `deliverer` names the one whose delivers() is true (as the commerce unit would)."""

    def __init__(self, cluster: Cluster) -> None:
        self.deliverer = "a"
        self.a = FacadeThread(cluster.kubeconfig, cluster.certs, lambda: self.deliverer == "a")
        self.b = FacadeThread(cluster.kubeconfig, cluster.certs, lambda: self.deliverer == "b")
        self.open = [self.a, self.b]

    def client(self, replica: FacadeThread, cluster: Cluster) -> Client:
        return Client(replica.port, cluster.ca, cluster.token)

    def stop(self, replica: FacadeThread) -> None:
        self.open.remove(replica)
        replica.close()

    def close(self) -> None:
        for replica in self.open:
            replica.close()


@pytest.fixture
def replicas(cluster: Cluster) -> Iterator[Replicas]:
    running = Replicas(cluster)
    try:
        yield running
    finally:
        running.close()


def flip(api: Api, state: str) -> None:
    set_status(api, "subscriptions", NS, "hq", {"state": state})


def test_a_listener_registered_on_one_replica_is_deleted_on_the_other(cluster: Cluster, replicas: Replicas) -> None:
    a, b = replicas.client(replicas.a, cluster), replicas.client(replicas.b, cluster)
    registered = a.call("POST", f"{PRODUCTS}/hub", {"callback": "http://127.0.0.1:9/cb", **STATE_CHANGES})
    assert registered.status == 201
    assert b.call("DELETE", f"{PRODUCTS}/hub/{registered.body['id']}").status == 204
    assert a.call("DELETE", f"{PRODUCTS}/hub/{registered.body['id']}").status == 404, "a sees b's deletion"
    cm = cluster.api.core.read_namespaced_config_map("telco-intent-tmf-hubs", "default")
    assert registered.body["id"] not in (cm.data or {})


def test_each_event_reaches_the_listener_once_although_both_replicas_see_it(
    cluster: Cluster, replicas: Replicas
) -> None:
    listener = Listener()
    try:
        b = replicas.client(replicas.b, cluster)  # registered where it is not delivered from
        hub = b.call("POST", f"{PRODUCTS}/hub", {"callback": listener.url, **STATE_CHANGES})
        assert hub.status == 201
        states = ["suspended", "active", "suspended", "active"]
        for state in states:
            flip(cluster.api, state)
            time.sleep(0.3)  # distinct versions, each its own event
        wait_for("every state change", lambda: len(listener.of_type("ProductStateChangeEvent")) >= len(states), 30)
        time.sleep(3)  # long enough for a second delivery (a follow period and more) to show up
        received = listener.of_type("ProductStateChangeEvent")
        ids = [e["eventId"] for e in received]
        assert len(ids) == len(set(ids)) == len(states), ids
        # sent concurrently: in no promised order (each carries its eventTime)
        assert sorted(e["event"]["product"]["status"] for e in received) == sorted(states)
        assert replicas.a.running.facade.hubs.delivered == len(states)
        assert replicas.b.running.facade.hubs.delivered == 0, "only the delivering replica sends"
        assert b.call("DELETE", f"{PRODUCTS}/hub/{hub.body['id']}").status == 204
    finally:
        flip(cluster.api, "active")
        listener.close()


def test_when_the_delivering_replica_stops_the_other_sends_what_was_queued(
    cluster: Cluster, replicas: Replicas
) -> None:
    listener = Listener()
    listener.refusing = True
    try:
        a = replicas.client(replicas.a, cluster)
        hub = a.call("POST", f"{PRODUCTS}/hub", {"callback": listener.url, **STATE_CHANGES})
        assert hub.status == 201
        flip(cluster.api, "suspended")
        wait_for("a refused attempt from a", lambda: listener.attempts >= 1, 20)
        replicas.stop(replicas.a)
        replicas.deliverer = "b"  # as the commerce unit moves when a's Lease is released
        flip(cluster.api, "active")  # seen by b alone
        listener.refusing = False
        wait_for("both events from b", lambda: len(listener.of_type("ProductStateChangeEvent")) >= 2, 30)
        time.sleep(2)
        received = listener.of_type("ProductStateChangeEvent")
        ids = [e["eventId"] for e in received]
        assert len(ids) == len(set(ids)) == 2, ids
        assert sorted(e["event"]["product"]["status"] for e in received) == ["active", "suspended"]
        assert replicas.b.running.facade.hubs.delivered == 2
        b = replicas.client(replicas.b, cluster)
        assert b.call("DELETE", f"{PRODUCTS}/hub/{hub.body['id']}").status == 204
    finally:
        flip(cluster.api, "active")
        listener.close()


def test_a_refused_configmap_write_is_a_503_naming_the_permission(cluster: Cluster, replicas: Replicas) -> None:
    """The facade's identity may read its ConfigMaps but not patch them (as with a chart missing the rule)."""
    api = cluster.api
    token = token_for(api, "default", "tmf-read-only-configmaps")
    rbac = kubernetes.client.RbacAuthorizationV1Api(api.client)
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    rbac.create_namespaced_role("default", {"metadata": {"name": "tmf-read-only"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "tmf-read-only"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tmf-read-only"},
            "subjects": [{"kind": "ServiceAccount", "name": "tmf-read-only-configmaps", "namespace": "default"}],
        },
    )
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(cluster.kubeconfig), client_configuration=config)
    config.cert_file = config.key_file = None
    config.api_key = {"authorization": f"Bearer {token}"}
    before = api.core.read_namespaced_config_map("telco-intent-tmf-hubs", "default").data or {}
    hubs = replicas.a.running.facade.hubs
    hubs.core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    answer = replicas.client(replicas.a, cluster).call(
        "POST", f"{PRODUCTS}/hub", {"callback": "http://127.0.0.1:9/cb"}, unavailable_ok=True
    )
    assert answer.status == 503, answer
    assert answer.body["code"] == "503" and answer.body["@type"] == "Error"
    assert "may not patch configmaps in namespace default" in answer.body["message"], answer.body
    assert "telco-intent-tmf-hubs" in answer.body["message"]
    after = api.core.read_namespaced_config_map("telco-intent-tmf-hubs", "default").data or {}
    assert after == before, "nothing registered"

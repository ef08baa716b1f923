"""The chart's RBAC in its watchNamespaces mode: Roles in the watched namespaces only, no cluster-wide
rights on the namespaced kinds. The controller runs as the chart's ServiceAccount with the rendered
Deployment's flags, takes an order through to an active subscription, and must not hit a single
denial (at start it lists each namespaced kind per watched namespace, not cluster-wide).

A module of its own: a second controller managing the cluster-scoped NetworkDevices at the same time
as test_rbac.py's would fight over them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import GROUP, VERSION, Api
from tests.integration.test_chart import helm as helm  # the session fixture that builds bin/helm
from tests.integration.test_chart import render
from tests.integration.test_rbac import denials_outside, deployment_flags, service_account_kubeconfig
from tests.kube import Kubectl
from tests.reliability.rig import Rig, condition, rig, unique, wait_for
from tests.unit.commerce.builders import offering_doc

RELEASE = "telco-intent-shard"  # holds the chart name: the full name is the release
RELEASE_NS = "rbn-system"
SECRETS_NS = "rbn-secrets"
PREFIX = "rbn"
WATCHED = f"{PREFIX}-tests"  # the rig's namespace
DEVICES = ("rbn-r1",)
VALUES: dict[str, Any] = {
    "watchNamespaces": [WATCHED],
    "rbac": {"create": True, "secretNamespaces": [SECRETS_NS]},
}
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.fixture(scope="module")
def chart(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(helm, tmp_path_factory.mktemp("chart"), VALUES, release=RELEASE, namespace=RELEASE_NS)


@pytest.fixture(scope="module")
def identity(chart: list[dict[str, Any]], crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    api = Api(crds.kubeconfig)
    for ns in (RELEASE_NS, SECRETS_NS, WATCHED):
        api.ensure_namespace(ns)
    docs = [d for d in chart if d["kind"] in RBAC_KINDS]
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert not granted & {"subscriptions", "networkservices", "invoices", "billingaccounts"}, (
        "namespaced kinds only via Roles"
    )
    crds.apply(docs)
    return service_account_kubeconfig(crds, RELEASE, RELEASE_NS, tmp_path_factory.mktemp("identity"))


@pytest.fixture(scope="module")
def r(
    chart: list[dict[str, Any]], identity: Path, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    flags, env = deployment_flags(chart, tmp_path_factory.mktemp("rbn-mounts"), RELEASE_NS)
    assert f"--namespace={WATCHED}" in flags
    with rig(
        kubeconfig,
        tmp_path_factory.mktemp("rbn"),
        PREFIX,
        DEVICES,
        controller=False,
        namespaced=False,  # the chart's own --namespace flag scopes it
        secret_namespace=SECRETS_NS,
        controller_kubeconfig=identity,
        controller_args=tuple(flags),
        controller_env=env,
    ) as the_rig:
        the_rig.start_controller()
        yield the_rig


def test_an_order_goes_through_without_a_single_denial(r: Rig) -> None:
    offering = unique("rbn-fiber")
    r.api.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ProductOffering",
            "metadata": {"name": offering},
            "spec": offering_doc(lifecycleStatus="Active"),
        }
    )
    name = unique("rbn-sub")
    r.api.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Subscription",
            "metadata": {"name": name, "namespace": WATCHED},
            "spec": {
                "productOffering": {"name": offering},
                "billingAccount": {"id": "shard-1"},
                "endpoints": [
                    {"device": "rbn-r1", "port": "Ethernet1", "vlanId": 710, "ipv4Address": "100.66.71.1/30"}
                ],
            },
        }
    )

    def status() -> dict[str, Any]:
        return (r.api.get("subscriptions", name, WATCHED) or {}).get("status") or {}

    try:
        wait_for("the subscription active", lambda: status().get("state") == "active", 40)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {status()}") from None
    assert condition(r.api.get("networkservices", name, WATCHED), "Ready")["status"] == "True"  # type: ignore[index]
    log = r.logs()
    assert "could not list" not in log, "the startup lists must succeed with the chart's Roles"
    bad = denials_outside(log, SECRETS_NS)
    assert not bad, "the controller hit RBAC denials:\n" + "\n".join(bad[:10])
    r.api.delete("subscriptions", name, WATCHED)
    wait_for("the subscription gone", lambda: r.api.get("subscriptions", name, WATCHED) is None, 40)
    r.api.delete("productofferings", offering)

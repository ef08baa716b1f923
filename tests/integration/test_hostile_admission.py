"""Issue 19 cases 1 and 2 with devicesim behind the controller and the webhook in front of it.

Once a Ready service holds a subinterface, a second NetworkService reusing its IPv4 subnet, and a second
NetworkDevice pointing at the same gNMI target, are refused by `kubectl apply` naming the field. The
device then receives no Set, the holder stays Ready with exactly its entries on the device, and the
controller stays alive without tracebacks. Before the webhook, both were admitted: the twin device
made pe1 take 261 Sets in 10 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import is_ready, registered_webhook, wait_for
from tests.kube import Kubectl
from tests.reliability.rig import Rig, rig
from tests.unit.commerce.builders import offering_doc

DEVICE = "hw-r1"
WINDOW = 3.0


@pytest.fixture(scope="module")
def r(crds: Kubectl, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("hw"), "hw", (DEVICE,), controller=False) as test_rig:
        proc = test_rig.start_controller(webhook=True)
        with registered_webhook(test_rig.api, proc, "telco-intent-test-hostile-admission"):
            holder = test_rig.service(
                "hw-holder",
                [{"device": DEVICE, "port": "Ethernet1", "vlanId": 110, "ipv4Address": "10.93.10.1/30"}],
            )
            wait_for(
                "the webhook admitting the holder",
                lambda: crds.apply(holder, check=False).returncode == 0,
                60,
                interval=0.5,
            )
            test_rig.ready("hw-holder", timeout=30)
            yield test_rig


def quiet(r: Rig) -> None:
    """The device took no Set and the holder's configuration is all the controller wrote on it."""
    before = r.sets(DEVICE)
    time.sleep(WINDOW)
    assert r.sets(DEVICE) == before, "the device received Sets after a refused request"
    assert r.managed(DEVICE) == r.expected(DEVICE, {"hw-holder": [(DEVICE, "Ethernet1", 110)]})
    assert is_ready(r.get("hw-holder"))
    assert r.controller is not None and r.controller.alive()
    assert not r.tracebacks(), r.tracebacks()[:3]


@pytest.mark.cluster
def test_the_same_subnet_on_another_subinterface_is_refused(r: Rig, crds: Kubectl) -> None:
    twin = r.service(
        "hw-same-ip", [{"device": DEVICE, "port": "Ethernet2", "vlanId": 111, "ipv4Address": "10.93.10.1/30"}]
    )
    result = crds.apply(twin, check=False)
    assert result.returncode != 0
    assert "spec.endpoints[0].ipv4Address: 10.93.10.1/30 overlaps 10.93.10.1/30" in result.stderr, result.stderr
    assert f"NetworkService {r.namespace}/hw-holder" in result.stderr
    assert r.get("hw-same-ip") is None
    quiet(r)


@pytest.mark.cluster
def test_a_second_device_for_the_same_gnmi_target_is_refused(r: Rig, crds: Kubectl) -> None:
    original = r.device(DEVICE)
    twin = r.device(DEVICE)
    twin["metadata"]["name"] = "hw-r1-twin"
    result = crds.apply(twin, check=False)
    assert result.returncode != 0
    target = f"{original['spec']['address']}:{original['spec']['port']}"
    assert f"spec.address: {target} is already the gNMI target of NetworkDevice {DEVICE}" in result.stderr
    assert r.api.get("networkdevices", "hw-r1-twin") is None
    quiet(r)


@pytest.mark.cluster
def test_an_order_goes_live_through_the_webhook_and_a_second_one_for_its_port_is_refused(
    r: Rig, crds: Kubectl
) -> None:
    """The NetworkService the controller makes for a Subscription passes the webhook (the order that owns
    it holds the endpoint); a second order for that port and VLAN is refused naming the holder."""
    offering = {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "ProductOffering",
        "metadata": {"name": "hw-fiber"},
        "spec": offering_doc(name="hw-fiber"),
    }
    crds.apply(offering)

    def order(name: str) -> dict:
        return {
            "apiVersion": "telco.intent.dev/v1alpha1",
            "kind": "Subscription",
            "metadata": {"name": name, "namespace": r.namespace},
            "spec": {
                "productOffering": {"name": "hw-fiber"},
                "billingAccount": {"id": "hw-1"},
                "endpoints": [{"device": DEVICE, "port": "Ethernet3", "vlanId": 120, "ipv4Address": "10.94.0.1/30"}],
            },
        }

    crds.apply(order("hw-order"))
    try:
        sub = wait_for(
            "Subscription hw-order active",
            lambda: (s := r.api.get("subscriptions", "hw-order", r.namespace))
            and (s.get("status") or {}).get("state") == "active"
            and s,
            40,
            interval=0.2,
        )
        assert sub["status"]["realizingService"]["name"] == "hw-order"
        r.ready("hw-order", timeout=30)
        result = crds.apply(order("hw-order-2"), check=False)
        assert result.returncode != 0
        assert "spec.endpoints[0]: device hw-r1 port Ethernet3 vlanId 120 is held by Subscription" in result.stderr
        assert f"{r.namespace}/hw-order" in result.stderr
    finally:
        r.api.delete("subscriptions", "hw-order", r.namespace)
        wait_for("hw-order gone", lambda: r.api.get("subscriptions", "hw-order", r.namespace) is None, 40, 0.2)
        r.api.delete("productofferings", "hw-fiber")
    assert r.managed(DEVICE) == r.expected(DEVICE, {"hw-holder": [(DEVICE, "Ethernet1", 110)]})


@pytest.mark.cluster
def test_the_device_lists_its_ports_and_a_service_on_a_port_it_lacks_is_refused(r: Rig, crds: Kubectl) -> None:
    """The controller lists the interfaces the device reports in its status; the webhook refuses an endpoint
    on any other port, naming the field and the ports there are, and the device receives no Set."""
    device = wait_for(
        f"NetworkDevice {DEVICE} listing its ports",
        lambda: (d := r.api.get("networkdevices", DEVICE)) and (d.get("status") or {}).get("ports") and d,
        30,
        interval=0.2,
    )
    ports = device["status"]["ports"]
    assert "Ethernet1" in ports and ports == sorted(set(ports)), ports
    assert "Ethernet99" not in ports
    endpoint = {"device": DEVICE, "port": "Ethernet99", "vlanId": 130, "ipv4Address": "10.95.0.1/30"}
    wrong = r.service("hw-no-port", [endpoint])
    result = crds.apply(wrong, check=False)
    assert result.returncode != 0
    assert f"spec.endpoints[0].port: device {DEVICE} has no port Ethernet99" in result.stderr, result.stderr
    assert "Ethernet1" in result.stderr  # it says which ports there are
    assert r.get("hw-no-port") is None
    quiet(r)

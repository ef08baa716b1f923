from __future__ import annotations

from controller.intent import preflight

from .helpers import device_with_ports, entries_on, make_spec, service


def test_a_missing_port_is_a_problem_of_its_service_only() -> None:
    good = service("good", make_spec())
    bad = service(
        "bad",
        make_spec(endpoints=[{"device": "pe1", "port": "Ethernet9", "vlanId": 5, "ipv4Address": "192.0.2.5/30"}]),
    )
    problems = preflight("pe1", entries_on("pe1", good, bad), device_with_ports("Ethernet1"))
    assert problems == {bad.key: ["port Ethernet9 does not exist on device pe1"]}


def test_ports_are_found_in_json_ietf_trees_and_other_devices_are_ignored() -> None:
    svc = service(
        "a",
        make_spec(
            endpoints=[
                {"device": "pe1", "port": "ge-0/0/1", "vlanId": 5, "ipv4Address": "192.0.2.5/30"},
                {"device": "pe2", "port": "Ethernet7", "vlanId": 5, "ipv4Address": "192.0.2.6/30"},
            ]
        ),
    )
    observed = {"openconfig-interfaces:interfaces": device_with_ports("ge-0/0/1")["interfaces"]}
    assert preflight("pe1", svc.entries, observed) == {}


def test_a_network_instance_of_another_type_is_not_taken_over() -> None:
    l3 = service("vpn", make_spec(serviceType="l3vpn", vrf="mgmt"))
    observed = device_with_ports("Ethernet1") | {
        "network-instances": {
            "network-instance": [
                {"name": "mgmt", "config": {"name": "mgmt", "type": "openconfig-network-instance-types:L2VSI"}}
            ]
        }
    }
    assert preflight("pe1", l3.entries, observed) == {
        l3.key: ["network instance mgmt exists on device pe1 with type L2VSI, not L3VRF"]
    }
    same_type = device_with_ports("Ethernet1") | {
        "network-instances": {"network-instance": [{"name": "mgmt", "config": {"name": "mgmt", "type": "L3VRF"}}]}
    }
    assert preflight("pe1", l3.entries, same_type) == {}

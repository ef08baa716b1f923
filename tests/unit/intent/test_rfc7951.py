"""RFC 7951 (JSON_IETF) values from schema facts generated from the official OpenConfig models."""

from __future__ import annotations

import pytest

from controller.intent import GPath, normalise, render, yang_facts, yanggen
from controller.intent.render import ServiceKey
from controller.intent.rfc7951 import encode, negotiate

from .helpers import make_spec

SUB = GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]")


def rendered(**spec: object) -> dict[GPath, dict]:
    return {e.path: e.value for e in render(ServiceKey("acme", "a"), make_spec(**spec))}


def test_names_are_qualified_where_the_module_changes_and_at_the_top() -> None:
    value = encode(rendered()[SUB], SUB)
    assert set(value) == {"openconfig-interfaces:index", "openconfig-interfaces:config", "openconfig-vlan:vlan",
                          "openconfig-if-ip:ipv4"}
    assert value["openconfig-vlan:vlan"] == {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}
    address = value["openconfig-if-ip:ipv4"]["addresses"]["address"][0]
    assert address == {"ip": "192.0.2.1", "config": {"ip": "192.0.2.1", "prefix-length": 30}}


def test_uint64_is_a_string_and_identities_carry_their_module() -> None:
    policy = GPath.parse("qos/scheduler-policies/scheduler-policy[name=Ethernet1.100]")
    value = encode(rendered(bandwidthMbps=100)[policy], policy)
    scheduler = value["openconfig-qos:schedulers"]["scheduler"][0]
    assert scheduler["config"]["type"] == "openconfig-qos-types:TWO_RATE_THREE_COLOR"
    rates = scheduler["two-rate-three-color"]["config"]
    assert rates == {"cir": "100000000", "pir": "100000000", "bc": 125000, "be": 125000}, "uint32 stays a number"
    vrf = GPath.parse("network-instances/network-instance[name=blue]")
    assert encode(rendered(serviceType="l3vpn", vrf="blue")[vrf], vrf)["openconfig-network-instance:config"] == {
        "name": "blue", "type": "openconfig-network-instance-types:L3VRF"}


def test_a_deep_update_is_qualified_against_its_own_node() -> None:
    rates = GPath.parse("qos/scheduler-policies/scheduler-policy[name=x]/schedulers/scheduler[sequence=0]"
                        "/two-rate-three-color/config")
    assert encode({"cir": 5, "bc": 1500}, rates) == {"openconfig-qos:cir": "5", "openconfig-qos:bc": 1500}
    assert encode({"vlan-id": 7}, SUB.child("vlan").child("match").child("single-tagged").child("config")) == {
        "openconfig-vlan:vlan-id": 7}


@pytest.mark.parametrize("spec", [{}, {"serviceType": "l3vpn", "vrf": "blue"}, {"adminState": "disabled"}])
def test_decoding_an_encoded_render_gives_the_render_back(spec: dict) -> None:
    for path, value in rendered(**spec).items():
        assert normalise(encode(value, path), path) == normalise(value, path)


def test_the_encoding_is_negotiated_from_capabilities_unless_the_device_spec_says() -> None:
    assert negotiate("auto", ["JSON", "JSON_IETF"]) == "JSON_IETF"
    assert negotiate("auto", ["JSON_IETF"]) == "JSON_IETF"
    assert negotiate("auto", ["JSON", "PROTO"]) == "JSON"
    assert negotiate("auto", []) == "JSON"
    assert negotiate("JSON", ["JSON", "JSON_IETF"]) == "JSON"
    assert negotiate("JSON_IETF", ["JSON"]) == "JSON_IETF"


def test_the_schema_facts_are_what_the_official_models_say_now() -> None:
    """yang_facts.py is generated; regenerate with `python -m controller.intent.yanggen` when this fails."""
    assert yanggen.facts(yanggen.rendered_positions()) == yang_facts.FACTS

from __future__ import annotations

from controller.intent import GPath, ServiceKey, render
from controller.intent.normalise import LIST_KEYS, schema_path
from controller.intent.render import burst_bytes

from .helpers import make_spec

KEY = ServiceKey("acme", "hq")


def by_path(entries: list) -> dict[str, dict]:
    return {e.path.to_string(): e.value for e in entries}


def test_internet_access_renders_subinterface_and_rate_limit() -> None:
    spec = make_spec(bandwidthMbps=100, peakBandwidthMbps=200)
    entries = render(KEY, spec)
    assert {e.device for e in entries} == {"pe1"}
    assert {e.owner for e in entries} == {KEY}
    assert not any(e.shared for e in entries)
    assert by_path(entries) == {
        "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]": {
            "index": 100,
            "config": {"index": 100, "description": "telco-intent acme/hq", "enabled": True},
            "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}},
            "ipv4": {
                "addresses": {"address": [{"ip": "192.0.2.1", "config": {"ip": "192.0.2.1", "prefix-length": 30}}]}
            },
        },
        "qos/scheduler-policies/scheduler-policy[name=Ethernet1.100]": {
            "name": "Ethernet1.100",
            "config": {"name": "Ethernet1.100"},
            "schedulers": {
                "scheduler": [
                    {
                        "sequence": 0,
                        "config": {"sequence": 0, "type": "TWO_RATE_THREE_COLOR"},
                        "two-rate-three-color": {
                            "config": {"cir": 100_000_000, "pir": 200_000_000, "bc": 125_000, "be": 250_000}
                        },
                    }
                ]
            },
        },
        "qos/interfaces/interface[interface-id=Ethernet1.100]": {
            "interface-id": "Ethernet1.100",
            "config": {"interface-id": "Ethernet1.100"},
            "interface-ref": {"config": {"interface": "Ethernet1", "subinterface": 100}},
            "output": {"scheduler-policy": {"config": {"name": "Ethernet1.100"}}},
        },
    }


def test_l2vpn_without_address_has_no_ipv4_and_disabled_admin_state_shuts_the_subinterface() -> None:
    spec = make_spec(
        serviceType="l2vpn",
        adminState="disabled",
        endpoints=[{"device": "pe2", "port": "ge-0/0/1", "vlanId": 7}],
    )
    entries = render(KEY, spec)
    sub = by_path(entries)["interfaces/interface[name=ge-0/0/1]/subinterfaces/subinterface[index=7]"]
    assert sub == {
        "index": 7,
        "config": {"index": 7, "description": "telco-intent acme/hq", "enabled": False},
        "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 7}}}},
    }
    assert [e.path.to_string() for e in entries] == [
        "interfaces/interface[name=ge-0/0/1]/subinterfaces/subinterface[index=7]",
        "qos/scheduler-policies/scheduler-policy[name=ge-0/0/1.7]",
        "qos/interfaces/interface[interface-id=ge-0/0/1.7]",
    ]


def test_l3vpn_adds_a_shared_vrf_once_per_device_and_a_member_per_endpoint() -> None:
    spec = make_spec(
        serviceType="l3vpn",
        vrf="blue",
        endpoints=[
            {"device": "pe1", "port": "Ethernet1", "vlanId": 10, "ipv4Address": "10.0.0.1/30"},
            {"device": "pe1", "port": "Ethernet2", "vlanId": 20, "ipv4Address": "10.0.0.5/30"},
            {"device": "pe2", "port": "Ethernet1", "vlanId": 10, "ipv4Address": "10.0.0.2/30"},
        ],
    )
    entries = render(KEY, spec)
    vrfs = [e for e in entries if e.shared]
    assert [(e.device, e.path.to_string()) for e in vrfs] == [
        ("pe1", "network-instances/network-instance[name=blue]"),
        ("pe2", "network-instances/network-instance[name=blue]"),
    ]
    # No config/enabled: openconfig-network-instance 2.0.0 removed it and current devices refuse it.
    assert all(e.value == {"name": "blue", "config": {"name": "blue", "type": "L3VRF"}} for e in vrfs)
    assert all(e.delegated == ("interfaces",) for e in vrfs)
    vrf_path = GPath.parse("network-instances/network-instance[name=blue]")
    members = {
        (e.device, e.path.to_string()): e.value for e in entries if vrf_path.is_prefix_of(e.path) and not e.shared
    }
    assert members == {
        ("pe1", "network-instances/network-instance[name=blue]/interfaces/interface[id=Ethernet1.10]"): {
            "id": "Ethernet1.10",
            "config": {"id": "Ethernet1.10", "interface": "Ethernet1", "subinterface": 10},
        },
        ("pe1", "network-instances/network-instance[name=blue]/interfaces/interface[id=Ethernet2.20]"): {
            "id": "Ethernet2.20",
            "config": {"id": "Ethernet2.20", "interface": "Ethernet2", "subinterface": 20},
        },
        ("pe2", "network-instances/network-instance[name=blue]/interfaces/interface[id=Ethernet1.10]"): {
            "id": "Ethernet1.10",
            "config": {"id": "Ethernet1.10", "interface": "Ethernet1", "subinterface": 10},
        },
    }
    assert len(entries) == 3 * 3 + 2 + 3


def test_vrf_is_ignored_outside_l3vpn() -> None:
    entries = render(KEY, make_spec(vrf="blue"))
    assert not any(e.path.elems[0].name == "network-instances" for e in entries)


def test_burst_is_ten_milliseconds_and_at_least_one_frame() -> None:
    assert burst_bytes(1_000_000) == 1500
    assert burst_bytes(10_000_000) == 12_500
    assert burst_bytes(400_000 * 1_000_000) == 500_000_000


def test_every_rendered_list_has_known_keys() -> None:
    """Plan addresses list entries by key; a list the schema does not know could only be replaced whole."""
    spec = make_spec(serviceType="l3vpn", vrf="blue")

    def lists(value: object, where: tuple[str, ...]) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        if isinstance(value, dict):
            for name, member in value.items():
                found |= lists(member, (*where, name))
        elif isinstance(value, list):
            found.add(where)
            for item in value:
                found |= lists(item, where)
        return found

    for entry in render(KEY, spec):
        where = schema_path(entry.path)
        assert where in LIST_KEYS, entry.path
        assert lists(entry.value, where) <= set(LIST_KEYS)


def test_paths_parse_back() -> None:
    for entry in render(KEY, make_spec(serviceType="l3vpn", vrf="blue")):
        assert GPath.parse(entry.path.to_string()) == entry.path


def test_the_vlan_form_follows_the_openconfig_vlan_version_a_device_advertises() -> None:
    from controller.intent.render import uses_legacy_vlan, with_legacy_vlan

    def caps(version: str) -> list[tuple[str, str, str]]:
        return [("openconfig-interfaces", "OpenConfig working group", "3.7.1"),
                ("openconfig-vlan", "OpenConfig working group", version)]

    assert uses_legacy_vlan(caps("2.0.0")) and uses_legacy_vlan(caps("1.1.0"))
    assert not uses_legacy_vlan(caps("3.0.0")) and not uses_legacy_vlan(caps("3.2.2"))
    assert not uses_legacy_vlan(caps("2023-02-07")), "a revision date: the current models"
    assert not uses_legacy_vlan([]), "no openconfig-vlan advertised: the current form"
    entries = render(KEY, make_spec())
    legacy = with_legacy_vlan(entries)
    sub = next(e for e in legacy if "subinterface" in e.path.to_string())
    assert sub.value["vlan"] == {"config": {"vlan-id": 100}}
    assert next(e for e in entries if e.path == sub.path).value["vlan"] == {
        "match": {"single-tagged": {"config": {"vlan-id": 100}}}}, "the render itself is unchanged"
    assert [e.value for e in legacy if e.path != sub.path] == [e.value for e in entries if e.path != sub.path]

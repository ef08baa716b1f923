from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.intent import GPath, build_tree, extract, normalise

SUB = GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]")


def test_json_ietf_prefixes_are_removed_from_names_and_identities() -> None:
    observed = {
        "openconfig-network-instance:network-instances": {
            "network-instance": [
                {
                    "name": "blue",
                    "config": {"name": "blue", "type": "openconfig-network-instance-types:L3VRF", "enabled": True},
                }
            ]
        }
    }
    assert normalise(observed) == {
        "network-instances": {
            "network-instance": [{"name": "blue", "config": {"name": "blue", "type": "L3VRF", "enabled": True}}]
        }
    }


def test_colons_in_port_names_and_descriptions_are_kept() -> None:
    observed = {"config": {"name": "et-0:1", "description": "customer: acme"}}
    assert normalise(observed, GPath.parse("interfaces/interface[name=et-0:1]")) == {
        "config": {"name": "et-0:1", "description": "customer: acme", "enabled": True}
    }


def test_only_identityref_leaves_lose_a_module_prefix() -> None:
    """A port may be named like an identity (`openconfig-if:eth1`, which the CRD admits): its name, the
    list keys and the references to it must stay as they are, or the port is never found (bug 12)."""
    port = "openconfig-if:eth1"
    tree = {
        "interfaces": {
            "interface": [
                {"name": port, "config": {"name": port, "type": "iana-if-type:ethernetCsmacd"}},
            ]
        },
        "qos": {
            "interfaces": {
                "interface": [
                    {
                        "interface-id": f"{port}.10",
                        "config": {"interface-id": f"{port}.10"},
                        "interface-ref": {"config": {"interface": port, "subinterface": 10}},
                    }
                ]
            },
            "scheduler-policies": {
                "scheduler-policy": [
                    {
                        "name": f"{port}.10",
                        "schedulers": {
                            "scheduler": [
                                {"sequence": 0, "config": {"type": "openconfig-qos-types:TWO_RATE_THREE_COLOR"}}
                            ]
                        },
                    }
                ]
            },
        },
    }
    result = normalise(tree)
    interface = result["interfaces"]["interface"][0]
    assert interface["name"] == interface["config"]["name"] == port
    # The controller never writes a port's type: the schema facts do not hold it, so it keeps its form.
    assert interface["config"]["type"] == "iana-if-type:ethernetCsmacd"
    qos = result["qos"]["interfaces"]["interface"][0]
    assert qos["interface-id"] == qos["config"]["interface-id"] == f"{port}.10"
    assert qos["interface-ref"]["config"]["interface"] == port
    policy = result["qos"]["scheduler-policies"]["scheduler-policy"][0]
    assert policy["name"] == f"{port}.10"
    assert policy["schedulers"]["scheduler"][0]["config"]["type"] == "TWO_RATE_THREE_COLOR"
    assert extract(result, GPath.of("interfaces", ("interface", {"name": port}))) == interface
    # Descriptions are free text, never identities.
    assert normalise({"config": {"description": "openconfig-x:Y"}}, SUB) == {
        "config": {"description": "openconfig-x:Y", "enabled": True}
    }


def test_uint64_strings_and_string_booleans_become_numbers_and_booleans() -> None:
    at = GPath.parse("qos/scheduler-policies/scheduler-policy[name=x]/schedulers/scheduler[sequence=0]")
    observed = {
        "sequence": "0",
        "two-rate-three-color": {"config": {"cir": "100000000", "pir": 2e8, "bc": 125000, "be": "250000"}},
    }
    assert normalise(observed, at) == {
        "sequence": 0,
        "two-rate-three-color": {"config": {"cir": 100_000_000, "pir": 200_000_000, "bc": 125_000, "be": 250_000}},
    }
    assert normalise({"config": {"enabled": "false", "index": "5"}}, SUB) == {"config": {"enabled": False, "index": 5}}


def test_names_that_look_like_numbers_stay_strings() -> None:
    tree = {"network-instances": {"network-instance": [{"name": "123", "config": {"name": "123", "type": "L3VRF"}}]}}
    assert normalise(tree)["network-instances"]["network-instance"][0]["name"] == "123"


def test_state_is_dropped_and_empty_containers_vanish() -> None:
    observed = {
        "index": 100,
        "config": {"index": 100, "enabled": True},
        "state": {"oper-status": "UP", "counters": {"in-octets": "5"}},
        "ipv4": {"addresses": {"address": []}, "state": {"enabled": True}},
        "vlan": {},
    }
    assert normalise(observed, SUB) == {"index": 100, "config": {"index": 100, "enabled": True}}


def test_enabled_defaults_to_true_where_the_device_would_fill_it() -> None:
    assert normalise({"config": {"index": 5}}, SUB) == {"config": {"index": 5, "enabled": True}}
    # network-instance config/enabled no longer exists in the models: nothing is filled in for it.
    assert normalise({"config": {"name": "blue"}}, GPath.parse("network-instances/network-instance[name=blue]")) == {
        "config": {"name": "blue"}
    }
    # Not in containers without such a default.
    at = GPath.parse("qos/interfaces/interface[interface-id=x]")
    assert normalise({"config": {"interface-id": "x"}}, at) == {"config": {"interface-id": "x"}}


def test_lists_are_sorted_by_key_numbers_numerically() -> None:
    tree = {
        "interfaces": {
            "interface": [
                {
                    "name": "Ethernet2",
                    "subinterfaces": {"subinterface": [{"index": "20"}, {"index": 3}, {"index": "100"}]},
                },
                {"name": "Ethernet10"},
                {"name": "Ethernet1"},
            ]
        }
    }
    result = normalise(tree)
    assert [i["name"] for i in result["interfaces"]["interface"]] == ["Ethernet1", "Ethernet10", "Ethernet2"]
    subs = result["interfaces"]["interface"][2]["subinterfaces"]["subinterface"]
    assert [s["index"] for s in subs] == [3, 20, 100]


def test_leaf_lists_and_unknown_lists_are_sorted_too() -> None:
    assert normalise({"x": {"tags": ["b", "a"], "things": [{"v": 2}, {"v": 1}]}}) == {
        "x": {"tags": ["a", "b"], "things": [{"v": 1}, {"v": 2}]}
    }


def test_extract_selects_list_entries_by_key() -> None:
    tree = normalise(
        {
            "interfaces": {
                "interface": [
                    {
                        "name": "Ethernet1",
                        "subinterfaces": {"subinterface": [{"index": 100, "config": {"index": 100}}]},
                    },
                    {"name": "ge-0/0/1"},
                ]
            }
        }
    )
    assert extract(tree, SUB) == {"index": 100, "config": {"index": 100, "enabled": True}}
    assert extract(tree, SUB.child("config").child("index")) == 100
    assert extract(tree, GPath.parse("interfaces/interface[name=ge-0/0/1]")) == {"name": "ge-0/0/1"}
    assert extract(tree, GPath.parse("interfaces/interface[name=Ethernet2]")) is None
    assert (
        extract(tree, GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=7]")) is None
    )
    assert extract(tree, SUB.child("config").child("index").child("deeper")) is None
    assert extract(tree, GPath.parse("interfaces[name=x]")) is None
    assert extract(tree, GPath()) == tree


def test_build_tree_from_leaf_updates_creates_entries_with_key_leaves() -> None:
    tree = build_tree(
        [
            (SUB.child("config").child("enabled"), False),
            (SUB.child("config").child("index"), 100),
            (GPath.parse("openconfig-interfaces:interfaces/interface[name=Ethernet1]/config/name"), "Ethernet1"),
            (
                GPath.parse(
                    "qos/scheduler-policies/scheduler-policy[name=E1.5]/schedulers/scheduler[sequence=0]/two-rate-three-color/config/cir"
                ),
                "5000000",
            ),
        ]
    )
    assert normalise(tree) == {
        "interfaces": {
            "interface": [
                {
                    "name": "Ethernet1",
                    "config": {"name": "Ethernet1", "enabled": True},
                    "subinterfaces": {"subinterface": [{"index": 100, "config": {"index": 100, "enabled": False}}]},
                }
            ]
        },
        "qos": {
            "scheduler-policies": {
                "scheduler-policy": [
                    {
                        "name": "E1.5",
                        "schedulers": {
                            "scheduler": [{"sequence": 0, "two-rate-three-color": {"config": {"cir": 5_000_000}}}]
                        },
                    }
                ]
            }
        },
    }


def test_build_tree_applies_deletes_of_subtrees_in_order() -> None:
    port = GPath.parse("interfaces/interface[name=Ethernet1]")
    tree = build_tree(
        [
            (SUB.child("config").child("description"), "x"),
            (SUB.parent.child("subinterface", {"index": "200"}).child("config").child("index"), 200),
            (port.child("config").child("mtu"), 9000),
            (SUB, None),
            (port.child("config").child("mtu"), None),
            (GPath.parse("interfaces/interface[name=Ethernet7]"), None),
            (GPath.parse("qos"), None),
        ]
    )
    assert normalise(tree) == {
        "interfaces": {
            "interface": [
                {
                    "name": "Ethernet1",
                    "subinterfaces": {"subinterface": [{"index": 200, "config": {"index": 200, "enabled": True}}]},
                }
            ]
        }
    }
    assert build_tree([(GPath(), None)], base=tree) == {}


def test_build_tree_grafts_get_responses_and_does_not_mutate_the_base() -> None:
    base: dict[str, Any] = {"interfaces": {"interface": [{"name": "Ethernet1"}]}}
    subtree = {"openconfig-interfaces:index": 100, "config": {"index": 100, "description": "d"}}
    tree = build_tree([(SUB, subtree)], base=base)
    assert base == {"interfaces": {"interface": [{"name": "Ethernet1"}]}}
    assert extract(normalise(tree), SUB) == {
        "index": 100,
        "config": {"index": 100, "description": "d", "enabled": True},
    }
    # A later update of the same entry replaces its content.
    tree = build_tree([(SUB, {"config": {"index": 100}})], base=tree)
    assert extract(normalise(tree), SUB) == {"index": 100, "config": {"index": 100, "enabled": True}}
    whole = build_tree([(GPath(), {"openconfig-qos:qos": {"interfaces": {}}})], base=tree)
    assert whole == {"qos": {"interfaces": {}}}
    with pytest.raises(ValueError):
        build_tree([(GPath(), 5)])
    with pytest.raises(ValueError):
        build_tree([(SUB, "not an object")])


JSON_LEAVES = st.one_of(
    st.integers(-5, 10**12),
    st.booleans(),
    st.sampled_from(["true", "false", "17", "openconfig-x:Y", "a:b", "x"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
NAMES = st.sampled_from(
    [
        "config",
        "state",
        "enabled",
        "cir",
        "index",
        "name",
        "ip",
        "openconfig-qos:qos",
        "interface",
        "subinterfaces",
        "x",
    ]
)
TREES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(NAMES, children, max_size=4)),
    max_leaves=25,
)


@given(st.dictionaries(NAMES, TREES, max_size=4))
def test_normalise_is_idempotent(tree: dict[str, Any]) -> None:
    once = normalise(tree)
    assert normalise(once) == once

"""Pure tree logic: schema validation, Set semantics, diff, JSON, derived state. No I/O."""

from __future__ import annotations

import copy
import json
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devicesim import paths as P
from devicesim import schema as S
from devicesim import tree as T
from devicesim.errors import GnmiError

PORTS = ("Ethernet1", "Ethernet2")
IF1 = "/interfaces/interface[name=Ethernet1]"
SUB10 = f"{IF1}/subinterfaces/subinterface[index=10]"


def fresh(links: dict[str, bool] | None = None) -> dict[str, Any]:
    return T.factory_root(PORTS, links or {})


def pat(text: str) -> P.Pattern:
    pats = P.resolve(P.parse_text(text), list_end="node", allow_wild=False)
    assert len(pats) == 1
    return pats[0]


def run(root: dict[str, Any], *ops: tuple[str, str, Any], links: dict[str, bool] | None = None
        ) -> tuple[dict[str, Any], T.Diff]:
    txn = T.Txn(root, PORTS, links or {})
    for op in ops:
        kind, text = op[0], op[1]
        if kind == "delete":
            for p in P.resolve(P.parse_text(text), list_end="wild"):
                txn.delete(p)
        elif kind == "replace":
            txn.replace(pat(text), op[2])
        else:
            txn.update(pat(text), op[2])
    diff = txn.finish()
    return txn.root, diff


def fails(root: dict[str, Any], *ops: tuple[str, str, Any], code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
          match: str = "") -> str:
    with pytest.raises(GnmiError) as ei:
        run(root, *ops)
    assert ei.value.code == code, ei.value
    assert match in ei.value.message, ei.value.message
    return ei.value.message


def at(root: dict[str, Any], text: str) -> Any:
    p = P.resolve(P.parse_text(text), list_end="wild")[0]
    found = list(T.expand(root, p.segs))
    return found[0][1] if found else None


def subif_keys(root: dict[str, Any], port: str = "Ethernet1") -> list[tuple[Any, ...]]:
    found = T.lookup(root, ("interfaces", "interface", (port,), "subinterfaces", "subinterface"))
    return [] if found is T.MISSING else list(found)


def config(root: dict[str, Any]) -> dict[str, Any]:
    return T.config_json(root)


SUB10_BODY = {"config": {"description": "cust-A"},
              "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}}


# ---------------------------------------------------------------------------------------------
# schema & factory state


def test_factory_tree_has_physical_ports_with_defaults_and_state() -> None:
    root = fresh()
    assert [e["name"] for e in root["interfaces"]["interface"].values()] == list(PORTS)
    cfg = at(root, f"{IF1}/config")
    assert cfg == {"name": "Ethernet1", "type": "ethernetCsmacd", "enabled": True, "mtu": 1500}
    state = at(root, f"{IF1}/state")
    assert state["oper-status"] == "UP" and state["admin-status"] == "UP" and state["mtu"] == 1500
    assert state["counters"] == {"in-octets": 0, "out-octets": 0}


def test_schema_is_declarative_and_renders() -> None:
    text = "\n".join(S.tree_text())
    assert "interface[name]" in text and "mtu: uint16 68..9216 default 1500" in text
    assert "unique(vlan/match/single-tagged/config/vlan-id)" in text
    assert "must pir >= cir" in text
    assert "ref /qos/scheduler-policies/scheduler-policy[name={name}]" in text


@pytest.mark.parametrize(("path", "value", "match"), [
    (f"{IF1}/config/mtu", 67, "out of range 68..9216"),
    (f"{IF1}/config/mtu", 9217, "out of range 68..9216"),
    (f"{IF1}/config/mtu", "1500", "expected uint16"),
    (f"{IF1}/config/mtu", True, "expected uint16"),
    (f"{IF1}/config/enabled", "yes", "expected a boolean"),
    (f"{IF1}/config/description", 5, "expected a string"),
    (f"{IF1}/config/type", "fooIf", "is not one of"),
    (f"{IF1}/config/description", None, "null is not a valid value"),
    (f"{SUB10}/vlan/match/single-tagged/config/vlan-id", 0, "out of range 1..4094"),
    (f"{SUB10}/vlan/match/single-tagged/config/vlan-id", 4095, "out of range 1..4094"),
    (f"{SUB10}/ipv4/addresses/address[ip=10.0.0.1]/config/prefix-length", 33, "out of range 0..32"),
    (f"{SUB10}/ipv4/addresses/address[ip=10.0.0.1]/config/ip", "10.0.0.2", "does not match the list key"),
    ("/network-instances/network-instance[name=vrf1]/config/type", "L2VSI", "is not one of"),
    ("/qos/scheduler-policies/scheduler-policy[name=p]/schedulers/scheduler[sequence=1]/"
     "two-rate-three-color/config/bc", -1, "out of range"),
])
def test_type_range_enum_errors_name_path_and_rule(path: str, value: Any, match: str) -> None:
    msg = fails(fresh(), ("update", path, value), match=match)
    assert msg.startswith("/"), msg  # the message names the path


def test_ipv4_keys_and_values_are_validated() -> None:
    fails(fresh(), ("update", f"{SUB10}/ipv4/addresses/address[ip=300.1.1.1]/config/prefix-length", 24),
          match="not a dotted IPv4 address")
    root, _ = run(fresh(), ("update", f"{SUB10}/ipv4/addresses/address[ip=10.0.0.1]/config/prefix-length", 24))
    assert at(root, f"{SUB10}/ipv4/addresses/address[ip=10.0.0.1]") == {
        "ip": "10.0.0.1", "config": {"ip": "10.0.0.1", "prefix-length": 24}}


def test_identities_accept_module_prefix_and_store_bare() -> None:
    ni = "/network-instances/network-instance[name=vrf1]/config/type"
    for v in ("L3VRF", "openconfig-network-instance-types:L3VRF"):
        root, _ = run(fresh(), ("update", ni, v))
        assert at(root, ni) == "L3VRF"
    fails(fresh(), ("update", ni, "other-module:L3VRF"), match="not from module")


def test_unknown_elements_are_not_found() -> None:
    fails(fresh(), ("update", IF1, {"config": {"speed": 10}}), code=grpc.StatusCode.NOT_FOUND,
          match="unknown element 'speed'")
    with pytest.raises(GnmiError) as ei:
        pat(f"{IF1}/config/speed")
    assert ei.value.code == grpc.StatusCode.NOT_FOUND


def test_state_is_read_only() -> None:
    fails(fresh(), ("update", f"{IF1}/state/mtu", 9000), match="read-only")
    fails(fresh(), ("update", IF1, {"state": {"mtu": 9000}}), match="read-only")
    fails(fresh(), ("delete", f"{IF1}/state", None), match="read-only")


# ---------------------------------------------------------------------------------------------
# update / replace / delete


def test_leaf_and_subtree_updates_create_entries_with_keys_and_defaults() -> None:
    root, diff = run(fresh(), ("update", SUB10, SUB10_BODY))
    sub = at(root, SUB10)
    assert sub["index"] == 10 and sub["config"] == {"index": 10, "description": "cust-A", "enabled": True}
    assert sub["state"]["oper-status"] == "UP"
    root2, _ = run(fresh(), ("update", f"{SUB10}/config/description", "cust-A"))
    assert at(root2, f"{SUB10}/config") == {"index": 10, "description": "cust-A", "enabled": True}
    assert any(segs[-1] == "description" for segs, _ in diff.updates)


def test_update_merges_and_keeps_unmentioned_values() -> None:
    root, _ = run(fresh(), ("update", f"{IF1}/config", {"mtu": 9000, "enabled": False}))
    root, _ = run(root, ("update", IF1, {"config": {"description": "uplink"}}))
    cfg = at(root, f"{IF1}/config")
    assert cfg["mtu"] == 9000 and cfg["enabled"] is False and cfg["description"] == "uplink"


def test_key_in_path_must_equal_key_leaves_in_value() -> None:
    fails(fresh(), ("update", SUB10, {"index": 11}), match="does not match the list key")
    fails(fresh(), ("update", SUB10, {"config": {"index": 11}}), match="does not match the list key")
    fails(fresh(), ("update", f"{SUB10}/config/index", 11), match="does not match the list key")
    root, _ = run(fresh(), ("update", SUB10, {"index": 10, "config": {"index": 10}}))
    assert at(root, SUB10)["index"] == 10


def test_partial_keys_and_wildcards_are_rejected_for_update() -> None:
    txn = T.Txn(fresh(), PORTS, {})
    partial = P.resolve(P.parse_text("/interfaces/interface/config/mtu"), list_end="node")[0]
    with pytest.raises(GnmiError) as ei:
        txn.update(partial, 9000)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "partial key" in ei.value.message
    with pytest.raises(GnmiError) as ei:
        P.resolve(P.parse_text("/interfaces/interface[name=*]/config/mtu"), allow_wild=False)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_subinterfaces_only_under_physical_ports() -> None:
    fails(fresh(), ("update", "/interfaces/interface[name=Ethernet9]/subinterfaces/subinterface[index=1]/"
                              "config/description", "x"), match="not a physical port")
    fails(fresh(), ("update", "/interfaces/interface", [{"name": "Loopback0"}]), match="not a physical port")


def test_duplicate_vlan_on_one_interface_is_invalid() -> None:
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY))
    vlan = {"vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}}
    msg = fails(root, ("update", f"{IF1}/subinterfaces/subinterface[index=11]", vlan),
                match="vlan-id 100 is already used")
    assert "subinterface[index=10]" in msg
    # the same VLAN on another port is fine
    run(root, ("update", "/interfaces/interface[name=Ethernet2]/subinterfaces/subinterface[index=11]", vlan))


def test_network_instance_interface_must_reference_existing_subinterface() -> None:
    ni_if = "/network-instances/network-instance[name=vrf1]/interfaces/interface[id=Ethernet1.10]"
    body = {"config": {"interface": "Ethernet1", "subinterface": 10}}
    fails(fresh(), ("update", ni_if, body), match="reference to /interfaces/interface[name=Ethernet1]/"
                                                  "subinterfaces/subinterface[index=10] which does not exist")
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY), ("update", ni_if, body))
    assert at(root, f"{ni_if}/config") == {"id": "Ethernet1.10", "interface": "Ethernet1", "subinterface": 10}
    # deleting the referenced subinterface breaks the reference: rejected, in the same Set it is fine
    fails(root, ("delete", SUB10, None), match="does not exist")
    run(root, ("delete", "/network-instances", None), ("delete", SUB10, None))


def test_qos_rules() -> None:
    pol = "/qos/scheduler-policies/scheduler-policy[name=gold]"
    sched = f"{pol}/schedulers/scheduler[sequence=1]"
    fails(fresh(), ("update", f"{sched}/two-rate-three-color/config", {"cir": 2000, "pir": 1000}),
          match="pir (1000) must be >= cir (2000)")
    qif = "/qos/interfaces/interface[interface-id=Ethernet1.10]"
    binding = {"interface-ref": {"config": {"interface": "Ethernet1", "subinterface": 10}},
               "output": {"scheduler-policy": {"config": {"name": "gold"}}}}
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY))
    fails(root, ("update", qif, binding), match="scheduler-policy[name=gold] which does not exist")
    root, _ = run(root, ("update", sched, {"config": {"type": "TWO_RATE_THREE_COLOR"},
                                           "two-rate-three-color": {"config": {"cir": 8_000_000,
                                                                               "pir": 10_000_000}}}),
                  ("update", qif, binding))
    assert T.traffic_rates(root) == {("Ethernet1", 10): 8_000_000}
    # an interface-ref without subinterface references the interface itself
    run(root, ("update", "/qos/interfaces/interface[interface-id=Ethernet2]/interface-ref/config",
               {"interface": "Ethernet2"}))
    fails(root, ("delete", pol, None), match="does not exist")


def test_replace_resets_omitted_leaves_and_removes_unlisted_entries() -> None:
    root, _ = run(fresh(), ("update", f"{IF1}/config", {"mtu": 9000, "description": "x", "enabled": False}),
                  ("update", SUB10, SUB10_BODY),
                  ("update", f"{IF1}/subinterfaces/subinterface[index=20]/config/description", "y"))
    root, diff = run(root, ("replace", f"{IF1}/config", {"description": "new"}))
    assert at(root, f"{IF1}/config") == {"name": "Ethernet1", "description": "new", "enabled": True,
                                         "mtu": 1500, "type": "ethernetCsmacd"}
    changed = {segs[-1]: v for segs, v in diff.updates}
    assert changed["mtu"] == 1500 and changed["enabled"] is True  # reverting to a default is an update
    root, diff = run(root, ("replace", f"{IF1}/subinterfaces",
                            {"subinterface": [{"index": 20, "config": {"index": 20}}]}))
    assert subif_keys(root) == [(20,)]
    assert at(root, f"{IF1}/subinterfaces/subinterface[index=20]/config") == {"index": 20, "enabled": True}
    assert sorted(P.segs_text(s) for s, _ in diff.deletes) == sorted([
        f"{IF1}/subinterfaces/subinterface[index=20]/config/description", SUB10])


def test_replace_entry_with_empty_object_is_invalid() -> None:
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY))
    fails(root, ("replace", SUB10, {}), match="without keys")
    fails(root, ("replace", f"{IF1}/config/description", None), match="null")


def test_delete_semantics() -> None:
    root, _ = run(fresh(), ("update", f"{IF1}/config", {"mtu": 9000, "description": "x"}),
                  ("update", SUB10, SUB10_BODY))
    # a missing path is not an error
    _, diff = run(root, ("delete", f"{IF1}/subinterfaces/subinterface[index=99]", None))
    assert not diff
    # a leaf with a default reverts to it; one without disappears
    r2, _ = run(root, ("delete", f"{IF1}/config/mtu", None), ("delete", f"{IF1}/config/description", None))
    assert at(r2, f"{IF1}/config") == {"name": "Ethernet1", "type": "ethernetCsmacd", "enabled": True, "mtu": 1500}
    # the physical interface stays: delete resets its config and removes its subinterfaces
    r3, diff = run(root, ("delete", IF1, None))
    entry = at(r3, IF1)
    assert entry["config"] == {"name": "Ethernet1", "type": "ethernetCsmacd", "enabled": True, "mtu": 1500}
    assert "subinterfaces" not in entry and entry["state"]["oper-status"] == "UP"
    assert SUB10 in [P.segs_text(s) for s, _ in diff.deletes]
    # wildcard delete
    r4, _ = run(root, ("delete", "/interfaces/interface[name=*]/subinterfaces/subinterface", None))
    assert at(r4, f"{IF1}/subinterfaces") is None
    fails(root, ("delete", f"{IF1}/config/name", None), match="key leaf")


def test_list_node_update_takes_a_json_array() -> None:
    root, _ = run(fresh(), ("update", f"{IF1}/subinterfaces/subinterface",
                            [{"index": 1, "config": {"description": "a"}}, {"index": 2}]))
    assert sorted(subif_keys(root)) == [(1,), (2,)]
    fails(fresh(), ("update", f"{IF1}/subinterfaces/subinterface", [{"config": {}}]), match="without its key")
    fails(fresh(), ("update", f"{IF1}/subinterfaces/subinterface", {"index": 1}), match="JSON array")


def test_failed_transaction_leaves_committed_tree_untouched() -> None:
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY))
    snapshot = copy.deepcopy(root)
    fails(root, ("delete", f"{IF1}/config/description", None), ("update", f"{IF1}/config/mtu", 9000),
          ("update", f"{SUB10}/config/enabled", False), ("update", f"{IF1}/config/mtu", 1))
    assert root == snapshot


def test_copy_on_write_shares_untouched_subtrees() -> None:
    root = fresh()
    new, diff = run(root, ("update", f"{IF1}/config/description", "d"))
    if1, if2 = (("Ethernet1",), ("Ethernet2",))
    assert new["interfaces"]["interface"][if2] is root["interfaces"]["interface"][if2]
    assert new["interfaces"]["interface"][if1] is not root["interfaces"]["interface"][if1]
    assert "description" not in root["interfaces"]["interface"][if1]["config"]
    assert [(P.segs_text(s), v) for s, v in diff.updates] == [(f"{IF1}/config/description", "d")]


# ---------------------------------------------------------------------------------------------
# derived state and counters


def test_state_follows_config_and_link() -> None:
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY))
    assert at(root, f"{SUB10}/state/oper-status") == "UP"
    r2, diff = run(root, ("update", f"{IF1}/config/enabled", False))
    assert at(r2, f"{IF1}/state/admin-status") == "DOWN"
    assert at(r2, f"{SUB10}/state/oper-status") == "DOWN"
    assert (f"{SUB10}/state/oper-status", "DOWN") in [(P.segs_text(s), v) for s, v in diff.updates]
    r3, _ = run(root, ("update", f"{SUB10}/config/enabled", False))
    assert at(r3, f"{SUB10}/state") ["admin-status"] == "DOWN"
    # link down (a lever, not config): oper DOWN, admin stays UP
    txn = T.Txn(root, PORTS, {"Ethernet1": False})
    txn.touch_interface("Ethernet1")
    txn.finish(validate=False)
    assert at(txn.root, f"{IF1}/state/oper-status") == "DOWN"
    assert at(txn.root, f"{IF1}/state/admin-status") == "UP"
    assert at(txn.root, f"{SUB10}/state/oper-status") == "DOWN"


def test_counters_grow_with_cir_only_while_up() -> None:
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY),
                  ("update", f"{IF1}/subinterfaces/subinterface[index=20]/config/enabled", False))
    rates = {("Ethernet1", 10): 8_000_000}
    r2 = T.tick_counters(root, 1_000_000_000, rates)
    assert at(r2, f"{SUB10}/state/counters") == {"in-octets": 500_000, "out-octets": 1_000_000}
    assert at(r2, f"{IF1}/state/counters") == {"in-octets": 500_000, "out-octets": 1_000_000}
    assert at(r2, f"{IF1}/subinterfaces/subinterface[index=20]/state/counters")["out-octets"] == 0
    # counters survive config changes and are zeroed by a reboot
    r3, _ = run(r2, ("update", f"{SUB10}/config/description", "z"))
    assert at(r3, f"{SUB10}/state/counters")["out-octets"] == 1_000_000
    assert at(T.reset_counters(r3), f"{SUB10}/state/counters")["out-octets"] == 0
    # default rate without QoS
    r4 = T.tick_counters(root, 1_000_000_000, {})
    assert at(r4, f"{SUB10}/state/counters")["out-octets"] == T.DEFAULT_RATE_BPS // 8


# ---------------------------------------------------------------------------------------------
# JSON encoding


def test_json_ietf_names_and_values() -> None:
    root, _ = run(fresh(), ("update", SUB10, {**SUB10_BODY, "ipv4": {"addresses": {"address": [
        {"ip": "10.0.0.1", "config": {"ip": "10.0.0.1", "prefix-length": 30}}]}}}),
        ("update", "/network-instances/network-instance[name=vrf1]/config/type", "L3VRF"))
    doc = T.encode(S.ROOT, root, entry=False, ietf=True)
    assert set(doc) == {"openconfig-interfaces:interfaces", "openconfig-network-instance:network-instances"}
    sub = doc["openconfig-interfaces:interfaces"]["interface"][0]["subinterfaces"]["subinterface"][0]
    assert "openconfig-vlan:vlan" in sub and "openconfig-if-ip:ipv4" in sub and "config" in sub
    assert sub["state"]["counters"] == {"in-octets": "0", "out-octets": "0"}  # uint64 as strings
    ni = doc["openconfig-network-instance:network-instances"]["network-instance"][0]
    assert ni["config"]["type"] == "openconfig-network-instance-types:L3VRF"
    plain = T.encode(S.ROOT, root, entry=False)
    assert "interfaces" in plain and ":" not in json.dumps(list(plain))


def test_datatype_filters() -> None:
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY))
    entry = at(root, IF1)
    node = P.node_at(("interfaces", "interface"))
    cfg = T.encode(node, entry, entry=True, dtype="CONFIG")
    assert "state" not in cfg and cfg["subinterfaces"]["subinterface"][0]["config"]["description"] == "cust-A"
    state = T.encode(node, entry, entry=True, dtype="STATE")
    assert "config" not in state and state["name"] == "Ethernet1" and state["state"]["oper-status"] == "UP"
    assert "vlan" not in state["subinterfaces"]["subinterface"][0]
    oper = T.encode(node, entry, entry=True, dtype="OPERATIONAL")
    assert set(oper["state"]) == {"oper-status", "counters"}
    assert T.encode(P.node_at(("interfaces", "interface", ("x",), "config")), entry["config"], entry=False,
                    dtype="STATE") is None


# ---------------------------------------------------------------------------------------------
# paths


def test_path_text_parsing_and_escapes() -> None:
    elems = P.parse_text(r"/a/b[k=v1/2][j=x\]y]/c")
    assert elems == [P.Elem("a"), P.Elem("b", (("k", "v1/2"), ("j", "x]y"))), P.Elem("c")]
    assert P.parse_text(P.elems_text(elems)) == elems


def test_wildcard_resolution_on_the_schema() -> None:
    pats = P.resolve(P.parse_text("/interfaces/.../mtu"))
    assert sorted(P.segs_text(p.segs) for p in pats) == [
        "/interfaces/interface[name=*]/config/mtu", "/interfaces/interface[name=*]/state/mtu"]
    pats = P.resolve(P.parse_text(f"{IF1}/*/mtu"))
    assert len(pats) == 2
    assert P.resolve(P.parse_text("/interfaces/interface"))[0].segs == ("interfaces", "interface", (P.WILD,))
    with pytest.raises(GnmiError) as ei:
        P.resolve(P.parse_text(f"{IF1}/subinterfaces/subinterface[index=abc]"))
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(GnmiError) as ei:
        P.resolve(P.parse_text("/interfaces/interface[id=1]"))
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "not a key" in ei.value.message
    with pytest.raises(GnmiError) as ei:
        P.resolve(P.parse_text("/nothing/.../here"))
    assert ei.value.code == grpc.StatusCode.NOT_FOUND


def test_module_qualified_path_elements() -> None:
    a = P.resolve(P.parse_text("/openconfig-interfaces:interfaces/interface[name=Ethernet1]"))
    b = P.resolve(P.parse_text("/interfaces/interface[name=Ethernet1]"))
    assert a[0].segs == b[0].segs
    with pytest.raises(GnmiError):
        P.resolve(P.parse_text("/openconfig-qos:interfaces"))


# ---------------------------------------------------------------------------------------------
# properties

_descr = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_sub_ops = st.lists(st.tuples(st.sampled_from(PORTS), st.integers(0, 50), _descr, st.integers(1, 4094),
                              st.booleans()), max_size=12)


@settings(max_examples=60, deadline=None)
@given(_sub_ops)
def test_config_round_trips_through_replace(ops: list[tuple[str, int, str, int, bool]]) -> None:
    """Whatever valid config a Set sequence builds, replacing / with its JSON rebuilds it."""
    root = fresh()
    for port, idx, descr, vlan, enabled in ops:
        body = {"config": {"description": descr, "enabled": enabled},
                "vlan": {"match": {"single-tagged": {"config": {"vlan-id": vlan}}}}}
        try:
            root, _ = run(root, ("update", f"/interfaces/interface[name={port}]/subinterfaces/"
                                           f"subinterface[index={idx}]", body))
        except GnmiError as err:
            assert "already used" in err.message  # the only way these can fail: duplicate VLAN
    doc = config(root)
    rebuilt, _ = run(fresh(), ("replace", "/", doc))
    assert config(rebuilt) == doc
    _, diff = run(rebuilt, ("replace", "/", json.loads(json.dumps(doc))))
    assert not diff.deletes and not [u for u in diff.updates if "state" not in u[0]]


_op = st.sampled_from([
    ("update", f"{IF1}/config", {"description": "a", "enabled": False}),
    ("update", f"{IF1}/config/mtu", 9000),
    ("replace", f"{IF1}/config", {"mtu": 1400}),
    ("delete", f"{IF1}/config/description", None),
    ("delete", f"{IF1}/config", None),
    ("delete", IF1, None),
    ("replace", f"{IF1}/subinterfaces", {"subinterface": [{"index": 10, "config": {"description": "r"}},
                                                          {"index": 30}]}),
    ("update", f"{IF1}/subinterfaces/subinterface", [{"index": 40, "config": {"enabled": False}}]),
    ("update", SUB10, {"config": {"description": "b"}, "vlan": {"match": {"single-tagged": {"config": {
        "vlan-id": 7}}}}}),
    ("replace", SUB10, {"config": {"enabled": False}}),
    ("update", f"{SUB10}/config/enabled", False),
    ("delete", f"{SUB10}/vlan", None),
    ("delete", SUB10, None),
    ("update", f"{IF1}/subinterfaces/subinterface[index=20]/vlan/match/single-tagged/config/vlan-id", 7),
    ("delete", "/interfaces/interface[name=*]/subinterfaces/subinterface", None),
    ("update", "/interfaces/interface[name=Ethernet2]/config/enabled", False),
    ("replace", "/interfaces/interface[name=Ethernet2]", {"config": {"description": "e2"}}),
    ("update", "/network-instances/network-instance[name=v]/config/type", "L3VRF"),
    ("update", "/network-instances/network-instance[name=v]/interfaces/interface[id=a]/config",
     {"interface": "Ethernet1", "subinterface": 10}),
    ("delete", "/network-instances", None),
    ("update", "/qos/scheduler-policies/scheduler-policy[name=p]/config/name", "p"),
    ("delete", "/qos", None),
    ("replace", "/", {"interfaces": {"interface": [{"name": "Ethernet1", "config": {"mtu": 2000}}]}}),
    ("delete", "/", None),
    ("update", f"{IF1}/config/mtu", 1),  # invalid: the whole transaction must fail
])
_ops = st.lists(_op, min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ops, min_size=1, max_size=4))
def test_guided_diff_equals_full_diff(txns: list[list[tuple[str, str, Any]]]) -> None:
    """The transaction's diff (only keys it wrote) must equal a full comparison of the trees."""
    root, _ = run(fresh(), ("update", SUB10, SUB10_BODY),
                  ("update", "/interfaces/interface[name=Ethernet2]/subinterfaces/subinterface[index=5]",
                   {"config": {"description": "e2"}}))
    for ops in txns:
        snapshot = copy.deepcopy(root)
        try:
            new, diff = run(root, *ops)
        except GnmiError:
            assert root == snapshot  # a failed transaction changed nothing
            continue
        full = T.diff_trees(root, new)
        assert sorted(map(repr, diff.updates)) == sorted(map(repr, full.updates))
        assert sorted(map(repr, diff.deletes)) == sorted(map(repr, full.deletes))
        assert root == snapshot  # the committed tree is never mutated
        root = new

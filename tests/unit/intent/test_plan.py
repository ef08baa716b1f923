from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import jsonpatch
from hypothesis import given
from hypothesis import strategies as st

from controller.intent import (
    DeviceEntry,
    DeviceIntent,
    GPath,
    ServiceKey,
    SetPlan,
    assess,
    extract,
    merge,
    normalise,
    plan,
    verify,
)
from controller.intent.plan import _holds

from .helpers import CREATED, apply_set, device_with_ports, make_spec, owned_on, service

SUB = GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]")
POLICY = GPath.parse("qos/scheduler-policies/scheduler-policy[name=Ethernet1.100]")
QOS_IF = GPath.parse("qos/interfaces/interface[interface-id=Ethernet1.100]")
VRF = GPath.parse("network-instances/network-instance[name=blue]")


def configured(intent: DeviceIntent, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The device tree once the intent has been applied (what a read-back returns)."""
    tree = normalise(base or device_with_ports("Ethernet1", "Ethernet2"))
    return apply_set(tree, plan(intent, tree))


def ops(p: SetPlan) -> list[tuple[str, str]]:
    return [(op.op, op.path.to_string()) for op in p.operations]


def test_nothing_differs_means_an_empty_plan() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    tree = configured(intent)
    result = plan(intent, tree)
    assert result.is_empty
    assert result.to_json() == []
    assert result.describe() == "no change on pe1"
    assert verify(intent, tree) == []


def test_equal_config_in_json_ietf_form_with_state_is_not_drift() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    ietf = copy.deepcopy(configured(intent))
    scheduler = extract(ietf, POLICY)["schedulers"]["scheduler"][0]
    scheduler["config"]["type"] = "openconfig-qos-types:TWO_RATE_THREE_COLOR"
    rates = scheduler["two-rate-three-color"]
    rates["config"] = {leaf: str(value) for leaf, value in rates["config"].items()}
    rates["state"] = {"cir": "1"}
    vrf = extract(ietf, VRF)
    vrf["config"]["type"] = "openconfig-network-instance-types:L3VRF"
    ietf["interfaces"]["interface"].reverse()
    ietf = {f"openconfig-{name}:{name}": value for name, value in ietf.items()}
    assert plan(intent, ietf).is_empty
    assert verify(intent, ietf) == []


def test_a_new_service_is_one_update_per_entry() -> None:
    svc = service("a", make_spec(serviceType="l3vpn", vrf="blue"))
    intent = merge("pe1", [svc]).intent
    result = plan(intent, device_with_ports("Ethernet1"))
    assert result.deletes == () and result.replaces == ()
    assert [(op.path, op.value) for op in result.updates] == sorted((e.path, e.value) for e in svc.entries)
    assert all(op.owners == (svc.key,) for op in result.updates)
    # A container comes before what lies under it.
    assert [op.path for op in result.updates].index(VRF) < [op.path for op in result.updates].index(
        VRF.child("interfaces").child("interface", {"id": "Ethernet1.100"})
    )


def test_a_changed_bandwidth_updates_just_the_rate_container() -> None:
    before = merge("pe1", [service("a", make_spec(bandwidthMbps=100))]).intent
    after = merge("pe1", [service("a", make_spec(bandwidthMbps=50, peakBandwidthMbps=80))]).intent
    result = plan(after, configured(before))
    rates = (
        POLICY.child("schedulers").child("scheduler", {"sequence": "0"}).child("two-rate-three-color").child("config")
    )
    assert ops(result) == [("update", rates.to_string())]
    assert result.updates[0].value == {"cir": 50_000_000, "pir": 80_000_000, "bc": 62_500, "be": 100_000}


def test_a_disabled_service_updates_the_subinterface_config() -> None:
    before = merge("pe1", [service("a", make_spec())]).intent
    after = merge("pe1", [service("a", make_spec(adminState="disabled"))]).intent
    result = plan(after, configured(before))
    assert ops(result) == [("update", f"{SUB}/config")]
    assert result.updates[0].value == {"index": 100, "description": "telco-intent acme/a", "enabled": False}


def test_foreign_leaves_in_a_managed_entry_are_neither_drift_nor_replaced() -> None:
    intent = merge("pe1", [service("a", make_spec())]).intent
    tree = configured(intent)
    extract(tree, QOS_IF)["config"]["description"] = "set by hand"
    sub = extract(tree, SUB)
    # What a strict device fills in (YANG defaults), and an address an operator added.
    sub["ipv4"]["config"] = {"enabled": True}
    sub["ipv4"]["proxy-arp"] = {"config": {"mode": "DISABLE"}}
    sub["ipv4"]["addresses"]["address"][0]["config"]["type"] = "PRIMARY"
    sub["ipv4"]["addresses"]["address"].append({"ip": "198.51.100.1", "config": {"ip": "198.51.100.1"}})
    assert plan(intent, tree).is_empty
    assert verify(intent, tree) == []


def test_a_changed_owned_leaf_is_updated_alone_and_foreign_siblings_stay() -> None:
    intent = merge("pe1", [service("a", make_spec())]).intent
    tree = configured(intent)
    extract(tree, SUB)["config"].update(description="changed", mtu=9000)
    result = plan(intent, tree)
    assert ops(result) == [("update", f"{SUB}/config")]
    assert result.updates[0].value == {"index": 100, "description": "telco-intent acme/a", "enabled": True}
    after = apply_set(tree, result)
    assert verify(intent, after) == [] and extract(after, SUB)["config"]["mtu"] == 9000


def test_a_changed_address_deletes_the_owned_old_one_and_adds_the_new() -> None:
    old = service("a", make_spec())
    spec = make_spec(endpoints=[{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.9/29"}])
    after = merge("pe1", [service("a", spec)]).intent
    tree = configured(merge("pe1", [old]).intent)
    result = plan(after, tree, owned_on("pe1", old))
    assert ops(result) == [
        ("delete", f"{SUB}/ipv4/addresses/address[ip=192.0.2.1]"),
        ("update", f"{SUB}/ipv4/addresses/address[ip=192.0.2.9]"),
    ]
    assert verify(after, apply_set(tree, result)) == []
    # Without the record of what the controller wrote, the old address is someone else's: left alone.
    assert ops(plan(after, tree)) == [("update", f"{SUB}/ipv4/addresses/address[ip=192.0.2.9]")]


def test_an_address_dropped_from_the_spec_is_deleted_and_the_subinterface_stays() -> None:
    old = service("a", make_spec())
    l2 = make_spec(serviceType="l2vpn", endpoints=[{"device": "pe1", "port": "Ethernet1", "vlanId": 100}])
    after = merge("pe1", [service("a", l2)]).intent
    result = plan(after, configured(merge("pe1", [old]).intent), owned_on("pe1", old))
    assert ops(result) == [("delete", f"{SUB}/ipv4/addresses/address[ip=192.0.2.1]")]


def test_foreign_config_under_a_vrf_is_left_alone_and_an_owned_leaf_is_put_back() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    tree = configured(intent)
    vrf = extract(tree, VRF)
    vrf["protocols"] = {"protocol": [{"identifier": "BGP", "name": "default"}]}
    vrf["interfaces"]["interface"].append(
        {"id": "Ethernet2.1", "config": {"id": "Ethernet2.1", "interface": "Ethernet2"}}
    )
    vrf["config"]["route-distinguisher"] = "65000:42"
    assert plan(intent, tree, created=(VRF,)).is_empty
    del vrf["config"]["type"]
    result = plan(intent, tree, created=(VRF,))
    assert ops(result) == [("update", f"{VRF}/config")]
    assert result.updates[0].value == {"name": "blue", "type": "L3VRF"}, "only owned leaves are sent"
    after = apply_set(tree, result)
    assert extract(after, VRF)["config"]["route-distinguisher"] == "65000:42"
    assert extract(after, VRF)["protocols"] == vrf["protocols"]


def test_a_vrf_the_controller_did_not_create_is_used_as_it_is_and_created_when_absent() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    tree = configured(intent)
    del extract(tree, VRF)["config"]["type"]
    assert ops(plan(intent, tree)) == [], "an operator's VRF: nothing of it is ours to write"
    del tree["network-instances"]["network-instance"][0]
    assert ("update", str(VRF)) in ops(plan(intent, tree))


def test_teardown_on_a_shared_device_removes_exactly_the_departed_service() -> None:
    a = service("a", make_spec(serviceType="l3vpn", vrf="blue"))
    b = service(
        "b",
        make_spec(
            serviceType="l3vpn",
            vrf="blue",
            endpoints=[{"device": "pe1", "port": "Ethernet2", "vlanId": 7, "ipv4Address": "192.0.2.5/30"}],
        ),
        created=CREATED + timedelta(seconds=1),
    )
    base = device_with_ports("Ethernet1", "Ethernet2", "Ethernet3")
    extract(base, GPath.parse("interfaces/interface[name=Ethernet1]"))["config"]["description"] = "uplink"
    base["qos"] = {"scheduler-policies": {"scheduler-policy": [{"name": "manual", "config": {"name": "manual"}}]}}
    tree = configured(merge("pe1", [a, b]).intent, base)
    remaining = merge("pe1", [b]).intent
    result = plan(remaining, tree, owned_on("pe1", a, created=(VRF,)), created=(VRF,))
    assert ops(result) == [
        ("delete", str(SUB)),
        ("delete", f"{VRF}/interfaces/interface[id=Ethernet1.100]"),
        ("delete", str(QOS_IF)),
        ("delete", str(POLICY)),
    ]
    assert result.for_owner(a.key) == result
    assert result.for_owner(b.key).is_empty
    assert result.owners == {a.key}
    after = apply_set(tree, result)
    assert verify(remaining, after, created=(VRF,)) == []
    assert extract(after, VRF) is not None
    assert extract(after, GPath.parse("interfaces/interface[name=Ethernet1]/config/description")) == "uplink"
    assert extract(after, GPath.parse("qos/scheduler-policies/scheduler-policy[name=manual]")) is not None
    # An operator's BGP under the VRF: when b goes too, its member goes and the VRF stays.
    with_bgp = copy.deepcopy(after)
    extract(with_bgp, VRF)["protocols"] = {"protocol": [{"identifier": "BGP", "name": "bgp"}]}
    kept = plan(merge("pe1", []).intent, with_bgp, owned_on("pe1", b, created=(VRF,)), created=(VRF,))
    assert ("delete", f"{VRF}/interfaces/interface[id=Ethernet2.7]") in ops(kept)
    assert ("delete", str(VRF)) not in ops(kept)
    # A VRF the controller did not create stays too, even once empty.
    foreign = plan(merge("pe1", []).intent, after, owned_on("pe1", b))
    assert ("delete", str(VRF)) not in ops(foreign)
    # It created this one and nothing foreign is left in it: the VRF goes with its last member.
    last = plan(merge("pe1", []).intent, after, owned_on("pe1", b, created=(VRF,)), created=(VRF,))
    assert ops(last) == [
        ("delete", "interfaces/interface[name=Ethernet2]/subinterfaces/subinterface[index=7]"),
        ("delete", str(VRF)),
        ("delete", "qos/interfaces/interface[interface-id=Ethernet2.7]"),
        ("delete", "qos/scheduler-policies/scheduler-policy[name=Ethernet2.7]"),
    ]


def test_teardown_of_absent_paths_other_devices_or_still_claimed_paths_is_a_no_op() -> None:
    a = service("a", make_spec())
    later = service("later", make_spec(bandwidthMbps=5), created=CREATED + timedelta(days=1))
    intent = merge("pe1", [later]).intent
    tree = configured(merge("pe1", [a]).intent)
    # a is gone and the refused service now holds the same paths: update them, delete nothing.
    result = plan(intent, tree, owned_on("pe1", a))
    assert result.deletes == ()
    assert plan(merge("pe1", []).intent, device_with_ports("Ethernet1"), owned_on("pe1", a)).is_empty
    other_device = service(
        "x", make_spec(endpoints=[{"device": "pe2", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}])
    )
    assert plan(merge("pe1", [a]).intent, tree, owned_on("pe1", other_device)).is_empty


def test_a_retired_leaf_never_reaches_above_its_entry() -> None:
    """The port a departed subinterface hung off is not the controller's: it is never deleted."""
    a = service("a", make_spec())
    tree = configured(merge("pe1", [a]).intent)
    result = plan(merge("pe1", []).intent, tree, owned_on("pe1", a))
    assert ("delete", str(SUB)) in ops(result)
    assert all(op.path != SUB.parent.parent for op in result.deletes)
    assert extract(apply_set(tree, result), SUB.parent.parent) is not None


def test_dry_run_rendering_matches_planned_operations() -> None:
    before = merge("pe1", [service("a", make_spec())]).intent
    after = merge("pe1", [service("a", make_spec(bandwidthMbps=1))]).intent
    tree = configured(before)
    extract(tree, QOS_IF)["config"]["description"] = "x"
    result = plan(after, tree)
    rendered = result.to_json()
    assert rendered == [
        {
            "op": "update",
            "device": "pe1",
            "path": f"{POLICY}/schedulers/scheduler[sequence=0]/two-rate-three-color/config",
            "value": '{"bc":1500,"be":1500,"cir":1000000,"pir":1000000}',
        },
    ]
    assert all(json.loads(item["value"]) for item in rendered if item["value"])
    assert result.describe().splitlines()[0].startswith(f"update pe1 {POLICY}/schedulers")


def test_verify_names_entries_owners_and_what_differs() -> None:
    a = service("a", make_spec(serviceType="l3vpn", vrf="blue"))
    intent = merge("pe1", [a]).intent
    tree = configured(intent)
    rates = extract(tree, POLICY)["schedulers"]["scheduler"][0]["two-rate-three-color"]["config"]
    rates["cir"] = 1
    rates["pir"] = 1
    rates["bc"] = 1
    rates["be"] = 1
    del extract(tree, GPath.parse("qos/interfaces"))["interface"]
    drifts = verify(intent, tree)
    assert [(d.device, d.path, d.owners) for d in drifts] == [("pe1", QOS_IF, (a.key,)), ("pe1", POLICY, (a.key,))]
    assert drifts[0].description == "missing on the device"
    assert drifts[1].description == (
        "differs at schedulers/scheduler[sequence=0]/two-rate-three-color/config: bc, be, cir, pir"
    )


def test_a_foreign_leaf_list_value_is_left_alone_and_a_missing_owned_one_is_sent() -> None:
    owner = ServiceKey("ns", "a")
    path = GPath.parse("things/thing[name=t]")
    intent = DeviceIntent("pe1", {path: DeviceEntry(path, {"name": "t", "tags": ["a"]}, (owner,))})
    assert plan(intent, {"things": {"thing": [{"name": "t", "tags": ["a", "b"], "members": {"m": 1}}]}}).is_empty
    result = plan(intent, {"things": {"thing": [{"name": "t", "tags": ["b"]}]}})
    assert ops(result) == [("update", str(path))]


def test_an_unaddressable_foreign_entry_is_not_drift() -> None:
    intent = merge("pe1", [service("a", make_spec())]).intent
    tree = configured(intent)
    extract(tree, SUB)["ipv4"]["addresses"]["address"].append({"ip": "fe80::1]", "config": {"ip": "fe80::1]"}})
    assert plan(intent, tree).is_empty and verify(intent, tree) == []


def test_a_drift_description_lists_at_most_three_places() -> None:
    owner = ServiceKey("ns", "a")
    path = GPath.parse("things/thing[name=t]")
    value = {"name": "t", **{c: {"x": 1} for c in "abcd"}}
    intent = DeviceIntent("pe1", {path: DeviceEntry(path, value, (owner,))})
    tree = {"things": {"thing": [{"name": "t", **{c: {"x": 2, "foreign": 1} for c in "abcd"}}]}}
    (drift,) = verify(intent, tree)
    assert drift.description == "differs at a: x; differs at b: x; differs at c: x; and 1 more"
    assert ops(plan(intent, tree)) == [("update", f"{path}/{c}") for c in "abcd"]


def test_drift_names_each_owned_container_that_differs() -> None:
    intent = merge("pe1", [service("a", make_spec())]).intent
    tree = configured(intent)
    sub = extract(tree, SUB)
    sub["config"]["description"] = "changed"
    sub["config"]["mtu"] = 1500
    del sub["vlan"]
    sub["ipv4"]["addresses"]["address"][0]["config"]["prefix-length"] = 31
    (drift,) = verify(intent, tree)
    assert drift.description == (
        "differs at config: description; "
        "differs at ipv4/addresses/address[ip=192.0.2.1]/config: prefix-length; "
        "differs at vlan"
    )
    assert ops(plan(intent, tree)) == [
        ("update", f"{SUB}/config"),
        ("update", f"{SUB}/ipv4/addresses/address[ip=192.0.2.1]/config"),
        ("update", f"{SUB}/vlan"),
    ]


def test_a_plan_splits_by_owner_and_shared_ops_stay_while_one_owner_wants_them() -> None:
    a = service("a", make_spec(serviceType="l3vpn", vrf="blue"))
    b = service(
        "b",
        make_spec(
            serviceType="l3vpn",
            vrf="blue",
            endpoints=[{"device": "pe1", "port": "Ethernet2", "vlanId": 7, "ipv4Address": "192.0.2.5/30"}],
        ),
    )
    result = plan(merge("pe1", [a, b]).intent, device_with_ports("Ethernet1", "Ethernet2"))
    assert result.owners == {a.key, b.key}
    only_a = result.for_owner(a.key)
    assert {op.path for op in only_a.operations} == {e.path for e in a.entries}
    assert only_a.device == "pe1"
    without_a = result.without_owners({a.key})
    assert {op.path for op in without_a.operations} == {e.path for e in b.entries}
    assert VRF in {op.path for op in without_a.operations}
    assert result.without_owners({a.key, b.key}).is_empty


def test_assess_gives_the_plan_and_the_drift_it_repairs_from_one_diff() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    tree = copy.deepcopy(configured(intent))
    extract(tree, POLICY)["schedulers"]["scheduler"][0]["two-rate-three-color"]["config"]["cir"] = 1
    result = assess(intent, tree)
    assert result.plan == plan(intent, tree)
    assert [d.path for d in result.drifts] == [d.path for d in verify(intent, tree)] == [POLICY]
    assert result.plan.entries_written(intent) == [POLICY], "the read-back covers the written entry only"


def test_verify_can_be_limited_to_some_entries() -> None:
    intent = merge("pe1", [service("a", make_spec())]).intent
    tree = copy.deepcopy(configured(intent))
    del extract(tree, SUB)["config"]["description"]
    assert [d.path for d in verify(intent, tree, only=[SUB])] == [SUB]
    assert verify(intent, tree, only=[POLICY, QOS_IF]) == []


def test_a_fresh_device_touches_every_entry() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    result = assess(intent, normalise(device_with_ports("Ethernet1")))
    assert result.plan.entries_written(intent) == sorted(intent.entries)
    assert len(result.drifts) == len(intent.entries)


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(-2, 2), st.sampled_from("ab"))
JSON_TREES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("xyz"), inner, max_size=3)),
    max_leaves=12,
)


@given(
    st.dictionaries(st.sampled_from("xyz"), JSON_TREES, max_size=3),
    st.dictionaries(st.sampled_from("xyz"), JSON_TREES, max_size=3),
)
def test_an_entry_that_holds_every_intended_leaf_needs_no_patch(have: Any, want: Any) -> None:
    # _diff's fast path skips the JSON patch when the device's copy holds every intended leaf: the patch from
    # `have` to `want` must then have nothing but removes (foreign leaves, defaults), never add/replace/move.
    if _holds(have, want):
        assert {op["op"] for op in jsonpatch.make_patch(have, want)} <= {"remove"}, (have, want)


def test_holds_is_as_strict_about_types_as_the_patch() -> None:
    assert _holds({"a": 1, "b": {"c": "x", "d": True}, "e": [1]}, {"b": {"c": "x"}, "a": 1})
    assert not _holds({"a": 1}, {"a": True})  # JSON 1 is not true
    assert not _holds({"a": 1}, {"a": 1.0})
    assert not _holds({"a": {"b": 1}}, {"a": {"b": 1, "c": None}})  # an intended leaf missing
    assert not _holds({"a": [1, 2]}, {"a": [1]})  # leaf-lists compare whole

"""Set: order, atomicity, replace/delete semantics, validation errors with the failing op's own code."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import grpc
import pytest
from pygnmi.client import gNMIclient, gNMIException
from pygnmi.spec.v080 import gnmi_pb2

from devicesim import DeviceInfo, Fleet
from tests.devicesim.devicesim_testlib import Raw, code_of, deletes, details_of, jv, leaves, path_str

IF1 = "/interfaces/interface[name=Ethernet1]"
SUB10 = f"{IF1}/subinterfaces/subinterface[index=10]"
VLAN = "vlan/match/single-tagged/config/vlan-id"
SUB10_BODY = {"config": {"description": "cust-A"},
              "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}}
NI_IF = "/network-instances/network-instance[name=vrf-a]/interfaces/interface[id=Ethernet1.10]"
POLICY = "/qos/scheduler-policies/scheduler-policy[name=gold]"
QOS_IF = "/qos/interfaces/interface[interface-id=Ethernet1.10]"


def rejected(fn: object, code: grpc.StatusCode) -> str:
    """Run a Set expected to fail on a strict device: the failing op's own code (gNMI 3.4.7)."""
    with pytest.raises((grpc.RpcError, gNMIException)) as ei:
        fn()  # type: ignore[operator]
    details = details_of(ei.value)
    assert code_of(ei.value) == code, details
    assert "(no change applied)" in details, details
    return details


def test_leaf_updates_via_pygnmi(gnmi: gNMIclient, raw: Raw) -> None:
    resp = gnmi.set(update=[(f"{IF1}/config/mtu", 9000), (f"{IF1}/config/enabled", False),
                            (f"{IF1}/config", {"description": "uplink"})])
    assert [r["op"] for r in resp["response"]] == ["UPDATE"] * 3
    assert resp["timestamp"] > 0
    cfg = json.loads(raw.get(f"{IF1}/config").notification[0].update[0].val.json_val)
    assert (cfg["mtu"], cfg["enabled"], cfg["description"]) == (9000, False, "uplink")
    # a string leaf needs a quoted JSON string: the raw stub sends one
    raw.set(update=[(f"{IF1}/config/description", "core link")])
    assert raw.get_val(f"{IF1}/config/description") == "core link"
    # typed scalars are accepted for leaves too
    raw.set(update=[(f"{IF1}/config/mtu", gnmi_pb2.TypedValue(uint_val=1600)),
                    (f"{IF1}/config/description", gnmi_pb2.TypedValue(string_val="typed"))])
    assert raw.get_val(f"{IF1}/config/mtu") == 1600


def test_pygnmi_str_value_is_invalid_json(gnmi: gNMIclient) -> None:
    # pygnmi sends a Python str unquoted: not JSON, and the target must say so
    details = rejected(lambda: gnmi.set(update=[(f"{IF1}/config/description", "uplink")]),
                      grpc.StatusCode.INVALID_ARGUMENT)
    assert "not valid JSON" in details


def test_subtree_update_and_json_ietf_payload(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    assert raw.get_val(f"{SUB10}/{VLAN}") == 100
    raw.set(update=[(f"{IF1}/subinterfaces/subinterface[index=11]",
                     {"openconfig-interfaces:config": {"description": "ietf"},
                      "openconfig-vlan:vlan": {"match": {"single-tagged": {"config": {"vlan-id": 101}}}}})],
            ietf=True)
    assert raw.get_val(f"{IF1}/subinterfaces/subinterface[index=11]/config/description") == "ietf"
    raw.set(update=[(f"{POLICY}/schedulers/scheduler[sequence=1]/two-rate-three-color/config",
                     {"cir": "1000000", "pir": "2000000"})], ietf=True)  # uint64 as RFC 7951 strings
    assert raw.get_val(f"{POLICY}/schedulers/scheduler[sequence=1]/two-rate-three-color/config/pir") == 2_000_000


def test_order_results_and_prefix(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    prefix = gnmi_pb2.Path(target="dev1")
    prefix.elem.add(name="interfaces")
    prefix.elem.add(name="interface", key={"name": "Ethernet1"})
    # delete first, then replace, then update: the update of index=10 wins over the delete
    resp = raw.set(delete=["subinterfaces/subinterface[index=10]"],
                   replace=[("config", {"mtu": 2000})],
                   update=[("subinterfaces/subinterface[index=10]/config/description", "again"),
                           ("config/description", "after replace")], prefix=prefix)
    assert [(r.op, path_str(r.path)) for r in resp.response] == [
        (gnmi_pb2.UpdateResult.DELETE, "/subinterfaces/subinterface[index=10]"),
        (gnmi_pb2.UpdateResult.REPLACE, "/config"),
        (gnmi_pb2.UpdateResult.UPDATE, "/subinterfaces/subinterface[index=10]/config/description"),
        (gnmi_pb2.UpdateResult.UPDATE, "/config/description")]
    assert resp.prefix.target == "dev1" and abs(resp.timestamp - time.time_ns()) < 5 * 10**9
    sub = json.loads(raw.get(SUB10).notification[0].update[0].val.json_val)
    assert sub["config"] == {"index": 10, "description": "again", "enabled": True} and "vlan" not in sub
    assert raw.get_val(f"{IF1}/config/description") == "after replace"
    assert raw.get_val(f"{IF1}/config/mtu") == 2000


def test_failed_multi_operation_set_rolls_back(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    raw.set(update=[(SUB10, SUB10_BODY), (f"{IF1}/config/description", "keep")])
    before = raw.get("/").notification[0].update[0].val.json_val
    stream = raw.subscribe("/interfaces")
    stream.until_sync()
    details = rejected(lambda: raw.set(
        delete=[f"{IF1}/config/description", SUB10],
        replace=[("/interfaces/interface[name=Ethernet2]/config", {"mtu": 4000})],
        update=[(f"{IF1}/config/mtu", 9000), (f"{IF1}/subinterfaces/subinterface[index=12]/{VLAN}", 5000)]),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert "update[1]" in details and "out of range 1..4094" in details
    after = raw.get("/").notification[0].update[0].val.json_val
    assert json.loads(after) == _without_counters(json.loads(before), json.loads(after))
    assert stream.quiet(0.3) == []  # nothing was committed, so nothing was notified
    stream.close()
    assert fleet.admin.stats(dev.name)["set_failed"] == 1


def _without_counters(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``before`` with the (ticking) counters taken from ``after``."""
    for b, a in zip(before["interfaces"]["interface"], after["interfaces"]["interface"], strict=True):
        b["state"]["counters"] = a["state"]["counters"]
        for bs, as_ in zip(b.get("subinterfaces", {}).get("subinterface", []),
                           a.get("subinterfaces", {}).get("subinterface", []), strict=True):
            bs["state"]["counters"] = as_["state"]["counters"]
    return before


def test_error_codes(raw: Raw) -> None:
    rejected(lambda: raw.set(update=[(f"{IF1}/config/speed", 10)]), grpc.StatusCode.NOT_FOUND)
    # an unknown member of the payload is an invalid value, not an invalid path
    rejected(lambda: raw.set(update=[(IF1, {"config": {"bogus": 1}})]), grpc.StatusCode.INVALID_ARGUMENT)
    rejected(lambda: raw.set(update=[(SUB10, {"index": 11})]), grpc.StatusCode.INVALID_ARGUMENT)
    rejected(lambda: raw.set(update=[("/interfaces/interface/config/mtu", 9000)]),
            grpc.StatusCode.INVALID_ARGUMENT)  # partial key set
    rejected(lambda: raw.set(update=[("/interfaces/interface[name=*]/config/mtu", 9000)]),
            grpc.StatusCode.INVALID_ARGUMENT)
    rejected(lambda: raw.set(update=[(f"{IF1}/state/mtu", 9000)]), grpc.StatusCode.INVALID_ARGUMENT)
    rejected(lambda: raw.set(update=[(f"{IF1}/config/mtu", gnmi_pb2.TypedValue(ascii_val="9000"))]),
            grpc.StatusCode.UNIMPLEMENTED)
    rejected(lambda: raw.set(replace=[(SUB10, {})]), grpc.StatusCode.INVALID_ARGUMENT)
    rejected(lambda: raw.set(update=[("/interfaces/interface[name=Ethernet99]/config/mtu", 9000)]),
            grpc.StatusCode.INVALID_ARGUMENT)
    # origin in both prefix and path is a per-operation path error as well
    req = gnmi_pb2.SetRequest(prefix=gnmi_pb2.Path(origin="openconfig"), update=[gnmi_pb2.Update(
        path=gnmi_pb2.Path(origin="openconfig", elem=[gnmi_pb2.PathElem(name="interfaces")]), val=jv({}))])
    rejected(lambda: raw.stub.Set(req, metadata=raw.md, timeout=5), grpc.StatusCode.INVALID_ARGUMENT)


def test_delete_of_missing_path_and_empty_set_succeed(raw: Raw, gnmi: gNMIclient) -> None:
    resp = raw.set(delete=[f"{IF1}/subinterfaces/subinterface[index=77]", "/qos"])
    assert len(resp.response) == 2
    empty = raw.stub.Set(gnmi_pb2.SetRequest(), metadata=raw.md, timeout=5)
    assert len(empty.response) == 0 and empty.timestamp > 0
    assert gnmi.set(delete=["/network-instances"])["response"][0]["op"] == "DELETE"


def test_replace_resets_leaves_and_removes_entries(raw: Raw) -> None:
    raw.set(update=[(f"{IF1}/config", {"mtu": 9000, "description": "x", "enabled": False}),
                    (SUB10, SUB10_BODY), (f"{IF1}/subinterfaces/subinterface[index=20]/config/enabled", False)])
    raw.set(replace=[(f"{IF1}/config", {"description": "only this"})])
    cfg = json.loads(raw.get(f"{IF1}/config").notification[0].update[0].val.json_val)
    assert cfg == {"name": "Ethernet1", "description": "only this", "enabled": True, "mtu": 1500,
                   "type": "ethernetCsmacd"}
    raw.set(replace=[(f"{IF1}/subinterfaces", {"subinterface": [{"index": 30}]})])
    got = raw.get(f"{IF1}/subinterfaces/subinterface[index=*]/index")
    assert [u.val for u in got.notification[0].update] == [jv(30)]


def test_references_through_gnmi(raw: Raw) -> None:
    rejected(lambda: raw.set(update=[(NI_IF, {"config": {"interface": "Ethernet1", "subinterface": 10}})]),
            grpc.StatusCode.INVALID_ARGUMENT)
    raw.set(update=[(SUB10, SUB10_BODY),
                    ("/network-instances/network-instance[name=vrf-a]/config",
                     {"type": "openconfig-network-instance-types:L3VRF"}),
                    (NI_IF, {"config": {"interface": "Ethernet1", "subinterface": 10}}),
                    (f"{POLICY}/schedulers/scheduler[sequence=1]",
                     {"config": {"type": "TWO_RATE_THREE_COLOR"},
                      "two-rate-three-color": {"config": {"cir": 10_000_000, "pir": 20_000_000, "bc": 1000}}}),
                    (QOS_IF, {"interface-ref": {"config": {"interface": "Ethernet1", "subinterface": 10}},
                              "output": {"scheduler-policy": {"config": {"name": "gold"}}}})])
    assert raw.get_val("/network-instances/network-instance[name=vrf-a]/config/type") == "L3VRF"
    details = rejected(lambda: raw.set(delete=[SUB10]), grpc.StatusCode.INVALID_ARGUMENT)
    assert "delete[0]" in details and "does not exist" in details
    rejected(lambda: raw.set(update=[(f"{POLICY}/schedulers/scheduler[sequence=1]/two-rate-three-color/config/pir",
                                     1)]), grpc.StatusCode.INVALID_ARGUMENT)
    rejected(lambda: raw.set(update=[(f"{QOS_IF}/output/scheduler-policy/config/name", "silver")]),
            grpc.StatusCode.INVALID_ARGUMENT)
    # dependent config removed together in one Set is fine
    raw.set(delete=[NI_IF, QOS_IF, SUB10])


def test_changes_are_invisible_until_commit(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    stream = raw.subscribe(f"{IF1}/config/description")
    assert stream.until_sync() == []
    fleet.admin.latency(dev.name, 1.0)
    done = threading.Event()
    def slow_set() -> None:
        raw.set(update=[(f"{IF1}/config/description", "slow")])
        done.set()

    t = threading.Thread(target=slow_set)
    start = time.monotonic()
    t.start()
    time.sleep(0.3)
    assert not done.is_set()
    with pytest.raises(grpc.RpcError) as ei:  # not there yet for Get...
        raw.get(f"{IF1}/config/description")
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert stream.quiet(0.1) == []  # ...nor for subscribers
    n = stream.next(timeout=5).update
    assert leaves([n]) == {f"{IF1}/config/description": "slow"}
    t.join(5)
    assert done.is_set() and time.monotonic() - start >= 1.0
    fleet.admin.latency(dev.name, 0)
    stream.close()


def test_delete_notifies_and_stats_count(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    inner = raw.subscribe(f"{IF1}/subinterfaces/subinterface[index=10]/config")
    outer = raw.subscribe("/interfaces/interface[name=*]/subinterfaces")
    assert leaves(inner.until_sync())[f"{SUB10}/config/description"] == "cust-A"
    outer.until_sync()
    raw.set(delete=[SUB10])
    # the removal is reported at the removed entry, or at the subscribed node inside it
    assert deletes([outer.next().update]) == [SUB10]
    assert deletes([inner.next().update]) == [f"{SUB10}/config"]
    inner.close()
    outer.close()
    stats = fleet.admin.stats(dev.name)
    assert stats["set_rpcs"] == 2 and stats["set_updates"] == 1 and stats["set_deletes"] == 1

"""Get: data types, encodings, prefix/origin/target, wildcards, errors."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from pygnmi.client import gNMIclient
from pygnmi.spec.v080 import gnmi_pb2

from tests.devicesim.devicesim_testlib import Raw, path, path_str, scalar

IF1 = "/interfaces/interface[name=Ethernet1]"
SUB10 = f"{IF1}/subinterfaces/subinterface[index=10]"
SUB10_BODY = {"config": {"description": "cust-A"},
              "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}},
              "ipv4": {"addresses": {"address": [{"ip": "192.0.2.1", "config": {"ip": "192.0.2.1",
                                                                                 "prefix-length": 31}}]}}}


def rpc_code(fn: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as ei:
        fn()  # type: ignore[operator]
    code: grpc.StatusCode = ei.value.code()
    return code


def test_get_types(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    val = lambda t: json.loads(raw.get(IF1, type=t).notification[0].update[0].val.json_val)  # noqa: E731
    allv, cfg, state, oper = (val(t) for t in (gnmi_pb2.GetRequest.ALL, gnmi_pb2.GetRequest.CONFIG,
                                                 gnmi_pb2.GetRequest.STATE, gnmi_pb2.GetRequest.OPERATIONAL))
    assert {"config", "state", "subinterfaces", "name"} <= set(allv)
    assert "state" not in cfg and cfg["config"]["mtu"] == 1500
    assert cfg["subinterfaces"]["subinterface"][0]["vlan"]["match"]["single-tagged"]["config"]["vlan-id"] == 100
    assert "config" not in state and state["state"]["admin-status"] == "UP" and state["name"] == "Ethernet1"
    assert set(state["state"]["counters"]) == {"in-octets", "out-octets"}
    assert set(oper["state"]) == {"oper-status", "counters"}


def test_one_notification_per_path_with_real_timestamps(raw: Raw) -> None:
    before = time.time_ns()
    resp = raw.get(f"{IF1}/config/mtu", "/interfaces/interface[name=Ethernet2]/config/enabled")
    after = time.time_ns()
    assert len(resp.notification) == 2
    for n in resp.notification:
        assert before <= n.timestamp <= after
        assert not n.HasField("prefix") or not n.prefix.target
    assert [scalar(n.update[0].val) for n in resp.notification] == [1500, True]
    assert path_str(resp.notification[0].update[0].path) == f"{IF1}/config/mtu"


def test_pygnmi_get(gnmi: gNMIclient) -> None:
    got = gnmi.get(path=[f"{IF1}/config", "/interfaces/interface[name=Ethernet2]/state/oper-status"],
                   datatype="all")
    n1, n2 = got["notification"]
    assert n1["update"][0]["path"] == "interfaces/interface[name=Ethernet1]/config"
    assert n1["update"][0]["val"]["mtu"] == 1500
    assert n2["update"][0]["val"] == "UP"
    assert n1["timestamp"] > 1_600_000_000 * 10**9


def test_json_ietf_module_qualified_names(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    resp = raw.get("/", encoding=gnmi_pb2.JSON_IETF)
    u = resp.notification[0].update[0]
    assert u.val.WhichOneof("value") == "json_ietf_val"
    doc = json.loads(u.val.json_ietf_val)
    assert "openconfig-interfaces:interfaces" in doc
    sub = doc["openconfig-interfaces:interfaces"]["interface"][0]["subinterfaces"]["subinterface"][0]
    assert sub["openconfig-vlan:vlan"]["match"]["single-tagged"]["config"]["vlan-id"] == 100
    assert sub["openconfig-if-ip:ipv4"]["addresses"]["address"][0]["config"]["prefix-length"] == 31
    assert sub["state"]["counters"]["in-octets"].isdigit()  # uint64 is a string in RFC 7951
    cfg = json.loads(raw.get(f"{IF1}/config", encoding=gnmi_pb2.JSON_IETF).notification[0].update[0].val.json_ietf_val)
    assert cfg["openconfig-interfaces:type"] == "iana-if-type:ethernetCsmacd"
    plain = json.loads(raw.get(f"{IF1}/config").notification[0].update[0].val.json_val)
    assert plain["type"] == "ethernetCsmacd" and "mtu" in plain


def test_unsupported_encodings_are_unimplemented(raw: Raw) -> None:
    for enc in (gnmi_pb2.ASCII, gnmi_pb2.PROTO, gnmi_pb2.BYTES):
        with pytest.raises(grpc.RpcError) as ei:
            raw.get(IF1, encoding=enc)
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "encoding" in (ei.value.details() or "")


def test_prefix_origin_and_target(raw: Raw) -> None:
    resp = raw.get("config/mtu", prefix=path(IF1, target="dev1"))
    n = resp.notification[0]
    assert n.prefix.target == "dev1" and path_str(n.prefix) == IF1
    assert path_str(n.update[0].path) == "/config/mtu" and scalar(n.update[0].val) == 1500
    # a prefix with wildcards is not echoed (responses never carry wildcards): full paths instead
    resp = raw.get("config/mtu", prefix=path("/interfaces/interface[name=*]", target="t"))
    n = resp.notification[0]
    assert n.prefix.target == "t" and len(n.prefix.elem) == 0 and len(n.update) == 8
    assert path_str(n.update[0].path) == f"{IF1}/config/mtu"
    # origin openconfig is accepted, on the prefix or on the path
    assert raw.get_val(f"{IF1}/config/mtu", prefix=gnmi_pb2.Path(origin="openconfig")) == 1500
    assert scalar(raw.get(path(f"{IF1}/config/mtu", origin="openconfig")).notification[0].update[0].val) == 1500
    # origin in both prefix and path
    assert rpc_code(lambda: raw.get(path(f"{IF1}/config/mtu", origin="openconfig"),
                                    prefix=gnmi_pb2.Path(origin="openconfig"))) == grpc.StatusCode.INVALID_ARGUMENT
    # an origin this target does not serve, also a module name (what pygnmi makes of "module:path")
    assert rpc_code(lambda: raw.get(path("/interfaces", origin="cli"))) == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_code(lambda: raw.get(path(f"{IF1}/config/mtu", origin="openconfig-interfaces"))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_code(lambda: raw.get(path(f"{IF1}/config/mtu", origin="openconfig-qos"))) == \
        grpc.StatusCode.INVALID_ARGUMENT


def test_wildcards_are_expanded(raw: Raw, gnmi: gNMIclient) -> None:
    raw.set(update=[(SUB10, SUB10_BODY), (f"{IF1}/subinterfaces/subinterface[index=20]/config/enabled", False)])
    resp = raw.get("/interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/state/oper-status")
    got = {path_str(u.path): scalar(u.val) for u in resp.notification[0].update}
    assert got == {f"{SUB10}/state/oper-status": "UP",
                   f"{IF1}/subinterfaces/subinterface[index=20]/state/oper-status": "DOWN"}
    resp = raw.get("/interfaces/.../vlan-id")
    assert [(path_str(u.path), scalar(u.val)) for u in resp.notification[0].update] == [
        (f"{SUB10}/vlan/match/single-tagged/config/vlan-id", 100)]
    # a list without keys means every entry
    resp = raw.get("/interfaces/interface")
    assert len(resp.notification[0].update) == 8
    for n in resp.notification:
        for u in n.update:
            assert "*" not in path_str(u.path) and "..." not in path_str(u.path)
    got = gnmi.get(path=["/interfaces/interface[name=*]/config/mtu"])
    assert len(got["notification"][0]["update"]) == 8


def test_no_data_is_not_found_and_unknown_is_unimplemented(raw: Raw) -> None:
    assert rpc_code(lambda: raw.get(SUB10)) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(lambda: raw.get(f"{IF1}/config/description")) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(lambda: raw.get("/network-instances")) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(lambda: raw.get(f"{IF1}/config/speed")) == grpc.StatusCode.UNIMPLEMENTED
    assert rpc_code(lambda: raw.get("/system/config")) == grpc.StatusCode.UNIMPLEMENTED
    assert rpc_code(lambda: raw.get(f"{IF1}/subinterfaces/subinterface[index=ten]")) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_code(lambda: raw.get("/interfaces/interface[nom=Ethernet1]")) == grpc.StatusCode.INVALID_ARGUMENT


def test_filtered_out_data_gives_an_empty_notification(raw: Raw) -> None:
    resp = raw.get(f"{IF1}/state", type=gnmi_pb2.GetRequest.CONFIG)
    assert len(resp.notification) == 1 and len(resp.notification[0].update) == 0

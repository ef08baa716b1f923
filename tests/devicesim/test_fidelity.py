"""Real-router fidelity of strict devices, checked with pygnmi, raw stubs and the official models.

The official OpenConfig models here are the pyangbind bindings the oc-config-validate package
ships; devicesim's Get output is loaded into them with pyangbind's own JSON_IETF loader, which
refuses unknown members and invalid values, so the check does not go through devicesim's code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pygnmi.client import gNMIclient
from pygnmi.spec.v080 import gnmi_pb2

from devicesim import DeviceSpec, Fleet
from devicesim.fleet import load_fleet_file
from tests.devicesim.devicesim_testlib import Raw, code_of, details_of, jv, path, secure_channel

IF1 = "/interfaces/interface[name=Ethernet1]"
SUB10 = f"{IF1}/subinterfaces/subinterface[index=10]"
VRF = "/network-instances/network-instance[name=cust-a]"
ADDR = f"{SUB10}/ipv4/addresses/address[ip=192.0.2.1]"
NI_REVISION_NOTE = "openconfig-network-instance@"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    specs = [DeviceSpec("strict1"), DeviceSpec("lenient1", profile="lenient"),
             DeviceSpec("xr1", encodings=("JSON_IETF",))]
    with Fleet(specs, workdir=tmp_path_factory.mktemp("fidelity"), counter_interval=0.2) as f:
        yield f


def _raw(fleet: Fleet, name: str) -> Iterator[Raw]:
    fleet.admin.reset(name)
    assert fleet.ca_path is not None
    info = fleet.devices[name]
    ch = secure_channel(info, fleet.ca_path)
    yield Raw(ch, info.username, info.password)
    ch.close()


@pytest.fixture
def strict(fleet: Fleet) -> Iterator[Raw]:
    yield from _raw(fleet, "strict1")


@pytest.fixture
def lenient(fleet: Fleet) -> Iterator[Raw]:
    yield from _raw(fleet, "lenient1")


@pytest.fixture
def xr(fleet: Fleet) -> Iterator[Raw]:
    yield from _raw(fleet, "xr1")


def refused(fn: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    return code_of(ei.value), details_of(ei.value)


def get_json(raw: Raw, p: str, encoding: int = gnmi_pb2.JSON_IETF, type: int = 0) -> Any:
    resp = raw.get(p, encoding=encoding, type=type)
    val = resp.notification[0].update[0].val
    return json.loads(val.json_ietf_val if encoding == gnmi_pb2.JSON_IETF else val.json_val)


def model_revisions() -> dict[str, str]:
    from oc_config_validate import models

    return dict(re.findall(r"^([\w-]+)@(\S+)", models.__model_versions__, re.M))


def operator_vrf(fleet: Fleet, name: str) -> None:
    fleet.admin.config(name, update=[
        (f"{SUB10}/config", {"description": "operator"}),
        (f"{VRF}/config", {"name": "cust-a", "type": "L3VRF", "route-distinguisher": "65000:1"}),
    ])


# ---------------------------------------------------------------------------------------------
# validation against the official models


def test_removed_leaf_is_refused_with_the_model_revision(strict: Raw, lenient: Raw) -> None:
    body = {"name": "cust-a", "type": "L3VRF", "enabled": True}
    code, details = refused(lambda: strict.set(update=[(f"{VRF}/config", body)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{VRF}/config/enabled" in details and NI_REVISION_NOTE in details, details
    assert refused(lambda: strict.get(VRF))[0] == grpc.StatusCode.NOT_FOUND  # nothing applied
    # Get of the removed leaf: not implemented by a device that holds the current models
    assert refused(lambda: strict.get(f"{VRF}/config/enabled"))[0] == grpc.StatusCode.UNIMPLEMENTED
    # lenient devices keep accepting what the controller sends today (issue 14)
    lenient.set(update=[(f"{VRF}/config", body)])
    assert get_json(lenient, f"{VRF}/config/enabled", gnmi_pb2.JSON) is True


@pytest.mark.parametrize(("update", "named", "why"), [
    ((f"{IF1}/config/mtu", "big"), f"{IF1}/config/mtu", "expected uint16"),                    # mistyped
    ((f"{IF1}/config/mtu", 70000), f"{IF1}/config/mtu", "out of range"),                       # out of range
    ((f"{IF1}/config/type", "iana-if-type:bogus"), f"{IF1}/config/type", "identity"),         # bad identityref
    ((f"{VRF}/config", {"name": "cust-a", "route-distinguisher": "not-an-rd"}),
     f"{VRF}/config/route-distinguisher", "route-distinguisher"),                              # pattern (models only)
    ((f"{IF1}/config", {"speed": 10}), f"{IF1}/config", "unknown element 'speed'"),           # unknown leaf
    (("/network-instances/network-instance[name=cust-a]/interfaces/interface[id=Ethernet1.10]/config",
      {"id": "Ethernet1.10", "interface": "Ethernet1", "subinterface": 10}),
     "/interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=10]", "does not exist"),  # leafref
])
def test_invalid_set_is_refused_and_nothing_applied(strict: Raw, update: tuple[str, Any], named: str,
                                                    why: str) -> None:
    before = get_json(strict, "/", gnmi_pb2.JSON)
    good = (f"{IF1}/config/description", "must not stick")
    code, details = refused(lambda: strict.set(update=[good, update]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert named in details and why in details and "(no change applied)" in details, details
    assert get_json(strict, "/", gnmi_pb2.JSON) == before


def test_capabilities_advertise_the_validators_modules_and_revisions(fleet: Fleet, strict: Raw) -> None:
    revs = model_revisions()
    caps = strict.capabilities()
    advertised = {m.name: m.version for m in caps.supported_models}
    assert advertised, "no models advertised"
    assert all(revs[name] == version for name, version in advertised.items()), advertised
    for name in ("openconfig-interfaces", "openconfig-if-ip", "openconfig-vlan", "openconfig-network-instance",
                 "openconfig-qos"):
        assert name in advertised
    # pygnmi sees the same
    info = fleet.devices["strict1"]
    with gNMIclient(target=info.target, username="admin", password="admin", path_cert=fleet.ca_path) as gc:
        models = {m["name"]: m["version"] for m in gc.capabilities()["supported_models"]}
    assert models == advertised


def test_get_output_loads_into_the_official_models(fleet: Fleet, strict: Raw) -> None:
    from oc_config_validate.models import interfaces, network_instance, qos
    from pyangbind.lib import pybindJSON

    strict.set(update=[
        (SUB10, {"config": {"description": "cust-A"},
                 "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}},
                 "ipv4": {"addresses": {"address": [{"ip": "192.0.2.1",
                                                     "config": {"ip": "192.0.2.1", "prefix-length": 30}}]}}}),
        (f"{VRF}/config", {"name": "cust-a", "type": "L3VRF"}),
        ("/qos/scheduler-policies/scheduler-policy[name=gold]/config", {"name": "gold"}),
    ])
    operator_vrf(fleet, "strict1")
    root = get_json(strict, "/")  # JSON_IETF of the whole tree: one member per top-level container
    bindings = {"openconfig-interfaces:interfaces": (interfaces, "openconfig_interfaces"),
                "openconfig-network-instance:network-instances": (network_instance, "openconfig_network_instance"),
                "openconfig-qos:qos": (qos, "openconfig_qos")}
    assert set(root) == set(bindings)
    for member, (module, base) in bindings.items():
        # pyangbind's loader raises on any member the models do not have and any value they refuse
        loaded = pybindJSON.loads_ietf(json.dumps({member: root[member]}), module, base)
        assert loaded is not None
    ifs = pybindJSON.loads_ietf(json.dumps({"openconfig-interfaces:interfaces": root[
        "openconfig-interfaces:interfaces"]}), interfaces, "openconfig_interfaces")
    sub = ifs.interfaces.interface["Ethernet1"].subinterfaces.subinterface[10]
    assert sub.ipv4.addresses.address["192.0.2.1"].state.origin == "STATIC"
    with pytest.raises(AttributeError):  # the loader is not a check that cannot fail
        bad = json.loads(json.dumps(root["openconfig-network-instance:network-instances"]))
        bad["network-instance"][0]["config"]["enabled"] = True
        pybindJSON.loads_ietf(json.dumps({"openconfig-network-instance:network-instances": bad}),
                              network_instance, "openconfig_network_instance")


# ---------------------------------------------------------------------------------------------
# defaults and state


def test_yang_defaults_and_state_like_a_router(strict: Raw) -> None:
    strict.set(update=[
        (f"{IF1}/config/description", "uplink"),
        (SUB10, {"config": {"description": "cust-A"},
                 "ipv4": {"addresses": {"address": [{"ip": "192.0.2.1",
                                                     "config": {"ip": "192.0.2.1", "prefix-length": 30}}]}}}),
    ])
    iface = get_json(strict, IF1, gnmi_pb2.JSON)
    assert iface["config"] == {"name": "Ethernet1", "description": "uplink", "enabled": True, "mtu": 1500,
                               "type": "ethernetCsmacd"}
    st = iface["state"]
    assert (st["description"], st["enabled"], st["type"], st["mtu"]) == ("uplink", True, "ethernetCsmacd", 1500)
    sub = get_json(strict, SUB10, gnmi_pb2.JSON)
    assert sub["config"] == {"index": 10, "description": "cust-A", "enabled": True}
    assert sub["state"]["description"] == "cust-A" and sub["state"]["enabled"] is True
    ipv4 = sub["ipv4"]
    assert ipv4["config"]["enabled"] is True and ipv4["state"]["enabled"] is True  # YANG default
    assert ipv4["proxy-arp"] == {"config": {"mode": "DISABLE"}, "state": {"mode": "DISABLE"}}
    (addr,) = ipv4["addresses"]["address"]
    assert addr["config"] == {"ip": "192.0.2.1", "prefix-length": 30, "type": "PRIMARY"}
    assert addr["state"] == {"ip": "192.0.2.1", "prefix-length": 30, "type": "PRIMARY", "origin": "STATIC"}
    # CONFIG and STATE stay apart
    cfg = get_json(strict, SUB10, gnmi_pb2.JSON, type=gnmi_pb2.GetRequest.CONFIG)
    assert "state" not in cfg and "state" not in cfg["ipv4"]
    state = get_json(strict, SUB10, gnmi_pb2.JSON, type=gnmi_pb2.GetRequest.STATE)
    assert "config" not in state and state["state"]["enabled"] is True
    # deleting a leaf with a YANG default reverts it to the default
    strict.set(update=[(f"{SUB10}/ipv4/proxy-arp/config/mode", "ALL")])
    assert get_json(strict, f"{SUB10}/ipv4/proxy-arp/state/mode", gnmi_pb2.JSON) == "ALL"
    strict.set(delete=[f"{SUB10}/ipv4/proxy-arp/config/mode"])
    assert get_json(strict, f"{SUB10}/ipv4/proxy-arp/config/mode", gnmi_pb2.JSON) == "DISABLE"


def test_lenient_keeps_echoing_what_was_written(lenient: Raw) -> None:
    lenient.set(update=[(SUB10, {"config": {"description": "cust-A"}})])
    sub = get_json(lenient, SUB10, gnmi_pb2.JSON)
    assert "ipv4" not in sub and "description" not in sub["state"]
    code, details = refused(lambda: lenient.set(update=[(f"{IF1}/config/mtu", 70000)]))
    assert code == grpc.StatusCode.ABORTED and "INVALID_ARGUMENT" in details


# ---------------------------------------------------------------------------------------------
# encodings, origin


def test_json_ietf_is_rfc7951(strict: Raw) -> None:
    strict.set(update=[(SUB10, {"vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}}),
                       (f"{VRF}/config", {"name": "cust-a", "type": "L3VRF"})])
    doc = get_json(strict, IF1)
    assert set(doc) >= {"openconfig-interfaces:name", "openconfig-interfaces:config"}  # top level qualified
    assert doc["openconfig-interfaces:config"]["type"] == "iana-if-type:ethernetCsmacd"  # identityref
    counters = doc["openconfig-interfaces:state"]["counters"]
    assert all(isinstance(v, str) and v.isdigit() for v in counters.values())  # uint64 as strings
    (sub,) = doc["openconfig-interfaces:subinterfaces"]["subinterface"]
    assert "openconfig-vlan:vlan" in sub and "openconfig-if-ip:ipv4" in sub  # namespace changes
    assert "config" in sub and "openconfig-interfaces:config" not in sub  # same namespace: bare
    ni = get_json(strict, f"{VRF}/config")
    assert ni["openconfig-network-instance:type"] == "openconfig-network-instance-types:L3VRF"
    plain = get_json(strict, f"{IF1}/config", gnmi_pb2.JSON)
    assert plain["type"] == "ethernetCsmacd" and "mtu" in plain


def test_json_ietf_only_device(fleet: Fleet, xr: Raw) -> None:
    assert list(xr.capabilities().supported_encodings) == [gnmi_pb2.JSON_IETF]
    code, details = refused(lambda: xr.get(f"{IF1}/config/mtu", encoding=gnmi_pb2.JSON))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "JSON" in details
    code, _ = refused(lambda: xr.set(update=[(f"{IF1}/config/mtu", 9000)]))  # json_val
    assert code == grpc.StatusCode.UNIMPLEMENTED
    stream = xr.subscribe(f"{IF1}/config/mtu", encoding=gnmi_pb2.JSON)
    with pytest.raises(grpc.RpcError) as ei:
        stream.next()
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    xr.set(update=[(f"{IF1}/config/mtu", 9000)], ietf=True)
    assert get_json(xr, f"{IF1}/config/mtu") == 9000
    info = fleet.devices["xr1"]
    with gNMIclient(target=info.target, username="admin", password="admin", path_cert=fleet.ca_path) as gc:
        assert gc.capabilities()["supported_encodings"] == ["json_ietf"]


def test_origin_unset_or_openconfig_and_nothing_else(strict: Raw) -> None:
    assert strict.get_val(f"{IF1}/config/mtu") == 1500
    mtu = strict.get(path(f"{IF1}/config/mtu", origin="openconfig")).notification[0].update[0].val
    assert json.loads(mtu.json_val) == 1500
    for origin in ("cli", "openconfig-interfaces", "eos_native"):
        req = gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(path=path(f"{IF1}/config/mtu", origin=origin),
                                                          val=jv(9000))])
        code, details = refused(lambda r=req: strict.stub.Set(r, metadata=strict.md, timeout=5))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and repr(origin) in details
        assert refused(lambda o=origin: strict.get(path("/interfaces", origin=o)))[0] == \
            grpc.StatusCode.INVALID_ARGUMENT
    assert strict.get_val(f"{IF1}/config/mtu") == 1500


# ---------------------------------------------------------------------------------------------
# operator configuration the controller never wrote


def test_operator_config_through_the_admin_interface(fleet: Fleet, strict: Raw) -> None:
    bgp = f"{VRF}/protocols/protocol[identifier=BGP][name=bgp]"
    fleet.admin.config("strict1", update=[
        (f"{IF1}/config/description", "core uplink (operator)"),
        (f"{IF1}/subinterfaces/subinterface[index=900]/config", {"description": "mgmt"}),
        (f"{VRF}/config", {"name": "cust-a", "type": "L3VRF", "route-distinguisher": "65000:42"}),
        (f"{bgp}/config", {"identifier": "BGP", "name": "bgp"}),
        (f"{bgp}/bgp/neighbors/neighbor[neighbor-address=198.51.100.1]/config",
         {"neighbor-address": "198.51.100.1", "peer-as": 64512, "description": "transit"}),
    ])
    assert strict.get_val(f"{IF1}/config/description") == "core uplink (operator)"
    assert strict.get_val(f"{IF1}/subinterfaces/subinterface[index=900]/state/description") == "mgmt"
    assert strict.get_val(f"{VRF}/config/route-distinguisher") == "65000:42"
    assert strict.get_val(f"{bgp}/bgp/neighbors/neighbor[neighbor-address=198.51.100.1]/config/peer-as") == 64512
    # operator input is validated like a Set
    with pytest.raises(Exception, match="route-distinguisher"):
        fleet.admin.config("strict1", update=[(f"{VRF}/config/route-distinguisher", "x")])
    assert strict.get_val(f"{VRF}/config/route-distinguisher") == "65000:42"


# ---------------------------------------------------------------------------------------------
# fleet file switches


def test_fleet_file_profile_and_encodings(tmp_path: Path) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text("defaults: {profile: lenient}\n"
                 "devices:\n"
                 "  - {name: a}\n"
                 "  - {name: b, profile: strict, encodings: [JSON_IETF]}\n"
                 "  - {name: c, encodings: {JSON: false}}\n")
    specs = {s.name: s for s in load_fleet_file(f)}
    assert (specs["a"].profile, specs["a"].encodings) == ("lenient", ("JSON", "JSON_IETF"))
    assert (specs["b"].profile, specs["b"].encodings) == ("strict", ("JSON_IETF",))
    assert specs["c"].encodings == ("JSON_IETF",)
    f.write_text("devices: [{name: a}]\n")
    assert load_fleet_file(f)[0].profile == "strict"  # the default for new fleet files
    f.write_text("devices: [{name: a, profile: sloppy}]\n")
    with pytest.raises(ValueError, match="device a: profile must be one of strict, lenient"):
        load_fleet_file(f)
    f.write_text("devices: [{name: a, encodings: [XML]}]\n")
    with pytest.raises(ValueError, match="encodings"):
        load_fleet_file(f)

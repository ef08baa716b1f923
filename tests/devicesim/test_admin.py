"""Levers over the admin API (and its CLI), observed through real gNMI clients."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from pygnmi.client import gNMIclient

from devicesim import AdminError, DeviceInfo, Fleet
from tests.devicesim.devicesim_testlib import Raw, leaves, secure_channel, wait_for

IF1 = "/interfaces/interface[name=Ethernet1]"
SUB10 = f"{IF1}/subinterfaces/subinterface[index=10]"
SUB10_BODY = {"config": {"description": "cust-A"},
              "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}}


def test_out_of_band_change_is_validated_and_notified(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    stream = raw.subscribe(f"{IF1}/config/description")
    stream.until_sync()
    fleet.admin.set(dev.name, f"{IF1}/config/description", "typed at the console")
    assert leaves([stream.next().update]) == {f"{IF1}/config/description": "typed at the console"}
    assert raw.get_val(f"{IF1}/config/description") == "typed at the console"
    with pytest.raises(AdminError) as ei:
        fleet.admin.set(dev.name, f"{IF1}/config/mtu", 20)
    assert ei.value.status == 400 and ei.value.code == "INVALID_ARGUMENT" and "68..9216" in ei.value.message
    with pytest.raises(AdminError) as ei:
        fleet.admin.set(dev.name, f"{IF1}/config/speed", 20)
    assert ei.value.status == 404
    fleet.admin.delete(dev.name, f"{IF1}/config/description")
    assert stream.next().update.delete
    fleet.admin.config(dev.name, update=[(SUB10, SUB10_BODY)])
    assert raw.get_val(f"{SUB10}/config/description") == "cust-A"
    stream.close()
    assert fleet.admin.stats(dev.name)["set_rpcs"] == 0  # console changes are not gNMI Sets


def test_port_link_lever(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    stream = raw.subscribe(f"{IF1}/state/oper-status", f"{SUB10}/state/oper-status")
    stream.until_sync()
    fleet.admin.link(dev.name, "Ethernet1", up=False)
    assert leaves([stream.next().update]) == {f"{IF1}/state/oper-status": "DOWN",
                                              f"{SUB10}/state/oper-status": "DOWN"}
    assert raw.get_val(f"{IF1}/state/admin-status") == "UP"  # admin state unchanged by the link
    before = raw.get_val(f"{SUB10}/state/counters/out-octets")
    time.sleep(0.5)
    assert raw.get_val(f"{SUB10}/state/counters/out-octets") == before  # no traffic while down
    fleet.admin.link(dev.name, "Ethernet1", up=True)
    assert leaves([stream.next().update])[f"{SUB10}/state/oper-status"] == "UP"
    stream.close()
    with pytest.raises(AdminError) as ei:
        fleet.admin.link(dev.name, "Ethernet42", up=False)
    assert ei.value.status == 404


def test_device_down_and_up_on_the_same_port(fleet: Fleet, dev: DeviceInfo) -> None:
    assert fleet.ca_path
    ch = secure_channel(dev, fleet.ca_path)
    raw = Raw(ch)
    raw.set(update=[(f"{IF1}/config/description", "survives")])
    stream = raw.subscribe(f"{IF1}/config")
    stream.until_sync()
    fleet.admin.down(dev.name)
    with pytest.raises(grpc.RpcError) as ei:
        stream.next()
    assert ei.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    with pytest.raises(grpc.RpcError) as ei:
        raw.capabilities()
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert fleet.admin.dump(dev.name)["serving"] is False
    fleet.admin.up(dev.name)
    assert fleet.devices[dev.name].port == dev.port
    deadline = time.monotonic() + 10
    while True:  # the client channel reconnects with its own backoff
        try:
            assert raw.get_val(f"{IF1}/config/description") == "survives"
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ch.close()


def test_fail_next_sets(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    fleet.admin.fail_sets(dev.name, 2, code="RESOURCE_EXHAUSTED", message="TCAM full")
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as ei:
            raw.set(update=[(f"{IF1}/config/mtu", 9000)])
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and ei.value.details() == "TCAM full"
    assert raw.get_val(f"{IF1}/config/mtu") == 1500  # not applied
    raw.set(update=[(f"{IF1}/config/mtu", 9000)])
    assert raw.get_val(f"{IF1}/config/mtu") == 9000
    fleet.admin.fail_sets(dev.name, 1)
    with pytest.raises(grpc.RpcError) as ei:
        raw.set(update=[(f"{IF1}/config/mtu", 1500)])
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(AdminError):
        fleet.admin.fail_sets(dev.name, 1, code="NOT_A_CODE")
    stats = fleet.admin.stats(dev.name)
    assert stats["set_rpcs"] == 4 and stats["set_failed"] == 3


def test_set_latency(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    fleet.admin.latency(dev.name, 0.4)
    t0 = time.monotonic()
    raw.set(update=[(f"{IF1}/config/mtu", 9000)])
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    raw.get(f"{IF1}/config/mtu")
    assert time.monotonic() - t0 < 0.4  # only Sets are delayed
    fleet.admin.latency(dev.name, 0)


def test_drop_connections(gnmi: gNMIclient, raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    streams = [raw.subscribe(f"{IF1}/config"), raw.subscribe("/interfaces")]
    for s in streams:
        s.until_sync()
    assert fleet.admin.drop(dev.name) == 2
    for s in streams:
        with pytest.raises(grpc.RpcError) as ei:
            s.next()
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert fleet.admin.dump(dev.name)["subscriptions"] == 0
    assert gnmi.get(path=[f"{IF1}/config/mtu"])["notification"][0]["update"][0]["val"] == 1500  # still serving


def test_dump_and_list(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    raw.set(update=[(f"{IF1}/config/mtu", 9000), (f"{IF1}/config/enabled", True)])
    d = fleet.admin.dump(dev.name)
    assert d["port"] == dev.port and d["serving"] and d["links"]["Ethernet1"] is True
    assert d["config"]["interfaces"]["interface"][0]["config"]["mtu"] == 9000
    assert "state" not in d["config"]["interfaces"]["interface"][0]
    assert d["tree"]["interfaces"]["interface"][0]["state"]["mtu"] == 9000
    assert d["stats"]["set_rpcs"] == 2 and d["stats"]["set_updates"] == 3
    assert d["levers"] == {"set_latency": 0.0, "fail_sets": 0, "fail_code": "UNAVAILABLE",
                           "fail_message": "injected failure (devicesim fail-sets lever)"}
    names = [x["name"] for x in fleet.admin.list_devices()]
    assert names == ["dev1", "dev2", "dev3"]
    with pytest.raises(AdminError) as ei:
        fleet.admin.dump("nope")
    assert ei.value.status == 404
    with pytest.raises(AdminError) as ei:
        fleet.admin.request("POST", "/devices/dev1/explode", {})
    assert ei.value.status == 404
    assert fleet.admin.health()


def test_restart_keeps_config_and_restart_empty_does_not(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])

    def out_octets() -> int:
        sub = fleet.admin.dump(dev.name)["tree"]["interfaces"]["interface"][0]["subinterfaces"]["subinterface"][0]
        return int(sub["state"]["counters"]["out-octets"])

    # 1 Mbit/s without QoS: 25,000 octets per 0.2 s tick; wait for several ticks
    wait_for(lambda: out_octets() >= 100_000, timeout=10)
    fleet.admin.restart(dev.name)
    assert out_octets() < 60_000  # zeroed at reboot (at most a tick or two since)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert raw.get_val(f"{SUB10}/config/description") == "cust-A"
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    fleet.admin.restart(dev.name, empty=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            with pytest.raises(grpc.RpcError) as ei:
                raw.get(SUB10)
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert raw.get_val(f"{IF1}/config/mtu") == 1500


def test_state_dir_persistence(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Fleet(devices=1, tls=False, state_dir=state) as fleet:
        info = fleet.devices["dev1"]
        with gNMIclient(target=info.target, username="admin", password="admin", insecure=True,
                        gnmi_timeout=5) as gc:
            gc.set(update=[(SUB10, SUB10_BODY), (f"{IF1}/config/mtu", 9000)])
    saved = json.loads((state / "dev1.json").read_text())
    assert saved["config"]["interfaces"]["interface"][0]["config"]["mtu"] == 9000
    with Fleet(devices=1, tls=False, state_dir=state) as fleet:
        dump = fleet.admin.dump("dev1")
        sub = dump["config"]["interfaces"]["interface"][0]["subinterfaces"]["subinterface"][0]
        assert sub["config"]["description"] == "cust-A"
        fleet.admin.restart("dev1", empty=True)  # a replaced router forgets its config, on disk too
    assert "subinterfaces" not in json.loads((state / "dev1.json").read_text())["config"]["interfaces"][
        "interface"][0]
    with Fleet(devices=1, tls=False, state_dir=state) as fleet:
        assert fleet.admin.dump("dev1")["config"]["interfaces"]["interface"][0]["config"]["mtu"] == 1500
    (state / "dev1.json").write_text(json.dumps({"config": {"interfaces": {"interface": [
        {"name": "Ethernet1", "config": {"mtu": 7000}}]}}}))
    with Fleet(devices=1, tls=False, state_dir=state, empty=True) as fleet:  # --empty ignores saved state
        assert fleet.admin.dump("dev1")["config"]["interfaces"]["interface"][0]["config"]["mtu"] == 1500


def test_admin_cli(fleet: Fleet) -> None:
    fleet.admin.reset("dev3")
    base = [sys.executable, "-m", "devicesim", "admin", "--url", str(fleet.admin_url)]
    out = subprocess.run([*base, "link", "dev3", "Ethernet2", "down"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Ethernet2"] is False
    out = subprocess.run([*base, "set", "dev3", "/interfaces/interface[name=Ethernet2]/config/description",
                          "from the CLI"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*base, "dump", "dev3", "--config"], capture_output=True, text=True, timeout=30)
    cfg = json.loads(out.stdout)["interfaces"]["interface"][1]["config"]
    assert cfg["description"] == "from the CLI"
    out = subprocess.run([*base, "set", "dev3", "/interfaces/interface[name=Ethernet2]/config/mtu", "1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "INVALID_ARGUMENT" in out.stderr
    fleet.admin.reset("dev3")

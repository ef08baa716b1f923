"""Capabilities, authentication and TLS, through pygnmi and the raw gRPC stub."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from pygnmi.client import gNMIclient, gNMIException
from pygnmi.spec.v080 import gnmi_pb2

from devicesim import DeviceInfo, Fleet
from devicesim.certs import CertAuthority
from tests.devicesim.devicesim_testlib import Raw, code_of, secure_channel


def test_capabilities_via_pygnmi(gnmi: gNMIclient) -> None:
    caps = gnmi.capabilities()
    models = {m["name"]: m for m in caps["supported_models"]}
    for name in ("openconfig-interfaces", "openconfig-if-ip", "openconfig-vlan",
                 "openconfig-network-instance", "openconfig-qos"):
        assert models[name]["organization"] == "OpenConfig working group"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", models[name]["version"])  # the models' revision
    assert caps["supported_encodings"] == ["json", "json_ietf"]
    assert caps["gnmi_version"] == "0.8.0"


def test_wrong_password_is_unauthenticated(dev: DeviceInfo, fleet: Fleet) -> None:
    assert fleet.ca_path
    ch = secure_channel(dev, fleet.ca_path)
    try:
        for bad in (Raw(ch, "admin", "wrong"), Raw(ch, "root", "admin")):
            for call in (bad.capabilities, lambda b=bad: b.get("/interfaces"),
                         lambda b=bad: b.set(update=[("/interfaces/interface[name=Ethernet1]/config/mtu", 9000)])):
                with pytest.raises(grpc.RpcError) as ei:
                    call()
                assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # no metadata at all
        with pytest.raises(grpc.RpcError) as ei:
            Raw(ch).stub.Get(gnmi_pb2.GetRequest(), timeout=5)
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream = Raw(ch, "admin", "nope").subscribe("/interfaces")
        with pytest.raises(grpc.RpcError) as ei:
            stream.next()
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # nothing was applied by the rejected Set
        assert Raw(ch).get_val("/interfaces/interface[name=Ethernet1]/config/mtu") == 1500
    finally:
        ch.close()
    assert fleet.admin.stats("dev1")["auth_failures"] >= 7


def test_pygnmi_auth_failure(dev: DeviceInfo, fleet: Fleet) -> None:
    client = gNMIclient(target=dev.target, username="admin", password="bad", path_cert=fleet.ca_path,
                        gnmi_timeout=5)
    with pytest.raises(gNMIException) as ei:
        client.connect()  # connect() always calls Capabilities
    assert code_of(ei.value) == grpc.StatusCode.UNAUTHENTICATED
    client.close()


def test_tls_with_written_ca(dev: DeviceInfo, fleet: Fleet) -> None:
    assert fleet.ca_path and Path(fleet.ca_path).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    # raw gRPC: the CA as the only trust root, hostname checked against the SAN 127.0.0.1
    ch = secure_channel(dev, fleet.ca_path)
    assert Raw(ch).capabilities().gNMI_version == "0.8.0"
    ch.close()
    # the device name and localhost are SANs too
    with open(fleet.ca_path, "rb") as f:
        creds = grpc.ssl_channel_credentials(f.read())
    for name in ("dev1", "localhost"):
        ch = grpc.secure_channel(dev.address, creds, options=[("grpc.ssl_target_name_override", name)])
        assert Raw(ch).capabilities().gNMI_version == "0.8.0"
        ch.close()
    # pygnmi with path_root= the CA file (pygnmi 0.8.15 only verifies against the file when it is
    # passed as path_cert; path_root alone falls back to trusting the presented certificate)
    for kw in ({"path_cert": fleet.ca_path}, {"path_root": fleet.ca_path}):
        with gNMIclient(target=dev.target, username="admin", password="admin", gnmi_timeout=5, **kw) as gc:
            assert gc.capabilities()["gnmi_version"] == "0.8.0"


def test_tls_rejects_an_untrusted_ca(dev: DeviceInfo, tmp_path: Path) -> None:
    other = CertAuthority.generate("someone else").write(tmp_path / "other.pem")
    ch = secure_channel(dev, str(other))
    with pytest.raises(grpc.RpcError) as ei:
        Raw(ch).capabilities()
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()
    # and plaintext against a TLS device does not work either
    ch = grpc.insecure_channel(dev.address)
    with pytest.raises(grpc.RpcError):
        Raw(ch).capabilities()
    ch.close()


def test_insecure_fleet_serves_plaintext(tmp_path: Path) -> None:
    with Fleet(devices=1, tls=False, workdir=tmp_path, admin_port=None) as fleet:
        assert fleet.ca_path is None
        info = fleet.devices["dev1"]
        with gNMIclient(target=info.target, username="admin", password="admin", insecure=True,
                        gnmi_timeout=5) as gc:
            assert gc.get(path=["/interfaces/interface[name=Ethernet1]/config/mtu"])[
                "notification"][0]["update"][0]["val"] == 1500
        with pytest.raises(RuntimeError):
            _ = fleet.admin


def test_custom_credentials_and_ports(tmp_path: Path) -> None:
    from devicesim import DeviceSpec

    spec = DeviceSpec("edge7", ports=("ge-0/0/0", "ge-0/0/1"), username="ops", password="s3cret")
    with Fleet([spec], workdir=tmp_path) as fleet:
        info = fleet.devices["edge7"]
        assert info.username == "ops"
        with gNMIclient(target=info.target, username="ops", password="s3cret", path_cert=fleet.ca_path,
                        gnmi_timeout=5) as gc:
            got = gc.get(path=["/interfaces/interface[name=*]/state/name"])
            assert [u["val"] for u in got["notification"][0]["update"]] == ["ge-0/0/0", "ge-0/0/1"]
        ch = secure_channel(info, fleet.ca_path or "")
        with pytest.raises(grpc.RpcError) as ei:
            Raw(ch, "admin", "admin").capabilities()
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ch.close()

"""The command line: help, fleet files, ready lines, signals, the subprocess helper."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pygnmi.client import gNMIclient

from devicesim import FleetProcess, launch
from devicesim.__main__ import main
from tests.devicesim.devicesim_testlib import Raw, secure_channel


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_help_documents_everything(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--devices", "--base-port", "--fleet", "--names", "--ports", "--insecure", "--ca-out",
                 "--tls-cert", "--admin-port", "--state-dir", "--empty", "--username", "--password",
                 "--counter-interval", "device-ready", "fleet-ready", "devicesim admin", "SIGTERM"):
        assert flag in text, flag
    with pytest.raises(SystemExit):
        main(["admin", "--help"])
    text = capsys.readouterr().out
    for cmd in ("dump", "set", "delete", "link", "down", "up", "restart", "--empty", "latency", "fail-sets",
                "drop", "reset", "stats"):
        assert cmd in text, cmd
    assert main(["schema"]) == 0
    assert "subinterface[index]" in capsys.readouterr().out


def test_fleet_file_subprocess_and_sigterm(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(f"""
defaults:
  platform: sim-7280
  ports: [Ethernet1, Ethernet2, Ethernet3]
devices:
  - name: pe1
    port: {p1}
  - name: pe2
    port: {p2}
    ports: [ge-0/0/0]
    credentials: {{username: ops, password: s3cret}}
""")
    with FleetProcess(["--fleet", str(fleet_file)], workdir=tmp_path) as proc:
        assert set(proc.devices) == {"pe1", "pe2"}
        assert (proc.devices["pe1"].port, proc.devices["pe2"].port) == (p1, p2)
        assert proc.devices["pe2"].ports == ("ge-0/0/0",) and proc.devices["pe1"].platform == "sim-7280"
        assert proc.ca_path == str(tmp_path / "ca.pem")
        assert any(line.startswith("devicesim: device-ready name=pe1 address=127.0.0.1") for line in proc.output)
        with gNMIclient(target=("127.0.0.1", p2), username="ops", password="s3cret", path_cert=proc.ca_path,
                        gnmi_timeout=10) as gc:
            got = gc.get(path=["/interfaces/interface[name=*]/config/name"])
            assert [u["val"] for u in got["notification"][0]["update"]] == ["ge-0/0/0"]
        ch = secure_channel(proc.devices["pe1"], proc.ca_path)
        assert Raw(ch).capabilities().gNMI_version == "0.8.0"
        ch.close()
        assert [d["name"] for d in proc.admin.list_devices()] == ["pe1", "pe2"]
        code = proc.stop()
    assert code == 0
    assert proc.output[-1] == "devicesim: stopped"


def test_launch_insecure_with_base_port_and_sigint(tmp_path: Path) -> None:
    base = free_ports(1)[0]
    proc = launch(2, tls=False, workdir=tmp_path, extra=["--base-port", str(base), "--ports", "2"])
    try:
        assert [d.port for d in proc.devices.values()] == [base, base + 1]
        assert proc.ca_path is None
        with gNMIclient(target=("127.0.0.1", base + 1), username="admin", password="admin", insecure=True,
                        gnmi_timeout=10) as gc:
            got = gc.get(path=["/interfaces/interface[name=*]/state/oper-status"])
            assert len(got["notification"][0]["update"]) == 2
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.proc.wait(15) == 0
    finally:
        proc.stop()


def test_port_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        out = subprocess.run([sys.executable, "-m", "devicesim", "--base-port", str(port), "--insecure",
                              "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
        with pytest.raises(RuntimeError, match="exited with code 1"):
            FleetProcess(["--base-port", str(port), "--insecure"], workdir=tmp_path).start()
    finally:
        holder.close()

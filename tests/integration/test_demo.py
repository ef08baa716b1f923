"""`make demo ONCE=1`: the newcomer's first run, end to end (its own control plane, fleet and controller).

It must work on any date and beside anything else on the machine: the quick-start's default device
ports are held by this test while the demo runs, and a second run moves the demo's clock (controller
included) to the last seconds of February, across a month end in UTC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_PORTS = [
    d["spec"]["port"]
    for d in yaml.safe_load_all((ROOT / "examples/quickstart/20-devices.yaml").read_text())
    if d and d["kind"] == "NetworkDevice"
]


@contextlib.contextmanager
def holding(ports: list[int]) -> Iterator[list[int]]:
    """Listen on `ports` (those another program holds already are just as taken); yields the ones we hold."""
    held: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                held.append(sock)
            except OSError as exc:
                sock.close()
                assert exc.errno == errno.EADDRINUSE, exc
        yield [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


def assert_demo_passed(out: str, invoice: str) -> None:
    assert "NetworkDevices Ready       [##############################] 3/3" in out, out[-4000:]
    assert "Subscriptions active       [##############################] 12/12" in out, out[-4000:]
    assert out.count("subscription.activated.v1") == 12, out[-4000:]
    assert f"{invoice}: account acme-001, state new" in out, out[-4000:]
    assert "oneTimeCharge    Installation" in out, "the draft invoice should carry the installation fees"
    assert "FAILED" not in out, out[-4000:]
    assert "ok     its total is above zero" in out, out[-4000:]
    assert "ok     an order for a missing offering refused at admission, naming the field" in out, out[-4000:]
    assert "demo checks passed" in out, out[-4000:]
    leftovers = subprocess.run(["pgrep", "-f", f"{ROOT}/.local/demo/"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"the demo left processes behind: {leftovers}"


def test_make_demo_once_converges_bills_and_exits_cleanly_with_its_default_ports_taken() -> None:
    assert len(QUICKSTART_PORTS) == 3, QUICKSTART_PORTS
    with holding(QUICKSTART_PORTS):
        proc = subprocess.run(["make", "demo", "ONCE=1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for port in QUICKSTART_PORTS:
        assert f"127.0.0.1:{port} " not in out, f"the demo served a device on the taken port {port}"
    # the invoice is this month's (whatever today is), named from the account's local month
    assert "-adhoc: account acme-001, state new" in out, out[-4000:]
    invoice = out.split("-adhoc: account acme-001")[0].rsplit("\n", 1)[-1] + "-adhoc"
    assert_demo_passed(out, invoice)
    assert "make status" in out and "bin/kubectl get telco -A" in out


@pytest.mark.parametrize(
    ("at", "invoice", "period"),
    [
        # the last seconds of February in UTC: already 1 March in the account's zone (Europe/Paris); the bill
        # ends at 01:00 or 02:00 UTC, as the orders were placed before or after midnight (start-up time)
        ("2027-02-28T23:59:30Z", "acme-001-2027-03-adhoc", "2027-02-28T23:00:00Z to 2027-03-01T0"),
        # the last second of a month in the account's zone: the orders activate in the next month
        ("2027-02-28T23:59:59+01:00", "acme-001-2027-0", "to 2027-03-01T0"),
        # the first second of a month
        ("2027-01-01T00:00:00+01:00", "acme-001-2027-01-adhoc", "2026-12-31T23:00:00Z to 2027-01-01T01:00:00Z"),
        # 29 February of a leap year (the orders are placed a few seconds after noon: the bill ends at 14:00)
        ("2028-02-29T12:00:00Z", "acme-001-2028-02-adhoc", "2028-01-31T23:00:00Z to 2028-02-29T14:00:00Z"),
        # the last half minute of a year
        ("2026-12-31T23:59:30+01:00", "acme-001-20", "to 2027-01-01T0"),
    ],
)
def test_the_demo_bills_on_any_date_with_its_clock_moved(at: str, invoice: str, period: str) -> None:
    env = {**os.environ, "PATH": f"{ROOT / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "controller", "demo", "--once", "--at", at],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    moved = datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    assert f"its controller is set to {moved}" in out, out[:2000]
    # the bill is named and dated from the moved clock, whichever side of the month end the demo's
    # start fell on; its own checks (lines, fees, a total above zero) must all hold
    [announced] = [ln for ln in out.splitlines() if "-adhoc: " in ln and " to " in ln]
    assert invoice in announced and period in announced, announced
    name = announced.split(":")[0].strip()
    assert_demo_passed(out, name)

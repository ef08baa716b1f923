"""`make demo ONCE=1`: the newcomer's first run, end to end (its own control plane, fleet and controller)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_once_converges_bills_and_exits_cleanly() -> None:
    proc = subprocess.run(["make", "demo", "ONCE=1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "NetworkDevices Ready       [##############################] 3/3" in out
    assert "Subscriptions active       [##############################] 12/12" in out
    assert out.count("subscription.activated.v1") == 12, out[-4000:]
    assert "oneTimeCharge    Installation" in out, "the draft invoice should carry the installation fees"
    assert "demo checks passed" in out
    leftovers = subprocess.run(["pgrep", "-f", ".local/demo/"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"the demo left processes behind: {leftovers}"

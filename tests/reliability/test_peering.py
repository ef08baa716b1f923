"""Two controller replicas with Kopf peering (`--peering NAME --priority N`, a ClusterKopfPeering):
the active one killed, the standby takes over (takeover time measured); a paused replica must not
keep acting on what it knew."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ControllerProcess
from tests.kube import Kubectl
from tests.reliability.rig import Rig, ep, metric_total, rig, unique, wait_for

pytestmark = pytest.mark.full

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("pe-r1", "pe-r2")
PEERING = "pe-peering"
KOPF_LIFETIME = 15  # the controller's default peering lifetime (--peering-lifetime; Kopf's own is 60)


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    crds.apply_file(ROOT / "charts" / "telco-intent" / "crds" / "kopf.dev_peerings.yaml")
    crds.run("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    crds.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}})
    # Cluster-wide replicas meet in the ClusterKopfPeering (what the chart deploys by default).
    with rig(kubeconfig, tmp_path_factory.mktemp("peering"), "pe", DEVICES, controller=False, namespaced=False) as rg:
        yield rg


def replica(r: Rig, priority: int, log: str) -> tuple[ControllerProcess, int]:
    proc = r.start_controller("--peering", PEERING, "--priority", str(priority), log_name=log, wait=False)
    return proc, r.metrics_port


def metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:  # the replica is still starting
        return 0.0
    return metric_total(text, name)


def set_ops(port: int) -> float:
    return metric(port, "telco_gnmi_set_operations_total")


def connected(port: int) -> bool:
    """This replica holds a gNMI session to every device (it is the one working)."""
    return metric(port, "telco_devices_reachable") == len(DEVICES)


def peers(r: Rig) -> dict[str, Any]:
    obj = r.api.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
    return dict(obj.get("status") or {})


def test_standby_takes_over_when_the_active_replica_is_killed(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    active, _ = replica(r, 20, "active.log")
    r.controller = active
    r.wait_devices_ready()
    connects = sum(r.stats(d)["capabilities_rpcs"] for d in DEVICES)
    standby, standby_port = replica(r, 10, "standby.log")
    try:
        wait_for("both replicas in the peering object", lambda: len(peers(r)) == 2, 30, 0.2)
        time.sleep(2)  # a standby that starts behind an active one is paused from the start
        first = unique("first")
        r.apply(r.service(first, [ep("pe-r1", "Ethernet1", 601)]))
        r.ready(first)
        time.sleep(6)  # a resync period of both
        assert set_ops(standby_port) == 0, "the standby must not touch devices"
        assert sum(r.stats(d)["capabilities_rpcs"] for d in DEVICES) == connects, "only the active connects"

        active.kill9()
        killed = time.monotonic()
        second = unique("second")
        r.apply(r.service(second, [ep("pe-r2", "Ethernet1", 602)]))
        r.controller = standby
        r.ready(second, timeout=KOPF_LIFETIME + 45)
        takeover = time.monotonic() - killed
        measure("peering: active replica SIGKILLed, standby takes over", takeover,
                f"from the kill to a new service Ready (Kopf peering lifetime {KOPF_LIFETIME}s)")
        assert connected(standby_port), "the standby holds the device sessions now"
        r.ready(first)
        assert {s[:2] for s in r.managed("pe-r1")["subinterfaces"]} == {("Ethernet1", 601)}
        assert {s[:2] for s in r.managed("pe-r2")["subinterfaces"]} == {("Ethernet1", 602)}
        for name in (first, second):
            r.delete(name)
        for name in (first, second):
            r.gone(name, 30)
    finally:
        for proc in (active, standby):
            if proc.alive():
                proc.stop()
        r.controller = None


def test_a_paused_replica_does_not_resurrect_deleted_config(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    low, low_port = replica(r, 10, "low.log")
    high: ControllerProcess | None = None
    try:
        r.controller = low
        # A replica SIGKILLed by the previous test stays in the peering object for its lifetime.
        wait_for("the low replica alone and active", lambda: connected(low_port), KOPF_LIFETIME + 30, 0.5)
        name = unique("stale")
        r.apply(r.service(name, [ep("pe-r1", "Ethernet2", 610)]))
        r.ready(name)
        high, _ = replica(r, 30, "high.log")
        wait_for("the high replica in the peering object", lambda: any(
            p.get("priority") == 30 for p in peers(r).values()), 30, 0.2)
        time.sleep(2)  # the low replica sees it and pauses
        paused_ops = set_ops(low_port)
        r.controller = high
        wait_for("the high replica connected to both devices", lambda: metric_total(
            r.metrics(), "telco_devices_reachable") == len(DEVICES), 30, 0.2)
        time.sleep(2)
        r.delete(name)
        r.gone(name, 30)
        time.sleep(12)  # two resync periods of the paused replica
        left = {s for s in r.managed("pe-r1")["subinterfaces"] if s[2].endswith(f"/{name}")}
        sent = set_ops(low_port) - paused_ops
        assert not left and not sent, (
            f"the paused replica sent {sent:.0f} Set operation(s) after pausing; "
            f"the deleted service's config is on pe-r1: {left}"
        )
        assert not connected(low_port), "the paused replica closed its device sessions"
        # The high replica leaves (a graceful stop removes it from the peering object): the low one
        # resumes from Kopf's fresh list, not from its old view, and works again.
        stopped = time.monotonic()
        high.stop()
        r.controller = low
        again = unique("again")
        r.apply(r.service(again, [ep("pe-r1", "Ethernet2", 611)]))
        r.ready(again, timeout=30)
        measure("peering: the paused replica resumes when the active one stops", time.monotonic() - stopped,
                "from SIGTERM to the active replica to a new service Ready on the other")
        assert {s[:2] for s in r.managed("pe-r1")["subinterfaces"]} == {("Ethernet2", 611)}
        log = low.logs()
        assert "Pausing (peering 'pe-peering')" in log and "Resuming (peering 'pe-peering')" in log
        r.delete(again)
        r.gone(again, 30)
    finally:
        for proc in (low, high):
            if proc is not None and proc.alive():
                proc.stop()
        r.controller = None
        for device in DEVICES:  # leave the devices clean for the rig's teardown
            r.admin.reset(device)

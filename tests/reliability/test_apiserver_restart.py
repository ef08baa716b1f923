"""The API server restarted (etcd kept) under a running controller, on a control plane of its own so
the shared one is never disturbed: watches resume, new objects are reconciled, nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import ClusterError
from tests.kube import Kubectl
from tests.reliability.restartable import RestartableCluster
from tests.reliability.rig import Rig, ep, rig, unique, wait_for

pytestmark = pytest.mark.full

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("ar-r1", "ar-r2")
OUTAGE = 8.0  # longer than one resync period (5 s), so the periodic pass runs while the API is gone


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableCluster]:
    c = RestartableCluster(workdir=tmp_path_factory.mktemp("restartable-cluster"))
    try:
        c.start()
    except ClusterError as exc:
        pytest.fail(f"the restartable control plane could not start: {exc}", pytrace=False)
    try:
        assert c.kubeconfig is not None
        kubectl = Kubectl(c.kubeconfig)
        kubectl.apply_file(ROOT / "crds")
        kubectl.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def r(cluster: RestartableCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    assert cluster.kubeconfig is not None
    with rig(cluster.kubeconfig, tmp_path_factory.mktemp("apiserver"), "ar", DEVICES) as the_rig:
        yield the_rig


def outage(cluster: RestartableCluster, hard: bool) -> float:
    """Stop kube-apiserver for OUTAGE seconds and start it again; returns when it is ready."""
    cluster.stop_apiserver(hard=hard)
    time.sleep(OUTAGE)
    return cluster.start_apiserver()


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_watches_resume_and_new_objects_are_reconciled(
    r: Rig, cluster: RestartableCluster, hard: bool, measure  # type: ignore[no-untyped-def]
) -> None:
    before = unique("before")
    r.apply(r.service(before, [ep("ar-r2", "Ethernet1", 101 + hard)]))
    r.ready(before)
    took = outage(cluster, hard)
    started = time.monotonic()
    after = unique("after")
    r.apply(r.service(after, [ep("ar-r2", "Ethernet2", 111 + hard)]))
    r.ready(after, timeout=60)
    measure(f"API server restarted ({'SIGKILL' if hard else 'SIGTERM'}, {OUTAGE:.0f} s outage)",
            time.monotonic() - started, f"from API ready ({took:.1f}s to start) to a new service Ready")
    r.ready(before, timeout=30)
    # A change made right after the restart reaches the device too (the update watch resumed).
    r.apply(r.service(before, [ep("ar-r2", "Ethernet1", 101 + hard)], bandwidthMbps=75))
    policy = f"Ethernet1.{101 + hard}"

    def rate() -> int | None:
        for p in r.admin.dump("ar-r2")["config"]["qos"]["scheduler-policies"]["scheduler-policy"]:
            if p["name"] == policy:
                return int(p["schedulers"]["scheduler"][0]["two-rate-three-color"]["config"]["cir"])
        return None

    wait_for("the new rate on the device", lambda: rate() == 75_000_000, 30)
    assert r.controller is not None and r.controller.alive()
    for name in (before, after):
        r.delete(name)
    for name in (before, after):
        r.gone(name, 30)
    assert not any(r.managed("ar-r2").values())


def test_an_api_outage_leaves_healthy_device_sessions_alone(
    r: Rig, cluster: RestartableCluster, measure  # type: ignore[no-untyped-def]
) -> None:
    """Regression of bug 4 (docs/reliability.md): a Secret that cannot be read for now keeps the session."""
    name = unique("steady")
    r.apply(r.service(name, [ep("ar-r2", "Ethernet3", 120)]))
    r.ready(name)
    stats = r.stats("ar-r2")
    outage(cluster, hard=False)
    r.ready(name, timeout=30)
    time.sleep(6)
    after = r.stats("ar-r2")
    measure("API outage: healthy device sessions", None,
            f"Subscribe RPCs {stats['subscribe_rpcs']} -> {after['subscribe_rpcs']}, "
            f"Capabilities {stats['capabilities_rpcs']} -> {after['capabilities_rpcs']}")
    try:
        assert (after["subscribe_rpcs"], after["capabilities_rpcs"]) == (
            stats["subscribe_rpcs"],
            stats["capabilities_rpcs"],
        ), (
            "the controller reconnected to a device nothing happened to: "
            f"Subscribe RPCs {stats['subscribe_rpcs']} -> {after['subscribe_rpcs']}, "
            f"Capabilities {stats['capabilities_rpcs']} -> {after['capabilities_rpcs']}"
        )
    finally:
        r.delete(name)
        r.gone(name, 30)


def test_a_pending_deletion_survives_an_api_outage_without_leaking_config(r: Rig, cluster: RestartableCluster) -> None:
    name = unique("pending")
    r.apply(r.service(name, [ep("ar-r1", "Ethernet4", 130)]))
    r.ready(name)
    r.admin.down("ar-r1")
    try:
        r.wait_cond(name, "Ready", "False", {"DeviceUnreachable", "DeviceUnavailable"}, timeout=20)
        r.delete(name)
        r.wait_cond(name, "Ready", "False", {"Terminating"}, timeout=20)
        outage(cluster, hard=False)
        time.sleep(3)
        still_there = r.get(name) is not None
        on_device = {s for s in r.managed("ar-r1")["subinterfaces"] if s[2].endswith(f"/{name}")}
        assert still_there or not on_device, (
            f"NetworkService {name} was deleted (finalizer released) while device ar-r1, still unreachable, "
            f"holds its config: {on_device}"
        )
    finally:
        r.admin.up("ar-r1")
    r.gone(name, 30)
    time.sleep(2)
    left = r.managed("ar-r1")
    assert not any(left.values()), f"NetworkService {name} is gone but ar-r1 still holds its config: {left}"

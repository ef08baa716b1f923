"""The API server restarted (etcd kept) under a running controller, on a control plane of its own so
the shared one is never disturbed: watches resume, new objects are reconciled, nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from localcluster import ClusterError
from tests.harness import condition
from tests.integration.test_commerce import daily, offering, subscription
from tests.kube import Kubectl
from tests.reliability.restartable import RestartableCluster
from tests.reliability.rig import Recorder, Rig, ep, rig, unique, wait_for

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


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_outage_while_the_api_server_is_down_is_not_billed(r: Rig, cluster: RestartableCluster) -> None:
    """Reliability item 18: a not-Ready stretch that starts and ends while the API server is down is never a
    stored version any watch could see (the controller's status writes land only once it is back, as one
    version: Ready again). The Subscription learns it from the service's status.readyTransitions and the
    bill charges only the Ready time."""
    ns, name, off = r.namespace, unique("blind"), unique("ar-daily")
    r.api.apply(offering(off, daily()))  # 1.00 EUR per second of delivered service
    r.api.apply(subscription(ns, name, off, "acct-blind", "ar-r1", "Ethernet5", 140))
    period_start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    try:
        sub = wait_for("the Subscription active", lambda: (s := r.api.get("subscriptions", name, ns))
                       and (s.get("status") or {}).get("state") == "active" and s, 60, 0.5)
        assert sub
        with Recorder(r.api, "networkservices", ns) as nsvc:
            ready = r.ready(name, timeout=30)
            since = ready["status"]["readySince"]
            cluster.stop_apiserver(hard=False)
            try:
                time.sleep(1)
                r.admin.link("ar-r1", "Ethernet5", False)
                time.sleep(4)  # the controller sees oper-status DOWN and computes Ready=False (not written)
                r.admin.link("ar-r1", "Ethernet5", True)
                time.sleep(4)  # ... and UP again: Ready=True, since now
            finally:
                r.admin.link("ar-r1", "Ethernet5", True)
                cluster.start_apiserver()

            def back() -> dict[str, Any] | None:
                svc = r.get(name)
                ready_now = condition(svc, "Ready") if svc else None
                moved = ready_now and ready_now["status"] == "True" and ready_now["lastTransitionTime"] != since
                return svc if moved else None

            svc = wait_for("the service Ready again, since after the outage", back, 60, 0.5)
            listed = [(t["at"], t["ready"], t["reason"]) for t in svc["status"]["readyTransitions"]]
            outage = [t for t in listed if _ts(t[0]) > _ts(since)]
            assert [(ready_, reason) for _, ready_, reason in outage] == [(False, "OperDown"), (True, "Applied")], (
                f"status.readyTransitions should list the outage after Ready since {since}: {listed}"
            )
            down_at, up_at = _ts(outage[0][0]), _ts(outage[1][0])
            # The premise: no stored version ever said Ready=False, so no watch could see the outage.
            seen = [(c["status"], c["lastTransitionTime"]) for v in nsvc.of(name) if (c := v.cond("Ready"))]
            assert ("False", outage[0][0]) not in seen, f"the outage was a stored version after all: {seen}"

        def ledger_has_the_outage() -> list[dict[str, Any]] | None:
            s = r.api.get("subscriptions", name, ns) or {}
            intervals = ((s.get("status") or {}).get("billing") or {}).get("ledger", {}).get("ready") or []
            ends = {i.get("end") for i in intervals}
            starts = {i.get("start") for i in intervals}
            return intervals if _iso(down_at) in ends and _iso(up_at) in starts else None

        intervals = wait_for("the Subscription's ledger to record the outage", ledger_has_the_outage, 30, 0.5)
        assert intervals

        period_end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        bill = f"{name}-bill"
        r.api.apply({
            "apiVersion": "telco.intent.dev/v1alpha1",
            "kind": "Invoice",
            "metadata": {"name": bill, "namespace": ns},
            "spec": {"billingAccount": "acct-blind", "runType": "offCycle", "billingPeriod": {
                "startDateTime": _iso(period_start), "endDateTime": _iso(period_end)}},
        })
        issued = wait_for("the invoice issued", lambda: (i := r.api.get("invoices", bill, ns))
                          and (i.get("status") or {}).get("state") in ("validated", "sent") and i["status"], 90, 0.5)
        charged = sum((Decimal(ln["taxExcludedAmount"]["value"]) for ln in issued["lines"]
                       if ln["type"] == "recurringCharge"), Decimal(0))
        activated = _ts(r.api.get("subscriptions", name, ns)["status"]["billing"]["ledger"]["startDate"])
        ready_seconds = (down_at - max(activated, period_start)) + (period_end - up_at)
        outage_seconds = (up_at - down_at).total_seconds()
        assert outage_seconds >= 3, f"the outage lasted {outage_seconds:.0f} s"
        assert abs(float(charged) - ready_seconds.total_seconds()) <= 1.0, (
            f"billed {charged} EUR (1.00 per second) for {ready_seconds.total_seconds():.0f} s of Ready time;"
            f" the {outage_seconds:.0f} s outage from {_iso(down_at)} must not be billed: {issued['lines']}"
        )
        r.api.delete("invoices", bill, ns)
    finally:
        r.api.delete("subscriptions", name, ns)
        wait_for("the Subscription gone", lambda: r.api.get("subscriptions", name, ns) is None, 60, 0.5)
        r.api.delete("productofferings", off)


def test_a_controller_started_while_the_api_server_is_down_serves_its_kinds_once_it_is_back(
    r: Rig, cluster: RestartableCluster
) -> None:
    """Reliability item 17 (b): Kopf resolves the kinds from discovery once, at start. Started while the API
    server is down (or serving /apis before its CRDs), the controller waits, says so, and serves them."""
    assert r.controller is not None
    r.controller.stop()
    cluster.stop_apiserver(hard=True)
    try:
        r.controller.start()
        wait_for("the controller to say it waits for the API server",
                 lambda: "Waiting for the API server to serve telco.intent.dev/v1alpha1" in r.controller.logs()  # type: ignore[union-attr]
                 or None, 20, 0.2)
        time.sleep(2)
        assert r.controller.alive(), "the controller exited while the API server was down"
    finally:
        cluster.start_apiserver()
    wait_for("the controller to start serving", lambda: "API discovery serves telco.intent.dev/v1alpha1 now"
             in r.controller.logs() or None, 30, 0.2)  # type: ignore[union-attr]
    r.wait_devices_ready(timeout=60)
    name = unique("served")
    r.apply(r.service(name, [ep("ar-r2", "Ethernet6", 150)]))
    r.ready(name, timeout=60)
    logs = r.controller.logs()
    assert "Unresolved resources cannot be served" not in logs, logs[-4000:]
    assert r.controller.alive()
    r.delete(name)
    r.gone(name, 30)

"""Issue 14, deliverable 6: on strict devices (official-model validation, YANG defaults, JSON_IETF) a
converged system at idle sends no gNMI Set and makes no API write for 5 minutes.

Strict devices report leaves the controller never wrote (defaults, state); every resync (5 s here,
so about 60 whole-device passes per device in the window) compares them with the intent, so a
default mistaken for drift, or a status that is rewritten without a change, shows up as a Set or
a write. Writes are counted from outside the controller: every resourceVersion of every
NetworkService, NetworkDevice and Event a watch (or a list) sees; Sets and Gets from devicesim's
admin stats. Only in `make reliability` (it holds the fleet for 300 s; TELCO_IDLE_SECONDS shortens
it while developing the test, never in the real run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import GROUP, VERSION
from tests.reliability.rig import Recorder, Rig, ep, is_ready, metric_total, rig, wait_for

pytestmark = pytest.mark.full

DEVICES = ("is-r1", "is-r2", "is-r3")
IDLE_SECONDS = float(os.environ.get("TELCO_IDLE_SECONDS", "300"))
RESYNC = 5.0  # tests.harness.ControllerProcess runs the controller with --resync-seconds 5


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("idle"), "is", DEVICES) as the_rig:
        yield the_rig


def services(r: Rig) -> dict[str, dict[str, Any]]:
    """Every service kind on every device: subinterfaces with defaults, QoS, an L2 VPN, a VRF."""
    out = {}
    for i, device in enumerate(DEVICES):
        for k in range(3):
            name = f"idle-ia-{i}-{k}"
            out[name] = r.service(name, [ep(device, f"Ethernet{k + 1}", 600 + k)], bandwidthMbps=50 + 10 * k)
    l2 = [{"device": d, "port": "Ethernet6", "vlanId": 610} for d in DEVICES[:2]]
    out["idle-l2"] = r.service("idle-l2", l2, serviceType="l2vpn", bandwidthMbps=100)
    l3 = [ep(d, "Ethernet7", 620, third=n + 1) for n, d in enumerate(DEVICES[1:])]
    out["idle-l3"] = r.service("idle-l3", l3, serviceType="l3vpn", vrf="idle-vrf", bandwidthMbps=5000)
    return out


def resource_versions(r: Rig) -> dict[str, str]:
    """kind/name -> resourceVersion of every object the controller might write at idle."""
    out = {}
    for item in r.api.custom.list_namespaced_custom_object(GROUP, VERSION, r.namespace, "networkservices")["items"]:
        out[f"networkservice/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    for name in DEVICES:
        device = r.api.get("networkdevices", name)
        assert device is not None
        out[f"networkdevice/{name}"] = device["metadata"]["resourceVersion"]
    for event in r.api.core.list_namespaced_event(r.namespace).items:
        out[f"event/{event.metadata.name}"] = event.metadata.resource_version
    return out


@pytest.mark.timeout(IDLE_SECONDS + 240)  # the window itself, plus convergence and settling
def test_a_converged_strict_fleet_is_silent_for_five_minutes(r: Rig) -> None:
    for name in DEVICES:
        device = r.api.get("networkdevices", name)
        assert device is not None and device["status"].get("encoding") == "JSON_IETF", (name, device["status"])
    bodies = services(r)
    for body in bodies.values():
        r.apply(body)
    r.all_ready(bodies, timeout=90)

    # Settled: the writes and Sets of the convergence are over (the last status write, the read-backs).
    with Recorder(r.api, "networkservices", r.namespace) as settling:
        started = time.monotonic()

        def quiet() -> bool:
            last = max((s.at for s in settling.seen if s.type == "MODIFIED"), default=started)
            return time.monotonic() - last >= 10

        wait_for("no NetworkService write for 10 s", quiet, 90, 0.5)

    before = {d: r.stats(d) for d in DEVICES}
    versions = resource_versions(r)
    own_writes = r.kube_writes()
    reconciles = metric_total(r.metrics(), "telco_reconcile_total")
    t0 = time.monotonic()
    with Recorder(r.api, "networkservices", r.namespace) as svc_watch, Recorder(r.api, "networkdevices") as dev_watch:
        time.sleep(IDLE_SECONDS)
    elapsed = time.monotonic() - t0
    after = {d: r.stats(d) for d in DEVICES}

    # A write is a resourceVersion the objects did not have at the start (a re-listed watch replays them).
    watched = svc_watch.seen + [s for s in dev_watch.seen if s.name in DEVICES]
    writes = sorted({(s.name, s.resource_version) for s in watched if s.resource_version not in versions.values()})
    changed = {k: v for k, v in resource_versions(r).items() if versions.get(k) != v}
    sets = {d: after[d]["set_rpcs"] - before[d]["set_rpcs"] for d in DEVICES}
    gets = {d: after[d]["get_rpcs"] - before[d]["get_rpcs"] for d in DEVICES}
    passes = metric_total(r.metrics(), "telco_reconcile_total") - reconciles
    print(
        f"[idle] {elapsed:.0f} s on {len(DEVICES)} strict JSON_IETF devices, {len(bodies)} services: "
        f"Sets {sets}, API writes (watch) {len(writes)}, changed objects (list) {len(changed)}, "
        f"controller's own writes {r.kube_writes() - own_writes:.0f}, Gets {gets}, device passes {passes:.0f}"
    )

    assert sets == dict.fromkeys(DEVICES, 0), f"Sets at idle on strict devices: {sets}"
    assert not writes, f"API writes at idle (seen on the watch): {writes[:20]}"
    assert not changed, f"objects changed at idle (resourceVersions at the end): {changed}"
    assert r.kube_writes() - own_writes == 0, "the controller counted its own API writes at idle"
    # The silence is a controller at work, not a stalled one: it resynced every device throughout.
    assert r.controller is not None and r.controller.alive(), r.logs()[-3000:]
    least = int(elapsed / RESYNC / 2)
    assert all(g >= least for g in gets.values()), f"expected >= {least} resync Gets per device: {gets}"
    assert all(is_ready(r.get(name)) for name in bodies), "a service lost Ready at idle"
    assert not r.tracebacks(), r.tracebacks()[:2]

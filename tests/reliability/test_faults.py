"""Device faults against the real controller, API server and devicesim: each case ends with nothing
lost (the device holds exactly the intended entries, once) and a clear status throughout.

These run in `make test` (the CI subset) except those marked `full`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.crdgen import UNPROCESSED_STATUS
from controller.runtime import DEVICE_COUNT_DELAY_SECONDS
from tests.reliability.rig import Recorder, Rig, ep, metric_total, rig, unique, wait_for, writes_by_resource

DEVICES = ("fl-r1", "fl-r2", "fl-r3", "fl-r4")
RESYNC = 5.0  # tests.harness.ControllerProcess runs the controller with --resync-seconds 5


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("faults"), "fl", DEVICES) as the_rig:
        yield the_rig


@pytest.fixture(autouse=True)
def levers_cleared(r: Rig) -> Iterator[None]:
    yield
    for device in DEVICES:
        r.admin.up(device)
        r.admin.latency(device, 0)
        r.admin.fail_sets(device, 0)


def exactly_once(r: Rig, device: str, name: str, port: str, vlan: int) -> None:
    """The device holds the service's three entries, once, and nothing else of ours."""
    managed = r.managed(device)
    mine = {s for s in managed["subinterfaces"] if s[2].endswith(f"/{name}")}
    assert mine == {(port, vlan, f"telco-intent {r.namespace}/{name}")}, managed
    assert f"{port}.{vlan}" in managed["policies"] and f"{port}.{vlan}" in managed["qos_interfaces"], managed


def clear_throughout(rec: Recorder, name: str, device: str) -> None:
    """Every version of the service's status had a Ready condition with a reason; every not-Ready
    version that blamed the device named it."""
    for seen in rec.of(name):
        ready = seen.cond("Ready")
        # UNPROCESSED_STATUS is the CRD's default before the controller's first write, not a status it wrote.
        if seen.status and seen.status != UNPROCESSED_STATUS and ready is None:
            raise AssertionError(f"a status without a Ready condition: {seen.status}")
        if ready and ready["status"] != "True" and ready["reason"].startswith("Device"):
            assert device in ready["message"], ready


def test_unreachable_before_the_set(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    name, device = unique("before"), "fl-r1"
    r.admin.down(device)
    with Recorder(r.api, "networkservices", r.namespace) as rec:
        r.apply(r.service(name, [ep(device, "Ethernet1", 501)]))
        progressing = r.wait_cond(name, "Progressing", "True", {"DeviceUnreachable", "DeviceUnavailable"})
        assert device in progressing["message"]
        assert r.cond(name)["status"] == "False"  # type: ignore[index]
        sets = r.sets(device)
        r.admin.up(device)
        started = time.monotonic()
        r.ready(name, timeout=30)
        measure("device unreachable before the Set", time.monotonic() - started, "from device up to Ready")
    clear_throughout(rec, name, device)
    assert r.sets(device) - sets == 1, "one Set after the device came back"
    exactly_once(r, device, name, "Ethernet1", 501)
    r.delete(name)
    r.gone(name)
    assert not r.managed(device)["subinterfaces"]


def test_unreachable_during_a_slow_set(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    name, device = unique("during"), "fl-r2"
    r.admin.latency(device, 1.5)  # below the device's 2 s deadline: the Set is slow, not late
    before = r.sets(device)
    with Recorder(r.api, "networkservices", r.namespace) as rec:
        r.apply(r.service(name, [ep(device, "Ethernet2", 502)]))
        wait_for("the Set in flight", lambda: r.sets(device) > before, 10, 0.01)
        r.admin.down(device)
        took_down = time.monotonic()
        r.wait_cond(name, "Progressing", "True", {"DeviceUnreachable", "DeviceUnavailable"}, timeout=20)
        r.admin.latency(device, 0)
        r.admin.up(device)
        started = time.monotonic()
        r.ready(name, timeout=30)
        measure("device unreachable during a (slow) Set", time.monotonic() - started, "from device up to Ready")
    assert took_down
    clear_throughout(rec, name, device)
    exactly_once(r, device, name, "Ethernet2", 502)
    r.delete(name)
    r.gone(name)
    assert not r.managed(device)["subinterfaces"]


def test_unreachable_after_the_set(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    name, device = unique("after"), "fl-r1"
    r.apply(r.service(name, [ep(device, "Ethernet3", 503)]))
    r.ready(name)
    sets = r.sets(device)
    with Recorder(r.api, "networkservices", r.namespace) as rec:
        r.admin.down(device)
        down_at = time.monotonic()
        # Ready leaves True at the latest on the next periodic re-verification.
        r.wait_cond(name, "Ready", "False", {"DeviceUnreachable", "DeviceUnavailable"}, timeout=RESYNC + 10)
        noticed = time.monotonic() - down_at
        r.admin.up(device)
        started = time.monotonic()
        r.ready(name, timeout=30)
        measure("device unreachable after the Set", time.monotonic() - started,
                f"from device up to Ready; Ready left True {noticed:.1f}s after the device went down")
    clear_throughout(rec, name, device)
    assert r.sets(device) == sets, "the device kept its config: adopted, nothing re-sent"
    exactly_once(r, device, name, "Ethernet3", 503)
    r.delete(name)
    r.gone(name)


def test_permanent_rejection_is_degraded_with_the_device_message_and_no_hot_loop(
    r: Rig, measure  # type: ignore[no-untyped-def]
) -> None:
    name, device = unique("rejected"), "fl-r3"
    message = "vlan 504 is reserved on this platform"
    r.admin.fail_sets(device, 1_000_000, "INVALID_ARGUMENT", message)
    r.apply(r.service(name, [ep(device, "Ethernet4", 504)]))
    degraded = r.wait_cond(name, "Degraded", "True")
    assert degraded["reason"] == "DeviceRejected", degraded
    assert message in degraded["message"] and device in degraded["message"], degraded
    assert r.cond(name, "Progressing")["status"] == "False"  # type: ignore[index]
    svc = r.get(name)
    assert svc and message in svc["status"]["endpoints"][0]["lastError"]

    # The device's service count follows a pass that changed only it after a delay (one write for a
    # burst): that write belongs to the apply, so the quiet window starts after it.
    time.sleep(DEVICE_COUNT_DELAY_SECONDS + 1)
    window = 2 * RESYNC
    sets, writes = r.sets(device), writes_by_resource(r.metrics())
    time.sleep(window)
    after = writes_by_resource(r.metrics())
    sent = r.sets(device) - sets
    grown = {k: v - writes.get(k, 0.0) for k, v in after.items() if v != writes.get(k, 0.0)}
    written = sum(grown.values())
    measure("Set rejected (INVALID_ARGUMENT): Set RPCs in a window", None,
            f"{sent} Set RPCs and {written:.0f} API writes in {window:.0f}s (resync every {RESYNC:.0f}s)")
    assert sent <= window / RESYNC + 2, f"{sent} Set RPCs in {window}s: a hot loop"
    assert written <= 2, f"{written} API writes in {window}s while nothing changed: {grown}"
    assert r.cond(name, "Degraded")["status"] == "True"  # type: ignore[index]

    r.admin.fail_sets(device, 0)
    started = time.monotonic()
    r.ready(name, timeout=RESYNC + 15)
    measure("Set rejected (INVALID_ARGUMENT), then accepted", time.monotonic() - started,
            "from the device accepting again to Ready (the periodic re-verification retries)")
    exactly_once(r, device, name, "Ethernet4", 504)
    r.delete(name)
    r.gone(name)


def test_transient_rejection_is_progressing_then_recovers(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    name, device = unique("transient"), "fl-r3"
    r.admin.fail_sets(device, 3, "UNAVAILABLE", "linecard busy, try again")
    sets = r.sets(device)
    with Recorder(r.api, "networkservices", r.namespace) as rec:
        started = time.monotonic()
        r.apply(r.service(name, [ep(device, "Ethernet5", 505)]))
        r.ready(name, timeout=30)
        measure("Set rejected (UNAVAILABLE x3), retried", time.monotonic() - started, "from apply to Ready")
    progressing = [s.cond("Progressing") for s in rec.of(name)]
    assert any(
        c and c["status"] == "True" and c["reason"] == "DeviceUnavailable" and "linecard busy" in c["message"]
        for c in progressing
    ), rec.reasons(name, "Progressing")
    assert not any(s.cond("Degraded") and s.cond("Degraded")["status"] == "True" for s in rec.of(name))  # type: ignore[index]
    clear_throughout(rec, name, device)
    assert r.sets(device) - sets == 4, "three refused Sets, one that applied, none after"
    exactly_once(r, device, name, "Ethernet5", 505)
    r.delete(name)
    r.gone(name)


def test_device_restarted_empty_gets_everything_back(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    device = "fl-r2"
    names = [unique("empty") for _ in range(3)]
    for i, name in enumerate(names):
        r.apply(r.service(name, [ep(device, "Ethernet6", 506 + i)]))
    r.all_ready(names, 30)
    sets = r.sets(device)
    r.admin.restart(device, empty=True)
    started = time.monotonic()
    wait_for("the config re-applied", lambda: len(r.managed(device)["subinterfaces"]) == 3, 30, 0.05)
    measure("device restarted with empty config", time.monotonic() - started, "from restart to config back")
    r.all_ready(names, 30)
    assert r.sets(device) - sets <= 2, "one Set re-applies all three services"
    for i, name in enumerate(names):
        exactly_once(r, device, name, "Ethernet6", 506 + i)
    for name in names:
        r.delete(name)
    for name in names:
        r.gone(name)


def test_slow_device_deadline_holds_and_other_devices_converge(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    slow = "fl-r4"
    r.apply(r.device(slow, timeoutSeconds=1))
    r.admin.latency(slow, 4.0)
    held = unique("slow")
    with Recorder(r.api, "networkservices", r.namespace) as rec:
        r.apply(r.service(held, [ep(slow, "Ethernet7", 507)]))
        wait_for("a Set on the slow device", lambda: r.sets(slow) > 0, 10, 0.05)
        others = [unique("fast") for _ in range(6)]
        started = time.monotonic()
        for i, name in enumerate(others):
            r.apply(r.service(name, [ep(("fl-r1", "fl-r2")[i % 2], "Ethernet8", 520 + i)]))
        took = r.all_ready(others, 20)
        measure("slow device: other devices' services converge", time.monotonic() - started,
                "6 services on two healthy devices, while every Set on the slow one times out")
        assert took < 10, f"services on healthy devices took {took:.1f}s while another device was slow"
        wait_for("a timed-out Set reported", lambda: any(
            (c := s.cond("Progressing")) and c["status"] == "True" and "DEADLINE_EXCEEDED" in c["message"]
            for s in rec.of(held)), 20)
    text = r.metrics()
    total = metric_total(text, "telco_gnmi_rpc_duration_seconds_sum", device=slow, rpc="Set")
    count = metric_total(text, "telco_gnmi_rpc_duration_seconds_count", device=slow, rpc="Set")
    assert count >= 1 and total / count < 1.5, f"Set RPCs took {total / count:.2f}s on average; the deadline is 1 s"
    r.admin.latency(slow, 0)
    started = time.monotonic()
    r.ready(held, timeout=45)
    measure("slow device (4 s per Set, 1 s deadline) becomes fast", time.monotonic() - started,
            "from the latency lever off to Ready (retry backoff)")
    exactly_once(r, slow, held, "Ethernet7", 507)
    for name in [held, *others]:
        r.delete(name)
    for name in [held, *others]:
        r.gone(name)
    r.apply(r.device(slow))


def test_ready_follows_a_lost_device_session_promptly(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    """With the default re-verification period (30 s) rather than the 5 s the other tests use.
    Regression of bug 9 (docs/reliability.md), fixed in d148b55: billing counts Ready time."""
    assert r.controller is not None
    r.controller.stop()
    r.start_controller("--resync-seconds", "30")
    name, device = unique("lag"), "fl-r4"
    try:
        r.apply(r.service(name, [ep(device, "Ethernet1", 530)]))
        r.ready(name)
        time.sleep(1)
        r.admin.down(device)
        down = time.monotonic()
        wait_for("the NetworkDevice Reachable=False", lambda: (c := r.api.get("networkdevices", device)) and (
            (cond := [x for x in c["status"]["conditions"] if x["type"] == "Reachable"]) and
            cond[0]["status"] == "False"), 15, 0.05)
        device_lag = time.monotonic() - down
        try:
            r.wait_cond(name, "Ready", "False", timeout=10)
        except AssertionError:
            service_lag = None
        else:
            service_lag = time.monotonic() - down
        measure("device lost: the NetworkDevice leaves Ready / the service leaves Ready", service_lag,
                f"device status after {device_lag:.1f}s; service after "
                f"{'more than 10' if service_lag is None else f'{service_lag:.1f}'}s (resync 30 s)")
        assert service_lag is not None, (
            f"NetworkDevice {device} said Reachable=False after {device_lag:.1f}s, but NetworkService {name} "
            "was still Ready 10 s after the device went down (it changes only at the next 30 s re-verification)"
        )
    finally:
        r.admin.up(device)
        r.delete(name)
        r.controller.stop()
        r.start_controller()
        r.gone(name, 30)

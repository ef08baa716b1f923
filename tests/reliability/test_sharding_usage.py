"""Usage metering across sharded replicas (#16, docs/sharding.md "Usage metering").

Two replicas of a shard group on a real API server and devicesim: two usage-priced Subscriptions sit on
one device driven by the replica that does *not* hold the commerce unit. That replica publishes the
counters of both in one report in the NetworkDevice's status, one write per device per interval (none in
the NetworkServices); the commerce holder meters them. The traffic between two moments with the link
down (devicesim's counters stand still then) must be billed to the octet, also when the device changes
owner in between (the publishing replica SIGKILLed: the commerce holder takes the device and reads it
itself). At the month end the usage.rated event and the invoice's usage line carry exactly what was
metered.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from controller.billing.invoice import invoice_name
from controller.billing.periods import Cycle
from controller.sharding import COMMERCE, assign
from tests.harness import ControllerProcess
from tests.integration.test_commerce import money, offering
from tests.kube import Kubectl
from tests.reliability.rig import Recorder, Rig, holders, pod, rig, unique, wait_for
from tests.support.cloudevents_receiver import CloudEventsReceiver

DEVICES = ("su-a", "su-b", "su-c", "su-d", "su-e", "su-f")
GROUP = "sutest"
LEASE, DEADLINE, RENEW = 6.0, 4.0, 1.0
PER_GB = 10  # EUR per GB of traffic
ACCOUNT = "SU.Usage"
OTHER_ACCOUNT = "SU.Usage2"  # the second Subscription's: the first account's invoice has one usage line
TYPE = "dev.intent.telco.subscription.{}.v1"


@pytest.fixture(scope="module")
def receiver() -> Iterator[CloudEventsReceiver]:
    with CloudEventsReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("su"), "su", DEVICES, controller=False, namespaced=False) as rg:
        yield rg


class Replicas:
    """The replicas of the shard group, with one billing signing key (one Secret, as in a cluster) and one
    clock offset file."""

    def __init__(self, r: Rig, sink: str) -> None:
        self.r, self.sink = r, sink
        self.procs: dict[str, ControllerProcess] = {}
        self.clock = r.workdir / "clock-offset"
        self.clock.write_text("0")
        self.key = r.workdir / "billing-signing-key"
        self.key.write_text(secrets.token_hex(32) + "\n")

    def start(self, name: str) -> ControllerProcess:
        args = ("--shard-group", GROUP, "--shard-namespace", self.r.namespace)
        timing = ("--shard-lease-seconds", str(LEASE), "--shard-renew-deadline-seconds", str(DEADLINE))
        billing = ("--billing-sink-url", self.sink, "--billing-interval-seconds", "1", "--usage-interval-seconds", "1")
        env = {
            "POD_ID": name,
            "TELCO_CLOCK_OFFSET_FILE": str(self.clock),
            "TELCO_BILLING_RETRY_SECONDS": "0.5",
            "TELCO_BILLING_SIGNING_KEY_FILE": str(self.key),
        }
        proc = ControllerProcess(
            self.r.kubeconfig,
            self.r.workdir / f"{name}.log",
            *args,
            *timing,
            "--shard-renew-seconds",
            str(RENEW),
            *billing,
            env=env,
        )
        self.procs[name] = proc.start()
        self.r.controller = proc
        return proc

    def now(self) -> datetime:
        """The replicas' clock (the wall clock plus the offset the test set)."""
        return datetime.now(UTC) + timedelta(seconds=float(self.clock.read_text() or 0))

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                proc.stop()


@pytest.fixture()
def replicas(r: Rig, receiver: CloudEventsReceiver) -> Iterator[Replicas]:
    group = Replicas(r, receiver.url)
    try:
        yield group
    finally:
        r.controller = next((p for p in group.procs.values() if p.alive()), None)
        with contextlib.suppress(Exception):  # terminated through the controller: devices cleaned
            for sub in r.api.custom.list_namespaced_custom_object(
                "telco.intent.dev", "v1alpha1", r.namespace, "subscriptions"
            )["items"]:
                r.api.delete("subscriptions", sub["metadata"]["name"], r.namespace)
            wait_for("the Subscriptions gone", lambda: not items(r, "subscriptions") and not r.service_names(), 60)
            for inv in items(r, "invoices"):
                r.api.delete("invoices", inv["metadata"]["name"], r.namespace)
            r.api.delete("productofferings", "su-traffic")
        group.stop_all()
        r.controller = None
        for device in DEVICES:
            r.admin.reset(device)
        leases = kubernetes.client.CoordinationV1Api(r.api.client)
        leases.delete_collection_namespaced_lease(r.namespace, label_selector=f"telco.intent.dev/shard-group={GROUP}")


# -- instruments ------------------------------------------------------------------------------------
def items(r: Rig, plural: str) -> list[dict[str, Any]]:
    return list(
        r.api.custom.list_namespaced_custom_object("telco.intent.dev", "v1alpha1", r.namespace, plural)["items"]
    )


def settled(r: Rig, names: set[str]) -> dict[str, str]:
    """unit -> replica name, once exactly `names` are members and every unit (the devices and commerce)
    sits with the replica rendezvous hashing assigns it to."""
    api = kubernetes.client.CoordinationV1Api(r.api.client)

    def probe() -> dict[str, str] | None:
        listed = api.list_namespaced_lease(r.namespace, label_selector="telco.intent.dev/shard-role=member").items
        identities = [m.spec.holder_identity for m in listed if m.spec.holder_identity]
        identities = [i for i in identities if pod(i) in names]
        if {pod(i) for i in identities} != names:
            return None
        want = assign((*DEVICES, COMMERCE), identities)
        found = {u: h for u, h in holders(r).items() if u in want}
        return {u: pod(h) for u, h in found.items()} if found == want else None

    return wait_for(f"every unit held by its replica among {sorted(names)}", probe, 4 * LEASE + 30, 0.3)


def device_counters(r: Rig, device: str, port: str, vlan: int) -> tuple[int, int]:
    """(in, out) octets of the subinterface, from devicesim's own tree."""
    for iface in r.admin.dump(device)["tree"]["interfaces"]["interface"]:
        if iface["name"] == port:
            for sub in iface.get("subinterfaces", {}).get("subinterface", []):
                if int(sub["index"]) == vlan:
                    counters = sub["state"]["counters"]
                    return int(counters["in-octets"]), int(counters["out-octets"])
    raise AssertionError(f"{device}/{port}.{vlan} not on the device")


def meter(sub: dict[str, Any]) -> tuple[dict[str, int], int]:
    """(counter key -> last octets, total octets in the windows) of a Subscription's meter."""
    usage = ((sub.get("status") or {}).get("billing") or {}).get("usage") or {}
    counters = {c["key"]: int(c["octets"]) for c in usage.get("counters") or []}
    return counters, sum(int(w["octets"]) for w in usage.get("windows") or [])


def metered_at_rest(r: Rig, name: str, device: str, port: str, vlan: int) -> tuple[int, int]:
    """With the link down (the counters stand still): wait until the meter's last sample is the device's
    counter; returns (the device's in + out octets, the octets the meter has billed so far)."""
    keys = (f"{device}/{port}/{vlan}/in", f"{device}/{port}/{vlan}/out")

    def probe() -> tuple[int, int] | None:
        before = device_counters(r, device, port, vlan)
        sub = r.api.get("subscriptions", name, r.namespace) or {}
        counters, total = meter(sub)
        after = device_counters(r, device, port, vlan)
        if before != after or (counters.get(keys[0]), counters.get(keys[1])) != after:
            return None
        return sum(after), total

    return wait_for(f"the meter of {name} at the device's counters", probe, 30, 0.3)


def usage_offering(name: str) -> dict[str, Any]:
    monthly = {"name": "Monthly fee", "priceType": "recurring", "recurringChargePeriodType": "month"}
    traffic = {"name": "Traffic", "priceType": "usage", "unitOfMeasure": {"amount": 1, "units": "GB"}}
    return offering(name, {**monthly, "price": money("10.00")}, {**traffic, "price": money(f"{PER_GB}.00")})


def subscription(
    namespace: str,
    name: str,
    device: str,
    port: str,
    vlan: int,
    account: str = ACCOUNT,
    address: str = "100.67.1.1/30",
) -> dict[str, Any]:
    return {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "productOffering": {"name": "su-traffic"},
            "billingAccount": {"id": account, "timeZone": "UTC"},
            "relatedParty": [{"role": "customer", "name": "Sharded Usage Corp"}],
            "endpoints": [{"device": device, "port": port, "vlanId": vlan, "ipv4Address": address}],
            "desiredState": "active",
        },
    }


def state(r: Rig, name: str) -> str | None:
    return ((r.api.get("subscriptions", name, r.namespace) or {}).get("status") or {}).get("state")


# -- make test --------------------------------------------------------------------------------------
def test_usage_on_another_replicas_device_is_billed_exactly_also_across_an_owner_change(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas, receiver: CloudEventsReceiver, measure
) -> None:
    replicas.start("rep-1")
    replicas.start("rep-2")
    owners = settled(r, {"rep-1", "rep-2"})
    for _ in range(5):  # identities are random: the other replica may draw no device (1 time in 64)
        holder = owners[COMMERCE]
        if any(o != holder for u, o in owners.items() if u != COMMERCE):
            break
        other = next(n for n in ("rep-1", "rep-2") if n != holder)
        replicas.procs[other].stop()
        replicas.start(other)
        owners = settled(r, {"rep-1", "rep-2"})
    holder = owners[COMMERCE]
    device = next(d for d in DEVICES if owners[d] != holder)
    publisher = owners[device]
    r.wait_devices_ready()
    port, vlan, vlan2 = "Ethernet2", 820, 821

    r.api.apply(usage_offering("su-traffic"))
    name, name2 = unique("metered"), unique("metered2")
    r.api.apply(subscription(r.namespace, name, device, port, vlan))
    r.api.apply(subscription(r.namespace, name2, device, port, vlan2, OTHER_ACCOUNT, "100.67.1.5/30"))
    for sub_name in (name, name2):
        wait_for(f"Subscription {sub_name} active", lambda n=sub_name: state(r, n) == "active", 60)

    def device_report() -> dict[str, Any] | None:
        report = ((r.api.get("networkdevices", device) or {}).get("status") or {}).get("usage")
        listed = [(e["port"], e["vlanId"]) for e in (report or {}).get("endpoints") or []]
        return report if listed == [(port, vlan), (port, vlan2)] else None

    report = wait_for("the device's owner publishes both services' counters in one report", device_report, 30)
    assert pod(report["replica"]) == publisher != holder, "published by the device's owner, not the commerce holder"
    for sub_name in (name, name2):
        svc = r.get(sub_name) or {}
        assert svc["metadata"]["labels"]["telco.intent.dev/usage-metered"] == "true"
        assert "usage" not in (svc.get("status") or {}), "nothing is published in the NetworkService any more"
        wait_for(
            f"usage of {sub_name} metered from the published counters",
            lambda n=sub_name: meter(r.api.get("subscriptions", n, r.namespace))[1] > 0,
            30,
        )

    r.admin.link(device, port, False)
    start = {n: metered_at_rest(r, n, device, port, v) for n, v in ((name, vlan), (name2, vlan2))}
    r.admin.link(device, port, True)
    window, interval = 4.0, 1.0
    with (
        Recorder(r.api, "networkdevices") as device_writes,
        Recorder(r.api, "networkservices", r.namespace) as svc_writes,
        Recorder(r.api, "subscriptions", r.namespace) as sub_writes,
    ):
        began = time.monotonic()
        time.sleep(window)  # traffic, metered through the published counters
        ended = time.monotonic()
    # Writes in the window, by what they changed (a watch replays the current version first: not a write;
    # the recorders stop up to 3 s after the window, so what they saw later is not counted).
    usage_writes = {d: usage_changes(device_writes.of(d), began, ended) for d in DEVICES}
    svc_usage = [v for n in (name, name2) for v in svc_writes.of(n) if "usage" in v.status]

    def writes(versions: list[Any]) -> int:
        return sum(v.type == "MODIFIED" and began <= v.at <= ended for v in versions)

    svc_count = {n: writes(svc_writes.of(n)) for n in (name, name2)}
    sub_count = {n: writes(sub_writes.of(n)) for n in (name, name2)}
    publishing = sorted(d for d in DEVICES if owners[d] == publisher)
    measure(
        "sharding: usage published by a device's owner, API writes",
        None,
        f"{usage_writes[device]} usage writes of the NetworkDevice carrying 2 metered services"
        f" ({writes(device_writes.of(device))} writes of it in all),"
        f" {[usage_writes[d] for d in publishing if d != device]} usage writes of the publisher's other devices"
        f" (no metered service), {len(svc_usage)} NetworkService versions with usage ({svc_count} NetworkService"
        f" writes in all), {sub_count} Subscription writes, in {window:g} s at a {interval:g} s usage interval",
    )
    assert svc_usage == [], "no NetworkService carries usage"
    # One write per device per interval, not one per service: the two services' counters share each write.
    assert 1 <= usage_writes[device] <= window / interval + 1, usage_writes
    assert all(usage_writes[d] == 0 for d in DEVICES if d != device), "no metered service there: nothing written"
    victim = replicas.procs[publisher]
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    after = settled(r, {holder})
    assert after[device] == holder, "the commerce holder drives the device now, and reads it itself"
    time.sleep(3)  # traffic, metered through the holder's own reads
    r.admin.link(device, port, False)
    for sub_name, v in ((name, vlan), (name2, vlan2)):
        end_octets, end_billed = metered_at_rest(r, sub_name, device, port, v)
        start_octets, start_billed = start[sub_name]
        assert end_octets > start_octets + 10**6, f"traffic flowed between the two rests ({sub_name})"
        assert end_billed - start_billed == end_octets - start_octets, (
            f"every octet billed once, none lost ({sub_name})"
        )

    # The month's close: the usage.rated event and the invoice's usage line say what was metered.
    sub = r.api.get("subscriptions", name, r.namespace)
    month = Cycle.of("month", 1, "UTC").period_containing(replicas.now())
    windows = sub["status"]["billing"]["usage"]["windows"]
    in_month = sum(int(w["octets"]) for w in windows if ts(w["start"]) == month.start)
    jump = (month.end + timedelta(seconds=20) - replicas.now()).total_seconds()
    replicas.clock.write_text(str(float(replicas.clock.read_text() or 0) + jump))
    source_suffix = f"/namespaces/{r.namespace}/subscriptions/{name}"

    def rated() -> list[Any]:
        return [
            e
            for e in receiver.events
            if e.get_source().endswith(source_suffix) and e.get_type() == TYPE.format("usage.rated")
        ]

    (event,) = wait_for("the usage.rated event", lambda: rated() or None, 60)
    data = event.get_data()
    assert int(data["octets"]) == in_month, (data, windows)
    cents = Fraction(in_month, 10**9) * PER_GB * 100
    assert Fraction(data["amount"]) * 100 == int(cents + Fraction(1, 2)), data  # rounded half up, once
    inv_name = invoice_name(ACCOUNT, month, "UTC")
    inv = wait_for(
        f"the onCycle invoice {inv_name} issued",
        lambda: (
            (i := r.api.get("invoices", inv_name, r.namespace))
            and (i.get("status") or {}).get("state") in ("validated", "sent")
            and i
        ),
        60,
    )
    (line,) = [ln for ln in inv["status"]["lines"] if ln["type"] == "usageCharge"]
    assert line["taxExcludedAmount"]["value"] == data["amount"], "the bill and the event agree"


def usage_changes(versions: list[Any], began: float, ended: float) -> int:
    """How many of the versions a watch delivered between `began` and `ended` (monotonic) changed
    status.usage (the first version is where it started)."""
    return sum(
        a.status.get("usage") != b.status.get("usage") and began <= b.at <= ended
        for a, b in itertools.pairwise(versions)
    )


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- make reliability -----------------------------------------------------------------------------------
@pytest.mark.full
def test_usage_is_billed_exactly_when_the_commerce_unit_moves_and_the_group_scales_up(
    r: Rig, replicas: Replicas
) -> None:
    """The commerce holder stopped gracefully (its unit and devices move), then a fourth replica joins
    (units move to it): whichever replica reads or bills the counters, the traffic between two rests is
    billed to the octet."""
    names = {"rep-1", "rep-2", "rep-3"}
    for name in sorted(names):
        replicas.start(name)
    owners = settled(r, names)
    holder = owners[COMMERCE]
    device = next((d for d in DEVICES if owners[d] != holder), None)
    assert device is not None, owners  # two other replicas draw none of six devices: 1 time in 729
    r.wait_devices_ready()
    port, vlan = "Ethernet3", 830
    r.api.apply(usage_offering("su-traffic"))
    name = unique("moves")
    r.api.apply(subscription(r.namespace, name, device, port, vlan))
    wait_for(f"Subscription {name} active", lambda: state(r, name) == "active", 60)
    wait_for("usage metered", lambda: meter(r.api.get("subscriptions", name, r.namespace))[1] > 0, 30)

    r.admin.link(device, port, False)
    start_octets, start_billed = metered_at_rest(r, name, device, port, vlan)
    r.admin.link(device, port, True)
    time.sleep(3)
    replicas.procs[holder].stop()  # SIGTERM: the commerce unit and its devices are released at once
    names.discard(holder)
    r.controller = replicas.procs[next(iter(names))]
    moved = settled(r, names)
    assert moved[COMMERCE] != holder and moved[device] == owners[device]
    time.sleep(3)
    replicas.start("rep-4")
    names.add("rep-4")
    joined = settled(r, names)
    time.sleep(3)
    r.admin.link(device, port, False)
    end_octets, end_billed = metered_at_rest(r, name, device, port, vlan)
    paths = f"device {owners[device]} -> {joined[device]}, commerce {holder} -> {moved[COMMERCE]} -> {joined[COMMERCE]}"
    assert end_octets > start_octets + 10**6, paths
    assert end_billed - start_billed == end_octets - start_octets, paths
    print(f"[usage] billed exactly across: {paths}")

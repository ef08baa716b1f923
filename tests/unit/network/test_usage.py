"""Usage metering across sharded replicas (controller/network/usage.py, controller/commerce/usage.py):
what a device's owner publishes, what the commerce holder takes from it, and that a Meter fed by both
bills every octet once through a change of owner."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api.networkservice import METERED_LABEL, NetworkServiceStatus
from controller.billing.periods import Cycle
from controller.billing.rating import Meter
from controller.commerce import order
from controller.commerce.index import Sample
from controller.commerce.usage import published_samples, usage_priced
from controller.intent.render import ServiceKey
from controller.kube import Ref
from controller.network.reconciler import ServiceRecord
from controller.network.usage import UsagePublisher, counter_key, usage_patch
from controller.statuswriter import StatusWriter
from tests.unit.commerce.builders import offering, offering_doc, subscription
from tests.unit.intent.helpers import make_spec

T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- what a device's owner publishes ------------------------------------------------------------------
def test_a_report_names_the_reader_the_time_and_each_endpoint_read_whole() -> None:
    readings = {
        "pe2": [("Ethernet2", 20, {"in": 5, "out": 7}), ("Ethernet1", 10, {"in": 1, "out": 2})],
        "pe3": [("Ethernet1", 30, {"in": 9})],  # the out-octets Get failed: nothing half-read is reported
    }
    patch, replaced = usage_patch("rep-b", at(0.7), readings, {"pe2": {"replica": "rep-a"}}, {"pe1", "pe2", "pe3"})
    assert patch == {
        "pe2": {
            "replica": "rep-b",
            "sampledAt": "2026-03-10T12:00:00Z",
            "endpoints": [
                {"port": "Ethernet1", "vlanId": 10, "inOctets": "1", "outOctets": "2"},
                {"port": "Ethernet2", "vlanId": 20, "inOctets": "5", "outOctets": "7"},
            ],
        }
    }
    assert replaced == {"pe2": {"replica": "rep-a"}}, "compared with what this report replaces only"
    NetworkServiceStatus.model_validate({"usage": patch})  # the CRD's shape


def test_a_report_clears_entries_of_devices_the_service_left_and_nothing_read_writes_nothing() -> None:
    stored = {"pe2": {"replica": "a"}, "old": {"replica": "b"}}
    patch, replaced = usage_patch("a", at(0), {"pe2": [("E1", 1, {"in": 1, "out": 1})]}, stored, {"pe2"})
    assert patch["old"] is None and set(patch) == {"pe2", "old"}
    assert replaced == stored
    assert usage_patch("a", at(0), {"pe2": [("E1", 1, {})]}, stored, {"pe2"}) == ({}, {})


@dataclass
class FakeSession:
    name: str
    counters: dict[tuple[str, int], tuple[int, int]]
    connected: bool = True
    gets: list[str] = field(default_factory=list)

    @property
    def client(self) -> FakeSession:
        return self

    async def get(self, paths: list[Any], kind: str, encoding: str) -> list[Any]:
        from controller.gnmi.client import Notification, Update

        (path,) = paths
        port = path.elem[1].key["name"]
        vlan = int(path.elem[3].key["index"])
        self.gets.append(f"{port}.{vlan}")
        n_in, n_out = self.counters[(port, vlan)]
        return [Notification(0, [Update(path, {"in-octets": n_in, "out-octets": str(n_out)})], [])]


class FakeWriter:
    def __init__(self) -> None:
        self.submits: list[tuple[Ref, dict[str, Any], dict[str, Any], bool]] = []

    def submit(self, ref: Ref, desired: dict[str, Any], stored: dict[str, Any], part: bool = False) -> bool:
        self.submits.append((ref, desired, stored, part))
        return True


def record(name: str, endpoints: list[tuple[str, str, int]], metered: bool = True, **spec: Any) -> ServiceRecord:
    eps = [
        {"device": d, "port": p, "vlanId": v, "ipv4Address": f"192.0.2.{1 + 4 * i}/30"}
        for i, (d, p, v) in enumerate(endpoints)
    ]
    return ServiceRecord(
        key=ServiceKey("acme", name),
        uid=name,
        generation=1,
        created="2026-03-01T00:00:00Z",
        resource_version="1",
        spec=make_spec(endpoints=eps, **spec),
        invalid=None,
        deleting=False,
        finalizers=[],
        status={},
        metered=metered,
    )


@dataclass
class FakeNetwork:
    services: dict[ServiceKey, ServiceRecord]
    sessions: dict[str, FakeSession]


def test_the_owner_reads_only_metered_enabled_services_on_devices_it_drives_one_write_each() -> None:
    services = [
        record("metered", [("pe1", "Ethernet1", 10), ("pe2", "Ethernet1", 11)]),
        record("flat", [("pe1", "Ethernet2", 12)], metered=False),
        record("disabled", [("pe1", "Ethernet3", 13)], adminState="disabled"),
        record("elsewhere", [("pe2", "Ethernet4", 14)]),
        record("down", [("pe3", "Ethernet1", 15)]),
    ]
    pe1 = FakeSession("pe1", {("Ethernet1", 10): (100, 200)})
    pe2 = FakeSession("pe2", {("Ethernet1", 11): (1, 1), ("Ethernet4", 14): (1, 1)})
    pe3 = FakeSession("pe3", {}, connected=False)
    network = FakeNetwork({s.key: s for s in services}, {"pe1": pe1, "pe2": pe2, "pe3": pe3})
    writer = FakeWriter()
    publisher = UsagePublisher(
        network, writer, "rep-a", 300, lambda: at(0), lambda d: d in ("pe1", "pe3"), lambda: False
    )  # type: ignore[arg-type]
    assert asyncio.run(publisher.publish_once()) == 1
    assert pe1.gets == ["Ethernet1.10"] and pe2.gets == [], "only the owner's devices, only metered services"
    ((ref, desired, stored, part),) = writer.submits
    assert ref == Ref("networkservices", "metered", "acme") and part and stored == {"usage": {}}
    assert desired == {
        "usage": {
            "pe1": {
                "replica": "rep-a",
                "sampledAt": "2026-03-10T12:00:00Z",
                "endpoints": [{"port": "Ethernet1", "vlanId": 10, "inOctets": "100", "outOctets": "200"}],
            }
        }
    }


def test_nothing_to_meter_costs_no_get_and_no_write() -> None:
    session = FakeSession("pe1", {})
    network = FakeNetwork({(s := record("flat", [("pe1", "E1", 1)], metered=False)).key: s}, {"pe1": session})
    writer = FakeWriter()
    publisher = UsagePublisher(network, writer, "a", 300, lambda: at(0), lambda d: True, lambda: False)  # type: ignore[arg-type]
    assert asyncio.run(publisher.publish_once()) == 0
    assert session.gets == [] and writer.submits == []


# -- what the commerce holder takes --------------------------------------------------------------------
def report(replica: str, seconds: float, *endpoints: tuple[str, int, int, int]) -> dict[str, Any]:
    return {
        "replica": replica,
        "sampledAt": at(seconds).isoformat().replace("+00:00", "Z"),
        "endpoints": [{"port": p, "vlanId": v, "inOctets": str(i), "outOctets": str(o)} for p, v, i, o in endpoints],
    }


def test_only_the_lease_holders_report_for_the_subscriptions_endpoints_counts() -> None:
    status = {
        "usage": {
            "pe2": report("rep-b", 10, ("Ethernet1", 10, 5, 7), ("Ethernet9", 99, 1, 1)),
            "pe3": report("rep-old", 12, ("Ethernet1", 10, 8, 8)),  # its device moved on since
            "pe4": {"replica": "rep-c", "sampledAt": "not a time", "endpoints": []},
        }
    }
    holders = {"pe2": "rep-b", "pe3": "rep-c", "pe4": "rep-c"}
    endpoints = [("pe2", "Ethernet1", 10), ("pe3", "Ethernet1", 10), ("pe4", "Ethernet1", 10)]
    assert published_samples(status, endpoints, holders.get) == {
        "pe2/Ethernet1/10/in": Sample(5, at(10)),
        "pe2/Ethernet1/10/out": Sample(7, at(10)),
    }
    assert counter_key("pe2", "Ethernet1", 10, "in") == "pe2/Ethernet1/10/in", "the key the holder's own reads use"
    assert published_samples({}, endpoints, holders.get) == {}
    assert published_samples(status, endpoints, lambda d: None) == {}, "an unknown holder is nobody's report"


@pytest.mark.parametrize("check_holder", [True, False])
def test_a_meter_fed_by_two_owners_in_turn_bills_each_octet_once(check_holder: bool) -> None:
    """The counter lives on the device, so whoever reads it continues the same series: the deltas add up to
    last - first. A new owner whose clock runs behind is not taken until its time passes the last sample
    (nothing lost: the next sample carries the octets). A late report of the old owner, whose clock ran
    ahead, would look like a counter reset after the new owner's sample: only the Lease holder counts."""
    cycle = Cycle.of("month", 1, "UTC")
    meter = Meter()
    holders = {"pe2": "rep-b"}

    def holder(device: str) -> str | None:
        return holders.get(device) if check_holder else report_of[device]

    report_of: dict[str, str] = {}

    def feed(replica: str, seconds: float, octets: int) -> None:
        nonlocal meter
        status = {"usage": {"pe2": report(replica, seconds, ("Ethernet1", 10, 0, octets))}}
        report_of["pe2"] = replica
        for counter, sample in published_samples(status, [("pe2", "Ethernet1", 10)], holder).items():
            meter = meter.observe(counter, sample.octets, sample.at, cycle)

    feed("rep-b", 0, 1_000)  # baseline
    feed("rep-b", 300, 4_000)
    holders["pe2"] = "rep-c"  # rep-b SIGKILLed; rep-c takes the device; its clock is 200 s behind rep-b's
    feed("rep-c", 150, 5_000)  # older than the last sample: waits for the next one
    feed("rep-c", 400, 6_000)
    feed("rep-b", 420, 4_500)  # rep-b's write, read before the kill, lands late
    feed("rep-c", 700, 9_000)
    billed = sum(meter.windows.values())
    if check_holder:
        assert billed == 9_000 - 1_000
        feed("rep-c", 1000, 500)  # the device rebooted: a reset, the octets since it counted
        assert sum(meter.windows.values()) == 9_000 - 1_000 + 500
    else:
        # 4,500 taken as a reset after 6,000, then 4,500 -> 9,000 counted again: why the holder is checked
        assert billed == 14_000 > 9_000 - 1_000


# -- who is metered --------------------------------------------------------------------------------------
def test_an_order_with_a_usage_price_labels_its_network_service_metered() -> None:
    usage = {"name": "Traffic", "priceType": "usage", "unitOfMeasure": {"amount": 1, "units": "GB"}}
    flat = offering()
    prices = offering_doc()["productOfferingPrice"]
    metered = offering(productOfferingPrice=[*prices, {**usage, "price": {"unit": "EUR", "value": "1.00"}}])
    assert usage_priced(metered) and not usage_priced(flat) and not usage_priced(None)
    spec = subscription()
    body = order.network_service_for("sub", "acme", "uid", spec, metered, True, None, usage_priced(metered))
    assert body["metadata"]["labels"][METERED_LABEL] == "true"
    body = order.network_service_for("sub", "acme", "uid", spec, flat, True, None, usage_priced(flat))
    assert METERED_LABEL not in body["metadata"]["labels"]


# -- the status writer keeps a usage part and a whole status together ---------------------------------------
class FakeKube:
    def __init__(self) -> None:
        self.rv = 10
        self.writes: list[dict[str, Any]] = []
        self.stored: dict[str, Any] = {}
        self.gate = asyncio.Event()

    async def patch_status(self, ref: Ref, status: dict[str, Any]) -> dict[str, Any]:
        await self.gate.wait()
        self.rv += 1
        self.writes.append(status)
        self.stored = {k: v for k, v in {**self.stored, **status}.items() if v is not None}
        return {"metadata": {"resourceVersion": str(self.rv)}, "status": dict(self.stored)}


REF = Ref("networkservices", "svc", "acme")


@pytest.mark.parametrize("part_first", [True, False])
def test_a_queued_usage_part_and_a_whole_status_are_both_written(part_first: bool) -> None:
    async def go() -> FakeKube:
        kube = FakeKube()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "a"}, None)  # in flight, held at the gate
        await asyncio.sleep(0)
        usage = {"usage": {"pe1": {"replica": "r", "sampledAt": "2026-03-10T12:00:00Z", "endpoints": []}}}
        whole = {"state": "b", "conditions": []}
        for desired, part in [(usage, True), (whole, False)] if part_first else [(whole, False), (usage, True)]:
            assert writer.submit(REF, desired, {"usage": {}} if part else None, part=part)
        kube.gate.set()
        await writer.flush()
        # After both landed, the overlay of what was written shows both: the next whole status builds on it.
        assert writer.latest(REF, {})["state"] == "b" and "usage" in writer.latest(REF, {})
        return kube

    kube = asyncio.run(go())
    assert len(kube.writes) == 2, "the queued desires went out together"
    assert kube.stored["state"] == "b" and kube.stored["usage"]["pe1"]["replica"] == "r"


def test_another_replicas_usage_report_is_not_a_forgery() -> None:
    async def go() -> None:
        kube = FakeKube()
        kube.gate.set()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "a"}, None)
        await writer.flush()
        other = {"state": "a", "usage": {"pe2": {"replica": "b"}}}
        assert writer.forgery(REF, "99", other) == []

    asyncio.run(go())


def test_a_usage_part_on_a_stalled_service_posts_no_warning() -> None:
    """E.g. after a restart: the service was Stalled before; the first write of this run is a usage part.
    Its base is not the whole status, so it must not be taken as the service turning Stalled."""
    from controller.announce import Announcer

    class Kube(FakeKube):
        def __init__(self) -> None:
            super().__init__()
            self.gate.set()
            self.events: list[str] = []

        async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
            self.events.append(reason)

    async def go() -> Kube:
        kube = Kube()
        kube.stored = {"conditions": [{"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": "x"}]}
        writer = StatusWriter(kube, Announcer(kube, interval=0))  # type: ignore[arg-type]
        usage = {"usage": {"pe1": {"replica": "r", "sampledAt": "2026-03-10T12:00:00Z", "endpoints": []}}}
        writer.submit(REF, usage, {"usage": {}}, part=True)
        await writer.flush()
        await writer.announcer.flush()  # type: ignore[union-attr]
        return kube

    kube = asyncio.run(go())
    assert len(kube.writes) == 1 and kube.events == []

"""Usage metering across sharded replicas (controller/network/usage.py, controller/commerce/usage.py):
what a device's owner publishes in the NetworkDevice's status, what the commerce holder takes from it,
and that a Meter fed by both bills every octet once through a change of owner."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controller.api.networkdevice import MAX_USAGE_ENDPOINTS, NetworkDeviceStatus
from controller.api.networkservice import METERED_LABEL
from controller.billing.periods import Cycle
from controller.billing.rating import Meter
from controller.commerce import order
from controller.commerce.index import CommerceIndex, Queues, Sample
from controller.commerce.usage import published_samples, usage_priced
from controller.intent.render import ServiceKey
from controller.kube import Ref
from controller.network.reconciler import ServiceRecord
from controller.network.usage import UsagePublisher, counter_key, device_report, in_turn
from controller.statuswriter import StatusWriter
from tests.unit.commerce.builders import offering, offering_doc, subscription
from tests.unit.intent.helpers import make_spec

T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- what a device's owner publishes ------------------------------------------------------------------
WHOLE = {"in": 5, "out": 7}


@pytest.mark.parametrize(
    ("readings", "endpoints"),
    [
        pytest.param(
            [("Ethernet2", 20, WHOLE), ("Ethernet1", 10, {"in": 1, "out": 2})],
            [("Ethernet1", 10, "1", "2"), ("Ethernet2", 20, "5", "7")],
            id="each subinterface, sorted",
        ),
        pytest.param(
            [("Ethernet1", 30, {"in": 9}), ("Ethernet1", 10, WHOLE)],
            [("Ethernet1", 10, "5", "7")],
            id="a half-read subinterface (one Get failed) is left out",
        ),
        pytest.param([("Ethernet1", 10, {"in": -1, "out": 3})], None, id="a negative counter is no reading"),
        pytest.param([("Ethernet1", 10, WHOLE), ("Ethernet1", 10, WHOLE)], [("Ethernet1", 10, "5", "7")], id="once"),
        pytest.param([("Ethernet1", 10, {})], None, id="nothing read whole: nothing to write"),
        pytest.param([], None, id="nothing read"),
        pytest.param(
            [("E1", 1, {"in": 2**64 - 1, "out": 0})], [("E1", 1, str(2**64 - 1), "0")], id="uint64, as a string"
        ),
    ],
)
def test_a_device_report_names_the_reader_the_time_and_each_subinterface_read_whole(
    readings: list[Any], endpoints: list[tuple[str, int, str, str]] | None
) -> None:
    got = device_report("rep-b", at(0.7), readings)
    if endpoints is None:
        assert got is None
        return
    assert got == {
        "replica": "rep-b",
        "sampledAt": "2026-03-10T12:00:00Z",
        "endpoints": [{"port": p, "vlanId": v, "inOctets": i, "outOctets": o} for p, v, i, o in endpoints],
    }
    NetworkDeviceStatus.model_validate({"usage": got})  # the CRD's shape


def test_a_report_of_more_subinterfaces_than_the_schema_allows_is_refused_by_the_model() -> None:
    many = [{"port": "E1", "vlanId": 1, "inOctets": "1", "outOctets": "1"}] * (MAX_USAGE_ENDPOINTS + 1)
    with pytest.raises(ValidationError, match=r"usage\.endpoints"):
        NetworkDeviceStatus.model_validate(
            {"usage": {"replica": "r", "sampledAt": "2026-03-10T12:00:00Z", "endpoints": many}}
        )


@pytest.mark.parametrize(
    ("count", "limit", "turns"),
    [(3, 5, [[0, 1, 2]]), (5, 5, [[0, 1, 2, 3, 4]]), (7, 3, [[0, 1, 2], [3, 4, 5], [6], [0, 1, 2]])],
)
def test_a_device_with_more_subinterfaces_than_a_report_lists_is_reported_in_turns(
    count: int, limit: int, turns: list[list[int]]
) -> None:
    subs = [(f"E{i}", i + 1) for i in range(count)]
    assert [in_turn(subs, t, limit) for t in range(len(turns))] == [[subs[i] for i in turn] for turn in turns]
    assert {s for t in range(count) for s in in_turn(subs, t, limit)} == set(subs), "every one has its turn"


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


def publisher_of(
    network: FakeNetwork, writer: FakeWriter, drives: Any, statuses: dict[str, Any] | None = None
) -> UsagePublisher:
    statuses = statuses or {}
    reconciler: Any = network  # what UsagePublisher uses of a NetworkReconciler and of a StatusWriter
    status_writer: Any = writer
    return UsagePublisher(reconciler, status_writer, "rep-a", 300, lambda: at(0), drives, lambda: False, statuses.get)


def test_the_owner_reads_metered_enabled_services_on_devices_it_drives_one_write_per_device() -> None:
    services = [
        record("metered", [("pe1", "Ethernet1", 10), ("pe2", "Ethernet1", 11)]),
        record("also-metered", [("pe1", "Ethernet5", 16)]),
        record("flat", [("pe1", "Ethernet2", 12)], metered=False),
        record("disabled", [("pe1", "Ethernet3", 13)], adminState="disabled"),
        record("elsewhere", [("pe2", "Ethernet4", 14)]),
        record("down", [("pe3", "Ethernet1", 15)]),
    ]
    pe1 = FakeSession("pe1", {("Ethernet1", 10): (100, 200), ("Ethernet5", 16): (3, 4)})
    pe2 = FakeSession("pe2", {("Ethernet1", 11): (1, 1), ("Ethernet4", 14): (1, 1)})
    pe3 = FakeSession("pe3", {}, connected=False)
    network = FakeNetwork({s.key: s for s in services}, {"pe1": pe1, "pe2": pe2, "pe3": pe3})
    writer = FakeWriter()
    stored = {"pe1": {"usage": {"replica": "rep-old"}, "services": 5}}
    publisher = publisher_of(network, writer, lambda d: d in ("pe1", "pe3"), stored)
    assert asyncio.run(publisher.publish_once()) == 1
    assert pe1.gets == ["Ethernet1.10", "Ethernet5.16"] and pe2.gets == [], "only its devices, only metered"
    ((ref, desired, base, part),) = writer.submits
    assert ref == Ref("networkdevices", "pe1") and part, "one part of the device's status, beside the rest"
    assert base == {"usage": {"replica": "rep-old"}}, "compared with the report it replaces only"
    assert desired == {
        "usage": {
            "replica": "rep-a",
            "sampledAt": "2026-03-10T12:00:00Z",
            "endpoints": [
                {"port": "Ethernet1", "vlanId": 10, "inOctets": "100", "outOctets": "200"},
                {"port": "Ethernet5", "vlanId": 16, "inOctets": "3", "outOctets": "4"},
            ],
        }
    }
    NetworkDeviceStatus.model_validate(desired)


def test_a_device_lost_while_its_counters_were_read_is_not_reported() -> None:
    owned = {"pe1"}

    class LosingSession(FakeSession):
        async def get(self, paths: list[Any], kind: str, encoding: str) -> list[Any]:
            owned.clear()  # the Lease is lost during the Get
            return await super().get(paths, kind, encoding)

    session = LosingSession("pe1", {("E1", 1): (1, 1)})
    network = FakeNetwork({(s := record("m", [("pe1", "E1", 1)])).key: s}, {"pe1": session})
    writer = FakeWriter()
    assert asyncio.run(publisher_of(network, writer, lambda d: d in owned).publish_once()) == 0
    assert session.gets == ["E1.1"] and writer.submits == []


def test_nothing_to_meter_costs_no_get_and_no_write_and_a_stale_report_is_cleared_once() -> None:
    session = FakeSession("pe1", {})
    network = FakeNetwork({(s := record("flat", [("pe1", "E1", 1)], metered=False)).key: s}, {"pe1": session})
    writer = FakeWriter()
    assert asyncio.run(publisher_of(network, writer, lambda d: True).publish_once()) == 0
    assert session.gets == [] and writer.submits == []
    stale = {"pe1": {"usage": {"replica": "rep-a", "sampledAt": "2026-03-10T12:00:00Z", "endpoints": []}}}
    assert asyncio.run(publisher_of(network, writer, lambda d: True, stale).publish_once()) == 0
    assert writer.submits == [(Ref("networkdevices", "pe1"), {"usage": None}, {"usage": stale["pe1"]["usage"]}, True)]
    writer.submits.clear()
    assert asyncio.run(publisher_of(network, writer, lambda d: False, stale).publish_once()) == 0
    assert writer.submits == [], "a device it does not drive is not its to clear"


# -- what the commerce holder takes --------------------------------------------------------------------
def report(replica: str, seconds: float, *endpoints: tuple[str, int, int, int]) -> dict[str, Any]:
    return {
        "replica": replica,
        "sampledAt": at(seconds).isoformat().replace("+00:00", "Z"),
        "endpoints": [{"port": p, "vlanId": v, "inOctets": str(i), "outOctets": str(o)} for p, v, i, o in endpoints],
    }


HOLDERS = {"pe2": "rep-b", "pe3": "rep-c", "pe4": "rep-c"}
WANTED = [("pe2", "Ethernet1", 10), ("pe3", "Ethernet1", 10), ("pe4", "Ethernet1", 10)]


@pytest.mark.parametrize(
    ("reports", "want"),
    [
        pytest.param({"pe2": report("rep-b", 10, ("Ethernet1", 10, 5, 7))}, {"pe2": (5, 7, 10)}, id="the holder's"),
        pytest.param(
            {"pe2": report("rep-b", 10, ("Ethernet1", 10, 5, 7), ("Ethernet9", 99, 1, 1), ("Ethernet1", 11, 2, 2))},
            {"pe2": (5, 7, 10)},
            id="other subscriptions' endpoints on the device are not wanted",
        ),
        pytest.param({"pe3": report("rep-old", 12, ("Ethernet1", 10, 8, 8))}, {}, id="a former owner's: ignored"),
        pytest.param({"pe3": report("", 12, ("Ethernet1", 10, 8, 8))}, {}, id="no replica named"),
        pytest.param({"pe4": {"replica": "rep-c", "sampledAt": "not a time", "endpoints": []}}, {}, id="bad time"),
        pytest.param({"pe9": report("rep-b", 10, ("Ethernet1", 10, 5, 7))}, {}, id="a device not wanted"),
        pytest.param({"pe2": None, "pe3": "junk", "pe4": {"replica": "rep-c"}}, {}, id="no report, or not one"),
        pytest.param(
            {"pe3": {**report("rep-c", 12), "endpoints": [{"port": "Ethernet1"}, "x", {"vlanId": 10}]}},
            {},
            id="malformed endpoints skipped",
        ),
        pytest.param(
            {
                "pe3": {
                    **report("rep-c", 12),
                    "endpoints": [{"port": "Ethernet1", "vlanId": 10, "inOctets": "-1", "outOctets": "1"}],
                }
            },
            {},
            id="a negative counter",
        ),
        pytest.param(
            {"pe2": report("rep-b", 10, ("Ethernet1", 10, 5, 7)), "pe3": report("rep-c", 20, ("Ethernet1", 10, 1, 2))},
            {"pe2": (5, 7, 10), "pe3": (1, 2, 20)},
            id="each device's own report",
        ),
    ],
)
def test_only_the_lease_holders_device_report_for_the_subscriptions_endpoints_counts(
    reports: dict[str, Any], want: dict[str, tuple[int, int, float]]
) -> None:
    expected = {
        f"{d}/Ethernet1/10/{direction}": Sample(n, at(t))
        for d, (i, o, t) in want.items()
        for direction, n in (("in", i), ("out", o))
    }
    assert published_samples(reports, WANTED, HOLDERS.get) == expected


def test_an_unknown_holder_is_nobodys_report_and_the_keys_are_the_holders_own() -> None:
    reports = {"pe2": report("rep-b", 10, ("Ethernet1", 10, 5, 7))}
    assert published_samples(reports, WANTED, lambda d: None) == {}
    assert counter_key("pe2", "Ethernet1", 10, "in") == "pe2/Ethernet1/10/in", "the key the holder's own reads use"


def test_a_device_report_queues_only_the_subscriptions_naming_an_endpoint_it_lists() -> None:
    marked: list[Any] = []

    class Marks:
        def mark(self, key: Any) -> None:
            marked.append(key)

        def forget(self, key: Any) -> None:
            pass

    queues = Queues(Marks(), Marks(), Marks(), Marks())  # type: ignore[arg-type]
    index = CommerceIndex(StatusWriter(None), queues)  # type: ignore[arg-type]
    for name, device, vlan in [("a", "pe2", 10), ("b", "pe2", 11), ("c", "pe3", 10)]:
        body = {
            "metadata": {"name": name, "namespace": "acme", "creationTimestamp": "2026-03-01T00:00:00Z"},
            "spec": {"endpoints": [{"device": device, "port": "Ethernet1", "vlanId": vlan}]},
        }
        index.upsert_subscription(body)
    marked.clear()
    index.observe_device_usage("pe2", report("rep-b", 10, ("Ethernet1", 10, 5, 7), ("Ethernet7", 70, 1, 1)))
    assert marked == [("acme", "a")]
    index.observe_device_usage("pe2", {"endpoints": [{"port": "Ethernet1"}], "replica": 3})  # malformed: nothing
    index.observe_device_usage("pe2", None)
    assert marked == [("acme", "a")]


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
        reports = {"pe2": report(replica, seconds, ("Ethernet1", 10, 0, octets))}
        report_of["pe2"] = replica
        for counter, sample in published_samples(reports, [("pe2", "Ethernet1", 10)], holder).items():
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


REF = Ref("networkdevices", "pe1")


@pytest.mark.parametrize("part_first", [True, False])
def test_a_queued_usage_part_and_a_whole_status_are_both_written(part_first: bool) -> None:
    async def go() -> FakeKube:
        kube = FakeKube()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "a"}, None)  # in flight, held at the gate
        await asyncio.sleep(0)
        usage = {"usage": {"replica": "r", "sampledAt": "2026-03-10T12:00:00Z", "endpoints": []}}
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
    assert kube.stored["state"] == "b" and kube.stored["usage"]["replica"] == "r"


def test_another_replicas_usage_report_is_not_a_forgery() -> None:
    async def go() -> None:
        kube = FakeKube()
        kube.gate.set()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "a"}, None)
        await writer.flush()
        other = {"state": "a", "usage": {"replica": "b"}}  # the device's former owner's report, landing late
        assert writer.forgery(REF, "99", other) == []

    asyncio.run(go())


def test_a_usage_part_on_a_stalled_service_posts_no_warning() -> None:
    """E.g. after a restart: the device was Stalled before; the first write of this run is a usage part.
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
        usage = {"usage": {"replica": "r", "sampledAt": "2026-03-10T12:00:00Z", "endpoints": []}}
        writer.submit(REF, usage, {"usage": {}}, part=True)
        await writer.flush()
        await writer.announcer.flush()  # type: ignore[union-attr]
        return kube

    kube = asyncio.run(go())
    assert len(kube.writes) == 1 and kube.events == []


# -- the wiring: a NetworkDevice's watch event hands a new report to the commerce layer --------------------
def test_a_changed_device_report_reaches_the_commerce_layer_once_and_is_read_from_the_device() -> None:
    from controller.runtime import Controller, DeviceRecord
    from controller.settings import Settings

    async def main() -> tuple[list[tuple[str, Any]], Any]:
        ctl = Controller(Settings(), kube=FakeKube())  # type: ignore[arg-type]  # never called here
        assert ctl.commerce is not None  # unsharded: it runs the commerce layer (as a commerce holder does)
        seen: list[tuple[str, Any]] = []
        ctl.commerce.observe_device_usage = lambda device, report: seen.append((device, report))  # type: ignore[method-assign]
        spec = {"address": "192.0.2.1", "credentialsSecretRef": {"name": "pe1-creds"}}

        def body(rv: str, **status: Any) -> dict[str, Any]:
            return {"metadata": {"name": "pe1", "uid": "u", "resourceVersion": rv}, "spec": spec, "status": status}

        ctl.devices["pe1"] = DeviceRecord("pe1", body("1", services=1))
        first = report("rep-b", 10, ("Ethernet1", 10, 5, 7))
        await ctl.upsert_device(body("2", services=1, usage=first))
        await ctl.upsert_device(body("3", services=2, usage=first))  # another change: the same report
        await ctl.upsert_device(body("4", services=2, usage=report("rep-b", 11, ("Ethernet1", 10, 6, 8))))
        await ctl.upsert_device(body("5", services=2))  # cleared: nothing to take
        ctx = ctl.commerce.ctx
        assert ctx.device_usage is not None and ctx.device_usage("pe1") is None and ctx.device_usage("pe9") is None
        await ctl.upsert_device(body("6", services=2, usage=first))
        return seen, ctx.device_usage("pe1")

    seen, stored = asyncio.run(main())
    assert [(d, r["sampledAt"]) for d, r in seen] == [
        ("pe1", "2026-03-10T12:00:10Z"),
        ("pe1", "2026-03-10T12:00:11Z"),
        ("pe1", "2026-03-10T12:00:10Z"),
    ]
    assert stored == report("rep-b", 10, ("Ethernet1", 10, 5, 7))

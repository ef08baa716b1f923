"""One device pass against a scripted session: what it reads, what it sends, what it concludes."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import grpc

from controller.gnmi.client import Capabilities, GnmiError, Target
from controller.intent import DeviceIntent, GPath, ServiceKey, build_tree, extract
from controller.network.leafcache import LeafCache
from controller.network.outcome import Phase
from controller.network.reconciler import NetworkReconciler
from controller.settings import Settings
from controller.statuswriter import StatusWriter
from tests.unit.intent.helpers import device_with_ports
from tests.unit.network.test_reconciler_memory import KEY, FakeKube, record

ENDPOINT = [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}]


class FakeClient:
    """Records each Set; applies its updates to the session's device (new entries, as a pass sends)."""

    def __init__(self, session: ScriptedSession, refuse: bool) -> None:
        self.sets: list[Any] = []
        self.session, self.refuse = session, refuse

    async def set(self, deletes: Any = (), replaces: Any = (), updates: Any = (), encoding: str = "JSON") -> int:
        self.sets.append((list(deletes), list(replaces), list(updates)))
        if self.refuse:
            raise GnmiError("Set", grpc.StatusCode.INVALID_ARGUMENT, "refused by the device")
        changes = [(GPath.from_proto(p), v) for p, v in updates]
        self.session.device = build_tree(changes, self.session.device)
        return 1


class ScriptedSession:
    """The device holds `device`; the subscription's cache holds `cached` (maybe less)."""

    connected = synced = True
    error = None
    capabilities: Capabilities | None = None
    encoding = "JSON"

    def __init__(self, device: dict[str, Any], cached: dict[str, Any], refuse: bool = False) -> None:
        self.name, self.target = "pe1", Target("127.0.0.1", 1, "u", "p")
        self.client = FakeClient(self, refuse)
        self.leaves = LeafCache()
        self.device, self.cached = device, cached
        self.gets: list[list[GPath]] = []

    def take_changed_paths(self) -> set[GPath]:
        return set()

    def snapshot(self, paths: list[GPath]) -> dict[str, Any]:
        return copy.deepcopy(self.cached)

    async def get_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.device)

    async def get_entries(self, paths: list[GPath]) -> dict[str, Any]:
        self.gets.append(paths)
        values = [(p, extract(self.device, p)) for p in paths]
        if any(v is None for _, v in values):
            raise GnmiError("Get", grpc.StatusCode.NOT_FOUND, "no data")
        return build_tree(values)

    async def wait_for_leaves(self, paths: list[GPath], timeout: float) -> bool:
        return True

    async def close(self) -> None:
        pass


def run_passes(session: ScriptedSession, body: Any) -> Any:
    async def main() -> Any:
        kube: Any = FakeKube()
        rec = NetworkReconciler(kube, StatusWriter(kube), Settings())
        rec.sessions["pe1"] = session  # type: ignore[assignment]
        try:
            return await body(rec)
        finally:
            await rec.close()

    return asyncio.run(main())


def test_a_port_the_subscription_never_reported_is_read_from_the_device() -> None:
    """Issue 14 defect 5: an empty cache turned a present port into PortNotFound."""
    session = ScriptedSession(device_with_ports("Ethernet1"), cached={})
    port = GPath.parse("interfaces/interface[name=Ethernet1]/config")

    async def body(rec: NetworkReconciler) -> Any:
        rec._intents["pe1"] = DeviceIntent("pe1", {})  # an earlier pass: this one is incremental
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await rec._reconcile("pe1")
        return rec._outcomes[KEY][("pe1", "Ethernet1", 100)]

    outcome = run_passes(session, body)
    assert [port] in session.gets
    assert outcome.reason != "PortNotFound" and session.client.sets, outcome
    # A port the device really lacks is still refused, after asking it.
    lacking = ScriptedSession(device_with_ports("Ethernet2"), cached={})
    assert run_passes(lacking, body).reason == "PortNotFound" and not lacking.client.sets


def test_a_refused_service_is_not_resent_until_its_spec_or_a_whole_device_pass_changes() -> None:
    """Issue 14 defect 7: the batched Set resent a refused service every few seconds."""
    session = ScriptedSession(device_with_ports("Ethernet1"), device_with_ports("Ethernet1"), refuse=True)

    async def body(rec: NetworkReconciler) -> list[int]:
        counts = []
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await rec._reconcile("pe1")  # the first pass compares the whole device
        counts.append(len(session.client.sets))
        assert rec._outcomes[KEY][("pe1", "Ethernet1", 100)].phase is Phase.FAILED
        rec.mark_service("pe1", KEY)  # e.g. a notification on its entries: an incremental pass
        await rec._reconcile("pe1")
        counts.append(len(session.client.sets))
        rec.upsert_service(record(2, endpoints=ENDPOINT, bandwidthMbps=10))  # a new spec: try it
        await rec._reconcile("pe1")
        counts.append(len(session.client.sets))
        rec.mark_dirty("pe1")  # a resync or reconnect: the device may accept it now
        await rec._reconcile("pe1")
        counts.append(len(session.client.sets))
        return counts

    assert run_passes(session, body) == [1, 1, 2, 3]


def test_a_refusal_never_says_in_sync() -> None:
    session = ScriptedSession(device_with_ports("Ethernet1"), device_with_ports("Ethernet1"), refuse=True)

    async def body(rec: NetworkReconciler) -> dict[str, Any]:
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await rec._reconcile("pe1")
        return rec.writer.latest(rec.services[KEY].ref, {})

    status = run_passes(session, body)
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conds["Ready"] == ("False", "DeviceRejected")
    assert conds["DriftDetected"] == ("Unknown", "DeviceRejected")


def test_the_owned_record_in_status_names_exactly_what_was_written() -> None:
    session = ScriptedSession(device_with_ports("Ethernet1"), device_with_ports("Ethernet1"))

    async def body(rec: NetworkReconciler) -> dict[str, Any]:
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await rec._reconcile("pe1")
        return rec.writer.latest(rec.services[KEY].ref, {})

    status = run_passes(session, body)
    (owned,) = status["owned"]
    entries = {e["path"]: e["leaves"] for e in owned["entries"]}
    sub = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"
    assert owned["device"] == "pe1" and set(entries) == {
        sub, "qos/scheduler-policies/scheduler-policy[name=Ethernet1.100]",
        "qos/interfaces/interface[interface-id=Ethernet1.100]"}
    assert "config/description" in entries[sub] and "ipv4/addresses/address[ip=192.0.2.1]/config/ip" in entries[sub]
    assert ServiceKey("ns", "svc") == KEY


def test_a_device_on_a_pre_3_openconfig_vlan_gets_the_legacy_vlan_form() -> None:
    session = ScriptedSession(device_with_ports("Ethernet1"), device_with_ports("Ethernet1"))
    session.capabilities = Capabilities("0.8.0", ["JSON"], [("openconfig-vlan", "OpenConfig working group", "2.0.0")])

    async def body(rec: NetworkReconciler) -> dict[str, Any]:
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await rec._reconcile("pe1")
        return rec.writer.latest(rec.services[KEY].ref, {})

    status = run_passes(session, body)
    path = GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]")
    sub = extract(session.device, path)
    assert sub is not None and sub["vlan"] == {"config": {"vlan-id": 100}}
    leaves = {leaf for o in status["owned"] for e in o["entries"] for leaf in e["leaves"]}
    assert "vlan/config/vlan-id" in leaves and not any("single-tagged" in leaf for leaf in leaves)

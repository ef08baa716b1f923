"""What the reconciler remembers between events: earlier renders to remove, statuses it wrote, and which
events are only echoes of its own writes. Pure bookkeeping: no devices, no API server."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.intent import GPath, ServiceKey, SetPlan, plan
from controller.intent.merge import merge
from controller.intent.ownership import entry_root, to_status
from controller.intent.render import qos_name, scheduler_policy_path
from controller.kube import Ref
from controller.network.devicepass import without_reverts
from controller.network.reconciler import NetworkReconciler, ServiceRecord, _entry_leaves
from controller.settings import Settings
from controller.statuswriter import StatusWriter
from tests.unit.intent.helpers import CREATED, make_spec

KEY = ServiceKey("ns", "svc")


def record(generation: int = 1, status: dict[str, Any] | None = None, uid: str = "u1", **spec: Any) -> ServiceRecord:
    return ServiceRecord(
        key=KEY,
        uid=uid,
        generation=generation,
        created="2024-05-01T12:00:00Z",
        resource_version=str(generation),
        spec=make_spec(**spec),
        invalid=None,
        deleting=False,
        finalizers=[],
        status=status or {},
    )


def endpoint(vlan: int, device: str = "pe1") -> list[dict[str, Any]]:
    return [{"device": device, "port": "Ethernet1", "vlanId": vlan}]


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[tuple[Ref, dict[str, Any]]] = []

    async def patch_status(self, ref: Ref, status: dict[str, Any]) -> None:
        self.patches.append((ref, status))


def reconciler() -> NetworkReconciler:
    kube: Any = FakeKube()
    return NetworkReconciler(kube, StatusWriter(kube), Settings())


def stale_paths(rec: NetworkReconciler, device: str = "pe1") -> set[str]:
    """The managed entries whose leaves wait to be removed from `device`."""
    return {
        root.to_string()
        for leaves in rec._retired.get(device, {}).values()
        for leaf in leaves
        if (root := entry_root(leaf)) is not None
    }


def run(body: Any) -> Any:
    async def main() -> Any:
        rec = reconciler()
        try:
            return body(rec)
        finally:
            await rec.close()

    return asyncio.run(main())


def test_a_changed_endpoint_leaves_its_old_entries_to_remove() -> None:
    def body(rec: NetworkReconciler) -> set[str]:
        rec.upsert_service(record(1, endpoints=endpoint(100)))
        rec.upsert_service(record(2, endpoints=endpoint(101)))
        return stale_paths(rec)

    stale = run(body)
    assert any("subinterface[index=100]" in p for p in stale)
    assert scheduler_policy_path(qos_name("Ethernet1", 100)).to_string() in stale
    assert not any("101" in p for p in stale), "the new endpoint's entries must never be removed"


def test_a_move_to_another_device_leaves_the_old_device_its_entries() -> None:
    def body(rec: NetworkReconciler) -> tuple[set[str], set[str]]:
        rec.upsert_service(record(1, endpoints=endpoint(100, "pe1")))
        rec.upsert_service(record(2, endpoints=endpoint(100, "pe2")))
        return stale_paths(rec, "pe1"), stale_paths(rec, "pe2")

    old_device, new_device = run(body)
    assert len(old_device) == 3 and not new_device


def test_after_a_restart_the_stored_status_names_what_the_old_spec_applied() -> None:
    status = {"endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "applied": True}]}

    def body(rec: NetworkReconciler) -> set[str]:
        rec.upsert_service(record(2, status=status, endpoints=endpoint(101)))
        return stale_paths(rec)

    assert any("subinterface[index=100]" in p for p in run(body))


def test_after_a_restart_the_recorded_ownership_names_exactly_what_to_remove() -> None:
    before = record(1, endpoints=[{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}])

    def body(rec: NetworkReconciler) -> set[str]:
        owned = to_status({"pe1": rec.owned_leaves(before, "pe1")})
        status = {"owned": owned, "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "applied": True}]}
        # The same endpoint without its address: only the address entry is to go, never the subinterface.
        rec.upsert_service(record(2, status=status, endpoints=endpoint(100)))
        return {p.to_string() for leaves in rec._retired["pe1"].values() for p in leaves}

    retired = run(body)
    sub = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"
    assert retired == {
        f"{sub}/ipv4/addresses/address[ip=192.0.2.1]/ip",
        f"{sub}/ipv4/addresses/address[ip=192.0.2.1]/config/ip",
        f"{sub}/ipv4/addresses/address[ip=192.0.2.1]/config/prefix-length",
    }


def test_a_recorded_vrf_leaf_means_the_controller_created_that_vrf() -> None:
    vrf = make_spec(serviceType="l3vpn", vrf="blue", endpoints=endpoint(100)).model_dump()

    def body(rec: NetworkReconciler) -> tuple[bool, bool]:
        rec._created["pe1"].add(GPath.parse("network-instances/network-instance[name=blue]"))
        owned = to_status({"pe1": rec.owned_leaves(record(1, **vrf), "pe1")})
        fresh = reconciler()
        fresh.upsert_service(record(1, status={"owned": owned}, **vrf))
        without = reconciler()
        without.upsert_service(record(1, status={"owned": owned[:0]}, **vrf))
        blue = GPath.parse("network-instances/network-instance[name=blue]")
        return blue in fresh._created["pe1"], blue in without._created["pe1"]

    assert run(body) == (True, False)


def test_an_unapplied_or_current_endpoint_in_status_is_not_stale() -> None:
    status = {
        "endpoints": [
            {"device": "pe1", "port": "Ethernet1", "vlanId": 100, "applied": False},
            {"device": "pe1", "port": "Ethernet1", "vlanId": 101, "applied": True},
        ]
    }

    def body(rec: NetworkReconciler) -> set[str]:
        rec.upsert_service(record(2, status=status, endpoints=endpoint(101)))
        return stale_paths(rec)

    assert run(body) == set()


def test_an_echo_of_our_status_write_wakes_no_device() -> None:
    def body(rec: NetworkReconciler) -> tuple[int, int]:
        marks = rec._queue.marks
        rec.upsert_service(record(1, endpoints=endpoint(100)))
        first = marks["pe1"]
        rec.upsert_service(record(1, status={"observedGeneration": 1}, endpoints=endpoint(100)))
        echo = marks["pe1"] - first
        rec.upsert_service(record(2, endpoints=endpoint(100), bandwidthMbps=200))
        return first > 0, echo > 0, marks["pe1"] - first > 0  # type: ignore[return-value]

    assert run(body) == (True, False, True)


def test_a_report_service_keeps_its_drift_but_loses_what_it_moved_away_from() -> None:
    old, new = record(1, endpoints=endpoint(100)), record(2, endpoints=endpoint(101), driftPolicy="report")
    intent, _ = merge("pe1", [_claim(new)])
    device = {
        "interfaces": {
            "interface": [
                {
                    "name": "Ethernet1",
                    "subinterfaces": {
                        "subinterface": [
                            {"index": 100, "config": {"index": 100, "description": "telco-intent ns/svc"}},
                            {"index": 101, "config": {"index": 101, "description": "changed by hand"}},
                        ]
                    },
                }
            ]
        }
    }
    full = plan(intent, device, {KEY: {leaf for e in old.rendered for leaf in _entry_leaves(e)}})
    kept = without_reverts(full, {KEY})
    assert isinstance(kept, SetPlan)
    assert [op.path.to_string() for op in kept.deletes] == [
        "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"
    ]
    assert not kept.replaces and not kept.updates, "the reported drift on index 101 is not reverted"


def test_the_latest_status_overlays_our_writes_on_a_stale_watch_copy() -> None:
    async def main() -> dict[str, Any]:
        kube: Any = FakeKube()
        writer = StatusWriter(kube)
        ref = Ref("networkservices", "svc", "ns")
        writer.submit(ref, {"observedGeneration": 2, "readySince": None}, {"observedGeneration": 1, "x": 1})
        await writer.flush()
        return writer.latest(ref, {"observedGeneration": 1, "x": 1, "readySince": "t"})

    assert asyncio.run(main()) == {"observedGeneration": 2, "x": 1}


def _claim(r: ServiceRecord) -> Any:
    from controller.intent import Claim

    return Claim(r.key, CREATED, tuple(e for e in r.rendered if e.device == "pe1"))


def test_a_status_equal_to_the_one_in_flight_is_not_written_again() -> None:
    class SlowKube(FakeKube):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def patch_status(self, ref: Ref, status: dict[str, Any]) -> None:
            await self.release.wait()
            await super().patch_status(ref, status)

    async def main() -> tuple[bool, dict[str, Any], int]:
        kube = SlowKube()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        ref = Ref("networkservices", "svc", "ns")
        writer.submit(ref, {"state": "active"}, {})
        await asyncio.sleep(0)  # the write is now in flight
        seen = writer.latest(ref, {})
        again = writer.submit(ref, {"state": "active"}, {})  # e.g. computed from a stale watch copy
        kube.release.set()
        await writer.flush()
        return again, seen, len(kube.patches)

    again, seen, patches = asyncio.run(main())
    assert seen == {"state": "active"} and not again and patches == 1


def test_the_event_body_is_made_from_the_record_and_its_sets_are_shared() -> None:
    one, two = record(generation=3), record(generation=4, uid="u2")
    body = one.body
    assert body == {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "NetworkService",
        "metadata": {
            "name": "svc",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "3",
            "generation": 3,
            "finalizers": [],
        },
    }
    body["metadata"]["finalizers"].append("x")  # a caller's copy: the record is untouched
    assert one.finalizers == [] and one.body["metadata"]["finalizers"] == []
    assert one.devices() == two.devices() == {"pe1"} and one.devices() is two.devices()
    assert one.ref is one.ref and one.ref == Ref("networkservices", "svc", "ns")

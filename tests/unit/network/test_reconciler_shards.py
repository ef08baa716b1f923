"""A service spanning devices driven by two replicas (docs/sharding.md): each reports its own endpoints,
the replica driving the first endpoint's device writes the status, and it is the status one replica
driving both devices would write."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.network.reconciler import NetworkReconciler, ServiceRecord
from controller.settings import Settings
from controller.statuswriter import StatusWriter
from tests.unit.intent.helpers import device_with_ports
from tests.unit.network.test_reconciler_memory import FakeKube, record
from tests.unit.network.test_reconciler_pass import ScriptedSession

SPAN = [
    {"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"},
    {"device": "pe2", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.2/30"},
]
HOLDERS = {"pe1": "a", "pe2": "b"}


def session(name: str) -> ScriptedSession:
    s = ScriptedSession(device_with_ports("Ethernet1"), device_with_ports("Ethernet1"))
    s.name = name
    return s


def replica(identity: str | None) -> tuple[NetworkReconciler, FakeKube]:
    """A reconciler driving both devices (None), or the devices HOLDERS gives `identity`."""
    kube: Any = FakeKube()
    rec = NetworkReconciler(kube, StatusWriter(kube), Settings())
    if identity is not None:
        rec.drives = lambda device: HOLDERS.get(device) == identity or (device == "commerce" and identity == "a")
        rec.identity = identity
        rec.holder_of = HOLDERS.get
    for device in HOLDERS:
        if rec.drives(device):
            rec.sessions[device] = session(device)  # type: ignore[assignment]
    return rec, kube


def written(kube: FakeKube) -> dict[str, Any]:
    """The status the patches leave (merge patches of top-level keys, a map merged one level down)."""
    status: dict[str, Any] = {}
    for _, patch in kube.patches:
        for key, value in patch.items():
            if key == "shards":
                status.setdefault("shards", {}).update(value)
            else:
                status[key] = value
    return status


def without_times(status: dict[str, Any]) -> dict[str, Any]:
    conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions", [])]
    # Each transition's `at` is its condition's lastTransitionTime: two runs may straddle a second.
    moves = [{k: v for k, v in t.items() if k != "at"} for t in status.get("readyTransitions", [])]
    kept = {k: v for k, v in status.items() if k not in ("readySince", "startDate")}
    return {**kept, "conditions": conds, **({"readyTransitions": moves} if "readyTransitions" in status else {})}


def again(rec: ServiceRecord, status: dict[str, Any], version: int) -> ServiceRecord:
    """The watch event of a status write: same spec, newer resourceVersion."""
    fresh = record(rec.generation, status=status, endpoints=SPAN)
    fresh.resource_version = str(version)
    return fresh


async def both_passes() -> tuple[NetworkReconciler, FakeKube, NetworkReconciler, FakeKube]:
    """Replica b's pass on pe2 (its report written), then a's pass on pe1 (before it saw the report)."""
    a, a_kube = replica("a")
    b, b_kube = replica("b")
    for rec in (a, b):
        rec.upsert_service(record(1, endpoints=SPAN))
    await b._reconcile("pe2")
    await b.writer.flush()
    await a._reconcile("pe1")
    await a.writer.flush()
    return a, a_kube, b, b_kube


def test_the_status_writer_merges_the_other_replicas_report_into_what_one_replica_would_write() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        single, single_kube = replica(None)
        single.upsert_service(record(1, endpoints=SPAN))
        for device in HOLDERS:
            await single._reconcile(device)
        await single.writer.flush()

        a, a_kube, b, b_kube = await both_passes()
        assert "shards" not in written(a_kube) and written(a_kube)["state"] != "active", "pe2 not reported yet"
        a.upsert_service(again(record(1, endpoints=SPAN), {**written(a_kube), **written(b_kube)}, 10))
        await a.writer.flush()
        for rec in (single, a, b):
            await rec.close()
        return written(single_kube), written(a_kube), written(b_kube)

    single, a, b = asyncio.run(main())
    assert set(b) == {"shards"}, "the replica driving pe2 writes only its report"
    assert list(b["shards"]) == ["pe2"] and b["shards"]["pe2"]["replica"] == "b"
    assert "shards" not in a, "the status writer never writes a report"
    assert without_times(a) == without_times(single)
    assert {o["device"] for o in a["owned"]} == {"pe1", "pe2"}


def test_a_report_from_a_replica_that_no_longer_holds_the_device_is_ignored() -> None:
    async def main() -> dict[str, Any]:
        a, a_kube, b, b_kube = await both_passes()
        report = written(b_kube)["shards"]
        report["pe2"]["replica"] = "someone-else"  # e.g. the previous holder, or a forger
        a.upsert_service(again(record(1, endpoints=SPAN), {**written(a_kube), "shards": report}, 10))
        await a.writer.flush()
        for rec in (a, b):
            await rec.close()
        return written(a_kube)

    status = asyncio.run(main())
    assert status["endpoints"][1]["applied"] is False and status["state"] != "active"

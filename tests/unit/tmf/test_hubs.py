"""The hubs' ConfigMaps shared by several replicas (fake CoreV1Api, real Hubs): a refused write is a 503
naming the facade's own permission; a delivered entry's key cannot be queued again by a late replica;
registrations made on one replica are seen by another."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from controller.tmf import hubs as hubs_module
from controller.tmf.auth import User
from controller.tmf.conventions import TmfError
from controller.tmf.events import Event
from controller.tmf.hubs import HUBS_CONFIGMAP, OUTBOX_CONFIGMAP, Hubs, _expired, delivered_at

KNOWN = {"productInventory": (frozenset({"ProductStateChangeEvent"}), frozenset({"status"}))}
OWNER = User("system:serviceaccount:p:partner", "uid-1", ("system:authenticated",), ())


class FakeCore:
    """ConfigMaps in memory with resourceVersions; a patch naming a stale resourceVersion is a 409."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {}
        self.versions: dict[str, int] = {}
        self.refuse: ApiException | None = None

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name in self.maps:
            raise ApiException(status=409, reason="AlreadyExists")
        self.maps[name], self.versions[name] = {}, 1

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        return SimpleNamespace(
            data=dict(self.maps[name]), metadata=SimpleNamespace(resource_version=str(self.versions[name]))
        )

    def patch_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        if self.refuse is not None:
            raise self.refuse
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != str(self.versions[name]):
            raise ApiException(status=409, reason="Conflict")
        for key, value in body["data"].items():
            if value is None:
                self.maps[name].pop(key, None)
            else:
                self.maps[name][key] = value
        self.versions[name] += 1


async def allow(user: User, verb: str, plural: str, namespace: str | None) -> bool:
    return True


def replica(core: FakeCore, delivers: bool) -> Hubs:
    hubs = Hubs(kubernetes.client.ApiClient(), allow, KNOWN, namespace="ns", delivers=lambda: delivers)
    hubs.core = core  # type: ignore[assignment]
    return hubs


def event(n: int) -> Event:
    resource = {"id": "acme.hq", "href": "/x", "status": "active", "@type": "Product"}
    return Event(f"ev-{n}", "productInventory", "product", "ProductStateChangeEvent", resource, "acme", "t")


@pytest.mark.parametrize(
    "refusal,words",
    [
        (ApiException(status=403, reason="Forbidden"), ["may not patch configmaps in namespace ns", HUBS_CONFIGMAP]),
        (ApiException(status=500, reason="Internal"), ["answered 500", HUBS_CONFIGMAP]),
        (ApiException(status=503, reason="Unavailable"), ["answered 503"]),
    ],
)
def test_a_refused_registration_write_is_a_503_naming_the_cause(refusal: ApiException, words: list[str]) -> None:
    async def run() -> None:
        core = FakeCore()
        hubs = replica(core, True)
        await hubs.start()
        try:
            core.refuse = refusal
            with pytest.raises(TmfError) as raised:
                await hubs.register("productInventory", "http://127.0.0.1:1/cb", "", OWNER)
            assert raised.value.status == 503
            assert all(w in raised.value.message for w in words), raised.value.message
            core.refuse = None
            listener = await hubs.register("productInventory", "http://127.0.0.1:1/cb", "", OWNER)
            core.refuse = refusal
            with pytest.raises(TmfError) as raised:
                await hubs.unregister(listener.id)
            assert raised.value.status == 503
            core.refuse = None
        finally:
            await hubs.close()

    asyncio.run(run())


def test_a_registration_on_one_replica_is_known_to_the_other() -> None:
    async def run() -> None:
        core = FakeCore()
        a, b = replica(core, False), replica(core, True)
        await a.start()
        await b.start()
        try:
            listener = await a.register("productInventory", "http://127.0.0.1:1/cb", "", OWNER)
            assert (await b.listener(listener.id)) is not None
            await b.unregister(listener.id)
            assert (await a.listener(listener.id)) is None
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_a_delivered_key_is_not_queued_again_by_a_late_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        core = FakeCore()
        producer, deliverer = replica(core, False), replica(core, True)
        for hubs in (producer, deliverer):
            await hubs.start()
        try:
            listener = await deliverer.register("productInventory", "http://127.0.0.1:1/cb", "", OWNER)
            await producer.read_listeners()
            deliverer.publish([event(1)])
            key = f"ev-1.{listener.id}"
            for _ in range(100):
                if key in deliverer.pending:
                    break
                await asyncio.sleep(0.02)
            assert key in deliverer.pending and producer.pending == {}, "only the deliverer holds what to send"
            deliverer._done(deliverer.pending[key])  # as an acknowledged send does
            await deliverer._flush()
            assert delivered_at(core.maps[OUTBOX_CONFIGMAP][key]) is not None, "a tombstone, not a deletion"
            producer.publish([event(1)])  # the same change seen late by the other replica
            await asyncio.sleep(0.3)
            await deliverer._sync_outbox({})
            assert delivered_at(core.maps[OUTBOX_CONFIGMAP][key]) is not None
            assert key not in deliverer.pending, "a late producer cannot queue a delivered key again"
            monkeypatch.setattr(hubs_module, "TOMBSTONE_SECONDS", -1.0)
            await deliverer._sync_outbox({})
            assert key not in core.maps[OUTBOX_CONFIGMAP], "old tombstones are removed by the deliverer"
        finally:
            for hubs in (producer, deliverer):
                await hubs.close()

    asyncio.run(run())


def test_tombstones_and_entries_are_told_apart() -> None:
    assert delivered_at(json.dumps({"delivered": 12.5})) == 12.5
    assert delivered_at(json.dumps({"listener": "x", "url": "u", "payload": {}, "attempts": 0})) is None
    assert delivered_at("not json") is None


def test_old_tombstones_and_those_beyond_the_cap_are_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = json.dumps({"listener": "x", "url": "u", "payload": {}, "attempts": 0})
    held = {"old": json.dumps({"delivered": 100.0}), "new": json.dumps({"delivered": 990.0}), "queued": entry}
    assert _expired(held, 1000.0) == ["old"], "older than TOMBSTONE_SECONDS; an undelivered entry stays"
    monkeypatch.setattr(hubs_module, "MAX_TOMBSTONES", 1)
    held["newer"] = json.dumps({"delivered": 995.0})
    assert sorted(_expired(held, 1000.0)) == ["new", "old"], "the oldest go first beyond the cap"


def test_inside_the_controller_the_replica_running_commerce_delivers(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller import __main__ as cli
    from controller.handlers import lifecycle
    from controller.sharding import COMMERCE

    class Controller:
        def __init__(self, units: set[str]) -> None:
            self.units = units

        def drives(self, unit: str) -> bool:
            return unit in self.units

    cases = [
        (None, False),  # before Kopf's startup handler made the Replica
        (SimpleNamespace(controller=None), False),  # a standby peer
        (SimpleNamespace(controller=Controller({"dev1"})), False),  # a shard without the commerce unit
        (SimpleNamespace(controller=Controller({COMMERCE})), True),  # the commerce holder (or the only one)
    ]
    for replica, expected in cases:
        monkeypatch.setattr(lifecycle, "REPLICA", replica)
        assert cli._delivers_hub_events() is expected, replica

"""A replica taking devices over (issue 16): what a taken device's start and the list of NetworkServices
wait for. No timing here: each test blocks one API call and looks at what went on meanwhile."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from controller.kube import FINALIZER, Kube, Ref
from controller.runtime import Controller
from controller.settings import Settings


def service(name: str, device: str, finalized: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "acme",
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "finalizers": [FINALIZER] if finalized else [],
        },
        "spec": {
            "serviceType": "internetAccess",
            "bandwidthMbps": 100,
            "endpoints": [{"device": device, "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}],
        },
    }


class Shards:
    """The coordinator as the controller asks it: these units are held, the fence is valid."""

    def __init__(self, held: set[str]) -> None:
        self.held = dict.fromkeys(held, 1)
        self.identity = "r1"

    def drives(self, unit: str) -> bool:
        return unit in self.held

    def keeps(self, unit: str) -> bool:
        return unit in self.held

    def holder_of(self, unit: str) -> str | None:
        return self.identity if unit in self.held else None

    def poke(self) -> None:
        pass

    async def close(self) -> None:
        pass


class FakeKube:
    """Finalizer writes wait until `release` is set; every list call is counted (and can be held too)."""

    def __init__(self, services: list[dict[str, Any]]) -> None:
        self.services = services
        self.release = asyncio.Event()
        self.writing = asyncio.Event()  # a finalizer write began
        self.listing = asyncio.Event()  # a list began
        self.list_release = asyncio.Event()
        self.list_release.set()
        self.lists = 0
        self.finalized: list[str] = []

    async def set_finalizers(
        self, ref: Ref, finalizers: list[str], resource_version: str, urgent: bool = False
    ) -> dict[str, Any]:
        self.writing.set()
        await self.release.wait()
        body = next(s for s in self.services if s["metadata"]["name"] == ref.name)
        self.finalized.append(ref.name)
        return {**body, "metadata": {**body["metadata"], "finalizers": finalizers, "resourceVersion": "2"}}

    async def list_all(self, plural: str, timeout: float | None = None, urgent: bool = False) -> list[dict[str, Any]]:
        self.lists += 1
        self.listing.set()
        await self.list_release.wait()
        return list(self.services)

    async def get(self, ref: Ref) -> dict[str, Any]:
        await asyncio.Event().wait()  # whether a NetworkDevice exists: never answered here
        raise AssertionError

    async def patch_status(self, ref: Ref, status: dict[str, Any], resource_version: str | None = None) -> Any:
        return {"metadata": {"resourceVersion": "3"}, "status": status}

    def close(self) -> None:
        pass


def controller(kube: FakeKube, held: set[str]) -> Controller:
    ctl = Controller(Settings(), kube=kube)  # type: ignore[arg-type]
    ctl.shards = Shards(held)  # type: ignore[assignment]
    ctl.commerce = None
    return ctl


def test_a_taken_devices_start_does_not_wait_for_the_finalizers_of_its_services() -> None:
    """The service created on pe1 while its owner was dead waits for its finalizer from the new owner.
    That write is made beside pe1's start, not in it: a start holds one of the coordinator's few start
    slots, and in a failover the lost replica's last devices waited for slots held by such writes."""

    async def main() -> None:
        kube = FakeKube([service("late", "pe1", finalized=False)])
        kube.list_release.clear()  # the start's list of every NetworkService stays under way
        ctl = controller(kube, {"pe1"})
        # Seen while another replica held pe1 (here: before this one did): kept for its writer-to-be.
        ctl.shards.held.clear()  # type: ignore[union-attr]
        await ctl.upsert_service(kube.services[0])
        assert kube.finalized == [] and ctl._unfinalized
        ctl.shards.held["pe1"] = 1  # type: ignore[union-attr]

        start = asyncio.create_task(ctl._gain("pe1", 1))
        await kube.writing.wait()  # the finalizer write is under way, and held there
        assert start.done(), "the start waited for a finalizer write"
        start.result()
        kube.release.set()
        for tasks in list(ctl._taking_up.values()):
            await asyncio.gather(*tasks)
        assert kube.finalized == ["late"]
        assert [k.name for k in ctl.network.services] == ["late"]  # the finalized echo was taken up
        await ctl.close()

    asyncio.run(main())


def test_one_list_of_services_serves_every_device_taken_before_it_began() -> None:
    """Devices taken in one tick start a few at a time; a start that comes after the list was sent asks
    for no second list of every NetworkService, as its services are in the first (or kept from events)."""

    async def main() -> None:
        kube = FakeKube([service("a", "pe1", finalized=True), service("b", "pe2", finalized=True)])
        kube.list_release.clear()
        ctl = controller(kube, {"pe1", "pe2"})  # both Leases taken in the same tick
        ctl._relist_soon("pe1")  # the first start
        await kube.listing.wait()
        ctl._relist_soon("pe2")  # a start that waited for a slot
        kube.list_release.set()
        assert ctl._relist is not None
        await ctl._relist
        assert kube.lists == 1
        assert {k.name for k in ctl.network.services} == {"a", "b"}

        await ctl._lose("pe2")  # given up and taken again later: its services come from a new list
        ctl.shards.held["pe2"] = 2  # type: ignore[union-attr]
        ctl._relist_soon("pe2")
        await ctl._relist
        assert kube.lists == 2

        # Not held for a moment without being stopped (a start the fence refused): an event of one of its
        # services dropped meanwhile means the list no longer covers it.
        del ctl.shards.held["pe2"]  # type: ignore[union-attr]
        await ctl.upsert_service(service("c", "pe2", finalized=True))
        assert "c" not in {k.name for k in ctl.network.services}
        ctl.shards.held["pe2"] = 2  # type: ignore[union-attr]
        ctl._relist_soon("pe2")
        await ctl._relist
        assert kube.lists == 3
        await ctl.close()

    asyncio.run(main())


def test_the_listed_services_that_need_no_write_are_taken_up_before_those_that_do() -> None:
    """In the list, a service still without our finalizer needs a write before it can be driven; the
    finalized ones after it in the list must not wait for that write."""

    async def main() -> None:
        kube = FakeKube([service("a-late", "pe1", finalized=False), service("b-old", "pe1", finalized=True)])
        ctl = controller(kube, {"pe1"})
        ctl._relist_soon("pe1")
        await kube.writing.wait()  # a-late's finalizer write is under way, and held there
        assert [k.name for k in ctl.network.services] == ["b-old"]
        kube.release.set()
        assert ctl._relist is not None
        await ctl._relist
        assert {k.name for k in ctl.network.services} == {"a-late", "b-old"}
        await ctl.close()

    asyncio.run(main())


class Client:
    def close(self) -> None:
        pass


def test_a_secret_read_is_let_in_before_queued_writes() -> None:
    """Kube calls wait for one of its workers; a Secret read (a device's session waits for it) goes
    before the status writes queued ahead of it, which otherwise delayed a taken device's start."""

    async def main() -> list[str]:
        kube = Kube(api_client=Client(), workers=1)  # type: ignore[arg-type]
        order: list[str] = []
        gate = threading.Event()

        def patch(*args: Any) -> dict[str, Any]:
            if not order:
                gate.wait(10)  # the first write holds the only worker until the others are queued
            order.append(f"write {args[-2]}")
            return {}

        def core(method: str, path: str, body: Any = None) -> dict[str, Any]:
            order.append("secret")
            return {"data": {}}

        kube.custom.patch_namespaced_custom_object_status = patch  # type: ignore[method-assign,assignment]
        kube._core = core  # type: ignore[method-assign]
        writes = [asyncio.create_task(kube.patch_status(Ref("networkservices", f"s{i}", "acme"), {})) for i in range(3)]
        await asyncio.sleep(0)  # the three writes are waiting (one of them holding the worker)
        read = asyncio.create_task(kube.read_secret("telco-system", "creds"))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*writes, read)
        kube.close()
        return order

    assert asyncio.run(main()) == ["write s0", "secret", "write s1", "write s2"]

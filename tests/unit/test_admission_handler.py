"""The webhook's thin handler: what it reads, and that a read it cannot make refuses (fails closed)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from controller.billing.clock import OffsetClock
from controller.handlers.admission import READ_TIMEOUT_SECONDS, Admission
from tests.unit.test_admission import device, endpoint, service, subscription

EARLY = "2027-01-01T00:00:00Z"


class FakeKube:
    def __init__(self, objects: dict[str, list[dict[str, Any]]], fail: bool = False) -> None:
        self.objects = objects
        self.fail = fail
        self.calls: list[tuple[str, str | None, float | None]] = []

    async def list_all(self, plural: str, timeout: float | None = None) -> list[dict[str, Any]]:
        self.calls.append((plural, None, timeout))
        if self.fail:
            raise ConnectionError("API server unreachable")
        return list(self.objects.get(plural, []))

    async def list_in(self, plural: str, namespace: str, timeout: float | None = None) -> list[dict[str, Any]]:
        self.calls.append((plural, namespace, timeout))
        return [o for o in self.objects.get(plural, []) if o["metadata"].get("namespace") == namespace]


def judge(kube: FakeKube, plural: str, new: dict, old: dict | None = None, namespaces: list[str] | None = None) -> None:
    checker = Admission(kube, OffsetClock(0.0), namespaces, cache=False)  # type: ignore[arg-type]
    asyncio.run(checker.judge(plural, "UPDATE" if old else "CREATE", new, old))


def test_a_refusal_names_the_field_with_422() -> None:
    kube = FakeKube({"networkdevices": [device("pe1")]})
    with pytest.raises(kopf.AdmissionError) as caught:
        judge(kube, "networkservices", service(endpoints=[{"device": "ghost", "port": "Ethernet1", "vlanId": 1}]))
    assert caught.value.code == 422
    assert str(caught.value).startswith("spec.endpoints[0].device: NetworkDevice ghost does not exist")
    assert {c[0] for c in kube.calls} == {"subscriptions", "networkservices", "networkdevices"}
    assert all(c[2] == READ_TIMEOUT_SECONDS for c in kube.calls)


def test_a_read_that_fails_refuses_with_503_and_says_so() -> None:
    with pytest.raises(kopf.AdmissionError) as caught:
        judge(FakeKube({}, fail=True), "subscriptions", subscription())
    assert caught.value.code == 503
    assert "could not read productofferings, subscriptions" in str(caught.value) and "try again" in str(caught.value)


def test_a_metadata_only_update_reads_nothing() -> None:
    kube = FakeKube({}, fail=True)
    old = subscription(created="2027-01-01T00:00:00Z")
    new = {**old, "metadata": {**old["metadata"], "labels": {"tier": "gold"}}}
    judge(kube, "subscriptions", new, old)
    assert kube.calls == []


def test_a_namespaced_controller_reads_namespaced_kinds_in_its_namespaces_only() -> None:
    other = service("elsewhere", "beta", "2020-01-01T00:00:00Z")
    kube = FakeKube({"networkdevices": [device("pe1")], "networkservices": [other]})
    judge(kube, "networkservices", service(), namespaces=["acme"])  # beta's holder is not this shard's
    assert ("networkservices", "acme", READ_TIMEOUT_SECONDS) in kube.calls
    assert ("networkdevices", None, READ_TIMEOUT_SECONDS) in kube.calls  # cluster-scoped: cluster-wide
    with pytest.raises(kopf.AdmissionError, match="held by NetworkService beta/elsewhere"):
        judge(kube, "networkservices", service())


def test_concurrent_requests_share_a_list_that_started_after_they_arrived() -> None:
    """A burst of creates: one list per plural at a time, each serving every request that arrived before it
    started; a request never takes a list already under way (it might miss an object admitted just before)."""
    from controller.handlers.admission import SharedLists

    async def main() -> None:
        lists: SharedLists[list[dict[str, Any]]] = SharedLists()
        gate = asyncio.Event()
        made: list[int] = []

        async def fetch() -> list[dict[str, Any]]:
            made.append(len(made))
            n = len(made)
            await gate.wait()
            return [{"list": n}]

        first = asyncio.ensure_future(lists.fresh("networkservices", fetch))
        await asyncio.sleep(0)  # the first list is under way
        later = [asyncio.ensure_future(lists.fresh("networkservices", fetch)) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert lists.started == 1, "the later requests wait for a list of their own"
        gate.set()
        assert await first == [{"list": 1}]
        assert [await f for f in later] == [[{"list": 2}]] * 5, "one list, started after all five arrived"
        assert lists.started == 2

    asyncio.run(main())


def test_a_request_that_gives_up_does_not_cancel_the_list_others_wait_for() -> None:
    from controller.handlers.admission import SharedLists

    async def main() -> None:
        lists: SharedLists[list[dict[str, Any]]] = SharedLists()
        gate = asyncio.Event()

        async def fetch() -> list[dict[str, Any]]:
            await gate.wait()
            return []

        impatient = asyncio.ensure_future(asyncio.wait_for(lists.fresh("subscriptions", fetch), 0.01))
        patient = asyncio.ensure_future(lists.fresh("subscriptions", fetch))
        with pytest.raises(TimeoutError):
            await impatient
        gate.set()
        assert await patient == []

    asyncio.run(main())


# --- the watch-fed cache (KindWatch): the rules of handlers/admission.py's _fresh ------------------------


class FeedKube:
    """list_page and watch as the API server answers them, from a list the test edits and events it feeds."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], version: int = 10) -> None:
        self.objects = objects
        self.version = version  # the collection's resourceVersion a list answers
        self.feeds: dict[str, asyncio.Queue[Any]] = {}
        self.watched: list[tuple[str, str]] = []  # (plural, from resourceVersion)
        self.full_lists: list[str] = []
        self.barriers: list[str] = []  # limit=1 lists: a round's barrier
        self.hold: asyncio.Event | None = None  # when set, full lists wait for it (a list under way)

    async def list_page(
        self, plural: str, namespace: str | None, timeout: float, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        if limit is None:
            self.full_lists.append(plural)
            if self.hold is not None:
                await self.hold.wait()
        else:
            self.barriers.append(plural)
        items = [
            o for o in self.objects.get(plural, []) if namespace is None or o["metadata"].get("namespace") == namespace
        ]
        return (items[:limit] if limit else items), str(self.version)

    async def watch(self, plural: str, namespace: str | None, resource_version: str, timeout: float) -> Any:
        self.watched.append((plural, resource_version))
        feed = self.feeds.setdefault(plural, asyncio.Queue())
        while True:
            item = await feed.get()
            if isinstance(item, BaseException):
                raise item
            yield item


def _event(kind: str, obj: dict[str, Any], version: int) -> dict[str, Any]:
    obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(version)}}
    return {"type": kind, "object": obj}


def _bookmark(version: int) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(version)}}}


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_watch_applies_events_after_its_list_and_skips_those_the_list_already_holds() -> None:
    from controller.admission import Store
    from controller.handlers.admission import KindWatch

    async def main() -> None:
        kube = FeedKube({"networkservices": [_event("ADDED", service("a", "beta", EARLY), 7)["object"]]})
        store = Store("networkservices")
        watch = KindWatch(kube, "networkservices", None, store)  # type: ignore[arg-type]
        watch.start()
        await _settle()
        assert watch.synced and watch.rv == 10 and [o["metadata"]["name"] for o in store] == ["a"]
        assert kube.watched == [("networkservices", "10")]
        feed = kube.feeds["networkservices"]
        feed.put_nowait(_event("DELETED", service("a", "beta", EARLY), 9))  # before the list: already in it
        feed.put_nowait(_event("ADDED", service("b", "beta", EARLY), 11))
        feed.put_nowait(_bookmark(15))
        await _settle()
        assert [o["metadata"]["name"] for o in store] == ["a", "b"] and watch.rv == 15
        feed.put_nowait(_event("DELETED", service("a", "beta", EARLY), 16))
        await _settle()
        assert [o["metadata"]["name"] for o in store] == ["b"]
        await watch.stop()

    asyncio.run(main())


def test_a_watch_that_is_gone_lists_again_and_watches_from_the_new_list() -> None:
    from controller.admission import Store
    from controller.handlers.admission import KindWatch
    from controller.sharding import Gone

    async def main() -> None:
        kube = FeedKube({"subscriptions": [subscription("a", created=EARLY)]})
        store = Store("subscriptions")
        watch = KindWatch(kube, "subscriptions", None, store)  # type: ignore[arg-type]
        watch.start()
        await _settle()
        kube.objects["subscriptions"] = [subscription("b", created=EARLY)]  # what changed while it was away
        kube.version = 40
        kube.feeds["subscriptions"].put_nowait(Gone("too old resource version"))
        await _settle()
        assert watch.gone == 1 and watch.lists == 2 and watch.rv == 40
        assert [o["metadata"]["name"] for o in store] == ["b"]
        assert kube.watched == [("subscriptions", "10"), ("subscriptions", "40")]
        await watch.stop()

    asyncio.run(main())


def test_a_round_waits_for_the_watch_to_reach_its_barrier_or_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """The barrier is the collection's resourceVersion read after the request arrived: an event at or past
    it shows the Store holds everything committed before; without one in time, the kind is listed."""
    from controller.handlers import admission as handler

    monkeypatch.setattr(handler, "DIRECT_LIST_OBJECTS", -1)  # every kind large: the barrier path
    behind, services_behind = _lists("subscriptions", "behind"), _lists("networkservices", "behind")

    async def main() -> None:
        kube = FeedKube({"networkdevices": [device("pe1")]})
        checker = Admission(kube, OffsetClock(0.0))  # type: ignore[arg-type]
        await checker.judge("networkservices", "CREATE", service("first"), None)
        initial = list(kube.full_lists)
        assert sorted(initial) == ["networkdevices", "networkservices", "subscriptions"]
        kube.version = 20  # something was committed since, of some kind
        waiting = asyncio.ensure_future(checker.judge("networkservices", "CREATE", service("second"), None))
        await asyncio.sleep(0.05)
        held = _event("ADDED", service("holder", "beta", EARLY), 20)
        kube.feeds["networkservices"].put_nowait(held)  # the watch reaches 20: no list for services
        kube.objects["networkservices"] = [held["object"]]  # (as a list would now answer)
        with pytest.raises(kopf.AdmissionError, match="held by NetworkService beta/holder"):
            await waiting
        relisted = kube.full_lists[len(initial) :]
        assert sorted(relisted) == ["networkdevices", "subscriptions"], "kinds the watch did not reach are listed"
        assert _lists("subscriptions", "behind") - behind == 1
        assert _lists("networkservices", "behind") == services_behind, "reached by the watch: not listed"
        await checker.close()

    asyncio.run(main())
    assert handler.CATCH_UP_SECONDS < READ_TIMEOUT_SECONDS



def _lists(kind: str, reason: str) -> float:
    """telco_admission_lists_total for one kind and reason, as Prometheus would scrape it."""
    from controller.metrics import REGISTRY

    return REGISTRY.get_sample_value("telco_admission_lists_total", {"kind": kind, "reason": reason}) or 0.0


def test_a_small_kind_is_listed_for_each_round_without_a_barrier() -> None:
    """A kind of at most DIRECT_LIST_OBJECTS objects is listed anew for each round (no limit=1 barrier,
    no wait for its watch): what was committed before the request, with no watch event yet, is seen."""
    from controller.handlers import admission as handler

    small = _lists("networkdevices", "small")

    async def main() -> None:
        kube = FeedKube({"networkdevices": [device("pe1")]})
        checker = Admission(kube, OffsetClock(0.0))  # type: ignore[arg-type]
        checker.start()
        await checker.ready()
        before = list(kube.full_lists)
        await checker.judge("networkservices", "CREATE", service("first"), None)
        assert kube.barriers == [], "small kinds need no barrier"
        assert sorted(kube.full_lists[len(before) :]) == ["networkdevices", "networkservices", "subscriptions"]
        held = _event("ADDED", service("holder", "beta", EARLY), 11)["object"]
        kube.objects["networkservices"] = [held]  # committed, its event not delivered yet
        kube.version = 11
        with pytest.raises(kopf.AdmissionError, match="held by NetworkService beta/holder"):
            await checker.judge("networkservices", "CREATE", service("second"), None)
        await checker.close()

    asyncio.run(main())
    assert _lists("networkdevices", "small") - small == 2
    assert handler.DIRECT_LIST_OBJECTS > 0


def test_requests_share_a_small_kinds_next_list_never_one_already_under_way() -> None:
    """Requests that arrive while a small kind's list is under way wait for the next one, which serves
    them all: one list per round, and never a list that started before a request arrived."""

    async def main() -> None:
        kube = FeedKube({"networkdevices": [device("pe1")]})
        checker = Admission(kube, OffsetClock(0.0))  # type: ignore[arg-type]
        checker.start()
        await checker.ready()
        kube.hold = asyncio.Event()
        admitted = device("pe2", address="10.0.0.2")
        first = asyncio.ensure_future(checker.judge("networkdevices", "CREATE", admitted, None))
        await _settle()
        assert kube.full_lists[-1:] == ["networkdevices"], "the first round's list is under way"
        under_way = len(kube.full_lists)
        # pe3 is committed now: the list under way may not show it, the next one must
        kube.objects["networkdevices"] = [device("pe1"), device("pe3", address="10.0.0.3")]
        late = [
            asyncio.ensure_future(checker.judge("networkdevices", "CREATE", device("pe4", address="10.0.0.3"), None))
            for _ in range(3)
        ]
        await _settle()
        assert len(kube.full_lists) == under_way, "nobody takes a list under way; the next waits for it"
        kube.hold.set()
        await first
        outcomes = await asyncio.gather(*late, return_exceptions=True)
        assert len(kube.full_lists) == under_way + 1, "one list for the three late requests"
        assert kube.barriers == []
        assert all(isinstance(o, kopf.AdmissionError) for o in outcomes), outcomes
        await checker.close()

    asyncio.run(main())


def test_a_small_kind_being_written_keeps_the_barrier() -> None:
    """BUSY_EVENTS changes within BUSY_SECONDS: the kind's own events will likely end the wait, so a
    round takes the barrier for it instead of listing it; the quiet kinds of the round are listed."""
    from controller.handlers import admission as handler

    async def main() -> None:
        kube = FeedKube({"networkdevices": [device("pe1")]})
        checker = Admission(kube, OffsetClock(0.0))  # type: ignore[arg-type]
        checker.start()
        await checker.ready()
        feed = kube.feeds["networkservices"]
        for i in range(handler.BUSY_EVENTS):
            feed.put_nowait(_event("ADDED", service(f"s{i}", "beta", EARLY, bandwidthMbps=10 + i), 11 + i))
        await _settle()
        assert checker.watches["networkservices"][0].busy()
        assert not checker.watches["networkdevices"][0].busy()
        before = list(kube.full_lists)
        kube.version = 10 + handler.BUSY_EVENTS  # the watch has delivered everything up to it
        free = service("new", "other", EARLY, endpoints=[endpoint(vlan=999, ip="198.51.100.1/30")])
        await checker.judge("networkservices", "CREATE", free, None)
        assert kube.barriers == ["networkservices"], "the busy kind takes the barrier"
        assert sorted(kube.full_lists[len(before) :]) == ["networkdevices", "subscriptions"]
        await checker.close()

    asyncio.run(main())

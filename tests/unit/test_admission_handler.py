"""The webhook's thin handler: what it reads, and that a read it cannot make refuses (fails closed)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from controller.billing.clock import OffsetClock
from controller.handlers.admission import READ_TIMEOUT_SECONDS, Admission
from tests.unit.test_admission import device, service, subscription


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
    checker = Admission(kube, OffsetClock(0.0), namespaces)  # type: ignore[arg-type]
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

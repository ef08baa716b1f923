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

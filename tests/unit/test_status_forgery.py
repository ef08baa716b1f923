"""Status is the controller's: the status writer tells its own writes from someone else's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.kube import Ref
from controller.statuswriter import StatusWriter, changed_keys, newer, with_removals

REF = Ref("networkservices", "svc", "acme")


@pytest.mark.parametrize(
    ("desired", "stored", "expected"),
    [
        ({"a": 1}, None, {"a": 1}),
        ({"a": 1}, {"a": 2, "b": 3}, {"a": 1, "b": None}),
        ({"billing": {"x": 1}}, {"billing": {"x": 2, "y": 3}}, {"billing": {"x": 1, "y": None}}),
        ({"list": [1]}, {"list": [1, 2]}, {"list": [1]}),  # a merge patch replaces lists whole
    ],
)
def test_with_removals_undoes_every_extra_key(
    desired: dict[str, Any], stored: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    assert with_removals(desired, stored) == expected


@pytest.mark.parametrize(
    ("rv", "than", "expected"),
    [("11", "10", True), ("10", "10", False), ("9", "10", False), ("abc", "10", False), ("11", "", False)],
)
def test_newer_compares_resource_versions_as_integers_only(rv: str, than: str, expected: bool) -> None:
    assert newer(rv, than) is expected


def test_changed_keys_ignores_nulls_and_names_each_difference() -> None:
    ours = {"state": "pending", "conditions": [{"type": "Ready", "status": "False"}], "gone": None}
    assert changed_keys({"state": "pending", "conditions": [{"type": "Ready", "status": "False"}]}, ours) == []
    forged = {"state": "active", "conditions": [{"type": "Ready", "status": "True"}], "extra": 1}
    assert changed_keys(forged, ours) == ["conditions", "extra", "state"]


class FakeKube:
    def __init__(self) -> None:
        self.rv = 10
        self.writes: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.stored: dict[str, Any] = {}

    async def patch_status(self, ref: Ref, status: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.writes.append(status)
        self.stored = {k: v for k, v in {**self.stored, **status}.items() if v is not None}
        return {"metadata": {"resourceVersion": str(self.rv)}, "status": dict(self.stored)}

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def test_a_forged_copy_is_found_reported_and_rewritten_and_our_echo_is_not() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        ours = {"state": "pending", "ready": "False"}
        writer.submit(REF, ours, None)
        await writer.flush()
        assert writer.forgery(REF, "11", dict(ours)) == []  # the echo of our write
        assert writer.forgery(REF, "10", {"ready": "True"}) == []  # an older copy
        assert writer.forgery(REF, "12", dict(ours)) == []  # e.g. a spec change: status untouched
        forged = {"state": "pending", "ready": "True", "extra": "x"}
        assert writer.forgery(REF, "13", forged) == ["extra", "ready"]
        # Without distrust the overlay of our last write hides the forgery: no write.
        assert writer.submit(REF, ours, forged) is False
        writer.report_forgery({"kind": "NetworkService", "metadata": {"name": "svc", "namespace": "acme"}}, ["ready"])
        writer.distrust(REF, forged)
        assert writer.submit(REF, ours, forged) is True
        await writer.flush()
        assert kube.writes[-1] == {"state": "pending", "ready": "False", "extra": None}
        assert kube.events == [("Warning", "StatusForged")]
        assert writer.ours(REF) == ours

    asyncio.run(scenario())


def test_a_write_under_way_explains_its_own_early_watch_event() -> None:
    writer = StatusWriter(FakeKube())  # type: ignore[arg-type]
    writer.landed(REF, {"metadata": {"resourceVersion": "5"}, "status": {"state": "pending"}})
    writer.writing(REF, {"state": "active"})
    assert writer.forgery(REF, "6", {"state": "active"}) == []  # arrives before the write returns
    assert writer.forgery(REF, "6", {"state": "terminated"}) == ["state"]
    writer.landed(REF, None)  # the write failed
    assert writer.forgery(REF, "6", {"state": "active"}) == ["state"]


def test_nothing_is_judged_before_this_run_wrote() -> None:
    writer = StatusWriter(FakeKube())  # type: ignore[arg-type]
    assert writer.forgery(REF, "99", {"state": "active"}) == []

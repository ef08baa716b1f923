"""Status is the controller's: the status writer tells its own writes from someone else's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.kube import Conflict, Ref
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


class Throttled(Exception):
    """What the kubernetes client raises for an HTTP error (it carries the status code)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FlakyKube(FakeKube):
    """Fails the first `failures` status writes with HTTP `status`."""

    def __init__(self, failures: int, status: int) -> None:
        super().__init__()
        self.failures, self.status, self.attempts = failures, status, 0

    async def patch_status(self, ref: Ref, status: dict[str, Any]) -> dict[str, Any]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise Throttled(self.status)
        return await super().patch_status(ref, status)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_throttled_or_failed_write_is_retried_until_it_lands(status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.statuswriter.RETRY_FIRST_SECONDS", 0.01)

    async def go() -> FlakyKube:
        kube = FlakyKube(failures=3, status=status)
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        assert writer.submit(REF, {"state": "active"}, {"state": "pending"})
        await writer.flush()
        return kube

    kube = asyncio.run(go())
    assert kube.attempts == 4 and kube.stored == {"state": "active"}


def test_a_newer_status_queued_during_a_failed_write_wins_and_is_not_stranded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.statuswriter.RETRY_FIRST_SECONDS", 0.05)

    async def go() -> tuple[FlakyKube, bool]:
        kube = FlakyKube(failures=1, status=429)
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "connecting"}, None)
        await asyncio.sleep(0.01)  # the first write failed; its retry waits
        writer.submit(REF, {"state": "ready"}, None)
        await writer.flush()
        # the same desire again: already stored, nothing to write (no stranded pending entry hides it)
        again = writer.submit(REF, {"state": "ready"}, dict(kube.stored))
        return kube, again

    kube, again = asyncio.run(go())
    assert kube.writes == [{"state": "ready"}] and kube.stored == {"state": "ready"} and again is False


def test_a_refused_write_is_not_retried_but_a_later_desire_is_written() -> None:
    async def go() -> FlakyKube:
        kube = FlakyKube(failures=1, status=422)
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "bad"}, None)
        await writer.flush()
        writer.submit(REF, {"state": "good"}, None)
        await writer.flush()
        return kube

    kube = asyncio.run(go())
    assert kube.attempts == 2 and kube.writes == [{"state": "good"}]


def test_one_copy_of_each_status_what_was_written_what_landed_and_its_echo() -> None:
    async def scenario() -> None:
        writer = StatusWriter(FakeKube())  # type: ignore[arg-type]
        ours = {"state": "pending", "ready": "False"}
        writer.submit(REF, ours, None)
        await writer.flush()
        echo = dict(ours)  # the watch event's own copy, equal to what landed
        kept = writer.shared(REF, echo)
        assert kept == echo and kept is writer.shared(REF, dict(ours)), "every equal copy becomes one"
        assert kept is writer._written[REF], "what landed and what was written are one copy (the compact one)"
        other = {"state": "active"}
        # A status this writer did not leave is kept, as a compact copy (tests/unit/test_status_compact.py).
        assert writer.shared(REF, other) == other and writer.shared(REF, other) is not ours
        assert writer.shared(Ref("networkservices", "x", "acme"), echo) == echo
        assert writer.ours(REF) == ours and writer.ours(REF) is not ours, "callers get a copy to change"

    asyncio.run(scenario())


class CheckedKube(FakeKube):
    """resourceVersion-checked writes; `fail` is raised after the write is stored (no answer) or before."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: BaseException | None = None
        self.stores_before_failing = True

    async def patch_status(
        self, ref: Ref, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        fail, self.fail = self.fail, None
        if fail is not None and not self.stores_before_failing:
            raise fail
        stored = await super().patch_status(ref, status)
        if fail is not None:
            raise fail
        return stored


@pytest.mark.parametrize(
    ("failure", "stored", "doubt"),
    [
        (ConnectionResetError("connection reset by peer"), True, True),  # stored, the answer lost
        (Throttled(503), True, True),  # the API server going away: stored or not, nobody knows
        (Conflict("the object moved"), False, False),  # refused: nothing stored
        (Throttled(422), False, False),  # refused
    ],
)
def test_a_checked_write_that_got_no_answer_may_have_landed_so_its_copy_is_not_a_forgery(
    failure: BaseException, stored: bool, doubt: bool
) -> None:
    """Order chaos bug #17: a write stored by an API server that died before answering came back as a newer
    copy our last landed write did not leave, was taken for a forgery and overwritten with the older status."""

    async def scenario() -> None:
        kube = CheckedKube()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        await writer.write_checked(REF, {"state": "pending"}, None, "10")  # landed at 11
        kube.fail, kube.stores_before_failing = failure, stored
        with pytest.raises(type(failure)):
            await writer.write_checked(REF, {"state": "active"}, {"state": "pending"}, "11")
        judged = writer.forgery(REF, "12", {"state": "active"})
        assert judged == ([] if doubt else ["state"])
        # the next write that lands is again the proof of what is ours
        await writer.write_checked(REF, {"state": "active", "note": "x"}, {"state": "active"}, "12")
        assert writer.forgery(REF, "99", {"state": "terminated"}) == ["note", "state"]

    asyncio.run(scenario())


class GatedKube(FakeKube):
    """Status writes that wait for `gate`: a write under way for as long as the test wants."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def patch_status(self, ref: Ref, status: dict[str, Any]) -> dict[str, Any]:
        await self.gate.wait()
        return await super().patch_status(ref, status)


def test_a_write_under_way_when_its_object_is_forgotten_leaves_no_record() -> None:
    """A replica hands a device to another one while a status write for it is under way (the failover
    bench of 2026-12-04: three devices handed over at start-up). That write's answer used to be recorded
    after the forget, so every later write by the new owner looked forged: a false Warning Event and
    log line each time. It leaves no record now, and a desire queued after the forget is still written."""

    async def scenario() -> None:
        kube = GatedKube()
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        writer.submit(REF, {"state": "pending"}, None)
        await asyncio.sleep(0)  # the write is under way
        writer.forget(REF)
        kube.gate.set()
        await writer.flush()
        assert writer.ours(REF) is None
        assert writer.forgery(REF, "99", {"state": "active"}) == [], "the new owner's write judged forged"
        kube.gate.clear()
        writer.submit(REF, {"state": "pending"}, None)
        await asyncio.sleep(0)
        writer.forget(REF)
        writer.submit(REF, {"state": "active"}, None)  # this writer's own again (taken back meanwhile)
        kube.gate.set()
        await writer.flush()
        assert kube.writes[-1] == {"state": "active"}
        assert writer.ours(REF) == {"state": "active"}

    asyncio.run(scenario())

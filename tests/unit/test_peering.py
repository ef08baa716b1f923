"""controller/peering.py: Kopf's peering rule over a peering object's status, the Replica that holds a
Controller only while active, and the monitor's pause/resume decisions (no cluster, a fake API)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from controller.peering import PeeringMonitor, Replica, describe, judge, peers

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
ME = "me@host/20261125120000/abcd"


def entry(priority: int, seconds_ago: float = 1, lifetime: int = 15) -> dict[str, Any]:
    lastseen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen.isoformat()}


def verdict(status: dict[str, Any] | None, priority: int = 10) -> Any:
    return judge({None: status}, identity=ME, priority=priority, now=NOW)


# -- the rule -------------------------------------------------------------------------------------------
def test_a_live_peer_with_a_higher_priority_pauses() -> None:
    v = verdict({ME: entry(10), "other": entry(20)})
    assert v.paused
    assert [p.identity for p in v.blockers] == ["other"]
    assert v.recheck_at == NOW - dt.timedelta(seconds=1) + dt.timedelta(seconds=15)
    assert "in favour of other (priority 20)" in v.describe()


def test_the_same_priority_pauses_as_in_kopf() -> None:
    assert verdict({ME: entry(10), "twin": entry(10)}).paused


def test_lower_priorities_dead_peers_and_our_own_entry_do_not_pause() -> None:
    v = verdict({ME: entry(10), "low": entry(5), "dead": entry(99, seconds_ago=16), "gone": entry(99, lifetime=0)})
    assert not v.paused and v.recheck_at is None
    assert v.describe() == "no live replica with a higher or equal priority"
    assert not verdict({}).paused  # the object exists, nobody in it yet


def test_a_peer_expires_exactly_at_lastseen_plus_lifetime() -> None:
    assert verdict({"other": entry(20, seconds_ago=14.999)}).paused
    assert not verdict({"other": entry(20, seconds_ago=15)}).paused


def test_missing_fields_default_as_in_kopf() -> None:
    (peer,) = peers({"other": {"priority": 3}}, NOW)  # no lastseen: now; no lifetime: 60 s
    assert peer.priority == 3 and peer.deadline == NOW + dt.timedelta(seconds=60)
    (naive,) = peers({"x": {"lastseen": "2026-11-25T11:59:59", "lifetime": 5}}, NOW)
    assert naive.deadline == NOW + dt.timedelta(seconds=4)  # a naive time is UTC
    assert peers({"junk": "text", "bad": {"priority": "high"}}, NOW) == []


def test_an_unseen_peering_object_pauses_and_every_namespace_counts() -> None:
    assert verdict(None).paused
    assert "not there yet (cluster-wide)" in verdict(None).describe()
    v = judge({"a": {}, "b": {"other": entry(20)}}, identity=ME, priority=10, now=NOW)
    assert v.paused and [p.identity for p in v.blockers] == ["other"]
    assert judge({"a": {}, "b": None}, identity=ME, priority=10, now=NOW).unseen == ("b",)


# -- the replica ----------------------------------------------------------------------------------------
class FakeController:
    def __init__(self) -> None:
        self.started = False
        self.pauses = 0
        self.closed = False
        self.gate = asyncio.Event()
        self.applied: list[str] = []

    def start(self) -> None:
        self.started = True

    async def pause(self) -> None:
        self.pauses += 1

    async def close(self) -> None:
        self.closed = True

    def quick(self, what: str) -> None:
        self.applied.append(what)

    async def slow(self, what: str) -> None:
        await self.gate.wait()
        self.applied.append(what)

    async def stubborn(self, what: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # as some cleanup code does
            await self.gate.wait()
        self.applied.append(what)


def replica() -> tuple[Replica[FakeController], list[FakeController]]:
    built: list[FakeController] = []

    def factory() -> FakeController:
        built.append(FakeController())
        return built[-1]

    return Replica(factory), built


def test_events_are_dropped_while_standing_by_and_a_resume_builds_a_fresh_controller() -> None:
    async def go() -> None:
        r, built = replica()
        await r.run("event", lambda c: c.quick("early"))
        assert not built  # standing by: nothing built, the event dropped
        r.resume("Resuming")
        await r.run("event", lambda c: c.quick("a"))
        assert built[0].started and built[0].applied == ["a"]
        await r.pause("Pausing")
        assert built[0].pauses == 1 and not r.active
        await r.run("event", lambda c: c.quick("b"))
        r.resume("Resuming")
        assert len(built) == 2 and built[1].applied == [] and built[0].applied == ["a"]
        await r.close()
        assert built[1].closed and not built[0].closed

    asyncio.run(go())


async def pause_during_a_call(r: Any, call: str) -> int:
    """Start a handler whose call `call` is under way, pause, and say how cancelled the handler's
    task was left (Kopf's task must not stay cancelled: 0)."""
    r.resume("Resuming")

    async def handler() -> int:
        await r.run("event", lambda c: getattr(c, call)("late"))
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    handling = asyncio.create_task(handler())
    await asyncio.sleep(0.01)
    await r.pause("Pausing")
    return await handling


def test_a_pause_cancels_a_call_in_progress_and_the_handler_returns_normally() -> None:
    async def go() -> None:
        r, built = replica()
        assert await pause_during_a_call(r, "slow") == 0
        assert built[0].applied == [] and built[0].pauses == 1

    asyncio.run(go())


def test_a_call_that_swallows_the_cancellation_ends_before_the_controller_stops() -> None:
    async def go() -> None:
        r, built = replica()
        assert await pause_during_a_call(r, "stubborn") == 0
        assert built[0].applied == ["late"]
        await asyncio.sleep(0.01)
        assert built[0].pauses >= 1

    asyncio.run(go())


def test_kopf_cancelling_the_handler_still_propagates() -> None:
    async def go() -> None:
        r, _ = replica()
        r.resume("Resuming")
        handling = asyncio.create_task(r.run("event", lambda c: c.slow("x")))
        await asyncio.sleep(0.01)
        handling.cancel()
        try:
            await handling
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the handler's own cancellation was swallowed")

    asyncio.run(go())


# -- the monitor, against a fake API -----------------------------------------------------------------------
class FakeApi:
    def __init__(self, status: dict[str, Any] | None) -> None:
        self.status = status
        self.reads = 0

    def get_cluster_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any]:
        from kubernetes.client import ApiException

        self.reads += group == "kopf.dev"  # a 404 there also tries the legacy zalando.org group
        if self.status is None:
            raise ApiException(status=404)
        return {"metadata": {"name": name}, "status": self.status}


def live(priority: int, lifetime: float = 15) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"priority": priority, "lifetime": lifetime, "lastseen": now.isoformat()}


async def wait_until(condition: Any, timeout: float = 3) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_the_monitor_resumes_pauses_and_resumes_when_the_blocker_expires() -> None:
    async def go() -> None:
        r, built = replica()
        api = FakeApi({ME: live(10)})
        monitor = PeeringMonitor(r, name="p", identity=ME, priority=10, api=api)
        monitor.start(watch=False)
        await wait_until(lambda: r.active)
        # A higher-priority peer shows up (as the watch would report it), then stops renewing.
        monitor.seen(None, {"status": {ME: live(10), "high": {**live(20), "lifetime": 1}}})
        await wait_until(lambda: not r.active)
        assert built[0].pauses == 1
        await wait_until(lambda: r.active, timeout=3)  # its entry expired: no event needed
        assert len(built) == 2
        await monitor.close()

    asyncio.run(go())


def test_an_event_while_standing_by_is_applied_only_if_a_fresh_read_says_active() -> None:
    async def go() -> None:
        r, built = replica()
        api = FakeApi(None)  # no peering object yet: stand by
        monitor = PeeringMonitor(r, name="p", identity=ME, priority=10, api=api)
        monitor.start(watch=False)
        await asyncio.sleep(0.05)
        await r.run("event", lambda c: c.quick("dropped"))
        assert not built and api.reads == 2  # the start and the event each read the object
        api.status = {"high": live(20)}
        await r.run("event", lambda c: c.quick("dropped too"))
        assert not built
        # Kopf resumed and re-lists before our watch reported why: the fresh read finds us active.
        api.status = {"high": {**live(20), "lifetime": 0}}
        await r.run("event", lambda c: c.quick("applied"))
        assert len(built) == 1 and built[0].applied == ["applied"]
        await monitor.close()

    asyncio.run(go())


def test_events_are_named_with_their_namespace_when_they_have_one() -> None:
    namespaced = {"metadata": {"namespace": "shop", "name": "acme"}}
    assert describe("Subscription", namespaced, "MODIFIED") == "Subscription shop/acme (MODIFIED)"
    assert describe("NetworkDevice", {"metadata": {"name": "pe1"}}, None) == "NetworkDevice pe1 (listed)"

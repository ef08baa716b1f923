"""A lapsed fence whose unit Leases nobody took is cheap (controller/sharding.py, docs/sharding.md): the
units' writes stop at once, but what was learnt is kept, and once a renew is on time again a unit whose
Lease still names this replica at the same tenure is resumed instead of stopped and started. A unit
whose Lease moved (another holder, a new tenure, released, gone) is stopped in full, as before."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from controller.sharding import COMMERCE, Coordinator, Fenced, LeaseRecord, after_fence, unit_lease_name
from tests.unit.test_sharding import (
    TIMING,
    UNITS,
    Clock,
    FakeLeases,
    StalledWatch,
    Transitions,
    owners,
    replica,
    restart_watch,
    settle,
    ticks,
)

ALL = [*UNITS, COMMERCE]


def lease(unit: str, holder: str, transitions: int) -> LeaseRecord:
    return LeaseRecord(unit_lease_name("g", unit), holder, 15, "t", transitions, "1", "unit", unit)


# -- the pure decision ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("holder", "transitions", "kept", "fenced", "expected"),
    [
        ("a", 3, True, False, "resume"),  # nobody took it: same holder, same tenure
        ("b", 4, True, False, "stop"),  # another replica took it (a take adds 1)
        ("a", 5, True, False, "stop"),  # ours, but a new tenure: someone held it in between
        ("a", 2, True, False, "stop"),  # an older tenure than ours: not the Lease we drove under
        ("", 3, True, False, "stop"),  # released
        (None, 0, True, False, "stop"),  # the Lease is gone
        ("a", 3, False, False, "stop"),  # still ours, but assigned elsewhere now (or its device went)
        ("a", 3, True, True, "wait"),  # still fenced: nothing is decided, it stays suspended
        ("b", 4, True, True, "wait"),
    ],
)
def test_what_a_lapsed_fence_keeps_and_what_it_stops(
    holder: str | None, transitions: int, kept: bool, fenced: bool, expected: str
) -> None:
    leases = {} if holder is None else {"pe-1": lease("pe-1", holder, transitions)}
    resume, stop = after_fence("a", {"pe-1": 3}, leases, {"pe-1"} if kept else set(), fenced)
    got = "resume" if resume == ("pe-1",) else "stop" if stop == ("pe-1",) else "wait"
    assert got == expected
    assert not (set(resume) & set(stop))


def test_the_decision_covers_every_suspended_unit_and_nothing_else() -> None:
    leases = {u: lease(u, "a" if i % 2 else "b", 1) for i, u in enumerate(UNITS)}
    resume, stop = after_fence("a", dict.fromkeys(UNITS[:6], 1), leases, set(UNITS), fenced=False)
    assert set(resume) | set(stop) == set(UNITS[:6])
    assert set(resume) == {u for u in UNITS[:6] if leases[u].holder == "a"}


# -- replicas on the in-memory Lease store --------------------------------------------------------------
class Suspensions(Transitions):
    """Transitions that also record suspend/resume, as the network runtime implements them."""

    def __init__(self) -> None:
        super().__init__()
        self.full_stop = {COMMERCE}  # units whose suspension stops them in full (the commerce layer)

    async def suspend(self, unit: str) -> bool:
        self._begin("suspend", unit)
        await asyncio.sleep(0)  # cancelling a pass yields
        self._end("suspended", unit)
        return unit not in self.full_stop

    async def resume(self, unit: str, tenure: int) -> None:
        if self.fence is not None and not self.fence():
            self.fenced_gains.append(unit)
        self._begin("resume", unit)
        try:
            await self.gate.wait()
        finally:
            self._end("resumed", unit)

    def kinds(self, unit: str) -> list[str]:
        """The transitions of `unit` in order; a suspension that stopped it in full counts as a lose."""
        found = [k for k, u in self.log if u == unit and k in ("gain", "lose", "suspend", "resume")]
        return ["lose" if k == "suspend" and unit in self.full_stop else k for k in found]


def suspending(store: object, clock: Clock, identity: str, t: Suspensions) -> Coordinator:
    c = Coordinator(store, "g", identity, lambda: UNITS, t.gain, t.lose, timing=TIMING, clock=clock)  # type: ignore[arg-type]
    c.on_suspend, c.on_resume = t.suspend, t.resume
    t.fence = c.fence_valid
    return c


def alternates(kinds: list[str]) -> bool:
    """gain, (suspend, resume)*, [suspend], lose, gain, ...: never two starts or two stops in a row."""
    order = {"gain": {"suspend", "lose"}, "suspend": {"resume", "lose"}, "resume": {"suspend", "lose"}}
    order["lose"] = {"gain"}
    return all(b in order[a] for a, b in itertools.pairwise(kinds)) and (not kinds or kinds[0] == "gain")


def test_a_lapse_nobody_took_advantage_of_resumes_every_device_without_a_stop_or_start() -> None:
    async def scenario() -> None:
        store, clock, t = FakeLeases(), Clock(), Suspensions()
        a = suspending(store, clock, "a", t)
        await ticks([a], clock, 2)
        tenures = dict(a.held)
        assert set(tenures) == set(ALL)
        clock.now += TIMING.renew_deadline + 1  # the loop was starved: the renew is late
        a._fence_lapsed()
        with pytest.raises(Fenced):
            a.guard(UNITS[0])  # no Set from the moment of the lapse
        await settle()
        assert not a.held and set(a.suspended) == set(UNITS), "the devices are suspended, commerce stopped"
        assert not any(a.drives(u) for u in ALL)
        for _ in range(3):  # still fenced (say the renews keep failing): the units stay suspended
            await a.tick(renew=False)
            await settle()
            assert set(a.suspended) == set(UNITS) and not a.held
        await a.tick()  # the renew goes through
        await settle()
        assert {u for u in a.held if a.drives(u)} == set(ALL), "every unit driven again"
        assert {u: a.held[u] for u in UNITS} == {u: tenures[u] for u in UNITS}, "at the same tenure"
        assert a.resumes == len(UNITS) and not a.suspended
        for unit in UNITS:
            assert t.kinds(unit) == ["gain", "suspend", "resume"], (unit, t.kinds(unit))
        assert t.kinds(COMMERCE) == ["gain", "lose", "gain"], "commerce is rebuilt (a list) as before"
        assert not t.overlaps and not t.fenced_gains
        assert all(store.holder(u) == "a" for u in ALL)
        assert all(int(store.items[unit_lease_name("g", u)]["spec"]["leaseTransitions"]) == tenures[u] for u in UNITS)

    asyncio.run(scenario())


def test_units_another_replica_took_during_the_lapse_are_stopped_in_full_not_resumed() -> None:
    async def scenario() -> None:
        store, clock, t = FakeLeases(), Clock(), Suspensions()
        a, b = suspending(store, clock, "a", t), replica(store, clock, "b", [])
        await ticks([a, b], clock, 3)
        a_units = {u for u, v in owners([a, b]).items() if v == ["a"]} - {COMMERCE}
        assert a_units
        partitioned = FakeLeases()  # a reaches nothing (its renews fail); b goes on
        partitioned.down = True
        a.api = partitioned
        await restart_watch(a)
        for _ in range(12):  # 24 s: a's fence lapses at 10 s, b takes a's units once a's Lease expired
            for r in (a, b):
                await r.tick()
            await settle()
            taken = a_units & {u for u in b.held if b.drives(u)}
            assert not {u for u in taken if a.drives(u)}, "overlap: split brain"
            clock.now += 2
        assert a_units <= set(b.held) and a_units <= set(a.suspended)
        a.api = store  # a reaches the API server again
        await restart_watch(a)
        await ticks([a, b], clock, 3)
        assert not a.suspended and a.resumes == 0, "nothing a lost is resumed"
        for unit in a_units:
            assert t.kinds(unit)[:3] == ["gain", "suspend", "lose"], (unit, t.kinds(unit))
            assert alternates(t.kinds(unit)), (unit, t.kinds(unit))
        held = owners([a, b])
        assert all(len(v) == 1 for v in held.values())

    asyncio.run(scenario())


def test_a_take_the_view_has_not_shown_yet_makes_the_resume_fail_and_the_unit_stop() -> None:
    """The Lease names us at our tenure in our view, but another replica took it already (our watch lags):
    the resume's write, conditioned on the version we read, fails, and the unit is stopped in full."""

    async def scenario() -> None:
        store, clock, t = FakeLeases(), Clock(), Suspensions()
        a = suspending(store, clock, "a", t)
        await ticks([a], clock, 2)
        clock.now += TIMING.renew_deadline + 1
        a._fence_lapsed()
        await settle()
        a.api = StalledWatch(store)  # a's view stays as it is
        await restart_watch(a)
        stolen = UNITS[0]
        name = unit_lease_name("g", stolen)
        body = store.items[name]
        body["spec"] = {**body["spec"], "holderIdentity": "b", "leaseTransitions": body["spec"]["leaseTransitions"] + 1}
        await store.replace(name, body)  # b took it; a has not seen it
        assert a.view.records[name].holder == "a"
        await a.tick()
        await settle()
        assert stolen not in a.held and stolen not in a.suspended and not a.drives(stolen)
        assert t.kinds(stolen) == ["gain", "suspend", "lose"]
        assert store.holder(stolen) == "b", "the resume did not overwrite the take"
        assert set(UNITS[1:]) <= {u for u in a.held if a.drives(u)}

    asyncio.run(scenario())


def test_a_lapse_while_units_start_or_resume_never_overlaps_and_ends_driven() -> None:
    """The races of the full stop, again with suspensions: a lapse while the units start, and again while
    they resume; per unit, transitions never overlap, none starts or resumes while fenced."""

    async def scenario() -> None:
        store, clock, t = FakeLeases(), Clock(), Suspensions()
        a = suspending(store, clock, "a", t)
        a.follow()
        await settle()
        t.gate.clear()
        first = asyncio.create_task(a.tick())
        await settle()
        assert t.open
        clock.now += TIMING.renew_deadline + 1
        a._fence_lapsed()
        await settle()
        t.gate.set()
        await first
        await settle()
        assert not any(a.drives(u) for u in ALL)
        t.gate.clear()
        back = asyncio.create_task(a.tick())  # the renew goes through: resumes (the started) and starts
        await settle()
        assert t.open, "units are being resumed or started"
        clock.now += TIMING.renew_deadline + 1  # and the renew is late again meanwhile
        a._fence_lapsed()
        await settle()
        t.gate.set()
        await back
        await settle()
        assert not any(a.drives(u) for u in ALL)
        await a.tick()
        await settle()
        assert {u for u in a.held if a.drives(u)} == set(ALL)
        assert not t.overlaps, t.overlaps
        assert not t.fenced_gains, t.fenced_gains
        for unit in ALL:
            assert alternates(t.kinds(unit)), (unit, t.kinds(unit))

    asyncio.run(scenario())


def test_a_graceful_stop_while_suspended_stops_and_releases_everything() -> None:
    async def scenario() -> None:
        store, clock, t = FakeLeases(), Clock(), Suspensions()
        a = suspending(store, clock, "a", t)
        await ticks([a], clock, 2)
        clock.now += TIMING.renew_deadline + 1
        a._fence_lapsed()
        await settle()
        assert a.suspended
        await a.close()
        assert not a.suspended and not a.held
        assert all(t.kinds(u)[-1] == "lose" for u in UNITS)
        assert all(store.holder(u) == "" for u in UNITS)

    asyncio.run(scenario())

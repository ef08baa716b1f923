"""A lapsed shard fence on one device, end to end through the reconciler (controller/sharding.py,
docs/sharding.md): the pass under way is cancelled and no Set is sent while the fence is invalid; once
the renew is on time and the device's Lease still names this replica at the same tenure, the device is
driven again over the same session, with its services' records kept, by one whole-device pass."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from controller.intent import ServiceKey
from controller.network.reconciler import NetworkReconciler
from controller.settings import Settings
from controller.sharding import COMMERCE, Coordinator
from controller.statuswriter import StatusWriter
from tests.unit.intent.helpers import device_with_ports
from tests.unit.network.test_reconciler_memory import KEY, FakeKube, record
from tests.unit.network.test_reconciler_pass import ScriptedSession
from tests.unit.test_sharding import TIMING, Clock, FakeLeases, settle

ENDPOINT = [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}]
LATER = [{"device": "pe1", "port": "Ethernet1", "vlanId": 200, "ipv4Address": "192.0.2.5/30"}]


class GuardedSession(ScriptedSession):
    """A session whose Sets check the coordinator's guard first, as GnmiClient does, and record the
    fence's state at each attempt. `hold` makes the next Set wait (a slow device) until released."""

    def __init__(self, guard: Callable[[], Any], fence: Callable[[], bool]) -> None:
        super().__init__(device_with_ports("Ethernet1"), device_with_ports("Ethernet1"))
        self.full_gets = 0
        self.attempts: list[bool] = []  # fence valid at each Set attempt
        self.sent: list[tuple[bool, str]] = []  # (fence valid, tenure) of each Set that went out
        self.hold: asyncio.Event | None = None
        fake_set = self.client.set

        async def guarded(*args: Any, **kwargs: Any) -> int:
            self.attempts.append(fence())
            identity = dict(guard())  # raises Fenced: nothing goes out
            if self.hold is not None:
                await self.hold.wait()
            self.sent.append((fence(), identity["x-telco-tenure"]))
            return await fake_set(*args, **kwargs)

        self.client.set = guarded  # type: ignore[method-assign]

    async def get_config(self) -> dict[str, Any]:
        self.full_gets += 1
        return await super().get_config()


async def until(what: str, probe: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if probe():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_lapse_nobody_took_keeps_the_session_and_records_and_sends_nothing_while_fenced() -> None:
    async def scenario() -> None:
        store, clock = FakeLeases(), Clock()
        kube: Any = FakeKube()
        rec = NetworkReconciler(kube, StatusWriter(kube), Settings())
        opened: list[GuardedSession] = []

        async def gain(unit: str, tenure: int) -> None:
            if unit != COMMERCE:
                session = GuardedSession(lambda: a.guard(unit), a.fence_valid)
                session.name = unit
                opened.append(session)
                rec.sessions[unit] = session  # type: ignore[assignment]
                rec.adopt_device(unit)

        async def lose(unit: str) -> None:
            if unit != COMMERCE:
                await rec.drop_device(unit)

        async def suspend(unit: str) -> bool:
            if unit == COMMERCE:
                return False
            await rec.suspend_device(unit)
            return True

        async def resume(unit: str, tenure: int) -> None:
            rec.resume_device(unit)

        a = Coordinator(store, "g", "a", lambda: ["pe1"], gain, lose, timing=TIMING, clock=clock)
        a.on_suspend, a.on_resume = suspend, resume
        rec.drives = a.drives
        a.follow()
        await settle()
        await a.tick()
        await settle()
        assert a.drives("pe1") and len(opened) == 1
        session = opened[0]
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await until("the first Set", lambda: len(session.sent) == 1)
        tenure = session.sent[0][1]

        session.hold = asyncio.Event()  # the next Set hangs on the device
        later = dataclasses.replace(record(1, endpoints=LATER), key=ServiceKey("ns", "later"))
        rec.upsert_service(later)
        await until("a Set under way", lambda: len(session.attempts) == 2)
        clock.now += TIMING.renew_deadline + 1  # the starved loop: the renew is late
        a._fence_lapsed()
        await until("the suspension", lambda: "pe1" in a.suspended and not a._in_transit("pe1"))
        assert len(session.sent) == 1, "the Set under way at the lapse was cancelled"
        attempts = len(session.attempts)
        changed = record(2, endpoints=ENDPOINT)  # a change arrives while fenced
        rec.upsert_service(changed)
        rec.mark_dirty("pe1")  # a resync, a reconnect
        await asyncio.sleep(3 * Settings().debounce_seconds + 0.2)
        assert len(session.attempts) == attempts, "no pass tried a Set while fenced"
        assert rec.sessions["pe1"] is session and {KEY, later.key} <= set(rec.services)

        gets = session.full_gets
        session.hold = None
        await a.tick()  # the renew goes through; pe1's Lease is unchanged: resumed
        await settle()
        assert a.drives("pe1") and a.resumes == 1
        await until("the later service's Set", lambda: len(session.sent) >= 2)
        await until("the pass done", lambda: not rec._queue.busy())
        assert len(opened) == 1 and rec.sessions["pe1"] is session, "no new session"
        assert session.full_gets > gets, "the resume compared the whole device"
        assert all(valid for valid, _ in session.sent), "every Set went out with a valid fence"
        assert not [ok for ok in session.attempts if not ok], "no Set was even tried while fenced"
        assert {t for _, t in session.sent} == {tenure}, "at the same tenure"
        vlans = {o[2] for key in (KEY, later.key) for o in rec._outcomes[key]}
        assert vlans == {100, 200}
        await rec.close()

    asyncio.run(scenario())


def test_a_lapse_a_take_ended_stops_the_device_in_full() -> None:
    """The Lease moved during the lapse: the device is stopped as before (session closed, what was learnt
    from it dropped), never resumed."""

    async def scenario() -> None:
        store, clock = FakeLeases(), Clock()
        kube: Any = FakeKube()
        rec = NetworkReconciler(kube, StatusWriter(kube), Settings())
        closed: list[str] = []

        async def gain(unit: str, tenure: int) -> None:
            if unit != COMMERCE:
                session = GuardedSession(lambda: a.guard(unit), a.fence_valid)
                session.name = unit
                rec.sessions[unit] = session  # type: ignore[assignment]
                rec.adopt_device(unit)

        async def lose(unit: str) -> None:
            closed.append(unit)
            if unit != COMMERCE:
                await rec.drop_device(unit)

        async def suspend(unit: str) -> bool:
            await rec.suspend_device(unit)
            return True

        async def resume(unit: str, tenure: int) -> None:
            raise AssertionError("resumed a device another replica took")

        a = Coordinator(store, "g", "a", lambda: ["pe1"], gain, lose, timing=TIMING, clock=clock)
        a.on_suspend, a.on_resume = suspend, resume
        rec.drives = a.drives
        a.follow()
        await settle()
        await a.tick()
        await settle()
        rec.upsert_service(record(1, endpoints=ENDPOINT))
        await until("the first pass", lambda: bool(rec._intents.get("pe1")))
        clock.now += TIMING.renew_deadline + 1
        a._fence_lapsed()
        await settle()
        name = next(n for n in store.items if n.endswith("-unit-pe1"))
        body = store.items[name]
        body["spec"] = {**body["spec"], "holderIdentity": "b", "leaseTransitions": body["spec"]["leaseTransitions"] + 1}
        await store.replace(name, body)  # b took it meanwhile
        await settle()
        await a.tick()
        await settle()
        assert "pe1" in closed and not a.drives("pe1") and "pe1" not in a.suspended
        assert "pe1" not in rec.sessions and "pe1" not in rec._intents
        await rec.close()

    asyncio.run(scenario())

"""Warning events on the transition to Stalled: once per transition, rate-limited, through the status writer."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.announce import Announcer, Notice, stalled_notice
from controller.kube import Ref
from controller.statuswriter import StatusWriter


def status(stalled: str, reason: str = "PortNotFound", message: str = "pe1/Ethernet9.101: no such port") -> dict:
    return {
        "conditions": [
            {
                "type": "Stalled",
                "status": stalled,
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-11-01T12:00:00Z",
            }
        ]
    }


def test_a_notice_only_on_the_transition_to_stalled_or_a_new_reason() -> None:
    assert stalled_notice({}, status("True")) == Notice("Warning", "PortNotFound", "pe1/Ethernet9.101: no such port")
    assert stalled_notice(status("False"), status("True")) is not None
    assert stalled_notice(status("True"), status("True", message="same reason, new detail")) is None
    assert stalled_notice(status("True"), status("True", reason="OperDown")) == Notice(
        "Warning", "OperDown", "pe1/Ethernet9.101: no such port"
    )
    assert stalled_notice(status("True"), status("False")) is None
    assert stalled_notice(None, None) is None


class FakeKube:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []
        self.stored: dict[str, Any] = {}

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], type_, reason, message))

    async def patch_status(self, ref: Ref, desired: dict[str, Any], rv: str | None = None) -> dict[str, Any]:
        self.stored = {**self.stored, **desired}
        return {"metadata": {"name": ref.name, "uid": "u1"}, "status": self.stored}


def test_the_announcer_rate_limits_per_object_and_reason() -> None:
    async def scenario() -> list[tuple[str, str, str, str]]:
        kube = FakeKube()
        now = [0.0]
        announcer = Announcer(kube, interval=300, clock=lambda: now[0])
        obj = {"metadata": {"name": "pe1", "uid": "u1"}}
        assert announcer.post(obj, Notice("Warning", "Unreachable", "down"))
        now[0] = 10
        assert not announcer.post(obj, Notice("Warning", "Unreachable", "down again"))  # flapping
        assert announcer.post(obj, Notice("Warning", "Unauthenticated", "bad password"))  # another reason
        assert announcer.post({"metadata": {"name": "pe2", "uid": "u2"}}, Notice("Warning", "Unreachable", "x"))
        now[0] = 400
        assert announcer.post(obj, Notice("Warning", "Unreachable", "down once more"))
        assert not announcer.post(obj, None)
        await announcer.flush()
        return kube.events

    events = asyncio.run(scenario())
    assert [e[2] for e in events] == ["Unreachable", "Unauthenticated", "Unreachable", "Unreachable"]
    assert all(e[1] == "Warning" for e in events)


def test_the_status_writer_posts_one_warning_when_a_write_turns_an_object_stalled() -> None:
    async def scenario() -> list[tuple[str, str, str, str]]:
        kube = FakeKube()
        announcer = Announcer(kube)
        writer = StatusWriter(kube, announcer)  # type: ignore[arg-type]
        ref = Ref("networkservices", "hq", "acme")
        writer.submit(ref, status("False"), None)
        await writer.flush()
        writer.submit(ref, status("True"), kube.stored)
        await writer.flush()
        writer.submit(ref, status("True", message="still no such port"), kube.stored)  # same reason: no repeat
        await writer.flush()
        await announcer.flush()
        return kube.events

    assert asyncio.run(scenario()) == [("hq", "Warning", "PortNotFound", "pe1/Ethernet9.101: no such port")]

"""Warning events people read in `kubectl describe`: one per object when it turns Stalled.

The controller writes Stalled=True exactly when a person must act (conditions.py). Posting an Event
on that transition, and only then, gives every such problem one Warning naming the object and, in the
condition's message, the device, port or offering and what to do. The transition is read from the
stored status, so a restart or another replica does not post it again; a per-object, per-reason
interval keeps a flapping object (a device going up and down) from flooding the namespace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .conditions import stalled_transition

# At most one Warning per object and reason in this many seconds.
WARNING_INTERVAL_SECONDS = 300.0


@dataclass(frozen=True)
class Notice:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def stalled_notice(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> Notice | None:
    """The Warning for a status that newly reads Stalled=True (or stalled for another reason), else None."""
    cond = stalled_transition(before, after)
    if cond is None:
        return None
    return Notice("Warning", str(cond.get("reason") or "Stalled"), str(cond.get("message") or "stalled"))


class EventPoster(Protocol):
    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> Coroutine[Any, Any, None]: ...


class Announcer:
    """Posts notices as core/v1 Events, rate-limited per object and reason."""

    def __init__(
        self,
        kube: EventPoster,
        *,
        interval: float = WARNING_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._tasks: set[asyncio.Task[None]] = set()
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}

    def post(self, obj: Mapping[str, Any], notice: Notice | None) -> bool:
        """Post `notice` about `obj` unless it is None or the same reason was posted for it lately."""
        if notice is None:
            return False
        meta = obj.get("metadata") or {}
        who = str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
        key = (who, notice.reason)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        self._last[key] = now
        if len(self._last) > 10_000:  # objects come and go; forget the oldest half
            for old in sorted(self._last, key=self._last.__getitem__)[:5_000]:
                del self._last[old]
        task = asyncio.create_task(self._kube.event(dict(obj), notice.type, notice.reason, notice.message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def after_status_write(self, before: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> bool:
        """After writing `obj`'s status over `before` (the status as it was): the Warning it deserves."""
        return self.post(obj, stalled_notice(before, obj.get("status")))

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

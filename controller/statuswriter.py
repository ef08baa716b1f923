"""Write an object's status only when it changes, one write at a time per object.

The reconcilers compute the whole desired status on every pass (level-triggered);
this turns that into the minimum of API writes: none when the stored status already
equals the desired one, and while a write is in flight newer desires for the same
object coalesce into one follow-up write of the latest.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .announce import Announcer
from .kube import Kube, NotFound, Ref

log = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    """Drop None members: a merge patch's null deletes, so absent and None are the same."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def differs(desired: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    stored = _clean(stored or {})
    return any(_clean(v) != stored.get(k) for k, v in desired.items())


class StatusWriter:
    def __init__(self, kube: Kube, announcer: Announcer | None = None) -> None:
        self._kube = kube
        # Posts the Warning a write deserves (the object turned Stalled), judged against `_before`:
        # the status as it was when the first desire since the last write was queued.
        self.announcer = announcer
        self._before: dict[Ref, dict[str, Any]] = {}
        self._pending: dict[Ref, dict[str, Any]] = {}
        self._written: dict[Ref, dict[str, Any]] = {}
        self._busy: set[Ref] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, ref: Ref, desired: dict[str, Any], stored: dict[str, Any] | None) -> bool:
        """Queue `desired` for `ref` unless the status, once our writes land, already has it."""
        base = self.latest(ref, stored)
        if not differs(desired, base):
            self._pending.pop(ref, None)
            return False
        self._before.setdefault(ref, base)
        self._pending[ref] = desired
        if ref not in self._busy:
            self._busy.add(ref)
            task = asyncio.create_task(self._drain(ref))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def latest(self, ref: Ref, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The status as it is once our writes land: `stored` (often a watch copy older than our last
        write) overlaid with what was written, is being written or is queued. Computing the next status from this
        keeps condition timestamps stable instead of regenerating them from a stale copy."""
        current = dict(stored or {})
        for layer in (self._written.get(ref), self._pending.get(ref)):
            if layer:
                current.update(layer)
        return {k: v for k, v in current.items() if v is not None}

    def forget(self, ref: Ref) -> None:
        self._written.pop(ref, None)
        self._pending.pop(ref, None)
        self._before.pop(ref, None)

    async def _drain(self, ref: Ref) -> None:
        try:
            while ref in self._pending:
                desired = self._pending.pop(ref)
                if log.isEnabledFor(logging.DEBUG):
                    written = self._written.get(ref, {})
                    changed = sorted(k for k in desired if differs({k: desired[k]}, written))
                    log.debug("status of %s: writing %s", ref, changed)
                # Counted as written from now on: a status computed while this write is in flight
                # must build on it, or it regenerates timestamps and writes the same thing again.
                self._written[ref] = desired
                before = self._before.pop(ref, None)
                try:
                    after = await self._kube.patch_status(ref, desired)
                except NotFound:
                    self.forget(ref)
                    return
                except Exception as exc:
                    log.warning("status write for %s failed: %s", ref, exc)
                    self._written.pop(ref, None)
                    return
                if self.announcer is not None:
                    self.announcer.after_status_write(before, after)
        finally:
            self._busy.discard(ref)

    async def discard(self) -> None:
        """Drop queued writes and cancel those under way (this replica's view is no longer the truth)."""
        self._pending.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

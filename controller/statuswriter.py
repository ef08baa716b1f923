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
    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._pending: dict[Ref, dict[str, Any]] = {}
        self._written: dict[Ref, dict[str, Any]] = {}
        self._busy: set[Ref] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, ref: Ref, desired: dict[str, Any], stored: dict[str, Any] | None) -> bool:
        """Queue `desired` for `ref` unless the stored (or last written) status already has it."""
        if not differs(desired, stored) or (ref in self._written and not differs(desired, self._written[ref])):
            self._pending.pop(ref, None)
            return False
        self._pending[ref] = desired
        if ref not in self._busy:
            self._busy.add(ref)
            task = asyncio.create_task(self._drain(ref))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def latest(self, ref: Ref, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The status as it is once our writes land: `stored` (often a watch copy older than our last
        write) overlaid with what was written or queued since. Computing the next status from this
        keeps condition timestamps stable instead of regenerating them from a stale copy."""
        current = dict(stored or {})
        for layer in (self._written.get(ref), self._pending.get(ref)):
            if layer:
                current.update(layer)
        return {k: v for k, v in current.items() if v is not None}

    def forget(self, ref: Ref) -> None:
        self._written.pop(ref, None)
        self._pending.pop(ref, None)

    async def _drain(self, ref: Ref) -> None:
        try:
            while ref in self._pending:
                desired = self._pending.pop(ref)
                try:
                    await self._kube.patch_status(ref, desired)
                    self._written[ref] = desired
                except NotFound:
                    self.forget(ref)
                    return
                except Exception as exc:
                    log.warning("status write for %s failed: %s", ref, exc)
                    self._written.pop(ref, None)
                    return
        finally:
            self._busy.discard(ref)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

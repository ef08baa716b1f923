"""Write an object's status only when it changes, one write at a time per object.

The reconcilers compute the whole desired status on every pass (level-triggered);
this turns that into the minimum of API writes: none when the stored status already
equals the desired one, and while a write is in flight newer desires for the same
object coalesce into one follow-up write of the latest.

Status is the controller's (docs/reliability.md): the writer also remembers what each of its writes
left stored, at which resourceVersion, so a watch copy that is newer than that write and carries a
different status -- a write by someone else -- is recognised as a forgery (`forgery`) instead of
being overlaid with the last write and trusted. The echo of our own write (same resourceVersion,
or a copy not newer than it) is never one, so idle objects still cost no writes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from . import metrics
from .announce import Announcer
from .kube import Conflict, Kube, NotFound, Ref

log = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    """Drop None members: a merge patch's null deletes, so absent and None are the same."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


_INTERNED_UP_TO = 64  # characters: keys, reasons, states, names, paths and timestamps, not messages


class _Shared:
    """The compacted objects and lists seen lately, by value: an equal one compacted again is that object.
    Statuses of one burst repeat whole parts (every condition of the services that went Ready in the same
    second, their ready transitions, the stalled and in-sync conditions), so those are kept once for all.
    Two generations of at most `size` entries each: bounded, and what is in use keeps being found.
    Values are never changed in place (the status writer's rule), so sharing them is safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._young: dict[tuple[Any, ...], Any] = {}
        self._old: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...], value: Any) -> Any:
        try:
            found = self._young.get(key)
        except TypeError:  # not JSON (an unhashable scalar): kept as it is
            return value
        if found is not None:
            return found
        found = self._old.get(key, value)
        if len(self._young) >= self.size:
            self._old, self._young = self._young, {}
        self._young[key] = found
        return found


_SHARED = _Shared(4096)
_CONTAINERS = (dict, list)


def _key(kind: type, items: Any) -> tuple[Any, ...]:
    """A compacted object's or list's identity by value: its scalars by type and value (True is not 1),
    its (already shared) members by id; a member outlives the key, held by the object the key maps to."""
    out: list[Any] = [kind]
    for k, v in items:
        t = type(v)
        out += (k, t, id(v) if t in _CONTAINERS else v)
    return tuple(out)


def compact(value: Any) -> Any:
    """`value` without None members (as `_clean`), its keys and short strings the interned, shared ones,
    its objects and lists shared with equal ones compacted lately (`_Shared`).
    The controller keeps a status per object; parsed from JSON, each carries strings of its own for the
    same keys (`lastTransitionTime`, `observedGeneration`), reasons, states, device and port names and
    the timestamps of one burst, which every other status repeats."""
    return _compact(value, top=True)


def shared_value(value: Any) -> Any:
    """`value` compact and, whole, shared with an equal one compacted lately: for a value read only."""
    return _compact(value)


def _compact(value: Any, top: bool = False) -> Any:
    kind = type(value)
    if kind is dict:
        out = {sys.intern(k): _compact(v) for k, v in value.items() if v is not None}
        return out if top else _SHARED.get(_key(dict, out.items()), out)
    if kind is list:
        items = [_compact(v) for v in value]
        return items if top else _SHARED.get(_key(list, enumerate(items)), items)
    if kind is str and len(value) <= _INTERNED_UP_TO:
        return sys.intern(value)
    return value


def _sharing(written: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """`written` with each value equal to `stored`'s replaced by that object (one copy of each)."""
    return {k: stored[k] if k in stored and stored[k] == v else v for k, v in written.items()}


def with_removals(desired: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """`desired` plus a null for every key `stored` has and `desired` does not (recursively in objects):
    a merge patch that turns `stored` into exactly `desired`, e.g. to undo keys a forger added."""
    out = dict(desired)
    for key, value in (stored or {}).items():
        if key not in out:
            out[key] = None
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = with_removals(out[key], value)
    return out


def newer(resource_version: str, than: str) -> bool:
    """Whether `resource_version` is later than `than` (the API server's are etcd revisions: integers)."""
    return resource_version.isdigit() and than.isdigit() and int(resource_version) > int(than)


# Status keys other replicas of a shard group write beside ours: a NetworkService's per-device reports, and
# a NetworkDevice's usage counters (its former owner's report may land late; docs/sharding.md). Their writers
# are checked where they are read (the device's Lease holder). "usage" on a NetworkService is what an
# older version wrote there: read by nobody, and no forgery either.
REPORTED_KEYS = frozenset({"shards", "usage"})
# Keys written as parts, beside whatever else the object's writer computes (`submit(part=True)`): a queued
# whole status keeps them, so neither write drops the other.
PART_KEYS = frozenset({"usage"})


def changed_keys(status: dict[str, Any] | None, ours: dict[str, Any]) -> list[str]:
    """Top-level status keys whose value differs from the status our last write left stored."""
    mine, theirs = _clean(ours), _clean(status or {})
    return sorted(k for k in set(mine) | set(theirs) if k not in REPORTED_KEYS and mine.get(k) != theirs.get(k))


def _own(status: dict[str, Any]) -> dict[str, Any]:
    """`status` without the keys other replicas write beside ours."""
    return {k: v for k, v in status.items() if k not in REPORTED_KEYS}


def differs(desired: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Whether writing `desired` would change `stored` (absent and None are the same). Compared key by
    key, only the keys `desired` sets; a value that is the very object stored (a status built on the
    last write) is equal without walking it."""
    stored = stored or {}
    for key, value in desired.items():
        old = stored.get(key)
        if value is not old and _clean(value) != _clean(old):
            return True
    return False


RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0


def transient(exc: BaseException) -> bool:
    """A failed write worth retrying: throttling (429), a server error (5xx), a conflict, or no answer at
    all (connection refused or reset, a timeout). A 4xx refusal is not: the same write would fail again."""
    if isinstance(exc, Conflict):
        return True
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return True


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
        # (resourceVersion, status) our last write left stored: what a newer copy must still show.
        self._landed: dict[Ref, tuple[str, dict[str, Any]]] = {}
        self._direct: dict[Ref, dict[str, Any]] = {}  # a status write made outside this writer, under way
        self._overwrite: dict[Ref, dict[str, Any]] = {}  # forged copies the next write must undo entirely
        # Forgotten while a write was under way (e.g. a device handed to another replica): that write's
        # answer is not kept, or the new owner's writes would all look forged to this writer.
        self._dropped: set[Ref] = set()

    def submit(self, ref: Ref, desired: dict[str, Any], stored: dict[str, Any] | None, part: bool = False) -> bool:
        """Queue `desired` for `ref` unless the status, once our writes land, already has it. A newer desire
        replaces a queued one, except that a `part` (keys of PART_KEYS, e.g. usage counters) is written
        together with the queued desire, and a queued part survives a newer whole status."""
        forged = self._overwrite.pop(ref, None)
        if forged is not None and not part:
            desired = with_removals(desired, forged)
        elif forged is not None:
            self._overwrite[ref] = forged  # undone by the next whole status, which knows every key
        base = self.latest(ref, stored)
        if not differs(desired, base):
            # Nothing new. A write still queued agrees with `desired` (the base overlays it), so it stays:
            # the same desire submitted twice before it went out must still be written once.
            return False
        queued = self._pending.get(ref) or {}
        kept = queued if part else {k: v for k, v in queued.items() if k in PART_KEYS}
        if kept:
            desired = {**kept, **desired}
        if not part:  # a part's base is not the whole status: the Warning a write deserves is judged on that
            self._before.setdefault(ref, base)
        self._pending[ref] = desired
        if ref not in self._busy:
            self._busy.add(ref)
            task = asyncio.create_task(self._drain(ref))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def write_checked(
        self, ref: Ref, desired: dict[str, Any], stored: dict[str, Any] | None, resource_version: str
    ) -> dict[str, Any] | None:
        """Write a status that is the controller's record (a Subscription's or an Invoice's: state, ledger,
        outbox) at once, guarded by the resourceVersion the pass read: a fact and the events it implies are
        stored together or not at all, and never over a status the pass did not see. A Conflict (the object
        moved) propagates: the caller re-reads and redoes its pass. A forged copy's extra keys are undone.
        Returns the object as written; None when the stored status already says all of `desired`."""
        forged = self._overwrite.get(ref)
        if forged is None and not differs(desired, stored):
            return None
        status = with_removals(desired, forged)
        self.writing(ref, status)  # its watch event, arriving before this returns, is not a forgery
        try:
            after = await self._kube.patch_status(ref, status, resource_version)
        except BaseException as exc:
            self.landed(ref, None)
            if not isinstance(exc, Conflict) and transient(exc):
                # No answer (connection lost, API server restarting, 5xx): it may have been stored. What our
                # last write left is then unknown, as after a restart: judge no copy until the next one lands.
                self._landed.pop(ref, None)
            raise
        self.forget(ref)  # any memory of earlier writes is stale now
        self.landed(ref, after)
        return after

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
        if ref in self._busy:
            self._dropped.add(ref)
        self._written.pop(ref, None)
        self._pending.pop(ref, None)
        self._landed.pop(ref, None)
        self._overwrite.pop(ref, None)
        self._before.pop(ref, None)

    # -- proof that a stored status is ours ----------------------------------------------------------
    def writing(self, ref: Ref, status: dict[str, Any]) -> None:
        """A status write for `ref` made outside this writer (e.g. resourceVersion-guarded) starts now."""
        self._direct[ref] = status

    def landed(self, ref: Ref, body: dict[str, Any] | None) -> None:
        """Our status write for `ref` returned `body`: remember the status it stored, and at which version."""
        self._direct.pop(ref, None)
        if body is None:
            return
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        stored: dict[str, Any] = compact(body.get("status") or {})
        written = self._written.get(ref)
        if written is not None and written == stored:
            self._written[ref] = stored  # one copy: the compact one, its parts shared with other statuses
        elif written is not None:  # e.g. it removed a key (a null): what it shares with the stored copy, once
            self._written[ref] = _sharing(written, stored)
        self._landed[ref] = (rv, stored)

    def shared(self, ref: Ref, status: dict[str, Any]) -> dict[str, Any]:
        """`status` (from a watch event), or the equal copy this writer already holds: the echo of our own
        write then costs no memory of its own; any other copy is kept compact. Neither is ever changed in
        place."""
        landed = self._landed.get(ref)
        return landed[1] if landed is not None and landed[1] == status else compact(status)

    def ours(self, ref: Ref) -> dict[str, Any] | None:
        """The status our last write left stored (None: none seen in this run, e.g. after a restart)."""
        landed = self._landed.get(ref)
        return dict(landed[1]) if landed else None

    def forgery(self, ref: Ref, resource_version: str, status: dict[str, Any] | None) -> list[str]:
        """The status keys someone else changed: non-empty when this copy is newer than our last write
        and shows a status that write did not leave, and no write of ours that could explain it is under
        way. Empty for our own echo, an older copy, or when this run wrote nothing yet."""
        landed = self._landed.get(ref)
        if landed is None or not newer(resource_version, landed[0]):
            return []
        keys = changed_keys(status, landed[1])
        if not keys:
            return []
        in_flight = [self._direct.get(ref), self._written.get(ref) if ref in self._busy else None]
        if any(w is not None and not differs(_own(w), status) for w in in_flight):
            return []  # the watch event of a write still under way: ours
        return keys

    def report_forgery(self, body: dict[str, Any], keys: list[str]) -> None:
        """Say so (log, metric, Warning Event): a status write that was not the controller's."""
        meta = body.get("metadata") or {}
        kind = str(body.get("kind") or "object")
        name = "/".join(p for p in (meta.get("namespace"), meta.get("name")) if p)
        message = (
            f"status.{', status.'.join(keys)} changed by a writer other than the controller; "
            "rewritten from the controller's own records (only the controller may write status)"
        )
        log.warning("%s %s: %s", kind, name, message)
        metrics.STATUS_FORGERIES.labels(kind).inc()
        task = asyncio.create_task(self._kube.event(body, "Warning", "StatusForged", message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def distrusted(self, ref: Ref) -> bool:
        """Whether a forged copy of `ref`'s status waits to be undone by the next write."""
        return ref in self._overwrite

    def distrust(self, ref: Ref, forged: dict[str, Any] | None) -> None:
        """A forged copy is stored: stop overlaying our last write on it, so the next status computed for
        `ref` is compared with what is really stored, and make that write undo every forged key."""
        self._written.pop(ref, None)
        self._overwrite[ref] = dict(forged or {})

    async def _drain(self, ref: Ref) -> None:
        failures = 0
        try:
            while ref in self._pending:
                desired = self._pending.pop(ref)
                if log.isEnabledFor(logging.DEBUG):
                    written = self._written.get(ref, {})
                    changed = sorted(k for k in desired if differs({k: desired[k]}, written))
                    log.debug("status of %s: writing %s", ref, changed)
                # Counted as written from now on: a status computed while this write is in flight
                # must build on it, or it regenerates timestamps and writes the same thing again. Merged
                # with the earlier writes, as the merge patches are: a part leaves the rest standing.
                earlier = self._written.get(ref)
                self._written[ref] = (
                    desired if not earlier or earlier.keys() <= desired.keys() else {**earlier, **desired}
                )
                before = self._before.pop(ref, None)
                try:
                    after = await self._kube.patch_status(ref, desired)
                    if ref in self._dropped:
                        self._dropped.discard(ref)
                        continue  # forgotten meanwhile: no record of it; a desire queued since is still written
                    self.landed(ref, after)
                except NotFound:
                    self.forget(ref)
                    return
                except Exception as exc:
                    self._written.pop(ref, None)
                    if ref in self._dropped:
                        self._dropped.discard(ref)
                        continue  # forgotten meanwhile: not retried (it is no longer this writer's to write)
                    if not transient(exc):
                        log.warning("status write for %s refused: %s", ref, exc)
                        continue  # a desire queued meanwhile is still written
                    # Throttled, API server restarting, connection lost: the status must still reach
                    # it (nothing else would resubmit it before the next resync), unless a newer one does.
                    failures += 1
                    delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
                    log.warning("status write for %s failed (%s); retrying in %.1fs", ref, exc, delay)
                    self._pending.setdefault(ref, desired)
                    if before is not None:
                        self._before.setdefault(ref, before)
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if self.announcer is not None and not desired.keys() <= PART_KEYS:
                    self.announcer.after_status_write(before, after)
        finally:
            self._busy.discard(ref)
            self._dropped.discard(ref)

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

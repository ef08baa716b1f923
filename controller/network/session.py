"""One long-lived gNMI session per NetworkDevice, and the observed-state cache it feeds.

The session connects (Capabilities), then holds an ON_CHANGE subscription over the
paths this controller manages; every notification updates a leaf cache and wakes the
reconciler, which is how out-of-band changes are seen within milliseconds. A lost
session reconnects with jittered exponential backoff. Incremental passes plan from this
cache; every (re)connect and resync compares against a fresh Get, so a lagging cache can
delay a repair, and a Set always writes whole intended values, never values read here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ..gnmi.client import Capabilities, GnmiClient, GnmiError, Notification, Target
from ..intent.normalise import build_tree
from ..intent.paths import ROOT, GPath
from ..intent.rfc7951 import negotiate
from .leafcache import LeafCache

log = logging.getLogger(__name__)

# What the controller manages and watches: customer subinterfaces (config and oper
# status), the physical ports they hang off, VRFs and QoS. Counters are left out on
# purpose: they change every second and would wake the reconciler for nothing.
WATCHED = [
    "interfaces/interface[name=*]/config",
    "interfaces/interface[name=*]/state/oper-status",
    "interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/config",
    "interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/vlan",
    "interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/ipv4",
    "interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/state/oper-status",
    "network-instances/network-instance[name=*]",
    "qos",
]


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.2
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): spreads a fleet's reconnects after an outage."""
        return random.uniform(0, min(self.maximum, self.initial * 2**attempt))


class DeviceSession:
    def __init__(
        self,
        name: str,
        target: Target,
        on_change: Callable[[str], None],
        on_state: Callable[[str], None],
        backoff: Backoff | None = None,
        on_update: Callable[[str], None] | None = None,
        set_guard: Callable[[], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self._on_change = on_change
        self._on_state = on_state
        # Updates after the initial sync: the reconciler looks only at what they touched (changed_paths).
        self._on_update = on_update or on_change
        self._backoff = backoff or Backoff()
        self.client = GnmiClient(target, name, set_guard)
        self.capabilities: Capabilities | None = None
        self.encoding = negotiate(target.encoding, [])  # settled by each connect's Capabilities
        self.connected = False
        self.synced = False
        self.error: GnmiError | None = None
        self.leaves = LeafCache()
        self.version = 0  # bumps on every change the subscription reports
        self.changed_paths: set[GPath] = set()  # reported since the reconciler last took them
        self._changed = asyncio.Event()  # set by every notification
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"gnmi-session-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    async def _run(self) -> None:
        attempt = 0
        paths = [_wildcard_proto(p) for p in WATCHED]
        while True:
            try:
                self.capabilities = await self.client.capabilities()
                self.encoding = negotiate(self.target.encoding, self.capabilities.encodings)
                self._set_state(connected=True, error=None)
                attempt = 0
                async for notification in self.client.subscribe(paths, self.encoding):
                    self._apply(notification)
                raise GnmiError("Subscribe", grpc.StatusCode.UNAVAILABLE, "the device closed the subscription")
            except GnmiError as exc:
                self.synced = False
                self._set_state(connected=False, error=exc)
            except Exception as exc:
                log.exception("device %s: session failed", self.name)
                self.synced = False
                self._set_state(connected=False, error=GnmiError("Session", grpc.StatusCode.INTERNAL, str(exc)))
            delay = self._backoff.delay(attempt)
            attempt += 1
            log.info("device %s: %s; reconnecting in %.1fs", self.name, self.error, delay)
            await asyncio.sleep(delay)

    def _set_state(self, connected: bool, error: GnmiError | None) -> None:
        changed = connected != self.connected or str(error) != str(self.error)
        self.connected, self.error = connected, error
        if changed:
            self._on_state(self.name)
            # Either way the services on the device must hear it now, not at the next resync:
            # a reconnected device is re-verified, a lost one makes its services not Ready.
            self._on_change(self.name)

    def _apply(self, n: Notification) -> None:
        if n.sync:
            self.synced = True
            self.version += 1
            self.changed_paths.clear()  # a sync is followed by a whole-device pass
            self._on_change(self.name)
            return
        for path in n.deletes:
            gone = GPath.from_proto(path)
            self.leaves.delete(gone)
            if self.synced:
                self.changed_paths.add(gone)
        for update in n.updates:
            leaf = GPath.from_proto(update.path)
            self.leaves.set(leaf, update.value)
            if self.synced:
                self.changed_paths.add(leaf)
        self.version += 1
        if self.synced:
            self._on_update(self.name)
        self._changed.set()

    async def wait_for_leaves(self, paths: list[GPath], timeout: float) -> bool:
        """Wait until the subscription has reported every path (e.g. the oper-status of a subinterface
        just created), so one status write can say Ready with it instead of two."""
        try:
            async with asyncio.timeout(timeout):
                while not all(p in self.leaves for p in paths):
                    self._changed.clear()
                    await self._changed.wait()
            return True
        except TimeoutError:
            return False

    # -- what the reconciler uses --------------------------------------------------------
    def take_changed_paths(self) -> set[GPath]:
        taken, self.changed_paths = self.changed_paths, set()
        return taken

    def snapshot(self, paths: list[GPath]) -> dict[str, Any]:
        """The subscription's view of some subtrees, as one tree: what a Get of them would return,
        as of the last notification, at a cost proportional to their size."""
        return build_tree((leaf, value) for path in paths for leaf, value in self.leaves.items_under(path))

    async def get_config(self) -> dict[str, Any]:
        """A fresh read of the device's whole configuration, as one tree.

        One Get at the root: a Get naming `qos` on a device without QoS config fails
        with NOT_FOUND (as the spec says), so asking per root would need three RPCs.
        """
        return await fetch_config(self.client, self.encoding)

    async def get_entries(self, paths: list[GPath]) -> dict[str, Any]:
        """A fresh read of some subtrees (e.g. the entries a Set just wrote), as one tree from one Get.
        Every path must exist: a target answers NOT_FOUND for the whole request otherwise."""
        notifications = await self.client.get([p.to_proto() for p in paths], "CONFIG", self.encoding)
        return build_tree((GPath.from_proto(u.path), u.value) for n in notifications for u in n.updates)


async def fetch_config(client: GnmiClient, encoding: str = "JSON") -> dict[str, Any]:
    """The device's whole configuration as one tree, from one Get at the root."""
    notifications = await client.get([ROOT.to_proto()], "CONFIG", encoding)
    return build_tree((GPath.from_proto(u.path), u.value) for n in notifications for u in n.updates)


def _wildcard_proto(text: str) -> Any:
    """A Subscribe path with `*` keys (GPath refuses wildcards: they never belong in a Set)."""
    proto = GPath.parse(text.replace("=*]", "=_any_]")).to_proto()
    for elem in proto.elem:
        for key, value in list(elem.key.items()):
            if value == "_any_":
                elem.key[key] = "*"
    return proto

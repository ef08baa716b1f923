"""Octet counters for usage metering, read where the devices are driven (docs/sharding.md, docs/billing.md).

Unsharded, the commerce layer reads the counters of every active, usage-priced Subscription itself
(controller/commerce/usage.py). Sharded, only a device's owner may open its gNMI session, so every replica
runs a `UsagePublisher`: once per --usage-interval-seconds it reads the counters of the metered services'
subinterfaces on each device it drives and writes them, one merge patch per device (not per service:
at 500,000 metered services that was ~1,700 writes/s), to the NetworkDevice's `status.usage`
(`{replica, sampledAt, endpoints: [{port, vlanId, inOctets, outOctets}]}`) through the one status writer
of that kind, as a part beside the rest of the device's status. The replica that holds the commerce unit
takes them from there into each Subscription's meter (`published_samples` in controller/commerce/usage.py),
with the same deltas as its own reads. It reads its own devices directly and publishes nothing meanwhile.

A service is metered when its owning Subscription's offering has a usage price: the commerce layer says
so with the METERED_LABEL on the NetworkService it creates. Flat-rate services cost nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ..api.networkdevice import MAX_USAGE_ENDPOINTS
from ..api.networkservice import METERED_LABEL
from ..intent.render import counters_path
from ..kube import Ref
from ..statuswriter import StatusWriter
from ..times import rfc3339, to_second

log = logging.getLogger(__name__)

READS_AT_ONCE = 16


def counter_key(device: str, port: str, vlan: int, direction: str) -> str:
    """A counter's key in a Subscription's meter (status.billing.usage.counters)."""
    return f"{device}/{port}/{vlan}/{direction}"


def octets(notifications: Iterable[Any]) -> dict[str, int]:
    """in/out octets from a Get of .../state/counters (a container value, or its two leaves)."""
    out: dict[str, int] = {}
    for notification in notifications:
        for update in notification.updates:
            value = update.value
            leaf = update.path.elem[-1].name if update.path.elem else ""
            items = {k.split(":")[-1]: v for k, v in value.items()} if isinstance(value, dict) else {leaf: value}
            for name, direction in (("in-octets", "in"), ("out-octets", "out")):
                if name in items:
                    with contextlib.suppress(TypeError, ValueError):
                        out[direction] = int(items[name])
    return out


async def read_octets(session: Any, port: str, vlan: int) -> dict[str, int]:
    """One subinterface's counters through an open session ({} when the Get fails)."""
    path = counters_path(port, vlan).to_proto()
    try:
        # In the encoding negotiated with the device: a JSON_IETF-only router refuses JSON.
        notifications = await session.client.get([path], "STATE", getattr(session, "encoding", "JSON"))
    except Exception as exc:
        log.debug("usage sample %s/%s.%d failed: %s", getattr(session, "name", "?"), port, vlan, exc)
        return {}
    return octets(notifications)


Reading = tuple[str, int, Mapping[str, int]]  # port, vlan, {"in": n, "out": n}
Subinterface = tuple[str, int]  # port, vlan


def device_report(identity: str, at: datetime, readings: Iterable[Reading]) -> dict[str, Any] | None:
    """A device's `status.usage` report: the reader, the time and each subinterface read whole (both
    counters), once each, in a stable order. None when nothing was read whole (nothing to write)."""
    seen: dict[Subinterface, Mapping[str, int]] = {}
    for port, vlan, v in readings:
        if "in" in v and "out" in v and v["in"] >= 0 and v["out"] >= 0:
            seen[(port, vlan)] = v
    if not seen:
        return None
    endpoints = [
        {"port": port, "vlanId": vlan, "inOctets": str(v["in"]), "outOctets": str(v["out"])}
        for (port, vlan), v in sorted(seen.items())
    ]
    return {"replica": identity, "sampledAt": rfc3339(to_second(at)), "endpoints": endpoints}


def in_turn(subinterfaces: list[Subinterface], turn: int, limit: int = MAX_USAGE_ENDPOINTS) -> list[Subinterface]:
    """The subinterfaces (sorted) read at pass `turn`: all of them, or for a device with more than one
    report may list, the `turn`-th slice of `limit`, in rotation. A slice left out this pass loses no
    octet: its counters only grow and the next pass of its turn carries them."""
    if len(subinterfaces) <= limit:
        return subinterfaces
    slices = -(-len(subinterfaces) // limit)
    start = (turn % slices) * limit
    return subinterfaces[start : start + limit]


class UsagePublisher:
    """Every replica of a shard group: reads the counters of the metered services on the devices it drives
    and publishes them in each device's NetworkDevice status (one write per device per interval)."""

    def __init__(
        self,
        network: Any,  # the NetworkReconciler: its services and open sessions
        writer: StatusWriter,
        identity: str,
        interval: float,
        clock: Callable[[], datetime],
        drives: Callable[[str], bool],
        direct: Callable[[], bool],
        device_status: Callable[[str], Mapping[str, Any] | None],  # a NetworkDevice's stored status
    ) -> None:
        self.network = network
        self.writer = writer
        self.identity = identity
        self.interval = interval
        self.clock = clock
        self.drives = drives
        self.direct = direct  # this replica runs the commerce layer: it reads its devices itself
        self.device_status = device_status
        self._turn = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.direct():
                continue
            try:
                await self.publish_once()
            except Exception:
                log.exception("publishing usage counters failed")

    def _wanted(self) -> dict[str, set[Subinterface]]:
        """Per device: the subinterfaces of the metered, enabled services on it."""
        wanted: dict[str, set[Subinterface]] = {}
        for record in list(self.network.services.values()):
            spec = record.spec
            if not record.metered or spec is None or record.deleting or spec.dryRun or spec.adminState != "enabled":
                continue
            for device, port, vlan in record.endpoints():
                wanted.setdefault(device, set()).add((port, vlan))
        return wanted

    def _stored(self, device: str) -> Any:
        return (self.device_status(device) or {}).get("usage")

    async def publish_once(self) -> int:
        """Read and publish once; returns how many devices got a report."""
        wanted = self._wanted()
        turn, self._turn = self._turn, self._turn + 1
        jobs: list[tuple[str, str, int, Any]] = []
        for device, session in list(self.network.sessions.items()):
            if not self.drives(device):
                continue  # only the device's owner reads it, over the session it already holds
            if not wanted.get(device):
                stored = self._stored(device)
                if stored:  # nothing metered here any more: the last report would only mislead
                    self.writer.submit(Ref("networkdevices", device), {"usage": None}, {"usage": stored}, part=True)
                continue
            if not getattr(session, "connected", False):
                continue
            jobs += [(device, port, vlan, session) for port, vlan in in_turn(sorted(wanted[device]), turn)]
        if not jobs:
            return 0
        at = self.clock()
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def read(job: tuple[str, str, int, Any]) -> Mapping[str, int]:
            async with limit:
                return await read_octets(job[3], job[1], job[2])

        values = await asyncio.gather(*(read(j) for j in jobs))
        found: dict[str, list[Reading]] = {}
        for (device, port, vlan, _), counted in zip(jobs, values, strict=True):
            found.setdefault(device, []).append((port, vlan, counted))
        published = 0
        for device, readings in found.items():
            # Still ours? The Gets took time; a device lost meanwhile is reported by its new owner.
            report = device_report(self.identity, at, readings) if self.drives(device) else None
            if report is None:
                continue
            ref = Ref("networkdevices", device)
            if self.writer.submit(ref, {"usage": report}, {"usage": self._stored(device)}, part=True):
                published += 1
        return published


__all__ = ["METERED_LABEL", "UsagePublisher", "counter_key", "device_report", "in_turn", "octets", "read_octets"]

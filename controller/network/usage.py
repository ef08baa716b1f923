"""Octet counters for usage metering, read where the devices are driven (docs/sharding.md, docs/billing.md).

Unsharded, the commerce layer reads the counters of every active, usage-priced Subscription itself
(controller/commerce/usage.py). Sharded, only a device's owner may open its gNMI session, so every replica
runs a `UsagePublisher`: once per --usage-interval-seconds it reads the counters of the metered services'
endpoints on the devices it drives and writes them, one merge patch per service, to
`status.usage.<device>` of the NetworkService (`{replica, sampledAt, endpoints: [{port, vlanId, inOctets,
outOctets}]}`). The replica that holds the commerce unit takes them from there into each Subscription's
meter (`published_samples` in controller/commerce/usage.py), with the same deltas as its own reads. It
reads its own devices directly and publishes nothing meanwhile.

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

from ..api.networkservice import METERED_LABEL
from ..intent.render import ServiceKey, counters_path
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


def usage_patch(
    identity: str,
    at: datetime,
    readings: Mapping[str, list[Reading]],
    stored: Mapping[str, Any] | None,
    devices: Iterable[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `status.usage` merge patch for one service, and the stored entries it replaces (for the writer's
    comparison): one report per device in `readings` (only endpoints with both counters), and a null for
    each stored entry of a device the service no longer uses (a stale entry would count against the
    map's limit forever). Empty when there is nothing to write."""
    patch: dict[str, Any] = {}
    for device, found in sorted(readings.items()):
        endpoints = [
            {"port": port, "vlanId": vlan, "inOctets": str(v["in"]), "outOctets": str(v["out"])}
            for port, vlan, v in sorted(found, key=lambda r: (r[0], r[1]))
            if "in" in v and "out" in v and v["in"] >= 0 and v["out"] >= 0
        ]
        if endpoints:
            patch[device] = {"replica": identity, "sampledAt": rfc3339(to_second(at)), "endpoints": endpoints}
    if not patch:
        return {}, {}
    used = set(devices)
    for device in (stored or {}).keys() - used:
        patch[device] = None
    replaced = {d: v for d, v in (stored or {}).items() if d in patch}
    return patch, replaced


class UsagePublisher:
    """Every replica of a shard group: reads the counters of the metered services on the devices it drives
    and publishes them in the services' status (one write per metered service per interval)."""

    def __init__(
        self,
        network: Any,  # the NetworkReconciler: its services and open sessions
        writer: StatusWriter,
        identity: str,
        interval: float,
        clock: Callable[[], datetime],
        drives: Callable[[str], bool],
        direct: Callable[[], bool],
    ) -> None:
        self.network = network
        self.writer = writer
        self.identity = identity
        self.interval = interval
        self.clock = clock
        self.drives = drives
        self.direct = direct  # this replica runs the commerce layer: it reads its devices itself

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.direct():
                continue
            try:
                await self.publish_once()
            except Exception:
                log.exception("publishing usage counters failed")

    async def publish_once(self) -> int:
        """Read and publish once; returns how many services got a report."""
        jobs: list[tuple[ServiceKey, str, str, int, Any]] = []
        for record in list(self.network.services.values()):
            spec = record.spec
            if not record.metered or spec is None or record.deleting or spec.dryRun or spec.adminState != "enabled":
                continue
            for device, port, vlan in record.endpoints():
                session = self.network.sessions.get(device)
                if session is None or not getattr(session, "connected", False) or not self.drives(device):
                    continue  # only the device's owner reads it, over the session it already holds
                jobs.append((record.key, device, port, vlan, session))
        if not jobs:
            return 0
        at = self.clock()
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def read(job: tuple[ServiceKey, str, str, int, Any]) -> Mapping[str, int]:
            async with limit:
                return await read_octets(job[4], job[2], job[3])

        values = await asyncio.gather(*(read(j) for j in jobs))
        found: dict[ServiceKey, dict[str, list[Reading]]] = {}
        for (key, device, port, vlan, _), counted in zip(jobs, values, strict=True):
            found.setdefault(key, {}).setdefault(device, []).append((port, vlan, counted))
        published = 0
        for key, readings in found.items():
            record = self.network.services.get(key)
            if record is None:
                continue
            # Still ours? The Gets took time; a device lost meanwhile is reported by its new owner.
            readings = {d: r for d, r in readings.items() if self.drives(d)}
            patch, replaced = usage_patch(self.identity, at, readings, record.status.get("usage"), record.devices())
            if patch and self.writer.submit(record.ref, {"usage": patch}, {"usage": replaced}, part=True):
                published += 1
        return published


__all__ = ["METERED_LABEL", "UsagePublisher", "counter_key", "octets", "read_octets", "usage_patch"]

"""Usage sampling: a small loop reading the subinterface octet counters of every active, usage-priced
Subscription on the devices this replica drives; the samples wait in `index.samples` for the Subscription's
next status write (rating.Meter). Sharded, the counters of the other replicas' devices come from the
NetworkDevice status those replicas publish (controller/network/usage.py), through `published_samples`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..network.usage import counter_key, octets, read_octets
from ..times import parse_rfc3339, to_second
from .context import Context
from .index import Sample
from .objects import Key, offering_of, state_of

log = logging.getLogger(__name__)


def usage_priced(offering: Any) -> bool:
    """Whether an offering spec (or None) sells traffic: it has a usage price."""
    return offering is not None and any(p.priceType == "usage" for p in offering.productOfferingPrice)


class UsageSampler:
    def __init__(self, ctx: Context, sessions: Callable[[], Mapping[str, Any]]) -> None:
        self.ctx = ctx
        self._sessions = sessions

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.settings.usage_interval_seconds)
            try:
                await self.sample()
            except Exception:
                log.exception("usage sampling failed")

    async def sample(self) -> int:
        """Read the counters once; returns how many were read."""
        ctx, index = self.ctx, self.ctx.index
        sessions = self._sessions()
        now = ctx.clock.now()
        jobs: list[tuple[Key, str, str, int, Any]] = []
        for key, body in list(index.subscriptions.items()):
            if state_of(body) != "active":
                continue
            offering, _ = index.offering(offering_of(body))
            if not usage_priced(offering):
                continue
            for endpoint in (body.get("spec") or {}).get("endpoints") or []:
                device = endpoint.get("device")
                session = sessions.get(device)
                if session is None or not getattr(session, "connected", False):
                    continue
                port, vlan = endpoint.get("port"), endpoint.get("vlanId")
                if not isinstance(port, str) or not isinstance(vlan, int):
                    continue  # a malformed endpoint: its Subscription's status says so
                jobs.append((key, str(device), port, vlan, session))
        limit = asyncio.Semaphore(16)

        async def read(job: tuple[Key, str, str, int, Any]) -> dict[str, int]:
            async with limit:
                return await read_octets(job[4], job[2], job[3])

        read_count = 0
        values = await asyncio.gather(*(read(j) for j in jobs))
        for (key, device, port, vlan, _), counted in zip(jobs, values, strict=True):
            for direction, count in counted.items():
                index.samples[key][counter_key(device, port, vlan, direction)] = Sample(count, now)
                read_count += 1
            if counted:
                ctx.queues.subscriptions.mark(key)
        return read_count


def published_samples(
    reports: Mapping[str, Any],
    endpoints: Iterable[tuple[str, str, int]],
    holder_of: Callable[[str], str | None],
) -> dict[str, Sample]:
    """The counters other replicas published in the NetworkDevices' `status.usage` (docs/sharding.md),
    `reports` by device, for the Subscription's `endpoints` (device, port, vlan), as samples under the keys
    this replica's own reads use. A report lists every metered subinterface of its device: only the
    Subscription's own are taken.

    A device's report counts only when its `replica` holds the device's Lease now: a report written late by
    a former owner is a true reading, but its clock may be ahead of the new owner's, and its older counter
    taken as newer would look like a counter reset and be counted twice. Dropping a report loses nothing:
    the counters only grow, so the next report carries the same octets."""
    wanted: dict[str, set[tuple[str, int]]] = {}
    for d, p, v in endpoints:
        wanted.setdefault(d, set()).add((p, v))
    out: dict[str, Sample] = {}
    for device, mine in wanted.items():
        report = reports.get(device)
        if not isinstance(report, Mapping) or not report.get("replica") or report.get("replica") != holder_of(device):
            continue
        try:
            at = to_second(parse_rfc3339(report.get("sampledAt"), "sampledAt"))
        except ValueError:
            continue
        listed = report.get("endpoints")
        for e in listed if isinstance(listed, list) else []:
            try:
                port, vlan = str(e["port"]), int(e["vlanId"])
                values = {"in": int(e["inOctets"]), "out": int(e["outOctets"])}
            except (KeyError, TypeError, ValueError):
                continue
            if (port, vlan) not in mine or min(values.values()) < 0:
                continue
            for direction, count in values.items():
                out[counter_key(device, port, vlan, direction)] = Sample(count, at)
    return out


__all__ = ["UsageSampler", "octets", "published_samples", "usage_priced"]

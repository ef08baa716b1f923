"""Usage sampling: a small loop reading the subinterface octet counters of every active, usage-priced
Subscription; the samples wait in `index.samples` for the Subscription's next status write (rating.Meter)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..intent.render import counters_path
from .context import Context
from .index import Sample
from .objects import Key, offering_of, state_of

log = logging.getLogger(__name__)


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
        jobs: list[tuple[Key, str, Any, Any]] = []
        for key, body in list(index.subscriptions.items()):
            if state_of(body) != "active":
                continue
            offering, _ = index.offering(offering_of(body))
            if offering is None or not any(p.priceType == "usage" for p in offering.productOfferingPrice):
                continue
            for endpoint in (body.get("spec") or {}).get("endpoints") or []:
                session = sessions.get(endpoint.get("device"))
                if session is None or not getattr(session, "connected", False):
                    continue
                port, vlan = endpoint.get("port"), endpoint.get("vlanId")
                if not isinstance(port, str) or not isinstance(vlan, int):
                    continue  # a malformed endpoint: its Subscription's status says so
                path = counters_path(port, vlan)
                jobs.append((key, f"{endpoint.get('device')}/{port}/{vlan}", session, path.to_proto()))
        limit = asyncio.Semaphore(16)

        async def read(job: tuple[Key, str, Any, Any]) -> tuple[Key, str, dict[str, int]]:
            key, counter, session, path = job
            async with limit:
                try:
                    # In the encoding negotiated with the device: a JSON_IETF-only router refuses JSON.
                    notifications = await session.client.get([path], "STATE", getattr(session, "encoding", "JSON"))
                except Exception as exc:
                    log.debug("usage sample %s failed: %s", counter, exc)
                    return key, counter, {}
            return key, counter, octets(notifications)

        read_count = 0
        for key, counter, values in await asyncio.gather(*(read(j) for j in jobs)):
            for direction, count in values.items():
                index.samples[key][f"{counter}/{direction}"] = Sample(count, now)
                read_count += 1
            if values:
                ctx.queues.subscriptions.mark(key)
        return read_count


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

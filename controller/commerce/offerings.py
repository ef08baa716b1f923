"""The ProductOffering controller: each offering's status (sellable or not, why, how many subscribers),
recomputed on the shared work queue whenever the offering or one of its subscriptions changes, and
again when the offering's sellability changes by the clock (validFor)."""

from __future__ import annotations

from ..kube import Ref
from ..workqueue import WorkQueue
from .context import Context
from .offering import counts_as_active, next_sellability_change, offering_status


class OfferingController:
    def __init__(self, ctx: Context, queue: WorkQueue[str]) -> None:
        self.ctx = ctx
        self.queue = queue

    async def publish(self, name: str) -> None:
        body = self.ctx.index.offerings.get(name)
        if body is None:
            return
        now = self.ctx.clock.now()
        meta = body.get("metadata") or {}
        spec, invalid = self.ctx.index.offering(name)
        active = self.ctx.index.active_count(name, counts_as_active)
        status = offering_status(meta.get("generation", 0), body.get("status"), spec, active, now, invalid=invalid)
        self.ctx.writer.submit(Ref("productofferings", name), status, body.get("status"))
        if spec is not None:
            change = next_sellability_change(spec, now)
            if change is not None:
                self.queue.mark_after(name, (change - now).total_seconds() + 0.5)

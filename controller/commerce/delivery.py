"""Billing delivery: a small loop from the outboxes to the sinks.

Every pending event of every Subscription and Invoice outbox goes to the sinks (`Deliverer`), oldest
first; the ids every sink has are handed to the object's next pass (`index.delivered`), which removes
them from its outbox in its resourceVersion-guarded write. A controller killed in between sends them
again after a restart, under the same ids (at least once; consumers dedupe on source + id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..billing.events import BillingEvent
from ..billing.invoice_events import INVOICE_TYPE_PREFIX
from ..billing.outbox import Outbox
from ..billing.sinks import Deliverer, HttpSink, JsonlSink, Mode, Sink
from ..settings import Settings
from .context import Context
from .index import BILLING_ERRORS
from .objects import Key, billing_of

log = logging.getLogger(__name__)
MAX_DELIVERY_BATCH = 2000
Pending = tuple[datetime, Key, BillingEvent]


def build_deliverer(settings: Settings) -> Deliverer | None:
    """The sinks the flags name: HTTP CloudEvents sinks and a JSON Lines file; None without any."""
    sinks: list[Sink] = []
    mode: Mode = "binary" if settings.billing_sink_mode == "binary" else "structured"
    headers = {"Authorization": settings.billing_sink_auth_header} if settings.billing_sink_auth_header else {}
    tls: ssl.SSLContext | bool = True
    if settings.billing_sink_ca_file:
        try:
            tls = ssl.create_default_context(cafile=settings.billing_sink_ca_file)
        except (OSError, ssl.SSLError) as exc:
            message = f"--billing-sink-ca-file {settings.billing_sink_ca_file}: not a readable PEM CA: {exc}"
            raise ValueError(message) from exc
    for url in dict.fromkeys(settings.billing_sink_urls):
        sinks.append(HttpSink(url, mode=mode, headers=headers, ssl=tls))
    if settings.billing_jsonl:
        sinks.append(JsonlSink(settings.billing_jsonl))
    return Deliverer(sinks) if sinks else None


class DeliveryLoop:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._last_sink_errors: dict[str, str] = {}
        # Each object's deliverable events, parsed and proof-checked once per version of its outbox: every
        # delivery pass looks at every outbox, and a burst of activations would otherwise check each pending
        # event once per pass. The index replaces a body on every change and never edits one in place, so
        # the same outbox object means the same events.
        self._parsed: dict[tuple[str, Key], tuple[Any, list[tuple[datetime, BillingEvent]]]] = {}

    async def run(self) -> None:
        """Deliver whenever a write queued events, and at least every --billing-retry-seconds."""
        signal = self.ctx.outbox_signal
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), timeout=self.ctx.settings.billing_retry_seconds)
            signal.clear()
            try:
                await self.deliver_once()
            except Exception:
                log.exception("billing delivery pass failed")

    def pending_events(self) -> list[Pending]:
        """Every outbox event not yet known to be at every sink, oldest first."""
        index = self.ctx.index
        out: list[Pending] = []
        parsed: dict[tuple[str, Key], tuple[Any, list[tuple[datetime, BillingEvent]]]] = {}
        for key, body in index.outboxes():  # only those holding events: a scan of all would be O(N) per pass
            raw = billing_of(body).get("outbox")
            out += self._deliverable(("s", key), key, raw, index.delivered.get(key, set()), parsed)
        for key, body in list(index.invoices.items()):
            raw = ((body.get("status") or {}).get("outbox")) or {}
            out += self._deliverable(("i", key), key, raw, index.invoice_delivered.get(key, set()), parsed)
        self._parsed = parsed  # outboxes no longer pending (or gone) are dropped
        out.sort(key=lambda item: item[0])
        return out

    def _deliverable(
        self,
        slot: tuple[str, Key],
        key: Key,
        raw: Any,
        done: set[str],
        parsed: dict[tuple[str, Key], tuple[Any, list[tuple[datetime, BillingEvent]]]],
    ) -> list[Pending]:
        if not (raw or {}).get("pending"):
            return []
        cached = self._parsed.get(slot)
        if cached is not None and cached[0] is raw:
            events = cached[1]
        else:
            try:
                box = Outbox.from_status(raw, self.ctx.keyring)
            except (ValidationError, *BILLING_ERRORS):
                return []
            events = [(e.queued_at, e.event) for e in box.deliverable()]
        parsed[slot] = (raw, events)
        return [(at, key, event) for at, event in events if event.id not in done]

    def _outbox_metrics(self, pending: list[Pending]) -> None:
        metrics.OUTBOX_DEPTH.set(len(pending))
        oldest = pending[0][0] if pending else None
        age = (self.ctx.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OUTBOX_OLDEST_SECONDS.set(max(0.0, age))

    async def deliver_once(self) -> int:
        """One delivery pass; returns how many events reached every sink."""
        ctx, index = self.ctx, self.ctx.index
        pending = self.pending_events()
        self._outbox_metrics(pending)
        if not pending or ctx.deliverer is None:
            return 0
        batch = pending[:MAX_DELIVERY_BATCH]
        before = ctx.deliverer.metrics.delivered
        report = await ctx.deliverer.deliver([event for _, _, event in batch])
        metrics.BILLING_DELIVERED.inc(ctx.deliverer.metrics.delivered - before)
        done = set(report.delivered)
        touched: set[Key] = set()
        touched_invoices: set[Key] = set()
        for _, key, event in batch:
            if event.id not in done:
                continue
            if event.type.startswith(INVOICE_TYPE_PREFIX):
                index.invoice_delivered[key].add(event.id)
                touched_invoices.add(key)
            else:
                index.delivered[key].add(event.id)
                touched.add(key)
        for key in touched:
            ctx.queues.subscriptions.mark(key)  # its next write removes them from the outbox
        for key in touched_invoices:
            ctx.queues.invoices.mark(key)  # the same, and an issued bill delivered becomes sent
        if report.errors != self._last_sink_errors:
            for sink, error in report.errors.items():
                log.warning("billing sink %s: %s (%d events stay pending)", sink, error, len(report.pending))
            self._last_sink_errors = dict(report.errors)
        self._outbox_metrics([p for p in pending if p[2].id not in done])
        return len(done)

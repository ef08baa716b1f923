"""What every commerce controller shares: the API client, the status writer, the settings and clock, the
signing keyring, the index of objects, the work queues, and a few I/O helpers they all use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..api.common import validation_message
from ..billing.clock import Clock
from ..billing.outbox import CONDITION_TYPE, Outbox
from ..billing.proof import EXPLANATIONS, Keyring
from ..billing.sinks import Deliverer
from ..conditions import Cond, merge_conditions, stalled
from ..kube import Kube, NotFound, Ref
from ..settings import Settings
from ..statuswriter import StatusWriter
from ..times import rfc3339
from .index import CommerceIndex, Queues
from .objects import stored_conditions

log = logging.getLogger(__name__)
RELEASE_QUARANTINED = "telco.intent.dev/release-quarantined"  # ids, comma-separated (docs/billing.md)


@dataclass
class Context:
    kube: Kube
    writer: StatusWriter
    settings: Settings
    clock: Clock
    keyring: Keyring
    deliverer: Deliverer | None
    index: CommerceIndex
    queues: Queues
    outbox_signal: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the delivery loop
    # Sharded: who holds a device's Lease (None: unknown); the usage counters other replicas publish in a
    # NetworkDevice's status are taken only from that holder (controller/commerce/usage.py).
    holder_of: Callable[[str], str | None] | None = None
    # Sharded: a NetworkDevice's stored status.usage (None: none, or an unknown device).
    device_usage: Callable[[str], Any] | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Any) -> None:
        """Run `coro` (an Event post, say) without waiting for it; close() cancels what is left."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self.spawn(self.kube.event(dict(body), kind, reason, message))

    async def reread(self, ref: Ref) -> None:
        """After a Conflict: take the object as it is now, so the redone pass works on it."""
        key = (ref.namespace or "", ref.name)
        try:
            fresh = await self.kube.get(ref)
        except NotFound:
            if ref.plural == "subscriptions":
                self.index.remove_subscription(*key)
            elif ref.plural == "invoices":
                self.index.remove_invoice(*key)
            return
        if ref.plural == "subscriptions":
            self.index.subscriptions.pop(key, None)  # accept the fresh read whatever its resourceVersion
            self.index.upsert_subscription(fresh)
        else:
            self.index.invoices.pop(key, None)
            self.index.upsert_invoice(fresh)

    async def report_invalid_spec(
        self, ref: Ref, body: Mapping[str, Any], generation: int, exc: ValidationError, now: datetime
    ) -> None:
        """A spec that does not parse (Subscription or Invoice): Ready=False InvalidSpec naming the bad fields."""
        stored = dict(body.get("status") or {})
        message = validation_message(exc)
        kind = "Subscription" if ref.plural == "subscriptions" else "Invoice"
        desired = [
            Cond("Ready", "False", "InvalidSpec", message),
            stalled("InvalidSpec", f"{message}; fix the {kind} spec"),
        ]
        conds = merge_conditions(stored.get("conditions"), desired, generation, now)
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        after = await self.writer.write_checked(
            ref, {"observedGeneration": generation, "conditions": conds}, stored, rv
        )
        if after is not None:
            (self.index.upsert_subscription if ref.plural == "subscriptions" else self.index.upsert_invoice)(after)

    def checked_outbox(self, raw: Any, delivered: Iterable[str], body: Mapping[str, Any], now: datetime) -> Outbox:
        """The object's outbox as this pass may use it: delivered ids removed, the quarantined entries an
        operator released (annotation) signed and pending again, and every pending entry without a valid
        proof of origin moved to quarantine, each reported (log, metric, Warning Event)."""
        box = Outbox.from_status(raw, self.keyring).mark_delivered(delivered)
        meta = body.get("metadata") or {}
        what = f"{body.get('kind') or 'object'} {meta.get('namespace')}/{meta.get('name')}"
        asked = str((meta.get("annotations") or {}).get(RELEASE_QUARANTINED) or "")
        if asked and box.quarantined:
            box, released = box.release(i.strip() for i in asked.split(",") if i.strip())
            if released:
                message = f"released from quarantine by annotation {RELEASE_QUARANTINED}: {', '.join(released)}"
                log.warning("%s: %s", what, message)
                self.event(body, "Warning", "QuarantineReleased", message)
        box, moved = box.quarantine(now)
        for q in moved:
            event = q.entry.event
            message = (
                f"outbox entry {event.id} ({event.type}, source {event.source}) quarantined, not delivered:"
                f" {EXPLANATIONS[q.reason]}"
            )
            log.warning("%s: %s; data %s", what, message, dict(event.data))
            metrics.BILLING_QUARANTINED.inc()
            self.event(body, "Warning", "EventQuarantined", message)
        return box


def delivered_condition(box: Outbox, stored: Mapping[str, Any], generation: int, now: datetime, has_sink: bool) -> Cond:
    """BillingDelivered: how the outbox stands (pending, oldest, full, or nowhere to deliver to)."""
    if box.pending and not has_sink:
        oldest = box.oldest_queued_at()
        since = f" since {rfc3339(oldest)}" if oldest else ""
        return Cond(
            "BillingDelivered",
            "False",
            "NoSinkConfigured",
            f"{box.depth} billing events pending{since}; the controller has no --billing-sink-url or"
            " --billing-jsonl, they stay in the outbox",
        )
    cond = box.condition(now, stored_conditions(stored, CONDITION_TYPE), generation)  # it reads only its own
    return Cond(cond.type, cond.status, cond.reason, cond.message)

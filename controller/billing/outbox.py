"""The durable outbox that lives in Subscription status (pure).

The handler that records a transition adds the events it implies to the outbox and writes
both in one resourceVersion-checked status update, so a fact is never recorded without its
event nor the other way round. A Deliverer then sends the pending events; the ids delivered
to every sink are removed (`mark_delivered`) in a second write. If that write is lost, the
events are sent again under the same ids: delivery is at least once, consumers dedupe on
source + id.

The outbox is bounded. Adding past `MAX_PENDING` raises `OutboxFull` and adds nothing: the
caller must not record the transition either (it retries later) and reports the
BillingDelivered condition as False/OutboxFull. Nothing is dropped.

Every entry carries a proof of origin (billing/proof.py) when a signing key is configured. An entry
without a valid one is moved to `quarantined` (`quarantine`), never delivered, and stays there, visible,
until an operator releases it (`release`, which re-signs it); when the quarantine is full it stays
pending, still undeliverable (`deliverable` skips it): never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ..api.common import Condition
from ..api.subscription import Outbox as OutboxStatus
from ..api.subscription import QuarantinedEvent
from ..times import ensure_utc, to_second
from .events import BillingEvent
from .proof import Keyring

MAX_PENDING = 64
RECENT = 64
MAX_QUARANTINED = 64
CONDITION_TYPE = "BillingDelivered"


class OutboxFull(RuntimeError):
    """The outbox cannot take the events; nothing was added."""

    def __init__(self, pending: int, adding: int) -> None:
        self.pending = pending
        self.adding = adding
        super().__init__(
            f"billing outbox full: {pending} events pending, {adding} more would exceed {MAX_PENDING}; "
            "the transition is not recorded until the sinks accept the pending events"
        )


@dataclass(frozen=True, slots=True)
class Entry:
    event: BillingEvent
    queued_at: datetime
    proof: str | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    entry: Entry
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Outbox:
    """Pending events (oldest first), how many were delivered, and the ids delivered last."""

    pending: tuple[Entry, ...] = field(default=())
    delivered_count: int = 0
    recent: tuple[str, ...] = field(default=())
    quarantined: tuple[Quarantined, ...] = field(default=())
    keyring: Keyring = field(default=Keyring(), compare=False)

    @classmethod
    def from_status(cls, status: OutboxStatus | dict[str, Any] | None, keyring: Keyring | None = None) -> Outbox:
        keys = keyring or Keyring()
        if status is None:
            return cls(keyring=keys)
        model = status if isinstance(status, OutboxStatus) else OutboxStatus.model_validate(status)
        return cls(
            pending=tuple(_entry(e) for e in model.pending),
            delivered_count=model.deliveredCount,
            recent=tuple(model.recentlyDelivered),
            quarantined=tuple(Quarantined(_entry(q), q.reason, ensure_utc(q.quarantinedAt)) for q in model.quarantined),
            keyring=keys,
        )

    def to_status(self) -> OutboxStatus:
        return OutboxStatus(
            pending=[_outbox_event(e) for e in self.pending],
            deliveredCount=self.delivered_count,
            recentlyDelivered=list(self.recent),
            quarantined=[
                QuarantinedEvent(
                    **_outbox_event(q.entry).model_dump(), reason=q.reason, quarantinedAt=to_second(q.at, "at")
                )
                for q in self.quarantined
            ],
        )

    def problem(self, entry: Entry) -> str | None:
        """Why `entry` may not be delivered (no valid proof of origin), or None."""
        return self.keyring.problem(entry.event, entry.proof)

    def deliverable(self) -> list[Entry]:
        """Pending entries with a valid proof (all of them when signing is not configured), oldest first."""
        return [e for e in self.pending if self.problem(e) is None]

    def quarantine(self, now: datetime) -> tuple[Outbox, list[Quarantined]]:
        """Move pending entries without a valid proof to `quarantined` (while it has room); and those moved."""
        room = MAX_QUARANTINED - len(self.quarantined)
        moved: list[Quarantined] = []
        kept: list[Entry] = []
        for entry in self.pending:
            reason = self.problem(entry)
            if reason is not None and len(moved) < room:
                moved.append(Quarantined(entry, reason, to_second(now, "now")))
            else:
                kept.append(entry)
        if not moved:
            return self, []
        return replace(self, pending=tuple(kept), quarantined=self.quarantined + tuple(moved)), moved

    def release(self, ids: Iterable[str]) -> tuple[Outbox, list[str]]:
        """Put the quarantined entries an operator named back in the outbox, signed now; and their ids."""
        wanted = set(ids)
        back = [q.entry for q in self.quarantined if q.entry.event.id in wanted]
        known = set(self.ids)
        back = [e for e in back if e.event.id not in known]
        if not back:
            return self, []
        released = {e.event.id for e in back}
        signed = tuple(replace(e, proof=self.keyring.sign(e.event)) for e in back)
        return (
            replace(
                self,
                pending=self.pending + signed,
                quarantined=tuple(q for q in self.quarantined if q.entry.event.id not in released),
            ),
            sorted(released),
        )

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.event.id for e in self.pending)

    @property
    def depth(self) -> int:
        return len(self.pending)

    def add(self, events: Iterable[BillingEvent], now: datetime) -> Outbox:
        """Add events; an id already pending or just delivered is skipped (idempotent).

        All or nothing: raises OutboxFull when they do not all fit."""
        known = set(self.ids) | set(self.recent)
        new: list[Entry] = []
        queued_at = to_second(now, "now")
        for event in events:
            if event.id in known:
                continue
            known.add(event.id)
            new.append(Entry(event, queued_at, self.keyring.sign(event)))
        if not new:
            return self
        if len(self.pending) + len(new) > MAX_PENDING:
            raise OutboxFull(len(self.pending), len(new))
        return replace(self, pending=self.pending + tuple(new))

    def would_fit(self, events: Iterable[BillingEvent]) -> bool:
        known = set(self.ids) | set(self.recent)
        return len(self.pending) + len({e.id for e in events} - known) <= MAX_PENDING

    def take(self, limit: int | None = None) -> list[BillingEvent]:
        """Deliverable pending events, oldest first (at most `limit`)."""
        entries = self.deliverable()
        return [e.event for e in (entries if limit is None else entries[:limit])]

    def mark_delivered(self, ids: Iterable[str]) -> Outbox:
        """Remove the events delivered to every sink; unknown ids are ignored."""
        done = set(ids)
        removed = [e.event.id for e in self.pending if e.event.id in done]
        if not removed:
            return self
        return replace(
            self,
            pending=tuple(e for e in self.pending if e.event.id not in done),
            delivered_count=self.delivered_count + len(removed),
            recent=(self.recent + tuple(removed))[-RECENT:],
        )

    def oldest_queued_at(self) -> datetime | None:
        return min((e.queued_at for e in self.pending), default=None)

    def oldest_age(self, now: datetime) -> timedelta | None:
        """How long the oldest undelivered event has waited (None when nothing is pending)."""
        oldest = self.oldest_queued_at()
        return None if oldest is None else max(timedelta(0), ensure_utc(now) - oldest)

    def condition(
        self,
        now: datetime,
        previous: Sequence[Condition] = (),
        observed_generation: int | None = None,
        full: bool = False,
    ) -> Condition:
        """The BillingDelivered condition. The message names the oldest pending event's queue time
        (not its age), so the status does not churn; lastTransitionTime moves only on a flip."""
        if self.quarantined:
            status, reason = "False", "Quarantined"
            message = (
                f"{len(self.quarantined)} outbox entries without a valid proof of origin are quarantined, not"
                " delivered (outbox.quarantined); inspect them, then release genuine ones with the annotation"
                " telco.intent.dev/release-quarantined (docs/billing.md)"
            )
        elif full:
            status, reason = "False", "OutboxFull"
            message = f"{self.depth} billing events pending (limit {MAX_PENDING}); new transitions wait for delivery"
        elif self.pending:
            oldest = self.oldest_queued_at()
            assert oldest is not None
            status, reason = "False", "Pending"
            message = f"{self.depth} billing events pending since {oldest.isoformat()}"
        else:
            status, reason = "True", "Delivered"
            message = f"all billing events delivered ({self.delivered_count} in total)"
        since = to_second(now, "now")
        for old in previous:
            if old.type == CONDITION_TYPE and old.status == status:
                since = old.lastTransitionTime
        return Condition(
            type=CONDITION_TYPE,
            status=status,
            observedGeneration=observed_generation,
            lastTransitionTime=since,
            reason=reason,
            message=message,
        )


def _entry(item: Any) -> Entry:
    return Entry(BillingEvent.from_outbox(item), ensure_utc(item.queuedAt), item.proof)


def _outbox_event(entry: Entry) -> Any:
    return entry.event.to_outbox(entry.queued_at).model_copy(update={"proof": entry.proof})

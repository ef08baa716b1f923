"""The service ledger of a subscription: what was delivered, and when.

Two timelines of half-open intervals are recorded from transitions: when the Subscription
was *active* (not suspended, not terminated) and when its NetworkService was *Ready*. The
billable time is their intersection from the first moment both held (`startDate`);
measured unavailability is active time (from startDate) while not Ready. Suspended time
is neither billable nor unavailability.

Times are truncated to whole seconds (Kubernetes timestamps have second precision, and it
makes the ledger round-trip through the API exactly). Transitions are level-triggered:
recording the state that already holds is a no-op, and an instant earlier than what a
timeline already holds (or than `billedThrough`) is clamped forward, so history that was
recorded or invoiced never changes.

Ready transitions come from the NetworkService's bounded `readyTransitions` list (`merge_ready`): every
one the ledger has not seen is recorded, so a watcher that missed status versions (a re-list after an
API server restart) still records the not-Ready stretch they held. When that list was cut past what the
ledger last saw, the stretch in between is unknown and recorded as not Ready (`ready_unknown`).

The ledger is bounded (`MAX_INTERVALS` per timeline). Intervals wholly before an invoiced
instant are compacted into `billedThrough`; asking about compacted time is an error, not
a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..api.subscription import LedgerInterval, ServiceLedger
from ..times import ensure_utc, to_second

MAX_INTERVALS = 128
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
Span = tuple[datetime, datetime]


class LedgerError(ValueError):
    """The ledger cannot answer or record this."""


class LedgerFull(LedgerError):
    """A timeline holds MAX_INTERVALS intervals: invoice and compact before recording more."""


class LedgerCompacted(LedgerError):
    """The question reaches into history that was invoiced and compacted away."""


@dataclass(frozen=True, slots=True)
class Interval:
    """[start, end); end None while it still holds."""

    start: datetime
    end: datetime | None = None

    def span(self, now: datetime) -> Span | None:
        end = self.end if self.end is not None else max(now, self.start)
        return (self.start, end) if end > self.start else None


def _spans(intervals: Iterable[Interval], now: datetime) -> list[Span]:
    return [s for s in (i.span(now) for i in intervals) if s is not None]


def clip(spans: Iterable[Span], start: datetime, end: datetime) -> list[Span]:
    """The parts of `spans` inside [start, end)."""
    out = []
    for s, e in spans:
        s2, e2 = max(s, start), min(e, end)
        if s2 < e2:
            out.append((s2, e2))
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Intersection of two sorted lists of disjoint spans."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Parts of sorted disjoint spans `a` not covered by sorted disjoint spans `b`."""
    out: list[Span] = []
    for s, e in a:
        cursor = s
        for bs, be in b:
            if be <= cursor or bs >= e:
                continue
            if bs > cursor:
                out.append((cursor, bs))
            cursor = max(cursor, be)
            if cursor >= e:
                break
        if cursor < e:
            out.append((cursor, e))
    return out


def total_seconds(spans: Iterable[Span]) -> int:
    return sum(int((e - s).total_seconds()) for s, e in spans)


@dataclass(frozen=True, slots=True)
class ReadyChange:
    """One entry of a NetworkService's status.readyTransitions."""

    at: datetime
    ready: bool


def _record(
    timeline: tuple[Interval, ...], holds: bool, at: datetime, floor: datetime | None, name: str
) -> tuple[tuple[Interval, ...], bool]:
    """Record that the condition holds (or not) from `at`; returns the timeline and whether it changed."""
    last = timeline[-1] if timeline else None
    if last is not None:
        boundary = last.end if last.end is not None else last.start
        floor = boundary if floor is None else max(floor, boundary)
    if floor is not None and at < floor:
        at = floor
    is_open = last is not None and last.end is None
    if holds == is_open:
        return timeline, False
    if holds:
        if last is not None and last.end == at:  # flapped within a second: continue the interval
            return (*timeline[:-1], Interval(last.start, None)), True
        if len(timeline) >= MAX_INTERVALS:
            raise LedgerFull(
                f"ledger.{name}: {MAX_INTERVALS} intervals recorded; invoice and compact the ledger "
                "(the transition is not recorded until then)"
            )
        return (*timeline, Interval(at)), True
    assert last is not None
    if at == last.start:  # held for less than a second: drop it
        return timeline[:-1], True
    return (*timeline[:-1], Interval(last.start, at)), True


@dataclass(frozen=True, slots=True)
class Ledger:
    """Active and Ready timelines of one subscription (immutable: record() returns a new one)."""

    active: tuple[Interval, ...] = field(default=())
    ready: tuple[Interval, ...] = field(default=())
    start_date: datetime | None = None
    billed_through: datetime | None = None
    # Stretches whose Ready state was lost (more transitions than the service's list keeps while we were
    # blind), recorded as not Ready: what the status says about them.
    ready_unknown: tuple[Interval, ...] = field(default=())

    # -- serialisation ---------------------------------------------------------------------
    @classmethod
    def from_status(cls, status: ServiceLedger | dict[str, Any] | None) -> Ledger:
        """From SubscriptionStatus.billing.ledger (model or the dict the API returned)."""
        if status is None:
            return cls()
        model = status if isinstance(status, ServiceLedger) else ServiceLedger.model_validate(status)

        def conv(items: list[LedgerInterval], name: str) -> tuple[Interval, ...]:
            return tuple(
                Interval(
                    to_second(i.start, f"ledger.{name}.start"),
                    to_second(i.end, f"ledger.{name}.end") if i.end else None,
                )
                for i in items
            )

        return cls(
            active=conv(model.active, "active"),
            ready=conv(model.ready, "ready"),
            start_date=to_second(model.startDate, "ledger.startDate") if model.startDate else None,
            billed_through=to_second(model.billedThrough, "ledger.billedThrough") if model.billedThrough else None,
            ready_unknown=conv(model.readyUnknown, "readyUnknown"),
        )

    def to_status(self) -> ServiceLedger:
        return ServiceLedger(
            startDate=self.start_date,
            active=[LedgerInterval(start=i.start, end=i.end) for i in self.active],
            ready=[LedgerInterval(start=i.start, end=i.end) for i in self.ready],
            billedThrough=self.billed_through,
            readyUnknown=[LedgerInterval(start=i.start, end=i.end) for i in self.ready_unknown],
        )

    # -- current state ---------------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return bool(self.active) and self.active[-1].end is None

    @property
    def is_ready(self) -> bool:
        return bool(self.ready) and self.ready[-1].end is None

    # -- recording -------------------------------------------------------------------------
    def record(
        self, at: datetime, *, subscription_active: bool | None = None, service_ready: bool | None = None
    ) -> Ledger:
        """Record the observed state at `at` (level-triggered; None leaves a timeline alone)."""
        at = to_second(at, "at")
        active, ready = self.active, self.ready
        if subscription_active is not None:
            active, _ = _record(active, subscription_active, at, self.billed_through, "active")
        if service_ready is not None:
            ready, _ = _record(ready, service_ready, at, self.billed_through, "ready")
        start_date = self.start_date
        if start_date is None:
            first = intersect(_spans(active, _FAR_FUTURE), _spans(ready, _FAR_FUTURE))
            if first:
                start_date = first[0][0]
        return replace(self, active=active, ready=ready, start_date=start_date)

    def merge_ready(
        self, changes: Sequence[ReadyChange], dropped_through: datetime | None, now: datetime
    ) -> tuple[Ledger, Span | None]:
        """Record every Ready transition of `changes` (the service's list, oldest first) not seen yet, and
        the stretch whose Ready state is unknown, if the list was cut (`dropped_through`: the newest entry
        dropped) at or past what this ledger last saw. That stretch is recorded as not Ready (no charge for
        time not known to be Ready; measured as unavailable) and returned, so the caller can say so.

        Seen = dated before the Ready timeline's last boundary (or billedThrough): the ledger holds only
        transitions, so anything older is already in it or was compacted. An entry at the boundary itself
        is replayed, which is harmless (recording the state that holds is a no-op, and a flap within a
        second is folded as `record` folds it). Applying the same list twice changes nothing."""
        now = to_second(now, "now")
        items = [ReadyChange(min(to_second(c.at, "readyTransitions.at"), now), c.ready) for c in changes]
        last = self.ready[-1] if self.ready else None
        boundary = (last.end or last.start) if last is not None else self.billed_through
        if boundary is not None and self.billed_through is not None:
            boundary = max(boundary, self.billed_through)
        ledger, gap = self, None
        if dropped_through is not None and boundary is not None and items:
            cut = min(to_second(dropped_through, "readyTransitionsDroppedThrough"), now)
            # The newest dropped entry said the opposite of the oldest kept one (entries alternate).
            dropped_ready = not items[0].ready
            if cut > boundary or (cut == boundary and self.is_ready != dropped_ready):
                # From `boundary` to `cut` nothing is known; from `cut` on, the dropped entry's state held.
                known_from = cut if dropped_ready else items[0].at
                ledger = ledger.record(boundary, service_ready=False)
                if dropped_ready:
                    ledger = ledger.record(cut, service_ready=True)
                if known_from > boundary:
                    gap = (boundary, known_from)
                    unknown = (*ledger.ready_unknown, Interval(boundary, known_from))[-MAX_INTERVALS:]
                    ledger = replace(ledger, ready_unknown=unknown)
        for item in items:
            if boundary is None or item.at >= boundary:
                ledger = ledger.record(item.at, service_ready=item.ready)
        return ledger, gap

    def record_active(self, active: bool, at: datetime) -> Ledger:
        return self.record(at, subscription_active=active)

    def record_ready(self, ready: bool, at: datetime) -> Ledger:
        return self.record(at, service_ready=ready)

    # -- questions -------------------------------------------------------------------------
    def _check(self, start: datetime) -> None:
        if self.billed_through is not None and start < self.billed_through:
            raise LedgerCompacted(
                f"ledger: history before billedThrough {self.billed_through.isoformat()} was compacted; "
                f"cannot recompute from {start.isoformat()}"
            )

    def active_spans(self, start: datetime, end: datetime, now: datetime) -> list[Span]:
        """Active time (from startDate) within [start, min(end, now))."""
        start, end, now = ensure_utc(start), ensure_utc(end), ensure_utc(now)
        self._check(start)
        if self.start_date is None:
            return []
        return clip(_spans(self.active, now), max(start, self.start_date), min(end, now))

    def ready_spans(self, start: datetime, end: datetime, now: datetime) -> list[Span]:
        start, end, now = ensure_utc(start), ensure_utc(end), ensure_utc(now)
        self._check(start)
        return clip(_spans(self.ready, now), start, min(end, now))

    def billable(self, start: datetime, end: datetime, now: datetime) -> list[Span]:
        """Billable spans in [start, min(end, now)): active ∩ Ready, from startDate."""
        return intersect(self.active_spans(start, end, now), self.ready_spans(start, end, now))

    def unavailable(self, start: datetime, end: datetime, now: datetime) -> list[Span]:
        """Measured unavailability: active (from startDate) while not Ready."""
        return subtract(self.active_spans(start, end, now), self.ready_spans(start, end, now))

    def billable_seconds(self, start: datetime, end: datetime, now: datetime) -> int:
        return total_seconds(self.billable(start, end, now))

    def active_seconds(self, start: datetime, end: datetime, now: datetime) -> int:
        return total_seconds(self.active_spans(start, end, now))

    def unavailable_seconds(self, start: datetime, end: datetime, now: datetime) -> int:
        return total_seconds(self.unavailable(start, end, now))

    # -- compaction ------------------------------------------------------------------------
    def compact(self, through: datetime) -> Ledger:
        """Forget history before `through` (the end of the last invoiced period)."""
        through = to_second(through, "through")
        if self.billed_through is not None and through <= self.billed_through:
            return self

        def cut(timeline: tuple[Interval, ...]) -> tuple[Interval, ...]:
            kept = []
            for i in timeline:
                if i.end is not None and i.end <= through:
                    continue
                kept.append(Interval(max(i.start, through), i.end))
            return tuple(kept)

        return replace(
            self,
            active=cut(self.active),
            ready=cut(self.ready),
            ready_unknown=cut(self.ready_unknown),
            billed_through=through,
        )

    @property
    def size(self) -> int:
        """Intervals held (the larger timeline), to compare with MAX_INTERVALS."""
        return max(len(self.active), len(self.ready))

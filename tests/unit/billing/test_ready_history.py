"""The Ready history of a NetworkService (status.readyTransitions) and how a Subscription's ledger takes
it in (`Ledger.merge_ready`): every transition not seen yet is recorded, one seen twice counts once, and a
list cut past what the ledger last saw leaves an unknown stretch that is recorded as not Ready."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controller.billing.ledger import Interval, Ledger, ReadyChange
from tests.unit.billing.conftest import utc

T = utc(2026, 12, 2, 18, 0)
NOW = T + timedelta(hours=1)


def s(seconds: int) -> datetime:
    return T + timedelta(seconds=seconds)


def changes(*pairs: tuple[int, bool]) -> list[ReadyChange]:
    return [ReadyChange(s(at), ready) for at, ready in pairs]


def ready_since(at: int) -> Ledger:
    """Active from T, Ready since `at`: what a ledger holds after it saw (at, True)."""
    return Ledger().record(T, subscription_active=True).record(s(at), service_ready=True)


def spans(ledger: Ledger) -> list[tuple[int, int | None]]:
    return [
        (int((i.start - T).total_seconds()), int((i.end - T).total_seconds()) if i.end else None) for i in ledger.ready
    ]


# (ledger before, the service's list, droppedThrough, ready intervals after, unknown stretch)
CASES: dict[str, tuple[Ledger, list[ReadyChange], int | None, list[tuple[int, int | None]], tuple[int, int] | None]] = {
    "nothing new": (ready_since(10), changes((0, False), (10, True)), None, [(10, None)], None),
    # the case of a re-list: the watcher saw Ready since 10 and then Ready since 40
    "an outage between two versions seen": (
        ready_since(10),
        changes((0, False), (10, True), (30, False), (40, True)),
        None,
        [(10, 30), (40, None)],
        None,
    ),
    "a recovery between two versions seen": (
        ready_since(10).record(s(30), service_ready=False),
        changes((10, True), (30, False), (50, True), (52, False)),
        None,
        [(10, 30), (50, 52)],
        None,
    ),
    "a first list on an empty ledger": (
        Ledger(),
        changes((0, False), (10, True), (20, False), (25, True)),
        None,
        [(10, 20), (25, None)],
        None,
    ),
    "a flap within one second folds into the interval": (
        ready_since(10),
        changes((10, True), (20, False), (20, True)),
        None,
        [(10, None)],
        None,
    ),
    "Ready for less than a second is dropped": (
        ready_since(10).record(s(20), service_ready=False),
        changes((10, True), (20, False), (30, True), (30, False)),
        None,
        [(10, 20)],
        None,
    ),
    # cut, but only entries the ledger saw were dropped: the list still starts at or before its boundary
    "cut behind what the ledger saw": (
        ready_since(10),
        changes((10, True), (30, False), (40, True)),
        5,
        [(10, 30), (40, None)],
        None,
    ),
    # the ledger saw (10, True), the dropped entries end with (30, False): nothing unknown after all
    "cut exactly at the boundary with the state the ledger holds": (
        ready_since(10).record(s(30), service_ready=False),
        changes((40, True), (50, False)),
        30,
        [(10, 30), (40, 50)],
        None,
    ),
    # Ready since 10; then changes the ledger never saw, the newest dropped at 60 (False, so 70 says True)
    "cut past the boundary, dropped entry not Ready": (
        ready_since(10),
        changes((70, True), (80, False), (90, True)),
        60,
        [(70, 80), (90, None)],
        (10, 70),
    ),
    # ... the newest dropped at 60 was True (70 says False): Ready from 60 is known, [10, 60) is not
    "cut past the boundary, dropped entry Ready": (
        ready_since(10),
        changes((70, False), (80, True)),
        60,
        [(60, 70), (80, None)],
        (10, 60),
    ),
    "cut past a boundary that was not Ready": (
        ready_since(10).record(s(20), service_ready=False),
        changes((70, False), (80, True)),
        60,
        [(10, 20), (60, 70), (80, None)],
        (20, 60),
    ),
    # the ledger saw (10, True); the same second's (10, False) was dropped, the list goes on with True
    "cut at the boundary with the other state": (
        ready_since(10),
        changes((40, True), (50, False)),
        10,
        [(40, 50)],
        (10, 40),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_merge_ready(case: str) -> None:
    before, listed, dropped, after, unknown = CASES[case]
    merged, gap = before.merge_ready(listed, s(dropped) if dropped is not None else None, NOW)
    assert spans(merged) == after
    assert gap == ((s(unknown[0]), s(unknown[1])) if unknown else None)
    assert list(merged.ready_unknown) == ([Interval(s(unknown[0]), s(unknown[1]))] if unknown else [])
    # idempotent: the same list again (the next watch event, or a pass redone) changes nothing
    again, gap2 = merged.merge_ready(listed, s(dropped) if dropped is not None else None, NOW)
    assert again == merged and gap2 is None


def test_the_unknown_stretch_is_not_billed_and_is_measured_as_unavailable() -> None:
    merged, _ = ready_since(10).merge_ready(changes((70, True), (80, False), (90, True)), s(60), NOW)
    assert merged.billable(T, s(100), NOW) == [(s(70), s(80)), (s(90), s(100))]
    # startDate stays the first Ready moment the ledger saw (10): unavailability counts from there
    assert merged.start_date == s(10)
    assert merged.unavailable(T, s(100), NOW) == [(s(10), s(70)), (s(80), s(90))]


def test_a_longer_list_seen_later_adds_only_what_is_new() -> None:
    first, _ = ready_since(10).merge_ready(changes((10, True), (30, False)), None, NOW)
    later, _ = first.merge_ready(changes((10, True), (30, False), (40, True), (45, False)), None, NOW)
    assert spans(later) == [(10, 30), (40, 45)]


def test_entries_before_billed_through_are_history() -> None:
    compacted = ready_since(10).compact(s(100))
    merged, gap = compacted.merge_ready(changes((10, True), (50, False), (60, True), (120, False)), None, NOW)
    assert spans(merged) == [(100, 120)] and gap is None


def test_an_entry_dated_after_now_is_taken_at_now() -> None:
    merged, _ = ready_since(10).merge_ready(changes((10, True), (7200, False)), None, NOW)
    assert merged.ready[-1].end == NOW


def test_the_unknown_stretches_round_trip_and_are_compacted_with_the_rest() -> None:
    merged, _ = ready_since(10).merge_ready(changes((70, True), (80, False)), s(60), NOW)
    assert Ledger.from_status(merged.to_status()) == merged
    assert merged.compact(s(65)).ready_unknown == (Interval(s(65), s(70)),)
    assert merged.compact(s(75)).ready_unknown == ()

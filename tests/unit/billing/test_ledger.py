"""The service ledger: billable = active ∩ Ready from startDate; unavailability; compaction."""

from __future__ import annotations

import pytest

from controller.billing import ledger as ledger_module
from controller.billing.ledger import Interval, Ledger, LedgerCompacted, LedgerFull, intersect, subtract
from tests.unit.billing.conftest import utc

JAN, FEB = utc(2026, 1, 1), utc(2026, 2, 1)


def test_billing_starts_at_the_first_ready_moment() -> None:
    ledger = Ledger().record(utc(2026, 1, 3), subscription_active=True)  # ordered, not delivered yet
    assert ledger.start_date is None
    assert ledger.billable(JAN, FEB, FEB) == [] and ledger.unavailable(JAN, FEB, FEB) == []
    ledger = ledger.record(utc(2026, 1, 10, 8, 30), service_ready=True)
    assert ledger.start_date == utc(2026, 1, 10, 8, 30)
    assert ledger.billable(JAN, FEB, FEB) == [(utc(2026, 1, 10, 8, 30), FEB)]
    assert ledger.unavailable_seconds(JAN, FEB, FEB) == 0  # waiting for provisioning is not an outage


def test_suspension_and_outage_mid_period() -> None:
    ledger = (
        Ledger()
        .record(utc(2026, 1, 1), subscription_active=True, service_ready=True)
        .record(utc(2026, 1, 10), subscription_active=False)  # suspended
        .record(utc(2026, 1, 12), service_ready=False)  # outage while suspended: not unavailability
        .record(utc(2026, 1, 13), service_ready=True)
        .record(utc(2026, 1, 15), subscription_active=True)  # resumed
        .record(utc(2026, 1, 20), service_ready=False)  # outage while active
        .record(utc(2026, 1, 20, 6), service_ready=True)
    )
    assert ledger.billable(JAN, FEB, FEB) == [
        (utc(2026, 1, 1), utc(2026, 1, 10)),
        (utc(2026, 1, 15), utc(2026, 1, 20)),
        (utc(2026, 1, 20, 6), FEB),
    ]
    assert ledger.unavailable(JAN, FEB, FEB) == [(utc(2026, 1, 20), utc(2026, 1, 20, 6))]
    assert ledger.active_seconds(JAN, FEB, FEB) == (9 + 17) * 86400
    # open intervals stop at now
    assert ledger.billable_seconds(JAN, FEB, utc(2026, 1, 2)) == 86400


def test_termination_ends_billing() -> None:
    ledger = Ledger().record(utc(2026, 1, 5), subscription_active=True, service_ready=True)
    ledger = ledger.record(utc(2026, 1, 25), subscription_active=False)
    assert ledger.billable_seconds(JAN, FEB, utc(2026, 3, 1)) == 20 * 86400
    assert not ledger.is_active and ledger.is_ready


def test_long_outage_is_neither_billed_nor_lost() -> None:
    ledger = Ledger().record(utc(2025, 12, 20), subscription_active=True, service_ready=True)
    ledger = ledger.record(utc(2025, 12, 31), service_ready=False)  # down for all of January
    ledger = ledger.record(utc(2026, 2, 3), service_ready=True)
    assert ledger.billable_seconds(JAN, FEB, FEB) == 0
    assert ledger.unavailable_seconds(JAN, FEB, FEB) == 31 * 86400


def test_recording_is_level_triggered_and_monotonic() -> None:
    ledger = Ledger().record(utc(2026, 1, 1), subscription_active=True, service_ready=True)
    assert ledger.record(utc(2026, 1, 2), service_ready=True) == ledger  # same state: no-op
    # a stale instant is clamped forward: Ready again "on the 3rd" after down on the 5th is a 0 s outage
    late = ledger.record(utc(2026, 1, 5), service_ready=False).record(utc(2026, 1, 3), service_ready=True)
    assert late.ready == ledger.ready
    later = ledger.record(utc(2026, 1, 5), service_ready=False).record(utc(2026, 1, 7), service_ready=True)
    assert later.record(utc(2026, 1, 6), service_ready=False).ready == (Interval(utc(2026, 1, 1), utc(2026, 1, 5)),)
    flap = ledger.record(utc(2026, 1, 5), service_ready=False).record(utc(2026, 1, 5), service_ready=True)
    assert flap.ready == ledger.ready  # down for 0 s: continued
    assert ledger.record(utc(2026, 1, 1, 0, 0, 0), service_ready=False).ready == ()  # held 0 s: dropped


def test_status_round_trip_and_second_precision() -> None:
    ledger = Ledger().record(utc(2026, 1, 1, 0, 0, 1), subscription_active=True, service_ready=True)
    ledger = ledger.record(utc(2026, 1, 2).replace(microsecond=700_000), service_ready=False)
    status = ledger.to_status()
    again = Ledger.from_status(status.model_dump(mode="json"))
    assert again == ledger
    assert again.ready[-1].end == utc(2026, 1, 2)  # truncated to the second


def test_compaction_bounds_the_ledger_and_refuses_old_questions() -> None:
    ledger = Ledger().record(utc(2026, 1, 1), subscription_active=True, service_ready=True)
    for day in range(2, 28):
        ledger = ledger.record(utc(2026, 1, day), service_ready=False).record(utc(2026, 1, day, 1), service_ready=True)
    before = ledger.billable_seconds(FEB, utc(2026, 3, 1), utc(2026, 3, 1))
    compacted = ledger.compact(FEB)
    assert len(compacted.ready) == 1 and compacted.billed_through == FEB
    assert compacted.start_date == utc(2026, 1, 1)
    assert compacted.billable_seconds(FEB, utc(2026, 3, 1), utc(2026, 3, 1)) == before
    with pytest.raises(LedgerCompacted, match=r"billedThrough"):
        compacted.billable(JAN, FEB, FEB)
    # invoiced history cannot change: a transition dated before billedThrough is clamped to it
    down = compacted.record(utc(2026, 1, 15), service_ready=False)
    assert down.ready == () and down.billable_seconds(FEB, utc(2026, 3, 1), utc(2026, 3, 1)) == 0
    assert compacted.compact(JAN) is compacted


def test_a_full_ledger_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "MAX_INTERVALS", 3)
    ledger = Ledger().record(utc(2026, 1, 1), subscription_active=True, service_ready=True)
    ledger = ledger.record(utc(2026, 1, 2), service_ready=False).record(utc(2026, 1, 3), service_ready=True)
    ledger = ledger.record(utc(2026, 1, 4), service_ready=False).record(utc(2026, 1, 5), service_ready=True)
    ledger = ledger.record(utc(2026, 1, 6), service_ready=False)
    with pytest.raises(LedgerFull, match=r"ledger.ready: 3 intervals"):
        ledger.record(utc(2026, 1, 7), service_ready=True)
    assert ledger.compact(utc(2026, 1, 5, 12)).record(utc(2026, 1, 7), service_ready=True).is_ready


def test_span_algebra() -> None:
    a = [(utc(2026, 1, 1), utc(2026, 1, 10)), (utc(2026, 1, 20), utc(2026, 1, 25))]
    b = [(utc(2026, 1, 5), utc(2026, 1, 22))]
    assert intersect(a, b) == [(utc(2026, 1, 5), utc(2026, 1, 10)), (utc(2026, 1, 20), utc(2026, 1, 22))]
    assert subtract(a, b) == [(utc(2026, 1, 1), utc(2026, 1, 5)), (utc(2026, 1, 22), utc(2026, 1, 25))]

"""Sellability of a ProductOffering and the status that reports it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from controller.billing.money import MINOR_UNITS
from controller.commerce.offering import (
    counts_as_active,
    next_sellability_change,
    offering_problems,
    offering_status,
    sellability,
)

from .builders import T0, at, cond, iso, offering

WINDOW = {"startDateTime": iso(at(0)), "endDateTime": iso(at(60))}


def test_launched_active_and_sellable_sells() -> None:
    for status in ("Launched", "Active"):
        verdict = sellability(offering(lifecycleStatus=status), T0)
        assert verdict.sellable
        assert verdict.reason == "Sellable"


@pytest.mark.parametrize("status", ["In Study", "In Design", "In Test"])
def test_not_launched_does_not_sell(status: str) -> None:
    sellable, reason, message = sellability(offering(lifecycleStatus=status), T0)
    assert not sellable
    assert reason == "NotLaunched"
    assert message == f"lifecycleStatus is {status}: only Launched or Active offerings accept orders"


def test_retired_says_existing_subscriptions_keep_running() -> None:
    sellable, reason, message = sellability(offering(lifecycleStatus="Retired"), T0)
    assert (sellable, reason) == (False, "Retired")
    assert message == "lifecycleStatus is Retired: existing subscriptions keep running, new orders are refused"


def test_obsolete_does_not_sell() -> None:
    verdict = sellability(offering(lifecycleStatus="Obsolete"), T0)
    assert (verdict.sellable, verdict.reason) == (False, "Obsolete")


def test_is_sellable_false_does_not_sell() -> None:
    verdict = sellability(offering(isSellable=False), T0)
    assert (verdict.sellable, verdict.reason) == (False, "NotSellable")
    assert "isSellable is false" in verdict.message


def test_valid_for_start_is_inclusive() -> None:
    spec = offering(validFor=WINDOW)
    assert sellability(spec, at(0)).sellable
    before = sellability(spec, at(0) - timedelta(microseconds=1))
    assert (before.sellable, before.reason) == (False, "NotYetValid")
    assert iso(at(0)) in before.message


def test_valid_for_end_is_exclusive() -> None:
    spec = offering(validFor=WINDOW)
    assert sellability(spec, at(60) - timedelta(microseconds=1)).sellable
    ended = sellability(spec, at(60))
    assert (ended.sellable, ended.reason) == (False, "Expired")
    assert iso(at(60)) in ended.message
    assert "existing subscriptions keep running" in ended.message


def test_open_bounds_are_no_bounds() -> None:
    assert sellability(offering(validFor={"startDateTime": iso(at(0))}), at(10**6)).sellable
    assert sellability(offering(validFor={"endDateTime": iso(at(0))}), at(-(10**6))).sellable
    assert sellability(offering(validFor={}), T0).sellable


def test_bounds_compare_across_time_zones_and_naive_now() -> None:
    plus2 = timezone(timedelta(hours=2))
    spec = offering(validFor={"startDateTime": datetime(2025, 3, 1, 14, 0, tzinfo=plus2).isoformat()})  # = T0
    assert sellability(spec, T0).sellable
    assert not sellability(spec, T0 - timedelta(seconds=1)).sellable
    assert sellability(spec, T0.replace(tzinfo=None)).sellable  # naive means UTC


def test_lifecycle_is_reported_before_dates() -> None:
    verdict = sellability(offering(lifecycleStatus="Retired", validFor=WINDOW), at(-5))
    assert verdict.reason == "Retired"


def test_invalid_spec_does_not_sell_and_names_the_field() -> None:
    prices = [
        {
            "name": "fee",
            "priceType": "recurring",
            "recurringChargePeriodType": "month",
            "price": {"unit": "EUR", "value": "10"},
        },
        {"name": "setup", "priceType": "oneTime", "price": {"unit": "USD", "value": "5"}},
    ]
    spec = offering(productOfferingPrice=prices)
    assert offering_problems(spec) == ["productOfferingPrice: all prices must use one currency, found EUR, USD"]
    verdict = sellability(spec, T0)
    assert (verdict.sellable, verdict.reason) == (False, "InvalidSpec")
    assert "one currency" in verdict.message


def test_cel_rules_are_checked_again() -> None:
    spec = offering(
        serviceCandidate={"serviceType": "l2vpn", "bandwidthMbps": 100, "peakBandwidthMbps": 50},
        productOfferingPrice=[
            {"name": "usage", "priceType": "usage", "price": {"unit": "EUR", "value": "1"}},
            {"name": "off", "priceType": "discount"},
        ],
        validFor={"startDateTime": iso(at(10)), "endDateTime": iso(at(0))},
    )
    problems = offering_problems(spec)
    assert "productOfferingPrice: an offering needs at least one recurring price" in problems
    assert "productOfferingPrice[0].unitOfMeasure: a usage price needs it" in problems
    assert "productOfferingPrice[1]: a discount needs exactly one of percentage or price" in problems
    assert any(p.startswith("serviceCandidate.peakBandwidthMbps") for p in problems)
    assert any(p.startswith("validFor.endDateTime") for p in problems)
    assert offering_problems(offering()) == []


def test_offering_status_fields() -> None:
    status = offering_status(3, {}, offering(), 7, T0)
    assert status["observedGeneration"] == 3
    assert status["sellable"] is True
    assert status["activeSubscriptions"] == 7
    assert "new orders are accepted" in status["sellableReason"]
    ready, sell = cond(status, "Ready"), cond(status, "Sellable")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "SpecValid", 3)
    assert (sell["status"], sell["reason"]) == ("True", "Sellable")
    assert ready["lastTransitionTime"] == iso(T0)


def test_retired_offering_is_ready_but_not_sellable() -> None:
    status = offering_status(1, {}, offering(lifecycleStatus="Retired"), 2, T0)
    assert cond(status, "Ready")["status"] == "True"
    assert cond(status, "Sellable")["status"] == "False"
    assert cond(status, "Sellable")["reason"] == "Retired"
    assert status["sellable"] is False
    assert status["sellableReason"].startswith("lifecycleStatus is Retired")


def test_offering_status_is_stable_and_only_flips_move_transition_times() -> None:
    spec = offering(validFor=WINDOW)
    first = offering_status(1, {}, spec, 1, at(1))
    again = offering_status(1, first, spec, 1, at(30))
    assert again == first
    expired = offering_status(1, again, spec, 1, at(61))
    assert cond(expired, "Sellable")["status"] == "False"
    assert cond(expired, "Sellable")["lastTransitionTime"] == iso(at(61))
    assert cond(expired, "Ready")["lastTransitionTime"] == iso(at(1))  # Ready did not flip
    assert offering_status(1, expired, spec, 1, at(90)) == expired


def test_offering_status_unreadable_spec() -> None:
    status = offering_status(2, {}, None, 0, T0, invalid="spec.serviceCandidate: Field required")
    assert cond(status, "Ready")["status"] == "False"
    assert cond(status, "Ready")["reason"] == "InvalidSpec"
    assert "spec.serviceCandidate: Field required" in cond(status, "Ready")["message"]
    assert status["sellable"] is False
    assert cond(status, "Sellable")["reason"] == "InvalidSpec"


def test_offering_status_keeps_what_it_does_not_own() -> None:
    current = {
        "somethingElse": 1,
        "conditions": [{"type": "Audited", "status": "True", "lastTransitionTime": iso(at(-5)), "reason": "Ok"}],
    }
    status = offering_status(1, current, offering(), 0, T0)
    assert status["somethingElse"] == 1
    assert cond(status, "Audited")["reason"] == "Ok"


def test_next_sellability_change() -> None:
    spec = offering(validFor=WINDOW)
    assert next_sellability_change(spec, at(-1)) == at(0)
    assert next_sellability_change(spec, at(0)) == at(60)
    assert next_sellability_change(spec, at(60)) is None
    assert next_sellability_change(offering(), T0) is None


@pytest.mark.parametrize(
    ("state", "active"),
    [
        (None, True),  # not seen yet: it has not ended
        ("created", True),
        ("pendingActive", True),
        ("active", True),
        ("suspended", True),
        ("pendingTerminate", True),
        ("terminated", False),
        ("cancelled", False),
        ("aborted", False),
    ],
)
def test_counts_as_active(state: str | None, active: bool) -> None:
    assert counts_as_active(state) is active


def test_sellability_is_in_utc_even_for_other_zones() -> None:
    tokyo = T0.astimezone(timezone(timedelta(hours=9)))
    spec = offering(validFor=WINDOW)
    assert sellability(spec, tokyo) == sellability(spec, T0.astimezone(UTC))


def test_what_billing_cannot_compute_makes_the_offering_unusable() -> None:
    """Issue 19 cases 4-6: the offering was Ready and sellable, then billing failed every pass."""
    monthly = {"priceType": "recurring", "recurringChargePeriodType": "month", "price": {"unit": "EUR", "value": "1"}}
    spec = offering(
        productOfferingPrice=[
            {**monthly, "name": "fee"},
            {**monthly, "name": "fee", "recurringChargePeriodType": "year"},
        ],
        validFor={"endDateTime": "9999-12-31T23:30:00-01:00"},
    )
    problems = offering_problems(spec)
    assert "productOfferingPrice[1].name: 'fee' is also the name of productOfferingPrice[0];" in problems[0]
    assert problems[1].startswith("validFor.endDateTime: 9999-12-31T23:30:00-01:00 is past the year 9999 in UTC")
    assert len(problems) == 2
    verdict = sellability(spec, T0)
    assert (verdict.sellable, verdict.reason) == (False, "InvalidSpec")
    zzz = offering(productOfferingPrice=[{**monthly, "name": "fee", "price": {"unit": "ZZZ", "value": "1"}}])
    assert offering_problems(zzz) == [
        f"productOfferingPrice[0].price.unit: currency ZZZ is not supported (known: {', '.join(sorted(MINOR_UNITS))})"
    ]

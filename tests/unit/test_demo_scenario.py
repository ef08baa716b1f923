"""The demo's scenario adapts the quick-start to the moment and the machine (controller/demo_scenario.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller import demo_scenario as scenario

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
PARIS = ZoneInfo("Europe/Paris")
PORTS = {"pe1": 41001, "pe2": 41002, "pe3": 41003}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "start", "end", "name"),
    [
        # the first second of a month in the account's zone (Paris, UTC+1 in winter)
        ("2026-12-01T00:00:00+01:00", "2026-11-30T23:00:00Z", "2026-12-01T00:00:00Z", "acme-001-2026-12-adhoc"),
        # the last second of a month in the account's zone: the bill reaches an hour into the next
        ("2027-02-28T23:59:59+01:00", "2027-01-31T23:00:00Z", "2027-03-01T00:00:00Z", "acme-001-2027-02-adhoc"),
        # the last seconds of February in UTC are already March in Paris
        ("2027-02-28T23:59:30Z", "2027-02-28T23:00:00Z", "2027-03-01T01:00:00Z", "acme-001-2027-03-adhoc"),
        # 29 February of a leap year
        ("2028-02-29T12:00:00Z", "2028-01-31T23:00:00Z", "2028-02-29T13:00:00Z", "acme-001-2028-02-adhoc"),
        # 31 December, the last second of the year: the period crosses into the next year
        ("2026-12-31T23:59:59+01:00", "2026-11-30T23:00:00Z", "2027-01-01T00:00:00Z", "acme-001-2026-12-adhoc"),
        # a summer month (UTC+2) and a whole hour exactly: the end is that hour plus the margin
        ("2027-07-15T10:00:00Z", "2027-06-30T22:00:00Z", "2027-07-15T11:00:00Z", "acme-001-2027-07-adhoc"),
    ],
)
def test_the_invoice_covers_the_month_so_far_and_the_demo_hour(now: str, start: str, end: str, name: str) -> None:
    period = scenario.invoice_period(utc(now))
    assert (period.start, period.end) == (utc(start), utc(end))
    assert scenario.invoice_name("acme-001", period) == name


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)))
def test_the_invoice_period_holds_the_next_hour_and_starts_on_a_local_first(now: datetime) -> None:
    period = scenario.invoice_period(now)
    assert period.start <= now and now + scenario.INVOICE_MARGIN <= period.end
    assert period.end - (now + scenario.INVOICE_MARGIN) < timedelta(hours=1)
    local_start = period.start.astimezone(PARIS)
    assert (local_start.day, local_start.hour, local_start.minute, local_start.second) == (1, 0, 0, 0)
    assert local_start <= now.astimezone(PARIS)


def quickstart() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(QUICKSTART.glob("[1-9]*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_adapt_points_devices_at_the_fleets_ports_and_dates_what_is_dated() -> None:
    original = quickstart()
    pristine = copy.deepcopy(original)
    now = utc("2027-02-28T23:59:30Z")
    docs = scenario.adapt(original, now, PORTS)
    assert original == pristine, "adapt must not change the manifests it was given"
    assert len(docs) == len(original)
    devices = {d["metadata"]["name"]: d["spec"]["port"] for d in docs if d["kind"] == "NetworkDevice"}
    assert devices == PORTS
    [invoice] = [d for d in docs if d["kind"] == "Invoice"]
    assert invoice["metadata"]["name"] == "acme-001-2027-03-adhoc"
    assert invoice["spec"]["billingPeriod"] == {
        "startDateTime": "2027-02-28T23:00:00Z",
        "endDateTime": "2027-03-01T01:00:00Z",
    }
    dated = [
        p["validFor"]
        for d in docs
        if d["kind"] == "ProductOffering"
        for p in d["spec"]["productOfferingPrice"]
        if "validFor" in p
    ]
    assert dated, "the quick-start has a dated promotion"
    for valid in dated:
        assert utc(valid["startDateTime"]) <= now < utc(valid["endDateTime"]) - timedelta(days=300)
    # everything else is exactly the example
    undated = [d for d in docs if d["kind"] not in {"NetworkDevice", "Invoice", "ProductOffering"}]
    assert undated == [d for d in pristine if d["kind"] not in {"NetworkDevice", "Invoice", "ProductOffering"}]


def test_adapt_refuses_a_device_the_fleet_does_not_serve() -> None:
    with pytest.raises(ValueError, match="NetworkDevice pe3: the fleet has no device of that name"):
        scenario.adapt(quickstart(), utc("2026-12-01T12:00:00Z"), {"pe1": 1, "pe2": 2})


def line(kind: str, name: str, value: str) -> dict[str, Any]:
    return {"type": kind, "name": name, "taxExcludedAmount": {"unit": "EUR", "value": value}}


def invoice(lines: list[dict[str, Any]], total: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {"lines": lines}
    if total is not None:
        status["taxExcludedAmount"] = {"unit": "EUR", "value": total}
    return {"status": status}


@pytest.mark.parametrize(
    ("bill", "failed"),
    [
        (
            invoice(
                [line("oneTimeCharge", "Installation", "99.00"), line("recurringCharge", "Monthly", "0.12")], "99.12"
            ),
            [],
        ),
        # what the demo printed as "passed" on 2026-12-01: a bill with nothing on it
        (
            invoice([], "0.00"),
            ["the invoice has lines", "it bills the one-time Installation fees", "its total is above zero"],
        ),
        # no status at all: nothing billed and no total to add up to
        (
            {},
            [
                "the invoice has lines",
                "it bills the one-time Installation fees",
                "its total is above zero",
                "its lines add up to its total",
            ],
        ),
        (invoice([line("recurringCharge", "Monthly", "0.12")], "0.12"), ["it bills the one-time Installation fees"]),
        (
            invoice([line("oneTimeCharge", "Installation", "99.00")], "98.00"),
            ["its lines add up to its total"],
        ),
        (
            invoice([line("oneTimeCharge", "Installation", "0.00")], "0.00"),
            ["its total is above zero"],
        ),
    ],
)
def test_invoice_checks_fail_on_an_empty_or_inconsistent_bill(bill: dict[str, Any], failed: list[str]) -> None:
    assert [c.what for c in scenario.invoice_checks(bill) if not c.ok] == failed


def event(kind: str, source: str, id_: str) -> dict[str, Any]:
    return {"type": f"dev.intent.telco.{kind}", "source": source, "id": id_}


@pytest.mark.parametrize(
    ("events", "failed"),
    [
        ([event("subscription.activated.v1", "a", "1"), event("subscription.activated.v1", "b", "2")], []),
        ([event("subscription.activated.v1", "a", "1")], ["one activation event per subscription"]),
        (
            [event("subscription.activated.v1", "a", "1"), event("subscription.activated.v1", "a", "2")],
            ["one activation event per subscription"],
        ),
        (
            [
                event("subscription.activated.v1", "a", "1"),
                event("subscription.activated.v1", "b", "2"),
                event("charge.period.v1", "b", "2"),
            ],
            ["no billing event delivered twice"],
        ),
    ],
)
def test_event_checks(events: list[dict[str, Any]], failed: list[str]) -> None:
    assert [c.what for c in scenario.event_checks(events, subscriptions=2) if not c.ok] == failed


@pytest.mark.parametrize(
    ("ready", "failed"),
    [
        ({"NetworkDevice": (3, 3), "Subscription": (12, 12)}, []),
        ({"NetworkDevice": (2, 3), "Subscription": (12, 12)}, ["every NetworkDevice Ready"]),
        ({"NetworkDevice": (3, 3), "Subscription": (11, 11)}, ["every Subscription Ready"]),
        ({}, ["every NetworkDevice Ready", "every Subscription Ready"]),
    ],
)
def test_ready_checks_compare_with_what_was_applied(ready: dict[str, tuple[int, int]], failed: list[str]) -> None:
    assert [c.what for c in scenario.ready_checks(quickstart(), ready) if not c.ok] == failed

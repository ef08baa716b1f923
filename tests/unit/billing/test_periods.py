"""Billing periods: calendar boundaries in the account's zone, DST-correct."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from controller.billing.periods import Cycle, Period, PeriodError, load_zone
from tests.unit.billing.conftest import utc

HOUR = 3600
DAY = 24 * HOUR


def month(tz: str, year: int, mon: int) -> Period:
    zone = load_zone(tz)
    return Cycle.of("month", 1, tz).period_containing(datetime(year, mon, 15, 12, tzinfo=zone))


@pytest.mark.parametrize(
    ("year", "mon", "days"),
    [(2026, 1, 31), (2026, 4, 30), (2026, 2, 28), (2028, 2, 29), (2100, 2, 28), (2000, 2, 29), (2026, 12, 31)],
)
def test_month_lengths_in_utc(year: int, mon: int, days: int) -> None:
    period = month("UTC", year, mon)
    assert period.start == utc(year, mon, 1)
    assert period.seconds == days * DAY


def test_leap_day_2028_is_in_february() -> None:
    cycle = Cycle.of("month", 1, "Europe/Paris")
    period = cycle.period_containing(utc(2028, 2, 29, 12))
    assert period == Period(utc(2028, 1, 31, 23), utc(2028, 2, 29, 23))
    assert period.contains(utc(2028, 2, 29, 22, 59, 59))
    assert not period.contains(utc(2028, 2, 29, 23))  # 1 March 00:00 Paris
    assert cycle.period_containing(utc(2028, 2, 29, 23)).start == utc(2028, 2, 29, 23)
    day = Cycle.of("day", 1, "UTC").period_containing(utc(2028, 2, 29, 5))
    assert day == Period(utc(2028, 2, 29), utc(2028, 3, 1))


def test_paris_months_start_at_local_midnight_and_follow_dst() -> None:
    march, october, june = (
        month("Europe/Paris", 2026, 3),
        month("Europe/Paris", 2026, 10),
        month("Europe/Paris", 2026, 6),
    )
    assert march.start == utc(2026, 2, 28, 23)  # CET
    assert march.end == utc(2026, 3, 31, 22)  # CEST from 29 March
    assert march.seconds == 31 * DAY - HOUR
    assert october.start == utc(2026, 9, 30, 22)
    assert october.end == utc(2026, 10, 31, 23)
    assert october.seconds == 31 * DAY + HOUR
    assert june.seconds == 30 * DAY


def test_new_york_days_across_dst() -> None:
    cycle = Cycle.of("day", 1, "America/New_York")
    spring = cycle.period_containing(utc(2026, 3, 8, 12))
    fall = cycle.period_containing(utc(2026, 11, 1, 12))
    assert spring == Period(utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)) and spring.seconds == 23 * HOUR
    assert fall == Period(utc(2026, 11, 1, 4), utc(2026, 11, 2, 5)) and fall.seconds == 25 * HOUR
    assert month("America/New_York", 2026, 3).seconds == 31 * DAY - HOUR


def test_weeks_start_on_monday_local() -> None:
    cycle = Cycle.of("week", 1, "Europe/Paris")
    week = cycle.period_containing(utc(2026, 3, 26))  # Thursday
    assert week.start == utc(2026, 3, 22, 23)  # Monday 23 March 00:00 CET
    assert week.seconds == 7 * DAY - HOUR  # contains the spring change
    two = Cycle.of("week", 2, "UTC")
    first = two.period_containing(utc(1970, 1, 5))
    assert first == Period(utc(1970, 1, 5), utc(1970, 1, 19))


def test_multi_month_and_year_anchors() -> None:
    quarter = Cycle.of("month", 3, "UTC").period_containing(utc(2026, 5, 20))
    assert quarter == Period(utc(2026, 4, 1), utc(2026, 7, 1))
    half = Cycle.of("month", 6, "UTC").period_containing(utc(2026, 12, 31, 23))
    assert half == Period(utc(2026, 7, 1), utc(2027, 1, 1))
    year = Cycle.of("year", 1, "Europe/Paris").period_containing(utc(2026, 6, 1))
    assert year == Period(utc(2025, 12, 31, 23), utc(2026, 12, 31, 23))
    two_years = Cycle.of("year", 2, "UTC").period_containing(utc(2027, 6, 1))
    assert two_years == Period(utc(2026, 1, 1), utc(2028, 1, 1))
    days = Cycle.of("day", 10, "UTC").period_containing(utc(1970, 1, 15))
    assert days == Period(utc(1970, 1, 11), utc(1970, 1, 21))


def test_iteration_next_previous_and_next_bill_date() -> None:
    cycle = Cycle.of("month", 1, "Europe/Paris")
    periods = list(cycle.periods(utc(2026, 1, 15), utc(2026, 4, 2)))
    assert [p.start.astimezone(load_zone("Europe/Paris")).month for p in periods] == [1, 2, 3, 4]
    assert all(a.end == b.start for a, b in itertools.pairwise(periods))
    assert cycle.next(periods[0]) == periods[1] and cycle.previous(periods[1]) == periods[0]
    assert cycle.next_bill_date(utc(2026, 1, 15)) == utc(2026, 1, 31, 23)
    assert list(cycle.periods(utc(2026, 1, 15), utc(2026, 1, 15))) == []


def test_bad_definitions_name_the_field() -> None:
    with pytest.raises(PeriodError, match=r"^billingAccount.timeZone: 'Mars/Olympus'"):
        Cycle.of("month", 1, "Mars/Olympus")
    with pytest.raises(PeriodError, match=r"^recurringChargePeriodType"):
        Cycle.of("fortnight", 1, "UTC")
    with pytest.raises(PeriodError, match=r"^recurringChargePeriodLength"):
        Cycle.of("month", 0, "UTC")
    with pytest.raises(PeriodError, match=r"period.end"):
        Period(utc(2026, 1, 2), utc(2026, 1, 1))


def test_period_keys_and_overlap() -> None:
    a = Period(utc(2026, 1, 1), utc(2026, 2, 1))
    b = Period(utc(2026, 1, 20), utc(2026, 3, 1))
    assert a.key == "20260101T000000Z-20260201T000000Z"
    assert a.intersect(b) == Period(utc(2026, 1, 20), utc(2026, 2, 1))
    assert a.intersect(Period(utc(2026, 2, 1), utc(2026, 3, 1))) is None
    assert a.to_api() == {"startDateTime": "2026-01-01T00:00:00Z", "endDateTime": "2026-02-01T00:00:00Z"}
    assert Period(a.start.astimezone(load_zone("Asia/Tokyo")), a.end).start.tzinfo == UTC
    assert a.seconds == 31 * DAY and (a.end - a.start) == timedelta(days=31)


@pytest.mark.parametrize("name", ["EST5EDT", "Etc/GMT+12", "Etc/GMT-14", "America/Port-au-Prince", "UTC"])
def test_zones_the_database_lists_load(name: str) -> None:
    assert load_zone(name).key == name


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "Etc/GMT+13", "posixrules", "localtime", "../etc/passwd"])
def test_names_the_database_does_not_list_are_refused_naming_the_field(name: str) -> None:
    with pytest.raises(PeriodError, match=r"^billingAccount.timeZone: .* is not a known IANA time zone"):
        load_zone(name)

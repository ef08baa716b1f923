"""controller.times: the one RFC 3339 parser and formatter the whole controller uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from controller.times import TimeError, parse_rfc3339, parse_time, rfc3339, to_second

NOON = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-12-01T12:00:00Z", NOON),
        ("2026-12-01T12:00:00z", NOON),  # RFC 3339 allows a lower-case z
        ("2026-12-01T12:00:00+00:00", NOON),
        ("2026-12-01T14:00:00+02:00", NOON),  # another offset: the same instant, in UTC
        ("2026-12-01T07:30:00-04:30", NOON),
        ("2026-12-01T12:00:00.250Z", NOON + timedelta(milliseconds=250)),  # fractional seconds kept
        ("2026-12-01T12:00:00.123456+00:00", NOON + timedelta(microseconds=123456)),
        ("2028-02-29T23:59:59Z", datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)),  # leap day
        ("2026-12-31T23:59:59Z", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, instant: datetime) -> None:
    parsed = parse_rfc3339(text, "metadata.creationTimestamp")
    assert parsed == instant
    assert parsed.tzinfo is UTC  # always in UTC, whatever offset was written
    assert parse_time(text) == instant  # the lenient reader agrees on every well-formed timestamp


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("2026-12-01T12:00:00", "has no time zone"),  # naive: refused, not guessed
        ("2026-12-01", "has no time zone"),
        ("yesterday", "is not an RFC 3339 timestamp such as 2026-12-01T09:30:00Z"),
        ("2026-13-01T00:00:00Z", "is not an RFC 3339 timestamp"),
        ("2026-02-29T00:00:00Z", "is not an RFC 3339 timestamp"),  # 2026 is no leap year
        ("", "expected an RFC 3339 timestamp"),
        (None, "expected an RFC 3339 timestamp"),
        (1764590400, "expected an RFC 3339 timestamp"),
        (NOON, "expected an RFC 3339 timestamp"),  # a datetime is not text
    ],
)
def test_parse_rfc3339_names_the_field(value: Any, complaint: str) -> None:
    with pytest.raises(TimeError, match=r"^metadata\.creationTimestamp: ") as caught:
        parse_rfc3339(value, "metadata.creationTimestamp")
    assert complaint in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError still do


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2026-12-01T12:00:00", NOON),  # lenient: naive is UTC (Kopf's lastseen, old statuses)
        (datetime(2026, 12, 1, 12), NOON),
        (datetime(2026, 12, 1, 14, tzinfo=PLUS_TWO), NOON),
        ("not a time", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_parse_time_is_lenient(value: Any, instant: datetime | None) -> None:
    assert parse_time(value) == instant


@pytest.mark.parametrize(
    ("instant", "text"),
    [
        (NOON, "2026-12-01T12:00:00Z"),
        (datetime(2026, 12, 1, 14, tzinfo=PLUS_TWO), "2026-12-01T12:00:00Z"),  # written in UTC
        (NOON + timedelta(microseconds=999_999), "2026-12-01T12:00:00Z"),  # whole seconds, as Kubernetes stores
        (datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), "2028-02-29T23:59:59Z"),
        (datetime(999, 1, 1, tzinfo=UTC), "0999-01-01T00:00:00Z"),  # four-digit year
    ],
)
def test_rfc3339(instant: datetime, text: str) -> None:
    assert rfc3339(instant) == text
    assert parse_rfc3339(text, "t") == to_second(instant)  # what it writes reads back to the same second


def test_rfc3339_refuses_a_naive_datetime_naming_the_field() -> None:
    with pytest.raises(TimeError, match=r"^period\.end: 2026-12-01T12:00:00 has no time zone"):
        rfc3339(datetime(2026, 12, 1, 12), "period.end")

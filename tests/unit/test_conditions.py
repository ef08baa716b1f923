from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controller.conditions import Cond, condition, is_true, merge_conditions
from controller.statuswriter import differs

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_transition_time_moves_only_when_status_flips() -> None:
    first = merge_conditions(None, [Cond("Ready", "False", "Pending", "waiting")], 1, T0)
    same = merge_conditions(first, [Cond("Ready", "False", "DeviceUnreachable", "pe1 down")], 2, T1)
    assert same[0]["lastTransitionTime"] == "2026-11-01T12:00:00Z"
    assert same[0]["reason"] == "DeviceUnreachable" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(same, [Cond("Ready", "True", "Applied")], 2, T1)
    assert flipped[0]["lastTransitionTime"] == "2026-11-01T12:05:00Z"
    assert is_true({"conditions": flipped}, "Ready")


def test_unmentioned_conditions_are_kept_after_the_decided_ones() -> None:
    first = merge_conditions(None, [Cond("Ready", "True", "Applied"), Cond("Custom", "True", "X")], 1, T0)
    again = merge_conditions(first, [Cond("Ready", "True", "Applied")], 1, T1)
    assert [c["type"] for c in again] == ["Ready", "Custom"]


def test_recomputing_the_same_status_is_not_a_change() -> None:
    conds = merge_conditions(None, [Cond("Ready", "True", "Applied")], 1, T0)
    stored = {"conditions": conds, "state": "active", "readySince": "2026-11-01T12:00:00Z"}
    again = merge_conditions(conds, [Cond("Ready", "True", "Applied")], 1, T1)
    assert not differs({"conditions": again, "state": "active"}, stored)
    assert differs({"conditions": again, "state": "inactive"}, stored)
    # A null in a merge patch deletes: absent and None are the same.
    assert not differs({"state": "active", "startDate": None}, {"state": "active"})


READY = {"type": "Ready", "status": "True", "reason": "Applied"}
DRIFT = {"type": "DriftDetected", "status": "False", "reason": "InSync"}


@pytest.mark.parametrize(
    ("status", "type_", "found"),
    [
        ({"conditions": [DRIFT, READY]}, "Ready", READY),
        ({"conditions": [DRIFT, READY]}, "DriftDetected", DRIFT),
        ({"conditions": [DRIFT, READY]}, "Degraded", None),  # missing type
        ({"conditions": []}, "Ready", None),
        ({"conditions": None}, "Ready", None),  # a null list, as a merge patch leaves it
        ({}, "Ready", None),  # no conditions yet
        (None, "Ready", None),  # no status yet
        ({"conditions": ["junk", 7, None, READY]}, "Ready", READY),  # entries that are not objects are skipped
        ({"conditions": [{"status": "True"}, READY]}, "Ready", READY),  # an entry without a type
    ],
)
def test_condition_finds_the_one_of_its_type(status: dict[str, Any] | None, type_: str, found: Any) -> None:
    assert condition(status, type_) == found


def test_condition_returns_a_copy() -> None:
    status = {"conditions": [dict(READY)]}
    found = condition(status, "Ready")
    assert found is not None
    found["status"] = "False"
    assert status["conditions"][0]["status"] == "True"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"conditions": [READY]}, True),
        ({"conditions": [{**READY, "status": "False"}]}, False),
        ({"conditions": [{**READY, "status": "Unknown"}]}, False),
        ({"conditions": [{"type": "Ready"}]}, False),  # no status at all
        ({"conditions": [DRIFT]}, False),  # missing
        (None, False),
    ],
)
def test_is_true(status: dict[str, Any] | None, expected: bool) -> None:
    assert is_true(status, "Ready") is expected

from __future__ import annotations

import datetime as dt

from controller.conditions import Cond, is_true, merge_conditions
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

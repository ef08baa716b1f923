"""The billing chaos oracle's own reading of Ready (tests/reliability/test_billing_chaos.py `ready_changes`):
what it says was delivered decides whether a bill is called wrong, so it is table-tested here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.reliability.rig import Seen
from tests.reliability.test_billing_chaos import ready_changes, ready_history_disagreements


def at(second: int) -> datetime:
    return datetime(2026, 12, 31, 18, 29, second, tzinfo=UTC)


def entry(second: int, ready: bool, reason: str) -> dict[str, Any]:
    return {"at": at(second).isoformat().replace("+00:00", "Z"), "ready": ready, "reason": reason}


class Versions:
    """The versions of one NetworkService a watch delivered, as a Recorder holds them."""

    def __init__(self, *lists: list[dict[str, Any]], dropped: dict[int, int] | None = None) -> None:
        self.seen = [
            Seen(
                at=0.0,
                type="MODIFIED",
                name="s",
                resource_version=str(i),
                generation=1,
                status={
                    "readyTransitions": listed,
                    **(
                        {"readyTransitionsDroppedThrough": entry(dropped[i], True, "")["at"]}
                        if dropped and i in dropped
                        else {}
                    ),
                },
            )
            for i, listed in enumerate(lists)
        ]

    def of(self, name: str) -> list[Seen]:
        return self.seen


T1, F1, T2 = entry(1, True, "Applied"), entry(1, False, "DeviceUnavailable"), entry(5, True, "Applied")


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        # Each version appends one entry: every entry once.
        (Versions([T1], [T1, F1], [T1, F1, T2]), [(at(1), True), (at(1), False), (at(5), True)]),
        # Back to the same state, with the same reason, in the same second: a change too, though its entry
        # equals an earlier one (the oracle once took it for that one and read the service as not Ready).
        (
            Versions([T1], [T1, F1], [T1, F1, T1], [T1, F1, T1, F1], [T1, F1, T1, F1, T2]),
            [(at(1), True), (at(1), False), (at(1), True), (at(1), False), (at(5), True)],
        ),
        # A version missed by the watch: its entry is still in the next one's list.
        (Versions([T1], [T1, F1, T1]), [(at(1), True), (at(1), False), (at(1), True)]),
        # The list lost its oldest entry (bounded): the others are not counted again.
        (Versions([T1, F1], [F1, T2]), [(at(1), True), (at(1), False), (at(5), True)]),
    ],
)
def test_ready_changes_counts_each_listed_transition_once_by_position(versions: Versions, expected: list) -> None:
    assert ready_changes(versions, "s") == expected  # type: ignore[arg-type]


def test_a_list_cut_past_what_was_seen_makes_the_time_in_between_unknown() -> None:
    earlier, later = entry(2, False, "DeviceUnavailable"), entry(9, False, "DeviceUnavailable")
    versions = Versions([T1, earlier], [later], dropped={1: 8})
    # Not Ready from the last change known (2 s) until the newest dropped entry (8 s, Ready), then not Ready.
    assert ready_changes(versions, "s") == [  # type: ignore[arg-type]
        (at(1), True),
        (at(2), False),
        (at(2), False),
        (at(8), True),
        (at(9), False),
    ]


def test_a_version_whose_condition_is_not_its_lists_newest_entry_is_reported() -> None:
    versions = Versions([T1, F1])
    versions.seen[0].status["conditions"] = [
        {"type": "Ready", "status": "True", "lastTransitionTime": T1["at"], "reason": "Applied"}
    ]
    assert ready_history_disagreements(versions, "s")  # type: ignore[arg-type]
    versions.seen[0].status["readyTransitions"] = [F1, T1]
    assert ready_history_disagreements(versions, "s") == []  # type: ignore[arg-type]

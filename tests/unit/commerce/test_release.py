"""The force-release rule and what a terminating Subscription says while it holds its finalizer."""

from __future__ import annotations

from typing import Any

import pytest

from controller.commerce.release import FORCE_RELEASE, MAX_REASON, force_release, holding


@pytest.mark.parametrize(
    ("annotations", "deleting", "honoured", "refused"),
    [
        (None, True, None, None),
        ({"other": "x"}, True, None, None),
        ({FORCE_RELEASE: "currency ZZZ cannot be billed"}, True, True, None),
        ({FORCE_RELEASE: "currency ZZZ cannot be billed"}, False, False, "only on a terminating object"),
        ({FORCE_RELEASE: "   "}, True, False, "give the reason"),
        ({FORCE_RELEASE: ""}, True, False, "give the reason"),
        ({FORCE_RELEASE: "x" * (MAX_REASON + 1)}, True, False, f"at most {MAX_REASON}"),
    ],
)
def test_force_release_is_honoured_only_on_a_terminating_object_with_a_reason(
    annotations: dict[str, Any] | None, deleting: bool, honoured: bool | None, refused: str | None
) -> None:
    verdict = force_release(annotations, deleting)
    if honoured is None:
        assert verdict is None
        return
    assert verdict is not None and verdict.honoured is honoured
    if refused is None:
        assert verdict.refused is None and verdict.reason == "currency ZZZ cannot be billed"
    else:
        assert verdict.refused is not None and refused in verdict.refused
        assert FORCE_RELEASE in verdict.refused  # names the field


@pytest.mark.parametrize(
    ("closed", "drained", "quarantined", "error", "reason", "hint"),
    [
        (False, True, 0, "MoneyError: currency: 'ZZZ' is not supported", "BillingError", True),
        (False, True, 0, None, "ClosingPeriods", False),
        (True, False, 2, None, "Quarantined", True),
        (True, False, 0, None, "Delivering", False),
        (True, True, 0, None, "Terminating", False),
    ],
)
def test_what_holds_the_finalizer_is_named(
    closed: bool, drained: bool, quarantined: int, error: str | None, reason: str, hint: bool
) -> None:
    got_reason, message = holding(closed, drained, quarantined, error)
    assert got_reason == reason
    assert (FORCE_RELEASE in message) is hint
    if error:
        assert error in message and "retried" in message

"""Why a terminating Subscription still holds its finalizer, and the operator's way out (pure).

A Subscription's finalizer goes once its final state is recorded, every billing period that can be charged
is closed and every outbox entry is delivered (runtime.py). A billing error (a currency the code cannot
compute with, a price it cannot rate, ...) keeps a period open; the pass reports it in the `Released`
condition and retries at every billing pass. When it cannot succeed, an operator completes the deletion
with the annotation `telco.intent.dev/force-release: <reason>`, honoured only on a terminating object,
recorded in a Warning Event and the log with what is abandoned (docs/commerce.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORCE_RELEASE = "telco.intent.dev/force-release"
MAX_REASON = 256


@dataclass(frozen=True)
class ForceRelease:
    """The annotation's verdict: honoured (with the operator's reason) or why not."""

    honoured: bool
    reason: str = ""
    refused: str | None = None  # why an annotation that is present is not honoured


def force_release(annotations: Mapping[str, Any] | None, deleting: bool) -> ForceRelease | None:
    """The force-release asked for by `annotations` (None when not asked)."""
    if not annotations or FORCE_RELEASE not in annotations:
        return None
    reason = str(annotations.get(FORCE_RELEASE) or "").strip()
    where = f"metadata.annotations[{FORCE_RELEASE}]"
    if not deleting:
        return ForceRelease(False, reason, f"{where}: honoured only on a terminating object (delete it first)")
    if not reason:
        return ForceRelease(
            False, reason, f"{where}: give the reason for the audit trail, e.g. 'currency ZZZ unbillable'"
        )
    if len(reason) > MAX_REASON:
        return ForceRelease(False, reason, f"{where}: {len(reason)} characters, at most {MAX_REASON}")
    return ForceRelease(True, reason)


def holding(closed: bool, drained: bool, quarantined: int, billing_error: str | None) -> tuple[str, str]:
    """The reason and message of Released=False on a terminating Subscription that keeps its finalizer."""
    hint = f"; to complete the deletion anyway: kubectl annotate subscription <name> {FORCE_RELEASE}='<reason>'"
    if billing_error is not None:
        return (
            "BillingError",
            f"the final billing period cannot be closed: {billing_error}; retried every billing pass{hint}",
        )
    if not closed:
        return "ClosingPeriods", "closing the remaining billing periods"
    if quarantined:
        return "Quarantined", f"{quarantined} quarantined outbox entries wait for an operator (docs/billing.md){hint}"
    if not drained:
        return "Delivering", "waiting for the billing sinks to accept the pending events"
    return "Terminating", "waiting for the final state and its NetworkService's removal"

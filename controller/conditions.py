"""Kubernetes-style conditions (metav1.Condition), computed without I/O.

lastTransitionTime changes only when a condition's status flips, so recomputing the
same state yields the same object and the controller writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .times import rfc3339

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Cond:
    """A condition as the controller decides it, before transition bookkeeping."""

    type: str
    status: Status
    reason: str
    message: str = ""


def merge_conditions(
    current: list[dict[str, Any]] | None, desired: list[Cond], generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """The conditions list after applying `desired`; conditions not mentioned are kept."""
    by_type = {c["type"]: dict(c) for c in current or []}
    for cond in desired:
        old = by_type.get(cond.type)
        flipped = old is None or old.get("status") != cond.status
        by_type[cond.type] = {
            "type": cond.type,
            "status": cond.status,
            "observedGeneration": generation,
            "lastTransitionTime": rfc3339(now) if flipped else old["lastTransitionTime"],  # type: ignore[index]
            "reason": cond.reason,
            "message": cond.message[:32768],
        }
    order = [c.type for c in desired] + [t for t in by_type if t not in {c.type for c in desired}]
    return [by_type[t] for t in order]


def condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """A copy of the condition of type `type_` in an object's `status`; None if it has none.

    Kubernetes keeps one condition per type (the list is a map keyed by type); entries that are
    not objects are skipped."""
    for cond in (status or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return dict(cond)
    return None


def is_true(status: Mapping[str, Any] | None, type_: str) -> bool:
    """Whether `status` holds a condition of type `type_` with status True."""
    cond = condition(status, type_)
    return bool(cond and cond.get("status") == "True")


# kstatus (sigs.k8s.io/cli-utils: Flux, kpt, `kubectl wait`) reads a custom resource as Failed when its
# Stalled condition is True and as Current when Ready is True; Ready=False alone reads as InProgress.
# Every kind therefore writes Stalled: True exactly when a person must act (a refusal or failure that
# waiting cannot fix), with a message naming what is wrong and what to do. Argo CD's health scripts
# read the same condition, so both tools agree.
NOT_STALLED = Cond("Stalled", "False", "AsExpected", "")


def stalled(reason: str, message: str) -> Cond:
    """The Stalled=True condition: a person must act on `message` before anything progresses."""
    return Cond("Stalled", "True", reason, message)


def stalled_transition(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The Stalled condition of `after` when it newly reads True (or True for another reason) compared
    with `before`: what deserves one Warning event. None when nothing turned stalled."""
    new = condition(after, "Stalled")
    if not new or new.get("status") != "True":
        return None
    old = condition(before, "Stalled")
    if old and old.get("status") == "True" and old.get("reason") == new.get("reason"):
        return None
    return new

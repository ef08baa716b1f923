"""The device pass: one pure function from what a device holds and who wants what on it to what to send.

Both the reconciler and `python -m controller plan` call it, so a plan can never disagree with what the
controller does. Inputs: the observed tree, the member services (their entries in the device's form, their
precedence, whether each is a dry run, reports drift instead of reverting it, or has a spec already
verified), what services owned that may no longer be needed, which shared entries the controller created,
and refusals that still stand. Outputs: the refusals, the merged intent, the assessment (Set plan and
drift), the Set to send, each dry run's plan, and the drift a send would revert.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..intent import (
    Assessment,
    Claim,
    DeviceIntent,
    GPath,
    ManagedEntry,
    MergeResult,
    Observed,
    OwnedLeaves,
    ServiceKey,
    SetPlan,
    assess,
    merge,
    plan,
    preflight,
)

Refusal = tuple[str, str]  # reason, message
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Member:
    """One service on the device, as the pass needs it."""

    key: ServiceKey
    precedence: dt.datetime  # see `precedence`
    entries: tuple[ManagedEntry, ...]  # on this device, in the form its models take
    dry_run: bool = False
    report_only: bool = False  # driftPolicy report with a verified spec: drift is reported, not reverted
    settled: bool = True  # its current spec was verified here: a difference is drift, not its own change


@dataclass(frozen=True)
class DevicePass:
    intent: DeviceIntent
    refused: Mapping[ServiceKey, Refusal]
    assessment: Assessment  # of the services in scope
    send: SetPlan  # the assessment's plan without reverting report-only drift
    dry_runs: Mapping[ServiceKey, SetPlan] = field(default_factory=dict)
    reverted: Mapping[ServiceKey, str] = field(default_factory=dict)  # drift `send` puts back, by service


def precedence(created: dt.datetime, applied_here: bool) -> dt.datetime:
    """When a service's claim on a device counts from. A service already configured there keeps its claim
    against any newcomer: creation times have one-second resolution, and a tie would otherwise go by
    name and could take a working service's port away."""
    return EPOCH if applied_here else created


def applied_in_status(status: Mapping[str, Any], device: str) -> bool:
    """Whether a NetworkService status says the service is configured on `device`."""
    return any(e.get("applied") and e.get("device") == device for e in status.get("endpoints", []) or [])


def device_pass(
    device: str,
    observed: Observed,
    members: Iterable[Member],
    *,
    retired: OwnedLeaves | None = None,
    created: Collection[GPath] = (),
    refused: Mapping[ServiceKey, Refusal] | None = None,
    scope: Collection[ServiceKey] | None = None,
    merge_claims: Callable[[list[Claim]], MergeResult] | None = None,
) -> DevicePass:
    """Preflight -> merge -> assess -> the Set to send, and dry-run plans.

    `scope`: the services whose entries this pass compares (None: all); `refused`: refusals that stand
    without a new look; `merge_claims`: merge() or a cached equivalent for the same claims.
    """
    mine = list(members)
    refusals = dict(refused or {})
    do_merge = merge_claims or (lambda claims: merge(device, claims))
    checked = [e for m in mine if scope is None or m.key in scope for e in m.entries]
    refusals.update(
        (owner, ("PortNotFound" if any("port" in p for p in problems) else "PreflightFailed", "; ".join(problems)))
        for owner, problems in preflight(device, checked, observed).items()
    )
    applying = [m for m in mine if not m.dry_run]
    claims = [Claim(m.key, m.precedence, m.entries) for m in applying if m.key not in refusals]
    intent, conflicts = do_merge(claims)
    for conflict in conflicts:
        refusals.setdefault(conflict.service, ("ConflictingClaim", conflict.message))
    checking = intent if scope is None else restricted(intent, scope)
    assessment = assess(checking, observed, retired, created, intent.needed)
    report_only = {m.key for m in applying if m.report_only}
    settled = {m.key for m in applying if m.settled}
    reverted: dict[ServiceKey, str] = {}
    for drift in assessment.drifts:
        for owner in drift.owners:
            if owner in settled and owner not in report_only:
                reverted.setdefault(owner, drift.description)

    dry_runs: dict[ServiceKey, SetPlan] = {}
    for m in mine:  # what the Set would carry if the service were applied now
        if m.dry_run and m.key not in refusals and (scope is None or m.key in scope):
            dry = merge(device, [*claims, Claim(m.key, m.precedence, m.entries)])
            lost = [c for c in dry.conflicts if c.service == m.key]
            if lost:
                refusals[m.key] = ("ConflictingClaim", lost[0].message)
                continue
            own = plan(restricted(dry.intent, {m.key}), observed, created=created, needed=dry.intent.needed)
            dry_runs[m.key] = own.for_owner(m.key)
    send = without_reverts(assessment.plan, report_only)
    return DevicePass(intent, refusals, assessment, send, dry_runs, reverted)


def restricted(intent: DeviceIntent, keys: Collection[ServiceKey]) -> DeviceIntent:
    """The part of `intent` that the services `keys` own (alone or shared)."""
    return DeviceIntent(intent.device, {p: e for p, e in intent.entries.items() if any(o in keys for o in e.owners)})


def without_reverts(full: SetPlan, report_only: Collection[ServiceKey]) -> SetPlan:
    """The plan minus the drift repairs of `report` services; removing what a service no longer
    needs (an endpoint it moved away from) is not a drift repair and always goes."""
    kept = full.without_owners(report_only)
    return SetPlan(full.device, full.deletes, kept.replaces, kept.updates)

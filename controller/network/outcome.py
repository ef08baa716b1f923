"""What a device reconcile concluded about each endpoint, and the status it implies.

Pure: the reconciler produces `EndpointOutcome`s; `service_status` turns a service's
outcomes into its NetworkService status (conditions, TMF638 state and operating
status, per-endpoint detail). Equal inputs give an equal status, so the status
writer sees no change and writes nothing when nothing changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..api.networkservice import READY_HISTORY
from ..conditions import NOT_STALLED, Cond, condition, merge_conditions, stalled
from ..times import rfc3339


class Phase(StrEnum):
    """Where one endpoint stands, from best to worst."""

    APPLIED = "Applied"  # device holds the intent, verified by read-back
    DISABLED = "AdminDisabled"  # applied with the subinterface shut (suspended service)
    DRY_RUN = "DryRun"  # planned only
    PENDING = "Pending"  # not yet reconciled
    RETRYING = "Retrying"  # a transient failure; retried with backoff
    FAILED = "Failed"  # permanent: the device or a conflict refused it; fix the spec


@dataclass(frozen=True, slots=True)
class EndpointOutcome:
    device: str
    port: str
    vlan_id: int
    phase: Phase
    reason: str  # CamelCase, e.g. Applied, DeviceUnreachable, PortNotFound, ConflictingClaim
    message: str = ""
    oper_up: bool | None = None  # None: the device has not reported the subinterface's oper-status
    oper_required: bool = True  # False: the platform never reports it (NetworkDevice reportsOperStatus)
    drift: str | None = None  # what differs while the policy is `report`


@dataclass
class ServiceView:
    """The inputs `service_status` needs besides outcomes."""

    generation: int
    admin_enabled: bool
    dry_run: bool
    current: dict[str, Any] = field(default_factory=dict)  # the status stored now
    invalid: str | None = None  # a spec the controller cannot use, with the reason
    plan: list[dict[str, Any]] = field(default_factory=list)


def service_status(view: ServiceView, outcomes: list[EndpointOutcome], now: datetime) -> dict[str, Any]:
    current = view.current or {}
    conds: list[Cond]
    endpoints = [
        {
            "device": o.device,
            "port": o.port,
            "vlanId": o.vlan_id,
            "applied": o.phase in (Phase.APPLIED, Phase.DISABLED),
            **({"operStatus": "UP" if o.oper_up else "DOWN"} if o.oper_up is not None else {}),
            **({"lastError": o.message} if o.phase in (Phase.FAILED, Phase.RETRYING) and o.message else {}),
        }
        for o in outcomes
    ]
    drifts = [o for o in outcomes if o.drift]
    failed = [o for o in outcomes if o.phase is Phase.FAILED]
    retrying = [o for o in outcomes if o.phase in (Phase.RETRYING, Phase.PENDING)]
    applied = bool(outcomes) and all(o.phase in (Phase.APPLIED, Phase.DISABLED) for o in outcomes)
    down = [o for o in outcomes if o.phase is Phase.APPLIED and o.oper_up is False]
    unknown = [o for o in outcomes if o.phase is Phase.APPLIED and o.oper_up is None and o.oper_required]

    if view.invalid is not None:
        state, operating = "designed", "failed"
        conds = [
            Cond("Ready", "False", "InvalidSpec", view.invalid),
            Cond("Progressing", "False", "InvalidSpec", "waiting for the spec to be fixed"),
            Cond("Degraded", "True", "InvalidSpec", view.invalid),
        ]
    elif view.dry_run:
        state, operating = "designed", "pending"
        n = len(view.plan)
        msg = f"dry run: the Set would carry {n} operation(s), see status.plan" if n else "dry run: devices match"
        # The plan is what a dry run asks for: computed, it is the desired outcome (Ready), unless a port fails.
        conds = [
            Cond("Ready", "False", failed[0].reason, _summary(failed))
            if failed
            else Cond("Ready", "True", "DryRun", msg),
            Cond("Progressing", "False", "DryRun", msg),
            Cond(
                "Degraded",
                "True" if failed else "False",
                failed[0].reason if failed else "DryRun",
                _summary(failed) if failed else "",
            ),
        ]
    elif failed:
        state, operating = "reserved", "failed"
        conds = [
            Cond("Ready", "False", failed[0].reason, _summary(failed)),
            Cond("Progressing", "False", failed[0].reason, "fix the spec or the device; nothing is retried until then"),
            Cond("Degraded", "True", failed[0].reason, _summary(failed)),
        ]
    elif not applied:
        worst = retrying[0] if retrying else None
        reason = worst.reason if worst else "Pending"
        state, operating = "reserved", "starting"
        conds = [
            Cond("Ready", "False", reason, _summary(retrying) or "waiting for the devices"),
            Cond("Progressing", "True", reason, _summary(retrying) or "waiting for the devices"),
            Cond("Degraded", "False", "AsExpected", ""),
        ]
    elif not view.admin_enabled:
        state, operating = "inactive", "stopped"
        conds = [
            Cond("Ready", "False", "AdminDisabled", "the service is configured with its subinterfaces shut down"),
            Cond("Progressing", "False", "AdminDisabled", ""),
            Cond("Degraded", "False", "AsExpected", ""),
        ]
    elif down:
        state, operating = "active", "degraded"
        conds = [
            Cond("Ready", "False", "OperDown", _summary(down, "oper-status DOWN")),
            Cond("Progressing", "False", "OperDown", "configuration applied; waiting for the link"),
            Cond("Degraded", "True", "OperDown", _summary(down, "oper-status DOWN")),
        ]
    elif unknown:
        # Configured, but nothing says the link carries traffic: Ready promises UP, not "no news".
        state, operating = "active", "starting"
        what = "oper-status not reported by the device"
        conds = [
            Cond("Ready", "False", "OperStatusUnknown", _summary(unknown, what)),
            Cond("Progressing", "True", "OperStatusUnknown", "configuration applied; waiting for the oper-status"),
            Cond("Degraded", "False", "AsExpected", ""),
        ]
    else:
        state, operating = "active", "running"
        conds = [
            Cond("Ready", "True", "Applied", f"configured and verified on {len(outcomes)} endpoint(s)"),
            Cond("Progressing", "False", "Applied", ""),
            Cond("Degraded", "False", "AsExpected", ""),
        ]
    if drifts:
        conds.append(Cond("DriftDetected", "True", "DriftDetected", _summary(drifts, None)))
    elif failed or view.invalid is not None:
        # Nothing was compared: "in sync" beside a refusal would contradict it.
        reason = "InvalidSpec" if view.invalid is not None else failed[0].reason
        conds.append(Cond("DriftDetected", "Unknown", reason, "not compared while the configuration is refused"))
    else:
        conds.append(Cond("DriftDetected", "False", "InSync", ""))
    degraded = next(c for c in conds if c.type == "Degraded")
    conds.append(
        stalled(degraded.reason, f"{degraded.message}; {_ADVICE.get(degraded.reason, _FIX)}")
        if degraded.status == "True"
        else NOT_STALLED
    )
    # A dry run configures nothing: it never starts the service (startDate is when it first carried traffic).
    ready = conds[0].status == "True" and not view.dry_run
    status: dict[str, Any] = {
        "observedGeneration": view.generation,
        "conditions": merge_conditions(current.get("conditions"), conds, view.generation, now),
        "state": state,
        "operatingStatus": operating,
        "endpoints": endpoints,
        "plan": view.plan if view.dry_run else [],
    }
    status.update(ready_history(current, status["conditions"]))
    start = current.get("startDate")
    if ready:
        status["startDate"] = start or rfc3339(now)
        status["readySince"] = current.get("readySince") or rfc3339(now)
    else:
        if start:
            status["startDate"] = start
        status["readySince"] = None
    return status


def ready_history(current: Mapping[str, Any], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """`readyTransitions` and `readyTransitionsDroppedThrough` for a status whose conditions become
    `conditions`: the stored list, plus an entry when the Ready condition's status changes (its first
    appearance included), the oldest dropped beyond READY_HISTORY. Written in the same status write as the
    condition, so a watcher that misses versions (a re-list) still learns every change (docs/billing.md)."""
    kept = [t for t in current.get("readyTransitions") or [] if isinstance(t, Mapping) and t.get("at")]
    dropped = current.get("readyTransitionsDroppedThrough")
    before = condition(current, "Ready")
    after = next((c for c in conditions if c.get("type") == "Ready"), None)
    if after is not None and (before is None or (before.get("status") == "True") != (after["status"] == "True")):
        kept.append(
            {"at": after["lastTransitionTime"], "ready": after["status"] == "True", "reason": after["reason"][:128]}
        )
    if len(kept) > READY_HISTORY:
        dropped = kept[-READY_HISTORY - 1]["at"]
        kept = kept[-READY_HISTORY:]
    return {"readyTransitions": kept, "readyTransitionsDroppedThrough": dropped}


_FIX = "fix the NetworkService spec or the device; nothing is retried until then"
_ADVICE = {
    "InvalidSpec": "fix the NetworkService spec",
    "OperDown": "the configuration is applied but the link is down: check the cable, the optics and the far end",
}


def _summary(outcomes: list[EndpointOutcome], what: str | None = "") -> str:
    parts = []
    for o in outcomes[:4]:
        text = o.drift if what is None else (what or o.message or o.reason)
        parts.append(f"{o.device}/{o.port}.{o.vlan_id}: {text}")
    more = f" (+{len(outcomes) - 4} more)" if len(outcomes) > 4 else ""
    return "; ".join(parts) + more

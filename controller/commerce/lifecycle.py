"""The Subscription state machine (TMF637 Product status) as one pure function.

`step(inputs)` takes everything the controller observed (the stored status, the spec, the offering,
the owned NetworkService, the payment hold, the time) and decides the next state, what to do with the
NetworkService, which facts happened, and the whole status to write. It is level-triggered and
idempotent: applied to its own output status with the same inputs it returns the same status and no
facts, so a controller that re-runs it on every event or resync never records a fact twice.

    created -> pendingActive -> active <-> suspended -> pendingTerminate -> terminated
    created/pendingActive -> cancelled (terminated before activation)
    pendingActive -> aborted (the NetworkService failed permanently) -> pendingActive (spec fixed)

Facts name what happened and when; `controller.billing` turns them into events and charges.
`activated` is dated by the NetworkService's first Ready moment, not by when the controller noticed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

from ..api.common import CONDITION_REASON
from ..api.networkservice import NetworkServiceSpec
from ..api.productoffering import ProductOfferingSpec
from ..api.subscription import SubscriptionSpec, SubscriptionState
from ..conditions import NOT_STALLED, Cond, Status, condition, is_true, merge_conditions, stalled
from ..times import parse_time, rfc3339, utc, whole_seconds
from .offering import Sellability, next_sellability_change, sellability
from .order import EndpointConflict, OrderError

STATES: tuple[SubscriptionState, ...] = get_args(SubscriptionState)
FINAL_STATES: frozenset[SubscriptionState] = frozenset({"terminated", "cancelled", "aborted"})
# States in which the NetworkService should exist.
SERVICE_STATES: frozenset[SubscriptionState] = frozenset({"pendingActive", "active", "suspended"})
# States of an accepted order: a retired or unsellable offering no longer matters to them.
ACCEPTED_STATES: frozenset[SubscriptionState] = frozenset({"pendingActive", "active", "suspended", "pendingTerminate"})

FactKind = Literal["activated", "suspended", "resumed", "terminated", "cancelled", "aborted"]
BILLING_FACTS: frozenset[str] = frozenset({"activated", "suspended", "resumed", "terminated"})
ChildVerb = Literal["none", "apply", "set_admin", "delete"]
_REASON = re.compile(CONDITION_REASON)
_MAX_TRANSITIONS = 8  # the longest chain is created -> pendingActive -> active -> suspended -> pendingTerminate


@dataclass(frozen=True)
class ServiceObservation:
    """What the controller sees of the NetworkService the Subscription owns."""

    exists: bool = False
    deleting: bool = False  # metadata.deletionTimestamp is set
    ready: Status | None = None  # its Ready condition's status; None: no Ready condition yet
    ready_reason: str = ""
    ready_message: str = ""
    ready_since: datetime | None = None  # its Ready condition's lastTransitionTime
    first_ready_at: datetime | None = None  # its status.startDate: when it first became Ready
    # Its status.readyTransitions (at, ready), oldest first, and readyTransitionsDroppedThrough: what a
    # pass that missed status versions (a watch re-list) learns the Ready changes from.
    ready_transitions: tuple[tuple[datetime, bool], ...] = ()
    ready_dropped_through: datetime | None = None
    degraded: bool = False  # its Degraded condition is True: a permanent failure
    degraded_reason: str = ""
    degraded_message: str = ""
    degraded_since: datetime | None = None
    # Its status describes the spec this Subscription wants now: status.observedGeneration equals
    # metadata.generation and its spec matches the rendered one (adminState aside). A stale Degraded
    # (from before a fix was applied) is not a permanent failure.
    current: bool = True


@dataclass(frozen=True)
class SubscriptionInputs:
    """Everything `step` decides from. The caller gathers it; nothing here does I/O."""

    name: str  # metadata.name; also the NetworkService's name
    generation: int  # metadata.generation seen at the start of the reconcile
    spec: SubscriptionSpec
    now: datetime
    status: Mapping[str, Any] = field(default_factory=dict)  # the stored status, as JSON (RFC 3339 strings)
    offering: ProductOfferingSpec | None = None  # None: the ProductOffering does not exist (yet)
    sellability: Sellability | None = None  # None: computed from `offering` at `now`
    order_errors: tuple[OrderError, ...] = ()  # order.validate_order(...)
    endpoint_conflicts: tuple[EndpointConflict, ...] = ()  # order.endpoint_conflicts(...)
    service: ServiceObservation = field(default_factory=ServiceObservation)
    payment_hold: bool = False  # an overdue invoice suspends the subscription (the caller applied the policy)
    deleting: bool = False  # the Subscription itself is being deleted: terminate it first


@dataclass(frozen=True)
class Fact:
    """Something that happened to the subscription, dated when it happened (to the second)."""

    kind: FactKind
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def billing(self) -> bool:
        return self.kind in BILLING_FACTS


@dataclass(frozen=True)
class ChildAction:
    """What to do with the owned NetworkService.

    none: leave it as it is. apply: create or update it to `order.network_service_for(...,
    admin_enabled)`. set_admin: only set spec.adminState on the existing one (the spec cannot be
    rendered now: the offering is gone or the latest change is invalid). delete: delete it.
    """

    verb: ChildVerb = "none"
    admin_enabled: bool = True


@dataclass(frozen=True)
class SubscriptionDecision:
    state: SubscriptionState
    child: ChildAction
    facts: tuple[Fact, ...]
    status: dict[str, Any]
    finished: bool = False  # final state and no NetworkService left: a finalizer on the Subscription may go


def observe_service(obj: Mapping[str, Any] | None, desired_spec: Mapping[str, Any] | None = None) -> ServiceObservation:
    """A `ServiceObservation` from the raw NetworkService object (None when it does not exist).

    `desired_spec` is the spec the Subscription would apply now (from `network_service_for`), if it
    can be rendered; a NetworkService whose spec differs from it (adminState aside) is not `current`.
    """
    if obj is None:
        return ServiceObservation()
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready = condition(status, "Ready") or {}
    degraded = condition(status, "Degraded") or {}
    generation = meta.get("generation")
    current = generation is None or status.get("observedGeneration") == generation
    if desired_spec is not None:
        have = {k: v for k, v in (obj.get("spec") or {}).items() if k != "adminState"}
        want = {k: v for k, v in desired_spec.items() if k != "adminState"}
        current = current and _spec_matches(have, want)
    ready_status = ready.get("status")
    return ServiceObservation(
        exists=True,
        deleting=bool(meta.get("deletionTimestamp")),
        ready=cast(Status, ready_status) if ready_status in ("True", "False", "Unknown") else None,
        ready_reason=str(ready.get("reason") or ""),
        ready_message=str(ready.get("message") or ""),
        ready_since=parse_time(ready.get("lastTransitionTime")),
        first_ready_at=parse_time(status.get("startDate")),
        ready_transitions=_ready_transitions(status.get("readyTransitions")),
        ready_dropped_through=parse_time(status.get("readyTransitionsDroppedThrough")),
        degraded=degraded.get("status") == "True",
        degraded_reason=str(degraded.get("reason") or ""),
        degraded_message=str(degraded.get("message") or ""),
        degraded_since=parse_time(degraded.get("lastTransitionTime")),
        current=current,
    )


def _ready_transitions(raw: Any) -> tuple[tuple[datetime, bool], ...]:
    """status.readyTransitions as (at, ready); an entry that cannot be read is skipped (the Ready condition
    still dates the latest change)."""
    out = []
    for entry in raw if isinstance(raw, list) else ():
        at = parse_time(entry.get("at")) if isinstance(entry, Mapping) else None
        if at is not None and isinstance(entry.get("ready"), bool):
            out.append((at, bool(entry["ready"])))
    return tuple(out)


# --- The state machine ------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """Inputs digested once: what every transition rule asks."""

    inputs: SubscriptionInputs
    now: datetime
    verdict: Sellability | None
    spec_moved: bool  # metadata.generation differs from the stored observedGeneration
    accepted_before: bool  # the order was accepted once (realizingService is set, or its NetworkService exists)
    was_on_hold: bool  # the stored PaymentHold condition is True

    @property
    def spec(self) -> SubscriptionSpec:
        return self.inputs.spec

    @property
    def svc(self) -> ServiceObservation:
        return self.inputs.service

    @property
    def live_service(self) -> bool:
        return self.svc.exists and not self.svc.deleting

    @property
    def service_ready(self) -> bool:
        return self.live_service and self.svc.ready == "True"

    @property
    def service_failed(self) -> bool:
        """The NetworkService failed permanently on the spec this Subscription wants now."""
        return self.live_service and self.svc.degraded and self.svc.current

    @property
    def wants_termination(self) -> str | None:
        """Why the subscription is to end, or None."""
        if self.inputs.deleting:
            return "SubscriptionDeleted"
        if self.spec.desiredState == "terminated":
            return "CustomerRequest"
        end = self.spec.requestedTerminationDate
        if end is not None and self.now >= utc(end):
            return "RequestedTerminationDate"
        return None

    @property
    def start_due(self) -> bool:
        start = self.spec.requestedStartDate
        return start is None or self.now >= utc(start)

    @property
    def admin_enabled(self) -> bool:
        return self.spec.desiredState == "active" and not self.inputs.payment_hold

    @property
    def renderable(self) -> bool:
        """The NetworkService for the current spec can be built and applied."""
        return self.inputs.offering is not None and not self.inputs.order_errors and not self.inputs.endpoint_conflicts


def step(inputs: SubscriptionInputs) -> SubscriptionDecision:
    """The next state, the NetworkService action, the facts that happened, and the status to write."""
    now = utc(inputs.now)
    current = dict(inputs.status or {})
    stored_state = current.get("state")
    state: SubscriptionState = stored_state if stored_state in STATES else "created"
    verdict = inputs.sellability
    if verdict is None and inputs.offering is not None:
        verdict = sellability(inputs.offering, now)
    view = _View(
        inputs=inputs,
        now=now,
        verdict=verdict,
        spec_moved=current.get("observedGeneration") not in (None, inputs.generation),
        accepted_before=bool(current.get("realizingService")) or inputs.service.exists,
        was_on_hold=is_true(current, "PaymentHold"),
    )
    facts: list[Fact] = []
    start_date = _stored_time(current.get("startDate"))
    termination_date = _stored_time(current.get("terminationDate"))
    entered: SubscriptionState | None = None
    for _ in range(_MAX_TRANSITIONS):
        nxt, fact = _transition(state, view, first_move=entered is None)
        if nxt == state:
            break
        state = entered = nxt
        if fact is not None:
            facts.append(fact)
            if fact.kind == "activated" and not start_date:
                start_date = rfc3339(fact.at)
            if fact.kind == "terminated":
                termination_date = rfc3339(fact.at)
        if state in FINAL_STATES:
            break
    child = _child_action(state, view)
    status = _status(state, view, current, entered, start_date, termination_date)
    finished = state in FINAL_STATES and not inputs.service.exists
    return SubscriptionDecision(state=state, child=child, facts=tuple(facts), status=status, finished=finished)


def _transition(state: SubscriptionState, v: _View, *, first_move: bool) -> tuple[SubscriptionState, Fact | None]:
    """One move of the machine from `state`, or `state` itself when nothing moves it.

    An aborted subscription only moves on the first move of a step, so a step never re-enters it.
    """
    now = whole_seconds(v.now)
    ending = v.wants_termination
    if state == "created":
        if ending is not None:
            return "cancelled", Fact("cancelled", now, {"reason": ending})
        if _order_blocker(v, accepted_before=v.accepted_before) is None and v.start_due:
            return "pendingActive", None
        return state, None
    if state == "pendingActive":
        if v.service_ready:
            return "active", Fact("activated", _first_ready(v), {"service": v.inputs.name})
        if v.service_failed:
            return "aborted", _aborted_fact(v)
        if ending is not None:
            return "cancelled", Fact("cancelled", now, {"reason": ending})
        return state, None
    if state in ("active", "suspended"):
        if ending is not None:
            return "pendingTerminate", None
        hold = v.inputs.payment_hold
        if state == "active" and not v.admin_enabled:
            return "suspended", Fact("suspended", now, {"reason": "PaymentHold" if hold else "CustomerRequest"})
        if state == "suspended" and v.admin_enabled:
            return "active", Fact("resumed", now, {"reason": "PaymentReceived" if v.was_on_hold else "CustomerRequest"})
        return state, None
    if state == "pendingTerminate":
        if not v.svc.exists:
            return "terminated", Fact("terminated", now, {"reason": ending or "CustomerRequest"})
        return state, None
    if state == "aborted" and first_move and v.spec_moved:
        # A changed spec gets another attempt, unless the NetworkService already failed on it.
        if v.service_failed:
            return state, None
        if ending is not None:
            return "cancelled", Fact("cancelled", now, {"reason": ending})
        if _order_blocker(v, accepted_before=True) is None and v.start_due:
            return "pendingActive", None
        return "created", None  # waits there like any order (its sellability no longer matters)
    return state, None  # terminated, cancelled, aborted without a spec change: final


def _first_ready(v: _View) -> datetime:
    """When the NetworkService first became Ready: its startDate, else its Ready lastTransitionTime."""
    moments = [m for m in (v.svc.first_ready_at, v.svc.ready_since) if m is not None]
    return whole_seconds(min(moments) if moments else v.now)


def _aborted_fact(v: _View) -> Fact:
    at = v.svc.degraded_since or v.now
    detail = {"reason": v.svc.degraded_reason or "ProvisioningFailed", "message": v.svc.degraded_message}
    return Fact("aborted", whole_seconds(at), detail)


def _order_blocker(v: _View, *, accepted_before: bool) -> Cond | None:
    """Why the order cannot be accepted now (an OrderAccepted=False condition), or None.

    An order accepted before (an aborted one trying again) does not need the offering to be sellable.
    """
    inputs = v.inputs
    offering_name = v.spec.productOffering.name
    if inputs.offering is None:
        return Cond(
            "OrderAccepted",
            "False",
            "OfferingNotFound",
            f"ProductOffering {offering_name} does not exist (yet); the order waits for it",
        )
    if not accepted_before and v.verdict is not None and not v.verdict.sellable:
        message = f"ProductOffering {offering_name}: {v.verdict.message}"
        return Cond("OrderAccepted", "False", _reason(v.verdict.reason, "NotSellable"), message)
    if inputs.order_errors:
        return Cond("OrderAccepted", "False", "InvalidOrder", _errors_message(inputs.order_errors))
    if inputs.endpoint_conflicts:
        return Cond(
            "OrderAccepted",
            "False",
            "EndpointInUse",
            _conflicts_message(inputs.endpoint_conflicts) + "; the order waits until they are released",
        )
    return None


def _child_action(state: SubscriptionState, v: _View) -> ChildAction:
    admin = v.admin_enabled if state == "pendingActive" else state == "active"
    if state == "created":
        # No NetworkService is made for an order not accepted; one that exists anyway (the status was
        # lost, or an aborted one is still being removed) is left alone rather than risk a live service.
        return ChildAction("none", False)
    if state in SERVICE_STATES:
        if v.svc.deleting:
            return ChildAction("none", admin)  # wait until it is gone, then create it again
        if v.renderable:
            return ChildAction("apply", admin)
        if v.svc.exists:
            return ChildAction("set_admin", admin)
        return ChildAction("none", admin)
    if v.live_service:
        return ChildAction("delete", False)
    return ChildAction("none", False)


# --- Status -----------------------------------------------------------------------------------


def _status(
    state: SubscriptionState,
    v: _View,
    current: dict[str, Any],
    entered: SubscriptionState | None,
    start_date: str | None,
    termination_date: str | None,
) -> dict[str, Any]:
    name = v.inputs.name
    service_ready = _service_ready_cond(state, v)
    order = _order_cond(state, v, entered, current)
    ready = _ready_cond(state, v, entered, current, service_ready, order, start_date, termination_date)
    overdue = f"billing account {v.spec.account_id} has an overdue invoice"
    if state not in FINAL_STATES:
        overdue += "; under the offering's payment policy the service stays suspended until it is paid"
    hold = (
        Cond("PaymentHold", "True", "InvoiceOverdue", overdue)
        if v.inputs.payment_hold
        else Cond("PaymentHold", "False", "NoHold", "")
    )
    conds = [ready, service_ready, order, hold, _stalled_cond(state, v, ready, order)]
    status = {
        **current,
        "observedGeneration": v.inputs.generation,
        "conditions": merge_conditions(current.get("conditions"), conds, v.inputs.generation, v.now),
        "state": state,
        "startDate": start_date or None,
        "terminationDate": termination_date or None,
    }
    if state not in ("created", "cancelled") or current.get("realizingService"):
        status["realizingService"] = {"name": name}  # set once the order is accepted, kept as a record
    return status


def _service_ready_cond(state: SubscriptionState, v: _View) -> Cond:
    name = v.inputs.name
    svc = v.svc
    if not svc.exists:
        if state in SERVICE_STATES:
            return Cond("ServiceReady", "False", "NotCreated", f"NetworkService {name} does not exist yet")
        return Cond("ServiceReady", "False", "NoService", "no NetworkService exists for this subscription")
    if svc.deleting:
        return Cond("ServiceReady", "False", "Deleting", f"NetworkService {name} is being removed")
    if svc.ready is None:
        return Cond("ServiceReady", "Unknown", "Pending", f"NetworkService {name} reports no Ready condition yet")
    reason = _reason(svc.ready_reason, "Ready" if svc.ready == "True" else "NotReady")
    return Cond("ServiceReady", svc.ready, reason, svc.ready_message)


def _order_cond(
    state: SubscriptionState, v: _View, entered: SubscriptionState | None, current: Mapping[str, Any]
) -> Cond:
    name = v.inputs.name
    if state == "created":
        blocker = _order_blocker(v, accepted_before=v.accepted_before)
        if blocker is not None:
            return blocker
        start = v.spec.requestedStartDate
        when = rfc3339(utc(start)) if start is not None else "its start"
        return Cond(
            "OrderAccepted",
            "False",
            "WaitingForStartDate",
            f"the order is valid and is accepted at requestedStartDate {when}",
        )
    if state in FINAL_STATES:
        default = {
            "cancelled": Cond("OrderAccepted", "False", "Cancelled", "the order was cancelled before activation"),
            "terminated": Cond("OrderAccepted", "True", "Accepted", "the order was fulfilled and has ended"),
            "aborted": Cond("OrderAccepted", "True", "Accepted", "the order was accepted; provisioning failed"),
        }[state]
        return default if entered == state else _kept(current, default)
    # An accepted order: the offering's sellability no longer matters; later changes may still be invalid.
    unapplied = "; the change is not applied and the service keeps its last accepted configuration"
    if state == "pendingTerminate":
        message = f"the order is accepted; NetworkService {name} is being removed"
        return Cond("OrderAccepted", "True", "Accepted", message)
    if v.inputs.order_errors:
        return Cond("OrderAccepted", "False", "InvalidChange", _errors_message(v.inputs.order_errors) + unapplied)
    if v.inputs.endpoint_conflicts:
        message = _conflicts_message(v.inputs.endpoint_conflicts) + unapplied
        return Cond("OrderAccepted", "False", "EndpointInUse", message)
    if v.inputs.offering is None:
        return Cond(
            "OrderAccepted",
            "True",
            "OfferingNotFound",
            f"ProductOffering {v.spec.productOffering.name} no longer exists; NetworkService {name} keeps its"
            " last configuration and spec changes are not applied until the offering is back",
        )
    return Cond("OrderAccepted", "True", "Accepted", f"the order is accepted; NetworkService {name} realizes it")


def _ready_cond(
    state: SubscriptionState,
    v: _View,
    entered: SubscriptionState | None,
    current: Mapping[str, Any],
    service_ready: Cond,
    order: Cond,
    start_date: str | None,
    termination_date: str | None,
) -> Cond:
    name = v.inputs.name
    svc_detail = _service_detail(service_ready)
    if state == "created":
        if order.reason == "WaitingForStartDate":
            # Valid and dated: for now the spec is what it asks for (GitOps tools must not wait weeks for it).
            return Cond("Ready", "True", "Scheduled", order.message)
        return Cond("Ready", "False", order.reason, order.message)
    if state == "pendingActive":
        if not v.admin_enabled:
            why = "an invoice is overdue" if v.inputs.payment_hold else "desiredState is suspended"
            message = f"{why}: NetworkService {name} is provisioned with its subinterfaces shut and activates later"
            if not v.inputs.payment_hold and v.svc.ready_reason == "AdminDisabled":
                return Cond("Ready", "True", "Suspended", message)  # provisioned and shut, as the spec asks
            return Cond("Ready", "False", "Provisioning", message)
        message = f"waiting for NetworkService {name} to become Ready: {svc_detail}"
        return Cond("Ready", "False", "Provisioning", message)
    if state == "active":
        if service_ready.status == "True":
            since = f" since {start_date}" if start_date else ""
            return Cond("Ready", "True", "Active", f"active{since}; NetworkService {name} is Ready")
        return Cond("Ready", "False", "ServiceNotReady", f"NetworkService {name} is not Ready: {svc_detail}")
    if state == "suspended":
        if v.inputs.payment_hold:
            return Cond("Ready", "False", "PaymentHold", "suspended: an invoice is overdue")
        # Suspended on purpose: the state the spec asks for, reached (Ready; Argo CD Healthy, kstatus Current).
        return Cond("Ready", "True", "Suspended", "suspended: desiredState is suspended")
    if state == "pendingTerminate":
        return Cond("Ready", "False", "Terminating", f"terminating: NetworkService {name} is being removed")
    if state == "terminated":
        # Ended as the spec (or the deletion) asked: a final state reached, Ready.
        default = Cond(
            "Ready", "True", "Terminated", f"terminated at {termination_date}" if termination_date else "terminated"
        )
    elif state == "cancelled":
        default = Cond("Ready", "True", "Cancelled", "cancelled before activation")
    else:  # aborted
        if v.service_failed:
            reason = _reason(v.svc.degraded_reason, "ProvisioningFailed")
            detail = f"{reason}: {v.svc.degraded_message}" if v.svc.degraded_message else reason
            message = f"NetworkService {name} failed permanently ({detail}); change the Subscription spec to retry"
            return Cond("Ready", "False", "ProvisioningFailed", message)
        default = Cond(
            "Ready", "False", "ProvisioningFailed", "provisioning failed; change the Subscription spec to retry"
        )
    return default if entered == state else _kept(current, default)


# What a person does about each refusal, appended to the Stalled message (and so to the Warning event).
_ORDER_ADVICE = {
    "OfferingNotFound": "create the ProductOffering or point spec.productOffering at an existing one",
    "InvalidOrder": "fix the Subscription spec",
    "InvalidChange": "fix the Subscription spec or revert the change",
    "EndpointInUse": "choose another port or VLAN, or end the subscription holding it",
}


def _stalled_cond(state: SubscriptionState, v: _View, ready: Cond, order: Cond) -> Cond:
    """Stalled=True when nothing progresses until a person acts: a refused order or change, a failed
    provisioning, a service failing permanently, a payment hold. Waiting (for a start date, for the
    devices) is not stalled."""
    name = v.inputs.name
    if state == "aborted":
        return stalled("ProvisioningFailed", ready.message)
    if state in FINAL_STATES:
        return NOT_STALLED
    if order.status == "False" and order.reason != "WaitingForStartDate":
        advice = _ORDER_ADVICE.get(order.reason, "choose a sellable ProductOffering in spec.productOffering")
        return stalled(order.reason, f"{order.message}; {advice}")
    if v.inputs.payment_hold and state in ("pendingActive", "active", "suspended"):
        return stalled(
            "PaymentHold",
            f"billing account {v.spec.account_id} has an overdue invoice; the service resumes once it is paid",
        )
    if state == "active" and v.service_failed:
        detail = (
            f"{v.svc.degraded_reason}: {v.svc.degraded_message}" if v.svc.degraded_message else v.svc.degraded_reason
        )
        return stalled("ServiceDegraded", f"NetworkService {name} is degraded ({detail}); see its events")
    return NOT_STALLED


def _kept(current: Mapping[str, Any], default: Cond) -> Cond:
    """The stored condition of `default`'s type, re-emitted as it was (a final state's record), else `default`."""
    old = condition(current, default.type)
    if not old or old.get("status") not in ("True", "False", "Unknown") or not old.get("reason"):
        return default
    return Cond(default.type, old["status"], str(old["reason"]), str(old.get("message") or ""))


def _reason(value: str, fallback: str) -> str:
    """`value` if it is a valid condition reason (one CamelCase word), else `fallback`."""
    return value if value and len(value) <= 1024 and _REASON.fullmatch(value) else fallback


def _stored_time(value: Any) -> str | None:
    moment = parse_time(value)
    return rfc3339(moment) if moment is not None else None


def _service_detail(cond: Cond) -> str:
    return f"{cond.reason}: {cond.message}" if cond.message else cond.reason


def _errors_message(errors: tuple[OrderError, ...]) -> str:
    return "; ".join(f"{e.field}: {e.message}" for e in errors)


def _conflicts_message(conflicts: tuple[EndpointConflict, ...]) -> str:
    return "; ".join(c.message for c in conflicts)


def _spec_matches(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether the stored spec is the one we want; a field we leave out may hold its API default."""
    for key in {*have, *want}:
        if key in want:
            if have.get(key) != want[key]:
                return False
        elif have[key] is not None and have[key] != _service_default(key):
            return False
    return True


def _service_default(key: str) -> Any:
    model_field = NetworkServiceSpec.model_fields.get(key)
    return None if model_field is None or model_field.is_required() else model_field.default


# --- Scheduling -------------------------------------------------------------------------------


def next_wakeup(inputs: SubscriptionInputs) -> datetime | None:
    """When a re-run may decide differently with nothing else changing: a requested date or the
    offering becoming valid, whichever comes first after `now`; None if nothing is pending."""
    now = utc(inputs.now)
    state = step(inputs).state
    moments: list[datetime] = []
    if state in FINAL_STATES:
        return None
    spec = inputs.spec
    if state == "created":
        if spec.requestedStartDate is not None:
            moments.append(utc(spec.requestedStartDate))
        if inputs.offering is not None and inputs.sellability is None:
            change = next_sellability_change(inputs.offering, now)
            if change is not None:
                moments.append(change)
    if spec.requestedTerminationDate is not None:
        moments.append(utc(spec.requestedTerminationDate))
    future = [m for m in moments if m > now]
    return min(future) if future else None

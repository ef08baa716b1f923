"""The Subscription state machine: every transition, its facts, its status, and its idempotence."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from controller.api.subscription import SubscriptionStatus
from controller.commerce.lifecycle import (
    ChildAction,
    Fact,
    ServiceObservation,
    SubscriptionDecision,
    SubscriptionInputs,
    next_wakeup,
    observe_service,
    step,
)
from controller.commerce.offering import Sellability
from controller.commerce.order import EndpointConflict, OrderError, OrderRecord, network_service_for

from .builders import (
    T0,
    at,
    cond,
    failed_service,
    inputs,
    iso,
    offering,
    pending_service,
    ready_service,
    subscription,
)


def settle(inp: SubscriptionInputs) -> SubscriptionDecision:
    """step, checked to be a fixed point: re-run on its own status it changes nothing and records nothing."""
    decision = step(inp)
    again = step(replace(inp, status=decision.status))
    assert again.status == decision.status
    assert again.facts == ()
    assert (again.state, again.child) == (decision.state, decision.child)
    return decision


def advance(inp: SubscriptionInputs, decision: SubscriptionDecision, **changes: Any) -> SubscriptionInputs:
    """The next reconcile: the written status plus whatever changed in the world."""
    return replace(inp, status=decision.status, **changes)


def pending_active() -> tuple[SubscriptionInputs, SubscriptionDecision]:
    inp = inputs(now=at(0))
    return inp, settle(inp)


def active(ready_at: float = 3) -> tuple[SubscriptionInputs, SubscriptionDecision]:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(5), service=ready_service(at(ready_at)))
    return inp, settle(inp)


def spec_change(inp: SubscriptionInputs, **spec: Any) -> SubscriptionInputs:
    return replace(inp, generation=inp.generation + 1, spec=inp.spec.model_copy(update=spec))


# --- created -> pendingActive ------------------------------------------------------------------


def test_valid_order_is_accepted_and_provisioned() -> None:
    d = settle(inputs(generation=4))
    assert d.state == "pendingActive"
    assert d.child == ChildAction("apply", admin_enabled=True)
    assert d.facts == ()
    s = d.status
    assert s["observedGeneration"] == 4
    assert s["realizingService"] == {"name": "site-a"}
    assert s["startDate"] is None and s["terminationDate"] is None
    assert [c["type"] for c in s["conditions"]] == ["Ready", "ServiceReady", "OrderAccepted", "PaymentHold", "Stalled"]
    assert all(c["observedGeneration"] == 4 for c in s["conditions"])
    assert (cond(s, "Ready")["status"], cond(s, "Ready")["reason"]) == ("False", "Provisioning")
    assert (cond(s, "ServiceReady")["status"], cond(s, "ServiceReady")["reason"]) == ("False", "NotCreated")
    assert (cond(s, "OrderAccepted")["status"], cond(s, "OrderAccepted")["reason"]) == ("True", "Accepted")
    assert (cond(s, "PaymentHold")["status"], cond(s, "PaymentHold")["reason"]) == ("False", "NoHold")


def test_missing_offering_waits_in_created_until_it_appears() -> None:
    inp = inputs(offering=None)
    d = settle(inp)
    assert d.state == "created"
    assert d.child == ChildAction("none", admin_enabled=False)
    accepted = cond(d.status, "OrderAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "OfferingNotFound")
    assert "ProductOffering fiber-100 does not exist" in accepted["message"]
    assert cond(d.status, "Ready")["reason"] == "OfferingNotFound"
    assert "realizingService" not in d.status
    d2 = settle(advance(inp, d, offering=offering(), now=at(10)))
    assert d2.state == "pendingActive"
    assert cond(d2.status, "OrderAccepted")["lastTransitionTime"] == iso(at(10))


def test_unsellable_offering_refuses_new_orders_with_its_reason() -> None:
    d = settle(inputs(offering=offering(lifecycleStatus="Retired")))
    assert d.state == "created"
    accepted = cond(d.status, "OrderAccepted")
    assert accepted["reason"] == "Retired"
    assert "new orders are refused" in accepted["message"]
    expired = settle(inputs(offering=offering(validFor={"endDateTime": iso(T0)})))
    assert cond(expired.status, "OrderAccepted")["reason"] == "Expired"


def test_caller_supplied_sellability_is_honoured() -> None:
    verdict = Sellability(False, "NotSellable", "isSellable is false: new orders are refused")
    d = settle(inputs(sellability=verdict))
    assert d.state == "created"
    assert cond(d.status, "OrderAccepted")["reason"] == "NotSellable"


def test_taken_endpoint_names_the_holder() -> None:
    holder = OrderRecord("team-b", "older", at(-60), (("leaf1", "Ethernet1", 100),), "active")
    conflict = EndpointConflict(("leaf1", "Ethernet1", 100), holder)
    d = settle(inputs(endpoint_conflicts=(conflict,)))
    assert d.state == "created"
    accepted = cond(d.status, "OrderAccepted")
    assert accepted["reason"] == "EndpointInUse"
    assert "held by Subscription team-b/older" in accepted["message"]
    assert "waits until they are released" in accepted["message"]
    assert d.child.verb == "none"


def test_invalid_order_names_the_field() -> None:
    error = OrderError("spec.vrf", "offering fiber-100 delivers l3vpn, which needs a VRF name")
    d = settle(inputs(order_errors=(error,)))
    assert d.state == "created"
    accepted = cond(d.status, "OrderAccepted")
    assert accepted["reason"] == "InvalidOrder"
    assert accepted["message"].startswith("spec.vrf: offering fiber-100 delivers l3vpn")


def test_requested_start_date_defers_acceptance() -> None:
    inp = inputs(spec=subscription(requestedStartDate=iso(at(30))), now=at(0))
    d = settle(inp)
    assert d.state == "created"
    accepted = cond(d.status, "OrderAccepted")
    assert accepted["reason"] == "WaitingForStartDate"
    assert iso(at(30)) in accepted["message"]
    assert next_wakeup(inp) == at(30)
    assert settle(advance(inp, d, now=at(29))).state == "created"
    assert settle(advance(inp, d, now=at(30))).state == "pendingActive"


def test_wakeup_for_an_offering_that_becomes_valid_later() -> None:
    inp = inputs(offering=offering(validFor={"startDateTime": iso(at(45))}))
    assert settle(inp).state == "created"
    assert next_wakeup(inp) == at(45)
    assert settle(replace(inp, now=at(45))).state == "pendingActive"


# --- pendingActive -> active / aborted / cancelled -----------------------------------------------


def test_activation_is_dated_by_the_first_ready_moment_not_by_noticing() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(17), service=ready_service(at(4)))
    d = settle(inp)
    assert d.state == "active"
    assert d.facts == (Fact("activated", at(4), {"service": "site-a"}),)
    assert d.status["startDate"] == iso(at(4))
    ready = cond(d.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Active")
    assert ready["lastTransitionTime"] == iso(at(17))
    service = cond(d.status, "ServiceReady")
    assert (service["status"], service["reason"]) == ("True", "Applied")
    assert d.child == ChildAction("apply", admin_enabled=True)


def test_activation_prefers_the_services_start_date_after_a_flap() -> None:
    inp, d = pending_active()
    # Ready at 2, flapped, Ready again since 9; the controller looks at 12.
    inp = advance(inp, d, now=at(12), service=ready_service(at(9), first_ready_at=at(2)))
    d = settle(inp)
    assert d.facts[0].at == at(2)
    assert d.status["startDate"] == iso(at(2))


def test_activation_time_is_whole_seconds() -> None:
    inp, d = pending_active()
    d = settle(advance(inp, d, now=at(5), service=ready_service(at(3) + timedelta(microseconds=700))))
    assert d.facts[0].at == at(3)


def test_not_ready_service_keeps_pending_and_mirrors_the_reason() -> None:
    inp, d = pending_active()
    d = settle(advance(inp, d, now=at(1), service=pending_service()))
    assert d.state == "pendingActive"
    service = cond(d.status, "ServiceReady")
    assert (service["status"], service["reason"]) == ("False", "DeviceUnreachable")
    assert "connection refused" in cond(d.status, "Ready")["message"]
    unknown = settle(advance(inp, d, now=at(2), service=ServiceObservation(exists=True)))
    assert cond(unknown.status, "ServiceReady")["status"] == "Unknown"


def test_permanent_failure_aborts_and_removes_the_service() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    assert d.state == "aborted"
    (fact,) = d.facts
    assert (fact.kind, fact.at, fact.detail["reason"]) == ("aborted", at(6), "PortNotFound")
    assert d.child == ChildAction("delete", admin_enabled=False)
    ready = cond(d.status, "Ready")
    assert ready["reason"] == "ProvisioningFailed"
    assert "port Ethernet1 does not exist on device leaf1" in ready["message"]
    assert "change the Subscription spec to retry" in ready["message"]
    # The service goes; the failure stays on record.
    gone = settle(advance(inp, d, now=at(9), service=ServiceObservation()))
    assert gone.state == "aborted" and gone.facts == ()
    assert cond(gone.status, "Ready")["message"] == ready["message"]
    assert gone.child.verb == "none" and gone.finished


def test_stale_failure_of_an_older_spec_does_not_abort() -> None:
    inp, d = pending_active()
    d = settle(advance(inp, d, now=at(8), service=failed_service(at(6), current=False)))
    assert d.state == "pendingActive"
    assert d.child.verb == "apply"


def test_aborted_is_final_without_a_spec_change() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    for later in (ServiceObservation(), failed_service(at(6)), ready_service(at(20))):
        again = settle(advance(inp, d, now=at(30), service=later))
        assert again.state == "aborted" and again.facts == ()


def test_aborted_retries_when_the_spec_changes() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    fixed = spec_change(
        advance(inp, d, now=at(20), service=ServiceObservation()),
        endpoints=[{"device": "leaf1", "port": "Ethernet2", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}],
    )
    d = settle(fixed)
    assert d.state == "pendingActive"
    assert d.facts == ()
    assert d.child == ChildAction("apply", admin_enabled=True)
    assert d.status["observedGeneration"] == 2
    # And it activates normally afterwards.
    d = settle(advance(fixed, d, now=at(25), service=ready_service(at(24))))
    assert d.state == "active" and d.facts[0] == Fact("activated", at(24), {"service": "site-a"})


def test_aborted_spec_change_that_leaves_the_failing_service_as_is_stays_aborted() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    unrelated = spec_change(advance(inp, d, now=at(20)), relatedParty=[{"role": "customer", "name": "ACME"}])
    d2 = settle(unrelated)
    assert d2.state == "aborted" and d2.facts == ()


def test_aborted_retry_waits_for_the_old_service_to_go() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    deleting = failed_service(at(6), deleting=True, current=False)
    d = settle(spec_change(advance(inp, d, now=at(20), service=deleting), vrf=None))
    assert d.state == "pendingActive"
    assert d.child.verb == "none"
    assert cond(d.status, "ServiceReady")["reason"] == "Deleting"


def test_aborted_retry_does_not_need_a_sellable_offering() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    retired = offering(lifecycleStatus="Retired")
    d = settle(spec_change(advance(inp, d, now=at(20), service=ServiceObservation(), offering=retired), vrf=None))
    assert d.state == "pendingActive"


def test_aborted_retry_blocked_waits_in_created_and_goes_on_when_free() -> None:
    inp, d = pending_active()
    inp = advance(inp, d, now=at(8), service=failed_service(at(6)))
    d = settle(inp)
    holder = OrderRecord("team-a", "newer", at(9), (("leaf1", "Ethernet1", 100),), "active")
    blocked = spec_change(
        advance(inp, d, now=at(20), service=ServiceObservation(), offering=offering(lifecycleStatus="Retired")),
        vrf=None,
    )
    blocked = replace(blocked, endpoint_conflicts=(EndpointConflict(("leaf1", "Ethernet1", 100), holder),))
    d = settle(blocked)
    assert d.state == "created"
    assert cond(d.status, "OrderAccepted")["reason"] == "EndpointInUse"  # not "Retired": accepted before
    freed = settle(advance(blocked, d, now=at(40), endpoint_conflicts=()))
    assert freed.state == "pendingActive"


def test_terminated_before_activation_is_cancelled() -> None:
    d = settle(inputs(spec=subscription(desiredState="terminated")))
    assert d.state == "cancelled"
    assert d.facts == (Fact("cancelled", T0, {"reason": "CustomerRequest"}),)
    assert cond(d.status, "OrderAccepted")["reason"] == "Cancelled"
    assert cond(d.status, "Ready")["reason"] == "Cancelled"
    assert d.finished


def test_cancel_while_provisioning_deletes_the_service() -> None:
    inp, d = pending_active()
    inp = spec_change(advance(inp, d, now=at(3), service=pending_service()), desiredState="terminated")
    d = settle(inp)
    assert d.state == "cancelled"
    assert [f.kind for f in d.facts] == ["cancelled"]
    assert d.child == ChildAction("delete", admin_enabled=False)
    assert not d.finished
    gone = settle(advance(inp, d, now=at(4), service=ServiceObservation()))
    assert gone.state == "cancelled" and gone.finished and gone.child.verb == "none"
    assert cond(gone.status, "Ready")["lastTransitionTime"] == cond(d.status, "Ready")["lastTransitionTime"]


def test_requested_termination_before_activation_cancels() -> None:
    inp = inputs(spec=subscription(requestedTerminationDate=iso(at(10))), now=at(0))
    d = settle(inp)
    assert d.state == "pendingActive"
    assert next_wakeup(advance(inp, d)) == at(10)
    d = settle(advance(inp, d, now=at(10), service=pending_service()))
    assert d.state == "cancelled"
    assert d.facts == (Fact("cancelled", at(10), {"reason": "RequestedTerminationDate"}),)


def test_ready_and_cancel_seen_together_activates_then_terminates() -> None:
    inp, d = pending_active()
    inp = spec_change(advance(inp, d, now=at(9), service=ready_service(at(4))), desiredState="terminated")
    d = settle(inp)
    assert d.state == "pendingTerminate"
    assert [f.kind for f in d.facts] == ["activated"]
    assert d.facts[0].at == at(4)
    assert d.child.verb == "delete"


def test_suspended_order_is_provisioned_shut_and_activates_when_resumed() -> None:
    inp = inputs(spec=subscription(desiredState="suspended"))
    d = settle(inp)
    assert d.state == "pendingActive"
    assert d.child == ChildAction("apply", admin_enabled=False)
    assert "desiredState is suspended" in cond(d.status, "Ready")["message"]
    resumed = spec_change(advance(inp, d, now=at(5)), desiredState="active")
    d = settle(resumed)
    assert d.child == ChildAction("apply", admin_enabled=True)
    d = settle(advance(resumed, d, now=at(9), service=ready_service(at(7))))
    assert d.state == "active" and [f.kind for f in d.facts] == ["activated"]


def test_service_being_deleted_during_provisioning_is_not_touched() -> None:
    inp, d = pending_active()
    d = settle(advance(inp, d, now=at(1), service=pending_service(deleting=True)))
    assert d.state == "pendingActive"
    assert d.child.verb == "none"


# --- active <-> suspended --------------------------------------------------------------------


def test_customer_suspends_and_resumes() -> None:
    inp, d = active()
    inp = spec_change(advance(inp, d, now=at(60)), desiredState="suspended")
    d = settle(inp)
    assert d.state == "suspended"
    assert d.facts == (Fact("suspended", at(60), {"reason": "CustomerRequest"}),)
    assert d.child == ChildAction("apply", admin_enabled=False)
    assert cond(d.status, "Ready")["reason"] == "Suspended"
    assert d.status["startDate"] == iso(at(3))
    inp = spec_change(advance(inp, d, now=at(90)), desiredState="active")
    d = settle(inp)
    assert d.state == "active"
    assert d.facts == (Fact("resumed", at(90), {"reason": "CustomerRequest"}),)
    assert d.child == ChildAction("apply", admin_enabled=True)
    assert d.status["startDate"] == iso(at(3))  # kept forever


def test_payment_hold_suspends_and_release_resumes() -> None:
    inp, d = active()
    inp = advance(inp, d, now=at(60), payment_hold=True)
    d = settle(inp)
    assert d.state == "suspended"
    assert d.facts == (Fact("suspended", at(60), {"reason": "PaymentHold"}),)
    hold = cond(d.status, "PaymentHold")
    assert (hold["status"], hold["reason"]) == ("True", "InvoiceOverdue")
    assert "acme-1" in hold["message"]
    assert cond(d.status, "Ready")["reason"] == "PaymentHold"
    inp = advance(inp, d, now=at(70), payment_hold=False)
    d = settle(inp)
    assert d.state == "active"
    assert d.facts == (Fact("resumed", at(70), {"reason": "PaymentReceived"}),)


def test_hold_released_while_customer_suspended_stays_suspended() -> None:
    inp, d = active()
    inp = advance(inp, d, now=at(60), payment_hold=True)
    d = settle(inp)
    inp = spec_change(advance(inp, d, now=at(65)), desiredState="suspended")
    d = settle(inp)
    assert d.state == "suspended" and d.facts == ()
    d = settle(advance(inp, d, now=at(70), payment_hold=False))
    assert d.state == "suspended" and d.facts == ()
    assert cond(d.status, "Ready")["reason"] == "Suspended"


def test_active_service_going_down_is_not_ready_but_stays_active() -> None:
    inp, d = active()
    d = settle(advance(inp, d, now=at(40), service=pending_service(ready_reason="OperDown", ready_message="down")))
    assert d.state == "active" and d.facts == ()
    ready = cond(d.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ServiceNotReady")
    assert cond(d.status, "ServiceReady")["reason"] == "OperDown"


def test_deleted_service_of_an_active_subscription_is_recreated() -> None:
    inp, d = active()
    d = settle(advance(inp, d, now=at(40), service=ServiceObservation()))
    assert d.state == "active"
    assert d.child == ChildAction("apply", admin_enabled=True)
    assert cond(d.status, "ServiceReady")["reason"] == "NotCreated"


# --- existing subscriptions and the offering ---------------------------------------------------


def test_retired_or_unsellable_offering_never_touches_existing_subscriptions() -> None:
    inp, d = active()
    for changed in (
        offering(lifecycleStatus="Retired"),
        offering(lifecycleStatus="Obsolete"),
        offering(isSellable=False),
        offering(validFor={"endDateTime": iso(at(10))}),
    ):
        later = settle(advance(inp, d, now=at(120), offering=changed))
        assert later.state == "active" and later.facts == ()
        assert later.child == ChildAction("apply", admin_enabled=True)
        assert cond(later.status, "OrderAccepted")["status"] == "True"
        assert later.status == d.status


def test_retired_offering_does_not_stop_provisioning_an_accepted_order() -> None:
    inp, d = pending_active()
    d = settle(advance(inp, d, now=at(2), offering=offering(lifecycleStatus="Retired")))
    assert d.state == "pendingActive" and d.child.verb == "apply"


def test_deleted_offering_keeps_the_service_as_configured() -> None:
    inp, d = active()
    d = settle(advance(inp, d, now=at(40), offering=None))
    assert d.state == "active"
    assert cond(d.status, "Ready")["status"] == "True"
    accepted = cond(d.status, "OrderAccepted")
    assert (accepted["status"], accepted["reason"]) == ("True", "OfferingNotFound")
    assert d.child == ChildAction("set_admin", admin_enabled=True)
    suspended = settle(advance(inp, d, now=at(50), offering=None, payment_hold=True))
    assert suspended.child == ChildAction("set_admin", admin_enabled=False)


def test_invalid_change_to_an_active_subscription_is_not_applied() -> None:
    inp, d = active()
    error = OrderError("spec.endpoints[0].ipv4Address", "offering fiber-100 delivers internetAccess, ...")
    inp = spec_change(advance(inp, d, now=at(40), order_errors=(error,)), vrf="x")
    d = settle(inp)
    assert d.state == "active"
    accepted = cond(d.status, "OrderAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidChange")
    assert accepted["message"].startswith("spec.endpoints[0].ipv4Address: ")
    assert "keeps its last accepted configuration" in accepted["message"]
    assert d.child == ChildAction("set_admin", admin_enabled=True)
    assert cond(d.status, "Ready")["status"] == "True"


# --- termination -----------------------------------------------------------------------------


def test_terminate_removes_the_service_then_records_termination() -> None:
    inp, d = active()
    inp = spec_change(advance(inp, d, now=at(100)), desiredState="terminated")
    d = settle(inp)
    assert d.state == "pendingTerminate"
    assert d.facts == ()
    assert d.child == ChildAction("delete", admin_enabled=False)
    assert cond(d.status, "Ready")["reason"] == "Terminating"
    still = settle(advance(inp, d, now=at(101), service=ready_service(at(3), deleting=True)))
    assert still.state == "pendingTerminate" and still.child.verb == "none"
    inp = advance(inp, still, now=at(103), service=ServiceObservation())
    d = settle(inp)
    assert d.state == "terminated"
    assert d.facts == (Fact("terminated", at(103), {"reason": "CustomerRequest"}),)
    assert d.status["terminationDate"] == iso(at(103))
    assert d.status["startDate"] == iso(at(3))
    assert d.finished


def test_requested_termination_date_terminates() -> None:
    inp = inputs(spec=subscription(requestedTerminationDate=iso(at(200))), now=at(0))
    d = settle(inp)
    inp = advance(inp, d, now=at(5), service=ready_service(at(3)))
    d = settle(inp)
    assert d.state == "active"
    assert next_wakeup(advance(inp, d)) == at(200)
    d = settle(advance(inp, d, now=at(200)))
    assert d.state == "pendingTerminate"
    d = settle(advance(inp, d, now=at(201), service=ServiceObservation()))
    assert d.facts == (Fact("terminated", at(201), {"reason": "RequestedTerminationDate"}),)
    assert next_wakeup(advance(inp, d, now=at(202))) is None


def test_suspended_subscription_terminates() -> None:
    inp, d = active()
    inp = spec_change(advance(inp, d, now=at(60)), desiredState="suspended")
    d = settle(inp)
    inp = spec_change(advance(inp, d, now=at(80)), desiredState="terminated")
    d = settle(inp)
    assert d.state == "pendingTerminate" and d.facts == ()


def test_deleting_the_subscription_terminates_it_first() -> None:
    inp, d = active()
    inp = advance(inp, d, now=at(50), deleting=True)
    d = settle(inp)
    assert d.state == "pendingTerminate" and not d.finished
    d = settle(advance(inp, d, now=at(52), service=ServiceObservation()))
    assert d.facts == (Fact("terminated", at(52), {"reason": "SubscriptionDeleted"}),)
    assert d.finished


def test_terminated_is_final() -> None:
    inp, d = active()
    inp = spec_change(advance(inp, d, now=at(100)), desiredState="terminated")
    d = settle(inp)
    inp = advance(inp, d, now=at(103), service=ServiceObservation())
    d = settle(inp)
    for later in (
        advance(inp, d, now=at(500), service=ready_service(at(400))),
        advance(inp, d, now=at(500), payment_hold=True),
        spec_change(advance(inp, d, now=at(600)), relatedParty=[{"role": "customer", "name": "ACME"}]),
    ):
        again = settle(later)
        assert again.state == "terminated" and again.facts == ()
        assert again.status["terminationDate"] == iso(at(103))
        assert cond(again.status, "Ready")["message"] == cond(d.status, "Ready")["message"]
    leftover = settle(advance(inp, d, now=at(500), service=pending_service()))
    assert leftover.child.verb == "delete"


# --- status bookkeeping ----------------------------------------------------------------------


def test_transition_times_move_only_on_flips() -> None:
    inp, d = active()
    ready_since = cond(d.status, "Ready")["lastTransitionTime"]
    for minutes in (30, 60, 600):
        d = settle(advance(inp, d, now=at(minutes)))
        assert cond(d.status, "Ready")["lastTransitionTime"] == ready_since
    d2 = settle(advance(inp, d, now=at(700), service=pending_service()))
    assert cond(d2.status, "Ready")["lastTransitionTime"] == iso(at(700))


def test_status_keeps_fields_and_conditions_it_does_not_own() -> None:
    inp, d = active()
    billing = {"type": "BillingDelivered", "status": "True", "lastTransitionTime": iso(at(4)), "reason": "Delivered"}
    status = {**d.status, "nextBillDate": "2025-04-01T00:00:00Z", "conditions": [*d.status["conditions"], billing]}
    d2 = settle(replace(inp, status=status, now=at(30)))
    assert d2.status["nextBillDate"] == "2025-04-01T00:00:00Z"
    assert cond(d2.status, "BillingDelivered") == billing


def test_lost_status_recovers_the_same_activation_moment() -> None:
    """Re-deriving from an empty status re-dates activation identically, so a billing event id repeats."""
    inp, d = active(ready_at=3)
    service = ready_service(at(20), first_ready_at=at(3))
    d = settle(replace(inp, status={}, now=at(30), service=service))
    assert d.state == "active"
    assert d.facts == (Fact("activated", at(3), {"service": "site-a"}),)


def test_lost_status_with_a_live_service_never_deletes_it() -> None:
    d = settle(inputs(status={}, offering=None, service=ready_service(at(-100))))
    assert d.state == "created"
    assert d.child.verb == "none"


def test_naive_and_zoned_now_are_utc() -> None:
    d = settle(inputs(now=T0.replace(tzinfo=None)))
    assert cond(d.status, "Ready")["lastTransitionTime"] == iso(T0)


def test_observe_service_reads_the_object() -> None:
    obj = {
        "metadata": {"name": "site-a", "generation": 3},
        "spec": {"serviceType": "internetAccess", "bandwidthMbps": 100, "adminState": "disabled", "dryRun": False},
        "status": {
            "observedGeneration": 3,
            "startDate": iso(at(2)),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "lastTransitionTime": iso(at(5)),
                    "reason": "Applied",
                    "message": "ok",
                },
                {"type": "Degraded", "status": "False", "lastTransitionTime": iso(at(5)), "reason": "AsExpected"},
            ],
        },
    }
    seen = observe_service(
        obj, desired_spec={"serviceType": "internetAccess", "bandwidthMbps": 100, "adminState": "enabled"}
    )
    assert seen == ServiceObservation(
        exists=True,
        ready="True",
        ready_reason="Applied",
        ready_message="ok",
        ready_since=at(5),
        first_ready_at=at(2),
        degraded=False,
        degraded_reason="AsExpected",
        degraded_since=at(5),
        current=True,
    )
    assert not observe_service(obj, desired_spec={"serviceType": "internetAccess", "bandwidthMbps": 200}).current
    # A rate we no longer want (the offering dropped its peak rate) is a difference; API defaults are not.
    with_peak = {**obj, "spec": {**obj["spec"], "peakBandwidthMbps": 400}}
    assert not observe_service(with_peak, desired_spec={"serviceType": "internetAccess", "bandwidthMbps": 100}).current
    defaulted = {**obj, "spec": {**obj["spec"], "driftPolicy": "revert", "vrf": None}}
    assert observe_service(defaulted, desired_spec={"serviceType": "internetAccess", "bandwidthMbps": 100}).current
    lagging = {**obj, "metadata": {"generation": 4}}
    assert not observe_service(lagging).current
    assert observe_service({**obj, "metadata": {"deletionTimestamp": iso(at(9))}}).deleting
    assert observe_service(None) == ServiceObservation()


def test_happy_path_against_a_simulated_world() -> None:
    """The caller applies what step asks; the service comes up two reconciles later."""
    inp = inputs(now=at(0))
    facts: list[Fact] = []
    service = ServiceObservation()
    created_at = None
    for minute in range(0, 8):
        inp = replace(inp, now=at(minute), service=service)
        d = settle(inp)
        facts += d.facts
        inp = replace(inp, status=d.status)
        if d.child.verb == "apply" and not service.exists:
            created_at = minute
            service = pending_service(ready=None)
        elif created_at is not None and minute == created_at + 2:
            service = ready_service(at(minute) - timedelta(seconds=30))
    assert [f.kind for f in facts] == ["activated"]
    assert facts[0].at == at(2) - timedelta(seconds=30)
    assert inp.status["state"] == "active"


def test_malformed_reasons_from_elsewhere_never_break_the_status() -> None:
    inp, d = pending_active()
    odd = pending_service(ready_reason="not camel case!")
    d = settle(advance(inp, d, now=at(1), service=odd))
    assert cond(d.status, "ServiceReady")["reason"] == "NotReady"
    verdict = Sellability(False, "no such reason", "closed for inventory")
    created = settle(inputs(sellability=verdict))
    assert cond(created.status, "OrderAccepted")["reason"] == "NotSellable"
    SubscriptionStatus.model_validate(d.status)
    SubscriptionStatus.model_validate(created.status)


def test_a_service_made_from_the_rendered_body_is_current() -> None:
    body = network_service_for("site-a", "team-a", "uid-1", subscription(), offering(), admin_enabled=True)
    stored = {**body, "metadata": {**body["metadata"], "generation": 2}, "status": {"observedGeneration": 2}}
    stored["spec"] = {**body["spec"], "dryRun": False}  # defaulted by the API server
    shut = network_service_for("site-a", "team-a", "uid-1", subscription(), offering(), admin_enabled=False)
    assert observe_service(stored, desired_spec=body["spec"]).current
    assert observe_service(stored, desired_spec=shut["spec"]).current  # adminState aside

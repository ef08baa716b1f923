"""Properties of the Subscription state machine over random sequences of changes in the world.

Each example starts from a new order and applies a random sequence of changes (spec edits, the
offering appearing, retiring or vanishing, order errors, endpoint conflicts, the NetworkService
coming and going, payment holds, the clock). After every change the controller runs `step` once and
writes its status. Checked at every step: re-running `step` on its own output with the same inputs
changes nothing and records no fact; and the run as a whole obeys the lifecycle's invariants.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.api.subscription import SubscriptionStatus
from controller.commerce.lifecycle import FINAL_STATES, Fact, ServiceObservation, SubscriptionInputs, step
from controller.commerce.order import EndpointConflict, OrderError, OrderRecord

from .builders import T0, failed_service, iso, offering, pending_service, ready_service, subscription

OFFERINGS = {
    "present": offering(),
    "retired": offering(lifecycleStatus="Retired"),
    "expired": offering(validFor={"endDateTime": iso(T0)}),
    "missing": None,
}
ERROR = OrderError("spec.endpoints[0].ipv4Address", "needs an IPv4 address")
HOLDER = OrderRecord("team-b", "older", T0 - timedelta(days=1), (("leaf1", "Ethernet1", 100),), "active")
CONFLICT = EndpointConflict(("leaf1", "Ethernet1", 100), HOLDER)

service_events = st.tuples(
    st.just("service"),
    st.tuples(
        st.sampled_from(["absent", "unknown", "pending", "ready", "ready", "ready", "failed", "deleting"]),
        st.integers(0, 3600),  # how long ago its conditions last flipped
        st.booleans(),  # whether it describes the wanted spec
    ),
)
common = st.one_of(
    service_events,
    st.tuples(st.just("time"), st.integers(0, 86_400 * 3)),
    st.tuples(st.just("hold"), st.booleans()),
    st.tuples(st.just("desired"), st.sampled_from(["active", "suspended"])),
    st.tuples(st.just("offering"), st.sampled_from(sorted(OFFERINGS))),
    st.tuples(st.just("order_error"), st.booleans()),
    st.tuples(st.just("conflict"), st.booleans()),
    st.tuples(st.just("touch"), st.just(None)),
)
rare = st.one_of(
    st.tuples(st.just("desired"), st.just("terminated")),
    st.tuples(st.just("start"), st.integers(-3600, 86_400)),
    st.tuples(st.just("end"), st.integers(-3600, 86_400 * 7)),
    st.tuples(st.just("deleting"), st.just(True)),
)
# Mostly everyday changes; now and then one that ends the subscription or moves its dates.
events = st.integers(0, 19).flatmap(lambda i: rare if i == 0 else common)


READY_STATES = {
    ("active", "Active"),
    ("suspended", "Suspended"),
    ("pendingActive", "Suspended"),
    ("created", "Scheduled"),
    ("terminated", "Terminated"),
    ("cancelled", "Cancelled"),
}


@dataclass
class World:
    now: datetime = T0
    generation: int = 1
    spec: dict[str, Any] = field(default_factory=dict)
    offering: str = "present"
    order_error: bool = False
    conflict: bool = False
    service: ServiceObservation = field(default_factory=ServiceObservation)
    hold: bool = False
    deleting: bool = False

    def apply(self, kind: str, value: Any) -> None:
        if kind == "time":
            self.now += timedelta(seconds=value, microseconds=value % 7 * 1000)
        elif kind in ("desired", "start", "end", "touch"):
            if self.spec.get("desiredState") == "terminated" and kind == "desired":
                return  # CEL: a terminated subscription cannot be reactivated
            if kind == "desired":
                self.spec["desiredState"] = value
            elif kind == "start":
                self.spec["requestedStartDate"] = iso(self.now + timedelta(seconds=value))
                self.spec.pop("requestedTerminationDate", None)
            elif kind == "end":
                start = self.spec.get("requestedStartDate")
                end = self.now + timedelta(seconds=value)
                if start is None or iso(end) > start:
                    self.spec["requestedTerminationDate"] = iso(end)
            self.generation += 1
        elif kind == "offering":
            self.offering = value
        elif kind == "order_error":
            self.order_error = value
        elif kind == "conflict":
            self.conflict = value
        elif kind == "hold":
            self.hold = value
        elif kind == "deleting":
            self.deleting = True
        elif kind == "service":
            shape, ago, current = value
            since = self.now - timedelta(seconds=ago)
            self.service = {
                "absent": lambda: ServiceObservation(),
                "unknown": lambda: ServiceObservation(exists=True, current=current),
                "pending": lambda: pending_service(ready_since=since, current=current),
                "ready": lambda: ready_service(since, first_ready_at=since - timedelta(seconds=ago), current=current),
                "failed": lambda: failed_service(since, current=current),
                "deleting": lambda: pending_service(deleting=True, current=current),
            }[shape]()

    def inputs(self, status: dict[str, Any]) -> SubscriptionInputs:
        return SubscriptionInputs(
            name="site-a",
            generation=self.generation,
            spec=subscription(**self.spec),
            now=self.now,
            status=status,
            offering=OFFERINGS[self.offering],
            order_errors=(ERROR,) if self.order_error else (),
            endpoint_conflicts=(CONFLICT,) if self.conflict else (),
            service=self.service,
            payment_hold=self.hold,
            deleting=self.deleting,
        )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=10, max_size=50))
def test_step_is_idempotent_and_keeps_its_invariants(changes: list[tuple[str, Any]]) -> None:
    world = World()
    status: dict[str, Any] = {}
    facts: list[Fact] = []
    for kind, value in [("touch", None), *changes]:
        world.apply(kind, value)
        inputs = world.inputs(status)
        before = status.get("state") or "created"
        decision = step(inputs)

        # Idempotence: re-running on its own output changes nothing and records nothing.
        again = step(replace(inputs, status=decision.status))
        assert again.status == decision.status
        assert again.facts == ()
        assert (again.state, again.child, again.finished) == (decision.state, decision.child, decision.finished)

        after = decision.state
        event(f"{before} -> {after}")
        for fact in decision.facts:
            event(f"fact {fact.kind} {fact.detail.get('reason', '')}")
        new = decision.status
        SubscriptionStatus.model_validate(new)  # the API accepts what we write
        assert new["state"] == after
        assert new["observedGeneration"] == world.generation

        # Final states stay final; aborted moves only when the spec moved.
        if before in ("terminated", "cancelled"):
            assert after == before and decision.facts == ()
        if before == "aborted" and status.get("observedGeneration") == world.generation:
            assert after == "aborted" and decision.facts == ()

        # startDate, once set, never changes; terminationDate only comes with the terminated fact.
        if status.get("startDate"):
            assert new["startDate"] == status["startDate"]
        if status.get("terminationDate"):
            assert new["terminationDate"] == status["terminationDate"]

        # Ready summarises: True when the state the spec asks for is reached (active with a Ready
        # service, suspended on purpose, scheduled for a later start, ended); Stalled beside it only
        # for a refused change (the service keeps running its last accepted configuration).
        conds = conditions(new)
        assert {"Ready", "ServiceReady", "OrderAccepted", "PaymentHold", "Stalled"} <= set(conds)
        if conds["Ready"]["status"] == "True":
            assert (after, conds["Ready"]["reason"]) in READY_STATES
            if conds["Stalled"]["status"] == "True":
                assert conds["Stalled"]["reason"] in ("InvalidChange", "EndpointInUse")
                assert conds["OrderAccepted"]["status"] == "False"
            if after == "active":
                assert conds["ServiceReady"]["status"] == "True"
            if conds["Ready"]["reason"] == "Suspended":
                assert conds["PaymentHold"]["status"] == "False"
        if after == "aborted":
            assert conds["Stalled"]["status"] == "True"

        # Transition times move only on flips.
        for type_, old in conditions(status).items() if status else ():
            if conds[type_]["status"] == old["status"]:
                assert conds[type_]["lastTransitionTime"] == old["lastTransitionTime"]

        # No service is made for an order not accepted or ended.
        if after in FINAL_STATES or after in ("created", "pendingTerminate"):
            assert decision.child.verb in ("none", "delete")

        for fact in decision.facts:
            assert fact.at <= world.now
            assert fact.at.microsecond == 0
        facts += decision.facts
        status = decision.status

    kinds = [f.kind for f in facts]
    assert kinds.count("activated") <= 1
    assert kinds.count("terminated") <= 1 and kinds.count("cancelled") <= 1
    assert not ("terminated" in kinds and "cancelled" in kinds)
    if "terminated" in kinds:
        assert "activated" in kinds and kinds.index("activated") < kinds.index("terminated")
        assert kinds[-1] == "terminated"
    if "cancelled" in kinds:
        assert "activated" not in kinds
    pauses = [k for k in kinds if k in ("suspended", "resumed")]
    assert pauses == ["suspended", "resumed"] * (len(pauses) // 2) + ["suspended"] * (len(pauses) % 2)
    if "activated" in kinds:
        activation = facts[kinds.index("activated")]
        assert status["startDate"] == iso(activation.at)
        assert all(kinds.index("activated") < i for i, k in enumerate(kinds) if k in ("suspended", "resumed"))

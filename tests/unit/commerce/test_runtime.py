"""CommerceController against an in-memory API server: the outbox invariant, conflicts, delivery,
dunning and the onCycle invoice, without a cluster (the integration suite runs the real thing)."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.announce import Announcer
from controller.api.networkservice import METERED_LABEL
from controller.billing import events as ev
from controller.billing.clock import FakeClock, OffsetClock
from controller.billing.events import BillingEvent
from controller.billing.invoice import invoice_name
from controller.billing.periods import Cycle, Period
from controller.billing.sinks import Deliverer, RetryPolicy, SinkError
from controller.commerce import invoices as invoice_controller
from controller.commerce.index import Sample
from controller.commerce.runtime import CommerceController, octets, spec_patch
from controller.conditions import condition
from controller.kube import FINALIZER, Conflict, NotFound, Ref
from controller.settings import Settings
from controller.statuswriter import StatusWriter

T0 = datetime(2026, 11, 10, 12, 0, 0, tzinfo=UTC)
API = "telco.intent.dev/v1alpha1"


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeKube:
    """The subset of controller.kube.Kube the commerce layer uses, with resourceVersion semantics."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.rv = itertools.count(1)
        self.status_writes: list[tuple[Ref, dict[str, Any]]] = []
        self.events: list[tuple[str, str]] = []
        self.typed_events: list[tuple[str, str, str, str]] = []
        self.lists: list[tuple[str, str | None]] = []
        self.conflicts = 0  # fail the next N resourceVersion-checked status writes as if someone wrote first
        self.on_write: Callable[[dict[str, Any]], None] | None = None  # the "watch": every stored change
        # Store the next N resourceVersion-checked status writes but answer none of them, and let the watch
        # miss them: an API server killed between its etcd write and its reply (its watches restart).
        self.unanswered = 0

    def _store(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(next(self.rv))
        key = (plural, meta.get("namespace"), meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if self.on_write is not None:
            self.on_write(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def _get(self, ref: Ref) -> dict[str, Any]:
        obj = self.objects.get((ref.plural, ref.namespace, ref.name))
        if obj is None:
            raise NotFound(str(ref))
        return obj

    async def get(self, ref: Ref) -> dict[str, Any]:
        return copy.deepcopy(self._get(ref))

    async def list_all(self, plural: str) -> list[dict[str, Any]]:
        self.lists.append((plural, None))
        return [copy.deepcopy(o) for (p, _, _), o in self.objects.items() if p == plural]

    async def list_in(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        self.lists.append((plural, namespace))
        return [copy.deepcopy(o) for (p, ns, _), o in self.objects.items() if p == plural and ns == namespace]

    async def patch_status(self, ref: Ref, status: dict[str, Any], resource_version: str | None = None) -> Any:
        obj = self._get(ref)
        if resource_version and self.conflicts:
            self.conflicts -= 1
            obj["status"] = _merge(obj.get("status") or {}, {"someoneElse": None})
            self._store(ref.plural, obj)
            raise Conflict("changed")
        if resource_version and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        obj["status"] = _merge(obj.get("status") or {}, status)
        self.status_writes.append((ref, copy.deepcopy(status)))
        if resource_version and self.unanswered:
            self.unanswered -= 1
            watch, self.on_write = self.on_write, None
            try:
                self._store(ref.plural, obj)
            finally:
                self.on_write = watch
            raise ConnectionResetError("connection reset by peer")
        return self._store(ref.plural, obj)

    async def patch(self, ref: Ref, body: dict[str, Any]) -> dict[str, Any]:
        obj = self._get(ref)
        meta = body.get("metadata") or {}
        if meta.get("resourceVersion") and meta["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        if "finalizers" in meta:
            obj["metadata"]["finalizers"] = list(meta["finalizers"])
        if "labels" in meta:
            obj["metadata"]["labels"] = _merge(obj["metadata"].get("labels") or {}, meta["labels"])
        if "annotations" in meta:
            obj["metadata"]["annotations"] = _merge(obj["metadata"].get("annotations") or {}, meta["annotations"])
        if "spec" in body:
            obj["spec"] = _merge(obj.get("spec") or {}, body["spec"])
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        return self._store(ref.plural, obj)

    async def set_finalizers(self, ref: Ref, finalizers: list[str], resource_version: str) -> dict[str, Any]:
        return await self.patch(ref, {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}})

    async def create(self, body: dict[str, Any], plural: str, namespace: str | None) -> dict[str, Any]:
        key = (plural, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise Conflict("AlreadyExists")
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            uid=f"uid-{plural}-{body['metadata']['name']}", generation=1, creationTimestamp="2026-11-01T00:00:00Z"
        )
        return self._store(plural, obj)

    async def delete(self, ref: Ref) -> None:
        obj = self.objects.get((ref.plural, ref.namespace, ref.name))
        if obj is None:
            return
        if obj["metadata"].get("finalizers"):
            obj["metadata"]["deletionTimestamp"] = "2026-11-10T13:00:00Z"
        else:
            obj["metadata"]["deletionTimestamp"] = "2026-11-10T13:00:00Z"
            obj["metadata"]["finalizers"] = []
        self._store(ref.plural, obj)

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((reason, message))
        self.typed_events.append((obj["metadata"]["name"], type_, reason, message))


class MemorySink:
    name = "memory"

    def __init__(self) -> None:
        self.events: list[BillingEvent] = []
        self.down = False

    async def send(self, event: BillingEvent) -> None:
        if self.down:
            raise SinkError(self.name, "down")
        self.events.append(event)

    async def close(self) -> None:
        return None


class World:
    """A CommerceController wired to a FakeKube whose writes come back as watch events."""

    def __init__(self, clock: FakeClock, sink: MemorySink | None = None) -> None:
        self.kube = FakeKube()
        self.clock = clock
        self.sink = sink or MemorySink()
        settings = Settings(billing_interval_seconds=3600, usage_interval_seconds=3600, billing_retry_seconds=3600)
        deliverer = Deliverer([self.sink], policy=RetryPolicy(attempts=1, base_delay=0.001, max_delay=0.001))
        self.ctl = CommerceController(
            self.kube,  # type: ignore[arg-type]
            StatusWriter(self.kube, Announcer(self.kube)),  # type: ignore[arg-type]
            settings,
            clock,
            deliverer=deliverer,
        )
        self.kube.on_write = self.watch

    def watch(self, obj: dict[str, Any]) -> None:
        kind = obj.get("kind")
        deleted = obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers")
        meta = obj["metadata"]
        if kind == "Subscription":
            if deleted:
                self.ctl.remove_subscription(meta["namespace"], meta["name"])
            else:
                self.ctl.upsert_subscription(obj)
        elif kind == "NetworkService":
            if deleted:
                self.ctl.forget_service(meta["namespace"], meta["name"])
            else:
                self.ctl.observe_service(obj)
        elif kind == "Invoice":
            self.ctl.upsert_invoice(obj)
        elif kind == "ProductOffering":
            self.ctl.upsert_offering(obj)
        elif kind == "BillingAccount":
            self.ctl.upsert_account(obj)

    async def open(self) -> None:
        for runner in (self.ctl._subs, self.ctl._invs, self.ctl._offs, self.ctl._accts):
            runner.open()

    async def idle(self) -> None:
        for _ in range(500):
            await asyncio.sleep(0.002)
            runners = (self.ctl._subs, self.ctl._invs, self.ctl._offs, self.ctl._accts)
            if not any(r.busy() for r in runners) and not self.ctl.writer._busy:
                await asyncio.sleep(0.002)
                if not any(r.busy() for r in runners):
                    return
        raise AssertionError("the controller did not settle")

    def obj(self, plural: str, name: str, namespace: str | None = "acme") -> dict[str, Any]:
        return copy.deepcopy(self.kube.objects[(plural, namespace, name)])

    def has(self, plural: str, name: str, namespace: str | None = "acme") -> bool:
        return (plural, namespace, name) in self.kube.objects

    async def put(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.create(body, plural, body["metadata"].get("namespace"))

    async def service_ready(self, name: str, at: datetime, ready: bool = True) -> None:
        """What the network reconciler would write: the NetworkService Ready (or not) since `at`."""
        svc = self.kube._get(Ref("networkservices", name, "acme"))
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "observedGeneration": svc["metadata"]["generation"],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": stamp,
                    "reason": "Applied" if ready else "OperDown",
                    "message": "",
                }
            ],
            "startDate": (svc.get("status") or {}).get("startDate") or stamp,
        }
        await self.kube.patch_status(Ref("networkservices", name, "acme"), status)


def offering_body(name: str = "fiber", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ProductOffering",
        "metadata": {"name": name},
        "spec": {
            "name": "Fiber",
            "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
            "productOfferingPrice": [
                {
                    "name": "Monthly fee",
                    "priceType": "recurring",
                    "recurringChargePeriodType": "month",
                    "price": {"unit": "EUR", "value": "49.90"},
                }
            ],
            **spec,
        },
    }


def subscription_body(name: str = "hq", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": "acme"},
        "spec": {
            "productOffering": {"name": "fiber"},
            "billingAccount": {"id": "acme-1"},
            "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}],
            **spec,
        },
    }


def run(scenario: Callable[[World], Awaitable[None]], clock: FakeClock | None = None) -> World:
    world = World(clock or FakeClock(T0))

    async def go() -> None:
        await world.open()
        try:
            await scenario(world)
        finally:
            await world.ctl.close()

    asyncio.run(go())
    return world


async def activate(w: World, name: str = "hq", ready_at: datetime = T0) -> dict[str, Any]:
    await w.put("productofferings", offering_body())
    await w.put("subscriptions", subscription_body(name))
    await w.idle()
    await w.service_ready(name, ready_at)
    await w.idle()
    return w.obj("subscriptions", name)


# --- the write budget of the Subscription path (issue 15, part 7) ----------------------------------------


def _subscription_writes(w: World) -> list[dict[str, Any]]:
    return [s for r, s in w.kube.status_writes if r.plural == "subscriptions"]


def test_a_quick_activation_with_its_event_delivered_costs_two_status_writes() -> None:
    """While the new NetworkService has reported nothing the first status waits (--subscription-progress-seconds):
    the activation is the first status written, with its event; the removal of the delivered event the second."""

    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body())
        body = subscription_body("hq")
        body["status"] = {"observedGeneration": 0}  # what the API server's defaulting leaves on a new object
        await w.put("subscriptions", body)
        await w.idle()
        assert w.has("networkservices", "hq"), "the NetworkService is created at once"
        assert _subscription_writes(w) == [], "nothing but provisioning to say yet: no status write"
        await w.service_ready("hq", T0)
        await w.idle()
        assert await w.ctl.deliver_once() == 1
        await w.idle()
        writes = _subscription_writes(w)
        assert len(writes) == 2, [sorted(s) for s in writes]
        assert writes[0]["state"] == "active" and len(writes[0]["billing"]["outbox"]["pending"]) == 1
        assert writes[1]["billing"]["outbox"]["pending"] == [] and writes[1]["billing"]["outbox"]["deliveredCount"] == 1

    run(scenario)


def test_a_suspended_commerce_layer_writes_nothing_and_resumes_without_a_list() -> None:
    """A lapsed fence suspends the commerce layer (docs/sharding.md): no pass runs and nothing is written while
    it lasts, the watch events still reach the index, and the resume acts on them without listing again."""

    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body())
        await w.ctl._startup()
        listed = len(w.kube.lists)
        await w.put("subscriptions", subscription_body("hq"))
        await w.idle()
        assert _subscription_writes(w) == [], "provisioning: nothing to write yet"
        await w.ctl.suspend()
        await w.service_ready("hq", T0)  # its event arrives while suspended
        await asyncio.sleep(0.1)
        assert _subscription_writes(w) == [], "a suspended layer wrote"
        w.ctl.resume()
        await w.idle()
        writes = _subscription_writes(w)
        assert writes and writes[0]["state"] == "active", [sorted(s) for s in writes]
        assert len(w.kube.lists) == listed, "the resume listed again"

    run(scenario)


def test_a_slow_provisioning_is_written_once_the_wait_is_over() -> None:
    async def scenario(w: World) -> None:
        w.ctl.settings.subscription_progress_seconds = 0.05
        await w.put("productofferings", offering_body())
        await w.put("subscriptions", subscription_body("hq"))
        await w.idle()
        await asyncio.sleep(0.1)
        await w.idle()
        writes = _subscription_writes(w)
        assert len(writes) == 1, "one provisioning write after the wait, not one per NetworkService change"
        assert writes[0]["state"] == "pendingActive" and writes[0]["realizingService"] == {"name": "hq"}
        ready = condition(writes[0], "ServiceReady")
        assert ready is not None and ready["reason"] == "Pending", "written after the NetworkService was created"

    run(scenario)


def test_an_activation_within_the_wait_leaves_no_wakeup_for_its_end() -> None:
    """The wait's wake-up is dropped once the activation is written: a burst of orders does not come back for
    one more pass each when their waits would have ended (the next wake-up is the one billing asks for)."""

    async def scenario(w: World) -> None:
        w.ctl.settings.subscription_progress_seconds = 30.0
        await w.put("productofferings", offering_body())
        await w.put("subscriptions", subscription_body("hq"))
        await w.idle()
        assert _subscription_writes(w) == [], "waiting for the NetworkService"
        loop = asyncio.get_running_loop()
        timer = w.ctl._subs._timers[("acme", "hq")]
        assert timer.when() <= loop.time() + 30.0, "the end of the wait is the next wake-up"
        await w.service_ready("hq", T0)
        await w.idle()
        assert [s["state"] for s in _subscription_writes(w)] == ["active"]
        timer = w.ctl._subs._timers[("acme", "hq")]
        assert timer.when() > loop.time() + 3600, "next: the end of the billing period, not the end of the wait"

    run(scenario)


def test_a_report_of_the_networkservice_is_written_at_once() -> None:
    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body())
        await w.put("subscriptions", subscription_body("hq"))
        await w.idle()
        assert _subscription_writes(w) == []
        await w.service_ready("hq", T0, ready=False)  # Ready=False OperDown: news the Subscription mirrors
        await w.idle()
        writes = _subscription_writes(w)
        assert len(writes) == 1 and writes[0]["state"] == "pendingActive"
        mirrored = condition(writes[0], "ServiceReady")
        assert mirrored is not None and (mirrored["status"], mirrored["reason"]) == ("False", "OperDown")

    run(scenario)


def test_a_refused_order_is_written_at_once() -> None:
    async def scenario(w: World) -> None:
        await w.put("subscriptions", subscription_body("hq"))  # its offering does not exist
        await w.idle()
        writes = _subscription_writes(w)
        assert len(writes) == 1 and writes[0]["state"] == "created"
        refused = condition(writes[0], "OrderAccepted")
        assert refused is not None and refused["reason"] == "OfferingNotFound"

    run(scenario)


# --- the outbox invariant -----------------------------------------------------------------------------


def test_activation_records_the_transition_and_its_event_in_one_write() -> None:
    async def scenario(w: World) -> None:
        sub = await activate(w)
        uid = sub["metadata"]["uid"]
        assert FINALIZER in sub["metadata"]["finalizers"]
        svc = w.obj("networkservices", "hq")
        assert svc["metadata"]["ownerReferences"][0]["uid"] == uid
        assert sub["status"]["state"] == "active"
        assert sub["status"]["startDate"] == "2026-11-10T12:00:00Z"
        activated = ev.event_id(uid, "activated", "")
        writes = [s for r, s in w.kube.status_writes if r.plural == "subscriptions" and s.get("state") == "active"]
        first = writes[0]
        assert [e["id"] for e in first["billing"]["outbox"]["pending"]] == [activated], "fact and event together"
        assert first["billing"]["ledger"]["startDate"] == "2026-11-10T12:00:00Z"
        # delivery, then the second write removes it
        assert await w.ctl.deliver_once() == 1
        await w.idle()
        box = w.obj("subscriptions", "hq")["status"]["billing"]["outbox"]
        assert box.get("pending", []) == [] and box["deliveredCount"] == 1
        assert [e.id for e in w.sink.events] == [activated]
        before = len(w.kube.status_writes)
        for key in list(w.ctl.subscriptions):
            w.ctl._subs.mark(key)
        await w.idle()
        assert len(w.kube.status_writes) == before, "a pass with nothing new writes nothing"

    run(scenario)


def test_a_conflicting_write_is_redone_on_the_fresh_object_and_the_fact_recorded_once() -> None:
    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body())
        await w.put("subscriptions", subscription_body())
        await w.idle()
        w.kube.conflicts = 2
        await w.service_ready("hq", T0)
        await w.idle()
        sub = w.obj("subscriptions", "hq")
        assert sub["status"]["state"] == "active"
        pending = sub["status"]["billing"]["outbox"]["pending"]
        assert [e["type"] for e in pending] == ["dev.intent.telco.subscription.activated.v1"]

    run(scenario)


def test_a_status_write_stored_without_an_answer_is_taken_as_ours_not_as_a_forgery() -> None:
    """Order chaos bug #17: the API server killed after storing a status write but before answering it. The
    redone pass meets that status (Conflict, re-read); it is the controller's own, so it is carried on from,
    not reported as forged and overwritten with the status before it (which lost a pendingChange, a price
    version and a delivered `changed` event's version around a month end)."""

    async def scenario(w: World) -> None:
        await activate(w)
        w.clock.advance(minutes=10)
        w.kube.unanswered = 1
        await w.service_ready("hq", T0 + timedelta(minutes=10), ready=False)
        await w.idle()  # the outage is stored; the pass saw no answer (and is retried later)
        stored = w.obj("subscriptions", "hq")["status"]
        assert condition(stored, "Ready")["status"] == "False"
        writes = len(w.kube.status_writes)
        w.ctl._subs.mark(("acme", "hq"))  # the retry
        await w.idle()
        assert [r for r, _ in w.kube.events if r == "StatusForged"] == []
        assert len(w.kube.status_writes) == writes, "nothing new to say: the stored status is already ours"
        assert w.obj("subscriptions", "hq")["status"] == stored

    run(scenario)


def test_sink_down_keeps_events_pending_and_redelivers_them_under_the_same_id() -> None:
    async def scenario(w: World) -> None:
        w.sink.down = True
        sub = await activate(w)
        assert await w.ctl.deliver_once() == 0
        await w.idle()
        status = w.obj("subscriptions", "hq")["status"]
        assert len(status["billing"]["outbox"]["pending"]) == 1
        cond = next(c for c in status["conditions"] if c["type"] == "BillingDelivered")
        assert (cond["status"], cond["reason"]) == ("False", "Pending")
        w.sink.down = False
        assert await w.ctl.deliver_once() == 1
        await w.idle()
        assert [e.id for e in w.sink.events] == [ev.event_id(sub["metadata"]["uid"], "activated", "")]
        cond = next(c for c in w.obj("subscriptions", "hq")["status"]["conditions"] if c["type"] == "BillingDelivered")
        assert cond["status"] == "True"

    run(scenario)


def test_suspend_resume_terminate_and_release() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        sub = await activate(w)
        uid = sub["metadata"]["uid"]
        ref = Ref("subscriptions", "hq", "acme")
        svc_ref = Ref("networkservices", "hq", "acme")
        await w.kube.set_finalizers(svc_ref, [FINALIZER], "")  # as the network reconciler does
        clock.advance(minutes=10)
        await w.kube.patch(ref, {"spec": {"desiredState": "suspended"}})
        await w.idle()
        assert w.obj("subscriptions", "hq")["status"]["state"] == "suspended"
        assert w.obj("networkservices", "hq")["spec"]["adminState"] == "disabled"
        clock.advance(minutes=10)
        await w.kube.patch(ref, {"spec": {"desiredState": "terminated"}})
        await w.idle()
        assert w.obj("subscriptions", "hq")["status"]["state"] == "pendingTerminate"
        assert w.obj("networkservices", "hq")["metadata"]["deletionTimestamp"]
        await w.kube.set_finalizers(svc_ref, [], "")  # the device configuration is removed
        await w.idle()
        sub = w.obj("subscriptions", "hq")
        assert sub["status"]["state"] == "terminated"
        assert FINALIZER in sub["metadata"]["finalizers"], "held until its events are delivered"
        await w.ctl.deliver_once()
        await w.idle()
        sub = w.obj("subscriptions", "hq")
        assert FINALIZER not in sub["metadata"]["finalizers"], "released: final period closed, all delivered"
        facts = [ev.fact_of(e.type) for e in w.sink.events]
        assert facts == ["activated", "suspended", "terminated", "charge.period"]
        charge = w.sink.events[-1]
        assert charge.data["billableSeconds"] == str(10 * 60), "active ∩ Ready: only the 10 minutes before suspension"
        assert charge.id == ev.event_id(uid, "charge.period", charge.data["price"] + "/" + _key(charge))

    run(scenario, clock)


def _key(event: BillingEvent) -> str:
    def compact(text: str) -> str:
        return text.replace("-", "").replace(":", "")

    return f"{compact(event.data['coverageStart'])}-{compact(event.data['coverageEnd'])}"


def test_outbox_full_blocks_the_transition_until_delivery_makes_room() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        w.sink.down = True
        await activate(w)
        ref = Ref("subscriptions", "hq", "acme")
        for i in range(70):  # 70 suspend/resume facts after activation: the outbox holds 64
            clock.advance(seconds=5)
            await w.kube.patch(ref, {"spec": {"desiredState": "suspended" if i % 2 == 0 else "active"}})
            await w.idle()
        status = w.obj("subscriptions", "hq")["status"]
        assert len(status["billing"]["outbox"]["pending"]) == 64
        cond = next(c for c in status["conditions"] if c["type"] == "BillingDelivered")
        assert cond["reason"] == "OutboxFull"
        w.sink.down = False
        for _ in range(5):
            await w.ctl.deliver_once()
            await w.idle()
        status = w.obj("subscriptions", "hq")["status"]
        assert status["billing"]["outbox"].get("pending", []) == []
        ids = [e.id for e in w.sink.events]
        assert len(ids) == len(set(ids)) == 65, "every fact once: the blocked resume was recorded after delivery"
        assert w.obj("subscriptions", "hq")["status"]["state"] == "active"

    run(scenario, clock)


# --- dunning and invoices --------------------------------------------------------------------------


def test_overdue_invoice_suspends_and_payment_resumes() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        policy = {"suspendOnOverdue": True, "gracePeriodDays": 0, "paymentTermDays": 0}
        await w.put("productofferings", offering_body(paymentPolicy=policy))
        await w.put("subscriptions", subscription_body())
        await w.idle()
        await w.service_ready("hq", T0)
        await w.idle()
        clock.advance(days=2)
        invoice = {
            "apiVersion": API,
            "kind": "Invoice",
            "metadata": {"name": "bill", "namespace": "acme"},
            "spec": {
                "billingAccount": "acme-1",
                "billingPeriod": {"startDateTime": "2026-11-10T00:00:00Z", "endDateTime": "2026-11-11T00:00:00Z"},
            },
        }
        await w.put("invoices", invoice)
        await w.idle()
        bill = w.obj("invoices", "bill")["status"]
        assert bill["state"] == "validated" and bill["overdue"] is True
        assert bill["taxExcludedAmount"]["value"] == "0.83"  # 12 h of 49.90 per 30-day November
        sub = w.obj("subscriptions", "hq")["status"]
        assert sub["state"] == "suspended" and sub["billing"]["paymentHold"]["invoices"] == ["bill"]
        await w.kube.patch(
            Ref("invoices", "bill", "acme"),
            {
                "spec": {
                    "payments": [
                        {"id": "p", "amount": {"unit": "EUR", "value": "0.83"}, "date": "2026-11-12T00:00:00Z"}
                    ]
                }
            },
        )
        await w.idle()
        assert w.obj("invoices", "bill")["status"]["state"] == "settled"
        sub = w.obj("subscriptions", "hq")["status"]
        assert sub["state"] == "active" and "paymentHold" not in sub["billing"]

    run(scenario, clock)


def test_month_end_creates_the_on_cycle_invoice_once() -> None:
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        await activate(w)
        month = Cycle.of("month").period_containing(T0)
        clock.set(month.end + timedelta(minutes=1))
        await w.ctl.billing_pass()
        await w.idle()
        await w.ctl.billing_pass()
        await w.idle()
        name = invoice_name("acme-1", month)
        invoices = [k for k in w.kube.objects if k[0] == "invoices"]
        assert invoices == [("invoices", "acme", name)]
        bill = w.obj("invoices", name)
        assert bill["spec"]["runType"] == "onCycle" and bill["status"]["state"] == "validated"
        sub = w.obj("subscriptions", "hq")["status"]
        assert sub["billing"]["chargedThrough"] == "2026-12-01T00:00:00Z"
        # recurring charge: 20.5 days of 30 delivered: 49.90 * 20.5 / 30 = 34.0991... -> 34.10
        assert bill["status"]["taxExcludedAmount"]["value"] == "34.10"
        charges = [e for e in sub["billing"]["outbox"]["pending"] if e["type"].endswith("charge.period.v1")]
        assert [e["data"]["amount"] for e in charges] == ["34.10"]
        # November's history stays until December's bill (which carries November's late corrections) is issued
        assert "billedThrough" not in sub["billing"]["ledger"], "not compacted while corrections can come"
        december = Cycle.of("month").next(month)
        clock.set(december.end + timedelta(minutes=1))
        for _ in range(3):
            await w.ctl.billing_pass()
            await w.idle()
        assert w.obj("invoices", invoice_name("acme-1", december))["status"]["state"] == "validated"
        await w.ctl.billing_pass()
        await w.idle()
        sub = w.obj("subscriptions", "hq")["status"]
        assert sub["billing"]["ledger"]["billedThrough"] == "2026-12-01T00:00:00Z", "compacted after the next bill"

    run(scenario, clock)


def test_retired_offering_refuses_new_orders() -> None:
    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body(lifecycleStatus="Retired"))
        await w.put("subscriptions", subscription_body("late"))
        await w.idle()
        sub = w.obj("subscriptions", "late")["status"]
        assert sub["state"] == "created"
        accepted = next(c for c in sub["conditions"] if c["type"] == "OrderAccepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "Retired")
        assert not w.has("networkservices", "late")
        offering = w.obj("productofferings", "fiber", None)["status"]
        assert offering["sellable"] is False and offering["activeSubscriptions"] == 1

    run(scenario)


def test_a_refused_order_and_an_aborted_one_each_post_one_warning() -> None:
    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body(lifecycleStatus="Retired"))
        await w.put("subscriptions", subscription_body("late"))
        await w.idle()
        for key in list(w.ctl.subscriptions):
            w.ctl._subs.mark(key)  # another pass over the same refusal: no second Warning
        await w.idle()
        warnings = [e for e in w.kube.typed_events if e[1] == "Warning"]
        assert [(e[0], e[2]) for e in warnings] == [("late", "Retired")]
        assert "ProductOffering fiber" in warnings[0][3] and "choose a sellable ProductOffering" in warnings[0][3]

        await w.put("productofferings", offering_body("fiber2"))
        await w.put("subscriptions", subscription_body("doomed", productOffering={"name": "fiber2"}))
        await w.idle()
        ref = Ref("networkservices", "doomed", "acme")
        svc = w.kube._get(ref)
        failed = {"status": "False", "lastTransitionTime": "2026-11-10T12:00:00Z", "reason": "PortNotFound"}
        message = "pe1/Ethernet1.100: port Ethernet1 does not exist on device pe1"
        await w.kube.patch_status(
            ref,
            {
                "observedGeneration": svc["metadata"]["generation"],
                "conditions": [
                    {"type": "Ready", **failed, "message": message},
                    {"type": "Degraded", **failed, "status": "True", "message": message},
                ],
            },
        )
        await w.idle()
        assert w.obj("subscriptions", "doomed")["status"]["state"] == "aborted"
        about = [e for e in w.kube.typed_events if e[0] == "doomed"]
        assert [(e[1], e[2]) for e in about if e[2] == "Aborted"] == [("Warning", "Aborted")], about
        assert len([e for e in about if e[1] == "Warning"]) == 1, "one Warning for one failure"
        assert "port Ethernet1 does not exist" in about[-1][3] and "change the Subscription spec" in about[-1][3]

    run(scenario)


def test_startup_lists_namespaced_kinds_per_watched_namespace_only() -> None:
    """With --namespace the chart grants Roles in those namespaces only: a cluster-wide list of a
    namespaced kind would be refused (403) and lose the startup index that prevents false outages."""

    async def scenario() -> list[tuple[str, str | None]]:
        kube = FakeKube()
        settings = Settings(namespaces=["acme", "beta"], billing_interval_seconds=3600, usage_interval_seconds=3600)
        ctl = CommerceController(kube, StatusWriter(kube), settings, FakeClock(T0))  # type: ignore[arg-type]
        await kube.create(subscription_body("hq"), "subscriptions", "acme")
        await ctl._startup()
        assert ("acme", "hq") in ctl.subscriptions
        await ctl.close()
        return kube.lists

    lists = asyncio.run(scenario())
    assert ("productofferings", None) in lists, "a cluster-scoped kind is listed cluster-wide (ClusterRole)"
    for plural in ("networkservices", "invoices", "subscriptions"):
        assert (plural, None) not in lists
        assert {(plural, "acme"), (plural, "beta")} <= set(lists)


# --- small parts -------------------------------------------------------------------------------------


def test_spec_patch_sets_changes_and_nulls_what_we_no_longer_set() -> None:
    have = {"bandwidthMbps": 100, "peakBandwidthMbps": 200, "adminState": "enabled", "dryRun": False}
    want = {"bandwidthMbps": 100, "adminState": "disabled"}
    assert spec_patch(have, want) == {"adminState": "disabled", "peakBandwidthMbps": None}
    assert spec_patch(want, want) == {}


def test_offset_clock_reads_its_file_and_never_goes_back(tmp_path: Path) -> None:
    offset = tmp_path / "offset"
    offset.write_text("3600")
    clock = OffsetClock(offset_file=str(offset), poll=0)
    first = clock.now()
    assert first - datetime.now(UTC) > timedelta(minutes=59)
    offset.write_text("0")
    assert clock.now() >= first, "time never goes backwards"
    offset.write_text("86400")
    assert clock.now() - datetime.now(UTC) > timedelta(hours=23)


def test_octets_from_a_counters_container_or_leaves() -> None:
    from controller.gnmi.client import Notification, Update
    from controller.intent.paths import GPath

    base = "interfaces/interface[name=E1]/subinterfaces/subinterface[index=5]/state/counters"
    container = Notification(0, [Update(GPath.parse(base).to_proto(), {"in-octets": 10, "out-octets": "20"})], [])
    leaf = Notification(0, [Update(GPath.parse(base + "/in-octets").to_proto(), 7)], [])
    assert octets([container]) == {"in": 10, "out": 20}
    assert octets([leaf]) == {"in": 7}


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_build_deliverer_from_flags(mode: str, tmp_path: Path) -> None:
    from controller.commerce.runtime import build_deliverer

    settings = Settings(
        billing_sink_urls=["http://127.0.0.1:1/", "http://127.0.0.1:1/"],
        billing_sink_mode=mode,
        billing_jsonl=str(tmp_path / "events.jsonl"),
    )
    deliverer = build_deliverer(settings)
    assert deliverer is not None and [s.name for s in deliverer.sinks] == [
        "http:http://127.0.0.1:1/",
        f"file:{tmp_path / 'events.jsonl'}",
    ]
    assert build_deliverer(Settings(billing_sink_urls=[], billing_jsonl=None)) is None


def test_build_deliverer_sends_the_auth_header_and_trusts_the_ca_file(tmp_path: Path) -> None:
    from controller.commerce.runtime import build_deliverer
    from localcluster.pki import CertificateAuthority

    ca = tmp_path / "ca.pem"
    ca.write_bytes(CertificateAuthority("billing sinks").cert_pem)
    settings = Settings(
        billing_sink_urls=["https://127.0.0.1:1/"],
        billing_sink_auth_header="Bearer t0ken",
        billing_sink_ca_file=str(ca),
    )
    deliverer = build_deliverer(settings)
    assert deliverer is not None
    (sink,) = deliverer.sinks
    event = ev.activated(ev.SubscriptionRef("acme", "hq", "u1", "a"), T0, "fiber")
    headers, _ = sink.encode(event)  # type: ignore[attr-defined]
    assert headers["Authorization"] == "Bearer t0ken"
    assert sink._ssl.get_ca_certs()[0]["subject"] == ((("commonName", "billing sinks"),),)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"--billing-sink-ca-file .*: not a readable PEM CA"):
        build_deliverer(Settings(billing_sink_urls=["https://x/"], billing_sink_ca_file=str(tmp_path / "absent")))


# --- specs that do not parse -------------------------------------------------------------------------


def test_a_spec_that_does_not_parse_is_reported_naming_its_fields() -> None:
    """Subscription, Invoice and ProductOffering: Ready=False InvalidSpec with one line per bad field."""

    async def scenario(w: World) -> None:
        await w.put("productofferings", offering_body("broken", serviceCandidate={"serviceType": "l9vpn"}))
        await w.put("subscriptions", subscription_body("bad", endpoints=[{"device": "pe1", "vlanId": 5000}]))
        invoice = {
            "apiVersion": API,
            "kind": "Invoice",
            "metadata": {"name": "inv", "namespace": "acme"},
            "spec": {"billingPeriod": {"startDateTime": "not a time"}},
        }
        await w.put("invoices", invoice)
        await w.idle()
        messages = {}
        for plural, name, namespace in (
            ("subscriptions", "bad", "acme"),
            ("invoices", "inv", "acme"),
            ("productofferings", "broken", None),
        ):
            status = w.obj(plural, name, namespace)["status"]
            ready = condition(status, "Ready")
            assert ready is not None and ready["status"] == "False", (plural, status)
            assert ready["reason"] == "InvalidSpec"
            messages[plural] = ready["message"]
        sub = messages["subscriptions"]
        assert "spec.endpoints.0.port: Field required" in sub
        assert "spec.endpoints.0.vlanId: Input should be less than or equal to 4094" in sub
        assert "spec.billingAccount: Field required" in messages["invoices"]
        assert "spec.billingPeriod.startDateTime: Input should be a valid datetime" in messages["invoices"]
        assert "spec.serviceCandidate.serviceType:" in messages["productofferings"]

    run(scenario)


def test_a_billing_error_on_a_terminating_subscription_is_reported_and_retried_until_force_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cases 4/5 of issue 19: never a hung finalizer. The final period cannot be rated (here: an unknown
    currency); the deletion is held, says why and retries; the operator's annotation completes it."""
    from controller.billing.money import MoneyError
    from controller.commerce import billing_step
    from controller.commerce.release import FORCE_RELEASE

    calls = 0

    def unbillable(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise MoneyError("productOfferingPrice[0].price.unit", "currency ZZZ is not supported")

    async def scenario(w: World) -> None:
        await activate(w)
        ref = Ref("subscriptions", "hq", "acme")
        monkeypatch.setattr(billing_step, "catch_up", unbillable)
        await w.kube.patch(ref, {"metadata": {"annotations": {FORCE_RELEASE: "too early"}}})
        await w.idle()
        assert (
            "ForceReleaseRefused",
            f"metadata.annotations[{FORCE_RELEASE}]: honoured only on a terminating object (delete it first)",
        ) in w.kube.events
        assert FINALIZER in w.obj("subscriptions", "hq")["metadata"]["finalizers"]
        await w.kube.patch(ref, {"metadata": {"annotations": {FORCE_RELEASE: None}}})
        await w.kube.delete(ref)
        await w.kube.set_finalizers(Ref("networkservices", "hq", "acme"), [], "")
        await w.idle()
        sub = w.obj("subscriptions", "hq")
        held = condition(sub["status"], "Released")
        assert held is not None and (held["status"], held["reason"]) == ("False", "BillingError")
        assert "currency ZZZ is not supported" in held["message"] and FORCE_RELEASE in held["message"]
        before = calls
        w.ctl._subs.mark(("acme", "hq"))  # what the next billing pass does
        await w.idle()
        assert calls > before, "retried"
        assert w.has("subscriptions", "hq"), "still held: the error persists"
        await w.kube.patch(ref, {"metadata": {"annotations": {FORCE_RELEASE: "ZZZ cannot be billed"}}})
        await w.idle()
        assert not w.has("subscriptions", "hq"), "the operator's step completed the deletion"
        forced = [m for r, m in w.kube.events if r == "ForceReleased"]
        assert len(forced) == 1 and "'ZZZ cannot be billed'" in forced[0]

    run(scenario)


TRAFFIC = {
    "name": "Traffic",
    "priceType": "usage",
    "unitOfMeasure": {"amount": 1, "units": "GB"},
    "price": {"unit": "EUR", "value": "1.00"},
}


async def activate_metered(w: World) -> tuple[tuple[str, str], str, Period]:
    """An active subscription to an offering with a usage price of 1.00/GB: its key, its counter and
    the month it started in."""
    prices = [*offering_body()["spec"]["productOfferingPrice"], TRAFFIC]
    await w.put("productofferings", offering_body(productOfferingPrice=prices))
    await w.put("subscriptions", subscription_body())
    await w.idle()
    await w.service_ready("hq", T0)
    await w.idle()
    return ("acme", "hq"), "pe1/Ethernet1/100/out", Cycle.of("month").period_containing(T0)


def test_usage_sampled_after_the_month_closed_goes_to_the_open_month_so_bill_and_event_agree() -> None:
    """Found by the order-lifecycle billing chaos run: octets sampled between a month's close (its
    usage.rated event sent) and its invoice were added to the closed month, so the bill charged more
    than the event it traces to said."""
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        key, counter, month = await activate_metered(w)

        async def sample(octets: int, at: datetime) -> None:
            clock.set(at)
            w.ctl.index.samples[key][counter] = Sample(octets, at)
            w.ctl._subs.mark(key)
            await w.idle()

        await sample(0, T0 + timedelta(hours=1))
        await sample(3 * 10**9, month.end - timedelta(hours=1))
        clock.set(month.end + timedelta(minutes=1))
        w.ctl._subs.mark(key)  # the subscription's pass closes the month: usage.rated for 3 GB
        await w.idle()
        assert w.obj("subscriptions", "hq")["status"]["billing"]["chargedThrough"] == "2026-12-01T00:00:00Z"
        await sample(5 * 10**9, month.end + timedelta(hours=1))  # 1 GB before the month end, 1 GB after
        await w.ctl.billing_pass()  # creates and issues the month's bill
        await w.idle()
        await w.ctl.billing_pass()
        await w.idle()
        sub = w.obj("subscriptions", "hq")["status"]["billing"]
        rated = [e for e in sub["outbox"]["pending"] if e["type"].endswith("usage.rated.v1")]
        assert [(e["data"]["octets"], e["data"]["amount"]) for e in rated] == [("3000000000", "3.00")]
        bill = w.obj("invoices", invoice_name("acme-1", month))["status"]
        (usage,) = [ln for ln in bill["lines"] if ln["type"] == "usageCharge"]
        assert usage["taxExcludedAmount"]["value"] == "3.00", "the bill says what the event said"
        windows = {w_["start"]: w_["octets"] for w_ in sub["usage"]["windows"]}
        assert windows == {"2026-11-01T00:00:00Z": "3000000000", "2026-12-01T00:00:00Z": "2000000000"}, (
            "November keeps what it was closed with; the late octets go to December"
        )

    run(scenario, clock)


def test_the_months_bill_waits_for_its_subscriptions_to_close_the_month() -> None:
    """Found by the order-lifecycle billing chaos run: the onCycle bill was issued from statuses the
    subscriptions had not yet brought to the month end (a usage sample, a transition still in memory),
    so its lines said less than the period events sent a moment later; the rest came as corrections."""
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        key, counter, month = await activate_metered(w)
        clock.set(T0 + timedelta(hours=1))
        w.ctl.index.samples[key][counter] = Sample(0, clock.now())
        w.ctl._subs.mark(key)
        await w.idle()
        # sampled before the month end, not yet recorded in the subscription's status
        w.ctl.index.samples[key][counter] = Sample(2 * 10**9, month.end - timedelta(hours=1))
        clock.set(month.end + timedelta(minutes=1))
        name = invoice_name("acme-1", month)
        period = {"startDateTime": "2026-11-01T00:00:00Z", "endDateTime": "2026-12-01T00:00:00Z"}
        await w.put(
            "invoices",
            {
                "apiVersion": API,
                "kind": "Invoice",
                "metadata": {"name": name, "namespace": "acme"},
                "spec": {"billingAccount": "acme-1", "runType": "onCycle", "billingPeriod": period},
            },
        )
        await w.idle()
        assert w.obj("invoices", name)["status"]["state"] == "new", "not issued before the month is closed"
        w.ctl._subs.mark(key)  # the subscription's pass records the sample and closes the month
        await w.idle()
        await w.ctl.billing_pass()
        await w.idle()
        bill = w.obj("invoices", name)["status"]
        assert bill["state"] == "validated"
        (usage,) = [ln for ln in bill["lines"] if ln["type"] == "usageCharge"]
        sub = w.obj("subscriptions", "hq")["status"]["billing"]
        (rated,) = [e for e in sub["outbox"]["pending"] if e["type"].endswith("usage.rated.v1")]
        assert usage["taxExcludedAmount"]["value"] == rated["data"]["amount"] == "2.00"
        # and a subscription that never closes does not hold the bill for ever
        day = Period(month.end, month.end + timedelta(days=1))  # chargedThrough stays at the month end
        wait = invoice_controller.CLOSE_WAIT
        closed = invoice_controller.periods_closed
        assert not closed(w.ctl.index, "acme", "acme-1", day, day.end + wait - timedelta(seconds=1))
        assert closed(w.ctl.index, "acme", "acme-1", day, day.end + wait)

    run(scenario, clock)


def test_counters_another_replica_published_are_metered_once_through_a_change_of_owner() -> None:
    """Sharded (#16): the replica driving the device publishes the counters in the NetworkDevice's
    status; the commerce holder meters them only from the device's Lease holder, and its own reads of the
    same counter (once it drives the device) continue the same series."""
    clock = FakeClock(T0)

    async def scenario(w: World) -> None:
        holders = {"pe1": "rep-b"}
        reports: dict[str, Any] = {}  # the NetworkDevices' status.usage, as runtime.Controller keeps them
        w.ctl.ctx.holder_of = holders.get
        w.ctl.ctx.device_usage = reports.get
        key, counter, _ = await activate_metered(w)
        assert w.obj("networkservices", "hq")["metadata"]["labels"][METERED_LABEL] == "true"

        async def publish(replica: str, at: datetime, out: int) -> None:
            clock.set(max(clock.now(), at))
            endpoint = {"port": "Ethernet1", "vlanId": 100, "inOctets": "0", "outOctets": str(out)}
            other = {"port": "Ethernet9", "vlanId": 900, "inOctets": "7", "outOctets": "7"}  # not this one's
            report = {
                "replica": replica,
                "sampledAt": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endpoints": [endpoint, other],
            }
            reports["pe1"] = report
            w.ctl.observe_device_usage("pe1", report)  # the NetworkDevice's watch event: it queues the pass
            await w.idle()

        def metered() -> tuple[int, int]:
            usage = w.obj("subscriptions", "hq")["status"]["billing"]["usage"]
            last = next(int(c["octets"]) for c in usage["counters"] if c["key"] == counter)
            return last, sum(int(x["octets"]) for x in usage["windows"])

        await publish("rep-b", T0 + timedelta(hours=1), 10**9)  # the baseline
        await publish("rep-b", T0 + timedelta(hours=2), 3 * 10**9)
        assert metered() == (3 * 10**9, 2 * 10**9)
        holders["pe1"] = "rep-c"  # rep-b lost the device
        await publish("rep-b", T0 + timedelta(hours=3), 4 * 10**9)  # its late write: not the holder's
        assert metered() == (3 * 10**9, 2 * 10**9)
        # rep-c holds the commerce unit too and reads the device itself
        w.ctl.index.samples[key][counter] = Sample(5 * 10**9, T0 + timedelta(hours=4))
        clock.set(T0 + timedelta(hours=4))
        w.ctl._subs.mark(key)
        await w.idle()
        assert metered() == (5 * 10**9, 4 * 10**9), "continued from the published series, nothing doubled"
        assert not w.ctl.index.samples.get(key), "the own read was recorded"

    run(scenario, clock)


def test_a_ready_history_cut_past_what_the_ledger_saw_is_recorded_as_not_ready_and_said_once() -> None:
    """docs/billing.md "Ready history": the NetworkService changed more often than its readyTransitions keeps
    while the controller could not see it; the unknown stretch is not billed, and one Warning says so."""

    def at(s: int) -> str:
        return (T0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def scenario(w: World) -> None:
        await activate(w)
        w.clock.advance(timedelta(minutes=10))
        svc = w.kube._get(Ref("networkservices", "hq", "acme"))
        status = {
            **(svc.get("status") or {}),
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": at(500), "reason": "Applied", "message": ""}
            ],
            "readyTransitions": [
                {"at": at(400), "ready": False, "reason": "OperDown"},
                {"at": at(500), "ready": True, "reason": "Applied"},
            ],
            "readyTransitionsDroppedThrough": at(300),  # the newest dropped entry: Ready from 300 s
        }
        await w.kube.patch_status(Ref("networkservices", "hq", "acme"), status)
        await w.idle()
        ledger = w.obj("subscriptions", "hq")["status"]["billing"]["ledger"]
        assert ledger["ready"] == [{"start": at(300), "end": at(400)}, {"start": at(500)}]
        assert ledger["readyUnknown"] == [{"start": at(0), "end": at(300)}]
        lost = [e for e in w.kube.typed_events if e[2] == "ReadyHistoryLost"]
        assert len(lost) == 1 and lost[0][:2] == ("hq", "Warning"), w.kube.typed_events
        assert f"from {at(0)} to {at(300)}" in lost[0][3] and "not billed" in lost[0][3]
        w.clock.advance(timedelta(seconds=5))
        await w.kube.patch_status(Ref("networkservices", "hq", "acme"), {**status, "operatingStatus": "running"})
        await w.idle()
        assert len([e for e in w.kube.typed_events if e[2] == "ReadyHistoryLost"]) == 1, "said once"
        assert w.obj("subscriptions", "hq")["status"]["billing"]["ledger"] == ledger

    run(scenario)


def test_an_order_change_seen_before_an_earlier_price_edit_of_its_offering_records_the_edited_offering() -> None:
    """Offerings and Subscriptions come on separate watches: the upgrade below reaches the controller before
    the price edit of its target written earlier. The version it records is the edited offering (the pass
    reads it from the API server first), so no revision replaces it later and one `changed` event says it."""

    def price(value: str) -> list[dict[str, Any]]:
        return [
            {
                "name": "Monthly fee",
                "priceType": "recurring",
                "recurringChargePeriodType": "month",
                "price": {"unit": "EUR", "value": value},
            }
        ]

    async def scenario(w: World) -> None:
        await activate(w)
        plus = offering_body("fiber-plus", productOfferingPrice=price("79.90"))
        plus["spec"]["serviceCandidate"]["bandwidthMbps"] = 1000
        await w.put("productofferings", plus)
        await w.idle()
        w.clock.advance(timedelta(minutes=5))
        watch = w.watch
        w.kube.on_write = lambda obj: None if obj.get("kind") == "ProductOffering" else watch(obj)  # held back
        await w.kube.patch(Ref("productofferings", "fiber-plus"), {"spec": {"productOfferingPrice": price("89.90")}})
        w.clock.advance(timedelta(seconds=5))
        await w.kube.patch(Ref("subscriptions", "hq", "acme"), {"spec": {"productOffering": {"name": "fiber-plus"}}})
        await w.idle()
        w.kube.on_write = watch
        w.ctl.upsert_offering(w.obj("productofferings", "fiber-plus", None))  # the held event arrives
        w.clock.advance(timedelta(seconds=5))
        await w.idle()
        billing = w.obj("subscriptions", "hq")["status"]["billing"]
        plans = billing["plans"]
        assert [p["offering"] for p in plans] == ["fiber", "fiber-plus"], "no revision replaced the upgrade's version"
        assert plans[1]["productOfferingPrice"][0]["price"]["value"] == "89.90", "the offering as edited before"
        changed = [e for e in billing["outbox"]["pending"] if e["type"].endswith(".changed.v1")]
        assert [(e["data"]["direction"], e["data"]["toRevision"]) for e in changed] == [
            ("upgrade", plans[1]["revision"])
        ]

    run(scenario)

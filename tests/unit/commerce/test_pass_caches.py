"""What a Subscription pass reuses from earlier passes gives the answers it would compute afresh."""

from __future__ import annotations

import random
from typing import Any

from controller.api.subscription import SubscriptionSpec
from controller.commerce.changes import _digest, revision
from controller.commerce.index import CommerceIndex, Queues
from controller.commerce.objects import billing_of
from controller.commerce.order import endpoint_claims, endpoint_conflicts, order_record
from controller.commerce.subscriptions import ParseMemo
from controller.statuswriter import StatusWriter

from .builders import T0, iso, offering

STATES = [None, "created", "pendingActive", "active", "suspended", "pendingTerminate", "terminated", "aborted"]
ENDPOINTS = [(d, p, v) for d in ("pe1", "pe2") for p in ("Ethernet1", "Ethernet2") for v in (100, 101)]


class _Marks:
    """A work queue that only takes marks (what the index asks of one); nothing runs."""

    def mark(self, key: Any) -> None:
        pass

    def forget(self, key: Any) -> None:
        pass


def _index() -> CommerceIndex:
    queues = Queues(_Marks(), _Marks(), _Marks(), _Marks())  # type: ignore[arg-type]
    return CommerceIndex(StatusWriter(None), queues)  # type: ignore[arg-type]


def _subscription(rng: random.Random, name: str, version: int) -> dict[str, Any]:
    endpoints = rng.sample(ENDPOINTS, rng.randint(1, 3))
    created = T0.replace(minute=rng.randint(0, 3))  # ties on the creation time too
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": rng.choice(["a", "b"]),
            "creationTimestamp": iso(created),
            "resourceVersion": str(version),
        },
        "spec": {"endpoints": [{"device": d, "port": p, "vlanId": v} for d, p, v in endpoints]},
    }
    state = rng.choice(STATES)
    if state is not None:
        body["status"] = {"state": state}
    return body


def test_claims_for_its_endpoints_agree_with_the_claims_of_every_order() -> None:
    """Orders created, moved to other endpoints, ended and deleted in any order: the claims a pass reads for its
    own endpoints are those endpoint_claims gives over every order the index holds."""
    rng = random.Random(7)
    for _ in range(25):
        index, version = _index(), 0
        for _ in range(60):
            version += 1
            name = f"s{rng.randint(0, 12)}"
            body = _subscription(rng, name, version)
            key = (body["metadata"]["namespace"], name)
            if rng.random() < 0.15:
                index.remove_subscription(*key)
                continue
            index.upsert_subscription(body)
            everyone = endpoint_claims(index._orders.values())
            for record in index._orders.values():
                want = endpoint_conflicts(record, everyone)
                assert endpoint_conflicts(record, index.claims_for(record.endpoints)) == want
        for endpoint in ENDPOINTS:
            assert index.claims_for([endpoint]).get(endpoint) == endpoint_claims(index._orders.values()).get(endpoint)
        held = {e for r in index._orders.values() for e in r.endpoints}
        assert set(index._naming) == held, "an endpoint no order names any more is forgotten"


def test_order_record_is_what_the_claims_use() -> None:
    body = _subscription(random.Random(1), "x", 1)
    index = _index()
    index.upsert_subscription(body)
    assert index._orders[(body["metadata"]["namespace"], "x")] == order_record(body)


def test_an_offering_revision_is_the_digest_of_its_spec_and_rate_and_follows_a_new_spec() -> None:
    spec = offering()
    assert revision(spec, 100) == _digest(spec, 100) == revision(spec, 100)
    assert revision(spec, 200) == _digest(spec, 200) != revision(spec, 100)
    edited = spec.model_copy(update={"productOfferingPrice": spec.productOfferingPrice[:0]})
    assert revision(edited, 100) == _digest(edited, 100) != revision(spec, 100)


def test_a_parse_is_reused_while_the_raw_value_is_equal_and_redone_when_it_changes() -> None:
    calls: list[Any] = []

    def parse(raw: Any) -> SubscriptionSpec:
        calls.append(raw)
        return SubscriptionSpec.model_validate(raw)

    memo = ParseMemo(parse)
    raw = {
        "productOffering": {"name": "fiber"},
        "billingAccount": {"id": "acme-1"},
        "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100}],
    }
    first = memo(("ns", "a"), raw)
    assert memo(("ns", "a"), raw) is first
    assert memo(("ns", "a"), {**raw}) is first, "an equal copy (a new watch event) is the same spec"
    moved = {**raw, "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 200}]}
    assert memo(("ns", "a"), moved).endpoints[0].vlanId == 200
    assert memo(("ns", "b"), raw) is not first
    assert len(calls) == 3
    for i in range(70):
        memo(("ns", f"gone-{i}"), raw)
    memo.keep_only({("ns", "a"): {}})
    assert set(memo._last) == {("ns", "a")}


def test_the_outboxes_a_delivery_pass_reads_are_those_a_scan_of_every_subscription_finds_in_its_order() -> None:
    """Events queued, delivered (removed), Subscriptions deleted and re-read (popped and indexed again, as after
    a Conflict): the delivery pass reads exactly the outboxes holding events, in the index's order."""
    rng = random.Random(3)
    index = _index()
    for version in range(1, 401):
        name = f"s{rng.randint(0, 20)}"
        body = _subscription(rng, name, version)
        body["metadata"]["namespace"] = "a"
        if rng.random() < 0.5:
            pending = [{"id": f"e{version}"}] if rng.random() < 0.6 else []
            body.setdefault("status", {})["billing"] = {"outbox": {"pending": pending, "deliveredCount": 0}}
        roll = rng.random()
        if roll < 0.1:
            index.remove_subscription("a", name)
        elif roll < 0.2:
            index.subscriptions.pop(("a", name), None)  # Context.reread: the fresh copy, whatever its version
            index.upsert_subscription(body)
        else:
            index.upsert_subscription(body)
        scan = [(k, b) for k, b in index.subscriptions.items() if billing_of(b).get("outbox", {}).get("pending")]
        assert index.outboxes() == scan

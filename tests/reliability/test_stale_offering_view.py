"""An order change seen before a price edit of its offering that was written earlier (#15, docs/reliability.md
order chaos, "one case of (a)").

ProductOfferings and Subscriptions reach the controller on separate watches, so it can see a Subscription's
upgrade before the price edit of the target offering written a moment earlier. The version the upgrade
records must still be the offering as it was when the order changed (the edited one): a version snapshotted
from the stale view would be replaced by a revision later, and its `changed` event, already emitted, would
count one version change too many. The ordering is made deterministic by a proxy that holds the
ProductOffering watch events back (tests/support/watch_gate.py) while the offering is edited and the order
changed; every other request, the controller's own reads included, goes straight through.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.api.productoffering import ProductOfferingSpec
from controller.commerce.changes import revision
from tests.integration.test_commerce import money, offering, subscription
from tests.kube import Kubectl
from tests.reliability.rig import Rig, rig, unique, wait_for
from tests.support.cloudevents_receiver import CloudEventsReceiver
from tests.support.watch_gate import WatchGate

DEVICES = ("sv-r1",)
TYPE = "dev.intent.telco.subscription.{}.v1"


@pytest.fixture(scope="module")
def receiver() -> Iterator[CloudEventsReceiver]:
    with CloudEventsReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def gate(kubeconfig: Path, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchGate]:
    with WatchGate(kubeconfig, tmp_path_factory.mktemp("sv-gate"), "productofferings") as g:
        yield g


@pytest.fixture(scope="module")
def r(
    kubeconfig: Path, gate: WatchGate, receiver: CloudEventsReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    args = ("--billing-sink-url", receiver.url, "--billing-interval-seconds", "1")
    with rig(
        kubeconfig,
        tmp_path_factory.mktemp("sv"),
        "sv",
        DEVICES,
        controller_args=args,
        controller_env={"TELCO_BILLING_RETRY_SECONDS": "0.5"},
        controller_kubeconfig=gate.kubeconfig,
    ) as it:
        yield it


def fee(per_second: int, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    price: dict[str, Any] = {
        "name": f"Daily fee {per_second}",
        "priceType": "recurring",
        "recurringChargePeriodType": "day",
        "price": money(f"{per_second * 86400}.00"),
    }
    valid = {k: v.strftime("%Y-%m-%dT%H:%M:%SZ") for k, v in (("startDateTime", start), ("endDateTime", end)) if v}
    if valid:
        price["validFor"] = valid
    return price


def tier(name: str, mbps: int, *prices: dict[str, Any]) -> dict[str, Any]:
    body = offering(name, *prices)
    body["spec"]["serviceCandidate"]["bandwidthMbps"] = mbps
    return body


def changed_events(rx: CloudEventsReceiver, namespace: str, name: str) -> list[dict[str, Any]]:
    source = f"/namespaces/{namespace}/subscriptions/{name}"
    return [
        e.get_data()
        for e in rx.events
        if e.get_type() == TYPE.format("changed") and str(e.get_source()).endswith(source)
    ]


def test_an_upgrade_seen_before_an_earlier_price_edit_of_its_offering_records_the_edited_offering(
    r: Rig, gate: WatchGate, receiver: CloudEventsReceiver
) -> None:
    ns = r.namespace
    small, big = unique("sv-small"), unique("sv-big")
    r.api.apply(tier(small, 100, fee(1)))
    r.api.apply(tier(big, 1000, fee(2)))
    body = subscription(ns, "shop", small, "acct-sv", DEVICES[0], "Ethernet2", 311)
    r.api.apply(body)
    wait_for(
        "the Subscription active, billing started",
        lambda: (
            (s := r.api.get("subscriptions", "shop", ns))
            and (s.get("status") or {}).get("state") == "active"
            and len(s["status"].get("billing", {}).get("plans", [])) == 1
        ),
        40,
    )

    gate.hold()  # from here the controller sees no ProductOffering event until release
    switch = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=15)
    edited = tier(big, 1000, fee(2, end=switch), fee(3, start=switch))  # published in advance, as admission wants
    r.api.apply(edited)
    body["spec"]["productOffering"] = {"name": big}
    r.api.apply(body)
    sub = wait_for(
        "the upgrade recorded",
        lambda: (
            (s := r.api.get("subscriptions", "shop", ns))
            and [p["offering"] for p in s["status"]["billing"].get("plans", [])][:2] == [small, big]
            and s
        ),
        30,
    )
    held = gate.held_events
    gate.release()
    assert held >= 1, "the offering's edit reached the controller before the upgrade: the test did not hold it back"

    # Once the controller has seen the edit, its status's rollout names the edited offering's revision (at
    # once with the fix; after a revision pass without it).
    want = revision(ProductOfferingSpec.model_validate(edited["spec"]), body["spec"].get("bandwidthMbps"))
    sub = wait_for(
        "the Subscription judged against the edited offering",
        lambda: (
            (s := r.api.get("subscriptions", "shop", ns))
            and (s["status"].get("templateRollout") or {}).get("revision") == want
            and s
        ),
        30,
    )
    plans = sub["status"]["billing"]["plans"]
    events = wait_for(
        "a changed event delivered for every version change recorded",
        lambda: (e := changed_events(receiver, ns, "shop")) and len(e) >= len(plans) - 1 and e,
        30,
    )
    assert [p["offering"] for p in plans] == [small, big], (
        f"one version per offering: the upgrade recorded the edited offering, no revision replaced it: {plans}"
    )
    assert [p["name"] for p in plans[1]["productOfferingPrice"]] == ["Daily fee 2", "Daily fee 3"]
    assert plans[1]["revision"] == want
    assert [(e["toOffering"], e["toRevision"], e["effective"]) for e in events] == [(big, want, plans[1]["since"])], (
        "one changed event, for the upgrade, naming the version it recorded"
    )
    r.api.delete("subscriptions", "shop", ns)
    wait_for("the Subscription gone", lambda: r.api.get("subscriptions", "shop", ns) is None, 40)
    for name in (small, big):
        r.api.delete("productofferings", name)

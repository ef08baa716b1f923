"""Billing integrity under chaos: a seeded random run of device faults, controller SIGKILLs, sink
outages, spec changes, suspensions and terminations over Subscriptions priced 1.00 per second of
service. Afterwards:

- every distinct billing fact reached the sink under exactly one id (redeliveries of the same id are
  allowed, counted and reported), and nothing recorded in an outbox was lost;
- billed time equals Ready time per subscription within one second, where Ready time is measured
  independently from the watch history: NetworkService Ready (its condition's transition times)
  intersected with the Subscription being `active` (the moments the watch saw the state change);
- the invoice's totals equal the sum of its lines (and tax and amount due follow from them).

Seed: TELCO_CHAOS_SEED. Runs in `make reliability` only.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.harness import condition
from tests.integration.test_commerce import assert_one_id_per_fact, daily, offering, source_of, subscription
from tests.reliability.rig import Recorder, Rig, rig, wait_for
from tests.support.cloudevents_receiver import CloudEventsReceiver

pytestmark = pytest.mark.full

DEVICES = ("bc-r1", "bc-r2")
SUBSCRIPTIONS = 8
ACCOUNT = "acct-chaos"
CHAOS_SECONDS = float(os.environ.get("TELCO_CHAOS_SECONDS", "60"))
SEED = int(os.environ.get("TELCO_CHAOS_SEED", "20261125"))


@pytest.fixture(scope="module")
def receiver() -> Iterator[CloudEventsReceiver]:
    with CloudEventsReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def r(
    kubeconfig: Path, crds: object, receiver: CloudEventsReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    args = ("--billing-sink-url", receiver.url, "--tax-rate", "20", "--billing-interval-seconds", "1")
    with rig(kubeconfig, tmp_path_factory.mktemp("billing-chaos"), "bc", DEVICES, controller_args=args,
             controller_env={"TELCO_BILLING_RETRY_SECONDS": "0.5"}) as the_rig:
        yield the_rig


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wall(at_monotonic: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - at_monotonic)


def overlap(a: list[tuple[datetime, datetime]], b: list[tuple[datetime, datetime]]) -> float:
    return sum(max(0.0, (min(e1, e2) - max(s1, s2)).total_seconds()) for s1, e1 in a for s2, e2 in b)


def ready_changes(nsvc: Recorder, name: str) -> list[tuple[datetime, bool]]:
    """Every change of the NetworkService's Ready status the test knows of, in order: the Ready transitions
    each version seen lists (status.readyTransitions), so a version the watch missed (a re-list after an API
    server restart) is still counted, and the Ready condition's own transition (a status without the list).
    Where a version's list was cut (readyTransitionsDroppedThrough) past the last change known before it, the
    state in between is unknown and counted as not Ready (docs/billing.md); a deletion ends Ready when seen.
    The test's own reading of the status, not the controller's rating code."""
    known: list[tuple[datetime, bool, str]] = []
    lists: list[tuple[datetime, bool, str]] = []  # the entries the lists of the current object had, in order
    for seen in nsvc.of(name):
        if seen.type == "DELETED":
            known.append((wall(seen.at), False, "Deleted"))
            lists = []  # an object of the same name created later starts a list of its own
            continue
        listed = [
            (ts(t["at"]), bool(t["ready"]), str(t.get("reason") or ""))
            for t in seen.status.get("readyTransitions") or []
        ]
        c = seen.cond("Ready")
        if not listed and c is not None:
            listed = [(ts(c["lastTransitionTime"]), c["status"] == "True", str(c.get("reason") or ""))]
        new = listed[_overlap(lists, listed) :]
        dropped = seen.status.get("readyTransitionsDroppedThrough")
        if dropped and known and len(new) == len(listed) and ts(dropped) > max(t[0] for t in known):
            # more changes than the list keeps since the last version seen: unknown until the list's first
            last_known = max(t[0] for t in known)
            known.append((last_known, False, "Unknown"))
            if not listed[0][1]:
                known.append((ts(dropped), True, "Unknown"))
        known.extend(new)
        lists.extend(new)
    ordered = sorted(range(len(known)), key=lambda i: (known[i][0], i))
    return [(known[i][0], known[i][1]) for i in ordered]


def ready_history_disagreements(nsvc: Recorder, name: str) -> list[str]:
    """Versions whose Ready condition is not the newest entry of their own readyTransitions (its state and
    time): the list is written with the condition, so a difference means a status built on an old base."""
    out = []
    for seen in nsvc.of(name):
        listed, c = seen.status.get("readyTransitions") or [], seen.cond("Ready")
        if seen.type == "DELETED" or not listed or c is None:
            continue
        last = listed[-1]
        if (bool(last["ready"]), ts(last["at"])) != (c["status"] == "True", ts(c["lastTransitionTime"])):
            since = c["lastTransitionTime"]
            out.append(f"{name} v{seen.resource_version}: Ready {c['status']} since {since}, list ends {last}")
    return out


def _overlap(earlier: list[Any], listed: list[Any]) -> int:
    """How many of `listed`'s first entries are the last ones of `earlier`: the list only grows at its end
    and loses its oldest entries, so the rest are new. By position, not by value: a service can flap back
    to the same state with the same reason within one second, and that second entry is a change too."""
    for k in range(min(len(earlier), len(listed)), 0, -1):
        if earlier[-k:] == listed[:k]:
            return k
    return 0


def ready_intervals(nsvc: Recorder, name: str, until: datetime) -> list[tuple[datetime, datetime]]:
    """NetworkService Ready=True intervals, from its Ready transitions (`ready_changes`)."""
    out: list[tuple[datetime, datetime]] = []
    since: datetime | None = None
    for at, ready in ready_changes(nsvc, name):
        if ready and since is None:
            since = at
        elif not ready and since is not None:
            if min(at, until) > since:
                out.append((since, min(at, until)))
            since = None
    if since is not None and until > since:
        out.append((since, until))
    return out


def active_intervals(subs: Recorder, name: str, until: datetime) -> list[tuple[datetime, datetime]]:
    """When the Subscription's state was `active`, as the watch saw the state change."""
    out: list[tuple[datetime, datetime]] = []
    since: datetime | None = None
    for seen in subs.of(name):
        active = seen.type != "DELETED" and seen.status.get("state") == "active"
        if active and since is None:
            since = wall(seen.at).replace(microsecond=0)
        elif not active and since is not None:
            out.append((since, min(wall(seen.at).replace(microsecond=0), until)))
            since = None
    if since is not None:
        out.append((since, until))
    return out


class Chaos:
    """The seeded schedule of faults and changes; every action is logged with its time."""

    def __init__(self, r: Rig, rx: CloudEventsReceiver, bodies: dict[str, dict[str, Any]], rng: random.Random):
        self.r, self.rx, self.bodies, self.rng = r, rx, bodies, rng
        self.log: list[tuple[float, str]] = []
        self.terminated: set[str] = set()
        self.vlan_moves = Counter[str]()

    def note(self, what: str) -> None:
        self.log.append((round(time.monotonic(), 2), what))

    def live(self) -> list[str]:
        return [n for n in self.bodies if n not in self.terminated]

    def step(self, elapsed: float) -> None:
        r, rng = self.r, self.rng
        actions = ["device-flap", "fail-sets", "restart-empty", "kill", "sink-down", "sink-drop",
                   "suspend-resume", "suspend-resume", "spec-change"]
        if elapsed > CHAOS_SECONDS / 3 and len(self.terminated) < 2:
            actions.append("terminate")
        action = rng.choice(actions)
        device = rng.choice(DEVICES)
        if action == "device-flap":
            r.admin.down(device)
            self.note(f"{device} down")
            time.sleep(rng.uniform(1, 4))
            r.admin.up(device)
            self.note(f"{device} up")
        elif action == "fail-sets":
            r.admin.fail_sets(device, rng.randint(1, 3), "UNAVAILABLE", "chaos: transient")
            self.note(f"{device} fail-sets")
        elif action == "restart-empty":
            r.admin.restart(device, empty=True)
            self.note(f"{device} restarted empty")
        elif action == "kill":
            assert r.controller is not None
            r.controller.kill9()
            self.note("controller SIGKILL")
            time.sleep(rng.uniform(0, 1.5))
            r.controller.start()
            self.note("controller started")
        elif action == "sink-down":
            self.rx.down(seconds=rng.uniform(2, 6))
            self.note("sink down")
        elif action == "sink-drop":
            self.rx.drop(rng.randint(1, 4))
            self.note("sink drops connections")
        elif action == "suspend-resume" and self.live():
            name = rng.choice(self.live())
            body = self.bodies[name]
            body["spec"]["desiredState"] = "suspended" if body["spec"]["desiredState"] == "active" else "active"
            r.api.apply(body)
            self.note(f"{name} -> {body['spec']['desiredState']}")
        elif action == "spec-change" and self.live():
            name = rng.choice(self.live())
            self.vlan_moves[name] += 1
            endpoint = self.bodies[name]["spec"]["endpoints"][0]
            endpoint["vlanId"] += 100
            r.api.apply(self.bodies[name])
            self.note(f"{name} vlan -> {endpoint['vlanId']}")
        elif action == "terminate" and len(self.live()) > 2:
            name = rng.choice(self.live())
            self.bodies[name]["spec"]["desiredState"] = "terminated"
            r.api.apply(self.bodies[name])
            self.terminated.add(name)
            self.note(f"{name} -> terminated")


def test_billing_integrity_under_chaos(r: Rig, receiver: CloudEventsReceiver, measure) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    print(f"chaos seed {SEED} (TELCO_CHAOS_SEED), {CHAOS_SECONDS:.0f}s")
    ns = r.namespace
    off = f"bc-offer-{SEED % 10000}"
    r.api.apply(offering(off, daily(), {"name": "Installation", "priceType": "oneTime",
                                        "price": {"unit": "EUR", "value": "10.00"}}))
    names = [f"bc-s{i}" for i in range(SUBSCRIPTIONS)]
    bodies = {n: subscription(ns, n, off, ACCOUNT, DEVICES[i % 2], f"Ethernet{1 + i // 2}", 800 + i)
              for i, n in enumerate(names)}
    period_start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    with Recorder(r.api, "networkservices", ns) as nsvc, Recorder(r.api, "subscriptions", ns) as subs:
        for body in bodies.values():
            r.api.apply(body)
        wait_for("every Subscription active", lambda: all(
            (s := r.api.get("subscriptions", n, ns)) and s.get("status", {}).get("state") == "active"
            for n in names), 60, 0.5)

        chaos = Chaos(r, receiver, bodies, rng)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < CHAOS_SECONDS:
            chaos.step(elapsed)
            time.sleep(rng.uniform(0.5, 2.5))
        for device in DEVICES:
            r.admin.up(device)
            r.admin.fail_sets(device, 0)
        receiver.up()
        assert r.controller is not None
        if not r.controller.alive():
            r.controller.start()
        print("chaos log:\n" + "\n".join(f"  {t - started:7.2f}s {what}" for t, what in chaos.log))

        settle_started = time.monotonic()

        def settled() -> bool:
            for n in names:
                s = r.api.get("subscriptions", n, ns)
                state = (s or {}).get("status", {}).get("state")
                if state not in ("active", "suspended", "terminated"):
                    return False
                if state == "active" and (condition(s, "Ready") or {}).get("status") != "True":
                    return False
                if (s or {}).get("status", {}).get("billing", {}).get("outbox", {}).get("pending"):
                    return False
            return True

        wait_for("every Subscription settled with an empty outbox", lambda: settled() or None, 180, 1.0)
        measure("billing chaos: settle after the last fault", time.monotonic() - settle_started,
                f"{len(chaos.log)} actions in {CHAOS_SECONDS:.0f}s (seed {SEED})")

        period_end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        invoice = {
            "apiVersion": "telco.intent.dev/v1alpha1",
            "kind": "Invoice",
            "metadata": {"name": "bc-chaos", "namespace": ns},
            "spec": {"billingAccount": ACCOUNT, "runType": "offCycle", "billingPeriod": {
                "startDateTime": period_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": period_end.strftime("%Y-%m-%dT%H:%M:%SZ")}},
        }
        r.api.apply(invoice)
        issued = wait_for("the invoice issued", lambda: (i := r.api.get("invoices", "bc-chaos", ns))
                          and (i.get("status") or {}).get("state") in ("validated", "sent") and i["status"], 90, 0.5)
        time.sleep(1)

    problems: list[str] = []
    # 1. one id per fact; nothing lost; redeliveries reported
    report = []
    for n in names:
        source = source_of(ns, n, cluster="")  # the rig's controller runs without --cluster-identity
        try:
            assert_one_id_per_fact(receiver, source)
        except AssertionError as exc:
            problems.append(f"{n}: {exc}")
        sub = r.api.get("subscriptions", n, ns)
        assert sub is not None
        delivered_ids = {e.get_id() for e in receiver.events if e.get_source() == source}
        count = sub["status"]["billing"]["outbox"].get("deliveredCount", 0)
        if count != len(delivered_ids):
            problems.append(f"{n}: the outbox says {count} events delivered, the sink has {len(delivered_ids)} ids")
        facts = Counter(e.get_type().split(".")[-2] for e in receiver.events if e.get_source() == source
                        and e.get_id() in delivered_ids)
        report.append(f"{n}: {dict(facts)}")
    redelivered = receiver.redeliveries
    print(f"redeliveries (same id again): {sum(redelivered.values())} of {len(receiver.deliveries)} events; "
          + "\n".join(report))

    # 2. billed time = Ready time (within 1 s) per subscription
    billed: dict[str, Decimal] = Counter()  # type: ignore[assignment]
    for line in issued["lines"]:
        if line["type"] == "recurringCharge":
            billed[line["subscription"].split("/")[1]] += Decimal(line["taxExcludedAmount"]["value"])
    window = [(period_start, period_end)]
    for n in names:
        ready = ready_intervals(nsvc, n, period_end)
        active = active_intervals(subs, n, period_end)
        measured = overlap([(max(s, period_start), e) for s, e in ready], [
            (max(s, period_start), e) for s, e in active]) if ready and active else 0.0
        measured = min(measured, overlap(window, window))
        got = float(billed.get(n, Decimal(0)))
        print(f"{n}: billed {got:.0f}s, measured Ready∩active {measured:.1f}s "
              f"(ledger {r.api.get('subscriptions', n, ns)['status']['billing']['ledger']})")  # type: ignore[index]
        if abs(got - measured) > 1.0:
            problems.append(f"{n}: billed {got:.0f}s of service but it was Ready and active {measured:.1f}s")

    # 3. invoice totals equal the sum of their lines
    lines = sum((Decimal(x["taxExcludedAmount"]["value"]) for x in issued["lines"]), Decimal(0))
    taxes = sum((Decimal(t["taxAmount"]["value"]) for t in issued.get("taxItem", [])), Decimal(0))
    if Decimal(issued["taxExcludedAmount"]["value"]) != lines:
        problems.append(f"taxExcludedAmount {issued['taxExcludedAmount']['value']} != sum of lines {lines}")
    if Decimal(issued["taxIncludedAmount"]["value"]) != lines + taxes:
        problems.append(f"taxIncludedAmount {issued['taxIncludedAmount']['value']} != {lines} + taxes {taxes}")
    if Decimal(issued["amountDue"]["value"]) != lines + taxes - Decimal(issued["amountPaid"]["value"]):
        problems.append(f"amountDue {issued['amountDue']['value']} inconsistent")
    assert not problems, "\n".join(problems)

    # Teardown through the controller: terminations close the last period and deliver the final events.
    for n in names:
        r.api.delete("subscriptions", n, ns)
    wait_for("the Subscriptions gone", lambda: not [n for n in names if r.api.get("subscriptions", n, ns)], 90, 0.5)
    r.api.delete("invoices", "bc-chaos", ns)
    r.api.delete("productofferings", off)

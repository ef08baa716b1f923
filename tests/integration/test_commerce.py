"""The commercial layer end to end: a real API server, the controller as a process, a devicesim fleet
as a process and a real CloudEvents receiver.

ProductOffering -> Subscription -> owned NetworkService -> device -> billing events, suspension,
termination, a retired offering, a sink outage, a controller killed before delivery, invoices
(offCycle on demand, onCycle at a month end crossed by moving the controller's clock), and
suspension for non-payment. Every test works in its own namespace and billing account.

The controller's clock is moved only forward, through TELCO_CLOCK_OFFSET_FILE; `controller_now()`
is the time the controller sees. The month-end test moves it and runs last.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.billing import events as ev
from controller.billing.invoice import invoice_name
from controller.billing.invoice_events import invoice_event_id
from controller.billing.money import round_half_up
from controller.billing.periods import Cycle, Period, stamp
from controller.intent.render import qos_name
from devicesim.admin import AdminClient
from devicesim.fleet import FleetProcess
from localcluster.cluster import free_port
from tests.harness import Api, ControllerProcess, condition, is_ready, serving, wait_for
from tests.kube import Kubectl
from tests.support.cloudevents_receiver import CloudEventsReceiver

SYSTEM = "telco-system"
DEVICES = ("cm-r1", "cm-r2")
FINALIZER = "telco.intent.dev/cleanup"
GROUP_VERSION = "telco.intent.dev/v1alpha1"
TYPE = "dev.intent.telco.subscription.{}.v1"
ISSUED = ("validated", "sent")  # sent once the issued bill's CloudEvent reached the sink
pytestmark = pytest.mark.cluster

# --cluster-identity: the billing events' source is an absolute URI (the CloudEvents recommendation).
CLUSTER = "https://k8s.cm-test.example"


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetProcess]:
    workdir = tmp_path_factory.mktemp("cm-fleet")
    fleet_file = workdir / "fleet.yaml"
    fleet_file.write_text(
        yaml.safe_dump(
            {
                # strict: official-model validation and YANG defaults, like a real router
                "defaults": {
                    "port_count": 8,
                    "credentials": {"username": "admin", "password": "admin"},
                    "profile": "strict",
                },
                "devices": [{"name": name} for name in DEVICES],
            }
        )
    )
    proc = FleetProcess(["--fleet", str(fleet_file), "--ca-out", str(workdir / "ca.pem")], workdir=workdir)
    try:
        proc.start()
    except RuntimeError as exc:
        pytest.fail(f"devicesim could not start: {exc}", pytrace=False)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[CloudEventsReceiver]:
    with CloudEventsReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cm-clock") / "offset"
    path.write_text("0")
    return path


@pytest.fixture(scope="module")
def api(crds: Kubectl, fleet: FleetProcess) -> Api:
    api = Api(crds.kubeconfig)
    api.ensure_namespace(SYSTEM)
    api.put_secret(SYSTEM, "devicesim-credentials", {"username": "admin", "password": "admin"})
    assert fleet.ca_path is not None
    api.put_secret(SYSTEM, "devicesim-ca", {"ca.crt": Path(fleet.ca_path).read_text()})
    for name in DEVICES:
        api.apply(
            {
                "apiVersion": GROUP_VERSION,
                "kind": "NetworkDevice",
                "metadata": {"name": name},
                "spec": {
                    "address": "127.0.0.1",
                    "port": fleet.devices[name].port,
                    "tls": {"caSecretRef": {"name": "devicesim-ca", "namespace": SYSTEM}, "serverName": name},
                    "credentialsSecretRef": {"name": "devicesim-credentials", "namespace": SYSTEM},
                    "timeoutSeconds": 2,
                },
            }
        )
    return api


@pytest.fixture(scope="module")
def web_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def controller(
    api: Api,
    kubeconfig: Path,
    receiver: CloudEventsReceiver,
    clock_file: Path,
    web_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControllerProcess]:
    log = tmp_path_factory.mktemp("cm-controller") / "controller.log"
    proc = ControllerProcess(
        kubeconfig,
        log,
        "--billing-sink-url",
        receiver.url,
        "--tax-category",
        "VAT",
        "--tax-rate",
        "20",
        "--billing-interval-seconds",
        "1",
        "--usage-interval-seconds",
        "1",
        "--cluster-identity",
        CLUSTER,
        "--web-port",
        str(web_port),
        env={"TELCO_CLOCK_OFFSET_FILE": str(clock_file), "TELCO_BILLING_RETRY_SECONDS": "0.5"},
    )
    with serving(proc, api, DEVICES) as running:
        yield running


@pytest.fixture()
def ns(api: Api) -> Iterator[str]:
    """A fresh namespace; afterwards its Subscriptions are deleted through the controller (device
    cleanup, final events), then its Invoices and the namespace."""
    name = f"cm-{uuid.uuid4().hex[:6]}"
    api.ensure_namespace(name)
    yield name
    for sub in api.custom.list_namespaced_custom_object("telco.intent.dev", "v1alpha1", name, "subscriptions")["items"]:
        api.delete("subscriptions", sub["metadata"]["name"], name)
    wait_for(
        f"the Subscriptions of {name} deleted",
        lambda: not list_items(api, "subscriptions", name) and not list_items(api, "networkservices", name),
        60,
    )
    for inv in list_items(api, "invoices", name):
        api.delete("invoices", inv["metadata"]["name"], name)
    api.core.delete_namespace(name)


@pytest.fixture()
def admin(fleet: FleetProcess) -> AdminClient:
    return fleet.admin


# --- helpers --------------------------------------------------------------------------------------


def list_items(api: Api, plural: str, namespace: str) -> list[dict[str, Any]]:
    return list(api.custom.list_namespaced_custom_object("telco.intent.dev", "v1alpha1", namespace, plural)["items"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def controller_now(clock_file: Path) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=float(clock_file.read_text() or 0))


def money(value: str, unit: str = "EUR") -> dict[str, str]:
    return {"unit": unit, "value": value}


def offering(name: str, *prices: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ProductOffering",
        "metadata": {"name": name},
        "spec": {
            "name": name,
            "lifecycleStatus": "Active",
            "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
            "productOfferingPrice": list(prices)
            or [
                {
                    "name": "Monthly fee",
                    "priceType": "recurring",
                    "recurringChargePeriodType": "month",
                    "price": money("49.90"),
                }
            ],
            **spec,
        },
    }


def daily(value: str = "86400.00") -> dict[str, Any]:
    """A daily price of 86400.00: exactly 1.00 per second of delivered service."""
    return {"name": "Daily fee", "priceType": "recurring", "recurringChargePeriodType": "day", "price": money(value)}


def subscription(
    namespace: str,
    name: str,
    offering_name: str,
    account: str,
    device: str,
    port: str,
    vlan: int,
    *,
    desired: str = "active",
    tz: str = "UTC",
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "productOffering": {"name": offering_name},
            "billingAccount": {"id": account, "timeZone": tz},
            "relatedParty": [{"role": "customer", "name": "Integration Test Corp"}],
            "endpoints": [{"device": device, "port": port, "vlanId": vlan, "ipv4Address": f"100.66.{vlan % 250}.1/30"}],
            "desiredState": desired,
        },
    }


def get_sub(api: Api, namespace: str, name: str) -> dict[str, Any]:
    sub = api.get("subscriptions", name, namespace)
    assert sub is not None, f"Subscription {namespace}/{name} is gone"
    return sub


def wait_state(api: Api, namespace: str, name: str, state: str, timeout: float = 30) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        sub = api.get("subscriptions", name, namespace)
        return sub if sub and (sub.get("status") or {}).get("state") == state else None

    return wait_for(f"Subscription {namespace}/{name} {state}", probe, timeout)


def set_desired(api: Api, body: dict[str, Any], desired: str) -> None:
    body["spec"]["desiredState"] = desired
    api.apply(body)


def subif(admin: AdminClient, device: str, port: str, vlan: int) -> dict[str, Any] | None:
    for iface in admin.dump(device)["config"].get("interfaces", {}).get("interface", []):
        if iface["name"] == port:
            for sub in iface.get("subinterfaces", {}).get("subinterface", []):
                if sub["index"] == vlan:
                    return dict(sub)
    return None


def subif_enabled(admin: AdminClient, device: str, port: str, vlan: int) -> bool | None:
    sub = subif(admin, device, port, vlan)
    return None if sub is None else bool(sub.get("config", {}).get("enabled", True))


def received(rx: CloudEventsReceiver, source: str, fact: str | None = None) -> list[Any]:
    return [e for e in rx.events if e.get_source() == source and (fact is None or e.get_type() == TYPE.format(fact))]


def wait_event(rx: CloudEventsReceiver, event_id: str, timeout: float = 30) -> Any:
    return wait_for(
        f"billing event {event_id} delivered",
        lambda: next((e for e in rx.events if e.get_id() == event_id), None),
        timeout,
    )


def source_of(namespace: str, name: str, cluster: str = CLUSTER) -> str:
    """A Subscription's CloudEvents source; `cluster` is the controller's --cluster-identity ("" without one)."""
    return f"{cluster}/apis/telco.intent.dev/v1alpha1/namespaces/{namespace}/subscriptions/{name}"


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_one_id_per_fact(rx: CloudEventsReceiver, source: str) -> None:
    """No fact arrived under two ids: every delivered id is the deterministic id of its fact."""
    uid_ids: dict[tuple[str, str], set[str]] = {}
    for event in received(rx, source):
        fact = ev.fact_of(event.get_type())
        key = stamp(event.get_time()) if fact in ("suspended", "resumed") else ""
        if fact in ("charge.period", "usage.rated", "sla.credit"):
            data = event.get_data()
            key = f"{data.get('price', '')}/{data.get('coverageStart', data.get('periodStart'))}"
        if fact == "changed":  # one fact per version taking effect: its instant and the version
            data = event.get_data()
            key = f"{data['effective']}/{data['toOffering']}/{data['toRevision']}"
        uid_ids.setdefault((fact, key), set()).add(event.get_id())
    doubled = {k: v for k, v in uid_ids.items() if len(v) > 1}
    assert not doubled, f"facts delivered under several ids: {doubled}"


def billing_passes(proc: ControllerProcess, since: int = 0) -> int:
    return len(re.findall(r"billing pass \d+:", proc.logs()[since:]))


# --- tests ----------------------------------------------------------------------------------------


def test_subscription_lifecycle_end_to_end(
    api: Api, controller: ControllerProcess, admin: AdminClient, receiver: CloudEventsReceiver, ns: str
) -> None:
    off = unique("cm-fiber")
    usage = {
        "name": "Traffic",
        "priceType": "usage",
        "unitOfMeasure": {"amount": 1, "units": "GB"},
        "price": money("0.02"),
    }
    api.apply(offering(off, *offering(off)["spec"]["productOfferingPrice"], usage))
    body = subscription(ns, "hq", off, "acct-life", "cm-r1", "Ethernet1", 601)
    api.apply(body)

    svc = wait_for("the owned NetworkService", lambda: api.get("networkservices", "hq", ns), 20)
    sub = get_sub(api, ns, "hq")
    uid = sub["metadata"]["uid"]
    owner = svc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Subscription", "hq", uid, True)
    assert svc["metadata"]["labels"]["telco.intent.dev/subscription"] == "hq"
    assert svc["spec"]["bandwidthMbps"] == 100 and svc["spec"]["adminState"] == "enabled"
    assert FINALIZER in sub["metadata"]["finalizers"]

    sub = wait_state(api, ns, "hq", "active")
    assert subif_enabled(admin, "cm-r1", "Ethernet1", 601) is True, "the device holds the subinterface"
    svc = api.get("networkservices", "hq", ns)
    assert svc is not None and svc["status"]["startDate"] == sub["status"]["startDate"], "startDate = first Ready"
    assert sub["status"]["billing"]["ledger"]["startDate"] == sub["status"]["startDate"]
    assert condition(sub, "Ready")["status"] == "True"
    assert sub["status"]["realizingService"] == {"name": "hq"}
    assert sub["status"]["nextBillDate"]

    source = source_of(ns, "hq")
    activated = wait_event(receiver, ev.event_id(uid, "activated", ""))
    assert activated.get_source() == source and activated.get_type() == TYPE.format("activated")
    assert activated.get_subject() == "acct-life"
    assert activated.get_time() == ts(sub["status"]["startDate"])
    wait_for(
        "BillingDelivered True and an empty outbox",
        lambda: (
            (s := get_sub(api, ns, "hq"))
            and condition(s, "BillingDelivered")["status"] == "True"
            and not s["status"]["billing"]["outbox"].get("pending")
        ),
        20,
    )
    # usage: the device's octet counters are sampled into the current period's window
    wait_for(
        "usage measured from the device counters",
        lambda: any(
            int(w["octets"]) > 0 for w in get_sub(api, ns, "hq")["status"]["billing"]["usage"].get("windows", [])
        ),
        20,
    )

    set_desired(api, body, "suspended")
    sub = wait_state(api, ns, "hq", "suspended")
    wait_for("subinterface shut on the device", lambda: subif_enabled(admin, "cm-r1", "Ethernet1", 601) is False, 20)
    assert api.get("networkservices", "hq", ns)["spec"]["adminState"] == "disabled"
    suspended = wait_for("a suspended event", lambda: received(receiver, source, "suspended"), 20)[0]
    assert suspended.get_id() == ev.event_id(uid, "suspended", stamp(suspended.get_time()))
    assert suspended.get_data()["reason"] == "CustomerRequest"

    set_desired(api, body, "active")
    wait_state(api, ns, "hq", "active")
    wait_for("subinterface up again", lambda: subif_enabled(admin, "cm-r1", "Ethernet1", 601) is True, 20)
    resumed = wait_for("a resumed event", lambda: received(receiver, source, "resumed"), 20)[0]
    assert resumed.get_id() == ev.event_id(uid, "resumed", stamp(resumed.get_time()))

    set_desired(api, body, "terminated")
    sub = wait_state(api, ns, "hq", "terminated", timeout=40)
    wait_for("NetworkService removed", lambda: api.get("networkservices", "hq", ns) is None, 20)
    assert subif(admin, "cm-r1", "Ethernet1", 601) is None, "the device configuration is removed"
    terminated = wait_event(receiver, ev.event_id(uid, "terminated", ""))
    assert terminated.get_time() == ts(sub["status"]["terminationDate"])
    ledger = sub["status"]["billing"]["ledger"]
    # closed timelines (a suspension and resume within one second continue one interval)
    assert ledger["active"] and all(i.get("end") for i in ledger["active"] + ledger["ready"]), ledger
    wait_for(
        "the finalizer released once the last period is closed and delivered",
        lambda: FINALIZER not in (get_sub(api, ns, "hq")["metadata"].get("finalizers") or []),
        30,
    )
    sub = get_sub(api, ns, "hq")
    assert sub["status"]["state"] == "terminated"
    assert condition(sub, "Ready")["reason"] == "Terminated"
    # the final (partial) month is closed at termination: its charge event is delivered
    charge = wait_for("the final period charge", lambda: received(receiver, source, "charge.period"), 20)
    assert len(charge) == 1 and charge[0].get_data()["price"] == "Monthly fee"
    # `time` is when the charge occurred (the termination), not the end of the period it covers,
    # which may be weeks ahead; the coverage is in the data.
    ended = ts(sub["status"]["terminationDate"])
    assert charge[0].get_time() == ended, (charge[0].get_time(), charge[0].get_data())
    assert ts(charge[0].get_data()["coverageEnd"]) >= ended
    assert ts(charge[0].get_data()["coverageStart"]) <= ended
    assert_one_id_per_fact(receiver, source)
    assert not receiver.redeliveries, receiver.redeliveries
    api.delete("productofferings", off)


def test_retired_offering_refuses_new_orders_and_keeps_existing(
    api: Api, controller: ControllerProcess, admin: AdminClient, ns: str, crds: Kubectl
) -> None:
    off = unique("cm-legacy")
    api.apply(offering(off))
    api.apply(subscription(ns, "old", off, "acct-retired", "cm-r1", "Ethernet2", 611))
    wait_state(api, ns, "old", "active")
    wait_for(
        "the offering counts its subscription",
        lambda: (o := api.get("productofferings", off)) and (o.get("status") or {}).get("activeSubscriptions") == 1,
        20,
    )

    retired = offering(off)
    retired["spec"]["lifecycleStatus"] = "Retired"
    api.apply(retired)
    status = wait_for(
        "the offering not sellable",
        lambda: (o := api.get("productofferings", off)) and o["status"].get("sellable") is False and o["status"],
        20,
    )
    assert "Retired" in status["sellableReason"] and "existing subscriptions keep running" in status["sellableReason"]

    api.apply(subscription(ns, "new", off, "acct-retired", "cm-r2", "Ethernet2", 612))
    refused = wait_for(
        "the new order refused",
        lambda: (c := condition(api.get("subscriptions", "new", ns), "OrderAccepted")) and c["status"] == "False" and c,
        20,
    )
    assert refused["reason"] == "Retired"
    assert off in refused["message"] and "lifecycleStatus is Retired" in refused["message"]
    new = get_sub(api, ns, "new")
    assert new["status"]["state"] == "created"
    assert condition(new, "Ready")["status"] == "False"
    assert condition(new, "Stalled")["status"] == "True"
    assert api.get("networkservices", "new", ns) is None, "no NetworkService for a refused order"
    # What a person reads: REASON beside READY in `kubectl get`, one Warning naming the offering in describe.
    table = crds.run("get", "subscription", "new", "-n", ns).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "READY", "REASON"] and table[1].split()[:3] == ["new", "False", "Retired"]
    described = wait_for("the Warning event", lambda: (
        out := crds.run("describe", "subscription", "new", "-n", ns).stdout) and "Warning" in out and out, 20)
    warnings = [line for line in described.splitlines() if line.strip().startswith("Warning")]
    assert len(warnings) == 1 and "Retired" in warnings[0] and off in warnings[0], described
    assert "choose a sellable ProductOffering" in warnings[0]
    normal_old = crds.run("describe", "subscription", "old", "-n", ns).stdout
    assert "Warning" not in normal_old and "Activated" in normal_old
    assert subif(admin, "cm-r2", "Ethernet2", 612) is None

    old = get_sub(api, ns, "old")
    assert old["status"]["state"] == "active" and is_ready(api.get("networkservices", "old", ns))
    assert subif_enabled(admin, "cm-r1", "Ethernet2", 611) is True
    wait_for(  # a refused order still counts: activeSubscriptions counts every order not ended
        "the offering counts both orders",
        lambda: (api.get("productofferings", off) or {}).get("status", {}).get("activeSubscriptions") == 2,
        20,
    )
    api.delete("subscriptions", "new", ns)
    api.delete("subscriptions", "old", ns)
    wait_for("both subscriptions gone", lambda: not list_items(api, "subscriptions", ns), 40)
    api.delete("productofferings", off)


def test_the_web_view_shows_a_person_customers_devices_and_what_is_not_ready(
    api: Api, controller: ControllerProcess, ns: str, web_port: int
) -> None:
    """The read-only page (run --web-port), loaded in headless Chromium as a person would open it."""
    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    assert browser, "the web view test needs Debian's chromium-headless-shell (apt-get install chromium-headless-shell)"
    off = unique("cm-web")
    api.apply(offering(off))
    api.apply(subscription(ns, "web-ok", off, "acct-web", "cm-r1", "Ethernet6", 671))
    api.apply(subscription(ns, "web-orphan", "cm-no-such-offering", "acct-web", "cm-r2", "Ethernet6", 672))
    wait_state(api, ns, "web-ok", "active")
    wait_for("the orphan order stalled", lambda: (c := condition(get_sub(api, ns, "web-orphan"), "Stalled"))
             and c["status"] == "True", 20)

    def seen() -> str:
        dom = subprocess.run(
            [browser, "--no-sandbox", "--disable-gpu", "--dump-dom", f"http://127.0.0.1:{web_port}/"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        body = dom[dom.index("<body>") :]
        return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))

    text = wait_for("the page listing both orders", lambda: (t := seen()) and f"{ns}/web-orphan" in t and t, 20)
    customer = text[text.index("Integration Test Corp") : text.index("Devices")]
    assert f"{ns}/web-ok {off} active True Active active running" in customer
    assert f"{ns}/web-orphan cm-no-such-offering created False OfferingNotFound no service" in customer
    devices = text[text.index("Devices") : text.index("Not Ready")]
    assert re.search(rf"cm-r1 Ready True .*Ethernet6\.671 {ns}/web-ok True Applied", devices), devices
    stuck = text[text.index("Not Ready") :]
    assert f"Subscription {ns}/web-orphan OfferingNotFound ProductOffering cm-no-such-offering does not exist" in stuck
    assert "create the ProductOffering" in stuck
    for name in ("web-ok", "web-orphan"):
        api.delete("subscriptions", name, ns)
    wait_for("both gone", lambda: not {"web-ok", "web-orphan"} & {s["metadata"]["name"] for s in
                                           list_items(api, "subscriptions", ns)}, 40)
    api.delete("productofferings", off)


def test_sink_down_then_back_loses_nothing_and_keeps_ids(
    api: Api, controller: ControllerProcess, receiver: CloudEventsReceiver, ns: str
) -> None:
    off = unique("cm-sinkdown")
    api.apply(offering(off))
    receiver.down()
    try:
        body = subscription(ns, "branch", off, "acct-sink", "cm-r2", "Ethernet3", 621)
        api.apply(body)
        wait_state(api, ns, "branch", "active")
        set_desired(api, body, "suspended")
        wait_state(api, ns, "branch", "suspended")
        set_desired(api, body, "active")
        wait_state(api, ns, "branch", "active")
        sub = wait_for(
            "three events pending, BillingDelivered False",
            lambda: (
                (s := get_sub(api, ns, "branch"))
                and len(s["status"]["billing"]["outbox"].get("pending", [])) == 3
                and condition(s, "BillingDelivered")["status"] == "False"
                and s
            ),
            20,
        )
        cond = condition(sub, "BillingDelivered")
        assert cond is not None and cond["reason"] == "Pending" and "3 billing events pending" in cond["message"]
        pending = [e["id"] for e in sub["status"]["billing"]["outbox"]["pending"]]
        wait_for("delivery attempts refused by the sink", lambda: receiver.statuses[503] >= 2, 20)
        assert not received(receiver, source_of(ns, "branch")), "nothing gets through while the sink is down"
    finally:
        receiver.up()
    for event_id in pending:
        wait_event(receiver, event_id)
    wait_for(
        "the outbox drained",
        lambda: (
            (s := get_sub(api, ns, "branch"))
            and not s["status"]["billing"]["outbox"].get("pending")
            and condition(s, "BillingDelivered")["status"] == "True"
        ),
        20,
    )
    uid = sub["metadata"]["uid"]
    events = received(receiver, source_of(ns, "branch"))
    assert sorted(e.get_id() for e in events) == sorted(pending), "each fact arrives once, under its recorded id"
    assert pending[0] == ev.event_id(uid, "activated", "")
    assert [ev.fact_of(e.get_type()) for e in sorted(events, key=lambda e: e.get_time())] == [
        "activated",
        "suspended",
        "resumed",
    ]
    assert_one_id_per_fact(receiver, source_of(ns, "branch"))
    assert get_sub(api, ns, "branch")["status"]["billing"]["outbox"]["deliveredCount"] == 3
    api.delete("subscriptions", "branch", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "branch", ns) is None, 40)
    api.delete("productofferings", off)


def test_controller_killed_before_delivery_redelivers_the_same_id(
    api: Api, controller: ControllerProcess, receiver: CloudEventsReceiver, ns: str
) -> None:
    off = unique("cm-crash")
    api.apply(offering(off))
    receiver.down()
    try:
        api.apply(subscription(ns, "edge", off, "acct-crash", "cm-r2", "Ethernet4", 631))
        sub = wait_state(api, ns, "edge", "active")
        activated_id = ev.event_id(sub["metadata"]["uid"], "activated", "")
        sub = wait_for(
            "the activated event in the outbox",
            lambda: (
                (s := get_sub(api, ns, "edge"))
                and [e["id"] for e in s["status"]["billing"]["outbox"].get("pending", [])] == [activated_id]
                and s
            ),
            20,
        )
        controller.kill9()  # after the outbox write, before any delivery
    finally:
        receiver.up()
    assert activated_id not in receiver.ids
    controller.start()
    event = wait_event(receiver, activated_id, timeout=40)
    assert event.get_time() == ts(sub["status"]["startDate"])
    assert receiver.deliveries[(source_of(ns, "edge"), activated_id)] == 1
    wait_for(
        "the outbox drained after the restart",
        lambda: not get_sub(api, ns, "edge")["status"]["billing"]["outbox"].get("pending"),
        20,
    )
    assert_one_id_per_fact(receiver, source_of(ns, "edge"))
    api.delete("subscriptions", "edge", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "edge", ns) is None, 40)
    api.delete("productofferings", off)


def test_off_cycle_invoice_lines_taxes_and_payments(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, clock_file: Path, ns: str
) -> None:
    off = unique("cm-perday")
    install = {"name": "Installation", "priceType": "oneTime", "price": money("100.00")}
    api.apply(offering(off, daily(), install))
    api.apply(subscription(ns, "lab", off, "acct-inv", "cm-r1", "Ethernet3", 641))
    sub = wait_state(api, ns, "lab", "active")
    start = ts(sub["status"]["startDate"])
    end = max(start + timedelta(seconds=12), controller_now(clock_file) + timedelta(seconds=5)).replace(microsecond=0)
    billed = int((end - start).total_seconds())
    inv = {
        "apiVersion": GROUP_VERSION,
        "kind": "Invoice",
        "metadata": {"name": "lab-adhoc", "namespace": ns},
        "spec": {
            "billingAccount": "acct-inv",
            "runType": "offCycle",
            "billingPeriod": {
                "startDateTime": (start - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        },
    }
    api.apply(inv)
    draft = wait_for(
        "a draft computed",
        lambda: (i := api.get("invoices", "lab-adhoc", ns)) and (i.get("status") or {}).get("state") == "new" and i,
        20,
    )
    assert condition(draft, "Ready")["reason"] == "Draft"
    issued = wait_for(
        "the invoice issued after its period (sent once its issued event reached the sink)",
        lambda: (i := api.get("invoices", "lab-adhoc", ns)) and i.get("status", {}).get("state") in ISSUED and i,
        60,
    )["status"]
    lines = {line["type"]: line for line in issued["lines"]}
    assert set(lines) == {"oneTimeCharge", "recurringCharge"}, issued["lines"]
    assert lines["oneTimeCharge"]["taxExcludedAmount"] == money("100.00")
    assert lines["recurringCharge"]["taxExcludedAmount"] == money(f"{billed}.00"), "1.00 per delivered second"
    total = sum(float(line["taxExcludedAmount"]["value"]) * 100 for line in issued["lines"])
    assert issued["taxExcludedAmount"]["value"] == f"{total / 100:.2f}", "the total is the sum of the lines"
    tax = issued["taxItem"][0]
    assert (tax["taxCategory"], tax["taxRate"]) == ("VAT", "20")
    assert float(tax["taxAmount"]["value"]) == round(total / 100 * 0.2, 2)
    assert float(issued["taxIncludedAmount"]["value"]) == round(total / 100 + float(tax["taxAmount"]["value"]), 2)
    assert issued["amountDue"] == issued["taxIncludedAmount"]
    assert issued["contentDigest"].startswith("sha256:") and issued["billNo"] == "lab-adhoc"
    due = ts(issued["paymentDueDate"]) - ts(issued["billDate"])
    assert due == timedelta(days=30), "the offering's default payment term"
    uid = sub["metadata"]["uid"]
    assert lines["oneTimeCharge"]["events"] == [ev.event_id(uid, "activated", "")]
    assert lines["recurringCharge"]["subscription"] == f"{ns}/lab"

    included = issued["taxIncludedAmount"]["value"]
    # record payments as docs/commerce.md says: a merge patch for the first, a JSON patch append after
    first = {"id": "p1", "amount": money("50.00"), "date": "2026-01-01T00:00:00Z"}
    patch = json.dumps({"spec": {"payments": [first]}})
    kubectl.run("patch", "invoice", "lab-adhoc", "-n", ns, "--type=merge", "-p", patch)
    partial = wait_for(
        "partially paid",
        lambda: (i := api.get("invoices", "lab-adhoc", ns)) and i["status"].get("state") == "partiallyPaid" and i,
        20,
    )["status"]
    assert partial["amountPaid"] == money("50.00")
    assert float(partial["amountDue"]["value"]) == round(float(included) - 50, 2)
    rest = f"{float(included) - 50:.2f}"
    second = {"id": "p2", "amount": money(rest), "date": "2026-01-02T00:00:00Z"}
    patch = json.dumps([{"op": "add", "path": "/spec/payments/-", "value": second}])
    kubectl.run("patch", "invoice", "lab-adhoc", "-n", ns, "--type=json", "-p", patch)
    settled = wait_for(
        "settled",
        lambda: (i := api.get("invoices", "lab-adhoc", ns)) and i["status"].get("state") == "settled" and i,
        20,
    )["status"]
    assert settled["amountDue"]["value"] == "0.00" and settled["settledDate"]
    assert (settled["lines"], settled["contentDigest"]) == (issued["lines"], issued["contentDigest"]), "issued is final"
    api.delete("subscriptions", "lab", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "lab", ns) is None, 40)
    api.delete("productofferings", off)


def test_overdue_invoice_suspends_and_settlement_resumes(
    api: Api,
    controller: ControllerProcess,
    admin: AdminClient,
    receiver: CloudEventsReceiver,
    clock_file: Path,
    ns: str,
) -> None:
    off = unique("cm-strict")
    policy = {"suspendOnOverdue": True, "gracePeriodDays": 0, "paymentTermDays": 0}
    api.apply(offering(off, daily(), paymentPolicy=policy))
    api.apply(subscription(ns, "shop", off, "acct-dunning", "cm-r2", "Ethernet5", 651))
    sub = wait_state(api, ns, "shop", "active")
    start = ts(sub["status"]["startDate"])
    end = max(start + timedelta(seconds=10), controller_now(clock_file) + timedelta(seconds=3)).replace(microsecond=0)
    inv = adhoc_invoice(ns, "shop-adhoc", "acct-dunning", start, end)
    api.apply(inv)
    issued = wait_for(
        "issued and overdue at once (no payment term, no grace)",
        lambda: (i := api.get("invoices", "shop-adhoc", ns)) and (i.get("status") or {}).get("overdue") is True and i,
        60,
    )["status"]
    assert issued["state"] in ISSUED and condition({"status": issued}, "Ready")["reason"] == "Overdue"

    sub = wait_state(api, ns, "shop", "suspended")
    hold = condition(sub, "PaymentHold")
    assert hold is not None and hold["status"] == "True" and hold["reason"] == "InvoiceOverdue"
    assert sub["status"]["billing"]["paymentHold"]["invoices"] == ["shop-adhoc"]
    assert condition(sub, "Ready")["reason"] == "PaymentHold"
    wait_for("subinterface shut for non-payment", lambda: subif_enabled(admin, "cm-r2", "Ethernet5", 651) is False, 20)
    source = source_of(ns, "shop")
    suspended = wait_for("a suspended event", lambda: received(receiver, source, "suspended"), 20)[0]
    assert suspended.get_data()["reason"] == "PaymentHold"

    inv["spec"]["payments"] = [{"id": "wire-1", "amount": issued["amountDue"], "date": "2026-01-01T00:00:00Z"}]
    api.apply(inv)
    wait_for(
        "settled",
        lambda: (i := api.get("invoices", "shop-adhoc", ns)) and i["status"].get("state") == "settled",
        20,
    )
    sub = wait_state(api, ns, "shop", "active")
    assert "paymentHold" not in sub["status"]["billing"]
    assert condition(sub, "PaymentHold")["status"] == "False"
    wait_for("subinterface up after settlement", lambda: subif_enabled(admin, "cm-r2", "Ethernet5", 651) is True, 20)
    resumed = wait_for("a resumed event", lambda: received(receiver, source, "resumed"), 20)[0]
    assert resumed.get_data()["reason"] == "PaymentReceived"
    api.delete("subscriptions", "shop", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "shop", ns) is None, 40)
    api.delete("productofferings", off)


INVOICE_TYPE = "dev.intent.telco.invoice.{}.v1"


def invoice_source(namespace: str, name: str) -> str:
    return f"/apis/telco.intent.dev/v1alpha1/namespaces/{namespace}/invoices/{name}"


def billing_account(namespace: str, name: str, currency: str = "EUR", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "BillingAccount",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"name": f"Integration {name}", "currency": currency, **spec},
    }


def subscription_for_account(
    namespace: str, name: str, offering_name: str, account: str, device: str, port: str, vlan: int
) -> dict[str, Any]:
    body = subscription(namespace, name, offering_name, account, device, port, vlan)
    del body["spec"]["billingAccount"]
    body["spec"]["billingAccountRef"] = {"name": account}
    return body


def adhoc_invoice(
    namespace: str, name: str, account: str, start: datetime, end: datetime, **spec: Any
) -> dict[str, Any]:
    """An offCycle Invoice of `account` for [start, end)."""
    period = {"startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Invoice",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"billingAccount": account, "billingPeriod": period, **spec},
    }


def issued_invoice(
    api: Api, clock_file: Path, namespace: str, name: str, account: str, start: datetime
) -> dict[str, Any]:
    end = max(start + timedelta(seconds=8), controller_now(clock_file) + timedelta(seconds=3)).replace(microsecond=0)
    api.apply(adhoc_invoice(namespace, name, account, start - timedelta(minutes=1), end))
    return wait_for(
        f"invoice {name} issued and sent",
        lambda: (i := api.get("invoices", name, namespace)) and (i.get("status") or {}).get("state") == "sent" and i,
        60,
    )


def wait_condition(api: Api, namespace: str, name: str, type_: str, status: str, says: str) -> dict[str, Any]:
    """The Subscription's condition `type_` once it has `status` and its message contains `says`."""

    def probe() -> dict[str, Any] | None:
        cond = condition(api.get("subscriptions", name, namespace), type_)
        return cond if cond and cond["status"] == status and says in cond.get("message", "") else None

    return wait_for(f"Subscription {namespace}/{name} {type_}={status} saying {says!r}", probe, 20)


def patch_invoice(kubectl: Kubectl, namespace: str, name: str, kind: str, patch: Any) -> Any:
    return kubectl.run(
        "patch", "invoice", name, "-n", namespace, f"--type={kind}", "-p", json.dumps(patch), check=False
    )


def test_recorded_payments_cannot_be_rewritten_and_a_reversal_reopens_the_bill(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, receiver: CloudEventsReceiver, clock_file: Path, ns: str
) -> None:
    off = unique("cm-pay")
    api.apply(offering(off, daily()))
    api.apply(subscription(ns, "pay", off, "acct-pay", "cm-r1", "Ethernet6", 671))
    sub = wait_state(api, ns, "pay", "active")
    inv = issued_invoice(api, clock_file, ns, "pay-adhoc", "acct-pay", ts(sub["status"]["startDate"]))
    uid, total = inv["metadata"]["uid"], inv["status"]["taxIncludedAmount"]["value"]
    wire = {"id": "wire-1", "amount": money(total), "date": "2026-01-01T00:00:00Z"}
    patch_invoice(kubectl, ns, "pay-adhoc", "json", [{"op": "add", "path": "/spec/payments", "value": [wire]}])
    wait_for(
        "settled",
        lambda: (api.get("invoices", "pay-adhoc", ns) or {}).get("status", {}).get("state") == "settled",
        20,
    )

    # editing, removing one, removing all, or dropping the list: each refused, naming the field
    edits = [
        ("json", [{"op": "replace", "path": "/spec/payments/0/amount/value", "value": "0.01"}]),
        ("json", [{"op": "remove", "path": "/spec/payments/0"}]),
        ("merge", {"spec": {"payments": []}}),
        ("merge", {"spec": {"payments": None}}),
        ("merge", {"spec": {"payments": [{**wire, "date": "2026-01-02T00:00:00Z"}]}}),
    ]
    for kind, patch in edits:
        refused = patch_invoice(kubectl, ns, "pay-adhoc", kind, patch)
        assert refused.returncode != 0, f"{patch} was accepted"
        assert (
            "spec.payments" in refused.stderr and "recorded payments cannot be edited or removed" in refused.stderr
        ), refused.stderr
    stored = api.get("invoices", "pay-adhoc", ns)
    assert stored is not None and stored["spec"]["payments"] == [wire], "the recorded payment is untouched"
    no_reason = {"id": "back-1", "amount": money(f"-{total}"), "date": "2026-01-03T00:00:00Z"}
    refused = patch_invoice(
        kubectl, ns, "pay-adhoc", "json", [{"op": "add", "path": "/spec/payments/-", "value": no_reason}]
    )
    assert refused.returncode != 0 and "a reversal (negative amount) needs a reason" in refused.stderr, refused.stderr

    reversal = {**no_reason, "reason": "transfer returned by the bank", "reverses": "wire-1"}
    patch_invoice(kubectl, ns, "pay-adhoc", "json", [{"op": "add", "path": "/spec/payments/-", "value": reversal}])
    back = wait_for(
        "the reversal takes the bill back to sent",
        lambda: (i := api.get("invoices", "pay-adhoc", ns)) and i["status"].get("state") == "sent" and i["status"],
        20,
    )
    assert (back["amountPaid"]["value"], back["amountDue"]["value"]) == ("0.00", total)
    assert "settledDate" not in back and condition({"status": back}, "Ready")["reason"] == "Sent"

    source = invoice_source(ns, "pay-adhoc")
    facts = [
        ("issued", ""),
        ("sent", ""),
        ("paymentReceived", "wire-1"),
        ("settled", "wire-1"),
        ("paymentReceived", "back-1"),
    ]
    expected = {invoice_event_id(uid, fact, key): fact for fact, key in facts}
    for event_id in expected:
        wait_event(receiver, event_id)
    wait_for(
        "the invoice outbox drained",
        lambda: not ((api.get("invoices", "pay-adhoc", ns) or {}).get("status", {}).get("outbox") or {}).get("pending"),
        20,
    )
    events = [e for e in receiver.events if e.get_source() == source]
    assert sorted(e.get_id() for e in events) == sorted(expected), "each state change once, under its own id"
    assert all(e.get_type() == INVOICE_TYPE.format(expected[e.get_id()]) for e in events)
    assert all(receiver.deliveries[(source, event_id)] == 1 for event_id in expected)
    returned = next(e for e in events if e.get_data().get("paymentId") == "back-1")
    assert returned.get_data()["amount"] == f"-{total}" and returned.get_data()["reason"] == reversal["reason"]
    api.delete("subscriptions", "pay", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "pay", ns) is None, 40)
    api.delete("productofferings", off)


def test_billing_accounts_gate_orders_and_set_tax_and_terms(
    api: Api, controller: ControllerProcess, clock_file: Path, ns: str
) -> None:
    off = unique("cm-acct")
    api.apply(offering(off, daily()))
    # an order for an account that does not exist waits, naming the field
    api.apply(subscription_for_account(ns, "site", off, "acct-eu", "cm-r2", "Ethernet6", 681))
    ready = wait_condition(api, ns, "site", "Ready", "False", "spec.billingAccountRef.name")
    assert "BillingAccount acct-eu does not exist" in ready["message"]
    assert condition(get_sub(api, ns, "site"), "BillingAccount")["reason"] == "BillingAccountNotFound"
    assert api.get("networkservices", "site", ns) is None

    # an account in another currency: still refused, saying both currencies
    api.apply(billing_account(ns, "acct-eu", "USD"))
    account = wait_for(
        "the currency mismatch reported",
        lambda: (
            (c := condition(api.get("subscriptions", "site", ns), "BillingAccount"))
            and c["reason"] == "CurrencyMismatch"
            and c
        ),
        20,
    )
    assert "bills in USD" in account["message"] and "priced in EUR" in account["message"]
    api.delete("billingaccounts", "acct-eu", ns)
    wait_for("the USD account gone", lambda: api.get("billingaccounts", "acct-eu", ns) is None, 20)

    # the right account: accepted, active; the account's tax and terms apply to its bill
    api.apply(
        billing_account(
            ns,
            "acct-eu",
            taxZone="CH",
            taxRates=[{"taxCategory": "MWST", "taxRate": "8.1"}],
            paymentPlan={"paymentTermDays": 7},
        )
    )
    sub = wait_state(api, ns, "site", "active")
    assert condition(sub, "BillingAccount")["status"] == "True"
    assert sub["status"]["billing"]["timeZone"] == "UTC"
    wait_for(
        "the account counts its subscription",
        lambda: ((api.get("billingaccounts", "acct-eu", ns) or {}).get("status") or {}).get("subscriptions") == 1,
        20,
    )
    inv = issued_invoice(api, clock_file, ns, "site-adhoc", "acct-eu", ts(sub["status"]["startDate"]))["status"]
    assert [(t["taxCategory"], t["taxRate"]) for t in inv["taxItem"]] == [("MWST", "8.1")], "not the --tax-rate flag"
    assert ts(inv["paymentDueDate"]) - ts(inv["billDate"]) == timedelta(days=7)
    wait_for(
        "the outstanding balance on the account",
        lambda: (
            {
                b["balanceType"]: b["amount"]["value"]
                for b in ((api.get("billingaccounts", "acct-eu", ns) or {}).get("status") or {}).get(
                    "accountBalance", []
                )
            }.get("outstanding")
            == inv["amountDue"]["value"]
        ),
        20,
    )

    # a Suspended account keeps the running service and takes no new order
    api.apply(billing_account(ns, "acct-eu", state="Suspended", taxRates=[{"taxCategory": "MWST", "taxRate": "8.1"}]))
    api.apply(subscription_for_account(ns, "second", off, "acct-eu", "cm-r2", "Ethernet7", 682))
    refused = wait_condition(api, ns, "second", "OrderAccepted", "False", "Suspended")
    assert "spec.billingAccountRef.name" in refused["message"]
    assert get_sub(api, ns, "site")["status"]["state"] == "active"
    for name in ("second", "site"):
        api.delete("subscriptions", name, ns)
    wait_for("subscriptions gone", lambda: not list_items(api, "subscriptions", ns), 40)
    api.delete("productofferings", off)


def test_held_invoice_is_issued_on_release_and_its_event_survives_a_crash(
    api: Api,
    kubectl: Kubectl,
    controller: ControllerProcess,
    receiver: CloudEventsReceiver,
    clock_file: Path,
    ns: str,
) -> None:
    off = unique("cm-hold")
    api.apply(offering(off, daily()))
    api.apply(subscription(ns, "held", off, "acct-hold", "cm-r1", "Ethernet7", 691))
    sub = wait_state(api, ns, "held", "active")
    start = ts(sub["status"]["startDate"])
    end = max(start + timedelta(seconds=5), controller_now(clock_file) + timedelta(seconds=2)).replace(microsecond=0)
    api.apply(adhoc_invoice(ns, "held-adhoc", "acct-hold", start - timedelta(minutes=1), end, onHold=True))
    wait_for("the period over", lambda: controller_now(clock_file) > end + timedelta(seconds=3), 30)
    held = wait_for(
        "held as a draft after its period",
        lambda: (i := api.get("invoices", "held-adhoc", ns)) and (i.get("status") or {}).get("state") == "onHold" and i,
        20,
    )
    assert condition(held, "Ready")["reason"] == "OnHold" and held["status"]["lines"]
    assert not held["status"].get("billDate"), "not issued while held"
    uid = held["metadata"]["uid"]
    issued_id = invoice_event_id(uid, "issued")
    receiver.down()
    try:
        kubectl.run("patch", "invoice", "held-adhoc", "-n", ns, "--type=merge", "-p", '{"spec":{"onHold":false}}')
        wait_for(
            "issued, its event in the invoice's outbox",
            lambda: (
                (i := api.get("invoices", "held-adhoc", ns))
                and i["status"].get("state") == "validated"
                and [e["id"] for e in i["status"]["outbox"].get("pending", [])] == [issued_id]
            ),
            30,
        )
        controller.kill9()  # after the write that issued the bill, before any delivery
    finally:
        receiver.up()
    assert issued_id not in receiver.ids
    controller.start()
    wait_event(receiver, issued_id, timeout=40)
    sent = wait_for(
        "sent once the issued event reached the sink",
        lambda: (i := api.get("invoices", "held-adhoc", ns)) and i["status"].get("state") == "sent" and i["status"],
        30,
    )
    wait_event(receiver, invoice_event_id(uid, "sent"))
    assert receiver.deliveries[(invoice_source(ns, "held-adhoc"), issued_id)] == 1
    assert sent["sentDate"] and condition({"status": sent}, "Ready")["reason"] == "Sent"
    api.delete("subscriptions", "held", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "held", ns) is None, 40)
    api.delete("productofferings", off)


# --- order changes and offering revisions (issue 15) ---------------------------------------------


def per_second(value: str, name: str, mbps: int, **spec: Any) -> dict[str, Any]:
    """An offering billed per delivered second (a daily price of value * 86400)."""
    body = offering(name, daily(f"{int(value) * 86400}.00"), **spec)
    body["spec"]["serviceCandidate"]["bandwidthMbps"] = mbps
    return body


def ready_since(obj: dict[str, Any] | None) -> tuple[str, str] | None:
    cond = condition(obj, "Ready")
    return (cond["status"], cond["lastTransitionTime"]) if cond else None


class ReadyWatch:
    """Polls the Subscription's and its NetworkService's Ready conditions until stopped; records any
    moment either was not True."""

    def __init__(self, api: Api, namespace: str, name: str) -> None:
        import threading

        self.api, self.namespace, self.name = api, namespace, name
        self.not_ready: list[tuple[str, Any]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for plural in ("subscriptions", "networkservices"):
                cond = condition(self.api.get(plural, self.name, self.namespace), "Ready")
                if not cond or cond["status"] != "True":
                    self.not_ready.append((plural, cond))
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def set_rpcs(admin: AdminClient, device: str) -> tuple[int, int]:
    stats = admin.stats(device)
    return int(stats["set_rpcs"]), int(stats["set_deletes"])


def qos_policy(admin: AdminClient, device: str, port: str, vlan: int) -> str:
    """The device's scheduler policy of one subinterface, as JSON text ("" when it has none)."""
    policies = admin.dump(device)["config"].get("qos", {}).get("scheduler-policies", {}).get("scheduler-policy", [])
    name = qos_name(port, vlan)
    return next((json.dumps(p) for p in policies if p.get("name") == name), "")


def sum_lines(lines: list[dict[str, Any]]) -> int:
    """The lines' total in cents."""
    return sum(round(float(line["taxExcludedAmount"]["value"]) * 100) for line in lines)


# The ns fixture deletes each test's Subscriptions through the controller; the offerings are cluster-wide.


def test_upgrade_is_in_place_stays_ready_and_bills_prorated_charge_and_credit(
    api: Api,
    controller: ControllerProcess,
    admin: AdminClient,
    receiver: CloudEventsReceiver,
    clock_file: Path,
    ns: str,
) -> None:
    small, big = unique("cm-biz100"), unique("cm-biz1g")
    api.apply(per_second("1", small, 100))
    api.apply(per_second("2", big, 1000))
    body = subscription(ns, "office", small, "acct-up", "cm-r2", "Ethernet5", 691)
    api.apply(body)
    sub = wait_state(api, ns, "office", "active")
    wait_for("the service Ready", lambda: is_ready(api.get("networkservices", "office", ns)), 20)
    uid = sub["metadata"]["uid"]
    start = ts(sub["status"]["startDate"])
    wait_for("a few seconds delivered", lambda: controller_now(clock_file) > start + timedelta(seconds=3), 10)
    sub = get_sub(api, ns, "office")
    before = (ready_since(sub), ready_since(api.get("networkservices", "office", ns)))
    sets_before = set_rpcs(admin, "cm-r2")

    with ReadyWatch(api, ns, "office") as watch:
        body["spec"]["productOffering"] = {"name": big}
        api.apply(body)
        svc = wait_for(
            "the NetworkService updated in place to 1000 Mbit/s and Ready on it",
            lambda: (
                (s := api.get("networkservices", "office", ns))
                and s["spec"]["bandwidthMbps"] == 1000
                and is_ready(s)
                and s
            ),
            30,
        )
        wait_for(
            "the device holds the 1 Gbit/s policy",
            lambda: str(1000 * 10**6) in qos_policy(admin, "cm-r2", "Ethernet5", 691),
            20,
        )
        time.sleep(1.0)  # and a while after: nothing flaps once the change settled
    assert watch.samples > 5 and not watch.not_ready, f"left Ready during the upgrade: {watch.not_ready[:3]}"
    sub = get_sub(api, ns, "office")
    after = (ready_since(sub), ready_since(svc))
    assert after == before, "no Ready transition on the Subscription or its NetworkService"
    sets, deletes = set_rpcs(admin, "cm-r2")
    assert (sets - sets_before[0], deletes - sets_before[1]) == (1, 0), "one Set, replacing nothing away"
    assert svc["metadata"]["uid"] == api.get("networkservices", "office", ns)["metadata"]["uid"], "same object"

    plans = sub["status"]["billing"]["plans"]
    assert [p["offering"] for p in plans] == [small, big]
    changed_at = ts(plans[1]["since"])
    assert sub["status"].get("pendingChange") is None
    event = wait_for("the changed event", lambda: received(receiver, source_of(ns, "office"), "changed"), 20)
    assert len(event) == 1
    data = event[0].get_data()
    assert (data["direction"], data["fromOffering"], data["toOffering"]) == ("upgrade", small, big)
    key = f"{stamp(changed_at)}/{big}/{plans[1]['revision']}"
    assert event[0].get_id() == ev.event_id(uid, "changed", key)
    upgraded = wait_for(
        "an Upgraded Event for kubectl describe",
        lambda: [e for e in api.core.list_namespaced_event(ns).items if e.reason == "Upgraded"],
        20,
    )
    assert upgraded[0].involved_object.name == "office" and big in upgraded[0].message

    inv = issued_invoice(api, clock_file, ns, "office-adhoc", "acct-up", start)
    end = ts(inv["spec"]["billingPeriod"]["endDateTime"])
    lines = {(line["type"], line["name"]): line for line in inv["status"]["lines"]}
    credit = lines.get(("credit", f"Unused Daily fee ({small}) from {rfc(changed_at)}"))
    assert credit is not None and credit["taxExcludedAmount"]["value"].startswith("-"), lines.keys()
    assert ("recurringCharge", f"Daily fee ({big}, prorated from {rfc(changed_at)})") in lines, lines.keys()
    assert ("recurringCharge", f"Daily fee ({small})") in lines, lines.keys()
    # each second at the price in force: 1.00 before the upgrade, 2.00 after (a day boundary only splits lines)
    expected = int((changed_at - start).total_seconds()) * 100 + int((end - changed_at).total_seconds()) * 200
    assert sum_lines(inv["status"]["lines"]) == expected
    for name in (small, big):
        api.delete("productofferings", name)


def rfc(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_offering_price_edit_does_not_rerate_delivered_time(
    api: Api, controller: ControllerProcess, clock_file: Path, ns: str
) -> None:
    off = unique("cm-reprice")
    api.apply(per_second("1", off, 100))
    api.apply(subscription(ns, "shop", off, "acct-price", "cm-r1", "Ethernet5", 701))
    sub = wait_state(api, ns, "shop", "active")
    start = ts(sub["status"]["startDate"])
    wait_for("a few seconds delivered", lambda: controller_now(clock_file) > start + timedelta(seconds=3), 10)
    api.apply(per_second("3", off, 100))
    sub = wait_for(
        "a second version recorded",
        lambda: (s := get_sub(api, ns, "shop")) and len(s["status"]["billing"].get("plans", [])) == 2 and s,
        20,
    )
    old, new = sub["status"]["billing"]["plans"]
    assert old["productOfferingPrice"][0]["price"]["value"] == "86400.00", "the price billed before is kept"
    assert new["productOfferingPrice"][0]["price"]["value"] == "259200.00"
    edited = ts(new["since"])
    assert edited >= start + timedelta(seconds=3)
    inv = issued_invoice(api, clock_file, ns, "shop-adhoc", "acct-price", start)
    end = ts(inv["spec"]["billingPeriod"]["endDateTime"])
    expected = int((edited - start).total_seconds()) * 100 + int((end - edited).total_seconds()) * 300
    assert sum_lines(inv["status"]["lines"]) == expected, "1.00/s until the edit, 3.00/s after"
    api.delete("productofferings", off)


def test_template_edit_with_new_orders_only_leaves_existing_subscribers_alone(
    api: Api, controller: ControllerProcess, admin: AdminClient, ns: str
) -> None:
    off = unique("cm-template")
    api.apply(per_second("1", off, 100))  # rolloutPolicy defaults to newOrdersOnly
    api.apply(subscription(ns, "early", off, "acct-tpl", "cm-r1", "Ethernet6", 711))
    wait_state(api, ns, "early", "active")
    api.apply(per_second("1", off, 300))
    sub = wait_for(
        "the rollout held for the existing subscriber",
        lambda: (
            (s := get_sub(api, ns, "early")) and (s["status"].get("templateRollout") or {}).get("state") == "held" and s
        ),
        20,
    )
    assert sub["status"]["templateRollout"]["policy"] == "newOrdersOnly"
    api.apply(subscription(ns, "late", off, "acct-tpl", "cm-r1", "Ethernet6", 712))
    wait_state(api, ns, "late", "active")
    assert api.get("networkservices", "late", ns)["spec"]["bandwidthMbps"] == 300, "a new order gets the new template"
    assert api.get("networkservices", "early", ns)["spec"]["bandwidthMbps"] == 100, "the existing one keeps its own"
    assert [
        p["serviceCandidate"]["bandwidthMbps"] for p in get_sub(api, ns, "early")["status"]["billing"]["plans"]
    ] == [100]
    assert get_sub(api, ns, "late")["status"]["templateRollout"]["state"] == "current"
    # on the device the existing subscriber keeps its 100 Mbit/s policy
    assert str(100 * 10**6) in qos_policy(admin, "cm-r1", "Ethernet6", 711)
    assert str(300 * 10**6) in qos_policy(admin, "cm-r1", "Ethernet6", 712)
    api.delete("productofferings", off)


def test_move_to_another_port_is_one_set_and_stays_ready(
    api: Api, controller: ControllerProcess, admin: AdminClient, ns: str
) -> None:
    off = unique("cm-move")
    api.apply(per_second("1", off, 100))
    body = subscription(ns, "mover", off, "acct-move", "cm-r2", "Ethernet8", 731)
    api.apply(body)
    wait_state(api, ns, "mover", "active")
    wait_for("the service Ready", lambda: is_ready(api.get("networkservices", "mover", ns)), 20)
    sets_before = set_rpcs(admin, "cm-r2")
    with ReadyWatch(api, ns, "mover") as watch:
        body["spec"]["endpoints"][0].update({"port": "Ethernet7", "vlanId": 732})
        api.apply(body)
        wait_for(
            "the new subinterface configured and the old one removed",
            lambda: (
                subif(admin, "cm-r2", "Ethernet7", 732) is not None and subif(admin, "cm-r2", "Ethernet8", 731) is None
            ),
            30,
        )
        wait_for("the service Ready on the new port", lambda: is_ready(api.get("networkservices", "mover", ns)), 20)
        time.sleep(1.0)
    assert watch.samples > 5 and not watch.not_ready, f"left Ready during the move: {watch.not_ready[:3]}"
    assert set_rpcs(admin, "cm-r2")[0] - sets_before[0] == 1, "make-before-break in one transactional Set"
    assert get_sub(api, ns, "mover")["status"]["state"] == "active"
    api.delete("productofferings", off)


def test_downgrade_waits_for_the_period_end(
    api: Api, controller: ControllerProcess, receiver: CloudEventsReceiver, clock_file: Path, ns: str
) -> None:
    """Moves the controller's clock to the month end (forward only), like the month-end test."""
    big, small = unique("cm-down1g"), unique("cm-down100")
    api.apply(per_second("2", big, 1000))
    api.apply(per_second("1", small, 100))
    body = subscription(ns, "branch", big, "acct-down", "cm-r2", "Ethernet7", 721)
    api.apply(body)
    sub = wait_state(api, ns, "branch", "active")
    body["spec"]["productOffering"] = {"name": small}
    api.apply(body)
    sub = wait_for(
        "the downgrade scheduled",
        lambda: (s := get_sub(api, ns, "branch")) and (s["status"].get("pendingChange") or {}).get("state") and s,
        20,
    )
    pending = sub["status"]["pendingChange"]
    month = Cycle.of("month", 1, "UTC").period_containing(controller_now(clock_file))
    assert (pending["state"], pending["direction"], pending["offering"]) == ("scheduled", "downgrade", small)
    assert ts(pending["effective"]) == month.end
    assert api.get("networkservices", "branch", ns)["spec"]["bandwidthMbps"] == 1000, "still on 1G until then"
    assert condition(sub, "Ready")["status"] == "True"

    jump = (month.end + timedelta(seconds=5) - controller_now(clock_file)).total_seconds()
    clock_file.write_text(str(float(clock_file.read_text() or 0) + jump))
    sub = wait_for(
        "the downgrade in force at the period end",
        lambda: (s := get_sub(api, ns, "branch")) and len(s["status"]["billing"]["plans"]) == 2 and s,
        30,
    )
    assert sub["status"].get("pendingChange") is None
    assert ts(sub["status"]["billing"]["plans"][1]["since"]) == month.end
    wait_for(
        "the service on 100 Mbit/s",
        lambda: api.get("networkservices", "branch", ns)["spec"]["bandwidthMbps"] == 100,
        20,
    )
    changed = wait_for("the changed event", lambda: received(receiver, source_of(ns, "branch"), "changed"), 20)
    assert changed[0].get_time() == month.end and changed[0].get_data()["policy"] == "endOfPeriod"
    # the month that ended is billed whole at the 1G price: no credit line
    charge = wait_event(
        receiver,
        ev.charge_period_id(
            ev.SubscriptionRef(ns, "branch", sub["metadata"]["uid"], "acct-down"),
            "Daily fee",
            Period(month.end - timedelta(days=1), month.end),
        ),
    )
    assert charge.get_data()["amount"] == f"{int(charge.get_data()['billableSeconds']) * 2}.00"
    for name in (big, small):
        api.delete("productofferings", name)


def test_a_downgrade_asked_before_the_month_end_and_seen_after_it_is_in_force_at_that_end(
    api: Api, controller: ControllerProcess, receiver: CloudEventsReceiver, clock_file: Path, ns: str
) -> None:
    """Bug 17 (b) of the order chaos: the controller is down across the month end when the downgrade is
    asked; it must not put the change off a month. Moves the clock forward, then lets the wall clock
    cross the month end (the offset holds while the change waits: the API server's time of the write is
    the wall clock's, and the controller moves it onto its own)."""
    big, small = unique("cm-late1g"), unique("cm-late100")
    api.apply(per_second("2", big, 1000))
    api.apply(per_second("1", small, 100))
    body = subscription(ns, "late", big, "acct-late", "cm-r2", "Ethernet8", 741)
    api.apply(body)
    wait_state(api, ns, "late", "active")
    controller.stop()
    month = Cycle.of("month", 1, "UTC").period_containing(controller_now(clock_file))
    jump = (month.end - timedelta(seconds=12) - controller_now(clock_file)).total_seconds()
    assert jump > 0, "the controller's clock only moves forward"
    clock_file.write_text(str(float(clock_file.read_text() or 0) + jump))
    body["spec"]["productOffering"] = {"name": small}
    api.apply(body)  # asked 12 s before the month end, nobody watching
    asked = controller_now(clock_file)
    assert asked < month.end, "the downgrade must be asked before the month end"
    while controller_now(clock_file) < month.end + timedelta(seconds=2):
        time.sleep(0.5)
    controller.start()
    sub = wait_for(
        "the downgrade in force at the month end it was asked before",
        lambda: (s := get_sub(api, ns, "late")) and len(s["status"]["billing"]["plans"]) == 2 and s,
        60,
    )
    assert ts(sub["status"]["billing"]["plans"][1]["since"]) == month.end, sub["status"]["billing"]["plans"]
    assert sub["status"].get("pendingChange") is None, "not scheduled for the next month end"
    changed = wait_for("the changed event", lambda: received(receiver, source_of(ns, "late"), "changed"), 20)
    assert changed[0].get_time() == month.end and changed[0].get_data()["policy"] == "endOfPeriod"
    wait_for(
        "the service on 100 Mbit/s",
        lambda: api.get("networkservices", "late", ns)["spec"]["bandwidthMbps"] == 100,
        20,
    )
    for name in (big, small):
        api.delete("productofferings", name)


def test_month_end_produces_the_on_cycle_invoice_exactly_once(
    api: Api,
    controller: ControllerProcess,
    receiver: CloudEventsReceiver,
    clock_file: Path,
    admin: AdminClient,
    ns: str,
) -> None:
    """Moves the controller's clock past the month end (forward only): keep this test last."""
    off = unique("cm-monthly")
    tz = "Europe/Paris"
    api.apply(offering(off))
    api.apply(subscription(ns, "dc", off, "ACME.Month", "cm-r1", "Ethernet4", 661, tz=tz))
    # Beside it, a metered subscription with an SLA it misses: its usage.rated and sla.credit facts
    # are produced by this live run when the month closes.
    metered = unique("cm-metered")
    usage = {"name": "Traffic", "priceType": "usage", "unitOfMeasure": {"amount": 1, "units": "GB"}}
    sla = {"availabilityTarget": "100", "creditPercent": "10"}
    prices = [*offering(metered)["spec"]["productOfferingPrice"], {**usage, "price": money("0.02")}]
    api.apply(offering(metered, *prices, serviceLevelAgreement=sla))
    api.apply(subscription(ns, "meter", metered, "ACME.Meter", "cm-r1", "Ethernet5", 662, tz=tz))
    # And one upgraded mid-month from a metered offering with an SLA to another (issue 15): its usage and its
    # SLA credit are rated per version part, each at its own version.
    small, big = unique("cm-grow-s"), unique("cm-grow-b")
    per_mb = {"name": "Traffic", "priceType": "usage", "unitOfMeasure": {"amount": 1, "units": "MB"}}
    for tier, fee, per_unit, cap in ((small, "86400.00", "1.00", "30"), (big, "172800.00", "3.00", "20")):
        sla_of = {"availabilityTarget": "100", "creditPercent": "10", "creditCapPercent": cap}
        api.apply(offering(tier, daily(fee), {**per_mb, "price": money(per_unit)}, serviceLevelAgreement=sla_of))
    grow = subscription(ns, "grow", small, "ACME.Grow", "cm-r2", "Ethernet6", 663, tz=tz)
    api.apply(grow)
    sub = wait_state(api, ns, "dc", "active")
    uid = sub["metadata"]["uid"]
    start = ts(sub["status"]["startDate"])
    month = Cycle.of("month", 1, tz).period_containing(controller_now(clock_file))
    assert month.contains(start)
    wait_state(api, ns, "meter", "active")
    wait_for(
        "usage measured on the metered subscription",
        lambda: any(
            int(w["octets"]) > 0 for w in get_sub(api, ns, "meter")["status"]["billing"]["usage"].get("windows", [])
        ),
        30,
    )
    wait_state(api, ns, "grow", "active")
    wait_for(
        "usage measured before the upgrade",
        lambda: any(
            int(w["octets"]) > 0 for w in get_sub(api, ns, "grow")["status"]["billing"]["usage"].get("windows", [])
        ),
        30,
    )
    admin.link("cm-r1", "Ethernet5", False)  # an outage the SLA does not allow
    admin.link("cm-r2", "Ethernet6", False)  # and one under the SLA of the version before the upgrade
    wait_for("the metered service down", lambda: not is_ready(api.get("networkservices", "meter", ns)), 20)
    wait_for("the upgraded service down", lambda: not is_ready(api.get("networkservices", "grow", ns)), 20)
    time.sleep(2.5)  # the ledger counts whole seconds
    admin.link("cm-r1", "Ethernet5", True)
    admin.link("cm-r2", "Ethernet6", True)
    wait_for("the metered service back", lambda: is_ready(api.get("networkservices", "meter", ns)), 20)
    wait_for("the upgraded service back", lambda: is_ready(api.get("networkservices", "grow", ns)), 20)
    wait_for(
        "the outage recorded before the upgrade",
        lambda: len(get_sub(api, ns, "grow")["status"]["billing"]["ledger"].get("ready", [])) >= 2,
        20,
    )
    grow["spec"]["productOffering"] = {"name": big}
    api.apply(grow)
    plans = wait_for(
        "the upgrade recorded and usage measured after it",
        lambda: (
            (b := get_sub(api, ns, "grow")["status"]["billing"])
            and len(b.get("plans", [])) == 2
            and any(w["start"] == b["plans"][1]["since"] and int(w["octets"]) > 0 for w in b["usage"]["windows"])
            and b["plans"]
        ),
        30,
    )
    changed_at = ts(plans[1]["since"])
    jump = (month.end + timedelta(seconds=20) - controller_now(clock_file)).total_seconds()
    clock_file.write_text(str(float(clock_file.read_text() or 0) + jump))

    name = invoice_name("ACME.Month", month, tz)
    inv = wait_for(
        f"the onCycle invoice {name}",
        lambda: (i := api.get("invoices", name, ns)) and (i.get("status") or {}).get("state") in ISSUED and i,
        60,
    )
    assert inv["spec"]["runType"] == "onCycle"
    assert ts(inv["spec"]["billingPeriod"]["startDateTime"]) == month.start
    assert ts(inv["spec"]["billingPeriod"]["endDateTime"]) == month.end
    ref = ev.SubscriptionRef(ns, "dc", uid, "ACME.Month")
    charge_id = ev.charge_period_id(ref, "Monthly fee", Period(month.start, month.end))
    (line,) = [ln for ln in inv["status"]["lines"] if ln["type"] == "recurringCharge"]
    assert line["events"] == [charge_id], "the line traces back to its billing event"
    assert inv["status"]["taxExcludedAmount"]["value"] == line["taxExcludedAmount"]["value"]
    charge = wait_event(receiver, charge_id)
    assert charge.get_data()["amount"] == line["taxExcludedAmount"]["value"], "event and bill agree"
    assert charge.get_time() == month.end
    sub = get_sub(api, ns, "dc")
    assert ts(sub["status"]["billing"]["chargedThrough"]) == month.end
    assert ts(sub["status"]["nextBillDate"]) > month.end

    # usage.rated and sla.credit: produced, delivered, dated when the month closed, with the period in the data
    meter_source = source_of(ns, "meter")
    for fact in ("usage.rated", "sla.credit"):
        (event,) = wait_for(f"the {fact} event", lambda f=fact: received(receiver, meter_source, f), 60)
        assert event.get_source().startswith("https://"), "an absolute URI with --cluster-identity"
        assert event.get_time() == month.end, (fact, event.get_time())
        data = event.get_data()
        assert (ts(data["periodStart"]), ts(data["periodEnd"])) == (month.start, month.end)
    rated = received(receiver, meter_source, "usage.rated")[0].get_data()
    assert int(rated["octets"]) > 0 and rated["price"] == "Traffic"
    credit = received(receiver, meter_source, "sla.credit")[0].get_data()
    assert int(credit["unavailableSeconds"]) > 0 and credit["availabilityTarget"] == "100"

    # the upgraded subscription: one usage line and event per version part, the SLA credit of the part before
    # the upgrade at that version's SLA (capped at 30 %) and base (what it charged), none after it (Ready)
    grow_uid = get_sub(api, ns, "grow")["metadata"]["uid"]
    gref = ev.SubscriptionRef(ns, "grow", grow_uid, "ACME.Grow")
    whole = Period(month.start, month.end)
    grow_name = invoice_name("ACME.Grow", month, tz)
    grow_inv = wait_for(
        f"the onCycle invoice {grow_name}",
        lambda: (i := api.get("invoices", grow_name, ns)) and (i.get("status") or {}).get("state") in ISSUED and i,
        60,
    )
    grow_lines = grow_inv["status"]["lines"]
    traffic = sorted(
        (ln for ln in grow_lines if ln["type"] == "usageCharge"), key=lambda ln: ln["periodCoverage"]["startDateTime"]
    )
    assert [ln["name"] for ln in traffic] == [
        f"Traffic ({small}, to {rfc(changed_at)})",
        f"Traffic ({big}, from {rfc(changed_at)})",
    ]
    part_ids = [ev.usage_rated_id(gref, "Traffic", whole), ev.usage_rated_id(gref, "Traffic", whole, changed_at)]
    assert [ln["events"] for ln in traffic] == [[i] for i in part_ids]
    for line, event_id, per_mb_price, (begin, finish) in zip(
        traffic, part_ids, (100, 300), ((month.start, changed_at), (changed_at, month.end)), strict=True
    ):
        data = wait_event(receiver, event_id).get_data()
        assert (ts(data["coverageStart"]), ts(data["coverageEnd"])) == (begin, finish)
        assert int(data["octets"]) > 0 and data["amount"] == line["taxExcludedAmount"]["value"]
        cents = round_half_up(Fraction(int(data["octets"]) * per_mb_price, 10**6))  # each part at its own price
        assert sum_lines([line]) == cents, (data, line)
    (sla_line,) = [ln for ln in grow_lines if ln["name"].startswith("SLA credit")]
    assert sla_line["name"].startswith(f"SLA credit ({small}, to {rfc(changed_at)}): availability"), sla_line
    assert sla_line["events"] == [ev.sla_credit_id(gref, whole)]
    sla_data = wait_event(receiver, sla_line["events"][0]).get_data()
    assert ts(sla_data["coverageEnd"]) == changed_at and int(sla_data["unavailableSeconds"]) >= 2
    # seconds down in a few dozen: far below 100 %, so the old SLA's cap (30 %; the new one's is 20 %)
    assert sla_data["creditPercent"] == "30", sla_data
    # the base: what the old version charged (its days before the upgrade's, that day's charge less its unused part)
    base = sum_lines(
        [
            ln
            for ln in grow_lines
            if ln["type"] in ("recurringCharge", "credit")
            and ln is not sla_line
            and (f"({small}" in ln["name"] or ts(ln["periodCoverage"]["endDateTime"]) <= changed_at)
        ]
    )
    assert base > 0
    credit_cents = min(round_half_up(Fraction(base * 30, 100)), math.floor(Fraction(base * 30, 100)))
    assert sla_line["taxExcludedAmount"]["value"] == f"-{Decimal(credit_cents) / 100:.2f}", (base, sla_line)
    assert_one_id_per_fact(receiver, source_of(ns, "grow"))

    def on_cycle() -> list[str]:
        invoices = list_items(api, "invoices", ns)
        return [i["metadata"]["name"] for i in invoices if i["spec"]["billingAccount"] == "ACME.Month"]

    mark = len(controller.logs())
    wait_for("three more billing passes", lambda: billing_passes(controller, mark) >= 3, 30)
    assert on_cycle() == [name], "exactly one onCycle invoice"
    controller.kill9()
    controller.start()
    mark = len(controller.logs())
    wait_for("two billing passes after a restart", lambda: billing_passes(controller, mark) >= 2, 60)
    assert on_cycle() == [name], "a restart does not bill the month again"
    charges = received(receiver, source_of(ns, "dc"), "charge.period")
    assert {e.get_id() for e in charges} == {charge_id}, "the period's charge has one id"
    assert_one_id_per_fact(receiver, source_of(ns, "dc"))
    issued = api.get("invoices", name, ns)
    assert issued is not None and issued["status"]["contentDigest"] == inv["status"]["contentDigest"]
    api.delete("subscriptions", "dc", ns)
    api.delete("subscriptions", "meter", ns)
    api.delete("subscriptions", "grow", ns)
    wait_for("subscription gone", lambda: api.get("subscriptions", "dc", ns) is None, 40)
    wait_for("metered subscription gone", lambda: api.get("subscriptions", "meter", ns) is None, 40)
    wait_for("upgraded subscription gone", lambda: api.get("subscriptions", "grow", ns) is None, 40)
    for tier in (off, metered, small, big):
        api.delete("productofferings", tier)

"""The validating admission webhook against the real API server: registered for this module with a CA
the test makes, served by `python -m controller run --webhook-port`, exercised by `kubectl apply`.

What is refused names the field; what existed before the webhook is left alone (the controller's
finalizer and status writes on it go through, and it can still be deleted); a controller restart
brings admission back, and while no controller answers, failurePolicy Fail refuses creates. The mutating
webhook stores Subscriptions and NetworkServices with the controller's finalizer, so the controller never
writes it; one that does not answer never refuses a create (failurePolicy Ignore).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from controller.admission import RERUN_ANNOTATION, mutating_webhook_configuration, webhook_configuration
from controller.times import rfc3339
from localcluster.cluster import free_port
from tests.harness import Api, ControllerProcess, registered_webhook, wait_for
from tests.kube import Kubectl
from tests.unit.commerce.builders import offering_doc

NS = "adm-tests"
API = "telco.intent.dev/v1alpha1"
CONFIG = "telco-intent-test-admission"
CLEANUP = "telco.intent.dev/cleanup"


def offering(name: str, **spec: Any) -> dict[str, Any]:
    body = offering_doc(name=name, **spec)
    return {"apiVersion": API, "kind": "ProductOffering", "metadata": {"name": name}, "spec": body}


def device(name: str, address: str, port: int = 9339) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "NetworkDevice",
        "metadata": {"name": name},
        "spec": {"address": address, "port": port, "credentialsSecretRef": {"name": "none", "namespace": NS}},
    }


def endpoint(vlan: int, ip: str | None, device_name: str = "adm-pe1", port: str = "Ethernet1") -> dict[str, Any]:
    doc: dict[str, Any] = {"device": device_name, "port": port, "vlanId": vlan}
    if ip is not None:
        doc["ipv4Address"] = ip
    return doc


def subscription(name: str, offering_name: str = "adm-fiber", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "productOffering": {"name": offering_name},
        "billingAccount": {"id": "adm-1"},
        "endpoints": [endpoint(500, "172.16.5.1/30")],
        **spec,
    }
    body = {k: v for k, v in body.items() if v is not None}  # None: leave the field out
    return {"apiVersion": API, "kind": "Subscription", "metadata": {"name": name, "namespace": NS}, "spec": body}


def service(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"serviceType": "internetAccess", "bandwidthMbps": 10, **spec}
    return {"apiVersion": API, "kind": "NetworkService", "metadata": {"name": name, "namespace": NS}, "spec": body}


def invoice(
    name: str, annotations: dict[str, str] | None = None, payments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "billingAccount": "adm-1",
        "billingPeriod": {"startDateTime": "2026-10-01T00:00:00Z", "endDateTime": "2026-11-01T00:00:00Z"},
        "runType": "offCycle",
    }
    if payments is not None:
        spec["payments"] = payments
    return {"apiVersion": API, "kind": "Invoice", "metadata": meta, "spec": spec}


def payment(pid: str, value: str = "10.00", **extra: str) -> dict[str, Any]:
    return {"id": pid, "amount": {"unit": "EUR", "value": value}, "date": "2026-10-05T00:00:00Z", **extra}


# Written before the webhook exists: some of them it would refuse today.
BEFORE = [
    offering("adm-fiber"),
    offering("adm-retired", lifecycleStatus="Retired"),
    device("adm-pe1", "192.0.2.101"),
    service("adm-legacy", endpoints=[endpoint(100, "10.93.10.1/30")]),
    service("adm-vpn", serviceType="l3vpn", vrf="red", endpoints=[endpoint(300, "10.77.0.1/30")]),
    subscription("adm-orphan", "adm-gone", endpoints=[endpoint(200, "172.16.2.1/30")]),
    invoice("adm-inv-1"),
]


@pytest.fixture(scope="module")
def webhook(crds: Kubectl, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    api = Api(kubeconfig)
    api.ensure_namespace(NS)
    crds.apply(BEFORE)
    before = {_ref(o): crds.get(_kind(o), o["metadata"]["name"], o["metadata"].get("namespace")) for o in BEFORE}
    log = tmp_path_factory.mktemp("adm-controller") / "controller.log"
    proc = ControllerProcess(kubeconfig, log, "-n", NS, webhook=True).start()
    state = {"api": api, "kubectl": crds, "proc": proc, "port": proc.webhook_port, "before": before}
    try:
        with registered_webhook(api, proc, CONFIG):
            wait_serving(crds, proc.webhook_port)
            yield state
    finally:
        state["proc"].stop()
        print(f"--- controller log ({log}) ---\n" + state["proc"].logs()[-8000:])


def wait_serving(kubectl: Kubectl, port: int, timeout: float = 60) -> None:
    """Until the webhook answers: a port accepting connections, then a server dry run it refuses."""

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
        except OSError:
            return False
        return True

    wait_for(f"the webhook listening on 127.0.0.1:{port}", listening, timeout)
    probe = subscription("adm-probe", "adm-gone")
    wait_for(
        "the webhook refusing a Subscription for a missing offering",
        lambda: "denied the request" in kubectl.apply(probe, check=False, dry_run=True).stderr,
        timeout,
        interval=0.5,
    )


def _kind(obj: dict[str, Any]) -> str:
    return str(obj["kind"]).lower() + "s"


def _ref(obj: dict[str, Any]) -> str:
    return f"{_kind(obj)}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def refused(kubectl: Kubectl, obj: dict[str, Any] | list[dict[str, Any]]) -> str:
    result = kubectl.apply(obj, check=False)
    assert result.returncode != 0, f"admitted, expected a refusal:\n{result.stdout}"
    return result.stderr


# (id, object, webhook, field, words in the message)
REFUSALS: list[tuple[str, dict[str, Any], str, str, list[str]]] = [
    ("order for a missing offering", subscription("adm-s1", "adm-gone"), "subscriptions",
     "spec.productOffering.name", ["ProductOffering adm-gone does not exist"]),
    ("order for a retired offering", subscription("adm-s2", "adm-retired"), "subscriptions",
     "spec.productOffering.name", ["takes no new orders", "Retired"]),
    ("order on a port and VLAN a NetworkService holds",
     subscription("adm-s3", endpoints=[endpoint(100, "172.16.3.1/30")]), "subscriptions",
     "spec.endpoints[0]", ["held by NetworkService adm-tests/adm-legacy"]),
    ("order on a port and VLAN another Subscription holds",
     subscription("adm-s4", endpoints=[endpoint(200, "172.16.4.1/30")]), "subscriptions",
     "spec.endpoints[0]", ["held by Subscription adm-tests/adm-orphan"]),
    ("order on an unknown device", subscription("adm-s5", endpoints=[endpoint(501, None, "adm-ghost")]),
     "subscriptions", "spec.endpoints[0].device", ["NetworkDevice adm-ghost does not exist"]),
    ("time zone not in tzdata (issue 19 case 7)",
     subscription("adm-s6", billingAccount={"id": "adm-1", "timeZone": "Mars/Olympus_Mons"}), "subscriptions",
     "spec.billingAccount.timeZone", ["'Mars/Olympus_Mons'"]),
    ("Etc/GMT+13 (issue 19 case 7)",
     subscription("adm-s7", billingAccount={"id": "adm-1", "timeZone": "Etc/GMT+13"}), "subscriptions",
     "spec.billingAccount.timeZone", ["'Etc/GMT+13'"]),
    ("order on a BillingAccount that does not exist",
     subscription("adm-s9", billingAccount=None, billingAccountRef={"name": "adm-nobody"}), "subscriptions",
     "spec.billingAccountRef.name", ["BillingAccount adm-nobody does not exist"]),
    ("termination past year 9999 in UTC (issue 19 case 6)",
     subscription("adm-s8", requestedTerminationDate="9999-12-31T23:30:00-01:00"), "subscriptions",
     "spec.requestedTerminationDate", ["past the year 9999"]),
    ("service on an unknown device", service("adm-n1", endpoints=[endpoint(600, "172.16.6.1/30", "adm-ghost")]),
     "networkservices", "spec.endpoints[0].device", ["NetworkDevice adm-ghost does not exist"]),
    ("the same IPv4 subnet on another subinterface (issue 19 case 1)",
     service("adm-n2", endpoints=[endpoint(101, "10.93.10.1/30")]), "networkservices",
     "spec.endpoints[0].ipv4Address", ["overlaps 10.93.10.1/30 of NetworkService adm-tests/adm-legacy"]),
    ("a second NetworkDevice for adm-pe1's gNMI endpoint (issue 19 case 2)", device("adm-pe1-twin", "192.0.2.101"),
     "networkdevices", "spec.address", ["already the gNMI target of NetworkDevice adm-pe1"]),
    ("a second off-cycle invoice for the account and period (issue 19 case 3)", invoice("adm-inv-2"), "invoices",
     "spec.billingPeriod", ["Invoice adm-inv-1 already bills account adm-1", RERUN_ANNOTATION]),
    ("a reversal of a payment never recorded",
     invoice("adm-inv-pay2", {RERUN_ANNOTATION: "x"},
             [payment("p1"), payment("r1", "-5.00", reason="chargeback", reverses="p7")]),
     "invoices", "spec.payments[1].reverses", ["'p7' is not the id of a payment recorded before this reversal"]),
    ("an offering priced in ZZZ (issue 19 case 4)",
     offering("adm-zzz", productOfferingPrice=[{"name": "fee", "priceType": "recurring",
                                                "recurringChargePeriodType": "month",
                                                "price": {"unit": "ZZZ", "value": "1.00"}}]),
     "productofferings", "spec.productOfferingPrice[0].price.unit", ["currency ZZZ is not supported"]),
    ("two prices with one name (issue 19 case 5)",
     offering("adm-twice", productOfferingPrice=[
         {"name": "fee", "priceType": "recurring", "recurringChargePeriodType": "month",
          "price": {"unit": "EUR", "value": "1.00"}},
         {"name": "fee", "priceType": "recurring", "recurringChargePeriodType": "year",
          "price": {"unit": "EUR", "value": "10.00"}}]),
     "productofferings", "spec.productOfferingPrice[1].name", ["'fee' is also the name of productOfferingPrice[0]"]),
    ("an offering valid until past year 9999 (issue 19 case 6)",
     offering("adm-forever", validFor={"endDateTime": "9999-12-31T23:30:00-01:00"}), "productofferings",
     "spec.validFor.endDateTime", ["past the year 9999"]),
]  # fmt: skip


@pytest.mark.cluster
@pytest.mark.parametrize(("obj", "hook", "field", "words"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_kubectl_apply_is_refused_naming_the_field(
    webhook: dict[str, Any], obj: dict[str, Any], hook: str, field: str, words: list[str]
) -> None:
    kubectl: Kubectl = webhook["kubectl"]
    stderr = refused(kubectl, obj)
    assert f'admission webhook "{hook}.validate.telco.intent.dev" denied the request' in stderr, stderr
    assert f"{field}: " in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)
    meta = obj["metadata"]
    assert webhook["api"].get(_kind(obj), meta["name"], meta.get("namespace")) is None  # nothing was stored


@pytest.mark.cluster
def test_good_objects_are_admitted(webhook: dict[str, Any]) -> None:
    kubectl: Kubectl = webhook["kubectl"]
    good = [
        subscription("adm-good", billingAccount={"id": "adm-1", "timeZone": "EST5EDT"}),
        service("adm-good-svc", endpoints=[endpoint(700, "172.16.7.1/30")]),
        device("adm-pe2", "192.0.2.102"),
        invoice("adm-inv-rerun", annotations={RERUN_ANNOTATION: "tax rate corrected"}),
    ]
    for obj in good:
        result = kubectl.apply(obj, check=False)
        assert result.returncode == 0, (obj["metadata"]["name"], result.stderr)


@pytest.mark.cluster
def test_removing_vrf_while_switching_to_l2vpn_is_refused(webhook: dict[str, Any]) -> None:
    """Issue 19 case 8: a JSON patch removing spec.vrf passed `self == oldSelf` (which does not run on removal)."""
    kubectl: Kubectl = webhook["kubectl"]
    patch = [{"op": "replace", "path": "/spec/serviceType", "value": "l2vpn"}, {"op": "remove", "path": "/spec/vrf"}]
    result = kubectl.run(
        "patch", "networkservice", "adm-vpn", "-n", NS, "--type=json", "-p", json.dumps(patch), check=False
    )
    assert result.returncode != 0
    assert "spec.vrf" in result.stderr and "vrf is immutable: it can be neither changed nor removed" in result.stderr
    assert kubectl.get("networkservice", "adm-vpn", NS)["spec"]["vrf"] == "red"


@pytest.mark.cluster
def test_a_price_edit_for_time_already_past_is_refused_and_a_published_one_admitted(webhook: dict[str, Any]) -> None:
    """Prices are published in advance (docs/billing.md): the bill follows each price's validFor however late
    the controller sees an edit, so an edit declaring a price for time already past is refused, naming the
    field; ending the running fee and adding the next one from a time not yet passed is admitted."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    now = datetime.now(UTC).replace(microsecond=0)
    hour_ago, in_an_hour = rfc3339(now - timedelta(hours=1)), rfc3339(now + timedelta(hours=1))
    fee = {"name": "Monthly fee", "priceType": "recurring", "recurringChargePeriodType": "month",
           "price": {"unit": "EUR", "value": "49.90"}}  # fmt: skip
    assert kubectl.apply(offering("adm-priced", productOfferingPrice=[fee])).returncode == 0
    stored = api.get("productofferings", "adm-priced", None)
    assert stored is not None
    cases = [
        ([fee, {**fee, "name": "Fee 2", "validFor": {"startDateTime": hour_ago}}],
         "spec.productOfferingPrice[1].validFor.startDateTime", ["no earlier than now", hour_ago]),
        ([{**fee, "price": {"unit": "EUR", "value": "59.90"}}],
         "spec.productOfferingPrice[0]", ["'Monthly fee' is in force", "cannot be changed in place"]),
        ([{**fee, "validFor": {"endDateTime": hour_ago}}],
         "spec.productOfferingPrice[0].validFor.endDateTime", ["cannot end at", hour_ago]),
    ]  # fmt: skip
    for prices, field, words in cases:
        stderr = refused(kubectl, offering("adm-priced", productOfferingPrice=prices))
        assert 'admission webhook "productofferings.validate.telco.intent.dev" denied the request' in stderr, stderr
        assert f"{field}: " in stderr, (field, stderr)
        for word in words:
            assert word in stderr, (word, stderr)
    after = api.get("productofferings", "adm-priced", None)
    assert after is not None and after["spec"] == stored["spec"], "nothing of the refused edits was stored"
    published = [
        {**fee, "validFor": {"endDateTime": in_an_hour}},
        {**fee, "name": "Fee 2", "price": {"unit": "EUR", "value": "59.90"}, "validFor": {"startDateTime": in_an_hour}},
    ]
    result = kubectl.apply(offering("adm-priced", productOfferingPrice=published), check=False)
    assert result.returncode == 0, result.stderr
    edited = api.get("productofferings", "adm-priced", None)
    assert edited is not None and [p["name"] for p in edited["spec"]["productOfferingPrice"]] == [
        "Monthly fee",
        "Fee 2",
    ]


@pytest.mark.cluster
def test_objects_from_before_the_webhook_are_left_alone(webhook: dict[str, Any]) -> None:
    """The Subscription for a missing offering predates the webhook: its spec is untouched, the controller
    writes its finalizer and status through the webhook, a label change is admitted, and it can be
    deleted; only a change that adds a problem would be refused."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    for key, old in webhook["before"].items():
        plural, namespace, name = key.split("/")
        now = api.get(plural, name, namespace or None)
        assert now is not None, key
        assert now["spec"] == old["spec"] and now["metadata"]["generation"] == old["metadata"]["generation"], key
    orphan = wait_for(
        "the controller's finalizer and status on adm-orphan",
        lambda: (
            (o := api.get("subscriptions", "adm-orphan", NS))
            and CLEANUP in (o["metadata"].get("finalizers") or [])
            and (o.get("status") or {}).get("conditions")
            and o
        ),
        30,
        interval=0.2,
    )
    ready = next(c for c in orphan["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "adm-gone" in ready["message"]  # the second line of defence
    kubectl.run("label", "subscription", "adm-orphan", "-n", NS, "tier=gold")
    moved = subscription("adm-orphan", "adm-gone", endpoints=[endpoint(200, "172.16.2.1/30", "adm-ghost")])
    stderr = refused(kubectl, moved)  # moving it onto a device that does not exist is a new problem
    assert "spec.endpoints[0].device: NetworkDevice adm-ghost does not exist" in stderr, stderr
    assert "spec.productOffering.name" not in stderr, stderr  # the old problem is not the reason
    kubectl.run("delete", "subscription", "adm-orphan", "-n", NS, "--wait=true", "--timeout=60s")
    assert api.get("subscriptions", "adm-orphan", NS) is None


@pytest.mark.cluster
def test_admission_survives_a_controller_restart(webhook: dict[str, Any]) -> None:
    kubectl: Kubectl = webhook["kubectl"]
    proc: ControllerProcess = webhook["proc"]
    proc.stop()
    started = time.monotonic()
    result = kubectl.apply(subscription("adm-while-down"), check=False)
    assert result.returncode != 0 and "failed calling webhook" in result.stderr, result.stderr  # failurePolicy Fail
    assert time.monotonic() - started < 15  # bounded by the webhook's timeoutSeconds, not hanging
    # A metadata-only change never calls the webhook (matchConditions): labels, and the finalizer an
    # operator clears to complete a deletion, go through while no controller answers.
    kubectl.run("label", "subscription", "adm-good", "-n", NS, "while-down=yes")
    patch = json.dumps({"metadata": {"finalizers": None}})
    kubectl.run("patch", "networkservice", "adm-good-svc", "-n", NS, "--type=merge", "-p", patch)
    kubectl.run("delete", "networkservice", "adm-good-svc", "-n", NS, "--wait=true", "--timeout=30s")
    webhook["proc"] = proc.start()  # the same port and certificate
    wait_serving(kubectl, webhook["port"])
    stderr = refused(kubectl, subscription("adm-after", "adm-gone"))
    assert "spec.productOffering.name: ProductOffering adm-gone does not exist" in stderr
    result = kubectl.apply(subscription("adm-after-good", endpoints=[endpoint(800, "172.16.8.1/30")]), check=False)
    assert result.returncode == 0, result.stderr


def _finalizer_writers(obj: dict[str, Any]) -> list[str]:
    """The field managers that own metadata.finalizers outside the status subresource."""
    return [
        str(entry.get("manager"))
        for entry in obj["metadata"].get("managedFields") or []
        if entry.get("subresource") != "status"
        and "f:finalizers" in ((entry.get("fieldsV1") or {}).get("f:metadata") or {})
    ]


@pytest.mark.cluster
def test_created_orders_and_services_carry_the_finalizer_from_admission(webhook: dict[str, Any]) -> None:
    """The create's own answer already holds the finalizer (the controller cannot have written it yet), the
    controller's passes never write it (no manager owns the field), and applying the same manifest again,
    server-side, keeps it."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    objs = [
        subscription("adm-fin-sub", endpoints=[endpoint(900, "172.16.9.1/30")]),
        service("adm-fin-svc", endpoints=[endpoint(901, "172.16.9.5/30")]),
    ]
    for obj in objs:
        created = json.loads(kubectl.run("create", "-f", "-", "-o", "json", stdin=json.dumps(obj)).stdout)
        assert created["metadata"].get("finalizers") == [CLEANUP], created["metadata"]
    for obj in objs:
        kind, name = _kind(obj), obj["metadata"]["name"]
        stored = wait_for(
            f"the controller's status on {name}",
            lambda kind=kind, name=name: (
                (o := api.get(kind, name, NS)) and (o.get("status") or {}).get("conditions") and o
            ),
            60,
            interval=0.2,
        )
        assert stored["metadata"]["finalizers"] == [CLEANUP]
        # A field a mutating webhook sets belongs to no manager; the controller's write would own it.
        assert _finalizer_writers(stored) == [], stored["metadata"]["managedFields"]
        kubectl.apply(obj)  # the same manifest again, server-side, as a GitOps sync does
        again = api.get(kind, name, NS)
        assert again is not None and CLEANUP in (again["metadata"].get("finalizers") or []), again["metadata"]
    # adm-pe1 is not reachable, so the device cleanup these finalizers wait for never ends: not waited for.
    kubectl.run("delete", "subscription", "adm-fin-sub", "-n", NS, "--wait=false")
    kubectl.run("delete", "networkservice", "adm-fin-svc", "-n", NS, "--wait=false")


@pytest.mark.cluster
def test_a_finalizer_webhook_that_does_not_answer_never_refuses_and_the_controller_adds_it(
    webhook: dict[str, Any],
) -> None:
    """Only a mutating webhook at a closed port is registered: the create goes through without the finalizer
    (failurePolicy Ignore) and the controller writes it itself, as without the webhook."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    proc: ControllerProcess = webhook["proc"]
    assert proc.webhook_ca is not None
    admission = kubernetes.client.AdmissionregistrationV1Api(api.client)
    admission.delete_mutating_webhook_configuration(CONFIG)
    dead = mutating_webhook_configuration(CONFIG, f"https://127.0.0.1:{free_port()}", proc.webhook_ca)
    admission.create_mutating_webhook_configuration(dead)
    try:
        obj = service("adm-fin-dead", endpoints=[endpoint(902, "172.16.9.9/30")])
        created = json.loads(kubectl.run("create", "-f", "-", "-o", "json", stdin=json.dumps(obj)).stdout)
        assert not created["metadata"].get("finalizers"), created["metadata"]
        stored = wait_for(
            "the controller's own finalizer on adm-fin-dead",
            lambda: (
                (o := api.get("networkservices", "adm-fin-dead", NS))
                and CLEANUP in (o["metadata"].get("finalizers") or [])
                and o
            ),
            60,
            interval=0.2,
        )
        assert _finalizer_writers(stored), stored["metadata"]["managedFields"]  # the controller's own write
        kubectl.run("delete", "networkservice", "adm-fin-dead", "-n", NS, "--wait=false")
    finally:
        admission.delete_mutating_webhook_configuration(CONFIG)
        admission.create_mutating_webhook_configuration(
            mutating_webhook_configuration(CONFIG, str(proc.webhook_url), proc.webhook_ca)
        )


@pytest.mark.cluster
def test_a_create_that_carries_the_finalizer_never_calls_the_finalizer_webhook(webhook: dict[str, Any]) -> None:
    """The mutating webhook's match condition, as the API server evaluates it: with the webhook at a closed
    port and failurePolicy Fail (so a call shows as a refusal), a NetworkService created with our finalizer
    already in it (as the controller creates a Subscription's) goes through without a call, one without it
    is refused because the call fails."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    proc: ControllerProcess = webhook["proc"]
    assert proc.webhook_ca is not None
    admission = kubernetes.client.AdmissionregistrationV1Api(api.client)
    admission.delete_mutating_webhook_configuration(CONFIG)
    dead = mutating_webhook_configuration(CONFIG, f"https://127.0.0.1:{free_port()}", proc.webhook_ca)
    for hook in dead["webhooks"]:
        hook["failurePolicy"] = "Fail"
    admission.create_mutating_webhook_configuration(dead)
    try:
        carried = service("adm-fin-carried", endpoints=[endpoint(903, "172.16.9.13/30")])
        carried["metadata"]["finalizers"] = ["example.com/keep", CLEANUP]
        created = json.loads(kubectl.run("create", "-f", "-", "-o", "json", stdin=json.dumps(carried)).stdout)
        assert created["metadata"]["finalizers"] == ["example.com/keep", CLEANUP], created["metadata"]
        bare = service("adm-fin-bare", endpoints=[endpoint(904, "172.16.9.17/30")])
        bare["metadata"]["finalizers"] = ["example.com/keep"]  # finalizers, but not ours: the webhook is called
        refused = kubectl.run("create", "-f", "-", stdin=json.dumps(bare), check=False)
        assert refused.returncode != 0 and "finalizer.telco.intent.dev" in refused.stderr, refused.stderr
        assert api.get("networkservices", "adm-fin-bare", NS) is None
    finally:
        admission.delete_mutating_webhook_configuration(CONFIG)
        admission.create_mutating_webhook_configuration(
            mutating_webhook_configuration(CONFIG, str(proc.webhook_url), proc.webhook_ca)
        )
    kubectl.run(
        "patch",
        "networkservice",
        "adm-fin-carried",
        "-n",
        NS,
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"finalizers": [CLEANUP]}}),
    )
    kubectl.run("delete", "networkservice", "adm-fin-carried", "-n", NS, "--wait=false")


@pytest.mark.cluster
def test_the_controllers_own_write_of_an_owned_service_is_not_judged_again(webhook: dict[str, Any]) -> None:
    """The NetworkService check's match condition, as the API server evaluates it (a second registration at
    a closed port with failurePolicy Fail, so a call shows as a refusal): a NetworkService with a
    Subscription as its controlling owner, created by the controller's identity (impersonated here), is not
    sent to it; the same identity's service without that owner is, and so is an owned one created by
    anyone else."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    proc: ControllerProcess = webhook["proc"]
    assert proc.webhook_ca is not None
    account = "telco-intent-ctl"
    identity = f"system:serviceaccount:{NS}:{account}"
    rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account, "namespace": NS},
            "rules": [{"apiGroups": ["telco.intent.dev"], "resources": ["networkservices"], "verbs": ["create"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NS}],
        },
    ]
    for doc in rbac:
        kubectl.run("apply", "-f", "-", stdin=json.dumps(doc))
    owner = {
        "apiVersion": API,
        "kind": "Subscription",
        "name": "adm-owner",
        "uid": "00000000-0000-4000-8000-000000000001",
        "controller": True,
        "blockOwnerDeletion": False,
    }
    name = f"{CONFIG}-owned"
    dead = webhook_configuration(
        name, f"https://127.0.0.1:{free_port()}", proc.webhook_ca, controller_username=identity
    )
    dead["webhooks"] = [w for w in dead["webhooks"] if w["name"].startswith("networkservices.")]
    admission = kubernetes.client.AdmissionregistrationV1Api(api.client)
    admission.create_validating_webhook_configuration(dead)
    made: list[str] = []
    try:

        def create(svc: str, vlan: int, owned: bool, as_controller: bool) -> Any:
            obj = service(svc, endpoints=[endpoint(vlan, f"172.16.{vlan - 800}.1/30")])
            if owned:
                obj["metadata"]["ownerReferences"] = [owner]
            who = [f"--as={identity}"] if as_controller else []
            result = kubectl.run("create", "-f", "-", *who, stdin=json.dumps(obj), check=False)
            if result.returncode == 0:
                made.append(svc)
            return result

        skipped = create("adm-owned-by-ctl", 905, owned=True, as_controller=True)
        assert skipped.returncode == 0, skipped.stderr
        for svc, vlan, owned, as_controller in (
            ("adm-plain-by-ctl", 906, False, True),
            ("adm-owned-by-admin", 907, True, False),
        ):
            called = create(svc, vlan, owned, as_controller)
            assert called.returncode != 0 and "failed calling webhook" in called.stderr, called.stderr
    finally:
        admission.delete_validating_webhook_configuration(name)
        for svc in made:
            kubectl.run("delete", "networkservice", svc, "-n", NS, "--wait=false")


@pytest.mark.cluster
def test_recorded_payments_cannot_be_rewritten_and_reversals_name_a_recorded_payment(webhook: dict[str, Any]) -> None:
    """Appending a payment and its reversal is admitted; editing a recorded one is refused (by the CRD's CEL
    rule, which runs before the webhook); appending a reversal of an unknown payment is refused by the webhook."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    paid = [payment("p1"), payment("r1", "-10.00", reason="chargeback", reverses="p1")]
    kubectl.apply(invoice("adm-inv-pays", {RERUN_ANNOTATION: "payments test"}, paid))
    edited = [payment("p1", "99.00"), paid[1]]
    stderr = refused(kubectl, invoice("adm-inv-pays", {RERUN_ANNOTATION: "payments test"}, edited))
    assert "recorded payments cannot be edited or removed" in stderr, stderr
    unknown = [*paid, payment("r2", "-1.00", reason="refund", reverses="p404")]
    stderr = refused(kubectl, invoice("adm-inv-pays", {RERUN_ANNOTATION: "payments test"}, unknown))
    assert 'admission webhook "invoices.validate.telco.intent.dev" denied the request' in stderr, stderr
    assert "spec.payments[2].reverses: 'p404' is not the id of a payment recorded before" in stderr, stderr
    stored = api.get("invoices", "adm-inv-pays", NS)
    assert stored is not None and stored["spec"]["payments"] == paid  # nothing recorded was lost


@pytest.mark.cluster
def test_a_burst_of_creates_is_admitted_entirely_and_conflicts_are_still_refused(
    webhook: dict[str, Any], kubeconfig: Path
) -> None:
    """100 NetworkServices created at once (32 at a time, as a GitOps sync or a bulk import does) are all
    admitted: no request is refused because the webhook's reads ran out of time (503), which a burst
    used to cause when every request parsed every stored object. Those that collide with what was stored
    before the burst (adm-legacy's VLAN 100 and subnet) are refused naming the field, within the burst."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
    config.connection_pool_maxsize = 32
    custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(config))
    good = [service(f"adm-burst-{i}", endpoints=[endpoint(2000 + i, f"10.200.{i}.1/30")]) for i in range(100)]
    held = {
        "adm-burst-vlan": (service("adm-burst-vlan", endpoints=[endpoint(100, "10.201.0.1/30")]), "spec.endpoints[0]"),
        "adm-burst-subnet": (
            service("adm-burst-subnet", endpoints=[endpoint(2200, "10.93.10.2/29")]),
            "spec.endpoints[0].ipv4Address",
        ),
    }

    def create(body: dict[str, Any]) -> tuple[str, int, str]:
        try:
            custom.create_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, "networkservices", body)
        except kubernetes.client.ApiException as exc:
            return body["metadata"]["name"], int(exc.status), str(exc.body)
        return body["metadata"]["name"], 201, ""

    bodies = good[:50] + [b for b, _ in held.values()] + good[50:]
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(create, bodies))
        outcome = {name: (code, text) for name, code, text in results}
        not_admitted = {n: outcome[n] for n in (b["metadata"]["name"] for b in good) if outcome[n][0] != 201}
        assert not not_admitted, f"{len(not_admitted)} of 100 refused, e.g. {next(iter(not_admitted.items()))}"
        for name, (_, field) in held.items():
            code, text = outcome[name]
            assert code == 422 and "denied the request" in text and f"{field}: " in text, (name, code, text)
            assert "adm-tests/adm-legacy" in text, text
    finally:
        # Gone for good, so later tests on this API server (the TMF lists) do not page through them: their
        # device (adm-pe1) is unreachable, so the controller's finalizer would hold them forever; the test
        # clears it on its own objects, as an operator completes such a deletion.
        for body in bodies:
            name = body["metadata"]["name"]
            with contextlib.suppress(kubernetes.client.ApiException):
                custom.delete_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, "networkservices", name)
            with contextlib.suppress(kubernetes.client.ApiException):
                custom.patch_namespaced_custom_object(
                    "telco.intent.dev", "v1alpha1", NS, "networkservices", name, {"metadata": {"finalizers": None}}
                )


# --- the watch-fed cache (controller/handlers/admission.py's KindWatch) -----------------------------------


def _forget(api: Api, plural: str, name: str) -> None:
    """Delete an object of NS for good: the controller's finalizer waits for adm-pe1, which never answers,
    so the test clears it, as an operator completes such a deletion."""
    custom = kubernetes.client.CustomObjectsApi(api.client)
    with contextlib.suppress(kubernetes.client.ApiException):
        custom.delete_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, plural, name)
    with contextlib.suppress(kubernetes.client.ApiException):
        custom.patch_namespaced_custom_object(
            "telco.intent.dev", "v1alpha1", NS, plural, name, {"metadata": {"finalizers": None}}
        )
    wait_for(f"{plural}/{name} gone", lambda: api.get(plural, name, NS) is None, 30, interval=0.1)


@pytest.mark.cluster
def test_a_conflict_created_just_before_is_refused_and_a_deleted_services_port_is_free_again(
    webhook: dict[str, Any],
) -> None:
    """The webhook judges from its watch-fed cache: what `kubectl apply` stored a moment ago is there (the
    next request waits until the cache reached a resourceVersion read after it arrived), and what was deleted
    a moment ago is gone from it, so its port and VLAN and its subnet are free again at once."""
    kubectl: Kubectl = webhook["kubectl"]
    api: Api = webhook["api"]
    first = service("adm-cache-a", endpoints=[endpoint(1500, "10.150.0.1/30")])
    assert kubectl.apply(first, check=False).returncode == 0
    stderr = refused(kubectl, service("adm-cache-b", endpoints=[endpoint(1500, "10.151.0.1/30")]))
    assert "spec.endpoints[0]: " in stderr and "held by NetworkService adm-tests/adm-cache-a" in stderr, stderr
    stderr = refused(kubectl, subscription("adm-cache-c", endpoints=[endpoint(1501, "10.150.0.2/30")]))
    assert "spec.endpoints[0].ipv4Address: " in stderr and "adm-tests/adm-cache-a" in stderr, stderr
    order = subscription("adm-cache-d", endpoints=[endpoint(1502, "10.152.0.1/30")])
    assert kubectl.apply(order, check=False).returncode == 0
    stderr = refused(kubectl, service("adm-cache-e", endpoints=[endpoint(1502, "10.153.0.1/30")]))
    assert "held by Subscription adm-tests/adm-cache-d" in stderr, stderr
    try:
        _forget(api, "networkservices", "adm-cache-a")
        again = service("adm-cache-b", endpoints=[endpoint(1500, "10.150.0.1/30")])
        result = kubectl.apply(again, check=False)
        assert result.returncode == 0, result.stderr
    finally:
        for plural, name in (("subscriptions", "adm-cache-d"), ("networkservices", "adm-cache-d")):
            _forget(api, plural, name)
        _forget(api, "networkservices", "adm-cache-b")


@pytest.mark.cluster
def test_the_cache_watch_survives_410_gone_by_listing_again(kubeconfig: Path, webhook: dict[str, Any]) -> None:
    """A watch resumed from a resourceVersion the API server no longer serves gets 410 Gone; the KindWatch
    lists again, holds what changed while it was away, and follows events from the new list on."""
    import asyncio

    from controller.admission import Store
    from controller.handlers.admission import KindWatch
    from controller.kube import Kube

    api: Api = webhook["api"]

    async def main() -> None:
        kube = Kube(kubernetes.config.new_client_from_config(str(kubeconfig)))
        store = Store("networkservices")
        watch = KindWatch(kube, "networkservices", NS, store)
        watch.start()
        try:
            await _until(lambda: watch.synced)
            names = lambda: {o["metadata"]["name"] for o in store}  # noqa: E731
            assert "adm-legacy" in names()
            await watch.stop()
            api.apply(service("adm-gone-away", endpoints=[endpoint(1600, "10.160.0.1/30")]))
            watch.rv = 1  # long compacted out of the API server's watch cache
            watch.start()
            await _until(lambda: watch.gone == 1 and watch.synced and "adm-gone-away" in names())
            assert watch.lists == 2
            api.apply(service("adm-after-gone", endpoints=[endpoint(1601, "10.160.0.5/30")]))
            await _until(lambda: "adm-after-gone" in names())
            assert watch.lists == 2, "followed by the watch, not by another list"
            held = store.services.overlapping("adm-pe1", None, ipaddress.IPv4Network("10.160.0.4/30"))
            assert [str(r.key) for r, _ in held] == [f"{NS}/adm-after-gone"]
        finally:
            await watch.stop()
            kube.close()

    try:
        asyncio.run(main())
    finally:
        _forget(api, "networkservices", "adm-gone-away")
        _forget(api, "networkservices", "adm-after-gone")


async def _until(probe: Any, timeout: float = 20.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.cluster
def test_a_burst_of_subscriptions_is_admitted_entirely_and_conflicts_are_still_refused(
    webhook: dict[str, Any], kubeconfig: Path
) -> None:
    """100 Subscriptions created at once, 32 at a time (each read against offerings, orders, services,
    devices and accounts), are all admitted with no 503 (a burst of 300 once had 287 refused with it);
    those on adm-legacy's VLAN or subnet are refused naming the field, within the burst."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
    config.connection_pool_maxsize = 32
    custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(config))
    good = [subscription(f"adm-sburst-{i}", endpoints=[endpoint(3000 + i, f"10.210.{i}.1/30")]) for i in range(100)]
    held = {
        "adm-sburst-vlan": (
            subscription("adm-sburst-vlan", endpoints=[endpoint(100, "10.211.0.1/30")]),
            "spec.endpoints[0]",
        ),
        "adm-sburst-subnet": (
            subscription("adm-sburst-subnet", endpoints=[endpoint(3200, "10.93.10.2/29")]),
            "spec.endpoints[0].ipv4Address",
        ),
    }

    def create(body: dict[str, Any]) -> tuple[str, int, str]:
        try:
            custom.create_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, "subscriptions", body)
        except kubernetes.client.ApiException as exc:
            return body["metadata"]["name"], int(exc.status), str(exc.body)
        return body["metadata"]["name"], 201, ""

    bodies = good[:50] + [b for b, _ in held.values()] + good[50:]
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(create, bodies))
        outcome = {name: (code, text) for name, code, text in results}
        not_admitted = {n: outcome[n] for n in (b["metadata"]["name"] for b in good) if outcome[n][0] != 201}
        assert not not_admitted, f"{len(not_admitted)} of 100 refused, e.g. {next(iter(not_admitted.items()))}"
        for name, (_, field) in held.items():
            code, text = outcome[name]
            assert code == 422 and "denied the request" in text and f"{field}: " in text, (name, code, text)
            assert "adm-tests/adm-legacy" in text, text
    finally:
        # The controller makes a NetworkService per admitted order; both wait for adm-pe1 to be cleaned.
        for body in bodies:
            for plural in ("subscriptions", "networkservices"):
                name = body["metadata"]["name"]
                with contextlib.suppress(kubernetes.client.ApiException):
                    custom.delete_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, plural, name)
                with contextlib.suppress(kubernetes.client.ApiException):
                    custom.patch_namespaced_custom_object(
                        "telco.intent.dev", "v1alpha1", NS, plural, name, {"metadata": {"finalizers": None}}
                    )


@pytest.mark.cluster
def test_concurrent_creates_of_one_port_and_vlan_exactly_one_admitted(
    webhook: dict[str, Any], kubeconfig: Path
) -> None:
    """Twenty pairs of creates, each pair on one port and VLAN of its own (two NetworkServices, two
    Subscriptions, or one of each), and six pairs on one subnet and two VLANs, all fifty-two sent at once:
    of each pair exactly one is admitted, the other refused naming spec.endpoints[0] (or its ipv4Address)
    and the one admitted. Before reservations the two of a pair judged in the same round of reads (neither
    stored yet) were both admitted. A server dry run on the first pair's VLAN, just before, reserves
    nothing."""
    import threading

    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
    config.connection_pool_maxsize = 52
    custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(config))
    kubectl: Kubectl = webhook["kubectl"]
    dry = service("adm-race-dry", endpoints=[endpoint(1700, "10.170.0.1/30")])
    assert kubectl.apply(dry, check=False, dry_run=True).returncode == 0
    kinds = [("networkservices", "networkservices"), ("subscriptions", "subscriptions")]
    kinds.append(("networkservices", "subscriptions"))
    bodies: list[tuple[int, str, dict[str, Any]]] = []
    for pair in range(26):
        for side, plural in enumerate(kinds[pair % 3]):
            make = subscription if plural == "subscriptions" else service
            name = f"adm-race-{pair}-{side}"
            if pair < 20:  # one port and VLAN, subnets apart
                held = endpoint(1700 + pair, f"10.170.{pair + 1}.{1 + 4 * side}/30")
            else:  # VLANs apart, one subnet
                held = endpoint(1700 + pair + 100 * side, f"10.171.{pair}.{1 + side}/30")
            bodies.append((pair, plural, make(name, endpoints=[held])))
    start = threading.Barrier(len(bodies))

    def create(plural: str, body: dict[str, Any]) -> tuple[int, str]:
        start.wait()
        try:
            custom.create_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, plural, body)
        except kubernetes.client.ApiException as exc:
            return int(exc.status), str(exc.body)
        return 201, ""

    try:
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            results = list(pool.map(lambda b: create(b[1], b[2]), bodies))
        outcome: dict[int, list[tuple[str, int, str]]] = {}
        for (pair, _, body), (code, text) in zip(bodies, results, strict=True):
            outcome.setdefault(pair, []).append((body["metadata"]["name"], code, text))
        both = [pair for pair, sides in outcome.items() if all(code == 201 for _, code, _ in sides)]
        assert not both, f"{len(both)} of 26 pairs had both creates admitted, pairs {both}"
        for pair, sides in outcome.items():
            admitted = [name for name, code, _ in sides if code == 201]
            assert len(admitted) == 1, sides
            field = "spec.endpoints[0]: " if pair < 20 else "spec.endpoints[0].ipv4Address: "
            for name, code, text in sides:
                if name not in admitted:
                    assert code == 422 and field in text, (name, code, text)
                    assert f"adm-tests/{admitted[0]}" in text, (name, text)
    finally:
        # As in the bursts above: the controller makes a NetworkService per admitted order (maybe after the
        # order's deletion started), and both wait for adm-pe1's cleanup, so the test clears the finalizers.
        for _ in range(2):
            for _, plural, body in bodies:
                name = body["metadata"]["name"]
                for kind in dict.fromkeys((plural, "networkservices")):
                    with contextlib.suppress(kubernetes.client.ApiException):
                        custom.delete_namespaced_custom_object("telco.intent.dev", "v1alpha1", NS, kind, name)
                    with contextlib.suppress(kubernetes.client.ApiException):
                        custom.patch_namespaced_custom_object(
                            "telco.intent.dev", "v1alpha1", NS, kind, name, {"metadata": {"finalizers": None}}
                        )

"""The declarative API against a real kube-apiserver: install, examples, validation, UX."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api import KINDS
from tests.kube import Kubectl

ROOT = Path(__file__).resolve().parents[2]
NS = "api-tests"


def manifests() -> list[Path]:
    """Every file under examples/ that holds Kubernetes objects (fleet files are devicesim's)."""
    found = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if docs and all("apiVersion" in d and "kind" in d for d in docs):
            found.append(path)
    return found


def test_crds_are_established(crds: Kubectl) -> None:
    for model in KINDS:
        crd = crds.get("crd", f"{model.PLURAL}.telco.intent.dev")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (model.KIND, conditions)
        assert conditions.get("NamesAccepted") == "True", (model.KIND, conditions)


def test_examples_exist() -> None:
    assert len(manifests()) >= 5


@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_applies_server_side(crds: Kubectl, path: Path) -> None:
    crds.apply_file(ROOT / "examples" / "quickstart" / "00-namespaces.yaml")
    result = crds.apply_file(path)
    assert "serverside-applied" in result.stdout


# -- invalid objects ------------------------------------------------------------------------

OFFERING: dict[str, Any] = {
    "apiVersion": "telco.intent.dev/v1alpha1",
    "kind": "ProductOffering",
    "metadata": {"name": "invalid-probe"},
    "spec": {
        "name": "Probe",
        "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
        "productOfferingPrice": [
            {
                "name": "Monthly",
                "priceType": "recurring",
                "recurringChargePeriodType": "month",
                "price": {"unit": "EUR", "value": "10.00"},
            }
        ],
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "telco.intent.dev/v1alpha1",
    "kind": "NetworkService",
    "metadata": {"name": "invalid-probe", "namespace": NS},
    "spec": {
        "serviceType": "internetAccess",
        "bandwidthMbps": 10,
        "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "10.0.0.1/30"}],
    },
}
SUBSCRIPTION: dict[str, Any] = {
    "apiVersion": "telco.intent.dev/v1alpha1",
    "kind": "Subscription",
    "metadata": {"name": "invalid-probe", "namespace": NS},
    "spec": {
        "productOffering": {"name": "business-internet-100"},
        "billingAccount": {"id": "acct-1"},
        "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "10.0.0.1/30"}],
    },
}
DEVICE: dict[str, Any] = {
    "apiVersion": "telco.intent.dev/v1alpha1",
    "kind": "NetworkDevice",
    "metadata": {"name": "invalid-probe"},
    "spec": {"address": "127.0.0.1", "credentialsSecretRef": {"name": "creds", "namespace": "telco-system"}},
}
INVOICE: dict[str, Any] = {
    "apiVersion": "telco.intent.dev/v1alpha1",
    "kind": "Invoice",
    "metadata": {"name": "invalid-probe", "namespace": NS},
    "spec": {
        "billingAccount": "acct-1",
        "billingPeriod": {"startDateTime": "2026-11-01T00:00:00Z", "endDateTime": "2026-12-01T00:00:00Z"},
    },
}


def variant(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with the dotted `path` (list indexes as numbers) set, or removed if value is DELETE."""
    obj = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


DELETE = object()

# (case id, object, substrings the API server's message must contain: the field and the expectation)
INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "money-float",
        variant(OFFERING, "spec.productOfferingPrice.0.price.value", 9.99),
        ["spec.productOfferingPrice[0].price.value", "string"],
    ),
    (
        "money-negative",
        variant(OFFERING, "spec.productOfferingPrice.0.price.value", "-5.00"),
        ["spec.productOfferingPrice[0].price.value", "should match"],
    ),
    (
        "money-exponent",
        variant(OFFERING, "spec.productOfferingPrice.0.price.value", "1e3"),
        ["spec.productOfferingPrice[0].price.value"],
    ),
    (
        "currency-lowercase",
        variant(OFFERING, "spec.productOfferingPrice.0.price.unit", "eur"),
        ["spec.productOfferingPrice[0].price.unit"],
    ),
    (
        "lifecycle-unknown",
        variant(OFFERING, "spec.lifecycleStatus", "Launching"),
        ["spec.lifecycleStatus", "Unsupported value"],
    ),
    (
        "price-type-unknown",
        variant(OFFERING, "spec.productOfferingPrice.0.priceType", "monthly"),
        ["spec.productOfferingPrice[0].priceType", "Unsupported value"],
    ),
    (
        "recurring-without-period",
        variant(OFFERING, "spec.productOfferingPrice.0.recurringChargePeriodType", DELETE),
        ["spec.productOfferingPrice[0].recurringChargePeriodType", "needs recurringChargePeriodType"],
    ),
    (
        "no-recurring-price",
        variant(
            OFFERING,
            "spec.productOfferingPrice",
            [{"name": "Setup", "priceType": "oneTime", "price": {"unit": "EUR", "value": "1"}}],
        ),
        ["spec.productOfferingPrice", "at least one recurring price"],
    ),
    (
        "mixed-currencies",
        variant(
            OFFERING,
            "spec.productOfferingPrice",
            [
                OFFERING["spec"]["productOfferingPrice"][0],
                {"name": "Setup", "priceType": "oneTime", "price": {"unit": "USD", "value": "1"}},
            ],
        ),
        ["spec.productOfferingPrice", "one currency"],
    ),
    (
        "usage-without-unit",
        variant(
            OFFERING,
            "spec.productOfferingPrice",
            [
                OFFERING["spec"]["productOfferingPrice"][0],
                {"name": "Traffic", "priceType": "usage", "price": {"unit": "EUR", "value": "0.01"}},
            ],
        ),
        ["spec.productOfferingPrice[1].unitOfMeasure", "needs unitOfMeasure"],
    ),
    (
        "sla-target-over-100",
        variant(OFFERING, "spec.serviceLevelAgreement", {"availabilityTarget": "100.5", "creditPercent": "10"}),
        ["spec.serviceLevelAgreement.availabilityTarget"],
    ),
    (
        "validfor-reversed",
        variant(
            OFFERING,
            "spec.validFor",
            {"startDateTime": "2027-01-01T00:00:00Z", "endDateTime": "2026-01-01T00:00:00Z"},
        ),
        ["spec.validFor.endDateTime", "after startDateTime"],
    ),
    (
        "bandwidth-zero",
        variant(OFFERING, "spec.serviceCandidate.bandwidthMbps", 0),
        ["spec.serviceCandidate.bandwidthMbps", "greater than or equal to 1"],
    ),
    (
        "vlan-zero",
        variant(SERVICE, "spec.endpoints.0.vlanId", 0),
        ["spec.endpoints[0].vlanId", "greater than or equal to 1"],
    ),
    (
        "vlan-4095",
        variant(SERVICE, "spec.endpoints.0.vlanId", 4095),
        ["spec.endpoints[0].vlanId", "less than or equal to 4094"],
    ),
    (
        "vlan-string",
        variant(SERVICE, "spec.endpoints.0.vlanId", "100"),
        ["spec.endpoints[0].vlanId", "expected numeric"],
    ),
    (
        "port-breaks-gnmi-path",
        variant(SERVICE, "spec.endpoints.0.port", "Ethernet1]/x[name=*"),
        ["spec.endpoints[0].port", "should match"],
    ),
    (
        "ipv4-not-cidr",
        variant(SERVICE, "spec.endpoints.0.ipv4Address", "10.0.0.300/30"),
        ["spec.endpoints[0].ipv4Address", "should match"],
    ),
    (
        "service-type-unknown",
        variant(SERVICE, "spec.serviceType", "mpls"),
        ["spec.serviceType", "Unsupported value"],
    ),
    ("l3vpn-without-vrf", variant(SERVICE, "spec.serviceType", "l3vpn"), ["spec.vrf", "needs vrf"]),
    (
        "duplicate-endpoint",
        variant(SERVICE, "spec.endpoints", [SERVICE["spec"]["endpoints"][0]] * 2),
        ["spec.endpoints", "same device, port and vlanId"],
    ),
    (
        "peak-below-committed",
        variant(SERVICE, "spec.peakBandwidthMbps", 5),
        ["spec.peakBandwidthMbps", "at least bandwidthMbps"],
    ),
    (
        "unknown-field",
        variant(SERVICE, "spec.colour", "blue"),
        ["spec.colour", "field not declared in schema"],
    ),
    (
        "subscription-missing-offering",
        variant(SUBSCRIPTION, "spec.productOffering", DELETE),
        ["spec.productOffering", "Required value"],
    ),
    (
        "subscription-no-endpoints",
        variant(SUBSCRIPTION, "spec.endpoints", []),
        ["spec.endpoints", "at least 1"],
    ),
    (
        "subscription-desired-state-unknown",
        variant(SUBSCRIPTION, "spec.desiredState", "paused"),
        ["spec.desiredState", "Unsupported value"],
    ),
    (
        "subscription-termination-before-start",
        variant(
            variant(SUBSCRIPTION, "spec.requestedStartDate", "2027-01-01T00:00:00Z"),
            "spec.requestedTerminationDate",
            "2026-06-01T00:00:00Z",
        ),
        ["spec.requestedTerminationDate", "after requestedStartDate"],
    ),
    (
        "device-port-out-of-range",
        variant(DEVICE, "spec.port", 70000),
        ["spec.port", "less than or equal to 65535"],
    ),
    (
        "device-missing-credentials",
        variant(DEVICE, "spec.credentialsSecretRef", DELETE),
        ["spec.credentialsSecretRef", "Required value"],
    ),
    (
        "device-insecure-with-ca",
        variant(DEVICE, "spec.tls", {"insecure": True, "caSecretRef": {"name": "ca", "namespace": "x"}}),
        ["spec.tls.caSecretRef", "insecure"],
    ),
    (
        "invoice-open-period",
        variant(INVOICE, "spec.billingPeriod.endDateTime", DELETE),
        ["spec.billingPeriod.endDateTime", "Required value"],
    ),
    (
        "invoice-run-type-unknown",
        variant(INVOICE, "spec.runType", "adhoc"),
        ["spec.runType", "Unsupported value"],
    ),
    ("huge-name", variant(OFFERING, "spec.name", "x" * 5000), ["spec.name", "Too long"]),
]


def test_the_invalid_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 20


@pytest.fixture(scope="module")
def namespace(crds: Kubectl) -> Kubectl:
    crds.run("create", "namespace", NS, check=False)
    return crds


@pytest.mark.parametrize(("case", "obj", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_object_is_rejected_naming_the_field(
    namespace: Kubectl, case: str, obj: dict[str, Any], expected: list[str]
) -> None:
    result = namespace.apply(obj, check=False, dry_run=True)
    assert result.returncode != 0, f"{case}: the API server accepted an invalid object"
    for text in expected:
        assert text in result.stderr, f"{case}: {text!r} not in the API server's message:\n{result.stderr}"


def test_the_valid_probes_are_accepted(namespace: Kubectl) -> None:
    """The corpus bases are valid, so each rejection above is caused by its one change."""
    for base in (OFFERING, SERVICE, SUBSCRIPTION, DEVICE, INVOICE):
        namespace.apply(base, dry_run=True)


IMMUTABLE: list[tuple[str, dict[str, Any], str, Any, list[str]]] = [
    (
        "subscription-account",
        SUBSCRIPTION,
        "spec.billingAccount",
        {"id": "acct-2"},
        ["spec.billingAccount", "immutable"],
    ),
    (
        "invoice-period",
        INVOICE,
        "spec.billingPeriod",
        {"startDateTime": "2026-10-01T00:00:00Z", "endDateTime": "2026-11-01T00:00:00Z"},
        ["spec.billingPeriod", "immutable"],
    ),
    ("invoice-account", INVOICE, "spec.billingAccount", "acct-9", ["spec.billingAccount", "immutable"]),
    (
        "service-vrf",
        variant(variant(SERVICE, "spec.serviceType", "l3vpn"), "spec.vrf", "blue"),
        "spec.vrf",
        "red",
        ["spec.vrf", "immutable"],
    ),
]


def test_a_subscriptions_offering_and_rate_can_change(namespace: Kubectl) -> None:
    """An upgrade or downgrade is a change of the live order (TMF622 modify), not a new Subscription."""
    obj = variant(SUBSCRIPTION, "metadata.name", "modify-offering")
    namespace.apply(obj)
    try:
        changed = variant(variant(obj, "spec.productOffering", {"name": "other"}), "spec.bandwidthMbps", 200)
        assert "serverside-applied" in namespace.apply(changed).stdout
    finally:
        namespace.run("delete", "subscription", "modify-offering", "-n", NS, "--wait=false", check=False)


@pytest.mark.parametrize(("case", "base", "path", "value", "expected"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE])
def test_immutable_fields_cannot_change(
    namespace: Kubectl, case: str, base: dict[str, Any], path: str, value: Any, expected: list[str]
) -> None:
    obj = variant(base, "metadata.name", f"immutable-{case}")
    namespace.apply(obj)
    try:
        result = namespace.apply(variant(obj, path, value), check=False)
        assert result.returncode != 0, f"{case}: an immutable field changed"
        for text in expected:
            assert text in result.stderr, f"{case}: {text!r} not in:\n{result.stderr}"
    finally:
        kind = obj["kind"].lower()
        namespace.run("delete", kind, obj["metadata"]["name"], "-n", NS, "--wait=false", check=False)


def test_terminated_subscription_cannot_be_reactivated(namespace: Kubectl) -> None:
    obj = variant(variant(SUBSCRIPTION, "metadata.name", "terminated-probe"), "spec.desiredState", "terminated")
    namespace.apply(obj)
    result = namespace.apply(variant(obj, "spec.desiredState", "active"), check=False)
    assert result.returncode != 0
    assert "spec.desiredState" in result.stderr and "cannot be reactivated" in result.stderr


def test_get_telco_lists_every_kind_with_its_columns(crds: Kubectl) -> None:
    for path in manifests():
        crds.apply_file(path)
    out = crds.run("get", "telco", "-A").stdout
    for kind in ("billingaccount", "invoice", "networkdevice", "networkservice", "productoffering", "subscription"):
        assert f"{kind}.telco.intent.dev/" in out, f"{kind} missing from `kubectl get telco`:\n{out}"
    header_lines = [line for line in out.splitlines() if line.startswith("NAMESPACE")]
    headers = " ".join(header_lines)
    for column in (
        "READY",
        "LIFECYCLE",
        "SELLABLE",
        "REACHABLE",
        "OFFERING",
        "ACCOUNT",
        "OPERATING",
        "TOTAL",
    ):
        assert column in headers, f"column {column} missing:\n{out}"


def test_explain_teaches_the_api(crds: Kubectl) -> None:
    out = crds.run("explain", "subscription.spec.billingAccountRef").stdout
    assert "The BillingAccount in this namespace that pays" in out
    out = crds.run("explain", "subscription.spec.billingAccount").stdout
    assert "Deprecated" in out
    assert re.search(r"timeZone\s+<string>", out)
    out = crds.run("explain", "billingaccount.spec.taxRates").stdout
    assert "Taxes of the account's jurisdiction" in out
    out = crds.run("explain", "productoffering.spec.productOfferingPrice.priceType").stdout
    assert "recurring (per period)" in out


def test_status_is_a_subresource(namespace: Kubectl) -> None:
    """Users cannot write status through the main resource: it is the controller's."""
    obj = variant(SERVICE, "metadata.name", "status-probe")
    obj["status"] = {"state": "active"}
    namespace.apply(obj)
    stored = namespace.get("networkservice", "status-probe", NS)
    assert "status" not in stored or stored["status"].get("state") != "active", json.dumps(stored)


def test_an_unprocessed_object_reads_as_not_yet_observed(namespace: Kubectl) -> None:
    """No controller runs here: every kind reads as status.observedGeneration 0 (the CRDs' default),
    below metadata.generation, which kstatus (Flux, kpt) reads as InProgress rather than Current."""
    obj = variant(SERVICE, "metadata.name", "unprocessed-probe")
    namespace.apply(obj)
    stored = namespace.get("networkservice", "unprocessed-probe", NS)
    assert stored["status"] == {"observedGeneration": 0} and stored["metadata"]["generation"] == 1
    for kind in ("productoffering", "networkdevice", "subscription", "invoice"):
        items = json.loads(namespace.run("get", kind, "-A", "-o", "json").stdout)["items"]
        assert items, f"the examples hold a {kind}"
        assert all("observedGeneration" in (i.get("status") or {}) for i in items), kind

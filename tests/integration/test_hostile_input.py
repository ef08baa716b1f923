"""Hostile input: malformed and adversarial objects against the real API server and the running
controller (devicesim behind it).

Every object of the corpus is either rejected at admission with a message naming the field, or
accepted and then surfaced by the controller as a clear condition. Meanwhile the controller never
crashes (process alive, no traceback in its log), never hot-loops (Set RPCs and API writes bounded
over a window) and never sends a device a malformed path (devicesim's set_failed stays 0, and its
configuration holds exactly the intended entries). Cases that currently expose controller bugs are
in tests/reliability/test_hostile_bugs.py (the full `make reliability` set), not here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.harness import GROUP, VERSION
from tests.integration.test_api import DELETE, DEVICE, SERVICE, variant
from tests.reliability.rig import SYSTEM, Rig, condition, ep, rig, wait_for

NS = "hx-tests"
DEVICES = ("hx-r1", "hx-r2")
# Vendor-style names, all valid by the CRD: '/' and ':' are legal in gNMI key values, the rest are not.
ODD_PORTS = ("ge-0/0/1", "xe-1/2/3:4", "Eth1.5", "a//b")
PORTS = tuple(f"Ethernet{i}" for i in range(1, 9)) + ODD_PORTS
RESYNC = 5.0

CYRILLIC_E = "\u0435"  # looks like Latin 'e'
FULLWIDTH_1 = "\uff11"  # FULLWIDTH DIGIT ONE

# -- admission: rejected by the API server, naming the field ------------------------------------------

SVC = variant(SERVICE, "metadata.namespace", NS)


def svc(path: str, value: Any) -> dict[str, Any]:
    return variant(SVC, path, value)


def dev(path: str, value: Any) -> dict[str, Any]:
    return variant(DEVICE, path, value)


def endpoint(**fields: Any) -> dict[str, Any]:
    return {"device": "hx-r1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "10.0.0.1/30", **fields}


REJECTED: list[tuple[str, dict[str, Any], list[str]]] = [
    # names and references with look-alike and path-breaking characters
    ("name-cyrillic-e", svc("metadata.name", f"hx-s{CYRILLIC_E}rvice"), ["metadata.name", "RFC 1123"]),
    ("name-uppercase", svc("metadata.name", "HX-Service"), ["metadata.name", "RFC 1123"]),
    ("name-slash", svc("metadata.name", "hx/service"), ["metadata.name"]),
    ("name-bracket", svc("metadata.name", "hx]service"), ["metadata.name", "RFC 1123"]),
    ("device-ref-cyrillic", svc("spec.endpoints.0.device", f"hx-r1{CYRILLIC_E}"), ["spec.endpoints[0].device"]),
    ("device-ref-uppercase", svc("spec.endpoints.0.device", "HX-R1"), ["spec.endpoints[0].device"]),
    ("device-ref-slash", svc("spec.endpoints.0.device", "hx/r1"), ["spec.endpoints[0].device"]),
    ("device-ref-bracket", svc("spec.endpoints.0.device", "hx-r1]"), ["spec.endpoints[0].device"]),
    ("device-ref-wildcard", svc("spec.endpoints.0.device", "*"), ["spec.endpoints[0].device"]),
    ("device-ref-254", svc("spec.endpoints.0.device", "d" * 254), ["spec.endpoints[0].device", "Too long"]),
    ("port-close-bracket", svc("spec.endpoints.0.port", "Ethernet1]"), ["spec.endpoints[0].port"]),
    ("port-open-bracket", svc("spec.endpoints.0.port", "Ethernet1[name=x"), ["spec.endpoints[0].port"]),
    ("port-equals", svc("spec.endpoints.0.port", "Ethernet=1"), ["spec.endpoints[0].port"]),
    ("port-wildcard", svc("spec.endpoints.0.port", "*"), ["spec.endpoints[0].port"]),
    ("port-leading-slash", svc("spec.endpoints.0.port", "/Ethernet1"), ["spec.endpoints[0].port"]),
    ("port-ellipsis-wildcard", svc("spec.endpoints.0.port", "..."), ["spec.endpoints[0].port"]),
    ("port-cyrillic-e", svc("spec.endpoints.0.port", f"{CYRILLIC_E}th1"), ["spec.endpoints[0].port"]),
    ("port-fullwidth-digit", svc("spec.endpoints.0.port", f"Ethernet{FULLWIDTH_1}"), ["spec.endpoints[0].port"]),
    ("port-space", svc("spec.endpoints.0.port", "Ethernet 1"), ["spec.endpoints[0].port"]),
    ("port-newline", svc("spec.endpoints.0.port", "Ethernet1\n"), ["spec.endpoints[0].port"]),
    ("port-nul", svc("spec.endpoints.0.port", "Ethernet1\u0000"), ["spec.endpoints[0].port"]),
    ("port-zero-width-space", svc("spec.endpoints.0.port", "Ether\u200bnet1"), ["spec.endpoints[0].port"]),
    ("port-rtl-override", svc("spec.endpoints.0.port", "\u202eEthernet1"), ["spec.endpoints[0].port"]),
    ("port-quote", svc("spec.endpoints.0.port", 'Ethernet1"'), ["spec.endpoints[0].port"]),
    ("port-backslash", svc("spec.endpoints.0.port", "Ethernet1\\"), ["spec.endpoints[0].port"]),
    ("port-empty", svc("spec.endpoints.0.port", ""), ["spec.endpoints[0].port"]),
    ("port-65-chars", svc("spec.endpoints.0.port", "E" * 65), ["spec.endpoints[0].port", "Too long"]),
    ("port-100k-chars", svc("spec.endpoints.0.port", "E" * 100_000), ["spec.endpoints[0].port", "Too long"]),
    ("port-not-a-string", svc("spec.endpoints.0.port", ["Ethernet1"]), ["spec.endpoints[0].port", "string"]),
    # VLAN ids: look-alikes, types, bounds
    ("vlan-fullwidth-digits", svc("spec.endpoints.0.vlanId", "\uff11\uff10\uff10"), ["spec.endpoints[0].vlanId"]),
    ("vlan-float", svc("spec.endpoints.0.vlanId", 100.5), ["spec.endpoints[0].vlanId", "integer"]),
    ("vlan-negative", svc("spec.endpoints.0.vlanId", -1), ["spec.endpoints[0].vlanId"]),
    ("vlan-huge", svc("spec.endpoints.0.vlanId", 2**63 - 1), ["spec.endpoints[0].vlanId", "4094"]),
    ("vlan-bool", svc("spec.endpoints.0.vlanId", True), ["spec.endpoints[0].vlanId"]),
    ("vlan-null", svc("spec.endpoints.0.vlanId", None), ["spec.endpoints[0].vlanId"]),
    # addresses
    ("ipv4-prefix-33", svc("spec.endpoints.0.ipv4Address", "10.0.0.1/33"), ["spec.endpoints[0].ipv4Address"]),
    ("ipv4-leading-zero", svc("spec.endpoints.0.ipv4Address", "010.0.0.1/30"), ["spec.endpoints[0].ipv4Address"]),
    ("ipv4-fullwidth", svc("spec.endpoints.0.ipv4Address", f"10.0.0.{FULLWIDTH_1}/30"),
     ["spec.endpoints[0].ipv4Address"]),
    ("ipv4-is-ipv6", svc("spec.endpoints.0.ipv4Address", "2001:db8::1/64"), ["spec.endpoints[0].ipv4Address"]),
    ("ipv4-trailing-newline", svc("spec.endpoints.0.ipv4Address", "10.0.0.1/30\n"),
     ["spec.endpoints[0].ipv4Address"]),
    # VRF names end up in gNMI keys
    ("vrf-bracket", svc("spec.vrf", "blue]"), ["spec.vrf"]),
    ("vrf-slash", svc("spec.vrf", "blue/red"), ["spec.vrf"]),
    ("vrf-equals", svc("spec.vrf", "blue=red"), ["spec.vrf"]),
    ("vrf-wildcard", svc("spec.vrf", "*"), ["spec.vrf"]),
    ("vrf-cyrillic", svc("spec.vrf", f"bl{CYRILLIC_E}"), ["spec.vrf"]),
    ("vrf-64-chars", svc("spec.vrf", "v" * 64), ["spec.vrf", "Too long"]),
    # lists and shapes
    ("endpoints-17", svc("spec.endpoints", [endpoint(vlanId=100 + i) for i in range(17)]),
     ["spec.endpoints", "must have at most 16 items"]),
    ("endpoints-5000", svc("spec.endpoints", [endpoint(vlanId=1 + i % 4094) for i in range(5000)]),
     ["spec.endpoints", "must have at most 16 items"]),
    ("endpoints-missing", svc("spec.endpoints", DELETE), ["spec.endpoints", "Required value"]),
    ("endpoints-a-map", svc("spec.endpoints", {"device": "hx-r1"}), ["spec.endpoints"]),
    ("endpoint-extra-field", svc("spec.endpoints", [endpoint(vlan=7)]), ["spec.endpoints[0].vlan"]),
    ("duplicate-endpoint-in-service", svc("spec.endpoints", [endpoint(), endpoint(ipv4Address="10.0.0.5/30")]),
     ["spec.endpoints", "same device, port and vlanId"]),
    ("internet-without-address", svc("spec.endpoints", [variant(endpoint(), "ipv4Address", DELETE)]),
     ["spec.endpoints", "need ipv4Address"]),
    ("spec-a-string", svc("spec", "evil"), ["spec"]),
    ("bandwidth-negative", svc("spec.bandwidthMbps", -100), ["spec.bandwidthMbps"]),
    ("bandwidth-over-400g", svc("spec.bandwidthMbps", 400_001), ["spec.bandwidthMbps"]),
    ("bandwidth-string", svc("spec.bandwidthMbps", "100"), ["spec.bandwidthMbps", "integer"]),
    ("admin-state-case", svc("spec.adminState", "Enabled"), ["spec.adminState", "Unsupported value"]),
    ("drift-policy-unknown", svc("spec.driftPolicy", "ignore"), ["spec.driftPolicy", "Unsupported value"]),
    ("dry-run-string", svc("spec.dryRun", "yes"), ["spec.dryRun", "boolean"]),
    ("service-type-cyrillic", svc("spec.serviceType", f"l2vpn{CYRILLIC_E}"), ["spec.serviceType"]),
    ("annotations-300k", svc("metadata.annotations", {"hx/blob": "x" * 300_000}), ["metadata.annotations", "Too long"]),
    # NetworkDevice: where to connect and which Secret
    ("device-address-bracket", dev("spec.address", "127.0.0.1]"), ["spec.address"]),
    ("device-address-url", dev("spec.address", "https://127.0.0.1"), ["spec.address"]),
    ("device-address-space", dev("spec.address", "127.0.0.1 evil"), ["spec.address"]),
    ("device-address-cyrillic", dev("spec.address", f"d{CYRILLIC_E}vice.example"), ["spec.address"]),
    ("device-timeout-zero", dev("spec.timeoutSeconds", 0), ["spec.timeoutSeconds"]),
    ("device-timeout-121", dev("spec.timeoutSeconds", 121), ["spec.timeoutSeconds"]),
    ("device-port-zero", dev("spec.port", 0), ["spec.port"]),
    ("device-secret-path-traversal", dev("spec.credentialsSecretRef.name", "../etc/passwd"),
     ["spec.credentialsSecretRef.name"]),
    ("device-secret-namespace-missing", dev("spec.credentialsSecretRef.namespace", DELETE),
     ["spec.credentialsSecretRef.namespace", "Required value"]),
    ("device-secret-namespace-uppercase", dev("spec.credentialsSecretRef.namespace", "Telco-System"),
     ["spec.credentialsSecretRef.namespace"]),
    ("device-server-name-254", dev("spec.tls", {"serverName": "s" * 254}), ["spec.tls.serverName", "Too long"]),
    ("device-platform-65", dev("spec.platform", "p" * 65), ["spec.platform", "Too long"]),
    ("device-name-cyrillic", dev("metadata.name", f"hx-r{CYRILLIC_E}"), ["metadata.name"]),
]


def test_the_hostile_corpus_is_large_enough() -> None:
    assert len(REJECTED) + len(SURFACED) >= 50
    assert len({c[0] for c in REJECTED}) == len(REJECTED)


@pytest.fixture(scope="module")
def admission(crds: Any, kubeconfig: Path) -> Any:
    from tests.harness import Api

    api = Api(kubeconfig)
    api.ensure_namespace(NS)
    return api


def dry_run_create(api: Any, obj: dict[str, Any]) -> ApiException | None:
    """Create with dryRun=All and strict field validation (what `kubectl apply` does by default)."""
    plural = obj["kind"].lower() + "s"
    ns = obj["metadata"].get("namespace")
    try:
        if ns is None:
            api.custom.create_cluster_custom_object(
                GROUP, VERSION, plural, obj, dry_run="All", field_validation="Strict"
            )
        else:
            api.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, plural, obj, dry_run="All", field_validation="Strict"
            )
    except ApiException as exc:
        return exc
    return None


@pytest.mark.parametrize(("case", "obj", "expected"), REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected_at_admission_naming_the_field(admission: Any, case: str, obj: dict[str, Any], expected: list[str]):  # type: ignore[no-untyped-def]
    exc = dry_run_create(admission, obj)
    assert exc is not None, f"{case}: the API server accepted a hostile object"
    assert exc.status in (400, 413, 422), f"{case}: HTTP {exc.status} {exc.reason}"
    message = json.loads(exc.body).get("message", exc.body) if exc.body else str(exc)
    for text in expected:
        assert text in message, f"{case}: {text!r} not in the API server's message:\n{message[:2000]}"


def test_the_bases_are_valid(admission: Any) -> None:
    """Each rejection above is caused by its one change."""
    assert dry_run_create(admission, SVC) is None
    assert dry_run_create(admission, DEVICE) is None


# -- accepted, then surfaced by the running controller ---------------------------------------------------


def secret(api: Any, name: str, data: dict[str, bytes]) -> None:
    body = {"metadata": {"name": name, "namespace": SYSTEM},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    with contextlib.suppress(ApiException):
        api.core.delete_namespaced_secret(name, SYSTEM)
    api.core.create_namespaced_secret(SYSTEM, body)


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("hostile"), "hx", DEVICES,
             fleet_args=("--ports", ",".join(PORTS)), password="hx-Pa55-not-in-any-log") as the_rig:
        yield the_rig


def device_variant(r: Rig, name: str, **spec: Any) -> dict[str, Any]:
    """A NetworkDevice aimed at hx-r1 (its certificate names hx-r1), with spec fields changed."""
    body = r.device("hx-r1")
    body["metadata"]["name"] = name
    for key, value in spec.items():
        if key == "tls":
            body["spec"]["tls"] = {**body["spec"]["tls"], **value}
        else:
            body["spec"][key] = value
    return body


# Objects the API server admits; what the controller must say about them.
# (case, "device" | "service", name, builder(r) -> body, condition, status, reasons, message fragments)
SURFACED: list[tuple[str, str, str, Any, str, str, set[str], list[str]]] = [
    ("device-secret-missing", "device", "hx-d-nosecret",
     lambda r: device_variant(r, "hx-d-nosecret", credentialsSecretRef={"name": "hx-absent", "namespace": SYSTEM}),
     "Ready", "False", {"InvalidConfiguration"}, ["Secret", "hx-absent", "Not Found"]),
    ("device-ca-secret-missing", "device", "hx-d-noca",
     lambda r: device_variant(r, "hx-d-noca", tls={"caSecretRef": {"name": "hx-absent-ca", "namespace": SYSTEM}}),
     "Ready", "False", {"InvalidConfiguration"}, ["hx-absent-ca"]),
    ("device-secret-without-password", "device", "hx-d-nopass",
     lambda r: device_variant(r, "hx-d-nopass", credentialsSecretRef={"name": "hx-nopass", "namespace": SYSTEM}),
     "Ready", "False", {"InvalidConfiguration"}, ["hx-nopass", "password"]),
    ("device-ca-secret-without-ca-crt", "device", "hx-d-nocacrt",
     lambda r: device_variant(r, "hx-d-nocacrt", tls={"caSecretRef": {"name": "hx-nocacrt", "namespace": SYSTEM}}),
     "Ready", "False", {"InvalidConfiguration"}, ["hx-nocacrt", "ca.crt"]),
    ("device-wrong-password", "device", "hx-d-wrongpw",
     lambda r: device_variant(r, "hx-d-wrongpw", credentialsSecretRef={"name": "hx-wrongpw", "namespace": SYSTEM}),
     "Reachable", "False", {"Unauthenticated"}, ["authentication failed"]),
    ("device-empty-credentials", "device", "hx-d-emptycreds",
     lambda r: device_variant(r, "hx-d-emptycreds", credentialsSecretRef={"name": "hx-empty", "namespace": SYSTEM}),
     "Reachable", "False", {"Unauthenticated"}, ["authentication"]),
    ("device-untrusted-ca", "device", "hx-d-otherca",
     lambda r: device_variant(r, "hx-d-otherca", tls={"caSecretRef": {"name": "hx-otherca", "namespace": SYSTEM}}),
     "Reachable", "False", {"Unreachable"}, ["failed to connect"]),
    ("device-tls-by-default-system-trust", "device", "hx-d-systrust",
     lambda r: {**device_variant(r, "hx-d-systrust"), "spec": {**device_variant(r, "hx-d-systrust")["spec"],
                                                              "tls": {"serverName": "hx-r1"}}},
     "Reachable", "False", {"Unreachable"}, ["failed to connect"]),
    ("device-server-name-mismatch", "device", "hx-d-sni",
     lambda r: device_variant(r, "hx-d-sni", tls={"serverName": "someone-else"}),
     "Reachable", "False", {"Unreachable"}, ["Hostname Verification"]),
    ("device-server-name-path-chars", "device", "hx-d-sni-chars",
     lambda r: device_variant(r, "hx-d-sni-chars", tls={"serverName": "hx-r1]/x=*"}),
     "Reachable", "False", {"Unreachable"}, ["Hostname Verification"]),
    ("device-server-name-newline", "device", "hx-d-sni-nl",
     lambda r: device_variant(r, "hx-d-sni-nl", tls={"serverName": "hx-r1\nx"}),
     "Reachable", "False", {"Unreachable"}, ["Hostname Verification"]),
    ("device-unresolvable-host", "device", "hx-d-dns",
     lambda r: device_variant(r, "hx-d-dns", address="hx-ghost.invalid"),
     "Reachable", "False", {"Unreachable"}, ["hx-ghost.invalid"]),
    ("device-closed-port", "device", "hx-d-closed",
     lambda r: device_variant(r, "hx-d-closed", port=1),
     "Reachable", "False", {"Unreachable"}, ["Connection refused"]),
    ("device-plaintext-against-tls", "device", "hx-d-plain",
     lambda r: {**device_variant(r, "hx-d-plain"), "spec": {**device_variant(r, "hx-d-plain")["spec"],
                                                           "tls": {"insecure": True}}},
     "Reachable", "False", {"Unreachable"}, ["failed to connect"]),
    ("device-platform-control-chars", "device", "hx-d-platform",
     lambda r: device_variant(r, "hx-d-platform", platform="\u202eevil\nplatform\u0000"),
     "Ready", "True", {"Connected"}, []),
    ("service-device-missing", "service", "hx-s-ghost",
     lambda r: r.service("hx-s-ghost", [ep("hx-ghost", "Ethernet1", 101)]),
     "Progressing", "True", {"DeviceNotFound"}, ["hx-ghost", "does not exist"]),
    ("service-port-missing", "service", "hx-s-noport",
     lambda r: r.service("hx-s-noport", [ep("hx-r1", "Ethernet99", 102)]),
     "Degraded", "True", {"PortNotFound"}, ["Ethernet99", "hx-r1"]),
    ("service-slash-port-missing", "service", "hx-s-noslash",
     lambda r: r.service("hx-s-noslash", [ep("hx-r1", "ge-9/9/9", 103)]),
     "Degraded", "True", {"PortNotFound"}, ["ge-9/9/9"]),
    ("service-double-slash-port-missing", "service", "hx-s-dslash",
     lambda r: r.service("hx-s-dslash", [ep("hx-r1", "a//c", 104)]),
     "Degraded", "True", {"PortNotFound"}, ["a//c"]),
    ("service-conflict-same-namespace", "service", "hx-s-conflict",
     lambda r: r.service("hx-s-conflict", [ep("hx-r2", "Ethernet1", 110, third=2)]),
     "Degraded", "True", {"ConflictingClaim"}, ["hx-s-holder"]),
    ("service-conflict-partial", "service", "hx-s-partial",
     lambda r: r.service("hx-s-partial", [ep("hx-r2", "Ethernet2", 111), ep("hx-r2", "Ethernet1", 110, third=3)]),
     "Degraded", "True", {"ConflictingClaim"}, ["hx-s-holder"]),
    ("service-vrf-type-clash", "service", "hx-s-vrfclash",
     lambda r: r.service("hx-s-vrfclash", [ep("hx-r2", "Ethernet3", 112)], serviceType="l3vpn", vrf="hx-default"),
     "Degraded", "True", {"PreflightFailed"}, ["hx-default", "DEFAULT_INSTANCE"]),
    ("service-dry-run-conflict", "service", "hx-s-dryclash",
     lambda r: r.service("hx-s-dryclash", [ep("hx-r2", "Ethernet1", 110, third=4)], dryRun=True),
     "Degraded", "True", {"ConflictingClaim"}, ["hx-s-holder"]),
    ("service-on-unusable-device", "service", "hx-s-baddev",
     lambda r: r.service("hx-s-baddev", [ep("hx-d-closed", "Ethernet1", 113)]),
     "Progressing", "True", {"DeviceUnreachable"}, ["hx-d-closed"]),
]

# Accepted and valid, at the edges of what the schema admits: these must simply work.
EDGES: list[tuple[str, Any, list[tuple[str, str, int]]]] = [
    ("service-vlan-1-and-4094", lambda r: r.service("hx-e-bounds", [ep("hx-r1", "Ethernet2", 1),
                                                                   ep("hx-r1", "Ethernet2", 4094)]),
     [("hx-r1", "Ethernet2", 1), ("hx-r1", "Ethernet2", 4094)]),
    ("service-16-endpoints", lambda r: r.service("hx-e-sixteen", [ep("hx-r1", "Ethernet3", 200 + i)
                                                                 for i in range(16)]),
     [("hx-r1", "Ethernet3", 200 + i) for i in range(16)]),
    ("service-253-char-name", lambda r: r.service("e" * 253, [ep("hx-r1", "Ethernet4", 300)]),
     [("hx-r1", "Ethernet4", 300)]),
    ("service-odd-vendor-ports", lambda r: r.service("hx-e-ports", [ep("hx-r1", p, 400 + i)
                                                                   for i, p in enumerate(ODD_PORTS)]),
     [("hx-r1", p, 400 + i) for i, p in enumerate(ODD_PORTS)]),
    ("service-l2vpn-without-address", lambda r: {**r.service("hx-e-l2", [{"device": "hx-r1", "port": "Ethernet5",
                                                                         "vlanId": 500}], serviceType="l2vpn")},
     [("hx-r1", "Ethernet5", 500)]),
]


@pytest.fixture(scope="module")
def surfaced(r: Rig) -> Iterator[Rig]:
    """Apply the whole controller-side corpus at once (the holder of the contested claim first)."""
    from localcluster.pki import CertificateAuthority

    api = r.api
    secret(api, "hx-nopass", {"username": b"admin"})
    secret(api, "hx-nocacrt", {"tls.crt": b"not a CA"})
    secret(api, "hx-wrongpw", {"username": b"admin", "password": b"hx-wrong-Pa55"})
    secret(api, "hx-empty", {"username": b"", "password": b""})
    secret(api, "hx-otherca", {"ca.crt": CertificateAuthority("someone else").cert_pem})
    r.admin.set("hx-r2", "network-instances/network-instance[name=hx-default]/config",
                {"name": "hx-default", "type": "DEFAULT_INSTANCE"})
    r.apply(r.service("hx-s-holder", [ep("hx-r2", "Ethernet1", 110)]))
    r.ready("hx-s-holder")
    # Claims go by creationTimestamp (whole seconds), same-second ties by name: let the holder be
    # older than its contenders (a same-second contender is tests/reliability/test_hostile_bugs.py).
    time.sleep(1.1)
    for _, _, _, build, *_ in SURFACED:
        r.api.apply(build(r))
    for _, build, _ in EDGES:
        r.apply(build(r))
    yield r
    # Services on unreachable devices wait for them before letting go: remove those devices first.
    for _, kind, name, *_ in SURFACED:
        if kind == "device":
            r.api.delete("networkdevices", name)


@pytest.mark.parametrize(
    ("case", "kind", "name", "build", "type_", "status", "reasons", "fragments"),
    SURFACED,
    ids=[c[0] for c in SURFACED],
)
def test_surfaced_by_the_controller_as_a_clear_condition(  # type: ignore[no-untyped-def]
    surfaced: Rig, case, kind, name, build, type_, status, reasons, fragments
) -> None:
    r = surfaced

    def probe() -> dict[str, Any] | None:
        obj = r.api.get("networkdevices", name) if kind == "device" else r.get(name)
        c = condition(obj, type_)
        return c if c and c["status"] == status and c["reason"] in reasons else None

    cond = wait_for(f"{case}: {kind} {name} {type_}={status} {sorted(reasons)}", probe, 30, 0.2)
    for text in fragments:
        assert text in cond["message"], f"{case}: {text!r} not in {cond}"


@pytest.mark.parametrize(("case", "build", "endpoints"), EDGES, ids=[c[0] for c in EDGES])
def test_edge_values_simply_work(surfaced: Rig, case: str, build: Any, endpoints: list[tuple[str, str, int]]) -> None:
    r = surfaced
    body = build(r)
    name = body["metadata"]["name"]
    r.ready(name, timeout=30)
    held = {(s[0], s[1]) for s in r.managed("hx-r1")["subinterfaces"] if s[2] == f"telco-intent {NS}/{name}"}
    assert held == {(p, v) for _, p, v in endpoints}


def test_the_controller_stays_healthy_bounded_and_sends_nothing_malformed(surfaced: Rig) -> None:
    r = surfaced
    # Everything has settled once every case above has its condition; now watch a quiet window.
    time.sleep(2)
    sets = {d: r.stats(d)["set_rpcs"] for d in DEVICES}
    writes = r.kube_writes()
    window = 2 * RESYNC
    time.sleep(window)
    sent = {d: r.stats(d)["set_rpcs"] - sets[d] for d in DEVICES}
    written = r.kube_writes() - writes
    print(f"hostile corpus, quiet window: {sum(sent.values())} Set RPCs, {written:.0f} API writes in {window:.0f}s")
    assert r.controller is not None and r.controller.alive(), "the controller died"
    assert not r.tracebacks(), "tracebacks in the controller log:\n" + "\n".join(r.tracebacks()[:3])
    assert all(n <= 1 for n in sent.values()), f"Set RPCs in a {window}s window with nothing to change: {sent}"
    assert written <= 4, f"{written} API writes in {window}s with nothing to change"
    for device in DEVICES:
        stats = r.stats(device)
        assert stats["set_failed"] == 0, f"{device} refused {stats['set_failed']} Set(s): a malformed request"
    # Exactly the intended entries are on the devices: the holder and the edge cases, nothing else.
    want: dict[str, list[tuple[str, str, int]]] = {"hx-s-holder": [("hx-r2", "Ethernet1", 110)]}
    for _, build, endpoints in EDGES:
        want[build(r)["metadata"]["name"]] = endpoints
    for device in DEVICES:
        assert r.managed(device) == r.expected(device, want), f"{device} holds entries nobody intended"
    # The credentials never leak into the log, Events or status.
    for secret_value in (r.password, "hx-wrong-Pa55"):
        assert secret_value not in r.logs()
        dumped = json.dumps([r.api.get("networkdevices", c[2]) for c in SURFACED if c[1] == "device"])
        assert secret_value not in dumped
        events = r.api.core.list_event_for_all_namespaces().items
        assert not [e for e in events if secret_value in (e.message or "")]

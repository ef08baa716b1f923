"""The Argo CD health scripts in deploy/argocd/health, run by a real Lua 5.1 (lupa's lua51 module).

Argo CD runs health scripts with gopher-lua (Lua 5.1 semantics) and a global `obj` holding the live
object; the script returns {status, message}. Statuses here come from the controller's own status
builders where they exist (network/outcome.py `service_status`, network/devices.py `device_status`)
and are otherwise checked against the API's pydantic status models, so they are real shapes.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

# lupa (a test dependency) bundles several Lua versions; lua51 matches gopher-lua's semantics.
from lupa import lua51 as lua_module

from controller.api import GROUP, KINDS, VERSION
from controller.api.invoice import InvoiceStatus
from controller.api.productoffering import ProductOfferingStatus
from controller.api.subscription import SubscriptionStatus
from controller.gnmi.client import Capabilities, GnmiError
from controller.network.devices import REQUIRED_MODELS, device_status
from controller.network.outcome import EndpointOutcome, Phase, ServiceView, service_status

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
HEALTH = ARGOCD / "health"
T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_lua_runtime_is_5_1() -> None:
    runtime = lua_module.LuaRuntime()
    assert runtime.eval("_VERSION") == "Lua 5.1", "lupa.lua51 is needed: gopher-lua has Lua 5.1 semantics"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run deploy/argocd/health/<kind>.lua on `obj` in a fresh Lua state, without os/io (as Argo CD)."""
    runtime = lua_module.LuaRuntime(unpack_returned_tuples=True)
    g = runtime.globals()
    for unsafe in ("os", "io", "require", "dofile", "loadfile", "load", "loadstring", "package", "debug"):
        g[unsafe] = None
    g.obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(_render_module().script(HEALTH / f"{kind}.lua"))
    assert result is not None, f"{kind}.lua returned nothing"
    status, message = result["status"], result["message"]
    assert status in STATUSES, (kind, status)
    assert isinstance(message, str) and message.strip(), f"{kind}.lua returned {status} without a message"
    return status, message


def resource(kind: str, status: dict[str, Any] | None, generation: int = 3, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "x", "generation": generation, **meta},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, reason: str, message: str = "", generation: int = 3) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-11-01T12:00:00Z",
        "reason": reason,
        "message": message,
    }


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


# -- every kind: Progressing while deleting, before the first status, on a stale generation ------


@pytest.mark.parametrize("kind", [m.KIND for m in KINDS])
def test_every_kind_has_a_script(kind: str) -> None:
    assert (HEALTH / f"{kind}.lua").is_file()


def _healthy_status(kind: str) -> dict[str, Any]:
    ready = [cond("Ready", "True", "Ready", "all good")]
    return {
        "Subscription": {"observedGeneration": 3, "state": "active", "conditions": ready},
        "NetworkService": {"observedGeneration": 3, "state": "active", "conditions": ready},
        "NetworkDevice": {"observedGeneration": 3, "conditions": ready},
        "ProductOffering": {"observedGeneration": 3, "sellable": True, "conditions": ready},
        "Invoice": {"observedGeneration": 3, "state": "sent", "conditions": ready},
        "BillingAccount": {"observedGeneration": 3, "subscriptions": 2, "conditions": ready},
    }[kind]


@pytest.mark.parametrize("kind", [m.KIND for m in KINDS])
def test_common_progressing_rules(kind: str) -> None:
    good = _healthy_status(kind)
    assert health(kind, resource(kind, good))[0] == "Healthy"
    deleting = resource(kind, good, deletionTimestamp="2026-11-01T12:00:00Z", finalizers=[f"{GROUP}/cleanup"])
    assert health(kind, deleting) == (
        "Progressing",
        "being deleted: waiting for the controller to clean up and release its finalizer",
    )
    assert health(kind, resource(kind, None)) == ("Progressing", "waiting for the controller to report a status")
    stale = health(kind, resource(kind, good, generation=4))
    assert stale == ("Progressing", "waiting for the controller to process generation 4")
    no_generation_seen = {k: v for k, v in good.items() if k != "observedGeneration"}
    assert health(kind, resource(kind, no_generation_seen))[0] == "Progressing"
    assert health(kind, resource(kind, {}))[0] == "Progressing"


# -- NetworkService: statuses produced by the controller's service_status ------------------------


def service(
    outcomes: list[EndpointOutcome],
    *,
    admin: bool = True,
    dry_run: bool = False,
    invalid: str | None = None,
    plan: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    view = ServiceView(generation=3, admin_enabled=admin, dry_run=dry_run, invalid=invalid, plan=plan or [])
    obj = resource("NetworkService", service_status(view, outcomes, T0))
    obj["spec"] = {"adminState": "enabled" if admin else "disabled", "dryRun": dry_run}
    return obj


def ep(
    phase: Phase, reason: str, message: str = "", oper_up: bool | None = True, drift: str | None = None
) -> EndpointOutcome:
    return EndpointOutcome("pe1", "Ethernet1", 101, phase, reason, message, oper_up=oper_up, drift=drift)


def test_service_ready_is_healthy() -> None:
    status, message = health("NetworkService", service([ep(Phase.APPLIED, "Applied")]))
    assert (status, message) == ("Healthy", "configured and verified on 1 endpoint(s)")


def test_service_drift_reported_is_healthy_and_says_so() -> None:
    obj = service([ep(Phase.APPLIED, "Applied", drift="mtu is 1400, intent 1500")])
    status, message = health("NetworkService", obj)
    assert status == "Healthy"
    assert "drift reported" in message and "mtu is 1400" in message


def test_service_admin_disabled_is_suspended() -> None:
    obj = service([ep(Phase.DISABLED, "AdminDisabled", oper_up=False)], admin=False)
    assert obj["status"]["state"] == "inactive"
    status, message = health("NetworkService", obj)
    assert status == "Suspended"
    assert message.startswith("administratively disabled: ")


def test_service_permanent_failure_is_degraded() -> None:
    obj = service([ep(Phase.FAILED, "PortNotFound", "Ethernet1 does not exist")])
    assert health("NetworkService", obj) == ("Degraded", "pe1/Ethernet1.101: Ethernet1 does not exist")


def test_service_oper_down_is_degraded() -> None:
    status, message = health("NetworkService", service([ep(Phase.APPLIED, "Applied", oper_up=False)]))
    assert (status, message) == ("Degraded", "pe1/Ethernet1.101: oper-status DOWN")


def test_service_invalid_spec_is_degraded() -> None:
    obj = service([], invalid="spec.endpoints.0.vlanId: must be <= 4094")
    assert health("NetworkService", obj) == ("Degraded", "spec.endpoints.0.vlanId: must be <= 4094")


def test_service_retrying_is_progressing_with_the_ready_message() -> None:
    obj = service([ep(Phase.RETRYING, "DeviceUnreachable", "connection refused")])
    assert health("NetworkService", obj) == ("Progressing", "pe1/Ethernet1.101: connection refused")
    pending = service([ep(Phase.PENDING, "Pending")])
    assert health("NetworkService", pending)[0] == "Progressing"


def test_service_dry_run_is_suspended_unless_it_fails() -> None:
    plan = [{"op": "update", "device": "pe1", "path": "/interfaces", "value": "{}"}]
    status, message = health("NetworkService", service([ep(Phase.DRY_RUN, "DryRun")], dry_run=True, plan=plan))
    assert (status, message) == ("Suspended", "dry run: the Set would carry 1 operation(s), see status.plan")
    failing = service([ep(Phase.FAILED, "PortNotFound", "no such port")], dry_run=True, plan=plan)
    assert health("NetworkService", failing)[0] == "Degraded"


# -- NetworkDevice: statuses produced by the controller's device_status --------------------------


@dataclass
class FakeSession:
    """The attributes of network.session.DeviceSession that device_status reads."""

    connected: bool = False
    synced: bool = False
    error: GnmiError | None = None
    capabilities: Capabilities | None = None
    encoding: str = "JSON"


CAPS = Capabilities("0.8.0", ["JSON_IETF"], [(m, "OpenConfig", "1.0.0") for m in REQUIRED_MODELS])


def device(session: FakeSession | None, config_error: str | None = None) -> dict[str, Any]:
    status = device_status(
        generation=3,
        current={},
        session=session,  # type: ignore[arg-type]
        config_error=config_error,
        services=2,
        now=T0,
    )
    return resource("NetworkDevice", status)


@dataclass
class Case:
    name: str
    session: FakeSession | None
    expected: tuple[str, str]
    config_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


DEVICE_CASES = [
    Case(
        "in-sync",
        FakeSession(connected=True, synced=True, capabilities=CAPS),
        ("Healthy", "session up and state in sync"),
    ),
    Case("connecting", None, ("Progressing", "Connecting")),
    Case(
        "syncing",
        FakeSession(connected=True, synced=False, capabilities=CAPS),
        ("Progressing", "waiting for the subscription's initial state"),
    ),
    Case(
        "unreachable",
        FakeSession(error=GnmiError("Capabilities", grpc.StatusCode.UNAVAILABLE, "connection refused")),
        ("Degraded", "unreachable: connection refused"),
    ),
    Case(
        "unauthenticated",
        FakeSession(error=GnmiError("Capabilities", grpc.StatusCode.UNAUTHENTICATED, "bad password")),
        ("Degraded", "unreachable: bad password"),
    ),
    Case(
        "invalid-config",
        None,
        ("Degraded", "cannot read Secret telco-system/creds: Not Found"),
        config_error="cannot read Secret telco-system/creds: Not Found",
    ),
    Case(
        "missing-models",
        FakeSession(connected=True, synced=True, capabilities=Capabilities("0.8.0", ["JSON_IETF"], [])),
        ("Degraded", "device lacks openconfig-interfaces, openconfig-vlan, openconfig-if-ip"),
    ),
]


@pytest.mark.parametrize("case", DEVICE_CASES, ids=lambda c: c.name)
def test_device(case: Case) -> None:
    assert health("NetworkDevice", device(case.session, case.config_error)) == case.expected


# -- Subscription (TMF637 states), shapes checked by SubscriptionStatus ---------------------------


def subscription(state: str | None, *conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": 3, "conditions": list(conditions), **extra}
    if state is not None:
        status["state"] = state
    return resource("Subscription", dump(SubscriptionStatus.model_validate(status)))


READY = cond("Ready", "True", "ServiceReady", "NetworkService hq is Ready")
NOT_READY = cond("Ready", "False", "ServiceNotReady", "NetworkService hq: pe1/Ethernet1.101: oper-status DOWN")
PROGRESSING = cond("Progressing", "True", "Provisioning", "waiting for NetworkService hq")
NOT_DEGRADED = cond("Degraded", "False", "AsExpected")

SUBSCRIPTION_CASES = [
    ("active-ready", subscription("active", READY, NOT_DEGRADED), ("Healthy", "NetworkService hq is Ready")),
    (
        "active-down",
        subscription("active", NOT_READY, NOT_DEGRADED),
        ("Degraded", "active but not ready: NetworkService hq: pe1/Ethernet1.101: oper-status DOWN"),
    ),
    (
        "active-reconfiguring",
        subscription("active", cond("Ready", "False", "Updating", "applying the new bandwidth"), PROGRESSING),
        ("Progressing", "active: applying the new bandwidth"),
    ),
    ("active-unknown", subscription("active", cond("Ready", "Unknown", "Pending")), ("Progressing", "active: Pending")),
    ("created", subscription("created", cond("Ready", "Unknown", "Pending")), ("Progressing", "created: Pending")),
    (
        "pendingActive",
        subscription("pendingActive", cond("Ready", "False", "Provisioning", "x"), PROGRESSING),
        ("Progressing", "pendingActive: waiting for NetworkService hq"),
    ),
    (
        "pendingTerminate",
        subscription("pendingTerminate", cond("Ready", "False", "Terminating", "removing hq")),
        ("Progressing", "pendingTerminate: removing hq"),
    ),
    (
        "suspended",
        subscription("suspended", cond("Ready", "False", "Suspended", "suspended by the customer")),
        ("Suspended", "suspended: suspended by the customer"),
    ),
    (
        "suspended-payment-hold-condition",
        subscription(
            "suspended",
            cond("Ready", "False", "Suspended"),
            cond("PaymentHold", "True", "InvoicesOverdue", "acme-001-2026-10 is overdue"),
        ),
        ("Suspended", "suspended for non-payment: acme-001-2026-10 is overdue"),
    ),
    (
        "suspended-payment-hold-billing",
        subscription(
            "suspended",
            cond("Ready", "False", "Suspended"),
            billing={"paymentHold": {"since": "2026-11-20T00:00:00Z", "invoices": ["acme-001-2026-10"]}},
        ),
        ("Suspended", "suspended for non-payment"),
    ),
    (
        "aborted",
        subscription("aborted", cond("Ready", "False", "ProvisioningFailed", "port Ethernet9 not found")),
        ("Degraded", "aborted: port Ethernet9 not found"),
    ),
    (
        "degraded-condition",
        subscription("active", READY, cond("Degraded", "True", "BillingUndelivered", "billing sink unreachable")),
        ("Degraded", "billing sink unreachable"),
    ),
    (
        "terminated",
        subscription("terminated", cond("Ready", "False", "Terminated")),
        ("Healthy", "terminated: the service was removed"),
    ),
    (
        "cancelled",
        subscription("cancelled", cond("Ready", "False", "Cancelled")),
        ("Healthy", "cancelled before activation"),
    ),
    (
        "no-state-yet",
        subscription(None, cond("Ready", "Unknown", "Pending")),
        ("Progressing", "waiting for the controller to set status.state"),
    ),
]


@pytest.mark.parametrize(("name", "obj", "expected"), SUBSCRIPTION_CASES, ids=[c[0] for c in SUBSCRIPTION_CASES])
def test_subscription(name: str, obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("Subscription", obj) == expected


# -- ProductOffering ----------------------------------------------------------------------------


def offering(*conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status = {"observedGeneration": 3, "conditions": list(conditions), **extra}
    return resource("ProductOffering", dump(ProductOfferingStatus.model_validate(status)))


OFFERING_CASES = [
    (
        "sellable",
        offering(cond("Ready", "True", "Sellable", "Launched and valid"), sellable=True),
        ("Healthy", "Launched and valid"),
    ),
    (
        "retired-not-sellable",
        offering(cond("Ready", "True", "Valid"), sellable=False, sellableReason="lifecycleStatus is Retired"),
        ("Healthy", "not sellable: lifecycleStatus is Retired"),
    ),
    (
        "not-sellable-ready-false",
        offering(cond("Ready", "False", "NotSellable", "validFor ended 2026-10-01"), sellable=False),
        ("Healthy", "not sellable: validFor ended 2026-10-01"),
    ),
    (
        "invalid",
        offering(cond("Ready", "False", "InvalidPrice", "productOfferingPrice[0]: no currency")),
        ("Degraded", "productOfferingPrice[0]: no currency"),
    ),
    (
        "degraded",
        offering(
            cond("Ready", "True", "Sellable"), cond("Degraded", "True", "Conflict", "duplicate name"), sellable=True
        ),
        ("Degraded", "duplicate name"),
    ),
    ("unknown", offering(cond("Ready", "Unknown", "Pending")), ("Progressing", "Pending")),
]


@pytest.mark.parametrize(("name", "obj", "expected"), OFFERING_CASES, ids=[c[0] for c in OFFERING_CASES])
def test_offering(name: str, obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("ProductOffering", obj) == expected


# -- Invoice (TMF678 states) --------------------------------------------------------------------


def invoice(state: str | None, *conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": 3, "conditions": list(conditions), **extra}
    if state is not None:
        status["state"] = state
    return resource("Invoice", dump(InvoiceStatus.model_validate(status)))


ISSUED = cond("Ready", "True", "Issued", "bill issued")
INVOICE_CASES = [
    (
        "new",
        invoice("new", cond("Ready", "False", "Computing", "rating 12 subscriptions")),
        ("Progressing", "new: rating 12 subscriptions"),
    ),
    (
        "validated",
        invoice("validated", ISSUED, billNo="ACME-2026-11-001"),
        ("Healthy", "validated (bill ACME-2026-11-001)"),
    ),
    (
        "sent",
        invoice("sent", ISSUED, billNo="B1", amountDue={"unit": "EUR", "value": "59.88"}),
        ("Healthy", "sent (bill B1), amount due 59.88 EUR"),
    ),
    ("sent-overdue", invoice("sent", ISSUED, overdue=True), ("Healthy", "sent, overdue")),
    (
        "partiallyPaid",
        invoice("partiallyPaid", ISSUED, amountDue={"unit": "EUR", "value": "10.00"}),
        ("Healthy", "partiallyPaid, amount due 10.00 EUR"),
    ),
    (
        "settled",
        invoice("settled", ISSUED, amountDue={"unit": "EUR", "value": "0.00"}),
        ("Healthy", "settled, amount due 0.00 EUR"),
    ),
    (
        "credit",
        invoice("settled", ISSUED, amountDue={"unit": "EUR", "value": "-4.99"}),
        ("Healthy", "settled, amount due -4.99 EUR"),
    ),
    (
        "onHold",
        invoice("onHold", cond("Ready", "False", "OnHold", "usage of pe1 missing for 3 days")),
        ("Degraded", "on hold: usage of pe1 missing for 3 days"),
    ),
    (
        "degraded",
        invoice("sent", ISSUED, cond("Degraded", "True", "DeliveryFailed", "mail relay refused")),
        ("Degraded", "mail relay refused"),
    ),
    ("no-state", invoice(None), ("Progressing", "waiting for the controller to set status.state")),
]


@pytest.mark.parametrize(("name", "obj", "expected"), INVOICE_CASES, ids=[c[0] for c in INVOICE_CASES])
def test_invoice(name: str, obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("Invoice", obj) == expected


# -- child Applications (app-of-apps waves) -----------------------------------------------------


def test_application_health_passes_the_child_health_through() -> None:
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"}}
    assert health("Application", app) == ("Progressing", "waiting for the Application's health")
    app["status"] = {"health": {"status": "Healthy"}}
    assert health("Application", app) == ("Healthy", "Application is Healthy")
    app["status"] = {"health": {"status": "Degraded", "message": "Deployment x exceeded its progress deadline"}}
    assert health("Application", app) == ("Degraded", "Deployment x exceeded its progress deadline")


# -- the generated argocd-cm snippet and quickstart copies are current ---------------------------


@functools.cache
def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("argocd_render", ARGOCD / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current() -> None:
    render = _render_module()
    expected = render.expected()
    stale = [str(p.relative_to(ROOT)) for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    extra = [str(p.relative_to(ROOT)) for p in (ARGOCD / "quickstart").glob("*.yaml") if p not in expected]
    assert not stale and not extra, f"run python deploy/argocd/render.py (stale: {stale}, extra: {extra})"


def test_configmap_holds_every_script_under_its_key() -> None:
    render = _render_module()
    cm = yaml.safe_load((ARGOCD / "argocd-cm-health.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    for model in KINDS:
        key = f"resource.customizations.health.{GROUP}_{model.KIND}"
        assert cm["data"][key] == render.script(HEALTH / f"{model.KIND}.lua"), key
        assert "-- #include" not in cm["data"][key], "Argo CD needs self-contained scripts"
    assert cm["data"]["resource.customizations.health.argoproj.io_Application"] == render.script(
        HEALTH / "Application.lua"
    )


def test_quickstart_copies_carry_waves_and_leave_the_controller_namespace_alone() -> None:
    render = _render_module()
    seen = set()
    for path in sorted((ARGOCD / "quickstart").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            wave = int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
            assert wave >= 0, "custom resources come after the controller (waves -2 and -1)"
            assert not (doc["kind"] == "Namespace" and doc["metadata"]["name"] == render.CHART_NAMESPACE)
            seen.add(doc["kind"])
    assert {m.KIND for m in KINDS} <= seen
    waves = render.WAVES
    assert waves["ProductOffering"] < waves["Subscription"] < waves["Invoice"]
    assert waves["NetworkDevice"] < waves["Subscription"]

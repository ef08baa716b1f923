"""One table of live objects, in every state a GitOps tool meets, with what Argo CD and kstatus must say.

The statuses come from the controller's own status builders (lifecycle.step, service_status,
device_status, offering_status) so they are the shapes the controller writes; Invoice statuses are
checked against the API's pydantic model. tests/unit/test_argocd_health.py runs the Argo CD health
scripts on them in Lua; tests/integration/test_gitops_tools.py runs the same table through
sigs.k8s.io/cli-utils' kstatus and, when built, Argo CD's own Lua health engine (hack/).

What a sync wave needs: Healthy completes a wave, Degraded fails it, Progressing and Suspended keep
it waiting. A state the spec asked for and the world reached must be Healthy and kstatus Current;
a refusal or failure that waiting cannot fix Degraded and Failed; work under way Progressing and
InProgress.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import grpc

from controller.api import GROUP, VERSION
from controller.api.billingaccount import BillingAccountStatus
from controller.api.invoice import InvoiceStatus
from controller.api.productoffering import ProductOfferingSpec
from controller.api.subscription import SubscriptionSpec
from controller.commerce.lifecycle import ServiceObservation, SubscriptionInputs, step
from controller.commerce.offering import offering_status
from controller.commerce.order import EndpointConflict, OrderRecord
from controller.gnmi.client import Capabilities, GnmiError
from controller.network.devices import REQUIRED_MODELS, device_status
from controller.network.outcome import EndpointOutcome, Phase, ServiceView, service_status
from tests.unit.commerce.builders import offering_doc

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
GENERATION = 3


@dataclass(frozen=True)
class Case:
    name: str
    obj: dict[str, Any]
    argocd: str  # Healthy | Progressing | Degraded (never Suspended: it stalls a wave)
    kstatus: str  # Current | InProgress | Failed | Terminating
    says: str = ""  # a fragment the Argo CD message must contain

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])


def live(kind: str, status: dict[str, Any] | None, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "acme", "generation": GENERATION, **meta},
        "spec": spec or {},
    }
    if status is not None:
        obj["status"] = status
    return obj


# -- Subscription: the state machine's own output ----------------------------------------------------


def _offering(**over: Any) -> ProductOfferingSpec:
    return ProductOfferingSpec.model_validate(offering_doc(**over))


def _order(**over: Any) -> SubscriptionInputs:
    spec = SubscriptionSpec.model_validate(
        {
            "productOffering": {"name": "fiber-100"},
            "billingAccount": {"id": "acme-1"},
            "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 101}],
            **over.pop("spec", {}),
        }
    )
    fields: dict[str, Any] = {"name": "x", "generation": GENERATION, "spec": spec, "now": T0, "offering": _offering()}
    fields.update(over)
    return SubscriptionInputs(**fields)


READY_SERVICE = ServiceObservation(
    exists=True, ready="True", ready_reason="Applied", ready_message="configured", ready_since=T0
)
SHUT_SERVICE = ServiceObservation(exists=True, ready="False", ready_reason="AdminDisabled", ready_message="shut")
FAILED_SERVICE = ServiceObservation(
    exists=True,
    ready="False",
    ready_reason="PortNotFound",
    degraded=True,
    degraded_reason="PortNotFound",
    degraded_message="pe1/Ethernet9.101: port Ethernet9 does not exist on device pe1",
    degraded_since=T0,
)


def _settled(inp: SubscriptionInputs, *moves: dict[str, Any]) -> dict[str, Any]:
    """The status after running the machine on `inp`, then once per change in `moves`."""
    status = step(inp).status
    for change in moves:
        spec = change.pop("spec", None)
        if spec is not None:
            inp = replace(inp, spec=inp.spec.model_copy(update=spec))
        inp = replace(inp, status=status, **change)
        status = step(inp).status
    return status


def _subscription(status: dict[str, Any]) -> dict[str, Any]:
    return live("Subscription", status)


def _holder() -> OrderRecord:
    return OrderRecord("acme", "older", T0 - dt.timedelta(days=3), (("pe1", "Ethernet1", 101),), "active")


SUBSCRIPTIONS = [
    Case(
        "subscription-active",
        _subscription(_settled(_order(), {"service": READY_SERVICE})),
        "Healthy",
        "Current",
        "NetworkService x is Ready",
    ),
    Case(
        "subscription-provisioning",
        _subscription(_settled(_order())),
        "Progressing",
        "InProgress",
        "pendingActive: waiting for NetworkService x",
    ),
    Case(
        "subscription-suspended-on-purpose",
        _subscription(
            _settled(
                _order(), {"service": READY_SERVICE}, {"spec": {"desiredState": "suspended"}, "service": SHUT_SERVICE}
            )
        ),
        "Healthy",
        "Current",
        "suspended: desiredState is suspended",
    ),
    Case(
        "subscription-ordered-suspended",
        _subscription(_settled(_order(spec={"desiredState": "suspended"}), {"service": SHUT_SERVICE})),
        "Healthy",
        "Current",
        "provisioned with its subinterfaces shut",
    ),
    Case(
        "subscription-payment-hold",
        _subscription(_settled(_order(), {"service": READY_SERVICE}, {"payment_hold": True})),
        "Degraded",
        "Failed",
        "overdue invoice; the service resumes once it is paid",
    ),
    Case(
        "subscription-scheduled",
        _subscription(_settled(_order(spec={"requestedStartDate": "2027-01-01T00:00:00Z"}))),
        "Healthy",
        "Current",
        "accepted at requestedStartDate 2027-01-01T00:00:00Z",
    ),
    Case(
        "subscription-offering-missing",
        _subscription(_settled(_order(offering=None))),
        "Degraded",
        "Failed",
        "ProductOffering fiber-100 does not exist",
    ),
    Case(
        "subscription-offering-retired",
        _subscription(_settled(_order(offering=_offering(lifecycleStatus="Retired")))),
        "Degraded",
        "Failed",
        "ProductOffering fiber-100",
    ),
    Case(
        "subscription-port-conflict",
        _subscription(_settled(_order(endpoint_conflicts=(EndpointConflict(("pe1", "Ethernet1", 101), _holder()),)))),
        "Degraded",
        "Failed",
        "device pe1 port Ethernet1 vlanId 101 is held by",
    ),
    Case(
        "subscription-aborted",
        _subscription(_settled(_order(), {"service": FAILED_SERVICE})),
        "Degraded",
        "Failed",
        "port Ethernet9 does not exist on device pe1",
    ),
    Case(
        "subscription-service-down",
        _subscription(
            _settled(
                _order(),
                {"service": READY_SERVICE},
                {"service": replace(FAILED_SERVICE, degraded_reason="OperDown", degraded_message="pe1: link down")},
            )
        ),
        "Degraded",
        "Failed",
        "NetworkService x is degraded (OperDown: pe1: link down)",
    ),
    Case(
        "subscription-terminated",
        _subscription(
            _settled(
                _order(),
                {"service": READY_SERVICE},
                {"spec": {"desiredState": "terminated"}},
                {"service": ServiceObservation()},
            )
        ),
        "Healthy",
        "Current",
        "terminated at",
    ),
]


# -- NetworkService: service_status ----------------------------------------------------------------------


def _ep(phase: Phase, reason: str, message: str = "", oper_up: bool | None = True) -> EndpointOutcome:
    return EndpointOutcome("pe1", "Ethernet1", 101, phase, reason, message, oper_up=oper_up)


def _service(outcomes: list[EndpointOutcome], *, admin: bool = True, dry_run: bool = False, **view: Any) -> dict:
    status = service_status(ServiceView(GENERATION, admin, dry_run, **view), outcomes, T0)
    return live("NetworkService", status, {"adminState": "enabled" if admin else "disabled", "dryRun": dry_run})


PLAN = [{"op": "update", "device": "pe1", "path": "/interfaces", "value": "{}"}]
SERVICES = [
    Case("service-applied", _service([_ep(Phase.APPLIED, "Applied")]), "Healthy", "Current", "configured and verified"),
    Case(
        "service-dry-run",
        _service([_ep(Phase.DRY_RUN, "DryRun")], dry_run=True, plan=PLAN),
        "Healthy",
        "Current",
        "dry run: the Set would carry 1 operation(s), see status.plan",
    ),
    Case(
        "service-dry-run-failing",
        _service([_ep(Phase.FAILED, "PortNotFound", "no such port")], dry_run=True, plan=PLAN),
        "Degraded",
        "Failed",
        "pe1/Ethernet1.101: no such port",
    ),
    Case(
        "service-port-missing",
        _service([_ep(Phase.FAILED, "PortNotFound", "Ethernet1 does not exist")]),
        "Degraded",
        "Failed",
        "pe1/Ethernet1.101: Ethernet1 does not exist; fix the NetworkService spec or the device",
    ),
    Case(
        "service-link-down",
        _service([_ep(Phase.APPLIED, "Applied", oper_up=False)]),
        "Degraded",
        "Failed",
        "pe1/Ethernet1.101: oper-status DOWN; the configuration is applied but the link is down",
    ),
    Case(
        "service-invalid-spec",
        _service([], invalid="spec.endpoints.0.vlanId: must be <= 4094"),
        "Degraded",
        "Failed",
        "spec.endpoints.0.vlanId: must be <= 4094; fix the NetworkService spec",
    ),
    Case(
        "service-device-unreachable",
        _service([_ep(Phase.RETRYING, "DeviceUnreachable", "connection refused")]),
        "Progressing",
        "InProgress",
        "pe1/Ethernet1.101: connection refused",
    ),
    Case(
        "service-admin-disabled",
        _service([_ep(Phase.DISABLED, "AdminDisabled", oper_up=False)], admin=False),
        "Healthy",
        # kstatus reads Ready=False as InProgress; Ready stays False here because the Subscription
        # state machine and metering read a shut service's Ready as "carries no traffic".
        "InProgress",
        "administratively disabled",
    ),
]


# -- NetworkDevice: device_status ----------------------------------------------------------------------------


@dataclass
class _Session:
    """The attributes of network.session.DeviceSession that device_status reads."""

    connected: bool = False
    synced: bool = False
    error: GnmiError | None = None
    capabilities: Capabilities | None = None
    encoding: str = "JSON_IETF"


CAPS = Capabilities("0.8.0", ["JSON_IETF"], [(m, "OpenConfig", "1.0.0") for m in REQUIRED_MODELS])


def _device(session: _Session | None, config_error: str | None = None) -> dict[str, Any]:
    status = device_status(GENERATION, {}, session, config_error, 2, T0)  # type: ignore[arg-type]
    return live("NetworkDevice", status)


DEVICES = [
    Case("device-in-sync", _device(_Session(True, True, capabilities=CAPS)), "Healthy", "Current", "in sync"),
    Case("device-connecting", _device(None), "Progressing", "InProgress", "Connecting"),
    Case("device-syncing", _device(_Session(True, False, capabilities=CAPS)), "Progressing", "InProgress", "initial"),
    Case(
        "device-unreachable",
        _device(_Session(error=GnmiError("Capabilities", grpc.StatusCode.UNAVAILABLE, "connection refused"))),
        "Degraded",
        "Failed",
        "connection refused; check spec.address",
    ),
    Case(
        "device-bad-password",
        _device(_Session(error=GnmiError("Capabilities", grpc.StatusCode.UNAUTHENTICATED, "bad password"))),
        "Degraded",
        "Failed",
        "bad password; fix the credentials",
    ),
    Case(
        "device-secret-missing",
        _device(None, config_error="cannot read Secret telco-system/creds: Not Found"),
        "Degraded",
        "Failed",
        "cannot read Secret telco-system/creds: Not Found",
    ),
    Case(
        "device-missing-models",
        _device(_Session(True, True, capabilities=Capabilities("0.8.0", ["JSON_IETF"], []))),
        "Degraded",
        "Failed",
        "device lacks openconfig-interfaces",
    ),
]


# -- ProductOffering: offering_status ---------------------------------------------------------------------


def _offering_obj(spec: ProductOfferingSpec | None, invalid: str | None = None) -> dict[str, Any]:
    return live("ProductOffering", offering_status(GENERATION, {}, spec, 0, T0, invalid=invalid))


OFFERINGS = [
    Case("offering-sellable", _offering_obj(_offering()), "Healthy", "Current", "is usable"),
    Case(
        "offering-retired",
        _offering_obj(_offering(lifecycleStatus="Retired")),
        "Healthy",
        "Current",
        "not sellable: ",
    ),
    Case(
        "offering-invalid",
        _offering_obj(None, invalid="spec.productOfferingPrice: Field required"),
        "Degraded",
        "Failed",
        "spec.productOfferingPrice: Field required; fix the ProductOffering spec",
    ),
]


# -- Invoice: statuses the API accepts -----------------------------------------------------------------------


def _cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "observedGeneration": GENERATION,
        "lastTransitionTime": "2026-11-01T12:00:00Z",
        "reason": reason,
        "message": message,
    }


def _invoice(state: str | None, *conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": GENERATION, "conditions": list(conditions), **extra}
    if state is not None:
        status["state"] = state
    model = InvoiceStatus.model_validate(status)
    return live("Invoice", model.model_dump(mode="json", exclude_none=True))


INVOICES = [
    Case(
        "invoice-draft",
        _invoice("new", _cond("Ready", "True", "Draft", "draft: 49.90 EUR so far, recomputed until the period ends")),
        "Healthy",
        "Current",
        "draft: 49.90 EUR so far",
    ),
    Case(
        "invoice-sent",
        _invoice("sent", _cond("Ready", "True", "Issued"), billNo="B1", amountDue={"unit": "EUR", "value": "59.88"}),
        "Healthy",
        "Current",
        "sent (bill B1), amount due 59.88 EUR",
    ),
    Case(
        "invoice-invalid-spec",
        _invoice(
            None,
            _cond("Ready", "False", "InvalidSpec", "spec.period: Field required"),
            _cond("Stalled", "True", "InvalidSpec", "spec.period: Field required; fix the Invoice spec"),
        ),
        "Degraded",
        "Failed",
        "fix the Invoice spec",
    ),
]


# -- BillingAccount: statuses the API accepts ---------------------------------------------------------------


def _account(*conditions: dict[str, Any]) -> dict[str, Any]:
    status = {"observedGeneration": GENERATION, "subscriptions": 2, "conditions": list(conditions)}
    model = BillingAccountStatus.model_validate(status)
    return live("BillingAccount", model.model_dump(mode="json", exclude_none=True))


ACCOUNTS = [
    Case(
        "account-active",
        _account(_cond("Ready", "True", "Active", "Active: takes new orders"), _cond("Stalled", "False", "AsExpected")),
        "Healthy",
        "Current",
        "Active: takes new orders",
    ),
    Case(
        "account-suspended",
        _account(_cond("Ready", "True", "Suspended", "Suspended: keeps existing service, takes no new orders")),
        "Healthy",
        "Current",
        "takes no new orders",
    ),
    Case(
        "account-over-its-credit-limit",
        _account(
            _cond("Ready", "True", "Active", "Active: takes new orders"),
            _cond("CreditLimit", "False", "Exceeded", "outstanding 600.00 EUR exceeds spec.creditLimit 500.00 EUR"),
            _cond(
                "Stalled",
                "True",
                "CreditLimitExceeded",
                "outstanding 600.00 EUR exceeds spec.creditLimit 500.00 EUR;"
                " record a payment or raise spec.creditLimit",
            ),
        ),
        "Degraded",
        "Failed",
        "record a payment or raise spec.creditLimit",
    ),
    Case(
        "account-invalid-spec",
        _account(
            _cond("Ready", "False", "InvalidSpec", "spec.currency: Field required"),
            _cond("Stalled", "True", "InvalidSpec", "spec.currency: Field required; fix the BillingAccount spec"),
        ),
        "Degraded",
        "Failed",
        "fix the BillingAccount spec",
    ),
]


# -- every kind: deletion, no status yet, a spec not processed yet -------------------------------------------

KINDS_HEALTHY = {c.kind: c for c in (SUBSCRIPTIONS[0], SERVICES[0], DEVICES[0], OFFERINGS[0], INVOICES[0], ACCOUNTS[0])}


def _common() -> list[Case]:
    out = []
    for kind, good in KINDS_HEALTHY.items():
        deleting = {**good.obj, "metadata": {**good.obj["metadata"], "deletionTimestamp": "2026-11-01T12:00:00Z"}}
        deleting["metadata"]["finalizers"] = [f"{GROUP}/cleanup"]
        stale = {**good.obj, "metadata": {**good.obj["metadata"], "generation": GENERATION + 1}}
        out += [
            Case(
                f"{kind}-deleting", deleting, "Progressing", "Terminating", "being deleted: waiting for the controller"
            ),
            Case(f"{kind}-stale-generation", stale, "Progressing", "InProgress", "process generation 4"),
        ]
    return out


# Before the controller's first status write the API server shows the CRDs' status default
# (crdgen.UNPROCESSED_STATUS): observedGeneration 0, below metadata.generation.
UNPROCESSED = [
    Case(f"{kind}-unprocessed", live(kind, {"observedGeneration": 0}), "Progressing", "InProgress", "generation 3")
    for kind in KINDS_HEALTHY
]
CASES: list[Case] = [
    *SUBSCRIPTIONS,
    *SERVICES,
    *DEVICES,
    *OFFERINGS,
    *INVOICES,
    *ACCOUNTS,
    *_common(),
    *UNPROCESSED,
]
# Without that default (CRDs installed by an older release) kstatus has nothing to read and says Current
# (its rule for objects without status); Argo CD waits. Listed apart so the kstatus test names it.
NO_STATUS = [
    Case(f"{kind}-no-status", live(kind, None), "Progressing", "Current", "report a status") for kind in KINDS_HEALTHY
]

"""Prometheus metrics the controller exports (the Grafana dashboard in charts/ queries these)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "telco_reconcile_total", "Reconcile passes by kind and result.", ["kind", "result"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "telco_reconcile_duration_seconds",
    "Duration of one reconcile pass by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
GNMI_SECONDS = Histogram(
    "telco_gnmi_rpc_duration_seconds",
    "gNMI RPC latency by device and RPC.",
    ["device", "rpc"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=REGISTRY,
)
GNMI_ERRORS = Counter(
    "telco_gnmi_rpc_errors_total",
    "Failed gNMI RPCs by device, RPC and gRPC code.",
    ["device", "rpc", "code"],
    registry=REGISTRY,
)
GNMI_SET_OPERATIONS = Counter(
    "telco_gnmi_set_operations_total", "Operations carried by Set RPCs, by device.", ["device"], registry=REGISTRY
)
DRIFT_EVENTS = Counter(
    "telco_drift_events_total",
    "Out-of-band changes found on devices, by action taken.",
    ["device", "action"],
    registry=REGISTRY,
)
DEVICES_REACHABLE = Gauge("telco_devices_reachable", "NetworkDevices with a live gNMI session.", registry=REGISTRY)
DEVICES_TOTAL = Gauge("telco_devices", "NetworkDevices known to the controller.", registry=REGISTRY)
KUBE_WRITES = Counter(
    "telco_kube_writes_total",
    "Kubernetes API writes by the controller, by resource.",
    ["resource"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "telco_billing_outbox_depth", "Billing events recorded but not yet delivered to every sink.", registry=REGISTRY
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "telco_billing_outbox_oldest_age_seconds", "Age of the oldest undelivered billing event.", registry=REGISTRY
)
BILLING_DELIVERED = Counter(
    "telco_billing_events_delivered_total", "Billing events delivered to every sink.", registry=REGISTRY
)

ADMISSION_LISTS = Counter(
    "telco_admission_lists_total",
    "Whole-kind lists the admission webhook's caches made, by kind and why: start (the first), gone (after"
    " 410), behind (the watch had not reached a request's barrier in time), small (a small kind not being"
    " written, listed for each round of requests instead of waiting for its watch).",
    ["kind", "reason"],
    registry=REGISTRY,
)
ADMISSION_LISTED_OBJECTS = Counter(
    "telco_admission_listed_objects_total",
    "Objects those lists returned, by kind (what the lists cost grows with this).",
    ["kind"],
    registry=REGISTRY,
)

STATUS_FORGERIES = Counter(
    "telco_status_forgeries_total",
    "Status writes by someone other than the controller, found and rewritten, by kind.",
    ["kind"],
    registry=REGISTRY,
)
BILLING_QUARANTINED = Counter(
    "telco_billing_events_quarantined_total",
    "Outbox entries without a valid proof of origin, set aside instead of delivered.",
    registry=REGISTRY,
)


def serve(port: int, address: str = "127.0.0.1") -> None:
    start_http_server(port, addr=address, registry=REGISTRY)

"""NetworkService (TMF638 Service): the intent on the network."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import JsonDict

from .common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    GROUP,
    INTERFACE_NAME,
    IPV4_CIDR,
    ApiModel,
    Conditions,
    CustomResource,
    PrinterColumn,
    age_column,
    ready_column,
    reason_columns,
)
from .productoffering import PEAK_AT_LEAST_COMMITTED, CommittedMbps, DriftPolicy, PeakMbps, ServiceType

ServiceState = Literal["feasibilityChecked", "designed", "reserved", "inactive", "active", "terminated"]
OperatingStatus = Literal[
    "pending",
    "configured",
    "starting",
    "running",
    "degraded",
    "failed",
    "limited",
    "stopping",
    "stopped",
    "unknown",
]


class Endpoint(ApiModel):
    """Where the service attaches: a VLAN on a device port, optionally with an IPv4 address."""

    device: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the NetworkDevice.")
    port: str = Field(
        max_length=64, pattern=INTERFACE_NAME, description="Physical interface on the device, e.g. Ethernet1."
    )
    vlanId: int = Field(ge=1, le=4094, description="802.1Q VLAN id; also the subinterface index.")
    ipv4Address: str | None = Field(
        default=None,
        pattern=IPV4_CIDR,
        max_length=18,
        description="IPv4 address with prefix length, e.g. 10.0.0.1/30.",
    )


ENDPOINTS_UNIQUE: JsonDict = {
    "rule": "self.all(a, self.exists_one(b, b.device == a.device && b.port == a.port && b.vlanId == a.vlanId))",
    "message": "two endpoints claim the same device, port and vlanId",
}


class NetworkServiceSpec(ApiModel):
    """Intent: the VLAN attachments, addressing and rate the network must deliver."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                PEAK_AT_LEAST_COMMITTED,
                {
                    "rule": "self.serviceType != 'l3vpn' || has(self.vrf)",
                    "message": "an l3vpn service needs vrf",
                    "fieldPath": ".vrf",
                },
                {
                    # On the spec, not the field: a field's self == oldSelf does not run when it is removed.
                    "rule": "!has(oldSelf.vrf) || (has(self.vrf) && self.vrf == oldSelf.vrf)",
                    "message": "vrf is immutable: it can be neither changed nor removed",
                    "fieldPath": ".vrf",
                },
                {
                    "rule": "self.serviceType == 'l2vpn' || self.endpoints.all(e, has(e.ipv4Address))",
                    "message": "internetAccess and l3vpn endpoints need ipv4Address",
                    "fieldPath": ".endpoints",
                },
            ]
        }
    )

    serviceType: ServiceType = Field(description="Kind of connectivity (TMF638 serviceSpecification).")
    endpoints: list[Endpoint] = Field(
        min_length=1,
        max_length=16,
        description="Attachments on device ports.",
        json_schema_extra={"x-kubernetes-validations": [ENDPOINTS_UNIQUE]},
    )
    bandwidthMbps: CommittedMbps
    peakBandwidthMbps: PeakMbps = None
    vrf: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="L3VRF network instance the subinterfaces join; immutable once set (the spec's rule).",
    )
    adminState: Literal["enabled", "disabled"] = Field(
        default="enabled", description="disabled keeps the configuration but shuts the subinterfaces."
    )
    driftPolicy: DriftPolicy = Field(
        default="revert", description="revert puts drifted device config back; report only reports it."
    )
    dryRun: bool = Field(
        default=False, description="Compute the gNMI Set and show it in status.plan without touching devices."
    )


class EndpointStatus(ApiModel):
    """What is configured for one endpoint."""

    device: str = Field(max_length=253, description="NetworkDevice name.")
    port: str = Field(max_length=64, description="Interface name.")
    vlanId: int = Field(ge=1, le=4094, description="VLAN id.")
    applied: bool = Field(default=False, description="Whether the device holds the intended configuration.")
    operStatus: str | None = Field(default=None, max_length=32, description="oper-status the device reports.")
    lastError: str | None = Field(default=None, max_length=4096, description="Last error for this endpoint.")


class PlannedOperation(ApiModel):
    """One operation of a gNMI SetRequest."""

    op: Literal["delete", "replace", "update"] = Field(description="Set operation.")
    device: str = Field(max_length=253, description="Target NetworkDevice.")
    path: str = Field(max_length=1024, description="gNMI path in string form.")
    value: str | None = Field(default=None, max_length=8192, description="JSON value (absent for delete).")


class OwnedEntry(ApiModel):
    """One managed entry on a device and the leaves in it the controller wrote."""

    path: str = Field(max_length=1024, description="gNMI path of the entry (a subinterface, a VRF, ...).")
    leaves: list[str] = Field(
        default_factory=list, max_length=256, description="The leaves written, relative to the entry."
    )


class OwnedOnDevice(ApiModel):
    """What the controller wrote for this service on one device: only these leaves are ever compared,
    changed or removed; everything else on the device belongs to someone else."""

    device: str = Field(max_length=253, description="NetworkDevice name.")
    entries: list[OwnedEntry] = Field(default_factory=list, max_length=128, description="Entries written.")


class ShardEndpoint(ApiModel):
    """One endpoint's outcome as the replica driving its device found it."""

    port: str = Field(max_length=64, description="Interface name.")
    vlanId: int = Field(ge=1, le=4094, description="VLAN id.")
    phase: str = Field(max_length=32, description="Applied, AdminDisabled, DryRun, Pending, Retrying or Failed.")
    reason: str = Field(max_length=64, description="CamelCase reason, e.g. Applied, DeviceUnreachable.")
    message: str = Field(default="", max_length=4096, description="Details.")
    operUp: bool | None = Field(default=None, description="oper-status UP (absent: not reported).")
    operRequired: bool = Field(default=True, description="Whether the device reports oper-status at all.")
    drift: str | None = Field(default=None, max_length=4096, description="What differs (driftPolicy report).")


class ShardReport(ApiModel):
    """What the replica driving one device reports for this service when another replica (the one driving
    the first endpoint's device) writes the rest of the status (docs/sharding.md). Each replica writes
    only the entries of the devices it drives."""

    replica: str = Field(max_length=253, description="The replica that wrote this report.")
    observedGeneration: int = Field(ge=0, description="The service generation the report is about.")
    endpoints: list[ShardEndpoint] = Field(default_factory=list, max_length=16, description="On this device.")
    owned: list[OwnedEntry] = Field(default_factory=list, max_length=128, description="Entries written here.")
    tornDown: bool = Field(default=False, description="The service is being deleted and is gone from the device.")


# "true" on a NetworkService whose Subscription sells traffic: the replicas driving its devices read its
# octet counters for usage metering (set by the commerce layer; docs/sharding.md).
METERED_LABEL = f"{GROUP}/usage-metered"


# How many Ready transitions a status keeps (docs/billing.md, "Ready history"). A watcher that was blind
# (an API server restart re-lists every watch) learns from this list what it missed. Eight covers four
# outages per blind stretch; at ~72 bytes of JSON an entry, a full list adds ~590 bytes to a status and
# a service that never flaps carries two (its first Pending and its first Ready).
READY_HISTORY = 8


class ReadyTransition(ApiModel):
    """A change of the Ready condition's status, as written with it."""

    at: datetime = Field(description="The Ready condition's lastTransitionTime for this change.")
    ready: bool = Field(description="Whether the service became Ready (true) or stopped being Ready (false).")
    reason: str = Field(max_length=128, description="The Ready condition's reason at this change.")


class NetworkServiceStatus(ApiModel):
    """What the controller observed about the service."""

    observedGeneration: int | None = Field(default=None, description="Generation last processed.")
    conditions: Conditions = Field(default_factory=list)
    state: ServiceState | None = Field(default=None, description="TMF638 service state.")
    operatingStatus: OperatingStatus | None = Field(default=None, description="TMF638 operating status.")
    startDate: datetime | None = Field(default=None, description="When the service first became Ready.")
    readySince: datetime | None = Field(default=None, description="Start of the current Ready interval.")
    readyTransitions: list[ReadyTransition] = Field(
        default_factory=list,
        max_length=READY_HISTORY,
        description="The latest changes of the Ready condition's status, oldest first, written with each change"
        f" (at most {READY_HISTORY}): a watcher that missed status versions learns from it what happened.",
    )
    readyTransitionsDroppedThrough: datetime | None = Field(
        default=None,
        description="The time of the newest transition dropped from readyTransitions to keep it bounded: the list"
        " holds every transition after this instant (unset: it holds every transition).",
    )
    endpoints: list[EndpointStatus] = Field(default_factory=list, max_length=16, description="Per endpoint.")
    plan: list[PlannedOperation] = Field(
        default_factory=list, max_length=256, description="The Set a dry run would send."
    )
    owned: list[OwnedOnDevice] = Field(
        default_factory=list,
        max_length=32,
        description="The leaves the controller wrote for this service, per device (it survives restarts).",
    )
    shards: dict[str, ShardReport] = Field(
        default_factory=dict,
        max_length=16,
        description="Per device driven by a replica other than the one writing this status: its report.",
    )
    # No `usage` here any more: the counters are published per device (NetworkDevice status.usage). A value
    # an older version stored is pruned by the API server and read by nobody.


class NetworkService(CustomResource):
    """Connectivity intent (TMF638 Service): VLAN attachments, addressing and rate on device ports."""

    KIND: ClassVar[str] = "NetworkService"
    PLURAL: ClassVar[str] = "networkservices"
    SHORT_NAMES: ClassVar[list[str]] = ["nsvc"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        *reason_columns(),
        PrinterColumn(name="State", jsonPath=".status.state", description="TMF638 state."),
        PrinterColumn(name="Operating", jsonPath=".status.operatingStatus", description="Operating status."),
        PrinterColumn(name="Type", jsonPath=".spec.serviceType", description="Service type."),
        PrinterColumn(name="Mbps", jsonPath=".spec.bandwidthMbps", type="integer", description="CIR."),
        PrinterColumn(name="Admin", jsonPath=".spec.adminState", description="Admin state.", priority=1),
        age_column(),
    ]

    kind: Literal["NetworkService"] = Field(default="NetworkService", description="Kind of this object.")
    spec: NetworkServiceSpec = Field(description="Desired state: the network intent.")
    status: NetworkServiceStatus | None = Field(default=None, description="Observed state.")

"""NetworkDevice: a gNMI target the controller configures."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from .common import (
    ApiModel,
    Conditions,
    CustomResource,
    PrinterColumn,
    SecretReference,
    age_column,
    ready_column,
    reason_columns,
)


class DeviceTLS(ApiModel):
    """How the gRPC channel to the device is secured."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(self.insecure && has(self.caSecretRef))",
                    "message": "caSecretRef makes no sense with insecure: true (plaintext)",
                    "fieldPath": ".caSecretRef",
                }
            ]
        }
    )

    insecure: bool = Field(
        default=False,
        description="Plaintext gRPC without TLS. Only for labs; the default verifies the device certificate.",
    )
    caSecretRef: SecretReference | None = Field(
        default=None,
        description="Secret whose key ca.crt holds the CA that signed the device certificate;"
        " unset means the system trust store.",
    )
    serverName: str | None = Field(
        default=None,
        max_length=253,
        description="Name to verify in the device certificate, if not the address.",
    )


class NetworkDeviceSpec(ApiModel):
    """Where the device is and how to talk to it."""

    address: str = Field(
        max_length=253,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$",
        description="Host name or IP address of the gNMI target.",
    )
    port: int = Field(default=9339, ge=1, le=65535, description="gNMI port (9339 is the IANA default).")
    platform: str = Field(default="", max_length=64, description="Vendor platform, informational.")
    tls: DeviceTLS = Field(default_factory=DeviceTLS, description="Transport security.")
    credentialsSecretRef: SecretReference = Field(
        description="Secret with keys username and password, sent as gNMI RPC metadata."
    )
    timeoutSeconds: int = Field(default=5, ge=1, le=120, description="Deadline for every gNMI RPC.")
    encoding: Literal["auto", "JSON", "JSON_IETF"] = Field(
        default="auto",
        description="gNMI encoding of values in Set, Get and Subscribe. auto: JSON_IETF (RFC 7951) when the"
        " device advertises it, else JSON; the one in use is shown in status.encoding.",
    )
    reportsOperStatus: bool = Field(
        default=True,
        description="Whether the platform reports subinterface oper-status. With true (the default) a"
        " service is Ready only once the device reports UP; false for platforms that never report it.",
    )


class ModelData(ApiModel):
    """A YANG model the device supports (gNMI ModelData)."""

    name: str = Field(max_length=256, description="Model name.")
    organization: str = Field(default="", max_length=256, description="Publishing organization.")
    version: str = Field(default="", max_length=64, description="Model version.")


class DeviceCapabilities(ApiModel):
    """What the device answered to the gNMI Capabilities RPC."""

    gnmiVersion: str = Field(default="", max_length=32, description="gNMI version.")
    encodings: list[str] = Field(default_factory=list, max_length=8, description="Supported encodings.")
    models: list[ModelData] = Field(
        default_factory=list, max_length=64, description="Supported models relevant to this controller."
    )
    modelCount: int = Field(default=0, ge=0, description="Total number of models the device advertises.")


# Ports a NetworkDevice status lists at most: a device with more lists none, so admission refuses no port as
# unknown rather than refusing real ports a truncated list left out.
MAX_LISTED_PORTS = 4096


COUNTER = r"^(0|[1-9][0-9]{0,19})$"  # a uint64 octet counter as a decimal string (JSON numbers lose precision)
# Metered subinterfaces one usage report lists at most (~90 bytes of JSON each: ~370 KB, well inside an
# object's size limit). A device with more is reported in turns, this many at a time (controller/network/usage.py).
MAX_USAGE_ENDPOINTS = 4096


class UsageEndpointSample(ApiModel):
    """One metered subinterface's octet counters, as the device reported them."""

    port: str = Field(max_length=64, description="Interface name.")
    vlanId: int = Field(ge=1, le=4094, description="VLAN id.")
    inOctets: str = Field(pattern=COUNTER, max_length=20, description="in-octets (decimal string).")
    outOctets: str = Field(pattern=COUNTER, max_length=20, description="out-octets (decimal string).")


class DeviceUsageReport(ApiModel):
    """The octet counters of the usage-metered subinterfaces on this device, read by the replica that drives
    it, for the replica that meters usage (sharded only; docs/sharding.md "Usage metering")."""

    replica: str = Field(max_length=253, description="The replica that read them; ignored unless it holds the device.")
    sampledAt: datetime = Field(description="When they were read (that replica's clock).")
    endpoints: list[UsageEndpointSample] = Field(
        default_factory=list,
        max_length=MAX_USAGE_ENDPOINTS,
        description=f"The metered subinterfaces read at sampledAt (at most {MAX_USAGE_ENDPOINTS}; a device with"
        " more is reported in turns).",
    )


class NetworkDeviceStatus(ApiModel):
    """What the controller observed about the device."""

    observedGeneration: int | None = Field(default=None, description="Generation last processed.")
    conditions: Conditions = Field(default_factory=list)
    capabilities: DeviceCapabilities | None = Field(default=None, description="gNMI Capabilities.")
    services: int | None = Field(default=None, ge=0, description="NetworkServices with endpoints here.")
    encoding: str | None = Field(
        default=None, max_length=16, description="The gNMI encoding in use, negotiated from Capabilities."
    )
    ports: list[str] | None = Field(
        default=None,
        max_length=MAX_LISTED_PORTS,
        description=f"The interface names the device reports (at most {MAX_LISTED_PORTS}; none listed for a device"
        " with more). Admission refuses an endpoint on a port not listed here.",
    )
    usage: DeviceUsageReport | None = Field(
        default=None,
        description="The latest octet counters of the usage-metered services' subinterfaces here (sharded only).",
    )


class NetworkDevice(CustomResource):
    """A gNMI target (a router or switch) whose configuration this controller manages."""

    KIND: ClassVar[str] = "NetworkDevice"
    PLURAL: ClassVar[str] = "networkdevices"
    SHORT_NAMES: ClassVar[list[str]] = ["nd", "device"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Cluster"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        *reason_columns(),
        PrinterColumn(
            name="Reachable",
            jsonPath='.status.conditions[?(@.type=="Reachable")].status',
            description="Whether a gNMI session is up.",
        ),
        PrinterColumn(name="Address", jsonPath=".spec.address", description="gNMI target address."),
        PrinterColumn(name="Port", jsonPath=".spec.port", type="integer", description="gNMI port."),
        PrinterColumn(name="Services", jsonPath=".status.services", type="integer", description="Services."),
        age_column(),
    ]

    kind: Literal["NetworkDevice"] = Field(default="NetworkDevice", description="Kind of this object.")
    spec: NetworkDeviceSpec = Field(description="Desired state: how to reach the device.")
    status: NetworkDeviceStatus | None = Field(default=None, description="Observed state.")

"""Types shared by every kind: conditions, references, time periods, money; and how a bad spec is reported.

These pydantic models are the single source of truth for the API: `controller.crdgen`
turns them into the CRDs in crds/, and the controller parses objects with them.
Every field carries a description because `kubectl explain` shows it to users.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

GROUP = "telco.intent.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "telco"

# A condition message names at most this many bad fields: enough to fix the spec, short enough to read.
MAX_FIELD_ERRORS = 5


def validation_message(exc: ValidationError) -> str:
    """One line naming each bad field of a spec (as `spec.a.b`) and what was expected."""
    parts = [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:MAX_FIELD_ERRORS]]
    return "; ".join(parts)


# Kubernetes object names (DNS-1123 subdomain) and labels (DNS-1123 label).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Device interface names as vendors spell them (Ethernet1, ge-0/0/1, GigabitEthernet0/0/0/1).
# Brackets, '=', '*', spaces and quotes are excluded: they break gNMI path syntax.
INTERFACE_NAME = r"^[A-Za-z][A-Za-z0-9._:/-]*$"
# Non-negative decimal with at most 6 fractional digits, no exponent, no sign.
DECIMAL = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$"
PERCENT = r"^(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)$"
CURRENCY = r"^[A-Z]{3}$"
IPV4_CIDR = (
    r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$"
)
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

DecimalString = Annotated[
    str,
    Field(
        pattern=DECIMAL,
        max_length=24,
        description='A non-negative decimal number written as a string, e.g. "49.90" (never a float).',
    ),
]


class ApiModel(BaseModel):
    """Base of every API type: unknown fields are errors, names are the wire names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(ApiModel):
    """One aspect of the object's state, shaped like metav1.Condition."""

    type: str = Field(
        description="Kind of condition in CamelCase, e.g. Ready, Progressing, Degraded.",
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        max_length=64,
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )
    lastTransitionTime: datetime = Field(description="When status last changed (not refreshed otherwise).")
    reason: str = Field(
        description="Programmatic reason for the last transition, one CamelCase word.",
        pattern=CONDITION_REASON,
        max_length=1024,
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        description="Current conditions; Ready summarises the others.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class TimePeriod(ApiModel):
    """A span of time; either bound may be open."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.startDateTime) || !has(self.endDateTime)"
                    " || timestamp(self.endDateTime) > timestamp(self.startDateTime)",
                    "message": "endDateTime must be after startDateTime",
                    "fieldPath": ".endDateTime",
                }
            ]
        }
    )

    startDateTime: datetime | None = Field(default=None, description="Start (RFC 3339), inclusive.")
    endDateTime: datetime | None = Field(default=None, description="End (RFC 3339), exclusive.")


class Money(ApiModel):
    """An amount of money: a decimal string and an ISO 4217 currency code."""

    unit: str = Field(pattern=CURRENCY, min_length=3, max_length=3, description="ISO 4217 currency code, e.g. EUR.")
    value: DecimalString


class LocalObjectReference(ApiModel):
    """A reference to an object by name."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the referenced object.")


class SecretReference(ApiModel):
    """A reference to a Secret; cluster-scoped objects must name its namespace."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")
    namespace: str = Field(max_length=63, pattern=DNS_LABEL, description="Namespace of the Secret.")


class PrinterColumn(BaseModel):
    """An additionalPrinterColumn: what `kubectl get` shows for a kind."""

    name: str
    jsonPath: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str
    priority: int = 0


class CustomResource(ApiModel):
    """Base of the five kinds. Class variables describe the CRD; fields describe the object."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[list[str]]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]]
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]]

    apiVersion: str = Field(default=API_VERSION, description="API version of this object.")
    kind: str = Field(description="Kind of this object.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")


def ready_column() -> PrinterColumn:
    return PrinterColumn(
        name="Ready",
        jsonPath='.status.conditions[?(@.type=="Ready")].status',
        description="Whether the object is Ready.",
    )


def reason_columns() -> list[PrinterColumn]:
    """Why an object is (not) Ready, beside READY: the reason always, the message with -o wide."""
    return [
        PrinterColumn(
            name="Reason",
            jsonPath='.status.conditions[?(@.type=="Ready")].reason',
            description="Why the object is or is not Ready (the Ready condition's reason).",
        ),
        PrinterColumn(
            name="Message",
            jsonPath='.status.conditions[?(@.type=="Ready")].message',
            description="The Ready condition's message: what is wrong and what to do.",
            priority=1,
        ),
    ]


def age_column() -> PrinterColumn:
    return PrinterColumn(
        name="Age", jsonPath=".metadata.creationTimestamp", type="date", description="Time since creation."
    )

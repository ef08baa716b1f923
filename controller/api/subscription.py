"""Subscription (TMF637 Product): a customer's order of an offering at a site."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import JsonDict

from .common import (
    DNS_LABEL,
    ApiModel,
    Conditions,
    CustomResource,
    LocalObjectReference,
    PrinterColumn,
    age_column,
    ready_column,
)
from .networkservice import ENDPOINTS_UNIQUE, Endpoint

SubscriptionState = Literal[
    "created",
    "pendingActive",
    "active",
    "suspended",
    "pendingTerminate",
    "terminated",
    "cancelled",
    "aborted",
]
BILLING_ACCOUNT = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"


class BillingAccountRef(ApiModel):
    """The account charges go to (TMF666 BillingAccount reference)."""

    id: str = Field(max_length=63, pattern=BILLING_ACCOUNT, description="Billing account identifier.")
    timeZone: str = Field(
        default="UTC",
        max_length=64,
        pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$",
        description="IANA time zone in which the account's billing periods start and end.",
    )


class RelatedParty(ApiModel):
    """A party related to the order, e.g. the customer."""

    role: str = Field(max_length=64, description="Role of the party, e.g. customer.")
    name: str = Field(max_length=256, description="Name of the party.")


IMMUTABLE: JsonDict = {"rule": "self == oldSelf", "message": "is immutable; create a new Subscription instead"}


class SubscriptionSpec(ApiModel):
    """The order: which offering, for whom, where and when."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.requestedStartDate) || !has(self.requestedTerminationDate)"
                    " || timestamp(self.requestedTerminationDate) > timestamp(self.requestedStartDate)",
                    "message": "requestedTerminationDate must be after requestedStartDate",
                    "fieldPath": ".requestedTerminationDate",
                },
                {
                    "rule": "!has(oldSelf.desiredState) || oldSelf.desiredState != 'terminated'"
                    " || self.desiredState == 'terminated'",
                    "message": "a terminated subscription cannot be reactivated",
                    "fieldPath": ".desiredState",
                },
            ]
        }
    )

    productOffering: LocalObjectReference = Field(
        description="The ProductOffering ordered.",
        json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]},
    )
    billingAccount: BillingAccountRef = Field(
        description="Who pays.", json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]}
    )
    relatedParty: list[RelatedParty] = Field(default_factory=list, max_length=8, description="Related parties.")
    endpoints: list[Endpoint] = Field(
        min_length=1,
        max_length=8,
        description="The customer site's attachments (device, port, VLAN, address).",
        json_schema_extra={"x-kubernetes-validations": [ENDPOINTS_UNIQUE]},
    )
    vrf: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL, description="VRF for l3vpn offerings.")
    requestedStartDate: datetime | None = Field(
        default=None, description="Earliest activation; unset means as soon as possible."
    )
    requestedTerminationDate: datetime | None = Field(
        default=None, description="When the service is to be removed; unset means open-ended."
    )
    desiredState: Literal["active", "suspended", "terminated"] = Field(
        default="active", description="What the customer wants now; terminated is final."
    )


class SubscriptionStatus(ApiModel):
    """Lifecycle, service and billing state of the order."""

    observedGeneration: int | None = Field(default=None, description="Generation last processed.")
    conditions: Conditions = Field(default_factory=list)
    state: SubscriptionState | None = Field(default=None, description="TMF637 product status.")
    startDate: datetime | None = Field(
        default=None, description="When its NetworkService first became Ready (billing starts here)."
    )
    terminationDate: datetime | None = Field(default=None, description="When the service was removed.")
    realizingService: LocalObjectReference | None = Field(
        default=None, description="The NetworkService that realizes this subscription."
    )
    nextBillDate: datetime | None = Field(default=None, description="End of the current billing period.")


class Subscription(CustomResource):
    """A customer's order of a ProductOffering at a site (TMF637 Product); owns a NetworkService."""

    KIND: ClassVar[str] = "Subscription"
    PLURAL: ClassVar[str] = "subscriptions"
    SHORT_NAMES: ClassVar[list[str]] = ["sub"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        PrinterColumn(name="State", jsonPath=".status.state", description="TMF637 status."),
        PrinterColumn(name="Offering", jsonPath=".spec.productOffering.name", description="Offering ordered."),
        PrinterColumn(name="Account", jsonPath=".spec.billingAccount.id", description="Billing account."),
        PrinterColumn(
            name="Service-Ready",
            jsonPath='.status.conditions[?(@.type=="ServiceReady")].status',
            description="Whether its NetworkService is Ready.",
        ),
        PrinterColumn(name="Since", jsonPath=".status.startDate", type="date", description="Billing start."),
        PrinterColumn(name="Next-Bill", jsonPath=".status.nextBillDate", description="Next bill date.", priority=1),
        age_column(),
    ]

    kind: Literal["Subscription"] = Field(default="Subscription", description="Kind of this object.")
    spec: SubscriptionSpec = Field(description="Desired state: the order.")
    status: SubscriptionStatus | None = Field(default=None, description="Observed state.")

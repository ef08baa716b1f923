"""Subscription (TMF637 Product): a customer's order of an offering at a site."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

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
    reason_columns,
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


# -- billing state (written by the controller in the same resourceVersion-checked write) -----

OCTETS = r"^(0|[1-9][0-9]{0,19})$"


class LedgerInterval(ApiModel):
    """A span during which a condition held (UTC, whole seconds); end is unset while it still holds."""

    start: datetime = Field(description="When the condition began to hold (inclusive).")
    end: datetime | None = Field(default=None, description="When it stopped holding (exclusive); unset while it holds.")


class ServiceLedger(ApiModel):
    """Recorded transitions that charges derive from: billable time is active ∩ ready from startDate."""

    startDate: datetime | None = Field(
        default=None, description="First moment the subscription was active and its service Ready."
    )
    active: list[LedgerInterval] = Field(
        default_factory=list,
        max_length=128,
        description="Intervals in which the subscription was active (not suspended, not terminated).",
    )
    ready: list[LedgerInterval] = Field(
        default_factory=list, max_length=128, description="Intervals in which its NetworkService was Ready."
    )
    billedThrough: datetime | None = Field(
        default=None,
        description="History before this instant was invoiced and compacted away; it can no longer change.",
    )


class OutboxEvent(ApiModel):
    """A billing fact recorded as a CloudEvent, waiting to be delivered to every sink."""

    id: str = Field(max_length=64, description="CloudEvents id: a UUIDv5 of (subscription uid, fact, period).")
    type: str = Field(max_length=128, description="CloudEvents type, e.g. dev.intent.telco.subscription.activated.v1.")
    source: str = Field(max_length=512, description="CloudEvents source: the Subscription's API path.")
    subject: str | None = Field(default=None, max_length=253, description="CloudEvents subject.")
    time: datetime = Field(description="When the fact occurred (not when it was emitted).")
    data: dict[str, Annotated[str, Field(max_length=512)]] = Field(
        default_factory=dict, max_length=16, description="Event data; amounts are decimal strings."
    )
    queuedAt: datetime = Field(description="When the event entered the outbox.")


class Outbox(ApiModel):
    """Durable outbox: events recorded with the state change, removed once every sink has them."""

    pending: list[OutboxEvent] = Field(
        default_factory=list,
        max_length=64,
        description="Events not yet delivered to every sink, oldest first.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )
    deliveredCount: int = Field(default=0, ge=0, description="Events delivered to every sink so far.")
    recentlyDelivered: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=64, description="Ids delivered most recently (adding them again is a no-op)."
    )


class UsageCounter(ApiModel):
    """The last sample of one device octet counter."""

    key: str = Field(max_length=256, description="Counter identity, e.g. device/port/vlan/in.")
    octets: str = Field(pattern=OCTETS, max_length=20, description="Counter value in octets (decimal string).")
    time: datetime = Field(description="When the sample was taken.")


class UsageWindow(ApiModel):
    """Octets measured during one billing period (not yet invoiced)."""

    start: datetime = Field(description="Start of the billing period (inclusive).")
    end: datetime = Field(description="End of the billing period (exclusive).")
    octets: str = Field(pattern=OCTETS, max_length=20, description="Octets measured in it (decimal string).")


class UsageMeter(ApiModel):
    """Usage measured from device counters, per billing period."""

    counters: list[UsageCounter] = Field(default_factory=list, max_length=32, description="Last sample per counter.")
    windows: list[UsageWindow] = Field(
        default_factory=list, max_length=24, description="Measured octets per billing period, oldest first."
    )


class PaymentHold(ApiModel):
    """The subscription is suspended because invoices of its account are overdue."""

    since: datetime = Field(description="When the hold was decided.")
    invoices: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list, max_length=16, description="The overdue invoices that caused it."
    )


class SubscriptionBilling(ApiModel):
    """Billing state of the subscription; every change is written together with the events it implies."""

    ledger: ServiceLedger = Field(default_factory=ServiceLedger, description="Active and Ready intervals.")
    outbox: Outbox = Field(default_factory=Outbox, description="Billing events waiting for delivery.")
    usage: UsageMeter = Field(default_factory=UsageMeter, description="Measured traffic.")
    chargedThrough: datetime | None = Field(
        default=None, description="End of the last closed billing period whose charge events are recorded."
    )
    paymentHold: PaymentHold | None = Field(
        default=None, description="Set while suspended for non-payment; cleared when the account is settled."
    )


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
    billing: SubscriptionBilling | None = Field(
        default=None, description="Service ledger, usage meter and event outbox billing derives from."
    )


class Subscription(CustomResource):
    """A customer's order of a ProductOffering at a site (TMF637 Product); owns a NetworkService."""

    KIND: ClassVar[str] = "Subscription"
    PLURAL: ClassVar[str] = "subscriptions"
    SHORT_NAMES: ClassVar[list[str]] = ["sub"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        *reason_columns(),
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

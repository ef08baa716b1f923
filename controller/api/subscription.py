"""Subscription (TMF637 Product): a customer's order of an offering at a site."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
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
from .productoffering import ProductOfferingPrice, ServiceCandidate, ServiceLevelAgreement

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
    """Deprecated inline account (an id and a time zone, no currency, tax or terms): use billingAccountRef."""

    id: str = Field(max_length=63, pattern=BILLING_ACCOUNT, description="Billing account identifier.")
    timeZone: str = Field(
        default="UTC",
        max_length=64,
        # Only the characters zone names use; whether the zone exists is the zone database's call (the
        # admission webhook and billing/periods.py ask it): a pattern refused EST5EDT, admitted Etc/GMT+13.
        pattern=r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$",
        description="IANA time zone in which the account's billing periods start and end, as the time zone"
        " database (tzdata) lists it, e.g. Europe/Paris or EST5EDT.",
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
    readyUnknown: list[LedgerInterval] = Field(
        default_factory=list,
        max_length=128,
        description="Stretches whose Ready state was lost (the NetworkService changed more often than its"
        " status.readyTransitions keeps while the controller could not see it): recorded as not Ready.",
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
    proof: str | None = Field(
        default=None,
        max_length=96,
        description="Proof of origin: v1:<key id>:<HMAC-SHA-256 of id, source, subject, type, time and data>"
        " under the controller's billing signing key. Entries without a valid one are quarantined, never sent.",
    )


class QuarantinedEvent(OutboxEvent):
    """An outbox entry set aside undelivered: it has no valid proof of origin (docs/billing.md)."""

    reason: Literal["Unsigned", "UnknownKey", "BadProof"] = Field(description="Why its proof was not accepted.")
    quarantinedAt: datetime = Field(description="When the controller set it aside.")


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
    quarantined: list[QuarantinedEvent] = Field(
        default_factory=list,
        max_length=64,
        description="Entries found without a valid proof of origin: never delivered, kept for an operator to"
        " inspect; annotation telco.intent.dev/release-quarantined (ids, comma-separated) re-signs and sends them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )


class UsageCounter(ApiModel):
    """The last sample of one device octet counter."""

    key: str = Field(max_length=256, description="Counter identity, e.g. device/port/vlan/in.")
    octets: str = Field(pattern=OCTETS, max_length=20, description="Counter value in octets (decimal string).")
    time: datetime = Field(description="When the sample was taken.")


class UsageWindow(ApiModel):
    """Octets measured during one billing period, or the part of one between two offering versions whose usage
    prices differ (not yet invoiced)."""

    start: datetime = Field(description="Start of the billing period or of its part (inclusive).")
    end: datetime = Field(description="End of the billing period or of its part (exclusive).")
    octets: str = Field(pattern=OCTETS, max_length=20, description="Octets measured in it (decimal string).")


class UsageMeter(ApiModel):
    """Usage measured from device counters, per billing period."""

    counters: list[UsageCounter] = Field(default_factory=list, max_length=32, description="Last sample per counter.")
    windows: list[UsageWindow] = Field(
        default_factory=list,
        max_length=40,
        description="Measured octets per billing period (a period in which the usage price changed: per part),"
        " oldest first.",
    )


class PaymentHold(ApiModel):
    """The subscription is suspended because invoices of its account are overdue."""

    since: datetime = Field(description="When the hold was decided.")
    invoices: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list, max_length=16, description="The overdue invoices that caused it."
    )


class PlanVersion(ApiModel):
    """The offering version a subscription was on from `since`: the prices, SLA and template in force then.

    A copy, so that editing (or deleting) the ProductOffering never re-rates time already delivered."""

    offering: str = Field(max_length=253, description="The ProductOffering's name.")
    revision: str = Field(max_length=64, description="Digest of the prices, SLA, template and rate recorded here.")
    since: datetime | None = Field(
        default=None, description="When this version took effect; unset for the first (from the start)."
    )
    bandwidthMbps: int | None = Field(
        default=None, ge=1, le=400_000, description="The rate chosen by spec.bandwidthMbps; unset: the template's."
    )
    serviceCandidate: ServiceCandidate = Field(description="The network template provisioned in this version.")
    productOfferingPrice: list[ProductOfferingPrice] = Field(
        min_length=1, max_length=16, description="The prices rated in this version."
    )
    serviceLevelAgreement: ServiceLevelAgreement | None = Field(default=None, description="The SLA in this version.")


class PendingChange(ApiModel):
    """An order change not yet in force: a downgrade waiting for the period end, or one that was refused."""

    direction: Literal["upgrade", "downgrade"] = Field(description="Whether the change raises or lowers the plan.")
    offering: str = Field(max_length=253, description="The ProductOffering changed to.")
    bandwidthMbps: int | None = Field(default=None, ge=1, le=400_000, description="The rate changed to.")
    state: Literal["scheduled", "refused"] = Field(description="scheduled: takes effect at effective; refused: never.")
    effective: datetime | None = Field(default=None, description="When a scheduled change takes effect.")
    message: str = Field(default="", max_length=1024, description="Why and when, in words.")


class TemplateRollout(ApiModel):
    """How the latest edit of the offering's serviceCandidate reaches this subscription."""

    policy: Literal["newOrdersOnly", "nextPeriod", "immediate"] = Field(description="The offering's rolloutPolicy.")
    state: Literal["current", "held", "scheduled"] = Field(
        description="current: provisioned with the offering's template; held: kept on its own (newOrdersOnly);"
        " scheduled: applied at effective."
    )
    revision: str = Field(max_length=64, description="The offering revision whose template is held or scheduled.")
    effective: datetime | None = Field(default=None, description="When a scheduled template is applied.")
    message: str = Field(default="", max_length=1024, description="What is provisioned and why.")


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
    timeZone: str | None = Field(
        default=None,
        max_length=64,
        description="The account time zone billing periods are cut in, recorded at first use so that a BillingAccount"
        " deleted later cannot move them.",
    )
    plans: list[PlanVersion] = Field(
        default_factory=list,
        max_length=16,
        description="The offering versions in force, oldest first; each interval is rated at the version in force"
        " during it. Versions that ended before ledger.billedThrough are dropped with the ledger history.",
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
                    "rule": "has(self.billingAccount) != has(self.billingAccountRef)",
                    "message": "exactly one of billingAccountRef (a BillingAccount) and the deprecated inline"
                    " billingAccount is required",
                    "fieldPath": ".billingAccountRef",
                },
                {
                    "rule": "has(self.billingAccountRef) == has(oldSelf.billingAccountRef)",
                    "message": "the paying account is immutable; create a new Subscription instead",
                    "fieldPath": ".billingAccountRef",
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
        description="The ProductOffering ordered. Changing it on a live subscription is an upgrade or downgrade"
        " (TMF622 modify): see the offering's changePolicy and status.pendingChange.",
    )
    billingAccount: BillingAccountRef | None = Field(
        default=None,
        description="Deprecated: an inline account id and time zone, billed with the controller's tax flags."
        " Use billingAccountRef.",
        json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]},
    )
    billingAccountRef: LocalObjectReference | None = Field(
        default=None,
        description="The BillingAccount in this namespace that pays: its currency, time zone, tax and terms apply.",
        json_schema_extra={"x-kubernetes-validations": [IMMUTABLE]},
    )
    relatedParty: list[RelatedParty] = Field(default_factory=list, max_length=8, description="Related parties.")
    endpoints: list[Endpoint] = Field(
        min_length=1,
        max_length=8,
        description="The customer site's attachments (device, port, VLAN, address).",
        json_schema_extra={"x-kubernetes-validations": [ENDPOINTS_UNIQUE]},
    )
    vrf: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL, description="VRF for l3vpn offerings.")
    bandwidthMbps: int | None = Field(
        default=None,
        ge=1,
        le=400_000,
        description="Committed rate chosen among the offering's serviceCandidate.bandwidthOptionsMbps; unset: the"
        " offering's bandwidthMbps.",
    )
    requestedStartDate: datetime | None = Field(
        default=None, description="Earliest activation; unset means as soon as possible."
    )
    requestedTerminationDate: datetime | None = Field(
        default=None, description="When the service is to be removed; unset means open-ended."
    )
    desiredState: Literal["active", "suspended", "terminated"] = Field(
        default="active", description="What the customer wants now; terminated is final."
    )

    @model_validator(mode="after")
    def _one_account(self) -> SubscriptionSpec:
        if (self.billingAccount is None) == (self.billingAccountRef is None):
            raise ValueError(
                "exactly one of billingAccountRef (a BillingAccount) and the deprecated inline billingAccount"
                " is required"
            )
        return self

    @property
    def account_id(self) -> str:
        """The paying account: the BillingAccount's name, or the deprecated inline id."""
        if self.billingAccountRef is not None:
            return self.billingAccountRef.name
        assert self.billingAccount is not None
        return self.billingAccount.id

    @property
    def inline_time_zone(self) -> str | None:
        """The deprecated inline account's time zone (None when the account is a BillingAccount)."""
        return self.billingAccount.timeZone if self.billingAccount is not None else None


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
    pendingChange: PendingChange | None = Field(
        default=None, description="A change of offering or rate that is scheduled (downgrade) or was refused."
    )
    templateRollout: TemplateRollout | None = Field(
        default=None, description="Whether the offering's current serviceCandidate is provisioned, held or scheduled."
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
        PrinterColumn(name="Account", jsonPath=".spec.billingAccountRef.name", description="Billing account."),
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

"""ProductOffering (TMF620): what can be sold, at what price, with what SLA and network template."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import JsonDict

from .common import (
    PERCENT,
    ApiModel,
    Conditions,
    CustomResource,
    Money,
    PrinterColumn,
    TimePeriod,
    age_column,
    ready_column,
    reason_columns,
)

LifecycleStatus = Literal["In Study", "In Design", "In Test", "Launched", "Active", "Retired", "Obsolete"]
ServiceType = Literal["internetAccess", "l2vpn", "l3vpn"]
CommittedMbps = Annotated[int, Field(ge=1, le=400_000, description="Committed rate (CIR) in Mbit/s.")]
PeakMbps = Annotated[
    int | None, Field(ge=1, le=400_000, description="Peak rate (PIR) in Mbit/s; defaults to the committed rate.")
]
PEAK_AT_LEAST_COMMITTED: JsonDict = {
    "rule": "!has(self.peakBandwidthMbps) || self.peakBandwidthMbps >= self.bandwidthMbps",
    "message": "peakBandwidthMbps must be at least bandwidthMbps",
    "fieldPath": ".peakBandwidthMbps",
}
DriftPolicy = Literal["revert", "report"]
ChangeTiming = Literal["immediate", "endOfPeriod"]
RolloutPolicy = Literal["newOrdersOnly", "nextPeriod", "immediate"]


class UnitOfMeasure(ApiModel):
    """The quantity a usage price is charged per, e.g. 1 GB."""

    amount: int = Field(default=1, ge=1, le=1_000_000, description="How many units one price applies to.")
    units: Literal["MB", "GB", "TB"] = Field(description="Unit of measured traffic (decimal SI units).")


class ProductOfferingPrice(ApiModel):
    """One price of the offering (TMF620 ProductOfferingPrice)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.priceType != 'recurring' || has(self.recurringChargePeriodType)",
                    "message": "a recurring price needs recurringChargePeriodType",
                    "fieldPath": ".recurringChargePeriodType",
                },
                {
                    "rule": "self.priceType == 'recurring' || !has(self.recurringChargePeriodType)",
                    "message": "recurringChargePeriodType is only for recurring prices",
                    "fieldPath": ".recurringChargePeriodType",
                },
                {
                    "rule": "self.priceType != 'usage' || has(self.unitOfMeasure)",
                    "message": "a usage price needs unitOfMeasure",
                    "fieldPath": ".unitOfMeasure",
                },
                {
                    "rule": "self.priceType == 'discount' ? (has(self.percentage) != has(self.price))"
                    " : (has(self.price) && !has(self.percentage))",
                    "message": "a discount has exactly one of percentage or price; other prices have a price"
                    " and no percentage",
                    "fieldPath": ".price",
                },
            ]
        }
    )

    name: str = Field(max_length=128, description="Name of the price, e.g. Monthly fee.")
    priceType: Literal["recurring", "oneTime", "usage", "discount"] = Field(
        description="recurring (per period), oneTime (at activation), usage (per unitOfMeasure of traffic)"
        " or discount (reduces the recurring charge by percentage or a fixed price while validFor holds)."
    )
    recurringChargePeriodType: Literal["day", "week", "month", "year"] | None = Field(
        default=None, description="Period of a recurring price."
    )
    recurringChargePeriodLength: int = Field(
        default=1, ge=1, le=36, description="How many periods one recurring charge covers."
    )
    price: Money | None = Field(default=None, description="Amount charged (or, for a discount, deducted).")
    percentage: str | None = Field(
        default=None,
        pattern=PERCENT,
        max_length=8,
        description='Discount in percent of the recurring charge, e.g. "20".',
    )
    unitOfMeasure: UnitOfMeasure | None = Field(default=None, description="Usage unit the price applies to.")
    validFor: TimePeriod | None = Field(
        default=None, description="When this price applies (promotions); unset means always."
    )


class ServiceCandidate(ApiModel):
    """The NetworkService template a Subscription to this offering implies."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [PEAK_AT_LEAST_COMMITTED]})

    serviceType: ServiceType = Field(description="Kind of connectivity delivered.")
    bandwidthMbps: CommittedMbps
    peakBandwidthMbps: PeakMbps = None
    driftPolicy: DriftPolicy = Field(
        default="revert", description="What the controller does when the device drifts from intent."
    )
    bandwidthOptionsMbps: list[CommittedMbps] = Field(
        default_factory=list,
        max_length=16,
        description="Other committed rates a Subscription may choose in spec.bandwidthMbps at the same prices"
        " (bandwidthMbps is always allowed).",
    )


class ServiceLevelAgreement(ApiModel):
    """Availability promise and the credit owed when it is missed."""

    availabilityTarget: str = Field(
        pattern=PERCENT, max_length=8, description='Promised availability per billing period in percent, e.g. "99.9".'
    )
    creditPercent: str = Field(
        pattern=PERCENT,
        max_length=8,
        description="Credit in percent of the period's recurring charge per started 0.1 percentage point"
        " of availability below target.",
    )
    creditCapPercent: str = Field(
        default="100", pattern=PERCENT, max_length=8, description="Maximum credit in percent of the recurring charge."
    )


class PaymentPolicy(ApiModel):
    """What happens when invoices for subscriptions to this offering are not paid."""

    suspendOnOverdue: bool = Field(
        default=False, description="Suspend the account's subscriptions when an invoice is overdue."
    )
    gracePeriodDays: int = Field(
        default=14, ge=0, le=365, description="Days after the payment due date before an invoice is overdue."
    )
    paymentTermDays: int = Field(default=30, ge=0, le=365, description="Days from bill date to payment due.")


class ChangePolicy(ApiModel):
    """When a change of a live Subscription away from this offering (or of its bandwidth) takes effect."""

    upgrade: ChangeTiming = Field(
        default="immediate",
        description="A change to a higher recurring price (or, at equal price, a higher rate): immediate (prorated"
        " charge and a credit for the unused part of the period) or endOfPeriod.",
    )
    downgrade: ChangeTiming = Field(
        default="endOfPeriod",
        description="A change to a lower recurring price or rate: endOfPeriod (shown in status.pendingChange until"
        " then) or immediate.",
    )


class ProductOfferingSpec(ApiModel):
    """What can be sold (TMF620 ProductOffering)."""

    name: str = Field(max_length=128, description="Display name of the offering.")
    description: str = Field(default="", max_length=4096, description="What the customer gets.")
    version: str = Field(default="1.0", max_length=32, description="Version of the offering.")
    lifecycleStatus: LifecycleStatus = Field(
        default="Active", description="TMF620 lifecycle status; only Launched or Active offerings sell."
    )
    validFor: TimePeriod | None = Field(
        default=None, description="When the offering can be ordered; unset means always."
    )
    isSellable: bool = Field(default=True, description="Whether new orders are accepted at all.")
    serviceCandidate: ServiceCandidate = Field(description="Network service template.")
    serviceLevelAgreement: ServiceLevelAgreement | None = Field(
        default=None, description="Availability target and credits; unset means no SLA."
    )
    productOfferingPrice: list[ProductOfferingPrice] = Field(
        min_length=1, max_length=16, description="Prices; all prices of an offering share one currency."
    )
    paymentPolicy: PaymentPolicy = Field(
        default_factory=PaymentPolicy, description="Payment terms and what non-payment does."
    )
    changePolicy: ChangePolicy = Field(
        default_factory=ChangePolicy, description="When upgrades and downgrades from this offering take effect."
    )
    rolloutPolicy: RolloutPolicy = Field(
        default="newOrdersOnly",
        description="How an edit of serviceCandidate reaches existing Subscriptions: newOrdersOnly (never; they keep"
        " the template they were provisioned with), nextPeriod (each at the start of its next billing period) or"
        " immediate. Price edits never re-rate delivered time: they apply from the moment the controller sees them"
        " (or from a price's validFor).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.productOfferingPrice.all(p, !has(p.price) ||"
                    " self.productOfferingPrice.all(q, !has(q.price) || q.price.unit == p.price.unit))",
                    "message": "all prices of an offering must use one currency",
                    "fieldPath": ".productOfferingPrice",
                },
                {
                    "rule": "self.productOfferingPrice.exists(p, p.priceType == 'recurring')",
                    "message": "an offering needs at least one recurring price",
                    "fieldPath": ".productOfferingPrice",
                },
            ]
        }
    )


class ProductOfferingStatus(ApiModel):
    """What the controller observed about the offering."""

    observedGeneration: int | None = Field(default=None, description="Generation last processed.")
    conditions: Conditions = Field(default_factory=list)
    sellable: bool | None = Field(default=None, description="Whether new Subscriptions are accepted now.")
    sellableReason: str | None = Field(default=None, max_length=1024, description="Why (not) sellable.")
    activeSubscriptions: int | None = Field(default=None, ge=0, description="Subscriptions not yet terminated.")


class ProductOffering(CustomResource):
    """A catalog entry (TMF620 ProductOffering): prices, SLA and the network service it implies."""

    KIND: ClassVar[str] = "ProductOffering"
    PLURAL: ClassVar[str] = "productofferings"
    SHORT_NAMES: ClassVar[list[str]] = ["offering", "pof"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Cluster"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        *reason_columns(),
        PrinterColumn(name="Lifecycle", jsonPath=".spec.lifecycleStatus", description="TMF620 status."),
        PrinterColumn(name="Sellable", jsonPath=".status.sellable", type="boolean", description="Orderable now."),
        PrinterColumn(name="Service", jsonPath=".spec.serviceCandidate.serviceType", description="Service type."),
        PrinterColumn(name="Mbps", jsonPath=".spec.serviceCandidate.bandwidthMbps", type="integer", description="CIR."),
        PrinterColumn(
            name="Subscriptions",
            jsonPath=".status.activeSubscriptions",
            type="integer",
            description="Subscriptions not terminated.",
        ),
        age_column(),
    ]

    kind: Literal["ProductOffering"] = Field(default="ProductOffering", description="Kind of this object.")
    spec: ProductOfferingSpec = Field(description="Desired state: the offering as published.")
    status: ProductOfferingStatus | None = Field(default=None, description="Observed state.")

"""Invoice (TMF678 CustomerBill): the bill for an account and period."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from .common import (
    CURRENCY,
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
from .subscription import BILLING_ACCOUNT

InvoiceState = Literal["new", "onHold", "validated", "sent", "partiallyPaid", "settled"]
SIGNED_DECIMAL = r"^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$"


class SignedMoney(ApiModel):
    """An amount that may be negative (credits, discounts, credit balances) and an ISO 4217 currency."""

    unit: str = Field(pattern=CURRENCY, min_length=3, max_length=3, description="ISO 4217 currency code, e.g. EUR.")
    value: str = Field(
        pattern=SIGNED_DECIMAL,
        max_length=25,
        description='A decimal number written as a string, negative for credits, e.g. "-4.99" (never a float).',
    )


class BillingPeriod(TimePeriod):
    """The period an invoice covers; both bounds are required."""

    model_config = ConfigDict(
        json_schema_extra={"required": ["startDateTime", "endDateTime"]},
    )


class Payment(ApiModel):
    """A payment received against the invoice (how payments are recorded)."""

    id: str = Field(max_length=128, description="Payment reference, unique per invoice.")
    amount: Money = Field(description="Amount paid.")
    date: datetime = Field(description="When the payment was received.")


class InvoiceSpec(ApiModel):
    """Which account and period to bill. Only payments may be added after creation."""

    billingAccount: str = Field(
        max_length=63,
        pattern=BILLING_ACCOUNT,
        description="Billing account id.",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
    )
    billingPeriod: BillingPeriod = Field(
        description="Period covered.",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
    )
    runType: Literal["onCycle", "offCycle"] = Field(
        default="offCycle",
        description="onCycle for scheduled period-end bills (created by the controller), offCycle on demand.",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
    )
    payments: list[Payment] = Field(
        default_factory=list,
        max_length=64,
        description="Payments received; append one to record a payment.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["id"],
        },
    )


class TaxItem(ApiModel):
    """Tax applied to the bill."""

    taxCategory: str = Field(max_length=64, description="Tax category, e.g. VAT.")
    taxRate: str = Field(max_length=16, description="Rate in percent.")
    taxAmount: SignedMoney = Field(description="Tax amount (negative on a bill whose total is a credit).")


class BillLine(ApiModel):
    """One applied rate (TMF678 AppliedCustomerBillingRate)."""

    id: str = Field(max_length=253, description="Deterministic line id: one billing fact, one id.")
    type: Literal["recurringCharge", "oneTimeCharge", "usageCharge", "discount", "credit"] = Field(
        description="Kind of charge."
    )
    name: str = Field(max_length=256, description="What is charged.")
    subscription: str = Field(max_length=253, description="Subscription (namespace/name) charged.")
    periodCoverage: TimePeriod = Field(description="Time the line covers.")
    taxExcludedAmount: SignedMoney = Field(description="Amount before tax; credits and discounts are negative.")
    corrects: str | None = Field(
        default=None, max_length=253, description="Id of the line of an issued bill this line corrects."
    )
    events: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=16, description="Ids of the billing events the line derives from."
    )


class InvoiceStatus(ApiModel):
    """The computed bill."""

    observedGeneration: int | None = Field(default=None, description="Generation last processed.")
    conditions: Conditions = Field(default_factory=list)
    state: InvoiceState | None = Field(default=None, description="TMF678 bill state.")
    billNo: str | None = Field(default=None, max_length=128, description="Bill number.")
    billDate: datetime | None = Field(default=None, description="When the bill was issued.")
    paymentDueDate: datetime | None = Field(default=None, description="When payment is due.")
    taxExcludedAmount: SignedMoney | None = Field(default=None, description="Total before tax.")
    taxIncludedAmount: SignedMoney | None = Field(default=None, description="Total including tax.")
    amountPaid: Money | None = Field(default=None, description="Sum of the payments received.")
    amountDue: SignedMoney | None = Field(
        default=None, description="What remains to be paid; negative when the customer is owed a credit."
    )
    overdue: bool | None = Field(
        default=None, description="Unpaid past paymentDueDate plus the offering's grace period."
    )
    settledDate: datetime | None = Field(default=None, description="When the amount due reached zero.")
    contentDigest: str | None = Field(
        default=None,
        max_length=80,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256 of the lines and totals when validated; an issued bill never changes.",
    )
    taxItem: list[TaxItem] = Field(default_factory=list, max_length=8, description="Taxes.")
    lines: list[BillLine] = Field(default_factory=list, max_length=2000, description="Applied rates.")


class Invoice(CustomResource):
    """The bill for one billing account and period (TMF678 CustomerBill)."""

    KIND: ClassVar[str] = "Invoice"
    PLURAL: ClassVar[str] = "invoices"
    SHORT_NAMES: ClassVar[list[str]] = ["inv", "bill"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        *reason_columns(),
        PrinterColumn(name="Account", jsonPath=".spec.billingAccount", description="Billing account."),
        PrinterColumn(name="Start", jsonPath=".spec.billingPeriod.startDateTime", description="Period start."),
        PrinterColumn(name="End", jsonPath=".spec.billingPeriod.endDateTime", description="Period end."),
        PrinterColumn(name="Total", jsonPath=".status.taxIncludedAmount.value", description="Total incl. tax."),
        PrinterColumn(name="Currency", jsonPath=".status.taxIncludedAmount.unit", description="Currency."),
        PrinterColumn(name="State", jsonPath=".status.state", description="TMF678 state."),
        age_column(),
    ]

    kind: Literal["Invoice"] = Field(default="Invoice", description="Kind of this object.")
    spec: InvoiceSpec = Field(description="Desired state: account and period to bill.")
    status: InvoiceStatus | None = Field(default=None, description="Observed state: the bill.")

"""Invoice (TMF678 CustomerBill): the bill for an account and period."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import JsonDict

from .common import (
    CURRENCY,
    ApiModel,
    Conditions,
    CustomResource,
    PrinterColumn,
    TimePeriod,
    age_column,
    ready_column,
    reason_columns,
)
from .subscription import BILLING_ACCOUNT, Outbox

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


# Payments are money that happened: a recorded entry is never edited or removed. The rule sits on the spec
# (not on the list) because a transition rule on a field does not run when the field itself is removed.
PAYMENTS_APPEND_ONLY: JsonDict = {
    "rule": "!has(oldSelf.payments) || (has(self.payments)"
    " && oldSelf.payments.all(p, self.payments.exists(q, q.id == p.id && q == p)))",
    "message": "recorded payments cannot be edited or removed; record a reversal instead"
    " (a new entry with a negative amount, a reason and reverses: <payment id>)",
    "fieldPath": ".payments",
}


class Payment(ApiModel):
    """A payment received against the invoice, or the reversal of one (a negative amount with a reason).

    Recorded payments are append-only: editing or removing one is refused by the API server."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.amount.value.startsWith('-') || (has(self.reason) && size(self.reason) > 0)",
                    "message": "a reversal (negative amount) needs a reason",
                    "fieldPath": ".reason",
                },
                {
                    "rule": "!has(self.reverses) || self.amount.value.startsWith('-')",
                    "message": "only a reversal (negative amount) can name the payment it reverses",
                    "fieldPath": ".reverses",
                },
            ]
        }
    )

    id: str = Field(max_length=128, description="Payment reference, unique per invoice.")
    amount: SignedMoney = Field(description="Amount paid; negative for a reversal (chargeback, refund, error).")
    date: datetime = Field(description="When the payment (or reversal) took effect.")
    reason: str | None = Field(
        default=None, max_length=256, description="Why: required for a reversal, e.g. chargeback, bounced transfer."
    )
    reverses: str | None = Field(
        default=None, max_length=128, description="Id of the earlier payment this reversal (partly) takes back."
    )


class InvoiceSpec(ApiModel):
    """Which account and period to bill. Only payments may be added after creation."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [PAYMENTS_APPEND_ONLY]})

    billingAccount: str = Field(
        max_length=63,
        pattern=BILLING_ACCOUNT,
        description="Billing account id: the name of a BillingAccount in this namespace (its currency, tax and"
        " payment terms then apply), or the id inline Subscriptions bill.",
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
    onHold: bool = Field(
        default=False,
        description="Hold a draft back (TMF678 onHold): it stays a draft, still recomputed, and is not issued"
        " while true. Ignored once issued.",
    )
    payments: list[Payment] = Field(
        default_factory=list,
        max_length=64,
        description="Payments received, append-only; append one to record a payment, append a negative entry"
        " with a reason to reverse one.",
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
    subscription: str = Field(
        max_length=253,
        description="Subscription (namespace/name) charged; empty on an account-level line (a balance carried).",
    )
    periodCoverage: TimePeriod = Field(description="Time the line covers.")
    taxExcludedAmount: SignedMoney = Field(description="Amount before tax; credits and discounts are negative.")
    corrects: str | None = Field(
        default=None, max_length=253, description="Id of the line of an issued bill this line corrects."
    )
    events: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=16, description="Ids of the billing events the line derives from."
    )


class CarriedBalance(ApiModel):
    """A credit balance moved onto a later bill of the same account."""

    invoice: str = Field(max_length=253, description="The Invoice whose credit line carries the balance.")
    amount: SignedMoney = Field(description="The amount carried (negative: owed to the customer).")


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
    amountPaid: SignedMoney | None = Field(
        default=None, description="Sum of the payments received, reversals deducted (derived from spec.payments)."
    )
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
    sentDate: datetime | None = Field(
        default=None, description="When the issued bill reached every billing sink (its issued CloudEvent delivered)."
    )
    recordedPayments: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list,
        max_length=64,
        description="Ids of the payments whose paymentReceived event is recorded in the outbox.",
    )
    carriedForward: CarriedBalance | None = Field(
        default=None, description="The credit balance of this bill that a later bill of the account took over."
    )
    outbox: Outbox = Field(
        default_factory=Outbox, description="Invoice CloudEvents recorded with the state change, until delivered."
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

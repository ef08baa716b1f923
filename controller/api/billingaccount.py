"""BillingAccount (TMF666): who pays, in which currency, under which tax and payment terms."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .common import (
    CURRENCY,
    PERCENT,
    ApiModel,
    Conditions,
    CustomResource,
    Money,
    PrinterColumn,
    TimePeriod,
    age_column,
    ready_column,
)
from .invoice import SignedMoney

AccountState = Literal["Active", "Suspended", "Closed"]
TIME_ZONE = r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$"


class AccountTaxRate(ApiModel):
    """One tax the account's jurisdiction levies on its bills."""

    taxCategory: str = Field(max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", description="Tax category, e.g. VAT.")
    taxRate: str = Field(max_length=9, pattern=PERCENT, description='Rate in percent, e.g. "20" or "5.5".')


class AccountTaxExemption(ApiModel):
    """An exemption from the taxes of one jurisdiction (TMF666 AccountTaxExemption)."""

    issuingJurisdiction: str = Field(max_length=64, description="The jurisdiction whose taxes are exempt, e.g. FR.")
    certificateNumber: str | None = Field(default=None, max_length=128, description="Proof of exemption.")
    reason: str | None = Field(default=None, max_length=256, description="Why the account is exempt.")
    validFor: TimePeriod | None = Field(default=None, description="When the exemption applies; unset: always.")


class PaymentPlan(ApiModel):
    """How the account pays its bills (TMF666 PaymentPlan, reduced to what billing uses)."""

    planType: Literal["postpaid", "prepaid"] = Field(default="postpaid", description="Type of payment plan.")
    paymentTermDays: int = Field(
        default=30, ge=0, le=365, description="Days from the bill date to paymentDueDate; overrides the offerings'."
    )


class ContactMedium(ApiModel):
    """One way to reach a contact."""

    mediumType: Literal["email", "phone", "postalAddress"] = Field(description="Kind of medium.")
    value: str = Field(max_length=256, description="The address or number.")


class Contact(ApiModel):
    """Who to talk to about the account (TMF666 Contact)."""

    contactName: str = Field(max_length=256, description="A displayable name for the contact.")
    contactType: str = Field(default="primary", max_length=64, description="primary, billing, technical, ...")
    contactMedium: list[ContactMedium] = Field(default_factory=list, max_length=8, description="How to reach them.")


class BillingAccountSpec(ApiModel):
    """The account: its currency and time zone never change; tax, terms, contact and state may."""

    name: str = Field(max_length=256, description="Name of the account, e.g. Acme Corp - Europe.")
    accountType: str = Field(default="business", max_length=64, description="business, individual, wholesale, ...")
    currency: str = Field(
        pattern=CURRENCY,
        min_length=3,
        max_length=3,
        description="ISO 4217 currency every Subscription and bill of the account uses.",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
    )
    timeZone: str = Field(
        default="UTC",
        max_length=64,
        pattern=TIME_ZONE,
        description="IANA time zone in which the account's billing periods start and end.",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
    )
    taxZone: str | None = Field(
        default=None, max_length=64, description="The tax jurisdiction of the account, e.g. FR or US-CA."
    )
    taxRates: list[AccountTaxRate] | None = Field(
        default=None,
        max_length=8,
        description="Taxes of the account's jurisdiction; unset: the controller's --tax-category/--tax-rate;"
        " empty: no tax.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["taxCategory"]},
    )
    taxExemption: list[AccountTaxExemption] = Field(
        default_factory=list, max_length=8, description="Exemptions; one for taxZone valid in a period waives its tax."
    )
    paymentPlan: PaymentPlan | None = Field(default=None, description="Payment terms; unset: the offerings'.")
    contact: list[Contact] = Field(default_factory=list, max_length=8, description="Contacts for the account.")
    creditLimit: Money | None = Field(
        default=None, description="Most the account may owe; more outstanding is reported on the account."
    )
    state: AccountState = Field(
        default="Active",
        description="Active accounts take new orders; Suspended ones keep existing service but take no new order;"
        " Closed ones neither.",
    )


class AccountBalance(ApiModel):
    """One balance of the account (TMF666 AccountBalance)."""

    balanceType: Literal["outstanding", "credit"] = Field(
        description="outstanding: what issued bills still ask; credit: what the account is owed, carried forward."
    )
    amount: SignedMoney = Field(description="The amount.")


class BillingAccountStatus(ApiModel):
    """What the controller derives for the account."""

    observedGeneration: int | None = Field(default=None, description="Generation last processed.")
    conditions: Conditions = Field(default_factory=list)
    subscriptions: int = Field(default=0, ge=0, description="Subscriptions that bill this account.")
    accountBalance: list[AccountBalance] = Field(
        default_factory=list, max_length=4, description="Outstanding and credit balances, from the issued bills."
    )


class BillingAccount(CustomResource):
    """Who pays: currency, tax, payment terms and contact of a customer's bills (TMF666 BillingAccount)."""

    KIND: ClassVar[str] = "BillingAccount"
    PLURAL: ClassVar[str] = "billingaccounts"
    SHORT_NAMES: ClassVar[list[str]] = ["ba"]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    PRINTER_COLUMNS: ClassVar[list[PrinterColumn]] = [
        ready_column(),
        PrinterColumn(name="Name", jsonPath=".spec.name", description="Account name."),
        PrinterColumn(name="Currency", jsonPath=".spec.currency", description="Currency."),
        PrinterColumn(name="State", jsonPath=".spec.state", description="TMF666 state."),
        PrinterColumn(
            name="Subscriptions", jsonPath=".status.subscriptions", type="integer", description="Subscriptions."
        ),
        age_column(),
    ]

    kind: Literal["BillingAccount"] = Field(default="BillingAccount", description="Kind of this object.")
    spec: BillingAccountSpec = Field(description="Desired state: the account.")
    status: BillingAccountStatus | None = Field(default=None, description="Observed state.")

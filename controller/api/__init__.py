"""The API: pydantic models of the six kinds, the single source of truth for the CRDs."""

from .billingaccount import BillingAccount
from .common import API_VERSION, CATEGORY, GROUP, VERSION, Condition, CustomResource
from .invoice import Invoice
from .networkdevice import NetworkDevice
from .networkservice import NetworkService
from .productoffering import ProductOffering
from .subscription import Subscription

KINDS: tuple[type[CustomResource], ...] = (
    ProductOffering,
    Subscription,
    NetworkService,
    NetworkDevice,
    Invoice,
    BillingAccount,
)

__all__ = [
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "KINDS",
    "VERSION",
    "BillingAccount",
    "Condition",
    "CustomResource",
    "Invoice",
    "NetworkDevice",
    "NetworkService",
    "ProductOffering",
    "Subscription",
]

"""The commercial side of the controller, as pure functions: no Kubernetes, no network, no clock.

- `offering`: whether a ProductOffering sells now, and its status.
- `order`: the NetworkService a Subscription implies, order validation, endpoint claims.
- `lifecycle`: the Subscription state machine (TMF637) and the billing facts it records.

Time is always an argument. Billing math and CloudEvents live in `controller.billing`; the
lifecycle only names the facts (kind and occurrence time) the caller turns into events.
"""

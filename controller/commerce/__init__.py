"""The commercial side of the controller: pure functions, and one I/O edge that runs them.

- `offering`: whether a ProductOffering sells now, and its status.
- `order`: the NetworkService a Subscription implies, order validation, endpoint claims.
- `lifecycle`: the Subscription state machine (TMF637) and the billing facts it records.
- `runtime`: the CommerceController (indexes fed by watch events, level-triggered passes that
  call the pure modules and `controller.billing`, status writes, delivery); the only module
  here that talks to Kubernetes, devices or sinks.

In the pure modules time is always an argument. Billing math and CloudEvents live in
`controller.billing`; the lifecycle only names the facts (kind and occurrence time) the caller
turns into events.
"""

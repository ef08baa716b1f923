"""The commercial side of the controller: pure functions, and the I/O edge that runs them.

- `offering`: whether a ProductOffering sells now, and its status.
- `order`: the NetworkService a Subscription implies, order validation, endpoint claims.
- `lifecycle`: the Subscription state machine (TMF637) and the billing facts it records.
- `changes`: offering versions in force, upgrades, downgrades and template rollouts.
- `billing_step`: the billing part of a Subscription pass (ledger, outbox, period close, conditions).

The I/O edge, each part readable alone: `objects` (readers of raw objects), `index` (what the
watch showed, and which work an event implies), `context` (what the controllers share), one
controller per kind on the shared `controller.workqueue.WorkQueue` -- `subscriptions`, `invoices`,
`offerings`, `accounts` -- the `delivery` and `usage` loops, and `runtime`, which wires them.

In the pure modules time is always an argument. Billing math and CloudEvents live in
`controller.billing`; the lifecycle only names the facts (kind and occurrence time) the caller
turns into events.
"""

"""Billing core: pure, typed functions the controller's handlers call (no Kubernetes I/O).

- clock: injectable time.
- money: Decimal money with ISO 4217 minor units.
- periods: calendar-anchored billing periods in the account's time zone.
- ledger: active/Ready intervals of a subscription; billable time and unavailability.
- rating: proration, one-time, usage, discounts, SLA credit.
- invoice: lines, tax, totals, names, state machine, corrections, dunning.
- events: billing facts as CloudEvents with deterministic ids.
- outbox: the durable outbox kept in Subscription status.
- sinks: HTTP and JSON Lines sinks and the Deliverer (the only I/O here).

See docs/billing.md for the rules.
"""

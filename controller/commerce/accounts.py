"""The BillingAccount controller: each account's status (how many subscriptions bill it, its outstanding
and credit balances, whether it is within its credit limit), on the shared work queue."""

from __future__ import annotations

from typing import Any

from ..billing.account import balances
from ..billing.money import Money
from ..conditions import NOT_STALLED, Cond, merge_conditions, stalled
from ..kube import Ref
from ..workqueue import WorkQueue
from .context import Context
from .objects import Key


class AccountController:
    def __init__(self, ctx: Context, queue: WorkQueue[Key]) -> None:
        self.ctx = ctx
        self.queue = queue

    async def publish(self, key: Key) -> None:
        index = self.ctx.index
        body = index.accounts.get(key)
        if body is None:
            return
        now = self.ctx.clock.now()
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        spec, invalid = index.account_spec(key)
        stored = dict(body.get("status") or {})
        count = sum(1 for k in index.by_account.get(key, ()) if k in index.subscriptions)
        status: dict[str, Any] = {"observedGeneration": generation, "subscriptions": count}
        conds: list[Cond] = []
        if spec is None:
            conds.append(Cond("Ready", "False", "InvalidSpec", invalid or "spec does not parse"))
            conds.append(stalled("InvalidSpec", f"{invalid or 'spec does not parse'}; fix the BillingAccount spec"))
        else:
            bills = [b.status for b in index.account_bills(*key) if b.status is not None]
            owed = balances(bills, spec.currency)
            status["accountBalance"] = [
                {"balanceType": "outstanding", "amount": owed.outstanding.to_api()},
                {"balanceType": "credit", "amount": owed.credit.to_api()},
            ]
            takes = {"Active": "takes new orders", "Suspended": "keeps existing service, takes no new orders"}
            conds.append(Cond("Ready", "True", spec.state, f"{spec.state}: {takes.get(spec.state, 'takes no orders')}"))
            if spec.creditLimit is not None:
                limit = Money.from_api(spec.creditLimit, "spec.creditLimit")
                if limit.currency != spec.currency:
                    message = f"spec.creditLimit.unit: {limit.currency} is not the account's {spec.currency}"
                    conds.append(Cond("CreditLimit", "False", "CurrencyMismatch", message))
                elif owed.outstanding.amount > limit.amount:
                    message = f"outstanding {owed.outstanding} exceeds spec.creditLimit {limit}"
                    conds.append(Cond("CreditLimit", "False", "Exceeded", message))
                else:
                    conds.append(Cond("CreditLimit", "True", "Within", f"outstanding {owed.outstanding} of {limit}"))
            over = next((c for c in conds if c.type == "CreditLimit" and c.status == "False"), None)
            # A person must act (collect a payment, raise the limit, fix its currency); orders are not blocked.
            conds.append(
                stalled(f"CreditLimit{over.reason}", f"{over.message}; record a payment or raise spec.creditLimit")
                if over is not None
                else NOT_STALLED
            )
        status["conditions"] = merge_conditions(stored.get("conditions"), conds, generation, now)
        self.ctx.writer.submit(Ref("billingaccounts", key[1], key[0]), status, stored)

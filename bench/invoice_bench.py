"""Invoice run benchmark: the billing math of one month for 1,000 synthetic subscriptions.

    python bench/invoice_bench.py [--subscriptions 1000] [--accounts 10] [--runs 5]

Pure computation, as the controller does it in its billing pass (no API server): each
subscription is a dict shaped like the API object (status.billing with a ledger holding a
mid-month start, a 40-minute outage and a 2-day suspension, and a usage window), its offering
has a monthly price, an installation fee, a 10 % discount, a usage price and an SLA. Timed,
median of `--runs`:

- parse: BillingInput.from_objects for every subscription (what an Invoice pass reads);
- rate: rate_subscription for every subscription and the month;
- invoice: compute_invoice per account (subscriptions spread evenly over `--accounts`);
- close: catch_up per subscription (the period close of the Subscription pass).

Prints a Markdown table and writes bench/results/invoice-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.billing.invoice import BillingInput, TaxRule, catch_up, compute_invoice, rate_subscription
from controller.billing.money import Money
from controller.billing.money import total as sum_money
from controller.billing.periods import Cycle
from controller.times import rfc3339 as iso

RESULTS = Path(__file__).resolve().parent / "results"
TZ = "Europe/Paris"
MONTH = Cycle.of("month", 1, TZ).period_containing(datetime(2026, 11, 15, tzinfo=UTC))


OFFERING: dict[str, Any] = {
    "metadata": {"name": "business-internet-100"},
    "spec": {
        "name": "Business Internet 100",
        "serviceCandidate": {"serviceType": "internetAccess", "bandwidthMbps": 100},
        "serviceLevelAgreement": {"availabilityTarget": "99.9", "creditPercent": "10", "creditCapPercent": "50"},
        "productOfferingPrice": [
            {
                "name": "Monthly fee",
                "priceType": "recurring",
                "recurringChargePeriodType": "month",
                "price": {"unit": "EUR", "value": "49.90"},
            },
            {"name": "Installation", "priceType": "oneTime", "price": {"unit": "EUR", "value": "99.00"}},
            {"name": "Loyalty", "priceType": "discount", "percentage": "10"},
            {
                "name": "Traffic",
                "priceType": "usage",
                "unitOfMeasure": {"amount": 1, "units": "GB"},
                "price": {"unit": "EUR", "value": "0.02"},
            },
        ],
    },
}


def subscription(i: int, accounts: int) -> dict[str, Any]:
    start = MONTH.start + timedelta(days=3, minutes=i % 1440)
    outage = start + timedelta(days=5)
    suspend = start + timedelta(days=9)
    ready = [
        {"start": iso(start), "end": iso(outage)},
        {"start": iso(outage + timedelta(minutes=40)), "end": iso(suspend + timedelta(seconds=5))},
        {"start": iso(suspend + timedelta(days=2, seconds=8))},
    ]
    active = [{"start": iso(start), "end": iso(suspend)}, {"start": iso(suspend + timedelta(days=2))}]
    return {
        "metadata": {"namespace": "bench", "name": f"site-{i:04d}", "uid": str(uuid.UUID(int=i + 1))},
        "spec": {
            "productOffering": {"name": "business-internet-100"},
            "billingAccount": {"id": f"acct-{i % accounts:03d}", "timeZone": TZ},
        },
        "status": {
            "billing": {
                "ledger": {"startDate": iso(start), "active": active, "ready": ready},
                "usage": {
                    "windows": [{"start": iso(MONTH.start), "end": iso(MONTH.end), "octets": str(37_000_000_000 + i)}]
                },
            }
        },
    }


def timed(fn: Any, runs: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    subs = [subscription(i, args.accounts) for i in range(args.subscriptions)]
    now = MONTH.end + timedelta(hours=1)
    taxes = [TaxRule.of("VAT", "20")]

    parse_s, inputs = timed(lambda: [BillingInput.from_objects(s, OFFERING) for s in subs], args.runs)
    rate_s, rated = timed(lambda: [rate_subscription(i, MONTH, now) for i in inputs], args.runs)
    by_account: dict[str, list[BillingInput]] = {}
    for inp in inputs:
        by_account.setdefault(inp.ref.account, []).append(inp)

    def invoices() -> list[Any]:
        return [
            compute_invoice(account, MONTH, group, now, taxes, time_zone=TZ) for account, group in by_account.items()
        ]

    invoice_s, drafts = timed(invoices, args.runs)
    close_s, closes = timed(lambda: [catch_up(i, None, now) for i in inputs], args.runs)
    lines = sum(len(d.lines) for d in drafts)
    events = sum(len(c.events) for c in closes)
    assert sum(len(r.lines) for r in rated) == lines
    for draft in drafts:  # the totals are the sum of the lines, taxes included
        assert draft.lines_total() == draft.tax_excluded
        taxes_total = sum_money([Money.from_api(t.taxAmount, "tax", signed=True) for t in draft.tax_items], "EUR")
        assert draft.tax_included == draft.tax_excluded + taxes_total

    rows = [
        ("parse (BillingInput.from_objects)", parse_s),
        ("rate_subscription", rate_s),
        (f"compute_invoice ({len(by_account)} accounts)", invoice_s),
        ("catch_up (period close)", close_s),
    ]
    n = args.subscriptions
    print(f"\n{n} subscriptions, {len(by_account)} accounts, {lines} invoice lines, {events} period events")
    print(f"Python {platform.python_version()} on {platform.machine()}, median of {args.runs} runs\n")
    print("| step | total | per subscription |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1000:.0f} ms | {seconds / n * 1e6:.0f} µs |")
    total = parse_s + invoice_s
    print(f"| **invoice run (parse + compute_invoice)** | **{total * 1000:.0f} ms** | {total / n * 1e6:.0f} µs |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"invoice-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "subscriptions": n,
                "accounts": len(by_account),
                "lines": lines,
                "events": events,
                "runs": args.runs,
                "python": platform.python_version(),
                "seconds": {name: seconds for name, seconds in rows},
                "invoice_run_seconds": total,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

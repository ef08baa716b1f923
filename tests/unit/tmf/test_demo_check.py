"""The demo's TMF step check (controller/demo_scenario.tmf_checks)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.demo_scenario import tmf_checks

APPLIED = [
    {"kind": "Subscription", "metadata": {"namespace": "acme", "name": "hq"}},
    {"kind": "Subscription", "metadata": {"namespace": "globex", "name": "hq"}},
    {"kind": "BillingAccount", "metadata": {"namespace": "acme", "name": "acme-001"}},
]


@pytest.mark.parametrize(
    "products,ok,says",
    [
        ([{"id": "acme.hq", "status": "active"}, {"id": "globex.hq", "status": "active"}], True, "2 of 2 active"),
        ([{"id": "acme.hq", "status": "active"}], False, "missing globex.hq"),
        ([{"id": "acme.hq", "status": "active"}, {"id": "globex.hq", "status": "pendingActive"}], False, "not active"),
    ],
)
def test_every_subscription_is_an_active_product(products: list[dict[str, Any]], ok: bool, says: str) -> None:
    (check,) = tmf_checks(APPLIED, products)
    assert check.ok is ok and says in check.detail


def test_nothing_applied_is_no_pass() -> None:
    (check,) = tmf_checks([], [])
    assert not check.ok

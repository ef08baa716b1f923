"""`telco-controller status`: the condition columns read each object's own condition of that type."""

from __future__ import annotations

from typing import Any

import pytest

from controller.status import condition_status, render


def obj(name: str, conditions: list[dict[str, Any]] | None, **spec: Any) -> dict[str, Any]:
    status = {} if conditions is None else {"conditions": conditions}
    return {"metadata": {"name": name, "namespace": "team-a"}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("conditions", "type_", "cell"),
    [
        ([{"type": "Ready", "status": "True"}], "Ready", "True"),
        ([{"type": "Reachable", "status": "False"}, {"type": "Ready", "status": "Unknown"}], "Ready", "Unknown"),
        ([{"type": "Reachable", "status": "False"}], "Ready", "-"),  # no condition of that type
        (None, "Ready", "-"),  # no conditions at all
    ],
)
def test_condition_cell(conditions: list[dict[str, Any]] | None, type_: str, cell: str) -> None:
    assert condition_status(obj("x", conditions), type_) == cell


def test_service_row_shows_ready_and_its_reason() -> None:
    failing = obj(
        "vpn-a",
        [
            {"type": "Degraded", "status": "True", "reason": "Flapping"},
            {"type": "Ready", "status": "False", "reason": "PortNotFound"},
        ],
        endpoints=[{"device": "pe1", "port": "Ethernet1", "vlanId": 10}],
    )
    fresh = obj("vpn-b", None, endpoints=[])
    text = render({"subscriptions": [], "networkservices": [failing, fresh], "networkdevices": [], "invoices": []})
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("team-a/")}
    assert rows["team-a/vpn-a"][1:3] == ["False", "PortNotFound"]
    # READY "-", REASON empty, STATE "-", OPERATING "-", no endpoints
    assert rows["team-a/vpn-b"] == ["team-a/vpn-b", "-", "-", "-"]

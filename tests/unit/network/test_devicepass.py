"""The device pass both the reconciler and `python -m controller plan` run: a table of situations."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.intent import Claim, GPath, ServiceKey, extract, merge, normalise, observe, plan, render
from controller.network.devicepass import EPOCH, Member, applied_in_status, device_pass, precedence
from tests.unit.intent.helpers import CREATED, apply_set, device_with_ports, make_spec

A, B = ServiceKey("ns", "a"), ServiceKey("ns", "b")
LATER = CREATED.replace(microsecond=1)


def member(key: ServiceKey, vlan: int = 100, port: str = "Ethernet1", **kw: Any) -> Member:
    spec = make_spec(endpoints=[{"device": "pe1", "port": port, "vlanId": vlan, "ipv4Address": "192.0.2.1/30"}])
    return Member(key, kw.pop("at", CREATED), tuple(render(key, spec)), **kw)


def holding(*members: Member) -> dict[str, Any]:
    """A device that holds the members' configuration."""
    tree = normalise(device_with_ports("Ethernet1", "Ethernet2"))
    intent = merge("pe1", [m_claim(m) for m in members]).intent
    return apply_set(tree, plan(intent, tree))


def m_claim(m: Member) -> Claim:
    return Claim(m.key, m.precedence, m.entries)


def drifted(tree: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    sub = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"
    extract(out, GPath.parse(sub))["config"]["description"] = "by hand"
    return out


CASES = {
    "a new service": ([member(A)], device_with_ports("Ethernet1"), {}, {"send": 3}),
    "a dry run is planned, not sent": ([member(A, dry_run=True)], device_with_ports("Ethernet1"), {},
                                       {"send": 0, "dry": {A: 3}}),
    "a port the device lacks": ([member(A, port="Ethernet9")], device_with_ports("Ethernet1"),
                                {A: "PortNotFound"}, {"send": 0}),
    "the applied holder keeps its claim against a same-second newcomer named first": (
        [member(B, at=precedence(CREATED, True)), member(A, at=CREATED)], "held:B", {A: "ConflictingClaim"},
        {"send": 0}),
    "drift of a verified spec is put back and counted": ([member(A)], "drift:A", {}, {"send": 1, "reverted": {A}}),
    "a difference while a new spec is applied is not drift": ([member(A, settled=False)], "drift:A", {},
                                                              {"send": 1, "reverted": set()}),
    "report policy: drift is reported, not sent": ([member(A, report_only=True)], "drift:A", {},
                                                   {"send": 0, "reverted": set()}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_device_pass(name: str) -> None:
    members, tree, refusals, expect = CASES[name]
    if tree == "held:B":
        tree = holding(member(B))
    elif tree == "drift:A":
        tree = drifted(holding(member(A)))
    result = device_pass("pe1", observe(tree), members)
    assert {k: why[0] for k, why in result.refused.items()} == refusals
    assert len(result.send.operations) == expect["send"], result.send.describe()
    for key, ops in expect.get("dry", {}).items():
        assert len(result.dry_runs[key].operations) == ops
    if "reverted" in expect:
        assert set(result.reverted) == expect["reverted"]


def test_precedence_and_status() -> None:
    assert precedence(LATER, True) == EPOCH and precedence(LATER, False) == LATER
    status = {"endpoints": [{"device": "pe1", "applied": True}, {"device": "pe2", "applied": False}]}
    assert applied_in_status(status, "pe1") and not applied_in_status(status, "pe2")
    assert not applied_in_status({}, "pe1")

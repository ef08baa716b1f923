from __future__ import annotations

import datetime as dt

from controller.network.outcome import EndpointOutcome, Phase, ServiceView, service_status

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def conds(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def view(**kw: object) -> ServiceView:
    base = {"generation": 3, "admin_enabled": True, "dry_run": False}
    base.update(kw)
    return ServiceView(**base)  # type: ignore[arg-type]


def test_applied_and_up_is_ready_and_running() -> None:
    s = service_status(view(), [EndpointOutcome("pe1", "Ethernet1", 10, Phase.APPLIED, "Applied", oper_up=True)], T0)
    assert conds(s)["Ready"] == ("True", "Applied")
    assert (s["state"], s["operatingStatus"], s["observedGeneration"]) == ("active", "running", 3)
    assert s["startDate"] == s["readySince"] == "2026-11-01T12:00:00Z"
    assert s["endpoints"] == [{"device": "pe1", "port": "Ethernet1", "vlanId": 10, "applied": True, "operStatus": "UP"}]


def test_start_date_is_kept_and_ready_since_cleared_when_not_ready() -> None:
    ready = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=True)], T0)
    later = T0 + dt.timedelta(hours=1)
    down = service_status(
        view(current=ready), [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=False)], later
    )
    assert conds(down)["Ready"] == ("False", "OperDown")
    assert down["startDate"] == "2026-11-01T12:00:00Z" and down["readySince"] is None
    assert down["operatingStatus"] == "degraded"


def test_transient_failure_is_progressing_permanent_is_degraded() -> None:
    retry = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.RETRYING, "DeviceUnreachable", "x")], T0)
    assert conds(retry)["Progressing"] == ("True", "DeviceUnreachable")
    assert conds(retry)["Degraded"][0] == "False"
    failed = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.FAILED, "DeviceRejected", "bad")], T0)
    assert conds(failed)["Degraded"] == ("True", "DeviceRejected")
    assert conds(failed)["Progressing"][0] == "False"
    assert failed["endpoints"][0]["lastError"] == "bad"


def test_dry_run_shows_the_plan_as_its_ready_outcome_but_never_starts() -> None:
    # The plan is what a dry run asks for: Ready (GitOps tools see it done), yet nothing was configured.
    plan = [{"op": "update", "device": "pe1", "path": "a/b", "value": "{}"}]
    s = service_status(view(dry_run=True, plan=plan), [EndpointOutcome("pe1", "E1", 10, Phase.DRY_RUN, "DryRun")], T0)
    assert conds(s)["Ready"] == ("True", "DryRun") and s["plan"] == plan
    assert conds(s)["Stalled"][0] == "False"
    assert "startDate" not in s and s["readySince"] is None
    failing = service_status(
        view(dry_run=True, plan=plan), [EndpointOutcome("pe1", "E1", 10, Phase.FAILED, "PortNotFound", "no E1")], T0
    )
    assert conds(failing)["Ready"] == ("False", "PortNotFound")
    assert conds(failing)["Stalled"][0] == "True"


def test_stalled_mirrors_degraded_and_says_what_to_do() -> None:
    down = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=False)], T0)
    stalled = next(c for c in down["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "OperDown")
    assert stalled["message"].startswith("pe1/E1.10: oper-status DOWN; ") and "link is down" in stalled["message"]
    retry = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.RETRYING, "DeviceUnreachable", "x")], T0)
    assert conds(retry)["Stalled"][0] == "False"


def test_disabled_invalid_and_drift() -> None:
    off = service_status(view(admin_enabled=False), [EndpointOutcome("pe1", "E1", 1, Phase.DISABLED, "Applied")], T0)
    assert (off["state"], conds(off)["Ready"]) == ("inactive", ("False", "AdminDisabled"))
    bad = service_status(view(invalid="spec.endpoints: too short"), [], T0)
    assert conds(bad)["Degraded"] == ("True", "InvalidSpec")
    drift = service_status(
        view(), [EndpointOutcome("pe1", "E1", 1, Phase.APPLIED, "Applied", oper_up=True, drift="description")], T0
    )
    assert conds(drift)["DriftDetected"] == ("True", "DriftDetected")
    assert conds(drift)["Ready"][0] == "True"


def test_a_missing_oper_status_is_unknown_not_up() -> None:
    """Issue 14 defect 6: configured without a reported oper-status is not Ready."""
    silent = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied")], T0)
    assert conds(silent)["Ready"] == ("False", "OperStatusUnknown")
    assert conds(silent)["Progressing"] == ("True", "OperStatusUnknown")
    assert "oper-status not reported" in silent["conditions"][0]["message"]
    assert "operStatus" not in silent["endpoints"][0] and silent["readySince"] is None
    # A platform declared never to report it (NetworkDevice reportsOperStatus: false) is Ready on config.
    declared = EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_required=False)
    assert conds(service_status(view(), [declared], T0))["Ready"] == ("True", "Applied")


def test_a_refused_service_claims_no_drift_state() -> None:
    """Issue 14 defect 7: DriftDetected=False/InSync beside DeviceRejected contradicted it."""
    failed = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.FAILED, "DeviceRejected", "bad")], T0)
    assert conds(failed)["DriftDetected"] == ("Unknown", "DeviceRejected")
    invalid = service_status(view(invalid="spec.endpoints: too short"), [], T0)
    assert conds(invalid)["DriftDetected"] == ("Unknown", "InvalidSpec")
    ok = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=True)], T0)
    assert conds(ok)["DriftDetected"] == ("False", "InSync")


def _transitions(status: dict) -> list[tuple[str, bool, str]]:
    return [(t["at"], t["ready"], t["reason"]) for t in status["readyTransitions"]]


def test_each_ready_change_is_listed_in_the_same_status_and_nothing_else_is() -> None:
    up = [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=True)]
    down = [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=False)]
    pending = service_status(view(), [EndpointOutcome("pe1", "E1", 10, Phase.PENDING, "Pending")], T0)
    assert _transitions(pending) == [("2026-11-01T12:00:00Z", False, "Pending")]
    t1, t2, t3 = (T0 + dt.timedelta(seconds=n) for n in (10, 20, 30))
    ready = service_status(view(current=pending), up, t1)
    # the same outcome again, and a reason change without a status change: no new entry
    same = service_status(view(current=ready), up, t2)
    retry = [EndpointOutcome("pe1", "E1", 10, Phase.RETRYING, "DeviceUnreachable", "x")]
    out = service_status(view(current=service_status(view(current=same), down, t2)), retry, t3)
    assert _transitions(same) == _transitions(ready)
    assert _transitions(out) == [
        ("2026-11-01T12:00:00Z", False, "Pending"),
        ("2026-11-01T12:00:10Z", True, "Applied"),
        ("2026-11-01T12:00:20Z", False, "OperDown"),
    ]
    assert out["readyTransitionsDroppedThrough"] is None
    assert service_status(view(current=out), retry, t3) == out  # nothing changed: nothing to write


def test_the_ready_history_is_bounded_and_says_what_it_dropped() -> None:
    from controller.api.networkservice import READY_HISTORY

    up = [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=True)]
    down = [EndpointOutcome("pe1", "E1", 10, Phase.APPLIED, "Applied", oper_up=False)]
    status: dict = {}
    for n in range(READY_HISTORY + 3):
        status = service_status(view(current=status), up if n % 2 else down, T0 + dt.timedelta(seconds=n))
    listed = _transitions(status)
    assert len(listed) == READY_HISTORY
    assert listed[-1] == ("2026-11-01T12:00:10Z", False, "OperDown")
    assert listed[0][0] == "2026-11-01T12:00:03Z"
    assert status["readyTransitionsDroppedThrough"] == "2026-11-01T12:00:02Z"  # the newest one dropped
    assert [t[1] for t in listed] == [n % 2 == 1 for n in range(3, READY_HISTORY + 3)]  # they alternate

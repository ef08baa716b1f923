"""Never run blind (controller/discovery.py): Kopf starts only once discovery serves every kind, and a
start-up scan of Kopf's that still misses them stops the process with exit code 3."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from controller import discovery
from controller.discovery import EXIT_UNRESOLVED, PLURALS, UnresolvedGuard, missing_plurals, wait_for_kinds


def listing(*names: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "resources": [{"name": n} for n in names]}


@pytest.mark.parametrize(
    ("served", "missing"),
    [
        (listing(*PLURALS), []),
        (listing(*PLURALS, "networkservices/status"), []),
        (
            listing("networkservices", "subscriptions"),
            ["billingaccounts", "invoices", "networkdevices", "productofferings"],
        ),
        (listing(), list(PLURALS)),
        ({}, list(PLURALS)),
        (None, list(PLURALS)),
    ],
)
def test_missing_plurals(served: Any, missing: list[str]) -> None:
    assert missing_plurals(served) == missing


def test_the_wait_ends_when_discovery_lists_every_kind_and_says_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [
        (list(PLURALS), "API server unreachable (MaxRetryError)"),
        (list(PLURALS), "discovery does not serve the group yet"),
        (["subscriptions"], "not listed by discovery"),
        ([], "not listed by discovery"),
    ]
    monkeypatch.setattr(discovery, "served_missing", lambda api: answers.pop(0))
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += 20  # a report every 30 s: the first wait, then the third

    with caplog.at_level(logging.INFO, logger="controller.discovery"):
        wait_for_kinds(object(), sleep=sleep, clock=lambda: now[0])
    assert answers == [] and len(slept) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "API server unreachable" in messages[0] and "nothing is served until then" in messages[0]
    assert "not listed by discovery: subscriptions" in messages[1]
    assert messages[2].startswith("API discovery serves telco.intent.dev/v1alpha1 now")


def test_a_kopf_scan_that_misses_our_kinds_stops_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    stops: list[bool] = []
    guard = UnresolvedGuard.install(lambda: stops.append(True))
    kopf_log = logging.getLogger("kopf._core.reactor.observation")
    try:
        kopf_log.warning("Unresolved resources cannot be served (try creating their CRDs): Selector(group='other.io')")
        assert not guard.tripped and stops == []
        with caplog.at_level(logging.ERROR, logger="controller.discovery"):
            kopf_log.warning(
                "Unresolved resources cannot be served (try creating their CRDs): "
                "Selector(group='telco.intent.dev', version='v1alpha1', plural='networkservices')"
            )
            kopf_log.warning("Unresolved resources cannot be served (try creating their CRDs): telco.intent.dev")
        assert guard.tripped and stops == [True], "stopped once"
        assert f"exit code {EXIT_UNRESOLVED}" in caplog.text
    finally:
        kopf_log.removeHandler(guard)

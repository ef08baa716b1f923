"""Reliability suite: which tests run where.

`make test` (CI) runs the fast, robust part of this directory; `make reliability` sets
TELCO_RELIABILITY=full and runs everything, including the slow chaos runs and the tests that
reproduce known controller bugs (they fail until the bug is fixed; docs/reliability.md lists them).
Tests marked `full` are deselected (not skipped) outside the full run.
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("TELCO_RELIABILITY") == "full"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full: only in `make reliability` (slow chaos, or a known controller bug)")
    config.addinivalue_line("markers", "bug(summary): reproduces a controller bug; fails until the bug is fixed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("full") or item.get_closest_marker("bug") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- the fault matrix: recovery times measured by the tests, printed at the end of the run -----------

MATRIX: list[tuple[str, str, float | None, str]] = []  # (case, test node id, seconds, note)
OUTCOMES: dict[str, str] = {}


@pytest.fixture()
def measure(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """`measure(case, seconds, note="")` records a row of the fault matrix."""

    def record(case: str, seconds: float | None, note: str = "") -> None:
        MATRIX.append((case, request.node.nodeid, seconds, note))
        print(f"[matrix] {case}: {'-' if seconds is None else f'{seconds:.2f}s'} {note}")

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        OUTCOMES[item.nodeid] = report.outcome
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if not MATRIX:
        return
    tr = terminalreporter
    tr.write_sep("=", "fault matrix (recovery times measured in this run)")
    for case, nodeid, seconds, note in MATRIX:
        shown = "-" if seconds is None else f"{seconds:7.2f}s"
        tr.write_line(f"{OUTCOMES.get(nodeid, '?'):7} {shown:>9}  {case}  {note}")

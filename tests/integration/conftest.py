"""Integration suite: tests of Argo CD's own engine run only where `make test-argocd-engine` built it.

They are deselected (not skipped) elsewhere: building argo-cd takes about 11 minutes cold, so it has
its own make target, which .ci/run calls after `make test`.
"""

from __future__ import annotations

import os

import pytest

ENGINE = os.environ.get("TELCO_ARGOCD_ENGINE")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "argocd_engine: needs Argo CD's health engine (make test-argocd-engine)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENGINE:
        return
    keep = [item for item in items if not item.get_closest_marker("argocd_engine")]
    drop = [item for item in items if item.get_closest_marker("argocd_engine")]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

"""Shared fixtures: a real Kubernetes API server for the whole run.

The session starts the project's own etcd + kube-apiserver on loopback (built by
`make bin`), or uses the cluster in TEST_KUBECONFIG (kind, or any real cluster).
A control plane that cannot start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from localcluster import ClusterError, LocalCluster
from tests.kube import Kubectl

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis's timing checks are timed assertions: on a shared, loaded machine its input generation
# is slow now and then (a health-check failure, not a property broken), so the suite never times it.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    external = os.environ.get("TEST_KUBECONFIG")
    if external:
        yield Path(external)
        return
    cluster = LocalCluster()
    try:
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"the local control plane could not start: {exc}", pytrace=False)
    try:
        assert cluster.kubeconfig is not None
        yield cluster.kubeconfig
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(kubeconfig)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> Kubectl:
    """The project's CRDs, installed and Established."""
    kubectl.apply_file(ROOT / "crds")
    kubectl.run("wait", "--for=condition=Established", "crd", "-l", "!nothing", "--all", "--timeout=60s")
    return kubectl

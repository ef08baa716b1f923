"""The table of live objects (tests/gitops_cases.py) through the real GitOps libraries, not stand-ins.

- kstatus: sigs.k8s.io/cli-utils' status.Compute (what Flux, kpt and kstatus-based waits use), built
  from the Go module proxy by `make bin/kstatus` (hack/kstatus; seconds once the module cache is warm).
- Argo CD: its own Lua health engine (argo-cd v3 util/lua behind gitops-engine's GetResourceHealth,
  which adds Argo CD's handling of deleting objects), fed the generated argocd-cm. Its cold build
  takes minutes (see docs/deploy.md), so it runs under `make test-argocd-engine`, which sets
  TELCO_ARGOCD_ENGINE to the binary.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.gitops_cases import CASES, NO_STATUS, Case

ROOT = Path(__file__).resolve().parents[2]
CONFIGMAP = ROOT / "deploy" / "argocd" / "argocd-cm-health.yaml"


def _run(argv: list[str], cases: list[Case]) -> dict[str, dict[str, Any]]:
    payload = json.dumps([{"name": c.name, "object": c.obj} for c in cases])
    done = subprocess.run(argv, input=payload, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out: dict[str, dict[str, Any]] = json.loads(done.stdout)
    assert set(out) == {c.name for c in cases}
    return out


@pytest.fixture(scope="module")
def kstatus() -> dict[str, dict[str, Any]]:
    subprocess.run(["make", "-s", "bin/kstatus"], cwd=ROOT, check=True, timeout=900)
    return _run([str(ROOT / "bin" / "kstatus")], CASES + NO_STATUS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kstatus_of_every_live_state(kstatus: dict[str, dict[str, Any]], case: Case) -> None:
    got = kstatus[case.name]
    assert got["status"] == case.kstatus, got
    if case.kstatus == "Failed":
        assert case.says in got["message"] or got["message"] in case.obj["status"]["conditions"][-1]["message"]


@pytest.mark.parametrize("case", NO_STATUS, ids=lambda c: c.name)
def test_kstatus_reads_an_object_without_status_as_current(kstatus: dict[str, dict[str, Any]], case: Case) -> None:
    # kstatus' rule for custom resources without status.observedGeneration or conditions: nothing to
    # wait for. Argo CD waits (Progressing); a Flux health check can pass before the first reconcile.
    assert kstatus[case.name]["status"] == "Current"


@pytest.fixture(scope="module")
def argocd() -> dict[str, dict[str, Any]]:
    engine = os.environ.get("TELCO_ARGOCD_ENGINE", "")
    if not os.access(engine, os.X_OK):  # selected only with the variable set (tests/integration/conftest.py)
        pytest.fail(f"TELCO_ARGOCD_ENGINE={engine!r} is not an executable: run `make test-argocd-engine`")
    return _run([engine, str(CONFIGMAP)], CASES + NO_STATUS)


@pytest.mark.argocd_engine
@pytest.mark.parametrize("case", CASES + NO_STATUS, ids=lambda c: c.name)
def test_argocd_engine_and_sync_waves(argocd: dict[str, dict[str, Any]], case: Case) -> None:
    got = argocd[case.name]
    assert got["status"] == case.argocd, got
    assert case.says in got["message"], got
    # gitops-engine's sync context: Healthy completes the task, Degraded fails it, anything else waits.
    steady = not case.name.endswith(("-deleting", "-stale-generation", "-no-status", "-unprocessed", "-provisioning"))
    if steady and case.argocd != "Progressing":
        assert got["wave"] in ("completes", "fails"), f"a sync wave would wait for ever behind {case.name}"

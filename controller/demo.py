"""`make demo`: the quick start on the embedded default (local control plane + examples).

It grows with the product; today it starts the local control plane (or uses the
current kube context with USE_CURRENT_CONTEXT=1), installs the CRDs, applies the
quick-start scenario and shows what the API server holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from localcluster import ClusterError, LocalCluster

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"


def _kubectl(kubeconfig: Path | None, *args: str) -> str:
    binary = str(ROOT / "bin" / "kubectl") if (ROOT / "bin" / "kubectl").exists() else shutil.which("kubectl")
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(once: bool) -> int:
    cluster: LocalCluster | None = None
    kubeconfig: Path | None = None
    try:
        if os.environ.get("USE_CURRENT_CONTEXT") == "1":
            step("using the current kube context (USE_CURRENT_CONTEXT=1)")
        else:
            step("starting the local control plane (etcd + kube-apiserver on 127.0.0.1)")
            kubeconfig = ROOT / ".local" / "demo-kubeconfig"
            cluster = LocalCluster(kubeconfig=kubeconfig).start()
            print(f"    API server {cluster.server}, kubeconfig {kubeconfig}")
        step("installing the CRDs generated from controller/api")
        _kubectl(kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        _kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        manifests = sorted(QUICKSTART.glob("[0-9]*.yaml"))
        for path in manifests:
            step(f"applying {path.relative_to(ROOT)}")
            _kubectl(kubeconfig, "apply", "--server-side", "-f", str(path))
        step("what the API server now holds (`kubectl get telco -A`)")
        print(_kubectl(kubeconfig, "get", "telco", "-A"))
        print(
            "The controller, device simulator and billing are not wired into the demo yet:\n"
            "objects have no status until the controller runs (see README, Roadmap)."
        )
        if once:
            return 0
        where = f"export KUBECONFIG={kubeconfig}" if kubeconfig else "(current context)"
        print(f"\nExplore: {where}; kubectl get telco -A\nPress Ctrl-C to stop everything.")
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopping")
    except (ClusterError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
    return 0

"""`python -m localcluster up|down|status`: the detached control plane behind `make cluster-up`.

`up` starts a supervisor process that owns etcd and kube-apiserver and returns once
the API server answers /readyz; `down` stops it and waits until both are gone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from .cluster import PROJECT_ROOT, ClusterError, LocalCluster, stop_supervisor, supervise

LOCAL = PROJECT_ROOT / ".local"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localcluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "supervise"])
    parser.add_argument("--dir", type=Path, default=LOCAL, help="state directory (default: .local/)")
    args = parser.parse_args(argv)
    state, kubeconfig, workdir = args.dir / "cluster.json", args.dir / "kubeconfig", args.dir / "cluster"
    if args.command == "supervise":
        cluster = LocalCluster(workdir=workdir, kubeconfig=kubeconfig)
        cluster._owns_workdir = True  # down removes etcd data and certificates too
        supervise(cluster, state)
        return 0
    if args.command == "up":
        return _up(args.dir, state, kubeconfig, workdir)
    if args.command == "down":
        try:
            print(stop_supervisor(state))
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    print(state.read_text() if state.exists() else "down")
    return 0


def _up(directory: Path, state: Path, kubeconfig: Path, workdir: Path) -> int:
    if state.exists():
        print(f"already up; export KUBECONFIG={kubeconfig}")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log = directory / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localcluster", "supervise", "--dir", str(directory)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    while not state.exists():
        if proc.poll() is not None:
            print(f"error: the control plane did not start:\n{log.read_text()}", file=sys.stderr)
            return 1
        if time.monotonic() - started > 120:
            proc.terminate()
            print(f"error: not ready after 120s:\n{log.read_text()}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"control plane ready in {time.monotonic() - started:.1f}s (logs in {workdir})")
    print(f"export KUBECONFIG={kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

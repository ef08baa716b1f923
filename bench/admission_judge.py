"""CPU per admission request in a burst, two checkouts side by side against one API server.

    PATH="$PWD/bin:$PATH" .venv/bin/python bench/admission_judge.py \\
        --variant base=/tmp/base-checkout --variant branch=. --stored 2000 --burst 100 --rounds 2

Starts one local control plane (etcd + kube-apiserver), stores N NetworkServices and N Subscriptions
(4 NetworkDevices, one VLAN and /30 each), then, per round and variant in turn, runs a child process
with that checkout first on its path that judges a burst of R NetworkService creates at once with
`Admission.judge` (the webhook handler's own code, against the real API server, no webhook
registration or HTTP in between) and reports its process CPU per request and the lists it made.
Compare only figures of one run, and note the load average (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API = "telco.intent.dev/v1alpha1"
NS = "bench-admission"


def service(i: int) -> dict[str, Any]:
    ep = {"device": f"pe{i % 4}", "port": "Ethernet1", "vlanId": 1 + i % 4000, "ipv4Address": _ip(10, i)}
    spec = {"serviceType": "internetAccess", "bandwidthMbps": 10, "endpoints": [ep]}
    return {"apiVersion": API, "kind": "NetworkService", "metadata": {"name": f"s{i}", "namespace": NS}, "spec": spec}


def subscription(i: int) -> dict[str, Any]:
    ep = {"device": f"pe{i % 4}", "port": "Ethernet2", "vlanId": 1 + i % 4000, "ipv4Address": _ip(11, i)}
    spec = {"productOffering": {"name": "none"}, "billingAccount": {"id": "a"}, "endpoints": [ep]}
    return {"apiVersion": API, "kind": "Subscription", "metadata": {"name": f"o{i}", "namespace": NS}, "spec": spec}


def _ip(first: int, i: int) -> str:
    return f"{first}.{i // 64 // 256}.{i // 64 % 256}.{i % 64 * 4 + 1}/30"


async def seed(kubeconfig: Path, stored: int) -> None:
    import kubernetes

    from controller.kube import Kube

    kube = Kube(kubernetes.config.new_client_from_config(str(kubeconfig)))
    for d in range(4):
        device = {
            "apiVersion": API,
            "kind": "NetworkDevice",
            "metadata": {"name": f"pe{d}"},
            "spec": {"address": f"10.255.0.{d}", "port": 9339, "credentialsSecretRef": {"name": "n", "namespace": NS}},
        }
        await kube.create(device, "networkdevices", None)
    gate = asyncio.Semaphore(16)

    async def create(body: dict[str, Any], plural: str) -> None:
        async with gate:
            await kube.create(body, plural, NS)

    await asyncio.gather(
        *(create(service(i), "networkservices") for i in range(stored)),
        *(create(subscription(i), "subscriptions") for i in range(stored)),
    )


async def judge(kubeconfig: str, stored: int, burst: int) -> None:
    import kubernetes

    from controller.billing.clock import OffsetClock
    from controller.handlers.admission import Admission
    from controller.kube import Kube

    admission = Admission(Kube(kubernetes.config.new_client_from_config(kubeconfig)), OffsetClock())
    await admission.judge("networkservices", "CREATE", service(stored), None)  # connections, imports
    lists = admission.lists.started
    cpu, wall = time.process_time(), time.monotonic()
    news = (service(stored + 1 + j) for j in range(burst))
    results = await asyncio.gather(
        *(admission.judge("networkservices", "CREATE", s, None) for s in news), return_exceptions=True
    )
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    refused = sum(1 for r in results if r is not None)
    print(
        f"cpu {cpu / burst * 1000:.1f} ms per request, wall {wall:.2f} s, {admission.lists.started - lists} lists,"
        f" {refused} refused"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--stored", type=int, default=2000, help="NetworkServices and Subscriptions stored")
    parser.add_argument("--burst", type=int, default=100, help="NetworkService creates judged at once")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from localcluster import LocalCluster
    from tests.kube import Kubectl

    cluster = LocalCluster()
    cluster.start()
    try:
        assert cluster.kubeconfig is not None
        kubectl = Kubectl(cluster.kubeconfig)
        kubectl.apply_file(ROOT / "crds")
        kubectl.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl.run("create", "namespace", NS)
        asyncio.run(seed(cluster.kubeconfig, args.stored))
        for r in range(args.rounds):
            for label, _, directory in (v.partition("=") for v in args.variant):
                checkout = Path(directory).resolve()
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                child = [
                    sys.executable,
                    __file__,
                    "--judge",
                    str(cluster.kubeconfig),
                    str(args.stored),
                    str(args.burst),
                ]
                out = subprocess.run(child, cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
                line = out.stdout.strip().splitlines()[-1:] or [out.stderr.strip().splitlines()[-1]]
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"round {r} {label}: {line[0]} (load {load})", flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--judge"]:
        asyncio.run(judge(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        main()

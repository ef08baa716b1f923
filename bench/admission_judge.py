"""CPU per admission request in a burst, two checkouts side by side against one API server.

    PATH="$PWD/bin:$PATH" .venv/bin/python bench/admission_judge.py \\
        --variant base=/tmp/base-checkout --variant branch=. --stored 2000 --burst 100 --rounds 2 \\
        --kind networkservices --kind subscriptions

Starts one local control plane (etcd + kube-apiserver), stores N NetworkServices and N Subscriptions
(4 NetworkDevices, one VLAN and /30 each, and one ProductOffering they order), then, per round, kind
and variant in turn, runs a child process with that checkout first on its path that judges a burst of
R creates of that kind at once with `Admission.judge` (the webhook handler's own code, against the
real API server, no webhook registration or HTTP in between) and stores each admitted one, as the
API server would after the webhook (so the revision moves and the watches see the burst, as in a
real one; `--no-create` judges only). It reports its process CPU per request (the client side of the
creates included, the same for every variant), the wall time, the full lists it made and how many
it refused. Each child's objects are deleted before the next. Compare only figures of one run, and
note the load average (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API = "telco.intent.dev/v1alpha1"
NS = "bench-admission"
OFFERING = "bench-fiber"


def service(i: int) -> dict[str, Any]:
    ep = {"device": f"pe{i % 4}", "port": "Ethernet1", "vlanId": 1 + i % 4000, "ipv4Address": _ip(10, i)}
    spec = {"serviceType": "internetAccess", "bandwidthMbps": 10, "endpoints": [ep]}
    return {"apiVersion": API, "kind": "NetworkService", "metadata": {"name": f"s{i}", "namespace": NS}, "spec": spec}


def subscription(i: int) -> dict[str, Any]:
    ep = {"device": f"pe{i % 4}", "port": "Ethernet2", "vlanId": 1 + i % 4000, "ipv4Address": _ip(11, i)}
    spec = {"productOffering": {"name": OFFERING}, "billingAccount": {"id": "a"}, "endpoints": [ep]}
    return {"apiVersion": API, "kind": "Subscription", "metadata": {"name": f"o{i}", "namespace": NS}, "spec": spec}


def _ip(first: int, i: int) -> str:
    return f"{first}.{i // 64 // 256}.{i // 64 % 256}.{i % 64 * 4 + 1}/30"


async def seed(kubeconfig: Path, stored: int) -> None:
    import kubernetes

    from controller.kube import Kube
    from tests.unit.commerce.builders import offering_doc

    kube = Kube(kubernetes.config.new_client_from_config(str(kubeconfig)))
    offering = {"apiVersion": API, "kind": "ProductOffering", "metadata": {"name": OFFERING}}
    await kube.create({**offering, "spec": offering_doc(name=OFFERING)}, "productofferings", None)
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


async def judge(kubeconfig: str, stored: int, burst: int, kind: str, create: bool, concurrency: int) -> None:
    import kubernetes

    from controller.billing.clock import OffsetClock
    from controller.handlers.admission import Admission
    from controller.kube import Kube, Ref

    kube = Kube(kubernetes.config.new_client_from_config(kubeconfig), workers=32)
    admission = Admission(kube, OffsetClock())
    make = service if kind == "networkservices" else subscription
    start = getattr(admission, "start", None)
    if start is not None:  # the watch-fed cache: its first lists, as the webhook makes them at its start
        start()
        await admission.ready()
    warm = 0
    while True:  # connections, imports; a cold process under load may miss the budget once
        try:
            await admission.judge(kind, "CREATE", make(stored), None)
            break
        except Exception:
            warm += 1
            if warm == 3:
                raise
    before = _lists(admission)
    news = [make(stored + 1 + j) for j in range(burst)]

    gate = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with gate:  # as a client sends them: `concurrency` requests in flight
            await admission.judge(kind, "CREATE", body, None)
            if create:
                await kube.create(body, kind, NS)

    cpu, wall = time.process_time(), time.monotonic()
    results = await asyncio.gather(*(one(b) for b in news), return_exceptions=True)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    refused = [r for r in results if r is not None]
    lists = _lists(admission) - before
    print(
        f"{kind}: cpu {cpu / burst * 1000:.1f} ms per request, wall {wall:.2f} s, {lists} lists, {len(refused)} refused"
        + (f" (e.g. {str(refused[0])[:120]})" if refused else "")
        + (f", warm-up refused {warm} times" if warm else "")
    )
    if create:  # gone before the next child: every variant judges against the same stored objects
        for body in news:
            with contextlib.suppress(Exception):
                await kube.delete(Ref(kind, body["metadata"]["name"], NS))
    close = getattr(admission, "close", None)
    if close is not None:
        await close()


def _lists(admission: Any) -> int:
    """Full lists made: per round without the cache; initial, after 410 and for lagging rounds with it."""
    watches = [w for ws in getattr(admission, "watches", {}).values() for w in ws]
    return int(admission.lists.started) + sum(w.lists for w in watches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--stored", type=int, default=2000, help="NetworkServices and Subscriptions stored")
    parser.add_argument("--burst", type=int, default=100, help="creates judged at once")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kind", action="append", choices=("networkservices", "subscriptions"))
    parser.add_argument("--no-create", action="store_true", help="judge only: store nothing")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at once")
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
        runs = [(k, v) for k in args.kind or ["networkservices"] for v in args.variant]
        for r in range(args.rounds):
            for kind, (label, _, directory) in ((k, v.partition("=")) for k, v in runs):
                checkout = Path(directory).resolve()
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                child = [
                    sys.executable,
                    __file__,
                    "--judge",
                    str(cluster.kubeconfig),
                    str(args.stored),
                    str(args.burst),
                    kind,
                    "0" if args.no_create else "1",
                    str(args.concurrency),
                ]
                out = subprocess.run(child, cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
                line = out.stdout.strip().splitlines()[-1:] or [out.stderr.strip().splitlines()[-1]]
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"round {r} {label}: {line[0]} (load {load})", flush=True)
                if out.returncode != 0:
                    print(out.stderr[-6000:], file=sys.stderr, flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--judge"]:
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ.get("ADMISSION_BENCH_HANG_SECONDS", "300")), exit=True)
        asyncio.run(
            judge(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "1", int(sys.argv[7]))
        )
    else:
        main()

"""TM Forum API facade benchmark: orders per second through TMF622 end to end (POST to active) side by
side with the same orders applied as Subscriptions through the Kubernetes API (what `kubectl apply -f`
of their YAML does), and list latency of TMF637 product with pagination over many products.

    PATH=$PWD/bin:$PATH .venv/bin/python bench/tmf_bench.py [--quick] [--orders N] [--products N]

Its own local control plane, a strict devicesim fleet and the controller with --tmf-port; the list
phase stops the controller (nothing reconciles) and serves the facade in-process over the products.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import benchlib as B  # noqa: E402
import kubernetes  # noqa: E402

from localcluster.cluster import free_port  # noqa: E402
from localcluster.webhook import serving_certificate  # noqa: E402
from tests.harness import GROUP, VERSION, ControllerProcess  # noqa: E402
from tests.support.tmf_client import Client, FacadeThread  # noqa: E402
from tests.unit.commerce.builders import offering_doc  # noqa: E402

NS = "bench-tmf"
OFFERING = "bench-fiber"
ACCOUNT = "bench-acct"
ORDERING = "/tmf-api/productOrderingManagement/v4"
PRODUCTS = "/tmf-api/productInventory/v4"


def token(api: Any) -> str:
    rbac = kubernetes.client.RbacAuthorizationV1Api(api.client)
    api.core.create_namespaced_service_account(NS, {"metadata": {"name": "bench-tmf"}})
    rule = {"apiGroups": [GROUP], "resources": ["*"], "verbs": ["get", "list", "watch", "create", "patch"]}
    rbac.create_cluster_role({"metadata": {"name": "bench-tmf"}, "rules": [rule]})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "bench-tmf"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench-tmf"},
            "subjects": [{"kind": "ServiceAccount", "name": "bench-tmf", "namespace": NS}],
        }
    )
    made = api.core.create_namespaced_service_account_token("bench-tmf", NS, {"spec": {"expirationSeconds": 7200}})
    return str(made.status.token)


def endpoint(devices: list[str], k: int) -> dict[str, Any]:
    port, vlan, ip = B.slot(k // len(devices))
    return {"device": devices[k % len(devices)], "port": port, "vlanId": vlan, "ipv4Address": ip}


def order_body(name: str, ep: dict[str, Any]) -> dict[str, Any]:
    return {
        "billingAccount": {"id": f"{NS}.{ACCOUNT}"},
        "productOrderItem": [
            {
                "id": "1",
                "action": "add",
                "productOffering": {"id": OFFERING},
                "product": {"name": name, "productCharacteristic": [{"name": "endpoints", "value": [ep]}]},
            }
        ],
    }


def subscription_body(name: str, ep: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"productOffering": {"name": OFFERING}, "billingAccountRef": {"name": ACCOUNT}, "endpoints": [ep]},
    }


def wait_active(api: Any, names: set[str], timeout: float) -> float:
    """Seconds until every named Subscription is active (polling the API server's list)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "subscriptions")["items"]
        active = {i["metadata"]["name"] for i in items if (i.get("status") or {}).get("state") == "active"}
        if names <= active:
            return time.monotonic()
        time.sleep(0.25)
    raise RuntimeError(f"not active after {timeout:.0f}s: {len(names - active)} of {len(names)}")


def clear(api: Any, names: set[str], timeout: float = 300) -> None:
    for name in names:
        api.delete("subscriptions", name, NS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {
            i["metadata"]["name"]
            for i in api.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "subscriptions")["items"]
        } & names
        if not left:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{len(left)} subscriptions not gone")


def orders_phase(
    api: Any, client: Client, devices: list[str], count: int, via_api: bool, offset: int
) -> dict[str, Any]:
    names = {f"{'api' if via_api else 'yaml'}-{k:05d}" for k in range(count)}
    started = time.monotonic()

    def one(item: tuple[int, str]) -> float:
        k, name = item
        t0 = time.monotonic()
        if via_api:
            answer = client.call(
                "POST", f"{ORDERING}/productOrder", order_body(name, endpoint(devices, offset + k)), check=False
            )
            if answer.status != 201:
                raise RuntimeError(f"order {name}: {answer.status} {answer.body}")
        else:
            api.custom.create_namespaced_custom_object(
                GROUP, VERSION, NS, "subscriptions", subscription_body(name, endpoint(devices, offset + k))
            )
        return time.monotonic() - t0

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        latencies = list(pool.map(one, enumerate(sorted(names))))
    submitted = time.monotonic()
    done = wait_active(api, names, 120 + count * 2)
    result = {
        "orders": count,
        "submit_seconds": round(submitted - started, 2),
        "to_all_active_seconds": round(done - started, 2),
        "orders_per_second": round(count / (done - started), 2),
        "submit_latency_ms": B.summary(latencies),
    }
    clear(api, names)
    return result


def list_phase(cp: Any, client_for: Any, count: int) -> dict[str, Any]:
    api = cp.api
    bodies = [
        subscription_body(f"p-{k:05d}", {"device": "nowhere", "port": "Ethernet1", "vlanId": 1 + k % 4000})
        for k in range(count)
    ]
    t0 = time.monotonic()
    B.create_objects(api, "subscriptions", bodies, workers=8)
    created = time.monotonic() - t0
    certs = Path(tempfile.mkdtemp(prefix="tmf-bench-certs-"))
    ca = serving_certificate(certs)
    t0 = time.monotonic()
    facade = FacadeThread(cp.kubeconfig, certs)
    synced = time.monotonic() - t0
    try:
        client = client_for(facade.port, ca)
        timings: dict[str, list[float]] = {"limit=100": [], "limit=1000": [], "filtered limit=100": [], "retrieve": []}
        client.call("GET", f"{PRODUCTS}/product?limit=1")  # first render of every product
        for offset in range(0, count, max(count // 50, 100)):
            for key, query in (
                ("limit=100", f"limit=100&offset={offset}"),
                ("limit=1000", f"limit=1000&offset={offset}"),
            ):
                t = time.monotonic()
                answer = client.call("GET", f"{PRODUCTS}/product?{query}", check=False)
                timings[key].append(time.monotonic() - t)
                assert answer.status == 200 and answer.headers["X-Total-Count"] == str(count), answer.headers
            t = time.monotonic()
            client.call(
                "GET", f"{PRODUCTS}/product?limit=100&productOffering.id={OFFERING}&offset={offset}", check=False
            )
            timings["filtered limit=100"].append(time.monotonic() - t)
            t = time.monotonic()
            client.call("GET", f"{PRODUCTS}/product/{NS}.p-{offset:05d}", check=False)
            timings["retrieve"].append(time.monotonic() - t)
        return {
            "products": count,
            "create_seconds": round(created, 1),
            "facade_start_and_cache_sync_seconds": round(synced, 2),
            "latency_ms": {k: B.summary(v) for k, v in timings.items()},
        }
    finally:
        facade.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 orders, 1,000 products")
    parser.add_argument("--orders", type=int, default=None)
    parser.add_argument("--products", type=int, default=None)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument(
        "--separate", action="store_true", help="serve the APIs from `python -m controller tmf-api`, not the controller"
    )
    args = parser.parse_args()
    orders = args.orders or (20 if args.quick else 200)
    products = args.products or (1000 if args.quick else 10_000)
    work = Path(tempfile.mkdtemp(prefix="tmf-bench-"))
    cp = B.ControlPlane(work / "cluster").start()
    fleet = None
    controller: ControllerProcess | None = None
    separate: subprocess.Popen[bytes] | None = None
    try:
        devices = B.device_names(args.devices)
        fleet = B.start_fleet(devices, work / "fleet")
        B.register_devices(cp.api, fleet, devices)
        cp.api.ensure_namespace(NS)
        cp.api.apply(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ProductOffering",
                "metadata": {"name": OFFERING},
                "spec": offering_doc(lifecycleStatus="Active"),
            }
        )
        cp.api.apply(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BillingAccount",
                "metadata": {"name": ACCOUNT, "namespace": NS},
                "spec": {"name": "Bench", "currency": "EUR", "timeZone": "UTC"},
            }
        )
        bearer = token(cp.api)
        certs = work / "certs"
        ca = serving_certificate(certs)
        port = free_port()
        tmf_flags = ("--tmf-port", str(port), "--tmf-cert-dir", str(certs))
        controller = ControllerProcess(cp.kubeconfig, work / "controller.log", *(() if args.separate else tmf_flags))
        controller.start()
        if args.separate:
            env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
            log_file = open(work / "tmf-api.log", "wb")  # noqa: SIM115 - lives as long as the process
            separate = subprocess.Popen(
                [sys.executable, "-m", "controller", "tmf-api", *tmf_flags],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        client = Client(port, ca, bearer)
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.call("GET", f"{PRODUCTS}/product?limit=1", check=False).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the TMF APIs did not come up")
            time.sleep(0.5)
        B.log(f"orders: {orders} through TMF622, then {orders} as Subscriptions, on {len(devices)} devices")
        results: dict[str, Any] = {
            "facade": "python -m controller tmf-api" if args.separate else "inside the controller (--tmf-port)",
            "via_tmf622": orders_phase(cp.api, client, devices, orders, True, 0),
            "as_yaml": orders_phase(cp.api, client, devices, orders, False, orders),
        }
        controller.stop()
        controller = None
        if separate is not None:
            separate.terminate()
            separate.wait(20)
            separate = None
        B.log(f"list: {products} products, paged")
        results["list"] = list_phase(cp, lambda p, c: Client(p, c, bearer), products)
        text = json.dumps(results, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return 0
    finally:
        if separate is not None:
            separate.terminate()
            separate.wait(20)
        if controller is not None:
            controller.stop()
        if fleet is not None:
            fleet.stop()
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())

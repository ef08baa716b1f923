"""How fast the API server can show that a kind nobody writes is current, without listing it whole.

    PATH="$PWD/bin:$PATH" .venv/bin/python bench/watch_freshness.py

The webhook's cache lists such a kind once per round of requests (docs/admission.md, rule 3). This
starts a local control plane (bin/kube-apiserver), stores 20 NetworkServices, writes ConfigMaps so
the store's revision moves past what the NetworkService watch has seen, and times the candidates
(docs/admission.md, "An idle kind without a list: what was evaluated"):

- a watch resumed from the NetworkServices' last resourceVersion with `timeoutSeconds=3` and bookmarks
  (the API server sends a bookmark 2 s before a watch's deadline, none for a deadline under 2 s);
- a watch-list (`sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan`) at the barrier read
  after the writes and at "" (the current revision), with a label selector matching nothing and with none;
- a consistent list and a `limit=1` list, for comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localcluster.cluster import LocalCluster  # noqa: E402

PATH = "/apis/telco.intent.dev/v1alpha1/networkservices"
NOTHING = ("labelSelector", "bench.telco.intent.dev/none=x")


def main() -> None:
    cluster = LocalCluster(bin_dir=ROOT / "bin").start()
    try:
        run(cluster)
    finally:
        cluster.stop()


def run(cluster: LocalCluster) -> None:
    kubeconfig = str(cluster.kubeconfig)
    kubectl = [str(ROOT / "bin" / "kubectl"), "--kubeconfig", kubeconfig]
    subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd", "--all"], check=True, capture_output=True)
    api = kubernetes.config.new_client_from_config(kubeconfig)
    custom, core = kubernetes.client.CustomObjectsApi(api), kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "x"}})
    for i in range(20):
        endpoint = {"device": "pe", "port": "E1", "vlanId": i + 1}
        body = {"apiVersion": "telco.intent.dev/v1alpha1", "kind": "NetworkService", "metadata": {"name": f"s{i}"}}
        body["spec"] = {"serviceType": "l2vpn", "bandwidthMbps": 10, "endpoints": [endpoint]}
        custom.create_namespaced_custom_object("telco.intent.dev", "v1alpha1", "x", "networkservices", body)

    def get(params: list[tuple[str, Any]], stream: bool = False) -> Any:
        url = f"{api.configuration.host}{PATH}?{urllib.parse.urlencode(params)}"
        timeout = urllib3.Timeout(connect=3, read=60)
        return api.rest_client.pool_manager.request("GET", url, preload_content=not stream, timeout=timeout)

    def until_bookmark(label: str, params: list[tuple[str, Any]]) -> None:
        started = time.monotonic()
        response = get([("watch", "1"), ("allowWatchBookmarks", "true"), *params], stream=True)
        pending, events = b"", 0
        for chunk in response.stream(1024):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                event = json.loads(line)
                events += 1
                if event["type"] == "BOOKMARK":
                    meta = event["object"]["metadata"]
                    end = "initial-events-end" if (meta.get("annotations") or {}) else "bookmark"
                    took = time.monotonic() - started
                    print(f"{label}: {end} at {meta['resourceVersion']} after {took:.3f} s, {events} events")
                    response.close()
                    return
        print(f"{label}: ended after {time.monotonic() - started:.3f} s with no bookmark, {events} events")

    def timed_list(label: str, params: list[tuple[str, Any]]) -> str:
        started = time.monotonic()
        body = json.loads(get(params).data)
        print(f"{label}: {len(body['items'])} items after {time.monotonic() - started:.3f} s")
        return str(body["metadata"]["resourceVersion"])

    for attempt in range(3):
        seen = timed_list("consistent list", [])  # what a Store fed by a watch of this kind would be at
        for i in range(3):  # writes of another kind: the revision moves on, no NetworkService event
            core.create_namespaced_config_map("x", {"metadata": {"name": f"cm{attempt}-{i}"}})
        barrier = timed_list("limit=1 list (the barrier)", [("limit", 1)])
        print(f"-- attempt {attempt + 1}: NetworkServices last seen at {seen}, barrier {barrier}")
        until_bookmark("resumed watch, timeoutSeconds=3", [("resourceVersion", seen), ("timeoutSeconds", 3)])
        watch_list = [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
        at_barrier = [*watch_list, ("resourceVersion", barrier), NOTHING]
        until_bookmark("watch-list at the barrier, selecting nothing", at_barrier)
        until_bookmark("watch-list at '', selecting nothing", [*watch_list, ("resourceVersion", ""), NOTHING])
        until_bookmark("watch-list at '', every object", [*watch_list, ("resourceVersion", "")])
        print(f"load {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()

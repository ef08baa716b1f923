"""Reference (a) of the `references` scenario: the operator a team would write instead of the controller.

A plain Kopf operator with Kopf's defaults (its progress and last-handled-configuration annotations, an
Event per handled change): one change handler per NetworkService, which renders the service exactly as
the controller does (controller.intent.render), sends it to each device as one pygnmi Set (JSON
updates), and reports Ready through Kopf's status patch. No merge, no read-back, no drift repair,
no teardown: the cheapest operator that still ends with the same configuration and a Ready condition.

    BENCH_DEVICES_FILE=devices.json KUBECONFIG=... python -m kopf run --standalone -n NS bench/kopf_operator.py

devices.json maps each device name to {"target": [host, port], "username", "password", "ca"} (the
benchmark writes it from its devicesim fleet; a team's operator would read NetworkDevice objects).
pygnmi is synchronous: Kopf runs these sync handlers in its thread pool; one client and one lock per
device keep each connection to one Set at a time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import kopf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pygnmi.client import gNMIclient

from controller.api import GROUP, VERSION
from controller.api.networkservice import NetworkServiceSpec
from controller.intent.render import ManagedEntry, ServiceKey, render

DEVICES: dict[str, dict[str, Any]] = json.loads(Path(os.environ["BENCH_DEVICES_FILE"]).read_text())
_clients: dict[str, gNMIclient] = {}
_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
_connecting = threading.Lock()


def _client(device: str) -> gNMIclient:
    with _connecting:
        client = _clients.get(device)
        if client is None:
            info = DEVICES[device]
            client = gNMIclient(
                target=tuple(info["target"]),
                username=info["username"],
                password=info["password"],
                path_cert=info["ca"],
                gnmi_timeout=30,
            )
            client.connect()
            _clients[device] = client
        return client


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 300  # as the controller does: no reconnect storms during the run


@kopf.on.create(GROUP, VERSION, "networkservices")
@kopf.on.update(GROUP, VERSION, "networkservices", field="spec")
def apply(spec: Any, name: str, namespace: str, meta: Any, patch: kopf.Patch, **_: Any) -> None:
    entries = render(ServiceKey(namespace, name), NetworkServiceSpec.model_validate(dict(spec)))
    by_device: dict[str, list[ManagedEntry]] = defaultdict(list)
    for entry in entries:
        by_device[entry.device].append(entry)
    for device, mine in by_device.items():
        with _locks[device]:
            _client(device).set(update=[(e.path.to_string(), e.value) for e in mine], encoding="json")
    generation = meta.get("generation", 1)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Applied",
            "message": f"configured on {', '.join(sorted(by_device))}",
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }
    ]

"""The baselines of the convergence scenario, measured in the same run as the controller.

(a) what people do today: a script holding one pygnmi connection per device that sends one Set
    per service, in sequence. The Set carries exactly the entries the controller renders for the
    service (controller.intent.render), as updates, JSON-encoded.
(b) the ceiling: devicesim absorbing the same configuration as one batched Set per device, all
    devices at once, over raw grpc.aio stubs.
(api) the API server's own write cost: creating the same N objects with no controller running.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
from benchlib import Svc, create_all, log
from pygnmi.client import gNMIclient
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from controller.api.networkservice import NetworkServiceSpec
from controller.intent.render import ManagedEntry, ServiceKey, render
from devicesim import FleetProcess
from tests.harness import Api

MD = (("username", "admin"), ("password", "admin"))


def rendered(svc: Svc) -> list[ManagedEntry]:
    """The entries the controller renders for this service (the same config it sends)."""
    spec = NetworkServiceSpec.model_validate(svc.body()["spec"])
    return render(ServiceKey(svc.namespace, svc.name), spec)


def script_per_service(fleet: FleetProcess, services: list[Svc]) -> dict[str, Any]:
    """Baseline (a): one pygnmi connection per device, one Set per service, in sequence."""
    assert fleet.ca_path is not None
    t0 = time.monotonic()
    clients: dict[str, gNMIclient] = {}
    done: list[float] = []
    try:
        for device in dict.fromkeys(s.device for s in services):
            info = fleet.devices[device]
            clients[device] = gNMIclient(
                target=info.target,
                username=info.username,
                password=info.password,
                path_cert=fleet.ca_path,
                gnmi_timeout=30,
            )
            clients[device].connect()
        connected = time.monotonic() - t0
        for svc in services:
            updates = [(e.path.to_string(), e.value) for e in rendered(svc)]
            clients[svc.device].set(update=updates, encoding="json")
            done.append(time.monotonic() - t0)
    finally:
        for c in clients.values():
            c.close()
    wall = time.monotonic() - t0
    return {
        "wall_s": round(wall, 2),
        "connect_s": round(connected, 2),
        "sets": len(done),
        "services_per_s": round(len(done) / wall, 1),
        "ready_times": done,
    }


async def _batched(fleet: FleetProcess, services: list[Svc]) -> tuple[float, dict[str, tuple[float, int]], float]:
    assert fleet.ca_path is not None
    creds = grpc.ssl_channel_credentials(Path(fleet.ca_path).read_bytes())
    by_device: dict[str, list[Svc]] = {}
    for svc in services:
        by_device.setdefault(svc.device, []).append(svc)
    t0 = time.monotonic()
    requests = {
        device: gnmi_pb2.SetRequest(
            update=[
                gnmi_pb2.Update(
                    path=e.path.to_proto(),
                    val=gnmi_pb2.TypedValue(json_val=json.dumps(e.value, separators=(",", ":")).encode()),
                )
                for svc in svcs
                for e in rendered(svc)
            ]
        )
        for device, svcs in by_device.items()
    }
    build = time.monotonic() - t0
    channels = {d: grpc.aio.secure_channel(fleet.devices[d].address, creds) for d in by_device}
    finished: dict[str, tuple[float, int]] = {}

    async def one(device: str) -> None:
        stub = gnmi_pb2_grpc.gNMIStub(channels[device])
        await stub.Set(requests[device], metadata=MD, timeout=120)
        finished[device] = (time.monotonic() - t0, len(by_device[device]))

    try:
        await asyncio.gather(*(one(d) for d in by_device))
    finally:
        for c in channels.values():
            await c.close()
    return time.monotonic() - t0, finished, build


def batched_per_device(fleet: FleetProcess, services: list[Svc]) -> dict[str, Any]:
    """Baseline (b): one batched Set per device (all its services' entries), every device at once."""
    wall, finished, build = asyncio.run(_batched(fleet, services))
    times: list[float] = []
    for t, n in sorted(finished.values()):
        times += [t] * n
    updates = sum(len(rendered(s)) for s in services[:1]) * len(services)
    return {
        "wall_s": round(wall, 3),
        "build_s": round(build, 3),
        "sets": len(finished),
        "updates": updates,
        "services_per_s": round(len(services) / wall, 1),
        "ready_times": times,
    }


def api_only(api: Api, services: list[Svc], workers: int) -> dict[str, Any]:
    """The API server's own cost: the same N creates, same client and concurrency, no controller."""
    t0 = time.monotonic()
    created = create_all(api, services, workers=workers)
    wall = time.monotonic() - t0
    times = sorted(t - t0 for t in created.values())
    log(f"  api-only: {len(services)} creates in {wall:.1f}s")
    return {"wall_s": round(wall, 2), "creates_per_s": round(len(services) / wall, 1), "ready_times": times}

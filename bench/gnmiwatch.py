"""A gNMI ON_CHANGE subscription from the benchmark itself: every subinterface description of
the given devices, with the time each notification arrived (to time drift repairs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from pathlib import Path

import grpc
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from devicesim import FleetProcess

MD = (("username", "admin"), ("password", "admin"))
Key = tuple[str, str, int]  # device, port, subinterface index


def _desc_path() -> gnmi_pb2.Path:
    e = gnmi_pb2.PathElem
    return gnmi_pb2.Path(
        elem=[
            e(name="interfaces"),
            e(name="interface", key={"name": "*"}),
            e(name="subinterfaces"),
            e(name="subinterface", key={"index": "*"}),
            e(name="config"),
            e(name="description"),
        ]
    )


def _value(v: gnmi_pb2.TypedValue) -> str:
    kind = v.WhichOneof("value")
    if kind in ("json_val", "json_ietf_val"):
        import json

        return str(json.loads(getattr(v, kind)))
    return str(getattr(v, kind)) if kind else ""


class DescriptionWatch:
    """Per (device, port, index): the list of (arrival time, description) notifications."""

    def __init__(self, fleet: FleetProcess, devices: list[str]) -> None:
        self.fleet = fleet
        self.devices = devices
        self.seen: dict[Key, list[tuple[float, str]]] = defaultdict(list)
        self.cond = threading.Condition()
        self.synced: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="gnmi-watch")
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 30) -> DescriptionWatch:
        self._thread.start()
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.synced) < len(self.devices):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gNMI watch not synced: {sorted(set(self.devices) - self.synced)}")
                self.cond.wait(0.5)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        assert self.fleet.ca_path is not None
        creds = grpc.ssl_channel_credentials(Path(self.fleet.ca_path).read_bytes())
        channels = [grpc.aio.secure_channel(self.fleet.devices[d].address, creds) for d in self.devices]
        tasks = [asyncio.create_task(self._one(d, c)) for d, c in zip(self.devices, channels, strict=True)]
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in channels:
            await c.close()

    async def _one(self, device: str, channel: grpc.aio.Channel) -> None:
        stub = gnmi_pb2_grpc.gNMIStub(channel)
        request = gnmi_pb2.SubscribeRequest(
            subscribe=gnmi_pb2.SubscriptionList(
                subscription=[gnmi_pb2.Subscription(path=_desc_path(), mode=gnmi_pb2.ON_CHANGE)],
                mode=gnmi_pb2.SubscriptionList.STREAM,
                encoding=gnmi_pb2.JSON,
            )
        )
        call = stub.Subscribe(metadata=MD)
        await call.write(request)
        async for resp in call:
            t = time.monotonic()
            if resp.HasField("sync_response"):
                with self.cond:
                    self.synced.add(device)
                    self.cond.notify_all()
                continue
            n = resp.update
            prefix = list(n.prefix.elem)
            with self.cond:
                for u in n.update:
                    elems = prefix + list(u.path.elem)
                    port = next((el.key["name"] for el in elems if el.name == "interface"), "")
                    index = next((el.key["index"] for el in elems if el.name == "subinterface"), "")
                    if port and index:
                        self.seen[(device, port, int(index))].append((t, _value(u.val)))
                self.cond.notify_all()

    def mark(self, key: Key) -> int:
        with self.cond:
            return len(self.seen[key])

    def wait_value(
        self, key: Key, value: str, after: int, timeout: float, not_before: str | None = None
    ) -> float | None:
        """Arrival time of the first notification of `value` for `key` after index `after` (and after
        a notification of `not_before`, when given); None on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                events = self.seen[key][after:]
                start = 0
                if not_before is not None:
                    idx = next((i for i, (_, v) in enumerate(events) if v == not_before), None)
                    start = len(events) if idx is None else idx + 1
                for t, v in events[start:]:
                    if v == value:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(0.5, left))

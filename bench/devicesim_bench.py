"""devicesim benchmark: Set throughput, batched updates, ON_CHANGE latency, fleet memory.

    python bench/devicesim_bench.py [--quick]

Each scenario runs the simulator as a subprocess (``python -m devicesim``, TLS as by default)
so that its CPU and memory are measured apart from the load generator, which is a grpc.aio
client in this process using the raw gNMI stub. Results go to
bench/results/devicesim-<timestamp>.json and a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devicesim import FleetProcess

RESULTS = Path(__file__).resolve().parent / "results"
MD = (("username", "admin"), ("password", "admin"))
TICKS = os.sysconf("SC_CLK_TCK")


def elem(elem_name: str, **keys: str) -> gnmi_pb2.PathElem:
    return gnmi_pb2.PathElem(name=elem_name, key=keys)


def desc_path(port: str, index: int) -> gnmi_pb2.Path:
    return gnmi_pb2.Path(elem=[elem("interfaces"), elem("interface", name=port), elem("subinterfaces"),
                               elem("subinterface", index=str(index)), elem("config"), elem("description")])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def channel(proc: FleetProcess, name: str) -> grpc.aio.Channel:
    info = proc.devices[name]
    assert proc.ca_path is not None
    creds = grpc.ssl_channel_credentials(Path(proc.ca_path).read_bytes())
    return grpc.aio.secure_channel(info.address, creds)


def start(args: list[str], workdir: Path) -> FleetProcess:
    return FleetProcess([*args, "--counter-interval", "1.0"], workdir=workdir, timeout=120).start()


# ---------------------------------------------------------------------------------------------


async def set_rps(workdir: Path, seconds: float, concurrency: int, channels: int) -> dict[str, Any]:
    """Single-update Sets against one device from ``concurrency`` concurrent callers."""
    with start(["--devices", "1"], workdir) as proc:
        chans = [channel(proc, "dev1") for _ in range(channels)]
        stubs = [gnmi_pb2_grpc.gNMIStub(c) for c in chans]
        reqs = [gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=desc_path(f"Ethernet{1 + i % 8}", 1 + i % 50),
            val=gnmi_pb2.TypedValue(json_val=json.dumps(f"v{i}").encode()))]) for i in range(400)]
        done = 0
        stop = 0.0

        async def worker(w: int) -> None:
            nonlocal done
            stub = stubs[w % len(stubs)]
            i = w
            while time.monotonic() < stop:
                await stub.Set(reqs[i % len(reqs)], metadata=MD, timeout=10)
                i += concurrency
                done += 1

        stop = time.monotonic() + 1.0  # warm-up: connections, caches
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        done = 0
        assert proc.proc is not None
        cpu0, t0 = cpu_seconds(proc.proc.pid), time.monotonic()
        stop = t0 + seconds
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proc.proc.pid) - cpu0
        stats = proc.admin.stats("dev1")
        for c in chans:
            await c.close()
    return {"sets": done, "seconds": round(elapsed, 2), "sets_per_s": round(done / elapsed),
            "server_cpu_s": round(cpu, 2), "server_us_per_set": round(cpu / done * 1e6, 1),
            "concurrency": concurrency, "server_set_rpcs": stats["set_rpcs"]}


async def batched(workdir: Path, seconds: float, devices: int, batch: int) -> dict[str, Any]:
    """Sets of ``batch`` leaf updates each, one caller per device of a ``devices``-device fleet."""
    with start(["--devices", str(devices)], workdir) as proc:
        names = list(proc.devices)
        chans = {n: channel(proc, n) for n in names}
        stubs = {n: gnmi_pb2_grpc.gNMIStub(c) for n, c in chans.items()}
        variants = []
        for v in range(4):
            variants.append(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
                path=desc_path(f"Ethernet{1 + i % 8}", 1 + i // 8),
                val=gnmi_pb2.TypedValue(json_val=json.dumps(f"cust-{v}-{i}").encode())) for i in range(batch)]))
        updates = 0
        sets = 0
        stop = 0.0

        async def worker(n: str) -> None:
            nonlocal updates, sets
            i = 0
            while time.monotonic() < stop:
                await stubs[n].Set(variants[i % len(variants)], metadata=MD, timeout=30)
                updates += batch
                sets += 1
                i += 1

        stop = time.monotonic() + 1.0  # warm-up, also creates the subinterfaces
        await asyncio.gather(*(worker(n) for n in names))
        updates = sets = 0
        assert proc.proc is not None
        cpu0, t0 = cpu_seconds(proc.proc.pid), time.monotonic()
        stop = t0 + seconds
        await asyncio.gather(*(worker(n) for n in names))
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proc.proc.pid) - cpu0
        rss = rss_kib(proc.proc.pid)
        for c in chans.values():
            await c.close()
    return {"devices": devices, "batch": batch, "sets": sets, "updates": updates, "seconds": round(elapsed, 2),
            "updates_per_s": round(updates / elapsed), "server_cpu_s": round(cpu, 2),
            "server_us_per_update": round(cpu / max(updates, 1) * 1e6, 2), "rss_mib_after": round(rss / 1024, 1)}


async def on_change_latency(workdir: Path, samples: int) -> dict[str, Any]:
    """Set commit (notification timestamp) -> notification received by an ON_CHANGE subscriber."""
    with start(["--devices", "1"], workdir) as proc:
        ch = channel(proc, "dev1")
        stub = gnmi_pb2_grpc.gNMIStub(ch)
        p = desc_path("Ethernet1", 1)
        await stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=p, val=gnmi_pb2.TypedValue(json_val=b'"start"'))]), metadata=MD)
        sl = gnmi_pb2.SubscriptionList(mode=gnmi_pb2.SubscriptionList.STREAM, subscription=[
            gnmi_pb2.Subscription(path=p, mode=gnmi_pb2.ON_CHANGE)])
        call = stub.Subscribe(metadata=MD)
        await call.write(gnmi_pb2.SubscribeRequest(subscribe=sl))
        while not (await call.read()).sync_response:
            pass
        commit_to_rx: list[float] = []
        set_to_rx: list[float] = []
        for i in range(samples):
            t_set = time.time_ns()
            await stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
                path=p, val=gnmi_pb2.TypedValue(json_val=json.dumps(f"x{i}").encode()))]), metadata=MD)
            resp = await call.read()
            t_rx = time.time_ns()
            assert resp.update.update[0].val.string_val == f"x{i}"
            commit_to_rx.append((t_rx - resp.update.timestamp) / 1e6)
            set_to_rx.append((t_rx - t_set) / 1e6)
        call.cancel()
        await ch.close()

    def pct(xs: list[float], q: float) -> float:
        return round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))], 3)

    return {"samples": samples, "commit_to_receipt_ms_p50": pct(commit_to_rx, 0.50),
            "commit_to_receipt_ms_p99": pct(commit_to_rx, 0.99),
            "commit_to_receipt_ms_mean": round(statistics.fmean(commit_to_rx), 3),
            "set_start_to_receipt_ms_p50": pct(set_to_rx, 0.50),
            "set_start_to_receipt_ms_p99": pct(set_to_rx, 0.99)}


async def fleet_memory(workdir: Path, devices: int) -> dict[str, Any]:
    """RSS of a ``devices``-device fleet: idle, then with config and a subscription per device."""
    t0 = time.monotonic()
    with start(["--devices", str(devices)], workdir) as proc:
        startup = time.monotonic() - t0
        assert proc.proc is not None
        pid = proc.proc.pid
        idle = rss_kib(pid)
        chans = {n: channel(proc, n) for n in proc.devices}
        stubs = {n: gnmi_pb2_grpc.gNMIStub(c) for n, c in chans.items()}
        req = gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=desc_path(f"Ethernet{1 + i % 8}", 100 + i // 8),
            val=gnmi_pb2.TypedValue(json_val=json.dumps(f"cust-{i}").encode())) for i in range(16)])
        await asyncio.gather(*(s.Set(req, metadata=MD, timeout=30) for s in stubs.values()))
        configured = rss_kib(pid)
        calls = []
        for s in stubs.values():
            call = s.Subscribe(metadata=MD)
            await call.write(gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
                subscription=[gnmi_pb2.Subscription(path=gnmi_pb2.Path(elem=[elem("interfaces")]))])))
            calls.append(call)
        for call in calls:
            while not (await call.read()).sync_response:
                pass
        subscribed = rss_kib(pid)
        for call in calls:
            call.cancel()
        for c in chans.values():
            await c.close()
    return {"devices": devices, "startup_s": round(startup, 2), "rss_mib_idle": round(idle / 1024, 1),
            "rss_mib_configured": round(configured / 1024, 1),
            "rss_mib_with_subscriptions": round(subscribed / 1024, 1)}


# ---------------------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    rows = [
        ("Single-update Sets/s, one device", f"{r['set_rps']['sets_per_s']:,}", ">= 2,000",
         r["set_rps"]["sets_per_s"] >= 2000),
        (f"Updates/s in batched Sets, {r['batched']['devices']}-device fleet "
         f"({r['batched']['batch']} updates/Set)", f"{r['batched']['updates_per_s']:,}", ">= 50,000",
         r["batched"]["updates_per_s"] >= 50_000),
        ("ON_CHANGE latency p50 (commit -> receipt)", f"{r['latency']['commit_to_receipt_ms_p50']} ms", "< 10 ms",
         r["latency"]["commit_to_receipt_ms_p50"] < 10),
        ("ON_CHANGE latency p99 (commit -> receipt)", f"{r['latency']['commit_to_receipt_ms_p99']} ms", "< 10 ms",
         r["latency"]["commit_to_receipt_ms_p99"] < 10),
        (f"RSS, {r['memory']['devices']}-device fleet (configured + 1 subscription each)",
         f"{r['memory']['rss_mib_with_subscriptions']} MiB", "< 300 MB",
         r["memory"]["rss_mib_with_subscriptions"] * 1.048576 < 300),
    ]
    out = ["| Measure | Result | Aim | Met |", "| --- | --- | --- | --- |"]
    out += [f"| {a} | {b} | {c} | {'yes' if d else 'NO'} |" for a, b, c, d in rows]
    return "\n".join(out)


async def run(quick: bool, workdir: Path) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    res: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "grpc": grpc.__version__,
                    "platform": platform.platform()},
        "tls": True,
    }
    print("set_rps ...", flush=True)
    res["set_rps"] = await set_rps(workdir / "rps", seconds, concurrency=32, channels=4)
    print("batched ...", flush=True)
    res["batched"] = await batched(workdir / "batched", seconds, devices=50, batch=100)
    print("latency ...", flush=True)
    res["latency"] = await on_change_latency(workdir / "latency", 200 if quick else 1000)
    print("memory ...", flush=True)
    res["memory"] = await fleet_memory(workdir / "memory", 200)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs (3 s per throughput test)")
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="devicesim-bench-") as tmp:
        res = asyncio.run(run(args.quick, Path(tmp)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"devicesim-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2))
    print()
    print(table(res))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m controller` with a memory probe for the memory scenario: each SIGUSR1 writes a census.

    BENCH_CENSUS_DIR=/tmp/x [BENCH_TRACEMALLOC=1] python bench/traced_controller.py run --metrics-port ...

The census (census-<n>.json, n from 0, written under a temporary name and renamed when complete) is
the deep size of what each part of the live controller holds, every object counted once, for the
first holder in HOLDERS that reaches it; it costs nothing until asked, so the plain, measured run
carries it. With BENCH_TRACEMALLOC=1 the first SIGUSR1 also starts tracemalloc (1 frame: the
allocation site) and every later one dumps a snapshot (snapshot-<n>.pickle): what was made since
the first and is still alive. Tracing slows the process; that run's RSS is not the controller's.

Each SIGUSR2 writes heap-<n>.json (the first, taken before the creates, only reads; the rest also
release): where the process's memory is, from the process itself. RSS
(anonymous part too), glibc's view (mallinfo2: bytes in use and free but kept, in its heaps and in
mmap), pymalloc's (sys._debugmallocstats: arenas, bytes in live blocks, free blocks and pools kept),
every live Python object by type (gc-tracked objects and the untracked ones they refer to, each
counted once, shallow sizes), then the RSS again after gc.collect() and after glibc's malloc_trim(0):
what the allocator keeps but could give back.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import sys
import tracemalloc
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# The checkout this script is in, before any installed copy: its `controller` is the one measured (the
# virtualenv's editable install may point at another checkout, e.g. a base run beside a branch).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.memory import mallinfo, trim

OUT = Path(os.environ["BENCH_CENSUS_DIR"])
TRACE = os.environ.get("BENCH_TRACEMALLOC") == "1"
_counter = itertools.count()
# Never descended into: code, classes and modules are shared by everything, not held per service.
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType, types.FrameType)


def _deep(roots: Iterable[Any], seen: set[int]) -> tuple[int, int]:
    """Bytes and objects reachable from `roots` and not in `seen` (which they join)."""
    size = count = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        if isinstance(obj, _Shallow):
            size += obj.size
            count += 1
            continue
        size += sys.getsizeof(obj)
        count += 1
        stack.extend(gc.get_referents(obj))
    return size, count


def _holders(controller: Any) -> list[tuple[str, Callable[[], list[Any]]]]:
    net, writer = controller.network, controller.writer
    records = lambda: list(net.services.values())  # noqa: E731
    return [
        # A service record's parts, each before the record itself (which then counts only the rest).
        ("service records: status", lambda: [r.status for r in records()]),
        ("service records: spec (parsed)", lambda: [r.spec for r in records()]),
        # (none once the record makes its body when asked: a property)
        ("service records: metadata kept (body)", lambda: [r.body for r in records() if not _made(r, "body")]),
        ("service records: render (managed entries)", lambda: [r._rendered for r in records()]),
        ("service records: the rest (record, key, finalizers, map)", lambda: [net.services]),
        (
            "reconciler, per service (outcomes, applied, settled, by device, retired)",
            lambda: [net._outcomes, net._applied, net._settled, net._by_device, net._plans, net._retired],
        ),
        ("reconciler: status.owned items built, home", lambda: [net._owned_items, net._home]),
        ("device intents (merged entries, drifts)", lambda: [net._intents, net._merged, net._drifts]),
        ("status writer (written, landed, pending)", lambda: [writer._written, writer._landed, writer._pending]),
        ("subscription leaf caches", lambda: [s.leaves for s in net.sessions.values()]),
        ("commerce (its index of services, Subscriptions, invoices)", lambda: [controller.commerce.index]),
        ("kopf per-object memories", _kopf_memories),
        ("the rest of the controller (sessions, clients, queues)", lambda: [controller]),
    ]


def _made(obj: Any, name: str) -> bool:
    """Whether `obj.name` is made when asked (a property), not held."""
    return isinstance(getattr(type(obj), name, None), property)


class _Shallow:
    """A census root counted by its own size only (not what it refers to)."""

    def __init__(self, obj: Any) -> None:
        self.size = sys.getsizeof(obj)


def _kopf_memories() -> list[Any]:
    """Kopf's ResourceMemory per object, without the operator memo each holds a copy of (its values are
    the controller itself, counted under the next holder)."""
    roots: list[Any] = []
    for memories in (o for o in gc.get_objects() if type(o).__name__ == "ResourceMemories"):
        roots += [_Shallow(memories._items), *memories._items.keys()]
        for memory in memories._items.values():
            roots += [_Shallow(memory), _Shallow(vars(memory)), _Shallow(memory.memo)]
            roots += [v for k, v in vars(memory).items() if k != "memo"]
    return roots


def census() -> dict[str, Any]:
    from controller.runtime import Controller

    found = [o for o in gc.get_objects() if isinstance(o, Controller)]
    out: dict[str, Any] = {"services": 0, "holders": {}}
    if not found:
        return out
    controller = found[-1]
    out["services"] = len(controller.network.services)
    seen: set[int] = set()
    for name, roots in _holders(controller):
        try:
            size, count = _deep(roots(), seen)
        except AttributeError as exc:  # the controller changed shape: say so rather than guess
            out["holders"][name] = {"error": str(exc)}
            continue
        out["holders"][name] = {"bytes": size, "objects": count}
    out["status_keys"] = _status_keys(list(controller.network.services.values()))
    return out


def _status_keys(records: list[Any]) -> dict[str, Any]:
    """Deep bytes of each top-level key of the records' statuses (across all records, each object once,
    the keys' own strings left out), and one Ready record's status as a sample."""
    seen: set[int] = set()
    sizes: dict[str, int] = {}
    for key in sorted({k for r in records for k in r.status}):
        sizes[key] = _deep([r.status[key] for r in records if key in r.status], seen)[0]
    sample = next((r for r in records if r.status.get("state") == "active"), records[0] if records else None)
    return {"bytes": sizes, "sample": None if sample is None else sample.status}


def _probe(_signum: int, _frame: types.FrameType | None) -> None:
    n = next(_counter)
    partial = OUT / f".census-{n}.json"
    partial.write_text(json.dumps(census()))
    if TRACE:
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(OUT / f"snapshot-{n}.pickle"))
        else:
            tracemalloc.start(1)
    partial.rename(OUT / f"census-{n}.json")


def _rss() -> dict[str, float]:
    """VmRSS and RssAnon of this process, MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _glibc() -> dict[str, float]:
    """glibc malloc (objects over 512 bytes, C extensions: gRPC, ssl, yaml), MiB: in use, free but kept."""
    m = mallinfo()
    if m is None:  # not glibc
        return {}
    mib = 1 / 2**20
    return {
        "heap_mb": round(m.arena * mib, 1),  # sbrk heap + per-thread arenas, in use or not
        "mmapped_mb": round(m.hblkhd * mib, 1),
        "in_use_mb": round(m.uordblks * mib, 1),
        "free_kept_mb": round(m.fordblks * mib, 1),
        "top_releasable_mb": round(m.keepcost * mib, 1),
    }


def _pymalloc() -> dict[str, float]:
    """pymalloc (Python objects up to 512 bytes), MiB, parsed from sys._debugmallocstats (C stderr)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    wanted = {
        "arenas * ": "arenas_mb",
        "# bytes in allocated blocks": "live_blocks_mb",
        "# bytes in available blocks": "free_blocks_mb",
        "unused pools * ": "unused_pools_mb",
    }
    out: dict[str, float] = {}
    for line in text.splitlines():
        for needle, key in wanted.items():
            if needle in line and key not in out and "=" in line:
                out[key] = round(int(line.rsplit("=", 1)[1].replace(",", "").strip()) / 2**20, 1)
    return out


def _by_type(top: int = 40) -> dict[str, Any]:
    """Every live Python object reachable from the gc-tracked ones, by type (shallow sizes, each once)."""
    counts: dict[str, list[int]] = {}
    stack = gc.get_objects()
    seen: set[int] = {id(stack)}
    total = 0
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        t = type(o)
        size = sys.getsizeof(o, 0)
        total += size
        row = counts.setdefault(f"{t.__module__}.{t.__qualname__}", [0, 0])
        row[0] += 1
        row[1] += size
        stack.extend(gc.get_referents(o))
    rows = sorted(counts.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "objects": len(seen),
        "mb": round(total / 2**20, 1),
        "top": [{"type": k, "count": c, "mb": round(b / 2**20, 2)} for k, (c, b) in rows],
    }


def heap(release: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"rss": _rss(), "glibc": _glibc(), "pymalloc": _pymalloc()}
    out["threads"] = len(os.listdir("/proc/self/task"))
    if not release:
        out["python_objects"] = _by_type()
        return out
    gc.collect()
    out["rss_after_gc"] = _rss()
    trim()
    out["rss_after_trim"] = _rss()
    out["glibc_after_trim"] = _glibc()
    out["python_objects"] = _by_type()  # last: its own bookkeeping costs memory
    return out


def _heap_probe(_signum: int, _frame: types.FrameType | None) -> None:
    n = next(_heap_counter)
    partial = OUT / f".heap-{n}.json"
    partial.write_text(json.dumps(heap(release=n > 0)))
    partial.rename(OUT / f"heap-{n}.json")


_heap_counter = itertools.count()


def main() -> int:
    signal.signal(signal.SIGUSR1, _probe)
    signal.signal(signal.SIGUSR2, _heap_probe)
    from controller.__main__ import main as controller_main

    return controller_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""`python -m controller` with a memory probe for the memory scenario: each SIGUSR1 writes a census.

    BENCH_CENSUS_DIR=/tmp/x [BENCH_TRACEMALLOC=1] python bench/traced_controller.py run --metrics-port ...

The census (census-<n>.json, n from 0, written under a temporary name and renamed when complete) is
the deep size of what each part of the live controller holds, every object counted once, for the
first holder in HOLDERS that reaches it; it costs nothing until asked, so the plain, measured run
carries it. With BENCH_TRACEMALLOC=1 the first SIGUSR1 also starts tracemalloc (1 frame: the
allocation site) and every later one dumps a snapshot (snapshot-<n>.pickle): what was made since
the first and is still alive. Tracing slows the process; that run's RSS is not the controller's.
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
    return [
        ("service records (spec, status, metadata, render)", lambda: [net.services]),
        (
            "reconciler, per service (outcomes, applied, settled, by device, retired)",
            lambda: [net._outcomes, net._applied, net._settled, net._by_device, net._plans, net._retired],
        ),
        ("device intents (merged entries, drifts)", lambda: [net._intents, net._merged, net._drifts]),
        ("status writer (written, landed, pending)", lambda: [writer._written, writer._landed, writer._pending]),
        ("subscription leaf caches", lambda: [s.leaves for s in net.sessions.values()]),
        ("commerce (services owned by Subscriptions)", lambda: [controller.commerce.services]),
        ("kopf per-object memories", _kopf_memories),
        ("the rest of the controller (sessions, clients, queues)", lambda: [controller]),
    ]


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
    return out


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


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    signal.signal(signal.SIGUSR1, _probe)
    from controller.__main__ import main as controller_main

    return controller_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""`python -m controller` under tracemalloc, for the memory scenario: each SIGUSR1 dumps a snapshot.

    BENCH_TRACEMALLOC_DIR=/tmp/x python bench/traced_controller.py run --metrics-port ...

Tracing starts at the first SIGUSR1 (importing the kubernetes client under tracemalloc takes minutes),
so a later snapshot holds only what was made since and is still alive: compared with the first one it
is what the controller grew by. Snapshots go to $BENCH_TRACEMALLOC_DIR/snapshot-<n>.pickle (n from 0),
each written under a temporary name and renamed when complete, so the benchmark can wait for the file.
Tracing costs CPU and memory: its process's RSS is not the controller's; the memory scenario takes RSS from a plain run.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "8"))
OUT = Path(os.environ["BENCH_TRACEMALLOC_DIR"])
_counter = itertools.count()


def _dump(_signum: int, _frame: FrameType | None) -> None:
    n = next(_counter)
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
    partial = OUT / f".snapshot-{n}.pickle"
    tracemalloc.take_snapshot().dump(str(partial))
    partial.rename(OUT / f"snapshot-{n}.pickle")


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    signal.signal(signal.SIGUSR1, _dump)
    from controller.__main__ import main as controller_main

    return controller_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""controller.memory: glibc's free memory goes back to the system after a burst, and only then."""

from __future__ import annotations

import gc
from pathlib import Path

from controller import memory


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trim_gives_back_what_a_burst_freed() -> None:
    # The controller runs on glibc (the image, CI): without it the release does nothing, which must show.
    assert memory.free_kept() is not None, "glibc's mallinfo2/malloc_trim not found: controller/memory.py is inert"
    # A burst of allocations over pymalloc's 512 bytes (glibc's) held at once, then freed but for the
    # last one, which pins the top of the heap so glibc cannot just shrink it by itself.
    burst = [bytearray(8192) for _ in range(12_000)]  # ~94 MiB, each touched (zero-filled)
    pin = burst[-1]
    del burst
    gc.collect()
    kept = memory.free_kept()
    assert kept is not None and kept > 64 << 20, "the freed burst stays with glibc"
    before = rss_mib()
    assert memory.trim()
    assert rss_mib() < before - 48, "malloc_trim returned the burst's pages"
    del pin


def test_the_releaser_trims_once_per_burst_above_its_threshold() -> None:
    kept = [1 << 20]
    trims: list[int] = []
    releaser = memory.Releaser(
        threshold=8 << 20, step=2 << 20, free=lambda: kept[0], release=lambda: bool(trims.append(kept[0]))
    )
    assert not releaser.check()  # little kept free
    kept[0] = 9 << 20
    assert releaser.check()  # a burst freed memory
    assert not releaser.check(), "what it gave back still counts as free: no trim while nothing changes"
    kept[0] = 10 << 20
    assert not releaser.check()  # within a step of the last trim
    kept[0] = 4 << 20
    assert not releaser.check()  # reused by the next burst ...
    kept[0] = 9 << 20
    assert releaser.check()  # ... and freed again
    assert trims == [9 << 20, 9 << 20] and releaser.trims == 2
    unknown = memory.Releaser(free=lambda: None, release=lambda: bool(trims.append(0)))
    assert not unknown.check() and len(trims) == 2

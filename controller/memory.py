"""Give back to the system what the C allocator keeps free after a burst.

glibc's malloc keeps the memory a burst freed (large Python objects, dict and list storage over 512
bytes, the kubernetes client's and gRPC's buffers, in the main heap and in one arena per thread that
allocated) for the next allocation instead of returning it; a controller that has just converged
thousands of services then holds tens of megabytes it will not use until the next burst.
`malloc_trim(0)` returns the free pages of every arena. It costs a walk of glibc's free lists, and
what it gave back still counts as free in glibc's books, so `Releaser` calls it only when glibc holds
more than `threshold` bytes free and `step` more than at the last trim (or at the lowest seen since):
once after a burst, not every `interval` while nothing changes. Without glibc (musl, macOS) it does
nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0
THRESHOLD_BYTES = 8 << 20
STEP_BYTES = 4 << 20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc, or older than 2.33 (no mallinfo2)
        return None
    return libc


_LIBC = _glibc()


def mallinfo() -> _Mallinfo2 | None:
    """glibc's mallinfo2 (None without glibc): the memory bench reads its books here too."""
    return None if _LIBC is None else _LIBC.mallinfo2()


def free_kept() -> int | None:
    """Bytes glibc holds free in its heap and arenas (None without glibc)."""
    return None if _LIBC is None else int(_LIBC.mallinfo2().fordblks)


def trim() -> bool:
    """malloc_trim(0): whether glibc gave memory back (False without glibc)."""
    return False if _LIBC is None else bool(_LIBC.malloc_trim(0))


class Releaser:
    """Trims when glibc keeps more than `threshold` bytes free and `step` more than after the last trim,
    checked every `interval` seconds."""

    def __init__(
        self,
        interval: float = INTERVAL_SECONDS,
        threshold: int = THRESHOLD_BYTES,
        step: int = STEP_BYTES,
        free: Callable[[], int | None] = free_kept,
        release: Callable[[], bool] = trim,
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self.step = step
        self._free = free
        self._release = release
        self._low = 0  # free bytes at the last trim, or the fewest seen since (reused, then freed again)
        self.trims = 0

    def check(self) -> bool:
        """One check: trim if enough is kept free, and more than at the last trim; whether it trimmed."""
        kept = self._free()
        if kept is None:
            return False
        self._low = min(self._low, kept)
        if kept <= self.threshold or kept - self._low <= self.step:
            return False
        self._release()
        self._low = kept
        self.trims += 1
        log.debug("returned free memory to the system (%d MiB were kept free)", kept >> 20)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # never let the allocator's bookkeeping stop the controller
                log.exception("memory release failed")

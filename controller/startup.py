"""The controller's start-up timeline: one INFO line per phase, the first time it is reached, in seconds
since the process was exec'd (docs/reliability.md, "Start-up time"). A restarted controller serves nothing
until its first passes, so this is the outage a SIGKILL or an exit 3 costs beyond the restart itself.

Phases reached before logging is configured (imports, settings) are kept and logged by `flush`.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)
_IMPORTED = time.monotonic()
_reached: dict[str, float] = {}
_held: list[tuple[str, float, float]] = []
_flushed = False
_LINE = "start-up: %s at %.2f s after exec (%.2f s CPU)"


def _exec_offset() -> float:
    """Seconds between the exec and this module's import: /proc/self/stat's start time (clock ticks after
    boot) against CLOCK_BOOTTIME, the same clock; 0 where /proc is not there."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started - (time.monotonic() - _IMPORTED))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


_OFFSET = _exec_offset()


def since_exec() -> float:
    return _OFFSET + time.monotonic() - _IMPORTED


def mark(phase: str) -> None:
    """Record `phase` as reached now, once: later calls with the same phase cost a dict look-up."""
    if phase in _reached:
        return
    at = _reached[phase] = since_exec()
    cpu = time.process_time()  # every thread's: under load the wall time is this CPU time stretched
    if _flushed:
        log.info(_LINE, phase, at, cpu)
    else:
        _held.append((phase, at, cpu))


def flush() -> None:
    """Log the phases reached before logging was configured; from now on `mark` logs at once."""
    global _flushed
    _flushed = True
    for phase, at, cpu in _held:
        log.info(_LINE, phase, at, cpu)
    _held.clear()


def reached() -> dict[str, float]:
    """Every phase reached so far, with its time after exec (tests and benchmarks)."""
    return dict(_reached)

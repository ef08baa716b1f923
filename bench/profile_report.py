"""Summarise a py-spy `--format raw` profile (collapsed stacks): the top functions by self and by
inclusive samples, and the share of each package, so a report can name the hot spots."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

GROUPS = (
    ("controller/intent", "controller.intent (render/merge/plan/verify/normalise)"),
    ("controller/network", "controller.network (reconciler/session/outcome)"),
    ("controller/gnmi", "controller.gnmi (client)"),
    ("controller/", "controller (other)"),
    ("kopf/", "kopf"),
    ("kubernetes/", "kubernetes client"),
    ("urllib3/", "urllib3"),
    ("aiohttp/", "aiohttp (kopf's API client)"),
    ("grpc/", "grpc"),
    ("google/protobuf", "protobuf"),
    ("pydantic", "pydantic"),
    ("jsonpatch", "jsonpatch/jsonpointer"),
    ("jsonpointer", "jsonpatch/jsonpointer"),
    ("json/", "json (stdlib)"),
    ("asyncio/", "asyncio"),
    ("ssl.py", "ssl"),
    ("logging/", "logging"),
    ("copy.py", "copy (deepcopy)"),
    ("concurrent/", "concurrent.futures"),
    ("threading.py", "threading"),
)


PLUMBING = (
    "<frozen runpy>",
    "controller/__main__.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "Handle._run (asyncio/events.py)",
    "threading.py",
    "concurrent/futures/thread.py",
    "kopf/_core/reactor/running.py",
)


OURS = ("controller/", "kopf/", "kubernetes/", "devicesim/")


def frame_name(frame: str) -> tuple[str, str]:
    """(function, file) of one collapsed frame."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


def group_of(file: str) -> str:
    for needle, name in GROUPS:
        if needle in file:
            return name
    return "other"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    self_count: Counter[str] = Counter()
    incl_count: Counter[str] = Counter()
    leaf_group: Counter[str] = Counter()
    incl_group: Counter[str] = Counter()
    total = 0
    stacks: list[tuple[list[str], int]] = []
    for raw in path.read_text(errors="replace").splitlines():
        raw = raw.strip()
        if not raw:
            continue
        stack, _, count_text = raw.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        names = []
        for f in frames:
            func, file = frame_name(f)
            names.append((f"{func} ({file})", group_of(file)))
        self_count[names[-1][0]] += count
        stacks.append(([n for n, _ in names], count))
        leaf_group[names[-1][1]] += count
        for n in {n for n, _ in names}:
            incl_count[n] += count
        for g in {g for _, g in names}:
            incl_group[g] += count

    # For the hottest self-time functions: which frame of ours (controller/, kopf/, kubernetes/) called them.
    callers: dict[str, Counter[str]] = {}
    hottest = {k for k, _ in self_count.most_common(8)}
    for stack_names, count in stacks:
        leaf = stack_names[-1]
        if leaf not in hottest:
            continue
        caller = next((n for n in reversed(stack_names[:-1]) if any(p in n for p in OURS)), "?")
        callers.setdefault(leaf, Counter())[caller] += count

    def share(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"name": k, "samples": v, "pct": round(100 * v / total, 1)} for k, v in counter.most_common(n)]

    # Inclusive: leave out the entry points every stack passes through (runpy, the event loop, threads).
    incl = [(k, v) for k, v in incl_count.most_common() if not any(p in k for p in PLUMBING)]
    return {
        "samples": total,
        "self": share(self_count, top),
        "inclusive": [{"name": k, "samples": v, "pct": round(100 * v / total, 1)} for k, v in incl[: top * 2]],
        "self_by_package": share(leaf_group, len(leaf_group)),
        "inclusive_by_package": share(incl_group, len(incl_group)),
        "callers_of_hottest": {
            k: [{"caller": c, "pct_of_function": round(100 * v / self_count[k], 1)} for c, v in cnt.most_common(3)]
            for k, cnt in sorted(callers.items(), key=lambda kv: -self_count[kv[0]])
        },
    }


def render_text(s: dict[str, Any]) -> str:
    lines = [f"samples: {s['samples']}", "", "self time by package:"]
    lines += [f"  {r['pct']:5.1f}%  {r['name']}" for r in s["self_by_package"]]
    lines += ["", "top functions, self time:"]
    lines += [f"  {r['pct']:5.1f}%  {r['name']}" for r in s["self"]]
    lines += ["", "who calls the hottest functions (nearest frame in controller/, kopf/ or kubernetes/):"]
    for fn, cs in s.get("callers_of_hottest", {}).items():
        lines.append(f"  {fn}")
        lines += [f"      {c['pct_of_function']:5.1f}%  {c['caller']}" for c in cs]
    lines += ["", "top functions, inclusive (under the loop/thread entry points):"]
    lines += [f"  {r['pct']:5.1f}%  {r['name']}" for r in s["inclusive"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_text(summarise(Path(sys.argv[1]))))

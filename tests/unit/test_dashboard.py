"""The Grafana dashboard only queries metrics the controller exports (controller/metrics.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "telco-intent" / "dashboards" / "telco-intent.json"

# Series names per metric type, as the Prometheus exposition format writes them.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
# PromQL words that look like identifiers but are not series names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are not functions, keywords or labels."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows ($__rate_interval too)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w$:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS:
            continue
        names.add(word)
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if var.get("type") == "query":
            text = str(query.get("query") if isinstance(query, dict) else query)
            inner = re.fullmatch(r"label_values\((\w+)\s*,\s*\w+\)", text)
            assert inner, f"variable {var['name']}: unexpected query {text!r}"
            found.append((f"variable {var['name']}", inner.group(1)))
    return found


def test_the_parser_sees_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(a_seconds_bucket{namespace=~"$ns", x="y"}'
        "[$__rate_interval]))) / on (kind) group_left sum without (pod) (b_total offset 5m) and c"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "telco-intent"


@pytest.mark.parametrize(("title", "expr"), expressions(), ids=[t for t, _ in expressions()])
def test_every_expression_names_only_exported_metrics(title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{title}: no metric in {expr!r}"
    unknown = names - exported()
    assert not unknown, f"{title}: {sorted(unknown)} are not defined in controller/metrics.py"


def test_the_dashboard_covers_every_family() -> None:
    used = set().union(*(metric_names(e) for _, e in expressions()))
    uncovered = {
        family.name
        for family in REGISTRY.collect()
        if not any(family.name + suffix in used for suffix in SUFFIXES[family.type])
    }
    assert not uncovered, f"no panel shows {sorted(uncovered)}"

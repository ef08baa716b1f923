"""`telco-controller status`: the tables a dashboard shows, from what the API server holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api import GROUP, VERSION
from .conditions import condition

KINDS = ("productofferings", "networkdevices", "subscriptions", "networkservices", "invoices")
Items = dict[str, list[dict[str, Any]]]


def billed_account(subscription: dict[str, Any]) -> str:
    """The account a Subscription bills: its BillingAccount's name, or the deprecated inline id."""
    spec = subscription.get("spec") or {}
    return str((spec.get("billingAccountRef") or {}).get("name") or (spec.get("billingAccount") or {}).get("id", "-"))


def condition_status(obj: dict[str, Any], type_: str) -> str:
    """The status of the object's `type_` condition, "-" without one (a table cell)."""
    cond = condition(obj.get("status"), type_)
    return str(cond.get("status")) if cond is not None else "-"


def _reason(obj: dict[str, Any], type_: str = "Ready") -> str:
    cond = condition(obj.get("status"), type_)
    return str(cond.get("reason", "")) if cond is not None else ""


KIND_OF = {
    "productofferings": "ProductOffering",
    "networkdevices": "NetworkDevice",
    "subscriptions": "Subscription",
    "networkservices": "NetworkService",
    "invoices": "Invoice",
}


def not_ready(items: Items) -> list[tuple[str, str, str, str]]:
    """(kind, name, reason, message) of every object whose Ready condition is not True; the message is
    the Stalled one (what to do) when a person must act, else Ready's."""
    rows = []
    for plural in KINDS:
        for obj in items.get(plural, []):
            status = obj.get("status") or {}
            ready = condition(status, "Ready")
            if ready is not None and ready.get("status") == "True":
                continue
            stalled = condition(status, "Stalled")
            why = stalled if stalled is not None and stalled.get("status") == "True" else ready
            meta = obj.get("metadata") or {}
            name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta.get("name"))
            reason = str((why or {}).get("reason") or "NotReported")
            message = str((why or {}).get("message") or "the controller has not reported on it yet")
            rows.append((KIND_OF[plural], name, reason, message))
    return rows


def collect(list_items: Callable[[str], list[dict[str, Any]]]) -> Items:
    return {plural: list_items(plural) for plural in KINDS}


def collect_with_kubectl(kubectl: Callable[..., str]) -> Items:
    return collect(lambda plural: json.loads(kubectl("get", plural, "-A", "-o", "json"))["items"])


def collect_with_client() -> Items:
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    api = kubernetes.client.CustomObjectsApi()

    def items(plural: str) -> list[dict[str, Any]]:
        listing: Any = api.list_cluster_custom_object(GROUP, VERSION, plural)
        return list(listing["items"])

    return collect(items)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def render(items: Items) -> str:
    def name(o: dict[str, Any]) -> str:
        meta = o["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])

    sections = []
    subs = [
        [
            name(o),
            (o.get("status") or {}).get("state", "-"),
            o["spec"]["productOffering"]["name"],
            billed_account(o),
            condition_status(o, "ServiceReady"),
            str((o.get("status") or {}).get("startDate", "-")),
        ]
        for o in items["subscriptions"]
    ]
    sections.append("SUBSCRIPTIONS\n" + table(["NAME", "STATE", "OFFERING", "ACCOUNT", "SERVICE-READY", "SINCE"], subs))
    services = [
        [
            name(o),
            condition_status(o, "Ready"),
            _reason(o),
            (o.get("status") or {}).get("state", "-"),
            (o.get("status") or {}).get("operatingStatus", "-"),
            ", ".join(f"{e['device']}/{e['port']}.{e['vlanId']}" for e in o["spec"]["endpoints"]),
        ]
        for o in items["networkservices"]
    ]
    sections.append(
        "NETWORK SERVICES\n" + table(["NAME", "READY", "REASON", "STATE", "OPERATING", "ENDPOINTS"], services)
    )
    devices = [
        [
            name(o),
            condition_status(o, "Ready"),
            condition_status(o, "Reachable"),
            f"{o['spec']['address']}:{o['spec'].get('port', 9339)}",
            str((o.get("status") or {}).get("services", "-")),
        ]
        for o in items["networkdevices"]
    ]
    sections.append("DEVICES\n" + table(["NAME", "READY", "REACHABLE", "ADDRESS", "SERVICES"], devices))
    invoices = [
        [
            name(o),
            o["spec"]["billingAccount"],
            (o.get("status") or {}).get("state", "-"),
            _money((o.get("status") or {}).get("taxIncludedAmount")),
        ]
        for o in items["invoices"]
    ]
    sections.append("INVOICES\n" + table(["NAME", "ACCOUNT", "STATE", "TOTAL"], invoices))
    stuck = [[kind, name, reason, message[:160]] for kind, name, reason, message in not_ready(items)]
    sections.append("NOT READY\n" + table(["KIND", "NAME", "REASON", "MESSAGE"], stuck))
    return "\n\n".join(sections)


def _money(m: dict[str, Any] | None) -> str:
    return f"{m['value']} {m['unit']}" if m else "-"


def render_events(path: Path, limit: int = 40) -> str:
    rows = []
    for line in path.read_text().splitlines()[:limit]:
        event = json.loads(line)
        rows.append(
            [
                str(event.get("type", "")).removeprefix("dev.intent.telco."),
                str(event.get("source", "")).rsplit("/namespaces/", 1)[-1],
                str(event.get("time", "")),
                str(event.get("id", ""))[:13] + "…",
            ]
        )
    return table(["TYPE", "SUBSCRIPTION", "TIME", "ID"], rows)


def render_invoice(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    lines = [
        [line["type"], line["name"], line["subscription"], _money(line["taxExcludedAmount"])]
        for line in status.get("lines", [])
    ]
    head = (
        f"{obj['metadata']['name']}: account {obj['spec']['billingAccount']}, state {status.get('state', '-')}, "
        f"total {_money(status.get('taxIncludedAmount'))} (before tax {_money(status.get('taxExcludedAmount'))})"
    )
    return head + "\n" + table(["TYPE", "LINE", "SUBSCRIPTION", "AMOUNT"], lines)

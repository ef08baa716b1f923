"""A read-only web page a person reads (`run --web-port`): per customer their subscriptions, service
state and open invoices; per device its services and the ports they claim; every object that is not
Ready, with its reason and what to do.

Plain HTML, no script, no framework; everything shown is escaped. The page is built on each request
from what the API server holds (the same lists `python -m controller status` reads), so a standby
replica serves the same page as the active one.
"""

from __future__ import annotations

import html
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from aiohttp import web

from .status import KINDS, Items, billed_account, condition_status, not_ready
from .times import rfc3339

log = logging.getLogger(__name__)
OPEN_INVOICE_STATES = ("new", "onHold", "validated", "sent", "partiallyPaid")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], empty: str = "none") -> str:
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta.get("name"))


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def _money(m: dict[str, Any] | None) -> str:
    return f"{m['value']} {m['unit']}" if m else "-"


def _customer(sub: dict[str, Any]) -> str:
    """A subscription's customer: its relatedParty with role customer, else its billing account."""
    spec = sub.get("spec") or {}
    for party in spec.get("relatedParty") or []:
        if str(party.get("role", "")).lower() == "customer" and party.get("name"):
            return str(party["name"])
    return f"account {billed_account(sub)}"


def page(items: Items, now: datetime) -> str:
    """The whole HTML page for the objects in `items` (plural -> objects), as of `now`."""
    services = {(_name(s)): s for s in items.get("networkservices", [])}
    invoices_by_account: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for inv in items.get("invoices", []):
        account = str((inv.get("spec") or {}).get("billingAccount", ""))
        invoices_by_account[((inv.get("metadata") or {}).get("namespace", ""), account)].append(inv)

    customers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sub in items.get("subscriptions", []):
        customers[_customer(sub)].append(sub)
    parts = [f"<h2>Customers</h2>{'' if customers else '<p class=empty>no subscriptions</p>'}"]
    for customer in sorted(customers):
        subs = customers[customer]
        rows = []
        accounts = set()
        for sub in subs:
            st = _status(sub)
            accounts.add((sub["metadata"].get("namespace", ""), billed_account(sub)))
            svc = services.get(_name(sub))
            rows.append(
                [
                    _name(sub),
                    sub["spec"]["productOffering"]["name"],
                    st.get("state", "-"),
                    condition_status(sub, "Ready"),
                    _reason(sub),
                    _status(svc).get("state", "-") if svc else "no service",
                    _status(svc).get("operatingStatus", "-") if svc else "-",
                ]
            )
        open_invoices = [
            [_name(i), _status(i).get("state", "new"), _money(_status(i).get("amountDue")), _due(i)]
            for account in sorted(accounts)
            for i in invoices_by_account.get(account, [])
            if _status(i).get("state", "new") in OPEN_INVOICE_STATES
        ]
        parts.append(
            f'<section class="customer"><h3>{_e(customer)}</h3>'
            + _table(["Subscription", "Offering", "State", "Ready", "Reason", "Service", "Operating"], rows)
            + "<h4>Open invoices</h4>"
            + _table(["Invoice", "State", "Amount due", "Due"], open_invoices, "no open invoice")
            + "</section>"
        )

    claims: dict[str, list[list[str]]] = defaultdict(list)
    for svc in items.get("networkservices", []):
        for ep in (svc.get("spec") or {}).get("endpoints") or []:
            claims[str(ep.get("device"))].append(
                [f"{ep.get('port')}.{ep.get('vlanId')}", _name(svc), condition_status(svc, "Ready"), _reason(svc)]
            )
    parts.append("<h2>Devices</h2>")
    for dev in sorted(items.get("networkdevices", []), key=_name):
        name = str(dev["metadata"]["name"])
        st = _status(dev)
        head = (
            f"Ready {condition_status(dev, 'Ready')} ({_reason(dev) or '-'}), "
            f"reachable {condition_status(dev, 'Reachable')}, {st.get('services', 0)} service(s)"
        )
        parts.append(
            f'<section class="device"><h3>{_e(name)}</h3><p>{_e(head)}</p>'
            + _table(["Port.VLAN", "NetworkService", "Ready", "Reason"], sorted(claims.get(name, [])), "no claims")
            + "</section>"
        )

    rows = [[kind, name, reason, message] for kind, name, reason, message in not_ready(items)]
    parts.append('<h2 id="not-ready">Not Ready</h2>' + _table(["Kind", "Name", "Reason", "Message"], rows, "all Ready"))
    body = "".join(parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"><title>telco-intent</title>'
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:left}.empty{color:#666}</style></head>"
        f"<body><h1>telco-intent</h1><p>As the API server holds it at {_e(rfc3339(now))} (read-only).</p>"
        f"{body}</body></html>\n"
    )


def _reason(obj: dict[str, Any] | None) -> str:
    for cond in _status(obj or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return str(cond.get("reason", ""))
    return ""


def _due(inv: dict[str, Any]) -> str:
    st = _status(inv)
    due = st.get("paymentDueDate") or "-"
    return f"{due} (overdue)" if st.get("overdue") else str(due)


Lister = Callable[[str], Awaitable[list[dict[str, Any]]]]


async def collect(
    list_all: Lister, list_in: Callable[[str, str], Awaitable[list[dict[str, Any]]]], namespaces: list[str]
) -> Items:
    """Every object of every kind; with `namespaces`, the namespaced kinds only there (the RBAC allows no more)."""
    cluster_scoped = {"productofferings", "networkdevices"}
    out: Items = {}
    for plural in KINDS:
        if namespaces and plural not in cluster_scoped:
            out[plural] = [o for ns in namespaces for o in await list_in(plural, ns)]
        else:
            out[plural] = await list_all(plural)
    return out


async def serve(
    port: int, address: str, items: Callable[[], Awaitable[Items]], clock: Callable[[], datetime]
) -> web.AppRunner:
    """Serve the page on address:port (GET /); the caller stops it with `await runner.cleanup()`."""

    async def index(_: web.Request) -> web.Response:
        try:
            text = page(await items(), clock())
        except Exception as exc:  # the API server is away: say so rather than a stack trace
            log.warning("web view: could not read the objects: %s", exc)
            return web.Response(status=503, text=f"cannot read the objects from the API server: {exc}")
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    log.info("web view on http://%s:%d/", address, port)
    return runner

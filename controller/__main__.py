"""telco-controller: the controller's command line (`python -m controller ...`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, cast

from . import crdgen


def _crds(args: argparse.Namespace) -> int:
    files = crdgen.render_all()
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.write / name).write_text(text)
            print(f"wrote {args.write / name}")
        if args.reference:
            from . import apidoc

            args.reference.write_text(apidoc.render())
            print(f"wrote {args.reference}")
    else:
        sys.stdout.write("---\n".join(files.values()))
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    import kopf

    from .handlers import lifecycle
    from .settings import Settings

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Kopf logs every event it dispatches at INFO: at thousands of objects that is much of the CPU.
    for noisy in ("kopf.objects", "kopf._core", "kopf._cogs", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lifecycle.SETTINGS = Settings(
        namespaces=args.namespace,
        resync_seconds=args.resync_seconds,
        peering=args.peering,
        priority=args.priority,
        peering_lifetime=args.peering_lifetime,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        billing_sink_urls=args.billing_sink_url,
        billing_sink_mode=args.billing_sink_mode,
        billing_jsonl=args.billing_jsonl,
        tax_category=args.tax_category,
        tax_rate=args.tax_rate,
        billing_interval_seconds=args.billing_interval_seconds,
        usage_interval_seconds=args.usage_interval_seconds,
    )
    import controller.handlers  # noqa: F401 - registers every handler with Kopf

    from .peering import own_identity

    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=not args.peering,
            priority=args.priority,
            peering_name=args.peering,
            # The name Kopf gives this replica in the peering object, which controller/peering.py
            # must know to tell its own entry from the others' (Kopf types it as a NewType of str).
            identity=cast(Any, own_identity()),
            liveness_endpoint=f"http://127.0.0.1:{args.health_port}/healthz" if args.health_port else None,
        )
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    import asyncio

    from . import planner
    from .kube import Kube

    async def go() -> str:
        kube = Kube()
        try:
            reports = await planner.compute(args.file, kube)
        finally:
            kube.close()
        return planner.render_json(reports) if args.output == "json" else planner.render_text(reports)

    try:
        print(asyncio.run(go()))
    except planner.PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from . import status

    print(status.render(status.collect_with_client()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(once=args.once, at=args.at)


def _instant(text: str) -> Any:
    """An RFC 3339 instant with its offset, e.g. 2027-02-28T23:59:30Z."""
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time such as 2027-02-28T23:59:30Z") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add Z or +01:00")
    return value


def _billing_flags(run: argparse.ArgumentParser, defaults: Any) -> None:
    """The `run` flags of the commercial layer (docs/commerce.md)."""
    billing = run.add_argument_group("billing", "billing events, invoices and usage metering (docs/commerce.md)")
    billing.add_argument(
        "--billing-sink-url",
        action="append",
        default=list(defaults.billing_sink_urls),
        metavar="URL",
        help="POST billing CloudEvents to URL (repeatable; TELCO_BILLING_SINK_URL, comma-separated)",
    )
    billing.add_argument(
        "--billing-sink-mode",
        choices=["structured", "binary"],
        default=defaults.billing_sink_mode,
        help="CloudEvents HTTP content mode (TELCO_BILLING_SINK_MODE); default structured",
    )
    billing.add_argument(
        "--billing-jsonl",
        default=defaults.billing_jsonl,
        metavar="PATH",
        help="also append every billing CloudEvent to this JSON Lines file (TELCO_BILLING_JSONL)",
    )
    billing.add_argument(
        "--tax-category", default=defaults.tax_category, help="tax applied to invoices (TELCO_TAX_CATEGORY)"
    )
    billing.add_argument(
        "--tax-rate",
        default=defaults.tax_rate,
        metavar="PERCENT",
        help='tax rate in percent, e.g. "20" (TELCO_TAX_RATE); unset: invoices carry no tax',
    )
    billing.add_argument(
        "--billing-interval-seconds",
        type=float,
        default=defaults.billing_interval_seconds,
        help="period of the billing pass: close ended periods, create and issue invoices, dunning"
        " (TELCO_BILLING_INTERVAL_SECONDS)",
    )
    billing.add_argument(
        "--usage-interval-seconds",
        type=float,
        default=defaults.usage_interval_seconds,
        help="period of the octet-counter samples for usage-priced subscriptions (TELCO_USAGE_INTERVAL_SECONDS)",
    )


def _lifetime(text: str) -> int:
    value = int(text)
    if not 5 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 5 and 3600 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telco-controller", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from .settings import Settings

    defaults = Settings()
    run = sub.add_parser(
        "run",
        help="run the controller against the current kubeconfig (KUBECONFIG or in-cluster)",
        description="Run the controller. Every flag also reads an environment variable TELCO_<NAME>.",
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=defaults.resync_seconds,
        help="period of the level-triggered re-verification of every device (TELCO_RESYNC_SECONDS)",
    )
    run.add_argument(
        "--peering",
        default=defaults.peering,
        help="Kopf peering object for active/standby replicas (TELCO_PEERING); default standalone",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=defaults.priority,
        help="this replica's peering priority; give each replica a distinct one (TELCO_PRIORITY)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=_lifetime,
        default=defaults.peering_lifetime,
        metavar="SECONDS",
        help="how long a replica's peering keep-alive counts: a standby takes over at most this long after"
        " the active replica dies; keep-alives are sent 5-10 s before it ends (TELCO_PEERING_LIFETIME;"
        " default 15, Kopf's own is 60)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="serve Prometheus metrics on 127.0.0.1:PORT (TELCO_METRICS_PORT); 0 disables",
    )
    run.add_argument(
        "--metrics-address",
        default=defaults.metrics_address,
        help="address the metrics endpoint binds (TELCO_METRICS_ADDRESS); 0.0.0.0 in a pod",
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=defaults.health_port,
        help="serve /healthz on 127.0.0.1:PORT for liveness probes (TELCO_HEALTH_PORT); 0 disables",
    )
    _billing_flags(run, defaults)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_run)
    plan = sub.add_parser(
        "plan",
        help="print the gNMI Set a NetworkService would cause, against live device state (sends nothing)",
    )
    plan.add_argument("-f", "--file", type=Path, required=True, help="YAML with one or more NetworkServices")
    plan.add_argument("-o", "--output", choices=["text", "json"], default="text")
    plan.set_defaults(func=_plan)
    status = sub.add_parser("status", help="tables of what a dashboard shows (subscriptions, services, devices)")
    status.set_defaults(func=_status)
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--write", type=Path, metavar="DIR", help="write one file per CRD into DIR instead")
    crds.add_argument("--reference", type=Path, metavar="FILE", help="with --write: also the Markdown API reference")
    crds.set_defaults(func=_crds)
    demo = sub.add_parser("demo", help="the quick start on a local control plane (what `make demo` runs)")
    demo.add_argument("--once", action="store_true", help="run the checks and exit instead of staying up")
    demo.add_argument(
        "--at",
        type=_instant,
        metavar="TIME",
        help="run the demo and its controller as if the clock showed TIME (RFC 3339, e.g. 2027-02-28T23:59:30Z);"
        " default: the real clock",
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""telco-controller: the controller's command line (`python -m controller ...`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from . import crdgen, startup
from .settings import SettingError, Settings, describe, options, resolve

_OPTIONS = {o.field: o for o in options()}


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

    from .billing.proof import Keyring, SigningKeyError
    from .handlers import lifecycle

    startup.mark("Kopf and the lifecycle handlers imported")
    try:
        settings = settings_from_args(args, os.environ)
        Keyring.load(settings.billing_signing_key_file)  # a key that cannot be used stops the start, not a pass
    except (SettingError, SigningKeyError) as exc:
        print(f"telco-controller run: error: {exc}", file=sys.stderr)
        return 2
    startup.mark("settings parsed")
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    startup.flush()
    # Kopf logs every event it dispatches at INFO: at thousands of objects that is much of the CPU.
    for noisy in ("kopf.objects", "kopf._core", "kopf._cogs", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lifecycle.SETTINGS = settings
    import controller.handlers  # noqa: F401 - registers every handler with Kopf

    if settings.webhook_port:  # the validating webhook's handlers (Kopf refuses them without a server)
        importlib.import_module("controller.handlers.admission")

    import threading

    from . import discovery
    from .discovery import EXIT_UNRESOLVED, UnresolvedGuard
    from .peering import own_identity

    startup.mark("imports done")
    # Never run blind: Kopf resolves our kinds from discovery once, at start (controller/discovery.py).
    discovery.wait_until_served()
    startup.mark("discovery waited")
    stop = threading.Event()
    guard = UnresolvedGuard.install(stop.set)
    operator = kopf.operator(
        stop_flag=stop,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=not settings.peering,
        priority=settings.priority,
        peering_name=settings.peering,
        # The name Kopf gives this replica in the peering object, which controller/peering.py
        # must know to tell its own entry from the others' (Kopf types it as a NewType of str).
        identity=cast(Any, own_identity()),
        liveness_endpoint=f"http://127.0.0.1:{settings.health_port}/healthz" if settings.health_port else None,
    )
    try:
        asyncio.run(_releasing(_with_tmf(operator, settings) if settings.tmf_port else operator, stop))
    finally:
        guard.uninstall()
    return EXIT_UNRESOLVED if guard.tripped else 0


async def _releasing(main: Any, stop: Any) -> None:
    """Run `main`, then set the stop flag however it ended. Kopf waits for a threading.Event stop flag
    in the loop's default executor; a flag left unset (a SIGTERM stops Kopf by its own signal handler)
    keeps that thread waiting, and asyncio.run's executor shutdown waits for it forever: the process
    would outlive its graceful stop until SIGKILL (a pod's whole grace period)."""
    try:
        await main
    finally:
        stop.set()


async def _with_tmf(operator: Any, settings: Settings) -> None:
    """The operator with the TM Forum APIs beside it (every replica serves them: reads come from its own
    watch cache, writes go through the API server)."""
    running = await _start_tmf(settings, _delivers_hub_events)
    try:
        await operator
    finally:
        await running.close()


def _delivers_hub_events() -> bool:
    """Inside the controller exactly one replica sends the hubs' events: the one running the commerce
    layer (sharded: the holder of the `commerce` unit; with peering: the active peer; else the only one)."""
    from .handlers.lifecycle import REPLICA
    from .sharding import COMMERCE

    controller = REPLICA.controller if REPLICA is not None else None
    return controller is not None and controller.drives(COMMERCE)


async def _start_tmf(settings: Settings, delivers: Callable[[], bool] = lambda: True) -> Any:
    import kubernetes

    from .billing.clock import OffsetClock
    from .tmf.server import serve

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    clock = OffsetClock(settings.clock_offset_seconds, settings.clock_offset_file)
    return await serve(
        kubernetes.client.ApiClient(),
        settings.tmf_port,
        settings.tmf_address,
        settings.tmf_cert_dir,
        clock.now,
        delivers,
    )


def _tmf_api(args: argparse.Namespace) -> int:
    """The TM Forum APIs alone, in a process of their own (no reconciler): the same --tmf-* settings."""
    import asyncio
    import logging
    import signal

    try:
        settings = settings_from_args(args, os.environ)
    except SettingError as exc:
        print(f"telco-controller tmf-api: error: {exc}", file=sys.stderr)
        return 2
    if not settings.tmf_port:
        print("telco-controller tmf-api: error: --tmf-port (TELCO_TMF_PORT) is required", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def serve_until_stopped() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        running = await _start_tmf(settings)
        try:
            await stop.wait()
        finally:
            await running.close()

    asyncio.run(serve_until_stopped())
    return 0


PLAN_DESCRIPTION = """\
Print the gNMI Set that NetworkServices and Subscriptions would cause, against the devices' live
configuration and the NetworkServices already in the cluster. Sends nothing to any device and
writes nothing to the cluster. A Subscription is planned as the NetworkService the controller would
make of it, with its ProductOffering from the same manifests or else from the cluster.

exit status:
  0  every service would apply cleanly
  1  a service would be refused (a port/VLAN conflict, an endpoint held by another Subscription,
     a device that would not take it, an offering not sellable) or is invalid
  2  the plan could not be made: unreadable or missing input, no API server or device reachable
"""


def _plan(args: argparse.Namespace) -> int:
    import asyncio

    from . import planner
    from .kube import Kube

    async def go(docs: list[planner.Document]) -> list[dict[str, Any]]:
        try:
            kube = Kube()
        except Exception as exc:  # no kubeconfig, or an unreadable one
            raise planner.PlanError(f"cannot connect to the API server: {exc}") from None
        try:
            return await planner.compute(docs, kube)
        finally:
            kube.close()

    try:
        reports = asyncio.run(go(planner.load_documents(args.file)))
    except planner.PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return planner.EXIT_ERROR
    print(planner.render_json(reports) if args.output == "json" else planner.render_text(reports))
    return planner.exit_code(reports)


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


class _NotGiven:
    """The argparse default of a `run` flag: not on the command line (the environment or default decides)."""

    def __repr__(self) -> str:
        return "not given"


NOT_GIVEN = _NotGiven()


class HelpFormatter(argparse.HelpFormatter):
    """Ends every flag's help with its default, and a setting's with its environment variable too.

    Both come from the parser's own defaults and from controller/settings.py, never from typed text.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or text == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
            return text
        option = _OPTIONS.get(action.dest)
        if option is not None and action.default is NOT_GIVEN:
            listed = ", comma-separated" if option.repeatable else ""
            return f"{text} (env {option.env}{listed}; default {describe(option.default)})".replace("%", "%%")
        if action.required:
            return f"{text} (required)"
        return f"{text} (default {describe(action.default)})".replace("%", "%%")


class PlanHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """`plan`'s description keeps its line breaks (the exit-status table)."""


class _Repeat(argparse.Action):
    """Like action="append", but the first use replaces the NOT_GIVEN default."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        items = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*(items if isinstance(items, list) else []), values])


def _add_setting_flags(run: argparse.ArgumentParser) -> None:
    """One flag per Settings field (controller/settings.py), grouped as the settings are."""
    billing = run.add_argument_group("billing", "billing events, invoices and usage metering (docs/commerce.md)")
    testing = run.add_argument_group("testing", "for tests that must cross a month end without waiting")
    for option in _OPTIONS.values():
        group: argparse._ActionsContainer = run
        if option.field.startswith(("billing_", "tax_", "usage_")):
            group = billing
        elif option.field.startswith("clock_"):
            group = testing
        names = [f"--{option.flag}"] if option.short is None else [option.short, f"--{option.flag}"]
        parse = option.parse
        kwargs: dict[str, Any] = {
            "dest": option.field,
            "default": NOT_GIVEN,
            "help": option.help,
            "metavar": option.metavar,
            "action": _Repeat if option.repeatable else "store",
        }
        if option.choices is not None:
            kwargs["choices"] = option.choices
        else:
            kwargs["type"] = _flag_type(parse)
        group.add_argument(*names, **kwargs)


def _flag_type(parse: Any) -> Any:
    """argparse shows a ValueError's own message only for ArgumentTypeError."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def settings_from_args(args: argparse.Namespace, environ: Any) -> Settings:
    """The `run` flags given on the command line, else TELCO_* in `environ`, else the defaults."""
    given = {field: getattr(args, field) for field in _OPTIONS if getattr(args, field) is not NOT_GIVEN}
    return resolve(given, environ)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telco-controller", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the controller against the current kubeconfig (KUBECONFIG or in-cluster)",
        description="Run the controller. Every flag can also be set by its environment variable TELCO_<FLAG>;"
        " a flag on the command line wins over the environment.",
        formatter_class=HelpFormatter,
    )
    _add_setting_flags(run)
    run.set_defaults(func=_run)
    tmf = sub.add_parser(
        "tmf-api",
        help="serve only the TM Forum Open APIs (docs/tmf.md), in a process of their own; takes run's flags,"
        " of which --tmf-* and --log-level matter",
        formatter_class=HelpFormatter,
    )
    _add_setting_flags(tmf)
    tmf.set_defaults(func=_tmf_api)
    plan = sub.add_parser(
        "plan",
        help="print the gNMI Set a NetworkService or Subscription would cause, against live device state"
        " (sends nothing)",
        description=PLAN_DESCRIPTION,
        formatter_class=PlanHelpFormatter,
    )
    plan.add_argument(
        "-f",
        "--file",
        type=Path,
        required=True,
        metavar="PATH",
        help="YAML or JSON with NetworkServices and/or Subscriptions, or a directory: every *.yaml, *.yml and"
        " *.json in it, in name order",
    )
    plan.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    plan.set_defaults(func=_plan)
    status = sub.add_parser(
        "status",
        help="tables of what a dashboard shows (subscriptions, services, devices)",
        formatter_class=HelpFormatter,
    )
    status.set_defaults(func=_status)
    crds = sub.add_parser(
        "crds", help="print the CustomResourceDefinitions generated from the API models", formatter_class=HelpFormatter
    )
    crds.add_argument(
        "--write", type=Path, metavar="DIR", help="write one file per CRD into DIR; unset: print them all to stdout"
    )
    crds.add_argument("--reference", type=Path, metavar="FILE", help="with --write: also the Markdown API reference")
    crds.set_defaults(func=_crds)
    demo = sub.add_parser(
        "demo", help="the quick start on a local control plane (what `make demo` runs)", formatter_class=HelpFormatter
    )
    demo.add_argument("--once", action="store_true", help="run the checks and exit instead of staying up")
    demo.add_argument(
        "--at",
        type=_instant,
        metavar="TIME",
        help="run the demo and its controller as if the clock showed TIME (RFC 3339, e.g. 2027-02-28T23:59:30Z)"
        " instead of the real clock",
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

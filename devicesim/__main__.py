"""Command line: ``devicesim [serve] ...``, ``devicesim admin ...``, ``devicesim schema``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from devicesim import schema as S
from devicesim.admin import AdminClient, AdminError
from devicesim.device import DEFAULT_PORTS, ENCODINGS, PROFILES
from devicesim.fleet import Fleet, load_fleet_file, make_specs

SERVE_DESCRIPTION = """\
Serve a fleet of simulated gNMI devices (gNMI 0.8.0 over gRPC, OpenConfig subset), each on its
own 127.0.0.1 port with its own state, all on one asyncio loop.

Output (stdout), one line per event, for scripts to wait on:
  devicesim: ca=PATH                                        (TLS: the CA clients must trust)
  devicesim: device-ready name=NAME address=127.0.0.1 port=PORT tls=on|off platform=P ports=A,B username=U
  devicesim: fleet-ready devices=N admin=http://127.0.0.1:PORT ca=PATH|- tls=on|off
Ctrl-C or SIGTERM stops every device cleanly (exit code 0).
"""

SERVE_EPILOG = """\
other commands:
  devicesim admin --help     levers over the admin API: out-of-band config, port/device
                             down and up, restart (--empty), Set latency, failing Sets,
                             dropping streams, state dumps and counters
  devicesim schema           print the modelled OpenConfig tree

clients: username/password travel as gRPC metadata (default admin/admin); with TLS, trust the
CA file (pygnmi: gNMIclient(..., path_cert=CA); grpc: ssl_channel_credentials(CA bytes)).

fleet file (YAML):
  defaults: {platform: sim-7000, ports: [Ethernet1, Ethernet2], username: admin, password: admin,
             profile: strict, encodings: [JSON, JSON_IETF]}
  devices:
    - {name: xr1, encodings: [JSON_IETF]}      (advertises and accepts JSON_IETF only)
    - {name: old1, profile: lenient}
    - {name: pe1, port: 50051}
    - {name: pe2, port: 50052, ports: [Ethernet1], credentials: {username: ops, password: s3cret},
       tls: {cert: pe2.crt, key: pe2.key}}
"""

ADMIN_DESCRIPTION = """\
Talk to a running fleet's admin API (URL from --url or $DEVICESIM_ADMIN_URL, printed by the
fleet as admin=...). Changes made here bypass gNMI authentication and the Set levers, but are
validated like a Set and notified to subscribers, like a person typing at the device console.
"""

ADMIN_EPILOG = """examples:
  devicesim admin list
  devicesim admin dump dev1 [--config]
  devicesim admin stats dev1
  devicesim admin set dev1 '/interfaces/interface[name=Ethernet1]/config/mtu' 9000
  devicesim admin set dev1 '/interfaces/interface[name=Ethernet1]/config/description' uplink
  devicesim admin replace dev1 '/interfaces/interface[name=Ethernet1]/config' '{"mtu": 9000}'
  devicesim admin delete dev1 '/interfaces/interface[name=Ethernet1]/subinterfaces'
  devicesim admin link dev1 Ethernet1 down|up
  devicesim admin down dev1 ; devicesim admin up dev1
  devicesim admin restart dev1 [--empty]
  devicesim admin latency dev1 0.5
  devicesim admin fail-sets dev1 3 [--code UNAVAILABLE] [--message TEXT]
  devicesim admin drop dev1
  devicesim admin reset dev1
Each COMMAND has its own --help.
"""


def _ports(text: str) -> tuple[str, ...]:
    if text.isdigit():
        return tuple(f"Ethernet{i}" for i in range(1, int(text) + 1))
    return tuple(p for p in text.split(",") if p)


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devicesim", description=SERVE_DESCRIPTION, epilog=SERVE_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("fleet")
    g.add_argument("--devices", type=int, default=1, metavar="N",
                   help="number of devices, named dev1..devN unless --names (default 1)")
    g.add_argument("--names", metavar="A,B,...", help="comma-separated device names (their number replaces --devices)")
    g.add_argument("--base-port", type=int, default=0, metavar="P",
                   help="first device listens on P, the next on P+1, ... (default 0: ephemeral ports)")
    g.add_argument("--fleet", metavar="FILE",
                   help="YAML fleet file: per-device name, port, platform, ports, credentials, tls")
    g.add_argument("--ports", type=_ports, default=DEFAULT_PORTS, metavar="LIST|N",
                   help="physical interfaces of every device: names (Ethernet1,Ethernet2) or a count "
                        "(default 8: Ethernet1..Ethernet8)")
    g.add_argument("--platform", default="devicesim-7000", help="platform name reported in dumps")
    g.add_argument("--username", default="admin", help="gNMI username (metadata 'username', default admin)")
    g.add_argument("--password", default="admin", help="gNMI password (metadata 'password', default admin)")
    g.add_argument("--profile", choices=PROFILES, default="strict",
                   help="strict (default): like a real router - official OpenConfig model validation, "
                        "YANG defaults, mirrored state, spec status codes; lenient: the forgiving "
                        "behaviour the controller's tests pin (not for --fleet: set profile there)")
    g.add_argument("--encodings", default=",".join(ENCODINGS), metavar="LIST",
                   help="gNMI encodings every device advertises and accepts (default JSON,JSON_IETF)")
    t = p.add_argument_group("TLS")
    t.add_argument("--insecure", action="store_true", help="serve plaintext gRPC instead of TLS")
    t.add_argument("--ca-out", metavar="PATH", help="write the generated CA certificate here "
                                                     "(default WORKDIR/ca.pem)")
    t.add_argument("--tls-cert", metavar="PEM", help="serve this certificate (chain) on every device "
                                                      "instead of generating one per device")
    t.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    t.add_argument("--tls-ca", metavar="PEM", help="CA of --tls-cert, reported as ca= for clients")
    o = p.add_argument_group("runtime")
    o.add_argument("--workdir", metavar="DIR", help="directory for generated files (default: a temp dir)")
    o.add_argument("--admin-port", type=int, default=0, metavar="PORT",
                   help="admin HTTP API port on 127.0.0.1 (0 = ephemeral, printed; default 0)")
    o.add_argument("--no-admin", action="store_true", help="do not start the admin API")
    o.add_argument("--state-dir", metavar="DIR",
                   help="persist each device's config to DIR/NAME.json; a restarted fleet keeps it")
    o.add_argument("--empty", action="store_true",
                   help="ignore saved state: start every device with factory config")
    o.add_argument("--counter-interval", type=float, default=1.0, metavar="SECONDS",
                   help="period of the octet counter tick (default 1.0)")
    o.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    return p


def tune_gc() -> None:
    """Data trees are acyclic dicts freed by reference counting; keep the cyclic collector from
    rescanning them (and the loaded modules) all the time: freeze what exists after start-up
    and collect the youngest generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def serve(args: argparse.Namespace) -> int:
    if args.fleet:
        specs = load_fleet_file(args.fleet, args.base_port)
    else:
        names = [n for n in (args.names or "").split(",") if n]
        specs = make_specs(len(names) if names else args.devices, args.base_port, names or None,
                           args.ports, args.username, args.password, args.platform, args.profile,
                           [e for e in args.encodings.split(",") if e])
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    fleet = Fleet(specs, tls=not args.insecure, workdir=args.workdir, ca_out=args.ca_out,
                  tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
                  admin_port=None if args.no_admin else args.admin_port, state_dir=args.state_dir,
                  empty=args.empty, counter_interval=args.counter_interval)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, fleet.request_stop)
    try:
        await fleet.astart()
    except (OSError, RuntimeError, ValueError) as err:
        print(f"devicesim: error: {err}", file=sys.stderr, flush=True)
        return 1
    tune_gc()
    tls = "off" if args.insecure else "on"
    if fleet.ca_path:
        print(f"devicesim: ca={fleet.ca_path}", flush=True)
    for info in fleet.devices.values():
        print(f"devicesim: device-ready name={info.name} address={info.host} port={info.port} tls={tls} "
              f"platform={info.platform} ports={','.join(info.ports)} username={info.username}", flush=True)
    print(f"devicesim: fleet-ready devices={len(specs)} admin={fleet.admin_url or '-'} "
          f"ca={fleet.ca_path or '-'} tls={tls}", flush=True)
    await fleet.wait_stopped()
    await fleet.astop()
    print("devicesim: stopped", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# admin


def admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devicesim admin", description=ADMIN_DESCRIPTION, epilog=ADMIN_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("DEVICESIM_ADMIN_URL"),
                   help="admin API base URL, e.g. http://127.0.0.1:8080 (default $DEVICESIM_ADMIN_URL)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list devices with address, port, serving flag and counters")
    d = sub.add_parser("dump", help="dump a device: config, tree, links, levers, stats (JSON)")
    d.add_argument("device")
    d.add_argument("--config", action="store_true", help="only the configuration tree")
    d = sub.add_parser("stats", help="Set/Get/Subscribe counters of a device")
    d.add_argument("device")
    for name, what in (("set", "update (merge) a path with a JSON value"),
                       ("replace", "replace a path with a JSON value")):
        d = sub.add_parser(name, help=f"out-of-band: {what}; a value that is not JSON is a string")
        d.add_argument("device")
        d.add_argument("path", help="e.g. /interfaces/interface[name=Ethernet1]/config/description")
        d.add_argument("value", help='JSON, e.g. 9000, true, \'{"mtu": 9000}\', or a bare string')
    d = sub.add_parser("delete", help="out-of-band: delete a path (wildcards allowed)")
    d.add_argument("device")
    d.add_argument("path")
    d = sub.add_parser("link", help="take a port's link down or up (oper-status follows)")
    d.add_argument("device")
    d.add_argument("port")
    d.add_argument("state", choices=("up", "down"))
    d = sub.add_parser("down", help="stop the device's gNMI server (connections refused)")
    d.add_argument("device")
    d = sub.add_parser("up", help="start the device's gNMI server again on the same port")
    d.add_argument("device")
    d = sub.add_parser("restart", help="reboot: streams dropped, counters zeroed, config kept")
    d.add_argument("device")
    d.add_argument("--empty", action="store_true", help="a replaced router: come back with factory config")
    d = sub.add_parser("latency", help="delay every Set by SECONDS before it is applied (0 = off)")
    d.add_argument("device")
    d.add_argument("seconds", type=float)
    d = sub.add_parser("fail-sets", help="fail the next COUNT Sets without applying them")
    d.add_argument("device")
    d.add_argument("count", type=int)
    d.add_argument("--code", default="UNAVAILABLE", help="gRPC status code name (default UNAVAILABLE)")
    d.add_argument("--message", help="status message")
    d = sub.add_parser("drop", help="abort every open Subscribe stream with UNAVAILABLE")
    d.add_argument("device")
    d = sub.add_parser("reset", help="factory config, links up, levers and counters cleared")
    d.add_argument("device")
    return p


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def admin_main(argv: Sequence[str]) -> int:
    args = admin_parser().parse_args(argv)
    if not args.url:
        print("devicesim admin: no --url and no $DEVICESIM_ADMIN_URL", file=sys.stderr)
        return 2
    c = AdminClient(args.url)
    try:
        out: Any
        cmd = args.cmd
        if cmd == "list":
            out = c.list_devices()
        elif cmd == "dump":
            out = c.dump(args.device)
            if args.config:
                out = out["config"]
        elif cmd == "stats":
            out = c.stats(args.device)
        elif cmd == "set":
            out = {"timestamp": c.set(args.device, args.path, _value(args.value))}
        elif cmd == "replace":
            out = {"timestamp": c.config(args.device, replace=[(args.path, _value(args.value))])}
        elif cmd == "delete":
            out = {"timestamp": c.delete(args.device, args.path)}
        elif cmd == "link":
            out = c.link(args.device, args.port, args.state == "up")
        elif cmd == "down":
            c.down(args.device)
            out = {"serving": False}
        elif cmd == "up":
            c.up(args.device)
            out = {"serving": True}
        elif cmd == "restart":
            c.restart(args.device, empty=args.empty)
            out = {"restarted": True, "empty": args.empty}
        elif cmd == "latency":
            c.latency(args.device, args.seconds)
            out = {"set_latency": args.seconds}
        elif cmd == "fail-sets":
            c.fail_sets(args.device, args.count, args.code, args.message)
            out = {"fail_sets": args.count, "code": args.code}
        elif cmd == "drop":
            out = {"dropped": c.drop(args.device)}
        else:
            c.reset(args.device)
            out = {"reset": True}
    except AdminError as err:
        print(f"devicesim admin: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"devicesim admin: cannot reach {args.url}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "admin":
        return admin_main(argv[1:])
    if argv and argv[0] == "schema":
        print("\n".join(S.tree_text()))
        return 0
    if argv and argv[0] == "serve":
        argv = argv[1:]
    args = serve_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(serve(args))
    except (OSError, ValueError) as err:
        print(f"devicesim: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

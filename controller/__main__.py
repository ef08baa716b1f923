"""telco-controller: the controller's command line (`python -m controller ...`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import crdgen


def _crds(args: argparse.Namespace) -> int:
    files = crdgen.render_all()
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.write / name).write_text(text)
            print(f"wrote {args.write / name}")
    else:
        sys.stdout.write("---\n".join(files.values()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(once=args.once)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telco-controller", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--write", type=Path, metavar="DIR", help="write one file per CRD into DIR instead")
    crds.set_defaults(func=_crds)
    demo = sub.add_parser("demo", help="the quick start on a local control plane (what `make demo` runs)")
    demo.add_argument("--once", action="store_true", help="run the checks and exit instead of staying up")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""The ``capc`` command: ``capc doctor``, ``capc certs``, ``capc party``, ``capc budget``.

Each subcommand's implementation lives in the subpackage that owns the job; this module only parses
the command line, imports that subpackage lazily (so ``capc doctor`` works on a half-built install)
and turns a :class:`~capc.errors.CapcError` into a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from capc.errors import CapcError


def _cmd_doctor(args: argparse.Namespace) -> int:
    from capc import doctor

    return doctor.main()


def _add_certs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certs", help="make a run CA and one mutual-TLS certificate per party")
    try:
        from capc.net import certs
    except ImportError as exc:
        p.set_defaults(func=_unavailable("capc certs", exc))
        return
    certs.build_certs_parser(p)
    p.set_defaults(func=certs.cmd_certs)


def _add_budget(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("budget", help="print a run's privacy ledger: queries, answered, epsilon spent")
    p.add_argument("run_dir", help="a run directory (or the ledger file inside it)")

    def run(args: argparse.Namespace) -> int:
        from capc.privacy import ledger

        print(ledger.format_budget_table(args.run_dir))
        return 0

    p.set_defaults(func=run)


def _add_party(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("party", help="run one CaPC party process (qp, ap or pg)")
    try:
        from capc.parties import main as party_main
    except ImportError as exc:
        p.set_defaults(func=_unavailable("capc party", exc))
        return
    party_main.build_party_parser(p)
    p.set_defaults(func=party_main.cmd_party)


def _unavailable(what: str, exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"capc: {what} is not available in this installation ({exc})", file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    """The full ``capc`` argument parser."""
    parser = argparse.ArgumentParser(prog="capc", description="Confidential and Private Collaborative learning")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("doctor", help="report versions, the GC engine build and CPU features")
    d.set_defaults(func=_cmd_doctor)
    _add_certs(sub)
    _add_party(sub)
    _add_budget(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``capc`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CapcError as exc:
        print(f"capc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"capc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

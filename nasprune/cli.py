"""The ``nasprune`` command: a thin layer over the Python API.

Each subcommand has one ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func``, the function that runs it.
"""

from __future__ import annotations

import argparse
import sys

from nasprune import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasprune",
        description="Build proxy sets by dataset pruning and rank NAS candidates on them.",
    )
    parser.add_argument("--version", action="version", version=f"nasprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_prune, _add_search, _add_report, _add_run):
        add(sub)
    return parser


# --- prune ---------------------------------------------------------------------------------------------------


def _add_prune(sub) -> None:
    pass


# --- search --------------------------------------------------------------------------------------------------


def _add_search(sub) -> None:
    pass


# --- report --------------------------------------------------------------------------------------------------


def _add_report(sub) -> None:
    pass


# --- run -----------------------------------------------------------------------------------------------------


def _add_run(sub) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"nasprune {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``flowvid`` command line: parse arguments, call library functions, map errors to exit 2.

Each module here adds its subcommands (``add_<name>``) and calls importable, tested library
functions; nothing else lives in the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from flowvid import __version__
from flowvid.cli.common import EXIT_BAD_INPUT
from flowvid.cli.data import add_synth, add_validate
from flowvid.cli.predict import add_embed, add_overlay, add_predict
from flowvid.cli.train import add_eval, add_train
from flowvid.errors import InputError

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowvid", description="Learn blood flow from microscope video."
    )
    parser.add_argument("--version", action="version", version=f"flowvid {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_synth,
        add_validate,
        add_train,
        add_predict,
        add_overlay,
        add_eval,
        add_embed,
    ):
        add(sub)
    return parser


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call a subcommand; bad input becomes one message and exit code 2."""
    try:
        return func(args)
    except InputError as err:
        if args.debug:
            raise
        print(f"flowvid {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)

"""The ``flowvid`` command line: parse arguments, call library functions, map errors to exit 2.

Each module here adds its subcommands (``add_<name>``) and calls importable, tested library
functions; nothing else lives in the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from flowvid import __version__
from flowvid.cli.bench import add_bench
from flowvid.cli.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED
from flowvid.cli.data import add_synth, add_validate
from flowvid.cli.kymo import add_kymo
from flowvid.cli.measure import add_measure, add_summary
from flowvid.cli.predict import add_embed, add_overlay, add_predict
from flowvid.cli.study import add_study
from flowvid.cli.train import add_eval, add_train
from flowvid.errors import InputError, Terminated
from flowvid.io.atomic import protecting
from flowvid.predict.allocator import keep_freed_memory

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
        add_measure,
        add_kymo,
        add_summary,
        add_bench,
        add_study,
    ):
        add(sub)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while a command runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call a subcommand; bad input becomes one message and exit code 2; Ctrl-C and SIGTERM
    clean up (no temporary or half-written output is left) and exit 130 and 143."""
    try:
        with _sigterm_raises(), protecting(*input_paths(args)):
            return func(args)
    except InputError as err:
        if args.debug:
            raise
        print(f"flowvid {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # the system refused: permissions, a full disk, a path under a file
        if args.debug:
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"flowvid {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:
        print(f"flowvid {args.command}: interrupted{_detail(err)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as err:
        print(f"flowvid {args.command}: terminated (SIGTERM){_detail(err)}", file=sys.stderr)
        return EXIT_TERMINATED


OUTPUTS = ("out", "out_dir", "run_dir")  # the arguments that name outputs
OUTPUTS_OF = {"predict": ("uncertainty",)}  # and those that do in one command only


def input_paths(args: argparse.Namespace) -> list[Path]:
    """Every path a command was given, other than its outputs: its inputs, which no output
    may replace while it runs (:func:`flowvid.io.atomic.protecting`)."""
    paths, outputs = [], OUTPUTS + OUTPUTS_OF.get(getattr(args, "command", None), ())
    for name, value in vars(args).items():
        values = value if isinstance(value, list | tuple) else [value]
        if name not in outputs:
            paths += [v for v in values if isinstance(v, Path)]
    return paths


def _detail(err: BaseException) -> str:
    return f"; {err}" if str(err) else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # chunk after chunk reuses freed memory instead of faulting it in anew
    return run(args.func, args)

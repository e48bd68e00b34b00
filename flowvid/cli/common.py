"""What every subcommand shares: the exit code for bad input and the help layout."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from flowvid.errors import InputError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (where it has one worth showing), wraps the
    description and keeps the examples' line breaks."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Each line wrapped to the terminal, the line breaks written kept."""
        import textwrap

        return "\n".join(
            textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent) or ""
            for line in text.splitlines()
        )

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or ""


def add_precision(p: argparse.ArgumentParser) -> None:
    """``--precision``, for every command that runs a model over video."""
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 on a GPU, fp32 on a CPU), fp32 or bf16; bf16 on a CPU with bf16 units "
        "(AMX) ran 1.6-1.8x faster, the flow within a few hundredths of a px",
    )


def positive(text: str) -> float:
    """An argparse type: a finite number > 0 (a pixel size, a frame rate, a speed scale).
    A negative pixel size would turn every vector round; nan or inf would write nan."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
    return value


def frames_window(text: str) -> int:
    """An argparse type: a window of at least 2 frames (a speed needs two)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of frames") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 frames, not {value}")
    return value


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a folder that holds files flowvid did not write: only the files of "
        "the names it writes are replaced, nothing else is touched",
    )


def add_flow(p: argparse.ArgumentParser, help: str) -> None:  # noqa: A002 - argparse's name
    """The flow file as the command's second argument, as in overlay and measure (``--flow``
    is accepted too)."""
    p.add_argument("flow", type=Path, nargs="?", default=None, help=help)
    p.add_argument("--flow", dest="flow_option", type=Path, default=None, help=argparse.SUPPRESS)


def flow_argument(args: argparse.Namespace, required: bool) -> Path | None:
    """The flow file given positionally or with ``--flow`` (not both)."""
    if args.flow is not None and args.flow_option is not None and args.flow != args.flow_option:
        raise InputError("give the flow file once: as the second argument or with --flow")
    flow = args.flow or args.flow_option
    if required and flow is None:
        raise InputError("give the flow file: VIDEO FLOW (the flow predict wrote for VIDEO)")
    return flow

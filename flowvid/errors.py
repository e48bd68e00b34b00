"""User-facing error types.

Every problem caused by the user's input (a missing file, a malformed flow file, a
dataset that does not follow the layout) raises a subclass of :class:`InputError`.
The command line turns these into a one-paragraph message and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import math
from pathlib import Path


class InputError(Exception):
    """Bad input from the user: the message says what is wrong and how to fix it."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        prefix = f"{self.path}: " if self.path is not None else ""
        super().__init__(prefix + message)


class FlowFormatError(InputError):
    """A flow file that cannot be read: bad tag, bad header, truncated, wrong shape."""


class VideoError(InputError):
    """A video (or frame stack) that cannot be opened or decoded."""


class DatasetError(InputError):
    """A dataset folder that does not follow the flowvid layout."""


def check_calibration(**values: float | None) -> None:
    """Pixel sizes and frame rates (given, or read from a sidecar or a video) must be finite
    and above 0 where present: a negative pixel size turns every vector round, and nan or
    inf writes nan. ``check_calibration(um_per_px=..., fps=...)``."""
    for name, value in values.items():
        if value is None:
            continue
        try:
            ok = math.isfinite(float(value)) and float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            flag = "--" + name.replace("_", "-")
            raise InputError(
                f"{flag} (or the sidecar's {name}) must be a number above 0, not {value!r}"
            )


class Terminated(BaseException):  # noqa: N818 - named for the signal, like KeyboardInterrupt
    """SIGTERM (a cluster's time limit, ``kill``): stop now, cleaning up as for Ctrl-C.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the
    way swallows it; temporary outputs are removed on the way out.
    """

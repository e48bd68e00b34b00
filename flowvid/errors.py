"""User-facing error types.

Every problem caused by the user's input (a missing file, a malformed flow file, a
dataset that does not follow the layout) raises a subclass of :class:`InputError`.
The command line turns these into a one-paragraph message and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

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


class Terminated(BaseException):  # noqa: N818 - named for the signal, like KeyboardInterrupt
    """SIGTERM (a cluster's time limit, ``kill``): stop now, cleaning up as for Ctrl-C.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the
    way swallows it; temporary outputs are removed on the way out.
    """

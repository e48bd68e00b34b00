"""Where predictions go: memory-mapped .npy written in place, .npz or per-pair files
converted at the end, and the JSON sidecar beside each output. Everything is written under
a temporary name and renamed when complete: a failure leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flowvid import __version__
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output, reserved_memmap
from flowvid.io.flowfile import write_flow


@contextlib.contextmanager
def flow_sink(out: Path | None, shape: tuple[int, ...], pair_format: str):
    """Something to write (m, H, W, 2) slices into, then finalised atomically."""
    if out is None:
        holder = np.empty(shape, np.float32)
        yield holder
        return
    suffix = out.suffix.lower()
    if suffix == ".npy":
        with atomic_output(out) as tmp:
            arr = reserved_memmap(tmp, np.float32, shape)
            yield arr
            arr.flush()
            del arr
        return
    if suffix in ("", ".npz"):  # compressed or per-pair: fill a memmap first, then convert
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".npy", dir=out.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            arr = reserved_memmap(tmp, np.float32, shape)
            yield arr
            arr.flush()
            write_flow(out, arr, pair_format=pair_format)  # itself atomic
            del arr
        finally:
            tmp.unlink(missing_ok=True)
        return
    raise InputError(f"--out must end in .npy or .npz, or name a folder, not {suffix!r}", out)


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


FLOW_AXES = (
    "(T-1, H, W, 2): pair i moves frame i to i+1 (frames counted from 'frames'[0]); "
    "channel 0 = u (x, right), channel 1 = v (y, down)"
)


def write_sidecar(out: Path, fields: dict[str, Any]) -> Path:
    """``<out>.json``: what the output holds (shape, axes, units, ...) and where it came from."""
    doc = {"flowvid_version": __version__, "file": out.name, **fields}
    with atomic_output(sidecar_path(out)) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return sidecar_path(out)


def npy_stream(
    out: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: Iterator[np.ndarray]
) -> None:
    """Write chunks along axis 0 into a memory-mapped .npy, atomically."""
    with atomic_output(out) as tmp:
        arr = reserved_memmap(tmp, dtype, shape)
        done = 0
        for chunk in chunks:
            arr[done : done + len(chunk)] = chunk
            done += len(chunk)
        arr.flush()
        del arr

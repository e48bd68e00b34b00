"""Flow for MATLAB and HDF5 users: PIVlab-style ``.mat`` and ``.h5``.

- ``.mat`` (MATLAB 5, ``scipy.io.savemat``): ``u`` and ``v``, each ``(T-1, H, W)`` single, u
  to the right and v downward (image coordinates, as PIVlab); ``x`` and ``y``, ``(H, W)``,
  the 1-based pixel coordinates of each vector; ``units``, ``fps`` and ``um_per_px`` when
  known. The whole array is held in memory to write it: for long videos, prefer ``.h5``.
- ``.h5`` (HDF5, h5py): dataset ``flow``, ``(T-1, H, W, 2)`` float32, one chunk per map,
  gzip-compressed, written map by map; attributes ``axes``, ``units``, ``fps``, ``um_per_px``.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from flowvid.errors import FlowFormatError

AXES = "(T-1, H, W, 2): pair i moves frame i to i+1; channel 0 = u (x, right), 1 = v (y, down)"


def need_free_space(path: Path, size: int) -> None:
    """An ``OSError`` (ENOSPC) unless ``size`` bytes are free where ``path`` goes. HDF5 cannot
    reserve its compressed chunks up front, and h5py meeting a full disk mid-write can crash
    the process, so the uncompressed size must be free before it starts."""
    free = shutil.disk_usage(Path(path).parent).free
    if free < size:
        raise OSError(
            errno.ENOSPC,
            f"{os.strerror(errno.ENOSPC)}: the output needs up to {size / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB are free",
            str(path),
        )


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if v is not None}


def write_mat(path: Path, flow: np.ndarray, meta: dict[str, Any] | None = None) -> None:
    """``flow`` (N, H, W, 2) -> PIVlab-style u, v, x, y in a MATLAB 5 file at ``path``."""
    from scipy.io import savemat

    n, h, w, _ = flow.shape
    y, x = np.mgrid[1 : h + 1, 1 : w + 1].astype(np.float64)
    doc = {
        "u": np.ascontiguousarray(flow[..., 0], np.float32),
        "v": np.ascontiguousarray(flow[..., 1], np.float32),
        "x": x,
        "y": y,
        "axes": "u, v: (pair, row, column); x, y: 1-based pixel coordinates; v points down",
        **_plain(meta or {}),
    }
    savemat(path, doc, do_compression=True)


def read_mat(path: Path) -> np.ndarray:
    """A flowvid (or PIVlab-style) .mat: ``u`` and ``v`` -> (N, H, W, 2) float32."""
    from scipy.io import loadmat

    try:
        doc = loadmat(path)
    except Exception as err:  # scipy raises several types for damaged files
        raise FlowFormatError(f"not a readable .mat file ({err})", path) from None
    if "u" not in doc or "v" not in doc:
        raise FlowFormatError("a flow .mat holds arrays u and v", path)
    u, v = np.asarray(doc["u"], np.float32), np.asarray(doc["v"], np.float32)
    if u.shape != v.shape or u.ndim not in (2, 3):
        raise FlowFormatError(f"u {u.shape} and v {v.shape} must be the same (N, H, W)", path)
    return np.stack([u, v], -1).reshape(-1, *u.shape[-2:], 2)


class H5Writer:
    """An HDF5 file with dataset ``flow``, written map by map; ``shape[0]`` maps are expected,
    and :meth:`finish` sizes the dataset to the maps written."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        meta: dict[str, Any] | None = None,
        name: str = "flow",
    ):
        import h5py

        need_free_space(path, int(np.prod(shape, dtype=np.int64)) * 4)
        self.file = h5py.File(path, "w")
        self.data = self.file.create_dataset(
            name,
            shape,
            np.float32,
            chunks=(1, *shape[1:]),
            maxshape=(None, *shape[1:]),
            compression="gzip",
        )
        self.data.attrs.update({"axes": AXES, **_plain(meta or {})})
        self.rows = 0

    def __setitem__(self, index: slice, value: np.ndarray) -> None:
        start = index.start or 0
        stop = start + len(value)
        if stop > self.data.shape[0]:
            self.data.resize(stop, axis=0)
        self.data[start:stop] = np.asarray(value, np.float32)
        self.rows = max(self.rows, stop)

    def finish(self) -> None:
        self.data.resize(self.rows, axis=0)

    def close(self) -> None:
        self.file.close()


def write_h5(path: Path, flow: np.ndarray, meta: dict[str, Any] | None = None) -> None:
    writer = H5Writer(path, flow.shape, meta)
    try:
        for i in range(len(flow)):
            writer[i : i + 1] = flow[i : i + 1]
        writer.finish()
    finally:
        writer.close()


def open_h5(path: Path) -> tuple[tuple[int, int, int, int], Any]:
    """(shape, getter) of the ``flow`` dataset of an HDF5 file, read map by map."""
    import h5py

    try:
        fh = h5py.File(path, "r")
        data = fh["flow"]
    except (OSError, KeyError) as err:
        raise FlowFormatError(f"not a flow HDF5 file with dataset 'flow' ({err})", path) from None
    if data.ndim != 4 or data.shape[-1] != 2:
        raise FlowFormatError(f"dataset 'flow' has shape {data.shape}; expected (N, H, W, 2)", path)

    def get(i: int) -> tuple[np.ndarray, None]:
        try:
            return np.asarray(data[i], np.float32), None
        except Exception as err:  # h5py raises several types for damaged data
            raise FlowFormatError(f"map {i} cannot be read ({err})", path) from None

    return data.shape, get

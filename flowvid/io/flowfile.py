"""Flow files: .npy, .npz, Middlebury .flo, KITTI 16-bit PNG, and folders of per-pair files.

One convention everywhere (DESIGN.md): a clip of T frames has a flow of shape
``(T-1, H, W, 2)`` float32 in pixels per frame; ``flow[i]`` moves the pixels of frame i
to frame i+1; channel 0 is u (x, to the right), channel 1 is v (y, downward).

Readers are lazy: :func:`open_flow` returns a :class:`FlowSequence` that reads only the
pairs asked for (``.npy`` is memory-mapped). Every malformed file raises
:class:`~flowvid.errors.FlowFormatError` naming the file, and no header is trusted
before it is checked against the file size, so a corrupt file never causes a giant
allocation.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flowvid.errors import FlowFormatError
from flowvid.io.atomic import atomic_output
from flowvid.io.exports import open_h5, read_mat, write_h5, write_mat
from flowvid.io.pairs import (
    flo_header,
    read_flo,
    read_kitti,
    write_flo,
    write_kitti,
)

FLOW_SUFFIXES = (".npy", ".npz", ".flo", ".png", ".mat", ".h5")
PAIR_SUFFIXES = (".flo", ".png", ".npy")  # formats allowed inside a per-pair folder

PICKLE_REFUSED = (
    "holds Python objects (a pickle), which flowvid refuses to load: loading one can run "
    "code. Save the flow as a plain float32 array, np.save(path, flow.astype(np.float32))"
)
Getter = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


class FlowSequence:
    """A lazy ``(N, H, W, 2)`` float32 flow sequence (px/frame, u right, v down).

    ``seq[i]`` is one ``(H, W, 2)`` map, ``seq[a:b]`` a stacked ``(b-a, H, W, 2)``
    array; ``seq.valid(i)`` is the ``(H, W)`` bool mask of known vectors, or None when
    the format has no notion of unknown flow.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int, int], getter: Getter) -> None:
        self.path = path
        self.shape = shape
        self._get = getter

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):
            maps = [self._get(i)[0] for i in range(*index.indices(len(self)))]
            if not maps:
                return np.zeros((0, *self.shape[1:]), np.float32)
            return np.stack(maps)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"flow index {index} out of range for {len(self)} pairs")
        return self._get(index)[0]

    def valid(self, index: int) -> np.ndarray | None:
        return self._get(index)[1]

    def __repr__(self) -> str:
        return f"FlowSequence({str(self.path)!r}, shape={self.shape})"


# ----------------------------------------------------------------------------- checks


def _check_array(path: Path, arr: np.ndarray) -> np.ndarray:
    """Accept (H,W,2) or (N,H,W,2) floating arrays; return (N,H,W,2)."""
    if arr.dtype.kind != "f":
        raise FlowFormatError(f"flow must be a float array, found dtype {arr.dtype}", path)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 2:
        raise FlowFormatError(
            f"flow must have shape (T-1, H, W, 2) with u, v last; found {arr.shape}", path
        )
    return arr


def _open_npy(path: Path) -> FlowSequence:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        if "object" in str(err).lower() or "pickle" in str(err).lower():
            raise FlowFormatError(PICKLE_REFUSED, path) from None
        raise FlowFormatError(f"not a readable .npy file ({err})", path) from None
    except Exception as err:  # numpy raises many types for a damaged header
        raise FlowFormatError(f"not a readable .npy file ({err})", path) from None
    if not isinstance(arr, np.ndarray):
        raise FlowFormatError("not a plain .npy array", path)
    arr = _check_array(path, arr)
    return FlowSequence(path, arr.shape, lambda i: (np.asarray(arr[i], np.float32), None))


_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _npz_member(path: Path, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """Read one array of an .npz after checking its header against its stored size."""
    info = zf.getinfo(name)
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read_header = _NPY_HEADER_READERS.get(version)
        if read_header is None:
            raise FlowFormatError(f"array {name!r} has unsupported .npy version {version}", path)
        shape, fortran, dtype = read_header(fh)
        if dtype.hasobject:
            raise FlowFormatError(f"array {name!r} holds Python objects", path)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > info.file_size:
            raise FlowFormatError(f"array {name!r} is truncated", path)
        _check_expansion(path, name, count * dtype.itemsize, info.compress_size)
        data = fh.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise FlowFormatError(f"array {name!r} is truncated", path)
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype).reshape(shape, order=order)


NPZ_BOMB = (256 << 20, 100)  # bytes, ratio: an .npz member this large AND this compressed ...


def _check_expansion(path: Path, name: str, size: int, stored: int) -> None:
    """An .npz is read whole into memory: refuse a member that would expand past half the
    memory available, or past 256 MB at more than 100x its stored size (what a zip bomb
    looks like; real flow compresses 1-5x). Either way .npy or .h5 read map by map."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    bomb = size > NPZ_BOMB[0] and size > NPZ_BOMB[1] * max(stored, 1)
    if bomb or size > available // 2:
        raise FlowFormatError(
            f"array {name!r} would expand from {stored / 1e6:.1f} MB to {size / 1e6:.0f} MB in "
            f"memory ({available / 1e6:.0f} MB available); store long flows as .npy or .h5, "
            "which are read map by map",
            path,
        )


def _open_npz(path: Path) -> FlowSequence:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.removesuffix(".npy") for n in zf.namelist()]
            key = "flow" if "flow" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise FlowFormatError(
                    f"an .npz flow needs an array named 'flow' (found {names})", path
                )
            flow = _check_array(path, _npz_member(path, zf, key + ".npy"))
            valid = _npz_member(path, zf, "valid.npy") if "valid" in names else None
            if valid is not None:
                valid = valid.astype(bool).reshape(-1, *flow.shape[1:3])
    except FlowFormatError:
        raise
    except Exception as err:
        raise FlowFormatError(f"not a readable .npz file ({err})", path) from None
    if valid is not None and valid.shape[0] not in (1, flow.shape[0]):
        raise FlowFormatError("'valid' does not match the flow's shape", path)
    flow = flow.astype(np.float32)

    def get(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return flow[i], None if valid is None else valid[min(i, len(valid) - 1)]

    return FlowSequence(path, flow.shape, get)


# ----------------------------------------------------------------------------- folders

_PAIR_READERS = {".flo": read_flo, ".png": read_kitti}


def natural_key(path: Path) -> list[object]:
    """Sort key that puts frame2 before frame10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _read_pair_npy(path: Path) -> tuple[np.ndarray, None]:
    seq = _open_npy(path)
    if len(seq) != 1:
        raise FlowFormatError("a per-pair .npy must hold one (H, W, 2) map", path)
    return seq[0], None


def _open_folder(path: Path) -> FlowSequence:
    files = [p for p in path.iterdir() if p.suffix.lower() in PAIR_SUFFIXES and p.is_file()]
    suffixes = {p.suffix.lower() for p in files}
    if not files:
        raise FlowFormatError(f"folder holds no flow files ({', '.join(PAIR_SUFFIXES)})", path)
    if len(suffixes) > 1:
        raise FlowFormatError(f"folder mixes flow formats {sorted(suffixes)}; keep one", path)
    files.sort(key=natural_key)
    suffix = suffixes.pop()
    read = _PAIR_READERS.get(suffix, _read_pair_npy)
    if suffix == ".flo":
        sizes = {flo_header(p) for p in files}  # 12 bytes each: check every file up front
    else:
        sizes = {read(files[0])[0].shape[:2]}
    if len(sizes) != 1:
        raise FlowFormatError(f"per-pair files differ in size: {sorted(sizes)}", path)
    height, width = sizes.pop()

    def get(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        flow, valid = read(files[i])
        if flow.shape[:2] != (height, width):
            raise FlowFormatError(f"size {flow.shape[:2]} differs from {(height, width)}", files[i])
        return flow, valid

    return FlowSequence(path, (len(files), height, width, 2), get)


# ----------------------------------------------------------------------------- public API


def open_flow(path: str | Path) -> FlowSequence:
    """Open a flow file or folder lazily, whatever its format."""
    path = Path(path)
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():
        raise FlowFormatError("no such flow file", path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _open_npy(path)
    if suffix == ".npz":
        return _open_npz(path)
    if suffix in _PAIR_READERS:
        flow, valid = _PAIR_READERS[suffix](path)
        return FlowSequence(path, (1, *flow.shape), lambda i: (flow, valid))
    if suffix == ".mat":
        whole = _check_array(path, read_mat(path))
        return FlowSequence(path, whole.shape, lambda i: (whole[i], None))
    if suffix == ".h5":
        shape, get = open_h5(path)
        return FlowSequence(path, shape, get)
    raise FlowFormatError(f"unknown flow format {suffix!r}; use one of {FLOW_SUFFIXES}", path)


def read_flow(path: str | Path) -> np.ndarray:
    """Read a whole flow file or folder as a ``(N, H, W, 2)`` float32 array."""
    seq = open_flow(path)
    return seq[0 : len(seq)]


def write_flow(
    path: str | Path,
    flow: np.ndarray,
    valid: np.ndarray | None = None,
    pair_format: str = "flo",
) -> Path:
    """Write ``(N, H, W, 2)`` or ``(H, W, 2)`` flow atomically; the format follows the suffix.

    ``.npy`` keeps float16 when given float16 (storage) and writes float32 otherwise;
    ``.npz`` is compressed and may carry ``valid``; ``.flo`` and ``.png`` (KITTI) hold one
    pair; ``.mat`` and ``.h5`` are :mod:`flowvid.io.exports`'s; a path without a suffix
    becomes a folder of per-pair ``pair_format`` files.
    """
    path = Path(path)
    flow = _check_array(path, np.asarray(flow))
    dtype = np.float16 if flow.dtype == np.float16 else np.float32
    suffix = path.suffix.lower()
    if valid is not None:
        valid = np.asarray(valid, bool).reshape(-1, *flow.shape[1:3])
    if suffix in (".flo", ".png") and len(flow) != 1:
        raise FlowFormatError(f"{suffix} holds one pair; write {len(flow)} to a folder", path)
    if suffix == "":
        return _write_folder(path, flow, valid, pair_format)
    with atomic_output(path) as tmp:
        if suffix == ".npy":
            np.save(tmp, flow.astype(dtype, copy=False))
        elif suffix == ".npz":
            extra = {} if valid is None else {"valid": valid}
            np.savez_compressed(tmp, flow=flow.astype(dtype, copy=False), **extra)
        elif suffix == ".mat":
            write_mat(tmp, flow.astype(np.float32, copy=False))
        elif suffix == ".h5":
            write_h5(tmp, flow.astype(np.float32, copy=False))
        elif suffix == ".flo":
            write_flo(tmp, flow[0])
        elif suffix == ".png":
            write_kitti(tmp, flow[0], None if valid is None else valid[0])
        else:
            raise FlowFormatError(f"unknown flow format {suffix!r}; use {FLOW_SUFFIXES}", path)
    return path


def _write_folder(path: Path, flow: np.ndarray, valid: np.ndarray | None, fmt: str) -> Path:
    if fmt not in ("flo", "png"):
        raise FlowFormatError(f"per-pair format must be 'flo' or 'png', not {fmt!r}", path)
    digits = max(6, len(str(len(flow))))
    with atomic_output(path, is_dir=True) as tmp:
        for i, pair in enumerate(flow):
            target = tmp / f"{i:0{digits}d}.{fmt}"
            if fmt == "flo":
                write_flo(target, pair)
            else:
                write_kitti(target, pair, None if valid is None else valid[min(i, len(valid) - 1)])
    return path

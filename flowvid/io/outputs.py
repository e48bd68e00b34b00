"""Where predictions go: .npy written in place, .npz and .mat converted at the end from a
staged .npy, per-pair files, and the JSON sidecar beside each output. An output's length is
fixed when it is finished, by the maps written. Everything is written under
a temporary name and renamed when complete: a failure leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flowvid import __version__
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output, reserve
from flowvid.io.exports import H5Writer, need_free_space, write_mat
from flowvid.io.pairs import write_flo, write_kitti

CLASSICAL_NAMES = {"dis": "OpenCV DIS", "farneback": "OpenCV Farneback"}


class NpyWriter:
    """A ``.npy`` written along axis 0 with plain file writes, its length fixed when it is
    finished: ``shape[0]`` rows are expected (their space reserved up front, so a full disk
    is an ``OSError`` at once), and :meth:`finish` states the rows written in the header and
    ends the file there. The header leaves room for any count, so it is rewritten in place.

    Not a memory map: the pages written never stay in this process's memory, so writing a
    flow of any length takes constant memory.
    """

    def __init__(self, path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> None:
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.row = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.rows = 0
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        try:
            self.offset = len(self._header(10**18 - 1))  # room for any count
            self.fh.write(self._header(shape[0]))
            self.fh.flush()
            reserve(self.fh.fileno(), self.offset + self.row * shape[0])
        except BaseException:  # a full disk: no half-made file stays behind
            self.fh.close()
            Path(path).unlink(missing_ok=True)
            raise

    def _header(self, rows: int) -> bytes:
        """An .npy version 1.0 header for ``rows`` rows, padded to ``self.offset`` bytes once
        that is known (numpy's format: magic, length, a dict literal, spaces, newline)."""
        descr = np.lib.format.dtype_to_descr(self.dtype)
        text = (
            f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {(rows, *self.shape[1:])}, }}"
        )
        size = getattr(self, "offset", None) or -(-(10 + len(text) + 1) // 64) * 64
        text = text.ljust(size - 11) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")

    def __setitem__(self, index: slice, value: np.ndarray) -> None:
        start = 0 if index.start is None else index.start
        data = np.ascontiguousarray(value, self.dtype)
        if data.shape[1:] != self.shape[1:] or start > self.rows:
            raise ValueError(f"rows {start}.. of {data.shape} do not follow {self.rows} rows")
        os.pwrite(self.fh.fileno(), data.tobytes(), self.offset + start * self.row)
        self.rows = max(self.rows, start + len(data))

    def finish(self) -> None:
        """The header states the rows written; the file ends after them."""
        os.pwrite(self.fh.fileno(), self._header(self.rows), 0)
        os.ftruncate(self.fh.fileno(), self.offset + self.rows * self.row)
        self.fh.close()

    def close(self) -> None:
        self.fh.close()


class StagedWriter(NpyWriter):
    """A file written whole from a finished ``.npy`` staged beside it (memory-mapped):
    ``write(path, array, meta)``, e.g. a compressed ``.npz`` or a MATLAB file (default: the
    flow's u, v, x, y)."""

    def __init__(
        self, path: Path, shape: tuple[int, ...], meta: dict[str, Any], write=write_mat
    ) -> None:  # noqa: ANN001 - a writer function
        self.target, self.meta, self.write = path, meta, write
        super().__init__(path.with_name(f"{path.name}.stage.npy"), np.float32, shape)

    def finish(self) -> None:
        super().finish()
        need_free_space(self.target, self.row * self.rows)  # at most the raw size
        self.write(self.target, np.load(self.fh.name, mmap_mode="r"), self.meta)

    def close(self) -> None:
        self.fh.close()
        Path(self.fh.name).unlink(missing_ok=True)


def _write_npz(path: Path, flow: np.ndarray, meta: dict[str, Any]) -> None:
    """A compressed ``.npz`` holding ``flow`` (numpy writes it in buffered chunks)."""
    with open(path, "wb") as fh:
        np.savez_compressed(fh, flow=flow)


class ArraySink:
    """The flow in memory, for callers that asked for no file: ``array`` once finished."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape, self.chunks, self.rows = shape, [], 0
        self.array: np.ndarray | None = None

    def __setitem__(self, index: slice, value: np.ndarray) -> None:
        if (index.start or 0) != self.rows:
            raise ValueError("an array in memory is written in order")
        self.chunks.append(np.asarray(value, np.float32))
        self.rows += len(value)

    def finish(self) -> None:
        empty = np.empty((0, *self.shape[1:]), np.float32)
        self.array = np.concatenate([empty, *self.chunks])
        self.chunks = []

    def close(self) -> None:
        self.chunks = []


class FolderWriter:
    """One ``.flo`` or KITTI ``.png`` per pair, named as :func:`~flowvid.io.flowfile.write_flow`
    names them."""

    def __init__(self, folder: Path, pairs: int, fmt: str) -> None:
        if fmt not in ("flo", "png"):
            raise InputError(f"per-pair format must be 'flo' or 'png', not {fmt!r}")
        self.folder, self.fmt = folder, fmt
        self.digits = max(6, len(str(pairs)))

    def __setitem__(self, index: slice, value: np.ndarray) -> None:
        for i, pair in enumerate(value, start=index.start or 0):
            target = self.folder / f"{i:0{self.digits}d}.{self.fmt}"
            write_flo(target, pair) if self.fmt == "flo" else write_kitti(target, pair, None)

    def close(self) -> None:
        pass


OUT_SUFFIXES = ("", ".npy", ".npz", ".h5", ".mat")


@contextlib.contextmanager
def flow_sink(
    out: Path | None,
    shape: tuple[int, ...],
    pair_format: str,
    meta: dict[str, Any] | None = None,
):
    """Something to write (m, H, W, 2) slices into, in order, in constant memory (.mat
    excepted); the output appears under its final name only once complete, holding the maps
    written (``shape[0]`` is what is expected: more or fewer may come). ``out=None``: an
    :class:`ArraySink` in memory. ``meta`` (units, fps, um_per_px) goes into .h5 and .mat
    files."""
    if out is None:
        sink = ArraySink(shape)
        yield sink
        sink.finish()
        return
    suffix = out.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise InputError(
            f"--out must end in .npy, .npz, .h5 or .mat, or name a folder, not {suffix!r}", out
        )
    with atomic_output(out, is_dir=suffix == "") as tmp:
        sink = _open_sink(tmp, suffix, shape, pair_format, meta or {})
        try:
            yield sink
            getattr(sink, "finish", lambda: None)()
        finally:
            sink.close()


def _open_sink(tmp: Path, suffix: str, shape: tuple[int, ...], pair_format: str, meta: dict):
    if suffix == ".npy":
        return NpyWriter(tmp, np.float32, shape)
    if suffix == ".npz":
        return StagedWriter(tmp, shape, meta, write=_write_npz)
    if suffix == ".h5":
        return H5Writer(tmp, shape, meta)
    if suffix == ".mat":
        return StagedWriter(tmp, shape, meta)
    return FolderWriter(tmp, shape[0], pair_format)


UNCERTAINTY_SUFFIXES = (".npy", ".h5", ".mat")
UNCERTAINTY_AXES = (
    "(T-1, H, W): the expected end-point error of flow pair i at each pixel, in the flow's "
    "units (the mean EPE of vectors the model judges alike; not a bound)"
)


@contextlib.contextmanager
def uncertainty_sink(out: Path, shape: tuple[int, ...], meta: dict[str, Any] | None = None):
    """Like :func:`flow_sink`, for the expected error (T-1, H, W) float32: ``.npy``, ``.h5``
    (dataset ``uncertainty``) or ``.mat`` (variable ``uncertainty``)."""
    suffix = out.suffix.lower()
    if suffix not in UNCERTAINTY_SUFFIXES:
        raise InputError(f"--uncertainty must end in .npy, .h5 or .mat, not {suffix!r}", out)
    with atomic_output(out) as tmp:
        if suffix == ".npy":
            sink = NpyWriter(tmp, np.float32, shape)
        elif suffix == ".h5":
            sink = H5Writer(tmp, shape, {"axes": UNCERTAINTY_AXES, **(meta or {})}, "uncertainty")
        else:
            sink = StagedWriter(tmp, shape, meta or {}, write=_write_uncertainty_mat)
        try:
            yield sink
            getattr(sink, "finish", lambda: None)()
        finally:
            sink.close()


def _write_uncertainty_mat(path: Path, data: np.ndarray, meta: dict[str, Any]) -> None:
    from scipy.io import savemat

    plain = {k: v for k, v in meta.items() if v is not None}
    doc = {"uncertainty": np.ascontiguousarray(data), "axes": UNCERTAINTY_AXES, **plain}
    savemat(path, doc, do_compression=True)


class ExpectedError:
    """A ``predict --uncertainty`` file, read map by map: ``[i]`` is (H, W) float32 in
    px/frame (a file in um/s is converted back by its sidecar's scale); ``start`` is the
    first frame it covers. ``.npy`` is memory-mapped and ``.h5`` read lazily, so memory stays
    constant in the video's length; ``.mat`` is read whole."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in UNCERTAINTY_SUFFIXES:
            raise InputError(
                f"an expected-error file ends in .npy, .h5 or .mat, not {suffix!r}", path
            )
        if not path.is_file():
            raise InputError("no such file", path)
        self._h5 = None
        try:
            if suffix == ".npy":
                self.data = np.load(path, mmap_mode="r", allow_pickle=False)
            elif suffix == ".h5":
                import h5py

                self._h5 = h5py.File(path, "r")
                self.data = self._h5["uncertainty"]
            else:
                from scipy.io import loadmat

                self.data = loadmat(path, variable_names=["uncertainty"])["uncertainty"]
        except (OSError, ValueError, KeyError) as e:
            self.close()
            raise InputError(f"cannot read an expected error here ({e})", path) from None
        if self.data.ndim != 3 or not np.issubdtype(self.data.dtype, np.floating):
            self.close()
            raise InputError(
                f"an expected error is (T-1, H, W) floats, not {self.data.shape} {self.data.dtype}",
                path,
            )
        doc = read_sidecar(path)
        self.start = int((doc.get("frames") or [0])[0])
        scale = doc.get("um_per_s_per_px_per_frame") if doc.get("units") == "um/s" else None
        self.to_px = 1.0 / float(scale) if scale else 1.0
        self.shape = tuple(self.data.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.data[i], np.float32) * np.float32(self.to_px)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def sidecar_path(out: Path) -> Path:
    """``<out>.json`` beside the output (``out`` made absolute first: ``a/..`` and ``.`` have
    no name of their own)."""
    out = Path(os.path.abspath(out))
    return out.with_name(out.name + ".json")


FLOW_AXES = (
    "(T-1, H, W, 2): pair i moves frame i to i+1 (frames counted from 'frames'[0]); "
    "channel 0 = u (x, right), channel 1 = v (y, down)"
)


def read_sidecar(out: str | Path) -> dict[str, Any]:
    """The sidecar ``<out>.json`` as a dict; ``{}`` when there is none. One that is not a
    JSON object (empty, damaged, a list, a string) is an :class:`InputError`, not a guess."""
    path = sidecar_path(Path(out))
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"is not readable JSON ({err}); fix or remove it", path) from None
    if not isinstance(doc, dict):
        raise InputError(
            f"holds a JSON {type(doc).__name__}, not the object a flowvid sidecar is; "
            "fix or remove it",
            path,
        )
    return doc


def flow_origin(doc: dict[str, Any]) -> str:
    """What made a flow, in a few words for a figure, from its sidecar ``doc``: the
    classical method, or the model's checkpoint (file name and the first 8 hex digits of its
    sha256); "source not recorded" for a flow without a sidecar that says."""
    method = doc.get("method")
    if method in CLASSICAL_NAMES:
        return f"flow: {CLASSICAL_NAMES[method]}"
    checkpoint, digest = doc.get("checkpoint"), doc.get("checkpoint_sha256")
    if checkpoint:
        return f"flow: model {Path(str(checkpoint)).name}" + (
            f" ({str(digest)[:8]})" if digest else ""
        )
    return "flow: source not recorded"


def write_sidecar(out: Path, fields: dict[str, Any]) -> Path:
    """``<out>.json``: what the output holds (shape, axes, units, ...) and where it came from."""
    doc = {"flowvid_version": __version__, "file": out.name, **fields}
    with atomic_output(sidecar_path(out)) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return sidecar_path(out)


def npy_stream(
    out: Path, shape: tuple[int, ...], dtype: np.dtype, chunks: Iterator[np.ndarray]
) -> None:
    """Write chunks along axis 0 into a .npy, atomically, in constant memory."""
    with atomic_output(out) as tmp:
        writer = NpyWriter(tmp, dtype, shape)
        try:
            done = 0
            for chunk in chunks:
                writer[done : done + len(chunk)] = chunk
                done += len(chunk)
            writer.finish()
        finally:
            writer.close()

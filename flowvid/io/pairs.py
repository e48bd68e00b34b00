"""One flow map per file: Middlebury .flo and KITTI 16-bit PNG.

Headers are checked against the file size before anything is allocated, so a corrupt file
never causes a giant allocation; every problem is a :class:`~flowvid.errors.FlowFormatError`
naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from flowvid.errors import FlowFormatError

FLO_TAG = 202021.25
FLO_UNKNOWN = 1e9  # Middlebury: components above this mark unknown flow
KITTI_SCALE = 64.0
KITTI_OFFSET = 2**15
MAX_SIDE = 1 << 15  # no microscope frame is wider or taller than 32768 px


def check_side(path: Path, height: int, width: int) -> None:
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise FlowFormatError(f"implausible flow size {width}x{height} in the header", path)


# ----------------------------------------------------------------------------- .npy / .npz


# ----------------------------------------------------------------------------- .flo


def flo_header(path: Path) -> tuple[int, int]:
    """Check a Middlebury .flo header against the file size; return (height, width)."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(12)
    except OSError as err:
        raise FlowFormatError(f"cannot read ({err.strerror})", path) from None
    if len(header) < 12:
        raise FlowFormatError("too short for a .flo header (12 bytes)", path)
    tag, width, height = struct.unpack("<fii", header)
    if tag != np.float32(FLO_TAG):
        raise FlowFormatError(f"bad .flo tag {tag!r} (expected {FLO_TAG})", path)
    check_side(path, height, width)
    expected = 12 + 8 * width * height
    size = path.stat().st_size
    if size != expected:
        raise FlowFormatError(
            f"file has {size} bytes but its {width}x{height} header needs {expected}"
            + (" (truncated)" if size < expected else ""),
            path,
        )
    return height, width


def read_flo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    height, width = flo_header(path)
    flow = np.fromfile(path, "<f4", offset=12).reshape(height, width, 2).astype(np.float32)
    valid = np.isfinite(flow).all(-1) & (np.abs(flow) < FLO_UNKNOWN).all(-1)
    return flow, valid


def write_flo(path: Path, flow: np.ndarray) -> None:
    height, width = flow.shape[:2]
    with open(path, "wb") as fh:
        fh.write(struct.pack("<fii", FLO_TAG, width, height))
        fh.write(np.ascontiguousarray(flow, "<f4").tobytes())


# ----------------------------------------------------------------------------- KITTI PNG


def _png_size(path: Path) -> tuple[int, int]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError as err:
        raise FlowFormatError(f"cannot read ({err.strerror})", path) from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise FlowFormatError("not a PNG file", path)
    width, height = struct.unpack(">II", head[16:24])
    check_side(path, height, width)
    return height, width


def read_kitti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    _png_size(path)
    try:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise FlowFormatError(f"PNG cannot be decoded ({err})", path) from None
    if img is None:
        raise FlowFormatError("PNG cannot be decoded (damaged or truncated)", path)
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
        raise FlowFormatError(
            f"a KITTI flow PNG is 16-bit RGB; found {img.dtype} with shape {img.shape}", path
        )
    bgr = img.astype(np.float32)
    flow = (bgr[..., [2, 1]] - KITTI_OFFSET) / KITTI_SCALE  # R = u, G = v
    valid = img[..., 0] > 0  # B = valid
    flow[~valid] = 0.0
    return flow, valid


def write_kitti(path: Path, flow: np.ndarray, valid: np.ndarray | None) -> None:
    if valid is None:
        valid = np.isfinite(flow).all(-1)
    flow = np.where(valid[..., None], flow, 0.0)
    encoded = np.round(flow * KITTI_SCALE + KITTI_OFFSET)
    if encoded.min() < 0 or encoded.max() > 65535:
        raise FlowFormatError("KITTI PNG holds only |flow| < 512 px; use .npy or .flo", path)
    bgr = np.stack([valid, encoded[..., 1], encoded[..., 0]], -1).astype(np.uint16)
    if not cv2.imwrite(str(path), bgr):
        raise FlowFormatError("could not write PNG", path)

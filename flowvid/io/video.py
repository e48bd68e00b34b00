"""Video readers and the writer: the front door (:func:`open_video`).

Readers share one small interface (:class:`VideoReader`): ``num_frames``, ``fps``,
``height``, ``width``, ``read(indices)`` for random access and ``iter_frames()`` for
streaming, always returning uint8 RGB ``(H, W, 3)`` frames (grayscale becomes RGB).

- :class:`PyAVReader` is the reference: exact and sequential, always installed.
- :class:`DecordReader` is the fast random-access path for training clips; it is used
  for a video only after it agrees with PyAV on a few frames.
- :class:`TiffReader` reads multi-page .tif stacks, :class:`FrameFolderReader` a folder
  of PNG/JPEG/TIFF frames.

Frame count and fps of a container come from an index built once by decoding the
whole video with PyAV (cached on disk), never from container metadata, which is often
wrong for microscope recordings.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from flowvid.errors import VideoError
from flowvid.io import decoders
from flowvid.io.decoders import DecordReader, PyAVReader, decord_available
from flowvid.io.index import (
    VideoIndex,
    cache_dir,
    cached_index,
    header_index,
    open_container,
    save_index,
    video_index,
)
from flowvid.io.reader import IMAGE_SUFFIXES, TIFF_SUFFIXES, VIDEO_SUFFIXES, VideoReader
from flowvid.io.stacks import FrameFolderReader, TiffReader
from flowvid.io.writer import VideoWriter, write_video

__all__ = [
    "IMAGE_SUFFIXES",
    "TIFF_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VideoReader",
    "VideoWriter",
    "cache_dir",
    "open_video",
    "video_index",
    "write_video",
]

log = logging.getLogger(__name__)


def open_video(path: str | Path, backend: str = "pyav", exact: bool = True) -> VideoReader:
    """Open a video file, a .tif stack or a folder of frames.

    ``backend``: ``"pyav"`` (reference, default), or ``"auto"`` for training, which uses
    decord when it is installed and agrees with PyAV on this video. ``exact=False``: a video
    file not indexed yet is read with what its container states, opened once; the reader
    learns the true count and rate while decoding (streaming prediction; see
    :mod:`flowvid.io.index`).
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path)
    if not path.exists():
        raise VideoError("no such file or folder", path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return TiffReader(path)
    if backend not in ("pyav", "auto"):
        raise ValueError(f"unknown video backend {backend!r}: use 'pyav' or 'auto'")
    if not exact and backend == "pyav" and cached_index(path) is None:
        container = open_container(path)
        stated = header_index(container)
        if stated is not None:
            return PyAVReader(path, stated, container)
        container.close()
    index = video_index(path)
    reference = PyAVReader(path, index)
    if backend == "pyav" or not decord_available():
        return reference
    if index.decord_ok is None:
        index = VideoIndex(
            **{**asdict(index), "decord_ok": decoders.decord_agrees(path, index, reference)}
        )
        save_index(path, index)
        if not index.decord_ok:
            log.warning("%s: decord disagrees with PyAV; reading this video with PyAV", path)
    if not index.decord_ok:
        return reference
    reference.close()
    return DecordReader(path, index)

"""The index of a video container: frame count, rate, size and timestamps, from decoding the
whole video once with PyAV (cached on disk), not from container metadata, which is often
wrong for microscope recordings.

One exception saves that extra decode where it would only count frames: streaming
prediction may begin with what an MP4/MOV/AVI container states (:func:`header_index`,
``exact=False``). Its outputs are finalised when the stream ends, so a wrong stated count
costs nothing: the reader counts and times the frames as it decodes them, and a stream that
reaches the end leaves the exact index in the cache (:func:`index_from_pts`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from flowvid.errors import VideoError
from flowvid.io.atomic import atomic_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoIndex:
    """What decoding the whole video once tells: count, rate, size and timestamps."""

    num_frames: int
    fps: float | None
    height: int
    width: int
    pts: list[int] | None  # presentation timestamp of every frame, in decode order
    decord_ok: bool | None = None  # set once decord has been checked against PyAV
    exact: bool = True  # False: the count is the container's claim, checked while decoding
    rate_range: tuple[float, float] | None = None  # slowest and fastest rate where it varies


# containers whose sample table counts the frames it holds (MP4/MOV family, AVI)
_COUNTED_FORMATS = ("mov", "mp4", "avi")


INDEX_VERSION = 2  # 2: a variable frame rate is recorded (rate_range) and gives no fps


def cache_dir() -> Path:
    """Where flowvid keeps derived files: $FLOWVID_CACHE, else $XDG_CACHE_HOME/flowvid."""
    if "FLOWVID_CACHE" in os.environ:
        return Path(os.environ["FLOWVID_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flowvid"


def _index_path(path: Path) -> Path:
    stat = path.stat()
    key = f"{INDEX_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / "index" / (hashlib.sha1(key.encode()).hexdigest() + ".json")


# PyAV (17 and newer) converts pixel formats on a pool of threads unless told otherwise; a
# process forked after its parent had converted a frame (a DataLoader or corpus worker) then
# hangs on the pool it inherited. flowvid converts on one thread: workers parallelise instead.
CONVERT = {"threads": 1}


def open_container(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError("no such video file", path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoError(f"not a readable video ({err})", path) from None
    if not container.streams.video:
        container.close()
        raise VideoError("the file holds no video stream", path)
    return container


def _scan(path: Path) -> VideoIndex:
    """Decode every frame once with PyAV (no colour conversion) to count and time them."""
    container = open_container(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base, rate = stream.time_base, stream.average_rate  # PyAV >= 18: not once closed
    pts: list[int | None] = []
    size = None
    try:
        for frame in container.decode(stream):
            pts.append(frame.pts)
            size = size or (frame.height, frame.width)
    except av.error.FFmpegError as err:
        if not pts:
            raise VideoError(f"video cannot be decoded ({err})", path) from None
        log.warning("%s: decoding stopped after %d frames (%s)", path, len(pts), err)
    finally:
        container.close()
    if not pts or size is None:
        raise VideoError("the video has no decodable frames", path)
    return index_from_pts(path, pts, size, time_base, rate)


def index_from_pts(
    path: Path,
    pts: list[int | None],
    size: tuple[int, int],
    time_base: Fraction | None,
    average_rate: Fraction | None,
) -> VideoIndex:
    """The exact index from every frame's timestamp, in decode order: the count, and the rate
    (the stated one where the timestamps agree with it; none where they vary, with a
    warning: physical units then need --fps)."""
    known = None if any(p is None for p in pts) else [int(p) for p in pts]
    varies = rate_range(known, time_base)
    if varies is not None:
        log.warning(
            "%s: the frame rate varies (%.3g-%.3g frames/s); it has no single frame rate, so "
            "physical units need --fps",
            path,
            *varies,
        )
        return VideoIndex(len(pts), None, size[0], size[1], known, rate_range=varies)
    fps = _fps_from_pts(known, time_base)
    stated = _float_rate(average_rate)
    if stated and (fps is None or _agrees(1.0 / (fps * float(time_base)), stated, time_base)):
        fps = stated  # the stated rate, as a read with the container's claims gets it
    return VideoIndex(len(pts), fps, size[0], size[1], known)


# A frame interval within this fraction (or one tick of the time base) of the stated one
# agrees with it; intervals that spread over twice that make a variable frame rate.
RATE_TOLERANCE = 0.01


def step_slack(step_ticks: float) -> float:
    """How far (in ticks) a frame interval may lie from ``step_ticks`` and still agree."""
    return max(RATE_TOLERANCE * step_ticks, 1.0)


def _agrees(step_ticks: float, fps: float, time_base: Fraction | None) -> bool:
    if time_base is None:
        return True
    expected = 1.0 / (fps * float(time_base))
    return abs(step_ticks - expected) <= step_slack(expected)


def _fps_from_pts(pts: list[int] | None, time_base: Fraction | None) -> float | None:
    if not pts or len(pts) < 2 or time_base is None:
        return None
    steps = np.diff(np.asarray(pts, np.float64))
    step = float(np.median(steps))
    return 1.0 / (step * float(time_base)) if step > 0 else None


def rate_range(pts: list[int] | None, time_base: Fraction | None) -> tuple[float, float] | None:
    """The slowest and fastest frame rate between consecutive timestamps, or None where the
    rate is constant (or the timestamps cannot tell)."""
    if not pts or len(pts) < 3 or time_base is None:
        return None
    steps = np.diff(np.asarray(pts, np.float64))
    if steps.min() <= 0:
        return None  # out of order or repeated timestamps: no rate to read from them
    if steps.max() - steps.min() <= 2 * step_slack(float(np.median(steps))):
        return None
    tick = float(time_base)
    return float(1.0 / (steps.max() * tick)), float(1.0 / (steps.min() * tick))


def _float_rate(rate: Fraction | None) -> float | None:
    return float(rate) if rate else None


def header_index(container: av.container.InputContainer) -> VideoIndex | None:
    """What an open container states, without decoding: count, rate and size (no
    timestamps), or None where its format keeps no frame count or states none."""
    stream = container.streams.video[0]
    formats = container.format.name.split(",")
    count = stream.frames
    width, height = stream.codec_context.width, stream.codec_context.height
    if not any(f in _COUNTED_FORMATS for f in formats) or count < 2 or not width or not height:
        return None
    return VideoIndex(count, _float_rate(stream.average_rate), height, width, None, exact=False)


def cached_index(path: Path) -> VideoIndex | None:
    """The index cached for this file (same path, size and modification time), or None."""
    cached = _index_path(path)
    if not cached.is_file():
        return None
    try:
        entry = json.loads(cached.read_text())
        if entry.get("rate_range") is not None:
            entry["rate_range"] = tuple(entry["rate_range"])
        return VideoIndex(**entry)
    except (ValueError, TypeError, AttributeError):
        return None  # damaged cache entry: rebuilt


def video_index(path: str | Path, refresh: bool = False) -> VideoIndex:
    """The cached index of a video file, built on first use by decoding it once."""
    path = Path(path)
    if not path.is_file():
        raise VideoError("no such video file", path)
    index = None if refresh else cached_index(path)
    if index is None:
        index = _scan(path)
        save_index(path, index)
    return index


def save_index(path: Path, index: VideoIndex) -> None:
    try:
        with atomic_output(_index_path(path)) as tmp:
            tmp.write_text(json.dumps(asdict(index)))
    except OSError as err:  # a read-only cache only costs speed
        log.debug("cannot cache the index of %s: %s", path, err)

"""Video readers and the writer.

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

import bisect
import hashlib
import json
import logging
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from flowvid.errors import VideoError
from flowvid.io.atomic import atomic_output
from flowvid.io.flowfile import natural_key

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DECORD_MAX_MEAN_ABS_DIFF = 2.0  # grey levels; colour conversion may differ by a level or two


def to_rgb_uint8(frame: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Any (H,W), (H,W,1), (H,W,3) or (H,W,4) frame -> (H,W,3) uint8 RGB."""
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"cannot read a frame of shape {frame.shape} as an image")
    frame = frame[..., :3]
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if frame.dtype.kind == "f":
        return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(frame.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)


class VideoReader(ABC):
    """uint8 RGB frames of one video, by index or as a stream."""

    path: Path
    num_frames: int
    fps: float | None
    height: int
    width: int

    @abstractmethod
    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` as ``(N, H, W, 3)`` uint8 RGB, in the order asked."""

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start..stop-1`` one at a time, ``(H, W, 3)`` uint8."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        for i in range(start, stop):
            yield self.read([i])[0]

    def close(self) -> None:  # noqa: B027 - optional for readers holding no handle
        """Release file handles."""

    def __len__(self) -> int:
        return self.num_frames

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frames {bad[:5]} outside 0..{self.num_frames - 1}")
        return out


# ----------------------------------------------------------------------------- PyAV index


@dataclass(frozen=True)
class VideoIndex:
    """What decoding the whole video once tells: count, rate, size and timestamps."""

    num_frames: int
    fps: float | None
    height: int
    width: int
    pts: list[int] | None  # presentation timestamp of every frame, in decode order
    decord_ok: bool | None = None  # set once decord has been checked against PyAV


def cache_dir() -> Path:
    """Where flowvid keeps derived files: $FLOWVID_CACHE, else $XDG_CACHE_HOME/flowvid."""
    if "FLOWVID_CACHE" in os.environ:
        return Path(os.environ["FLOWVID_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flowvid"


def _index_path(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / "index" / (hashlib.sha1(key.encode()).hexdigest() + ".json")


def _open_container(path: Path) -> av.container.InputContainer:
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
    container = _open_container(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base, average_rate = stream.time_base, stream.average_rate
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
    known = None if any(p is None for p in pts) else [int(p) for p in pts]
    fps = _fps_from_pts(known, time_base) or _float_rate(average_rate)
    return VideoIndex(len(pts), fps, size[0], size[1], known)


def _fps_from_pts(pts: list[int] | None, time_base: Fraction | None) -> float | None:
    if not pts or len(pts) < 2 or time_base is None:
        return None
    steps = np.diff(np.asarray(pts, np.float64))
    step = float(np.median(steps))
    return 1.0 / (step * float(time_base)) if step > 0 else None


def _float_rate(rate: Fraction | None) -> float | None:
    return float(rate) if rate else None


def video_index(path: str | Path, refresh: bool = False) -> VideoIndex:
    """The cached index of a video file, built on first use."""
    path = Path(path)
    if not path.is_file():
        raise VideoError("no such video file", path)
    cached = _index_path(path)
    if cached.is_file() and not refresh:
        try:
            return VideoIndex(**json.loads(cached.read_text()))
        except (ValueError, TypeError):
            pass  # damaged cache entry: rebuild
    index = _scan(path)
    _save_index(path, index)
    return index


def _save_index(path: Path, index: VideoIndex) -> None:
    try:
        with atomic_output(_index_path(path)) as tmp:
            tmp.write_text(json.dumps(asdict(index)))
    except OSError as err:  # a read-only cache only costs speed
        log.debug("cannot cache the index of %s: %s", path, err)


# ----------------------------------------------------------------------------- readers


class PyAVReader(VideoReader):
    """The reference reader: exact frames, sequential decoding, seeks for random access."""

    RESEEK_GAP = 64  # decode forward through gaps shorter than this instead of seeking

    def __init__(self, path: str | Path, index: VideoIndex | None = None) -> None:
        self.path = Path(path)
        self.index = index or video_index(self.path)
        self.num_frames = self.index.num_frames
        self.fps = self.index.fps
        self.height, self.width = self.index.height, self.index.width
        self._container: av.container.InputContainer | None = None

    def _stream(self) -> av.video.stream.VideoStream:
        if self._container is None:  # opened lazily: safe to pickle into DataLoader workers
            self._container = _open_container(self.path)
            self._container.streams.video[0].thread_type = "AUTO"
        return self._container.streams.video[0]

    def _decode_from(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield (frame index, frame) from a keyframe at or before frame ``first`` onward."""
        stream = self._stream()
        assert self._container is not None
        pts = self.index.pts
        if pts is None:  # no timestamps to seek by: decode from the top and count
            self.close()
            stream = self._stream()
            yield from enumerate(self._container.decode(stream))
            return
        self._container.seek(pts[first], stream=stream, backward=True, any_frame=False)
        for frame in self._container.decode(stream):
            if frame.pts is None:
                raise VideoError("a frame without timestamp after seeking", self.path)
            yield bisect.bisect_left(pts, frame.pts), frame

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = self._check_indices(indices)
        todo = deque(sorted(set(wanted)))
        got: dict[int, np.ndarray] = {}
        while todo:
            target = todo[0]
            for idx, frame in self._decode_from(target):
                if idx > todo[0]:
                    break
                if idx == todo[0]:
                    got[todo.popleft()] = frame.to_ndarray(format="rgb24")
                    if not todo or todo[0] - idx > self.RESEEK_GAP:
                        break
            if todo and todo[0] == target:  # decoding from a seek never reached it
                raise VideoError(f"frame {target} could not be decoded", self.path)
        return np.stack([got[i] for i in wanted])

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if start >= stop:
            return
        for idx, frame in self._decode_from(start):
            if idx >= stop:
                break
            if idx >= start:
                yield frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_container"] = None
        return state


class DecordReader(VideoReader):
    """Fast random access through decord (opened lazily, so DataLoader workers own theirs)."""

    def __init__(self, path: str | Path, index: VideoIndex) -> None:
        self.path = Path(path)
        self.index = index
        self.num_frames, self.fps = index.num_frames, index.fps
        self.height, self.width = index.height, index.width
        self._vr = None

    def _reader(self):  # noqa: ANN202 - decord has no type hints
        if self._vr is None:
            import decord

            self._vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
        return self._vr

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = self._check_indices(indices)
        return self._reader().get_batch(wanted).asnumpy()

    def close(self) -> None:
        self._vr = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_vr"] = None
        return state


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _decord_agrees(path: Path, index: VideoIndex, reference: PyAVReader) -> bool:
    """Compare decord with PyAV on the first, middle and last frame (and its length)."""
    try:
        reader = DecordReader(path, index)
        if len(reader._reader()) != index.num_frames:
            return False
        probe = sorted({0, index.num_frames // 2, index.num_frames - 1})
        fast, exact = reader.read(probe).astype(np.float32), reference.read(probe)
        return fast.shape == exact.shape and bool(
            np.abs(fast - exact).mean(axis=(1, 2, 3)).max() <= DECORD_MAX_MEAN_ABS_DIFF
        )
    except Exception as err:  # decord raises its own C++ errors on odd files
        log.debug("decord failed on %s: %s", path, err)
        return False


class TiffReader(VideoReader):
    """A multi-page .tif stack: (T,H,W), (T,H,W,C) with C in 1/3/4; 8-bit or wider."""

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = Path(path)
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                shape, dtype = series.shape, series.dtype
        except Exception as err:
            raise VideoError(f"not a readable TIFF stack ({err})", self.path) from None
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
            raise VideoError(f"TIFF stack of shape {shape}: expected (T,H,W) or (T,H,W,C)", path)
        self.num_frames, self.height, self.width = shape[:3]
        self.fps = None
        self._scale = 1.0
        if np.dtype(dtype).kind in "ui" and np.dtype(dtype).itemsize > 1:
            probe = sorted({0, self.num_frames // 2, self.num_frames - 1})
            self._scale = 255.0 / _bit_depth_max(self._pages(probe))

    def _pages(self, indices: Sequence[int]) -> np.ndarray:
        import tifffile

        data = tifffile.imread(self.path, key=list(indices), maxworkers=1)
        return data if len(indices) > 1 else data[None]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = self._check_indices(indices)
        pages = self._pages(wanted)
        return np.stack([to_rgb_uint8(p, self._scale) for p in pages])


def _bit_depth_max(frame: np.ndarray) -> float:
    """Full-scale value of >8-bit data: the smallest of 10/12/14/16 bits that holds its peak."""
    peak = int(frame.max())
    for bits in (10, 12, 14, 16):
        if peak < 2**bits:
            return float(2**bits - 1)
    return float(np.iinfo(frame.dtype).max)


class FrameFolderReader(VideoReader):
    """A folder of image files, one frame each, in natural order (frame2 before frame10)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        files = [p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise VideoError(f"folder holds no frames ({', '.join(IMAGE_SUFFIXES)})", path)
        self.files = sorted(files, key=natural_key)
        first = self._load(self.files[0])
        self.num_frames = len(self.files)
        self.height, self.width = first.shape[:2]
        self.fps = None

    def _load(self, file: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as img:
                arr = np.asarray(img)
        except (OSError, UnidentifiedImageError) as err:
            raise VideoError(f"frame cannot be read ({err})", file) from None
        scale = 255.0 / _bit_depth_max(arr) if arr.dtype.kind in "ui" and arr.itemsize > 1 else 1
        return to_rgb_uint8(arr, scale)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        frames = [self._load(self.files[i]) for i in self._check_indices(indices)]
        for f, frame in zip(indices, frames, strict=True):
            if frame.shape[:2] != (self.height, self.width):
                raise VideoError(
                    f"frame size {frame.shape[:2]} differs from the first", self.files[f]
                )
        return np.stack(frames)


def open_video(path: str | Path, backend: str = "pyav") -> VideoReader:
    """Open a video file, a .tif stack or a folder of frames.

    ``backend``: ``"pyav"`` (reference, default), or ``"auto"`` for training, which uses
    decord when it is installed and agrees with PyAV on this video.
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
    index = video_index(path)
    reference = PyAVReader(path, index)
    if backend == "pyav" or not decord_available():
        return reference
    if index.decord_ok is None:
        index = VideoIndex(**{**asdict(index), "decord_ok": _decord_agrees(path, index, reference)})
        _save_index(path, index)
        if not index.decord_ok:
            log.warning("%s: decord disagrees with PyAV; reading this video with PyAV", path)
    if not index.decord_ok:
        return reference
    reference.close()
    return DecordReader(path, index)


# ----------------------------------------------------------------------------- writer


class VideoWriter:
    """Write uint8 RGB frames with PyAV: libx264 (mpeg4 where absent), atomically.

    Even sizes use yuv420p (plays everywhere). Odd sizes use yuv444p with libx264, so the
    decoded video keeps its exact size; the mpeg4 fallback pads odd sizes by one pixel.
    The file appears under its final name only when :meth:`close` succeeds.
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 18) -> None:
        if not fps or fps <= 0:
            raise VideoError(f"fps must be positive, got {fps}", path)
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self._atomic = atomic_output(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = av.open(str(self._tmp), mode="w")
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._count = 0

    def _open_stream(self, height: int, width: int) -> None:
        odd = height % 2 or width % 2
        rate = Fraction(self.fps).limit_denominator(1001)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = self._container.add_stream(codec, rate=rate)
        if codec == "libx264":
            stream.pix_fmt = "yuv444p" if odd else "yuv420p"
            stream.options = {"crf": str(self.crf), "preset": "medium"}
            stream.width, stream.height = width, height
        else:
            stream.pix_fmt = "yuv420p"
            stream.width, stream.height = width + width % 2, height + height % 2
            stream.bit_rate = 8_000_000
        stream.codec_context.time_base = Fraction(1) / rate
        self._stream, self._size = stream, (height, width)

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (grayscale is accepted too)."""
        frame = to_rgb_uint8(np.asarray(frame))
        if self._stream is None:
            self._open_stream(*frame.shape[:2])
        if frame.shape[:2] != self._size:
            raise VideoError(f"frame size {frame.shape[:2]} differs from {self._size}", self.path)
        if (self._stream.height, self._stream.width) != frame.shape[:2]:
            pad = (
                (0, self._stream.height - frame.shape[0]),
                (0, self._stream.width - frame.shape[1]),
            )
            frame = np.pad(frame, (*pad, (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self._count
        self._count += 1
        for packet in self._stream.encode(vf):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and move the file to its final name."""
        if self._container is None:
            return
        try:
            if self._stream is None:
                raise VideoError("no frames were written", self.path)
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        except BaseException as err:
            self.abort()
            raise err
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the partial file."""
        if self._container is not None:
            self._container.close()
            self._container = None
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, fps: float, crf: int = 18
) -> Path:
    """Write a whole clip of uint8 RGB frames; see :class:`VideoWriter`."""
    with VideoWriter(path, fps, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)

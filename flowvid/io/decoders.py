"""Readers of video containers: PyAV (the reference) and decord (fast random access, used
for a video only after it agrees with PyAV)."""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from flowvid.errors import VideoError
from flowvid.io.index import (
    CONVERT,
    VideoIndex,
    index_from_pts,
    open_container,
    save_index,
    video_index,
)
from flowvid.io.reader import VideoReader

log = logging.getLogger(__name__)

DECORD_MAX_MEAN_ABS_DIFF = 2.0  # grey levels; colour conversion may differ by a level or two


class PyAVReader(VideoReader):
    """The reference reader: exact frames, sequential decoding, seeks for random access."""

    RESEEK_GAP = 64  # decode forward through gaps shorter than this instead of seeking

    def __init__(
        self,
        path: str | Path,
        index: VideoIndex | None = None,
        container: av.container.InputContainer | None = None,
    ) -> None:
        """``container``: the video already opened (to read its header), decoded from the
        top by the first read."""
        self.path = Path(path)
        self.index = index or video_index(self.path)
        self.num_frames = self.index.num_frames
        self.fps = self.index.fps
        self.height, self.width = self.index.height, self.index.width
        self._container = container
        self._untouched = container is not None  # still at its start: no seek needed
        if container is not None:
            container.streams.video[0].thread_type = "AUTO"

    def _stream(self) -> av.video.stream.VideoStream:
        if self._container is None:  # opened lazily: safe to pickle into DataLoader workers
            self._container = open_container(self.path)
            self._container.streams.video[0].thread_type = "AUTO"
        return self._container.streams.video[0]

    def _decode_from(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield (frame index, frame) from a keyframe at or before frame ``first`` onward."""
        stream = self._stream()
        assert self._container is not None
        pts = self.index.pts
        try:
            if pts is None:  # no timestamps to seek by: decode from the top and count
                yield from enumerate(self._container.decode(self._from_the_top()))
                return
            self._container.seek(pts[first], stream=stream, backward=True, any_frame=False)
            for frame in self._container.decode(stream):
                if frame.pts is None:
                    raise VideoError("a frame without timestamp after seeking", self.path)
                yield bisect.bisect_left(pts, frame.pts), frame
        except av.error.FFmpegError as err:  # damaged data where the index did not look
            raise VideoError(
                f"video cannot be decoded near frame {first} ({err})", self.path
            ) from None

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
                    got[todo.popleft()] = frame.to_ndarray(format="rgb24", **CONVERT)
                    if not todo or todo[0] - idx > self.RESEEK_GAP:
                        break
            if todo and todo[0] == target:  # decoding from a seek never reached it
                raise VideoError(f"frame {target} could not be decoded", self.path)
        return np.stack([got[i] for i in wanted])

    def _from_the_top(self) -> av.video.stream.VideoStream:
        if not self._untouched:
            self.close()
        self._untouched = False
        return self._stream()

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start..stop-1``; with the container's stated count (``index.exact``
        False), ``stop=None`` reads to wherever the decoding ends, however many frames the
        container states."""
        if not self.index.exact:
            yield from self._counting(start, stop)
            return
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if start >= stop:
            return
        for idx, frame in self._decode_from(start):
            if idx >= stop:
                return
            if idx >= start:
                yield frame.to_ndarray(format="rgb24", **CONVERT)
            if idx == stop - 1:  # done: ask the decoder for nothing more (past the end of a
                return  # damaged video, asking can fail)

    def _counting(self, start: int, stop: int | None) -> Iterator[np.ndarray]:
        """Frames of a video read with its container's stated count: decoded from the top,
        counted and timed as they go. The count and rate learnt replace the stated ones: all
        of them where the decoding reached the end (and the exact index is cached), the rate
        where it stopped at ``stop``."""
        stream = self._from_the_top()
        pts: list[int | None] = []
        try:
            for frame in self._container.decode(stream):  # type: ignore[union-attr]
                if stop is not None and len(pts) >= stop:
                    self._learn(pts, stream, complete=False)
                    return
                pts.append(frame.pts)
                if len(pts) > start:
                    yield frame.to_ndarray(format="rgb24", **CONVERT)
        except av.error.FFmpegError as err:
            if not pts:
                raise VideoError(f"video cannot be decoded ({err})", self.path) from None
            log.warning("%s: decoding stopped after %d frames (%s)", self.path, len(pts), err)
        self._learn(pts, stream, complete=True)

    def _learn(self, pts: list[int | None], stream: av.video.stream.VideoStream, complete: bool):
        if len(pts) < 2:
            return
        size = (self.height, self.width)
        found = index_from_pts(self.path, pts, size, stream.time_base, stream.average_rate)
        self.fps = found.fps
        if not complete:
            return
        if found.num_frames != self.num_frames:
            log.info(
                "%s: the container states %d frames; %d decode",
                self.path,
                self.num_frames,
                len(pts),
            )
        self.index, self.num_frames = found, found.num_frames
        save_index(self.path, found)

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


def decord_agrees(path: Path, index: VideoIndex, reference: PyAVReader) -> bool:
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

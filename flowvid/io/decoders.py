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
from flowvid.io.index import FrameCountMismatch, VideoIndex, open_container, step_slack, video_index
from flowvid.io.reader import VideoReader

log = logging.getLogger(__name__)

DECORD_MAX_MEAN_ABS_DIFF = 2.0  # grey levels; colour conversion may differ by a level or two


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
                self.close()
                stream = self._stream()
                yield from enumerate(self._container.decode(stream))
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
        frames = self._decode_from(start)
        checked = self._StatedRate(self) if not self.index.exact else None
        for idx, frame in frames:
            if idx >= stop:
                break
            if checked is not None:
                checked.step(frame.pts)
            if idx >= start:
                yield frame.to_ndarray(format="rgb24")
            if idx == stop - 1:  # done: ask the decoder for nothing more (past the end of a
                if not self.index.exact and stop == self.num_frames:  # damaged video, asking
                    self._check_no_more(frames)  # can fail), unless the count is only
                return  # the container's claim
        if not self.index.exact:  # the decoder ran out before the stated count
            raise FrameCountMismatch(
                f"the container states {self.num_frames} frames; fewer decode", self.path
            )

    class _StatedRate:
        """Checks the timestamps of a video read with its container's stated count and rate:
        where they show another or a varying rate, the reading stops as a mismatch, so the
        caller builds the exact index (the rate never depends on which index was used)."""

        def __init__(self, reader: PyAVReader) -> None:
            stream = reader._stream()
            self.reader, self.last = reader, None
            fps, base = reader.index.fps, stream.time_base
            self.step_ticks = 1.0 / (fps * float(base)) if fps and base else None

        def step(self, pts: int | None) -> None:
            if pts is None or self.step_ticks is None:
                self.step_ticks = None  # nothing to check against
                return
            if self.last is not None:
                if abs(pts - self.last - self.step_ticks) > step_slack(self.step_ticks):
                    raise FrameCountMismatch(
                        f"the timestamps do not follow the stated {self.reader.fps:g} frames/s",
                        self.reader.path,
                    )
            self.last = pts

    def _check_no_more(self, frames: Iterator[tuple[int, av.VideoFrame]]) -> None:
        try:
            extra = next(frames, None)
        except VideoError:  # damage past the stated end: the stated count stands
            return
        if extra is not None:
            raise FrameCountMismatch(
                f"the container states {self.num_frames} frames; more decode", self.path
            )

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

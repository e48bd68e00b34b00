"""The video writer: PyAV, libx264 (mpeg4 where absent), atomic."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from flowvid.errors import VideoError
from flowvid.io.atomic import atomic_output
from flowvid.io.index import CONVERT
from flowvid.io.reader import to_rgb_uint8


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
            # without macroblock-tree rate control: with it, libx264 encoded the same frames
            # to other pixels from run to run, even on one thread, so a seeded corpus did not
            # render twice alike
            stream.options = {"crf": str(self.crf), "preset": "medium", "x264-params": "mbtree=0"}
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
        # converted here, not by the encoder: PyAV's conversion inside encode() gave other
        # pixels for the same frames now and then
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf = vf.reformat(format=self._stream.pix_fmt, **CONVERT)
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

"""The interface every video reader shares, and frame conversion to uint8 RGB."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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

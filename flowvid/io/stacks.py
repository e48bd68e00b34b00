"""Frame stacks: multi-page TIFF files and folders of image files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flowvid.errors import VideoError
from flowvid.io.flowfile import natural_key
from flowvid.io.reader import IMAGE_SUFFIXES, VideoReader, to_rgb_uint8


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

"""Frame stacks: multi-page TIFF files and folders of image files."""

from __future__ import annotations

import logging
import math
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
        quiet = logging.getLogger("tifffile")  # its own warning would repeat ours
        level, quiet.level = quiet.level, logging.CRITICAL
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                shape, dtype, axes = series.shape, series.dtype, series.axes
                stated = tiff_calibration(tif)
        except Exception as err:
            raise VideoError(f"not a readable TIFF stack ({err})", self.path) from None
        finally:
            quiet.level = level
        # by tifffile's axes: S is a pixel's samples (an RGB TIFF; before Y and X when the
        # colour planes are stored apart), Y and X the image
        samples = shape[axes.index("S")] if "S" in axes else None
        image = tuple(n for n, a in zip(shape, axes, strict=True) if a != "S")
        self._planar = axes.endswith("SYX")
        if len(image) == 2:
            image = (1, *image)  # one picture: one frame
        if len(image) != 3 or samples not in (None, 1, 3, 4):
            raise VideoError(
                f"TIFF of shape {shape} (axes {axes}): expected frames (T,H,W) or (T,H,W,C) "
                "with C in 1/3/4",
                path,
            )
        self.num_frames, self.height, self.width = image
        self.um_per_px, self.fps, self.calibration_source = stated
        self.intensity = Intensity.decide(
            np.dtype(dtype), (self._pages([i])[0] for i in range(self.num_frames))
        )

    def _pages(self, indices: Sequence[int]) -> np.ndarray:
        import tifffile

        data = tifffile.imread(self.path, key=list(indices), maxworkers=1)
        data = data if len(indices) > 1 else data[None]
        return np.moveaxis(data, -3, -1) if self._planar else data

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = self._check_indices(indices)
        pages = self._pages(wanted)
        return np.stack([self.intensity.apply(p) for p in pages])


_MICRONS = {"um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "nm": 1e-3, "mm": 1e3}
_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "min": 60.0}


def _microns(unit: object) -> float | None:
    """µm per ``unit`` (ImageJ and OME spellings of µm, nm, mm), or None."""
    text = str(unit).strip().lower().replace("\\u00b5", "u").replace("µ", "u").replace("μ", "u")
    return _MICRONS.get(text)


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def tiff_calibration(tif) -> tuple[float | None, float | None, str | None]:  # noqa: ANN001
    """(µm per pixel, frames per second, where they were read) from a TIFF's ImageJ metadata
    (the X resolution in its ``unit``, ``finterval``) or its OME-XML (``PhysicalSizeX``,
    ``TimeIncrement``, with their units); None for what it does not state."""
    um_per_px = fps = None
    if tif.imagej_metadata:
        meta = tif.imagej_metadata
        resolution = tif.pages[0].tags.get("XResolution")
        scale = _microns(meta.get("unit", ""))
        if resolution is not None and scale is not None:
            num, den = resolution.value
            per_unit = _positive(num / den) if den else None
            um_per_px = scale / per_unit if per_unit else None
        interval = _positive(meta.get("finterval"))
        seconds = _SECONDS.get(str(meta.get("tunit", "s")).strip().lower())
        fps = 1.0 / (interval * seconds) if interval and seconds else None
        source = "TIFF ImageJ metadata"
    elif tif.ome_metadata:
        import xml.etree.ElementTree as ET

        try:
            pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
        except ET.ParseError:
            pixels = None
        if pixels is not None:
            size = _positive(pixels.get("PhysicalSizeX"))
            scale = _microns(pixels.get("PhysicalSizeXUnit", "µm"))
            um_per_px = size * scale if size and scale else None
            step = _positive(pixels.get("TimeIncrement"))
            seconds = _SECONDS.get(pixels.get("TimeIncrementUnit", "s").strip().lower())
            fps = 1.0 / (step * seconds) if step and seconds else None
        source = "TIFF OME metadata"
    if um_per_px is None and fps is None:
        return None, None, None
    tidy = lambda v: None if v is None else float(f"{v:.10g}")  # noqa: E731 - 0.65, not 0.649..
    return tidy(um_per_px), tidy(fps), source


class Intensity:
    """How a video's pixel values become uint8, decided once for the whole video, never per
    frame (a per-frame guess makes brightness jump between frames, which reads as motion).

    - 8-bit: as they are.
    - Wider integers (10-16-bit cameras): the full scale of the smallest of 10/12/14/16 bits
      that holds the brightest pixel of the whole video (a first pass reads every frame).
    - Floats: [0, 1] as they are when the whole video lies in it; otherwise (camera counts,
      a background-subtracted stack) the video's own range, min to max, onto 0-255.
    ``describe`` says which, for the sidecar."""

    def __init__(self, offset: float, scale: float, describe: str) -> None:
        self.offset, self.scale, self.describe = offset, scale, describe

    @classmethod
    def decide(cls, dtype: np.dtype, frames) -> Intensity:  # noqa: ANN001 - an iterable
        if dtype == np.uint8 or dtype.kind not in "uif":
            return cls(0.0, 1.0, "8-bit, as stored")
        lo, hi = np.inf, -np.inf
        for frame in frames:
            finite = np.asarray(frame)[..., :3]
            if dtype.kind == "f":
                finite = finite[np.isfinite(finite)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if not np.isfinite(hi):
            raise VideoError("holds no finite pixel value")
        if dtype.kind in "ui":
            top = next((2**b - 1 for b in (10, 12, 14, 16) if hi < 2**b), np.iinfo(dtype).max)
            bits = int(np.log2(top + 1))
            return cls(0.0, 255.0 / top, f"{dtype.itemsize * 8}-bit, full scale {bits} bits")
        if lo >= 0.0 and hi <= 1.0:
            return cls(0.0, 255.0, "float in [0, 1]")
        span = max(hi - lo, 1e-12)
        return cls(lo, 255.0 / span, f"float, the video's range {lo:g}..{hi:g} onto 0-255")

    def apply(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype == np.uint8:
            return to_rgb_uint8(frame)
        value = np.nan_to_num((np.asarray(frame, np.float64) - self.offset) * self.scale, nan=0.0)
        return to_rgb_uint8(np.clip(value + 0.5, 0, 255).astype(np.uint8))


class FrameFolderReader(VideoReader):
    """A folder of image files, one frame each, in natural order (frame2 before frame10)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        files = [p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise VideoError(f"folder holds no frames ({', '.join(IMAGE_SUFFIXES)})", path)
        self.files = sorted(files, key=natural_key)
        first = self._raw(self.files[0])
        self.num_frames = len(self.files)
        self.height, self.width = first.shape[:2]
        self.fps = None
        self.intensity = (
            Intensity.decide(first.dtype, (first, *(self._raw(f) for f in self.files[1:])))
            if first.dtype != np.uint8
            else Intensity.decide(first.dtype, ())
        )

    @staticmethod
    def _raw(file: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as img:
                return np.asarray(img)
        except (OSError, UnidentifiedImageError) as err:
            raise VideoError(f"frame cannot be read ({err})", file) from None

    def _load(self, file: Path) -> np.ndarray:
        return self.intensity.apply(self._raw(file))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        frames = [self._load(self.files[i]) for i in self._check_indices(indices)]
        for f, frame in zip(indices, frames, strict=True):
            if frame.shape[:2] != (self.height, self.width):
                raise VideoError(
                    f"frame size {frame.shape[:2]} differs from the first", self.files[f]
                )
        return np.stack(frames)

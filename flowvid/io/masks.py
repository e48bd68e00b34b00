"""Vessel and validity masks on disk: a PNG (static) or a .npy, ``(H, W)`` static or
``(T-1, H, W)``, one per flow map.

The rule, the same for every file: a pixel is inside where its value is above 0 (a static
mask with several levels above 0, or one that covers most of the frame, is read by the same
rule with a warning: blurred, or inverted?). A .npy may
hold bools, integers of any width or floats (nan is outside). A PNG is read as grey levels,
except one with an alpha channel that is not fully opaque everywhere (a mask painted as a
transparent layer in Fiji or napari), whose alpha is the mask.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from flowvid.errors import InputError

log = logging.getLogger(__name__)


class PairMasks:
    """A per-map mask file ``(T-1, H, W)`` of any dtype, read lazily as bool (value > 0):
    indexing gives bool arrays, and nothing is held but the file's memory map."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.ndim, self.dtype = data, data.shape, 3, np.dtype(bool)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:  # noqa: ANN001 - what numpy indexes with
        return np.asarray(self.data[index]) > 0

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # noqa: ANN001 - numpy's protocol
        whole = np.asarray(self.data) > 0
        return whole if dtype is None else whole.astype(dtype)

    def any(self, axis: int = 0) -> np.ndarray:
        """Inside in any map, (H, W): read 64 maps at a time."""
        if axis != 0:
            raise ValueError("PairMasks.any reduces over the maps (axis 0) only")
        out = np.zeros(self.shape[1:], bool)
        for i in range(0, len(self), 64):
            out |= self[i : i + 64].any(0)
        return out


class MaskError(InputError):
    """A mask file that cannot be read or does not fit the video."""


def read_mask(path: Path, pairs: int, height: int, width: int) -> np.ndarray | PairMasks:
    """A mask file as bool ``(1, H, W)`` (static) or ``(pairs, H, W)`` (:class:`PairMasks`,
    read lazily); the module's rule says which pixels are inside. An empty static mask is
    logged as a warning (what is measured in it is nothing)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as img:
                alpha = (
                    np.asarray(img.convert("RGBA"))[..., 3]
                    if "A" in img.getbands() or "transparency" in img.info
                    else None
                )
                if alpha is not None and (alpha < 255).any():
                    mask = alpha
                else:
                    mask = np.asarray(img.convert("L"))
        except OSError as err:
            raise MaskError(f"mask cannot be read ({err})", path) from None
    else:
        try:
            mask = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as err:
            raise MaskError(f"mask cannot be read ({err})", path) from None
    shape = mask.shape
    if mask.ndim == 2:
        mask = np.asarray(mask)[None]
    if mask.ndim != 3 or mask.shape[1:] != (height, width) or mask.shape[0] not in (1, pairs):
        raise MaskError(
            f"mask has shape {shape}; expected ({height}, {width}) or ({pairs}, {height}, {width})",
            path,
        )
    if mask.dtype.kind not in "biuf":
        raise MaskError(f"mask holds {mask.dtype} values; expected bools, integers or floats", path)
    if mask.shape[0] != 1:
        return PairMasks(mask)
    raw = np.asarray(mask)
    mask = raw > 0
    if not mask.any():
        log.warning("%s: the mask is empty (no pixel above 0)", path)
        return mask
    levels = np.unique(raw[mask]).size
    if levels > 1:
        log.warning(
            "%s: the mask holds %d levels above 0 (blurred or anti-aliased?); every pixel "
            "above 0 is read as inside, so a soft edge widens the vessel: threshold it first",
            path,
            levels,
        )
    if mask.mean() > MOSTLY_INSIDE:
        log.warning(
            "%s: the mask covers %.0f %% of the frame: inverted? (inside = the pixels above 0, "
            "which should be the vessels)",
            path,
            100 * mask.mean(),
        )
    return mask


MOSTLY_INSIDE = 0.6  # a vessel mask that covers more of the frame than this is suspicious


def write_png_mask(path: Path, mask: np.ndarray) -> None:
    """A static (H, W) mask as an 8-bit PNG, 255 inside (the caller makes it atomic)."""
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG")

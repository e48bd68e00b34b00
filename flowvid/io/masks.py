"""Vessel and validity masks on disk: a PNG (static, non-zero = inside) or a boolean .npy,
``(H, W)`` static or ``(T-1, H, W)``, one per flow map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowvid.errors import InputError


class MaskError(InputError):
    """A mask file that cannot be read or does not fit the video."""


def read_mask(path: Path, pairs: int, height: int, width: int) -> np.ndarray:
    """A mask file as bool ``(1, H, W)`` (static) or ``(pairs, H, W)`` (memory-mapped)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as img:
                mask = np.asarray(img.convert("L")) > 0
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
    return np.asarray(mask, bool) if mask.shape[0] == 1 else mask


def write_png_mask(path: Path, mask: np.ndarray) -> None:
    """A static (H, W) mask as an 8-bit PNG, 255 inside (the caller makes it atomic)."""
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG")

"""Textures for the generic motion corpus: procedural noise, spots, and bundled photographs.

Photographs come from the images that scikit-image ships inside its package (no download).
Two of them, ``retina`` and ``microaneurysms``, are fundus photographs of real vessels:
they are reserved for independent evaluation and never enter a training corpus
(:data:`RESERVED_IMAGES`; :func:`photo_names` refuses them).

Every texture is float32 ``(S, S, 3)`` RGB in [0, 1].
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

RESERVED_IMAGES = frozenset({"retina", "microaneurysms"})  # independent evaluation only
# scikit-image's bundled photographs with texture at many scales (by file stem)
PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "ihc",
    "moon",
    "motorcycle_left",
    "page",
    "rocket",
    "text",
)


def _skimage_data_dir() -> Path | None:
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(skimage.data.__file__).parent


def photo_names() -> tuple[str, ...]:
    """The bundled photographs available here, never a reserved one."""
    root = _skimage_data_dir()
    if root is None:
        return ()
    names = tuple(n for n in PHOTOS if any(root.glob(f"{n}.*")))
    assert not RESERVED_IMAGES & set(names), "reserved evaluation images must not be used"
    return names


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photograph as float32 (H, W, 3) in [0, 1]."""
    if name in RESERVED_IMAGES or name not in PHOTOS:
        raise ValueError(f"{name!r} is not a training photograph (reserved or unknown)")
    from PIL import Image

    root = _skimage_data_dir()
    path = next(root.glob(f"{name}.*"), None) if root else None
    if path is None:
        raise FileNotFoundError(f"scikit-image photograph {name!r} is not installed")
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), np.float32) / 255.0


def fractal_noise(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """Periodic noise with a 1/f^beta amplitude spectrum, (size, size), zero mean, unit std."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / (
        f**beta
    )
    spectrum[0, 0] = 0.0
    spectrum *= np.exp(-((f / 0.35) ** 4))  # no energy at the Nyquist limit: no aliasing
    field = np.fft.ifft2(spectrum).real
    return (field / (field.std() + 1e-12)).astype(np.float32)


def _colourise(rng: np.random.Generator, fields: list[np.ndarray]) -> np.ndarray:
    """Map unit-std fields to RGB with random colours and contrast, clipped to [0, 1]."""
    base = rng.uniform(0.2, 0.8, 3)
    grey = rng.random() < 0.3
    rgb = np.broadcast_to(base, (*fields[0].shape, 3)).copy()
    for field in fields:
        colour = rng.uniform(-1, 1, 3)
        if grey:
            colour[:] = colour[0]
        rgb += rng.uniform(0.05, 0.25) * field[..., None] * colour
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def noise_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Periodic coloured fractal noise, (size, size, 3)."""
    fields = [fractal_noise(rng, size, rng.uniform(0.8, 2.2)) for _ in range(rng.integers(1, 3))]
    return _colourise(rng, fields)


def spots_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Periodic field of soft spots (particles, cells) over smooth noise, (size, size, 3)."""
    count = int(rng.uniform(0.0005, 0.01) * size * size)
    field = np.zeros((size, size), np.float32)
    ys, xs = rng.integers(0, size, (2, count))
    np.add.at(field, (ys, xs), rng.uniform(0.5, 1.5, count).astype(np.float32))
    spots = gaussian_filter(field, rng.uniform(1.0, 4.0), mode="wrap")
    spots /= spots.std() + 1e-12
    return _colourise(rng, [spots, fractal_noise(rng, size, 2.0)])


def photo_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop of a bundled photograph at a random scale, mirrored to be periodic."""
    names = photo_names()
    if not names:
        return noise_texture(rng, size)
    img = load_photo(str(rng.choice(names)))
    half = size // 2
    scale = rng.uniform(0.5, 1.5)
    crop = min(int(half / scale), *img.shape[:2])
    y = int(rng.integers(0, img.shape[0] - crop + 1))
    x = int(rng.integers(0, img.shape[1] - crop + 1))
    patch = cv2.resize(img[y : y + crop, x : x + crop], (half, half), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        patch = patch.transpose(1, 0, 2)
    if rng.random() < 0.3:
        patch = 1.0 - patch
    top = np.concatenate([patch, patch[:, ::-1]], 1)  # mirror tiling: periodic and seamless
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], 0), np.float32)


KINDS = {"noise": noise_texture, "spots": spots_texture, "photo": photo_texture}


def random_texture(rng: np.random.Generator, size: int, photo_prob: float) -> np.ndarray:
    """One texture: a photograph with probability ``photo_prob``, else noise or spots."""
    if rng.random() < photo_prob:
        return photo_texture(rng, size)
    return (noise_texture if rng.random() < 0.7 else spots_texture)(rng, size)

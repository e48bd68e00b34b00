"""Appearance families of the synthetic vessel corpus: one look per clip.

The geometry and the ground truth of a clip (vessels, cells, flow, drift) do not depend on
its look; only how the scene becomes light does. Looks:

- ``brightfield``: transmitted white light; haemoglobin absorbs green and blue, so red cells
  are dark red on beige tissue (the original corpus, rendered by ``ClipRenderer`` itself).
- ``fluorescence``: intravital fluorescence with a dye in the plasma (dextran): the lumen
  glows in proportion to its depth, red cells exclude the dye and show as dark shadows,
  the tissue is dark with faint autofluorescence; one colour channel; photon (Poisson) noise.
- ``dark``: green-filtered videomicroscopy (OPS/SDF-like): monochrome green light that
  haemoglobin absorbs strongly, dark cells on a bright, low-contrast field, walls unseen.
- ``tracers``: sparse small particles (bright beads or dark specks) in the lumen over
  photographic tissue (scikit-image's bundled photographs; never the reserved ones).

One look is held out of every training corpus (``--looks all`` leaves it out) so that
fine-tuning on a look the shipped model never saw can be measured:

- ``dic``: differential interference contrast (Nomarski): the image is the derivative of
  the optical path along a shear direction, so cells, walls and tissue show as embossed
  relief (one side bright, the other dark) on a mid-grey field; no absorption contrast.

Every look but bright-field also draws a random colour (grey, green, red, or a tint),
contrast polarity, gain and cell density; quality (blur, noise, compression) comes from the
clip's quality tier as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

LOOKS = ("brightfield", "fluorescence", "dark", "tracers")  # the training looks ("all")
HELD_OUT_LOOKS = ("dic",)  # never in a training corpus of the shipped model
ALL_LOOKS = LOOKS + HELD_OUT_LOOKS
TINTS = {
    "grey": (1.0, 1.0, 1.0),
    "green": (0.15, 1.0, 0.25),
    "red": (1.0, 0.2, 0.35),
    "amber": (1.0, 0.8, 0.45),
}


@dataclass(frozen=True)
class Look:
    """One clip's appearance (saved with the clip's metadata)."""

    name: str = "brightfield"
    density: float = 1.0  # multiplies the cell count
    cell_scale: float = 1.0  # multiplies cell size (tracers are small)
    tint: str = "grey"
    invert: bool = False
    gain: float = 1.0
    photons: float = 0.0  # Poisson noise: photons at full scale (0: none)
    polarity: float = 1.0  # tracers: +1 bright beads, -1 dark specks
    shear: float = 0.0  # dic: the shear direction, radians from +x

    def describe(self) -> dict[str, object]:
        return asdict(self)


def draw_look(rng: np.random.Generator, names: tuple[str, ...]) -> Look:
    """A look from ``names``, with its random parameters."""
    name = str(names[int(rng.integers(len(names)))])
    if name == "brightfield":
        return Look(density=float(rng.uniform(0.3, 1.5)))
    tint = str(rng.choice(list(TINTS)))
    common = dict(invert=bool(rng.random() < 0.15), gain=float(rng.uniform(0.6, 1.1)))
    if name == "fluorescence":
        return Look(
            name,
            density=float(rng.uniform(0.2, 1.5)),
            tint=str(rng.choice(["grey", "green", "red"])),
            photons=float(np.exp(rng.uniform(np.log(20), np.log(400)))),
            **common,
        )
    if name == "dark":
        return Look(name, density=float(rng.uniform(0.4, 1.5)), tint=tint, **common)
    if name == "tracers":
        return Look(
            name,
            density=float(np.exp(rng.uniform(np.log(0.03), np.log(0.3)))),
            cell_scale=float(rng.uniform(0.25, 0.5)),
            tint=tint,
            polarity=float(rng.choice([-1.0, 1.0])),
            **common,
        )
    if name == "dic":
        return Look(
            name,
            density=float(rng.uniform(0.3, 1.5)),
            tint=str(rng.choice(["grey", "grey", "amber"])),
            gain=float(rng.uniform(0.7, 1.1)),
            shear=float(rng.uniform(0, 2 * np.pi)),
        )
    raise ValueError(f"unknown look {name!r}; choose from {ALL_LOOKS}")


@dataclass
class SceneParts:
    """The static scene, apart, on the world canvas (each (C, C) float)."""

    tissue: np.ndarray  # texture, about unit std
    wall: np.ndarray  # optical density of walls and their halo
    depth: np.ndarray  # lumen depth along the optical axis, 0..1 (0 outside)
    photo: np.ndarray | None = None  # tracers: photographic tissue, (C, C) grey in [0, 1]


def compose(look: Look, parts: SceneParts, rbc: np.ndarray, wbc: np.ndarray) -> np.ndarray:
    """Linear intensity of the world canvas, (C, C) in about [0, 1], before camera and optics.

    ``rbc`` / ``wbc``: optical density of red and white cells, (C, C)."""
    if look.name == "fluorescence":
        dye = 0.85 * (1 - np.exp(-2.5 * parts.depth)) / (1 - np.exp(-2.5))
        shadow = np.exp(-4.0 * rbc - 3.0 * wbc)
        auto = 0.06 + 0.025 * parts.tissue
        return np.clip(auto + dye * shadow - 0.3 * parts.wall, 0.0, None)
    if look.name == "dark":
        od = 0.25 + 0.05 * parts.tissue + 0.15 * parts.depth + 2.2 * rbc + 0.6 * wbc
        return np.exp(-od) + 0.1 * parts.wall
    if look.name == "tracers":
        base = 0.3 + 0.35 * parts.photo - 0.3 * parts.wall + 0.04 * parts.depth
        return np.clip(base + look.polarity * 1.5 * rbc, 0.0, None)
    if look.name == "dic":  # relief: the optical path's derivative along the shear
        path = 5.0 * rbc + 3.0 * wbc + 2.0 * parts.wall + 0.3 * parts.tissue + 0.5 * parts.depth
        gy, gx = np.gradient(cv2.GaussianBlur(path, (0, 0), 0.8))
        relief = np.cos(look.shear) * gx + np.sin(look.shear) * gy
        return np.clip(0.6 + 1.2 * relief, 0.0, None)
    raise ValueError(f"compose() renders the non-bright-field looks, not {look.name!r}")


def finish(look: Look, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-space (H, W) intensity -> (H, W, 3) RGB in [0, 1]: photons, polarity, colour."""
    img = np.clip(img * look.gain, 0.0, None)
    if look.photons > 0:
        img = rng.poisson(img * look.photons) / look.photons
    if look.invert:
        img = 1.0 - np.clip(img, 0.0, 1.0)
    return np.clip(img[..., None] * np.array(TINTS[look.tint]), 0.0, 1.0)


def photo_tissue(rng: np.random.Generator, size: int) -> np.ndarray:
    """Photographic tissue for the tracers look: a grey crop of a bundled photograph (never a
    reserved one) at a random scale, contrast-stretched, (size, size) in [0, 1]."""
    from flowvid.data.synth.textures import fractal_noise, load_photo, photo_names

    names = photo_names()
    if not names:
        grey = fractal_noise(rng, size, 1.8)
        return np.clip(0.5 + 0.2 * grey, 0.0, 1.0)
    img = cv2.cvtColor(load_photo(str(rng.choice(names))), cv2.COLOR_RGB2GRAY)
    side = min(int(size * rng.uniform(0.5, 1.5)), *img.shape)
    y = int(rng.integers(0, img.shape[0] - side + 1))
    x = int(rng.integers(0, img.shape[1] - side + 1))
    grey = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_LINEAR)
    lo, hi = np.percentile(grey, [2, 98])
    return np.clip((grey - lo) / max(hi - lo, 1e-3), 0.0, 1.0)

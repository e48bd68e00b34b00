"""The static scene of a synthetic clip on its world canvas: tissue texture, vessel walls
and plasma (bright-field), or the same apart for the other looks; and the illumination,
which lives in camera space."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from flowvid.data.synth.looks import SceneParts, photo_tissue
from flowvid.data.synth.vessels import Layout, Vessel

HB_ABSORPTION = np.array([0.18, 0.95, 1.0])  # R, G, B: haemoglobin absorbs green/blue
TISSUE_ABSORPTION = np.array([0.8, 0.95, 1.2])
GREY = np.array([1.0, 1.0, 1.0])


def tissue(rng: np.random.Generator, c: int) -> np.ndarray:
    """Multi-scale tissue texture: soft blobs, fibres and speckle, roughly in [-1, 1]."""
    tex = np.zeros((c, c))
    for sigma, weight in ((24, 1.0), (8, 0.6), (3, 0.35), (1, 0.15)):
        layer = gaussian_filter(rng.standard_normal((c, c)), sigma)
        tex += weight * layer / (layer.std() + 1e-9)
    fibres = gaussian_filter(rng.standard_normal((c, c)), (1.0, 6.0))
    angle = rng.uniform(0, 180)
    rot = cv2.getRotationMatrix2D((c / 2, c / 2), angle, 1.0)
    fibres = cv2.warpAffine(fibres, rot, (c, c), borderMode=cv2.BORDER_REFLECT)
    tex += rng.uniform(0.0, 0.8) * fibres / (fibres.std() + 1e-9)
    return tex / (tex.std() + 1e-9)


def brightfield_scene(
    rng: np.random.Generator, vessels: list[Vessel], layout: Layout, c: int
) -> np.ndarray:
    """Optical density of everything that does not move, (canvas, canvas, 3)."""
    texture = 0.12 + rng.uniform(0.03, 0.08) * tissue(rng, c)
    od = texture[..., None] * TISSUE_ABSORPTION
    od = od.reshape(c * c, 3)
    rings = wall_rings(vessels, layout)
    plasma = rng.uniform(0.02, 0.08)
    for i in layout.order:
        v, co = vessels[i], layout.coords[i]
        edge = np.abs(co.n) - v.radius  # < 0 inside the lumen
        ring = rings[i]
        od[co.index[ring]] += (wall_profile(v, edge)[ring])[:, None] * GREY
        inside = edge < 0
        base = od[co.index[inside]]
        od[co.index[inside]] = (
            0.6 * base
            + plasma * HB_ABSORPTION * (1 - (co.n[inside] / v.radius) ** 2)[:, None] ** 0.5
        )
    return od.reshape(c, c, 3)


def wall_rings(vessels: list[Vessel], layout: Layout) -> list[np.ndarray]:
    """Per vessel, which of its nearby pixels are wall (outside its own lumen and the
    lumens of its parent and branches)."""
    related = {i: {i} for i in range(len(vessels))}
    for i, v in enumerate(vessels):
        if v.parent is not None:
            related[i].add(v.parent)
            related[v.parent].add(i)
    lumen_sets = [
        set(co.index[np.abs(co.n) < v.radius].tolist())
        for co, v in zip(layout.coords, vessels, strict=True)
    ]
    return [
        (np.abs(co.n) - v.radius >= 0)
        & ~np.isin(co.index, list(set().union(*(lumen_sets[j] for j in related[i]))))
        for i, (co, v) in enumerate(zip(layout.coords, vessels, strict=True))
    ]


def wall_profile(v: Vessel, edge: np.ndarray) -> np.ndarray:
    """Optical density of a wall (dark ring) and its faint bright halo at distance ``edge``
    outside the lumen."""
    wall = 0.25 * np.exp(-(((edge - v.wall / 2) / (0.5 * v.wall + 0.3)) ** 2))
    halo = -0.06 * np.exp(-(((edge - v.wall - 1.0) / 1.2) ** 2))
    return wall + halo


def look_parts(
    rng: np.random.Generator, vessels: list[Vessel], layout: Layout, c: int, look: str
) -> SceneParts:
    """The static scene apart (tissue, walls, lumen depth) for the non-bright-field looks."""
    texture = tissue(rng, c)
    wall, depth = np.zeros(c * c), np.zeros(c * c)
    rings = wall_rings(vessels, layout)
    for i in layout.order:
        ring, v, co = rings[i], vessels[i], layout.coords[i]
        edge = np.abs(co.n) - v.radius
        wall[co.index[ring]] += wall_profile(v, edge)[ring]
        inside = edge < 0  # depth of the lumen along the optical axis: the chord 2 sqrt(r^2 - n^2)
        chord = 2 * np.sqrt(np.clip(v.radius**2 - co.n[inside] ** 2, 0, None)) / 30.0
        depth[co.index[inside]] = np.minimum(depth[co.index[inside]] + chord, 1.5)
    photo = photo_tissue(rng, c) if look == "tracers" else None
    return SceneParts(texture, wall.reshape(c, c), depth.reshape(c, c), photo)


def illumination(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uneven light and vignetting in camera space, times the lamp colour, (H, W, 3)."""
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n - 0.5
    gradient = 1.0 + rng.uniform(-0.15, 0.15) * x + rng.uniform(-0.15, 0.15) * y
    vignette = 1.0 - rng.uniform(0.1, 0.35) * (x**2 + y**2) / 0.5
    lamp = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.8, 0.95)])
    return (rng.uniform(0.85, 1.0) * gradient * vignette)[..., None] * lamp

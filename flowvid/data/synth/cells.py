"""Blood cells of a synthetic clip: red cells (single file in capillaries, many abreast in
wider vessels) and a few white cells rolling near the walls, carried along their
streamlines by each vessel's flow, and drawn as soft ellipses of optical density."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowvid.data.synth.vessels import Vessel

RBC_DIAMETER_UM = 7.5
WBC_DIAMETER_UM = 11.0


@dataclass
class Cells:
    """Cells of a clip, one row each; positions are (s0, n) in their vessel's coordinates."""

    vessel: np.ndarray  # (K,) int
    s0: np.ndarray  # arc length at frame 0, px
    n: np.ndarray  # offset from the centreline, px (constant: cells follow streamlines)
    a: np.ndarray  # semi-axis along the flow, px
    b: np.ndarray  # semi-axis across the flow, px
    tilt: np.ndarray  # orientation relative to the vessel, radians
    amp: np.ndarray  # peak optical density
    pallor: np.ndarray  # central pallor of a biconcave red cell (0 for white cells)
    white: np.ndarray  # (K,) bool


def make_cells(
    rng: np.random.Generator,
    vessels: list[Vessel],
    *,
    um_per_px: float,
    density: float,
    cell_scale: float,
    wbc_prob: float,
    contrast: float,
) -> Cells:
    """Every vessel's red cells, and white cells in vessels wide enough (``wbc_prob``).

    ``density`` scales the number of cells, ``cell_scale`` the red cells' size, ``contrast``
    their optical density.
    """
    rbc_r = RBC_DIAMETER_UM / 2 / um_per_px * rng.uniform(0.9, 1.1) * cell_scale
    wbc_r = WBC_DIAMETER_UM / 2 / um_per_px
    rows: list[dict[str, np.ndarray]] = []
    for i, v in enumerate(vessels):
        rows.append(_red_cells(rng, i, v, rbc_r, density, um_per_px))
        if v.radius > 0.9 * wbc_r and rng.random() < wbc_prob:
            rows.append(_white_cells(rng, i, v, wbc_r))
    merged = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]} if rows else {}
    if not merged:
        return Cells(*(np.zeros(0) for _ in range(8)), np.zeros(0, bool))
    merged["amp"] = merged["amp"] * contrast
    return Cells(**merged)


def _red_cells(
    rng: np.random.Generator, i: int, v: Vessel, rbc_r: float, density: float, um_per_px: float
) -> dict[str, np.ndarray]:
    """Red cells of vessel i: single file in capillaries, side by side in wider vessels."""
    length = v.s_hi - v.s_lo
    b_max = 0.8 * v.radius
    b = min(rbc_r, b_max)
    a = rbc_r**2 / b  # squeezed cells elongate along the capillary
    if b >= 0.75 * v.radius:  # single file
        mean_gap = rng.uniform(0.5, 3.0) * a / density
        gaps = 2 * a + rng.exponential(mean_gap, size=int(length / a) + 2)
        s0 = v.s_lo + rng.uniform(0, a) + np.cumsum(gaps)
        s0 = s0[s0 < v.s_hi]
        n = rng.normal(0, 0.05 * v.radius, s0.size).clip(-(v.radius - b), v.radius - b)
    else:  # many cells side by side, a thin cell-free layer at the wall
        free = min(rng.uniform(0.5, 2.0) / um_per_px, 0.3 * v.radius)
        half = max(v.radius - b - free, 0.0)
        count = int(
            density * rng.uniform(0.4, 1.2) * 2 * v.radius * length / (np.pi * a * b)
        )  # projected: cells overlap in depth
        s0 = rng.uniform(v.s_lo, v.s_hi, count)
        n = rng.uniform(-half, half, count)
    k = s0.size
    return dict(
        vessel=np.full(k, i),
        s0=s0,
        n=n,
        a=a * rng.uniform(0.9, 1.1, k),
        b=b * rng.uniform(0.85, 1.0, k),
        tilt=rng.normal(0, 0.3, k) if b < 0.75 * v.radius else np.zeros(k),
        amp=rng.uniform(0.35, 0.6) * rng.uniform(0.85, 1.15, k),
        pallor=rng.uniform(0.2, 0.6, k),
        white=np.zeros(k, bool),
    )


def _white_cells(
    rng: np.random.Generator, i: int, v: Vessel, wbc_r: float
) -> dict[str, np.ndarray]:
    """One or two white cells of vessel i, rolling near its wall (slow)."""
    k = int(rng.integers(1, 3))
    r = min(wbc_r, 0.9 * v.radius)
    n = rng.choice([-1.0, 1.0], k) * max(v.radius - 1.1 * r, 0.0)  # near the wall: slow
    return dict(
        vessel=np.full(k, i),
        s0=rng.uniform(v.s_lo, v.s_hi, k),
        n=n,
        a=np.full(k, r),
        b=np.full(k, r * 0.95),
        tilt=rng.uniform(0, np.pi, k),
        amp=np.full(k, rng.uniform(0.12, 0.2)),
        pallor=np.zeros(k),
        white=np.ones(k, bool),
    )


def positions(cells: Cells, vessels: list[Vessel], t: float) -> tuple[np.ndarray, np.ndarray]:
    """World (x, y) of every cell at frame time t, and its orientation (radians)."""
    xy = np.zeros((cells.s0.size, 2))
    angle = np.zeros(cells.s0.size)
    for i, v in enumerate(vessels):
        sel = cells.vessel == i
        s = cells.s0[sel] + v.travel(t) * v.profile(cells.n[sel])
        s = v.s_lo + np.mod(s - v.s_lo, v.s_hi - v.s_lo)
        xy[sel] = v.position(s, cells.n[sel])
        angle[sel] = v.tangent_angle(s) + cells.tilt[sel]
    return xy, angle


def optical_density(
    cells: Cells,
    vessels: list[Vessel],
    owner: np.ndarray,
    t: float,
    white: bool,
    exposure: float,
) -> np.ndarray:
    """Optical density of the red (or white) cells at frame time t, (canvas, canvas).

    ``owner`` (canvas * canvas,) says which vessel each pixel shows (a cell is drawn only
    where its own vessel is on top); ``exposure``, a fraction of a frame, streaks it.
    """
    c = int(round(np.sqrt(owner.size)))
    sel = cells.white == white
    if not sel.any():
        return np.zeros((c, c))
    steps = np.linspace(-0.5, 0.5, 5) * exposure if exposure else [0.0]
    od = np.zeros(c * c)
    half = int(np.ceil(max(cells.a[sel].max(), cells.b[sel].max()))) + 2
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    for dt in steps:
        xy, angle = positions(cells, vessels, t + dt)
        xy, angle = xy[sel], angle[sel]
        px = np.round(xy[:, 0])[:, None, None] + ox
        py = np.round(xy[:, 1])[:, None, None] + oy
        dx, dy = px - xy[:, 0, None, None], py - xy[:, 1, None, None]
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        along, across = dx * cos + dy * sin, -dx * sin + dy * cos
        a, b = cells.a[sel, None, None], cells.b[sel, None, None]
        rho = np.sqrt((along / a) ** 2 + (across / b) ** 2)
        body = 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * b / 0.45, -50, 50)))
        shade = 1.0 - cells.pallor[sel, None, None] * np.exp(-((rho / 0.5) ** 2))
        value = cells.amp[sel, None, None] * body * shade / len(steps)
        ok = (px >= 0) & (px < c) & (py >= 0) & (py < c)
        flat = (py * c + px)[ok].astype(np.int64)
        vessel = np.broadcast_to(cells.vessel[sel, None, None], ok.shape)[ok]
        ok_owner = owner[flat] == vessel
        od += np.bincount(flat[ok_owner], weights=value[ok][ok_owner], minlength=c * c)
    return od.reshape(c, c)

"""Vessel geometry for the synthetic corpus: centrelines, lumen coordinates, Poiseuille flow.

A vessel is a smooth centreline sampled every ``STEP`` px of arc length, with unit
tangents and normals. A point is addressed by (s, n): arc length along the centreline
and signed distance along the normal, so ``X(s, n) = c(s) + n * N(s)``. Blood at (s, n)
moves along its streamline to (s + ds(n), n) with the Poiseuille profile
``ds(n) = ds_centre * (1 - (n / r)**2)``; the ground-truth displacement of a pixel is
therefore ``X(s + ds(n), n) - X(s, n)`` (a chord, exact on curved vessels too), and a
cell drawn at (s, n) is drawn at exactly that point one frame later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

if TYPE_CHECKING:
    from flowvid.data.synth.synthetic import SynthConfig

STEP = 0.25  # px of arc length between centreline samples
MAX_BEND = 0.7  # curvature * (radius + wall + margin) stays below this: (s, n) never folds


@dataclass
class Vessel:
    """One vessel: its centreline, radius (px), wall, and pulsatile Poiseuille flow."""

    centre: np.ndarray  # (M, 2) x, y in px, sampled every STEP px of arc length
    normal: np.ndarray  # (M, 2) unit normals (tangent rotated +90 degrees)
    s: np.ndarray  # (M,) arc length of each sample, px
    s_lo: float  # the lumen and its cells live on s in [s_lo, s_hi]
    s_hi: float
    radius: float  # lumen radius, px
    wall: float  # wall thickness, px
    speed: float  # mean centreline speed, px/frame, signed: + flows toward growing s
    pulse_amp: float  # relative pulsatility, 0 <= amp < 1
    pulse_period: float  # frames per heartbeat
    pulse_phase: float  # radians
    parent: int | None = None  # index of the vessel this one branches from

    def position(self, s: np.ndarray, n: np.ndarray) -> np.ndarray:
        """X(s, n) = c(s) + n N(s), shape (..., 2), linear between samples."""
        out = np.empty((*np.shape(s), 2))
        for k in range(2):
            out[..., k] = np.interp(s, self.s, self.centre[:, k]) + n * np.interp(
                s, self.s, self.normal[:, k]
            )
        return out

    def tangent_angle(self, s: np.ndarray) -> np.ndarray:
        """Direction of the centreline at s, radians (x right, y down)."""
        nx, ny = (np.interp(s, self.s, self.normal[:, k]) for k in range(2))
        return np.arctan2(-nx, ny)  # tangent = (ny, -nx)

    def travel(self, t: np.ndarray | float) -> np.ndarray:
        """Signed centreline distance travelled from frame 0 to (fractional) frame t, px."""
        w = 2 * np.pi / self.pulse_period
        pulse = (
            self.pulse_amp
            / w
            * (np.cos(self.pulse_phase) - np.cos(w * np.asarray(t) + self.pulse_phase))
        )
        return self.speed * (np.asarray(t) + pulse)

    def profile(self, n: np.ndarray) -> np.ndarray:
        """Poiseuille factor 1 - (n/r)^2, zero at and beyond the wall."""
        return np.clip(1.0 - (n / self.radius) ** 2, 0.0, None)


def sample_centreline(
    points: np.ndarray, extend: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a dense polyline every STEP px of arc length, extended straight at both ends.

    Returns (centre (M,2), normal (M,2), s (M,)), with s = 0 at ``points[0]``.
    """
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(-extend, arc[-1] + extend + STEP, STEP)
    t0 = (points[1] - points[0]) / seg[0]
    t1 = (points[-1] - points[-2]) / seg[-1]
    centre = np.stack([np.interp(s, arc, points[:, k]) for k in range(2)], axis=1)
    before, after = s < 0, s > arc[-1]
    centre[before] = points[0] + s[before, None] * t0
    centre[after] = points[-1] + (s[after, None] - arc[-1]) * t1
    tangent = np.gradient(centre, STEP, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    return centre, normal, s


def max_curvature(normal: np.ndarray) -> float:
    return float(np.linalg.norm(np.gradient(normal, STEP, axis=0), axis=1).max())


def wiggly_path(
    rng: np.random.Generator, start: np.ndarray, end: np.ndarray, reach: float, pin_start: bool
) -> np.ndarray:
    """A dense polyline from ``start`` to ``end`` with gentle sinusoidal meanders.

    Each meander's amplitude keeps its curvature A (2 pi / wavelength)^2 below 1 / reach.
    With ``pin_start`` the meander fades in, so a branch leaves its parent straight.
    """
    length = float(np.linalg.norm(end - start))
    t = np.linspace(0.0, 1.0, max(int(length / STEP), 8))
    direction = (end - start) / length
    normal = np.array([-direction[1], direction[0]])
    offset = np.zeros_like(t)
    for _ in range(rng.integers(1, 3)):
        wavelength = rng.uniform(0.25, 1.5) * length
        k = 2 * np.pi / wavelength
        amp = min(rng.uniform(0.1, 0.45) / (reach * k**2), rng.uniform(0.0, 0.06) * length)
        offset += amp * np.sin(k * t * length + rng.uniform(0, 2 * np.pi))
    if pin_start:
        offset -= offset[0]
        offset *= np.clip(t * length / (3 * reach + 1e-9), 0, 1) ** 2
    return start + t[:, None] * (end - start) + offset[:, None] * normal


@dataclass
class LumenCoords:
    """Per-pixel vessel coordinates near one vessel (flat pixel indices into the canvas)."""

    index: np.ndarray  # (P,) flat indices of pixels within radius + wall + margin
    s: np.ndarray  # (P,) arc length of each pixel's foot point
    n: np.ndarray  # (P,) signed distance from the centreline


def lumen_coords(vessel: Vessel, height: int, width: int, margin: float) -> LumenCoords:
    """(s, n) for every canvas pixel within ``radius + wall + margin`` of the centreline."""
    keep = (vessel.s >= vessel.s_lo) & (vessel.s <= vessel.s_hi)
    centre, normal, s = vessel.centre[keep], vessel.normal[keep], vessel.s[keep]
    reach = vessel.radius + vessel.wall + margin
    lo = np.floor(centre.min(0) - reach).astype(int).clip(0)
    hi = np.ceil(centre.max(0) + reach).astype(int) + 1
    ys, xs = np.mgrid[lo[1] : min(hi[1], height), lo[0] : min(hi[0], width)]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    dist, k = cKDTree(centre).query(pts, distance_upper_bound=reach)
    near = np.isfinite(dist)
    pts, k = pts[near], k[near]
    d = pts - centre[k]
    tangent = np.stack([normal[k, 1], -normal[k, 0]], axis=1)
    s_px = s[k] + (d * tangent).sum(1)
    n_px = (d * normal[k]).sum(1)
    inside = (s_px >= vessel.s_lo) & (s_px <= vessel.s_hi)
    flat = pts[inside, 1].astype(np.int64) * width + pts[inside, 0].astype(np.int64)
    return LumenCoords(flat, s_px[inside], n_px[inside])


# ----------------------------------------------------------------------------- a clip's vessels


def _vessel_speed(
    rng: np.random.Generator, cfg: SynthConfig, radius: float
) -> tuple[float, float, float, float]:
    """Signed mean centreline speed (px/frame), pulsatility, period (frames) and phase."""
    lo, hi = np.log(cfg.speed_um_s[0]), np.log(cfg.speed_um_s[1])
    um_s = float(np.exp(rng.uniform(lo, hi)))
    amp = float(rng.uniform(0.05, 0.15 + 0.25 * min(radius / 20.0, 1.0)))
    speed = min(um_s / (cfg.um_per_px * cfg.fps), cfg.max_px_per_frame / (1 + amp))
    period = cfg.fps / rng.uniform(1.0, 8.0)  # heart rate 1-8 Hz (human to mouse)
    return speed * rng.choice([-1.0, 1.0]), amp, period, float(rng.uniform(0, 2 * np.pi))


def _new_vessel(
    rng: np.random.Generator,
    cfg: SynthConfig,
    points: np.ndarray,
    radius: float,
    parent: int | None,
) -> Vessel | None:
    """A vessel along ``points``, or None where it would bend too sharply for its width."""
    extend = 2 * cfg.max_px_per_frame + 8
    centre, normal, s = sample_centreline(points, extend)
    wall = float(rng.uniform(1.0, 1.5 + 0.1 * radius))
    if max_curvature(normal) * (radius + wall + 3) > MAX_BEND:
        return None
    speed, amp, period, phase = _vessel_speed(rng, cfg, radius)
    s_hi = float(s[-1] - extend)
    return Vessel(centre, normal, s, 0.0, s_hi, radius, wall, speed, amp, period, phase, parent)


def _crosses_view(vessel: Vessel, size: int, pad: int) -> bool:
    lo, hi = pad + 0.1 * size, pad + 0.9 * size
    return bool(np.any(np.all((vessel.centre > lo) & (vessel.centre < hi), axis=1)))


def _main_path(
    rng: np.random.Generator, cfg: SynthConfig, canvas: int, radius: float
) -> np.ndarray:
    """A path right across the canvas, through a point near its middle."""
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    perp = np.array([-direction[1], direction[0]])
    mid = np.full(2, canvas / 2) + rng.uniform(-0.35, 0.35) * cfg.size * perp
    half = 0.75 * canvas + radius + 2 * cfg.max_px_per_frame + 30
    reach = radius + 6 if cfg.meander else 1e9
    return wiggly_path(rng, mid - half * direction, mid + half * direction, reach, False)


def _branch_path(
    rng: np.random.Generator, cfg: SynthConfig, canvas: int, parent: Vessel, radius: float
) -> np.ndarray | None:
    """A path leaving ``parent`` at an angle from a point well inside the canvas."""
    c = canvas
    inside = np.all((parent.centre > 0.2 * c) & (parent.centre < 0.8 * c), axis=1)
    inside &= (parent.s > parent.s_lo) & (parent.s < parent.s_hi)
    if not inside.any():
        return None
    k = rng.choice(np.flatnonzero(inside))
    angle = parent.tangent_angle(parent.s[k]) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3)
    direction = np.array([np.cos(angle), np.sin(angle)])
    start = parent.centre[k]
    reach = radius + 6 if cfg.meander else 1e9
    return wiggly_path(rng, start, start + 1.5 * c * direction, reach, True)


def make_vessels(rng: np.random.Generator, cfg: SynthConfig, canvas: int, pad: int) -> list[Vessel]:
    """Main vessels that cross the view, then branches (each slower than its parent)."""
    vessels: list[Vessel] = []
    for _ in range(int(rng.integers(cfg.vessels[0], cfg.vessels[1] + 1))):
        radius = float(np.exp(rng.uniform(*np.log(cfg.diameter_px)))) / 2
        for _try in range(20):
            vessel = _new_vessel(rng, cfg, _main_path(rng, cfg, canvas, radius), radius, None)
            if vessel is not None and _crosses_view(vessel, cfg.size, pad):
                vessels.append(vessel)
                break
    for j, parent in enumerate(list(vessels)):
        if parent.radius < 4 or rng.random() >= cfg.branch_prob:
            continue
        radius = max(cfg.diameter_px[0] / 2, parent.radius * rng.uniform(0.5, 0.85))
        path = _branch_path(rng, cfg, canvas, parent, radius)
        child = None if path is None else _new_vessel(rng, cfg, path, radius, j)
        if child is not None:
            child.speed = np.sign(rng.standard_normal()) * abs(parent.speed) * rng.uniform(0.5, 1)
            vessels.append(child)
    return vessels


@dataclass
class Layout:
    """Where each vessel is drawn on the canvas: ``owner`` of each pixel (-1: none; a
    branch lies beneath its parent), each vessel's (s, n) coordinates, and its lumen."""

    order: list[int]  # bottom to top
    coords: list[LumenCoords]
    owner: np.ndarray  # (canvas * canvas,) int32
    lumen: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # index, s, n, X(s, n)


def _draw_order(rng: np.random.Generator, vessels: list[Vessel]) -> list[int]:
    """Bottom to top: every branch just beneath its parent, main vessels in random order."""
    mains = [i for i, v in enumerate(vessels) if v.parent is None]
    rng.shuffle(mains)
    order: list[int] = []
    for m in mains:
        order += [i for i, v in enumerate(vessels) if v.parent == m] + [m]
    return order


def make_layout(rng: np.random.Generator, vessels: list[Vessel], canvas: int) -> Layout:
    c = canvas
    order = _draw_order(rng, vessels)
    coords = [lumen_coords(v, c, c, margin=3.0) for v in vessels]
    owner = np.full(c * c, -1, np.int32)
    for i in order:  # later (higher) vessels overwrite: they are on top
        co, v = coords[i], vessels[i]
        owner[co.index[np.abs(co.n) < v.radius]] = i
    lumen = []  # per vessel: flat indices it owns, their (s, n) and X(s, n)
    for i, v in enumerate(vessels):
        co = coords[i]
        own = owner[co.index] == i
        s, n = co.s[own], co.n[own]
        lumen.append((co.index[own], s, n, v.position(s, n)))
    return Layout(order, coords, owner, lumen)

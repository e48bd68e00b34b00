"""Procedural bright-field microscopy of blood vessels, with exact ground-truth flow.

Each clip is a static scene (tissue texture, vessel walls, plasma) on a world canvas,
red cells (and a few white cells near the walls) advected through each vessel's lumen
by a pulsatile Poiseuille profile, and a camera that may drift slowly over the scene.
The ground truth is the blood velocity field: defined everywhere in the lumen, zero
outside (plus the camera drift, which moves everything), in px/frame, with flow[i]
moving frame i to frame i+1. Optics and sensor (illumination, vignetting, defocus,
noise, flicker, compression) set the clip's quality.

Speeds are physical: a speed in um/s, the pixel size (um/px) and the frame rate give
px/frame. :class:`ClipRenderer` renders one clip frame by frame (memory constant in its
length); :mod:`flowvid.data.corpus` writes many of them in the dataset layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from flowvid.data.looks import LOOKS, Look, SceneParts, compose, draw_look, finish, photo_tissue
from flowvid.data.vessels import (
    MAX_BEND,
    Vessel,
    lumen_coords,
    max_curvature,
    sample_centreline,
    wiggly_path,
)

RBC_DIAMETER_UM = 7.5
WBC_DIAMETER_UM = 11.0
HB_ABSORPTION = np.array([0.18, 0.95, 1.0])  # R, G, B: haemoglobin absorbs green/blue
TISSUE_ABSORPTION = np.array([0.8, 0.95, 1.2])
GREY = np.array([1.0, 1.0, 1.0])

QUALITY = {  # blur sigma px, read noise, flicker, x264 crf, cell contrast factor
    "clean": dict(blur=(0.0, 0.0), noise=(0.0, 0.0), flicker=0.0, crf=0, contrast=1.0),
    "good": dict(blur=(0.0, 0.6), noise=(0.004, 0.012), flicker=0.005, crf=17, contrast=1.0),
    "fair": dict(blur=(0.6, 1.2), noise=(0.012, 0.03), flicker=0.015, crf=23, contrast=0.8),
    "poor": dict(blur=(1.2, 2.2), noise=(0.025, 0.045), flicker=0.04, crf=30, contrast=0.6),
}
QUALITY_MIX = {"good": 0.4, "fair": 0.35, "poor": 0.25}


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator, with its default, in one place."""

    size: int = 256  # frame side, px
    frames: int = 120
    fps: float = 100.0
    um_per_px: float = 0.8
    speed_um_s: tuple[float, float] = (20.0, 1600.0)  # mean centreline speed, log-uniform
    max_px_per_frame: float = 20.0  # peak speed cap (pulsatility included)
    vessels: tuple[int, int] = (1, 4)
    diameter_px: tuple[float, float] = (6.0, 40.0)
    branch_prob: float = 0.4
    drift_prob: float = 0.5
    meander: bool = True
    quality: str = "mixed"  # "mixed" or one of QUALITY
    exposure: tuple[float, float] = (0.0, 0.4)  # fraction of a frame: motion streaks
    wbc_prob: float = 0.5
    cell_density: float = 1.0  # scales the number of cells per vessel
    looks: tuple[str, ...] = ("brightfield",)  # appearance families, one drawn per clip

    def __post_init__(self) -> None:
        unknown = set(self.looks) - set(LOOKS)
        if not self.looks or unknown:
            raise ValueError(f"looks must be a non-empty subset of {LOOKS}, not {self.looks}")
        if self.quality != "mixed" and self.quality not in QUALITY:
            raise ValueError(f"quality must be 'mixed' or one of {sorted(QUALITY)}")
        if self.size < 16 or self.frames < 2 or self.fps <= 0 or self.um_per_px <= 0:
            raise ValueError("size >= 16, frames >= 2, positive fps and um_per_px are needed")


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


@dataclass
class ClipParams:
    """What was drawn for one clip (saved in dataset.yaml as the clip's metadata)."""

    quality: str
    blur: float
    noise: float
    flicker: float
    crf: int
    exposure: float
    drift_px: list[float] = field(default_factory=lambda: [0.0, 0.0])
    vessel_diameters_px: list[float] = field(default_factory=list)
    vessel_speeds_px_per_frame: list[float] = field(default_factory=list)
    peak_px_per_frame: float = 0.0


class ClipRenderer:
    """Render one synthetic clip, frame by frame, from a config and a random generator."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        # bright-field alone draws nothing: its clips are the same as before looks existed.
        # Otherwise the look takes one draw (its own generator): for a seed, every look shows
        # the same scene and the same ground truth.
        self.look = (
            Look()
            if tuple(cfg.looks) == ("brightfield",)
            else draw_look(np.random.default_rng(rng.integers(2**63)), cfg.looks)
        )
        self.params = self._draw_quality()
        self._make_camera()
        self.vessels = self._make_vessels()
        self._make_geometry()
        self.cells = self._make_cells()
        if self.look.name == "brightfield":
            self._static_od = self._make_static_scene()
        else:
            self._parts = self._make_parts()
        self._illumination = self._make_illumination()
        self._gains = 1.0 + self.params.flicker * rng.standard_normal(cfg.frames)
        self.params.vessel_diameters_px = [round(2 * v.radius, 2) for v in self.vessels]
        self.params.vessel_speeds_px_per_frame = [round(abs(v.speed), 3) for v in self.vessels]
        self.params.peak_px_per_frame = round(
            max((abs(v.speed) * (1 + v.pulse_amp) for v in self.vessels), default=0.0), 3
        )

    # ------------------------------------------------------------------ drawing the clip

    def _draw_quality(self) -> ClipParams:
        cfg, rng = self.cfg, self.rng
        name = cfg.quality
        if name == "mixed":
            name = str(rng.choice(list(QUALITY_MIX), p=list(QUALITY_MIX.values())))
        q = QUALITY[name]
        return ClipParams(
            quality=name,
            blur=float(rng.uniform(*q["blur"])),
            noise=float(rng.uniform(*q["noise"])),
            flicker=float(q["flicker"]),
            crf=int(q["crf"]),
            exposure=float(rng.uniform(*cfg.exposure)),
        )

    def _make_camera(self) -> None:
        cfg, rng = self.cfg, self.rng
        total = rng.uniform(2.0, 0.12 * cfg.size) if rng.random() < cfg.drift_prob else 0.0
        angle = rng.uniform(0, 2 * np.pi)
        self._drift_dir = np.array([np.cos(angle), np.sin(angle)])
        self._drift_total = float(total)
        self._wobble = (float(rng.uniform(0, 1.0)) if total else 0.0, rng.uniform(0, 2 * np.pi))
        self.pad = int(np.ceil(total + self._wobble[0] * 2)) + 2 if total else 0
        self.canvas = cfg.size + 2 * self.pad
        self.params.drift_px = [round(float(x), 3) for x in self._drift_dir * total]

    def drift(self, t: float) -> np.ndarray:
        """Camera offset at frame t, px: content seen at p in frame 0 is at p + d(t) - d(0)."""
        if not self._drift_total:
            return np.zeros(2)
        frac = t / max(self.cfg.frames - 1, 1)
        amp, phase = self._wobble
        perp = np.array([-self._drift_dir[1], self._drift_dir[0]])
        wobble = amp * (np.sin(2 * np.pi * frac * 1.5 + phase) - np.sin(phase))
        return self._drift_total * frac * self._drift_dir + wobble * perp

    def _vessel_speed(self, radius: float) -> tuple[float, float, float, float]:
        cfg, rng = self.cfg, self.rng
        lo, hi = np.log(cfg.speed_um_s[0]), np.log(cfg.speed_um_s[1])
        um_s = float(np.exp(rng.uniform(lo, hi)))
        amp = float(rng.uniform(0.05, 0.15 + 0.25 * min(radius / 20.0, 1.0)))
        speed = min(um_s / (cfg.um_per_px * cfg.fps), cfg.max_px_per_frame / (1 + amp))
        period = cfg.fps / rng.uniform(1.0, 8.0)  # heart rate 1-8 Hz (human to mouse)
        return speed * rng.choice([-1.0, 1.0]), amp, period, float(rng.uniform(0, 2 * np.pi))

    def _new_vessel(self, points: np.ndarray, radius: float, parent: int | None) -> Vessel | None:
        extend = 2 * self.cfg.max_px_per_frame + 8
        centre, normal, s = sample_centreline(points, extend)
        wall = float(self.rng.uniform(1.0, 1.5 + 0.1 * radius))
        if max_curvature(normal) * (radius + wall + 3) > MAX_BEND:
            return None
        speed, amp, period, phase = self._vessel_speed(radius)
        s_hi = float(s[-1] - extend)
        return Vessel(centre, normal, s, 0.0, s_hi, radius, wall, speed, amp, period, phase, parent)

    def _crosses_view(self, vessel: Vessel) -> bool:
        lo, hi = self.pad + 0.1 * self.cfg.size, self.pad + 0.9 * self.cfg.size
        return bool(np.any(np.all((vessel.centre > lo) & (vessel.centre < hi), axis=1)))

    def _main_path(self, radius: float) -> np.ndarray:
        c, rng = self.canvas, self.rng
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        perp = np.array([-direction[1], direction[0]])
        mid = np.full(2, c / 2) + rng.uniform(-0.35, 0.35) * self.cfg.size * perp
        half = 0.75 * c + radius + 2 * self.cfg.max_px_per_frame + 30
        reach = radius + 6 if self.cfg.meander else 1e9
        return wiggly_path(rng, mid - half * direction, mid + half * direction, reach, False)

    def _branch_path(self, parent: Vessel, radius: float) -> np.ndarray | None:
        c, rng = self.canvas, self.rng
        inside = np.all((parent.centre > 0.2 * c) & (parent.centre < 0.8 * c), axis=1)
        inside &= (parent.s > parent.s_lo) & (parent.s < parent.s_hi)
        if not inside.any():
            return None
        k = rng.choice(np.flatnonzero(inside))
        angle = parent.tangent_angle(parent.s[k]) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3)
        direction = np.array([np.cos(angle), np.sin(angle)])
        start = parent.centre[k]
        reach = radius + 6 if self.cfg.meander else 1e9
        return wiggly_path(rng, start, start + 1.5 * c * direction, reach, True)

    def _make_vessels(self) -> list[Vessel]:
        cfg, rng = self.cfg, self.rng
        vessels: list[Vessel] = []
        for _ in range(int(rng.integers(cfg.vessels[0], cfg.vessels[1] + 1))):
            radius = float(np.exp(rng.uniform(*np.log(cfg.diameter_px)))) / 2
            for _try in range(20):
                vessel = self._new_vessel(self._main_path(radius), radius, None)
                if vessel is not None and self._crosses_view(vessel):
                    vessels.append(vessel)
                    break
        for j, parent in enumerate(list(vessels)):
            if parent.radius < 4 or rng.random() >= cfg.branch_prob:
                continue
            radius = max(cfg.diameter_px[0] / 2, parent.radius * rng.uniform(0.5, 0.85))
            path = self._branch_path(parent, radius)
            child = None if path is None else self._new_vessel(path, radius, j)
            if child is not None:
                child.speed = (
                    np.sign(rng.standard_normal()) * abs(parent.speed) * rng.uniform(0.5, 1)
                )
                vessels.append(child)
        return vessels

    # ------------------------------------------------------------------ geometry

    def _draw_order(self) -> list[int]:
        """Bottom to top: every branch just beneath its parent, main vessels in random order."""
        mains = [i for i, v in enumerate(self.vessels) if v.parent is None]
        self.rng.shuffle(mains)
        order: list[int] = []
        for m in mains:
            order += [i for i, v in enumerate(self.vessels) if v.parent == m] + [m]
        return order

    def _make_geometry(self) -> None:
        c = self.canvas
        self.order = self._draw_order()
        self.coords = [lumen_coords(v, c, c, margin=3.0) for v in self.vessels]
        owner = np.full(c * c, -1, np.int32)
        for i in self.order:  # later (higher) vessels overwrite: they are on top
            co, v = self.coords[i], self.vessels[i]
            owner[co.index[np.abs(co.n) < v.radius]] = i
        self.owner = owner
        self._lumen = []  # per vessel: flat indices it owns, their (s, n) and X(s, n)
        for i, v in enumerate(self.vessels):
            co = self.coords[i]
            own = owner[co.index] == i
            s, n = co.s[own], co.n[own]
            self._lumen.append((co.index[own], s, n, v.position(s, n)))

    # ------------------------------------------------------------------ cells

    def _make_cells(self) -> Cells:
        cfg, rng = self.cfg, self.rng
        rbc_r = RBC_DIAMETER_UM / 2 / cfg.um_per_px * rng.uniform(0.9, 1.1) * self.look.cell_scale
        wbc_r = WBC_DIAMETER_UM / 2 / cfg.um_per_px
        rows: list[dict[str, np.ndarray]] = []
        for i, v in enumerate(self.vessels):
            rows.append(self._red_cells(i, v, rbc_r))
            if v.radius > 0.9 * wbc_r and rng.random() < cfg.wbc_prob:
                rows.append(self._white_cells(i, v, wbc_r))
        merged = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]} if rows else {}
        if not merged:
            return Cells(*(np.zeros(0) for _ in range(8)), np.zeros(0, bool))
        contrast = QUALITY[self.params.quality]["contrast"]
        merged["amp"] = merged["amp"] * contrast
        return Cells(**merged)

    def _red_cells(self, i: int, v: Vessel, rbc_r: float) -> dict[str, np.ndarray]:
        rng = self.rng
        length = v.s_hi - v.s_lo
        b_max = 0.8 * v.radius
        b = min(rbc_r, b_max)
        a = rbc_r**2 / b  # squeezed cells elongate along the capillary
        if b >= 0.75 * v.radius:  # single file
            mean_gap = rng.uniform(0.5, 3.0) * a / (self.cfg.cell_density * self.look.density)
            gaps = 2 * a + rng.exponential(mean_gap, size=int(length / a) + 2)
            s0 = v.s_lo + rng.uniform(0, a) + np.cumsum(gaps)
            s0 = s0[s0 < v.s_hi]
            n = rng.normal(0, 0.05 * v.radius, s0.size).clip(-(v.radius - b), v.radius - b)
        else:  # many cells side by side, a thin cell-free layer at the wall
            free = min(rng.uniform(0.5, 2.0) / self.cfg.um_per_px, 0.3 * v.radius)
            half = max(v.radius - b - free, 0.0)
            count = int(
                self.cfg.cell_density
                * self.look.density
                * rng.uniform(0.4, 1.2)
                * 2
                * v.radius
                * length
                / (np.pi * a * b)
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

    def _white_cells(self, i: int, v: Vessel, wbc_r: float) -> dict[str, np.ndarray]:
        rng = self.rng
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

    def cell_positions(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of every cell at frame time t, and its orientation (radians)."""
        cells = self.cells
        xy = np.zeros((cells.s0.size, 2))
        angle = np.zeros(cells.s0.size)
        for i, v in enumerate(self.vessels):
            sel = cells.vessel == i
            s = cells.s0[sel] + v.travel(t) * v.profile(cells.n[sel])
            s = v.s_lo + np.mod(s - v.s_lo, v.s_hi - v.s_lo)
            xy[sel] = v.position(s, cells.n[sel])
            angle[sel] = v.tangent_angle(s) + cells.tilt[sel]
        return xy, angle

    def _splat(self, t: float, white: bool) -> np.ndarray:
        """Optical density of the red (or white) cells at frame time t, (canvas, canvas)."""
        c, cells = self.canvas, self.cells
        sel = cells.white == white
        if not sel.any():
            return np.zeros((c, c))
        steps = np.linspace(-0.5, 0.5, 5) * self.params.exposure if self.params.exposure else [0.0]
        od = np.zeros(c * c)
        half = int(np.ceil(max(cells.a[sel].max(), cells.b[sel].max()))) + 2
        oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
        for dt in steps:
            xy, angle = self.cell_positions(t + dt)
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
            ok_owner = self.owner[flat] == vessel
            od += np.bincount(flat[ok_owner], weights=value[ok][ok_owner], minlength=c * c)
        return od.reshape(c, c)

    # ------------------------------------------------------------------ static scene

    def _tissue(self) -> np.ndarray:
        """Multi-scale tissue texture: soft blobs, fibres and speckle, roughly in [-1, 1]."""
        c, rng = self.canvas, self.rng
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

    def _make_static_scene(self) -> np.ndarray:
        """Optical density of everything that does not move, (canvas, canvas, 3)."""
        c, rng = self.canvas, self.rng
        tissue = 0.12 + rng.uniform(0.03, 0.08) * self._tissue()
        od = tissue[..., None] * TISSUE_ABSORPTION
        od = od.reshape(c * c, 3)
        rings = self._rings()
        plasma = rng.uniform(0.02, 0.08)
        for i in self.order:
            v, co = self.vessels[i], self.coords[i]
            edge = np.abs(co.n) - v.radius  # < 0 inside the lumen
            ring = rings[i]
            od[co.index[ring]] += (self._wall_profile(v, edge)[ring])[:, None] * GREY
            inside = edge < 0
            base = od[co.index[inside]]
            od[co.index[inside]] = (
                0.6 * base
                + plasma * HB_ABSORPTION * (1 - (co.n[inside] / v.radius) ** 2)[:, None] ** 0.5
            )
        return od.reshape(c, c, 3)

    def _rings(self) -> list[np.ndarray]:
        """Per vessel, which of its nearby pixels are wall (outside its own lumen and the
        lumens of its parent and branches)."""
        related = {i: {i} for i in range(len(self.vessels))}
        for i, v in enumerate(self.vessels):
            if v.parent is not None:
                related[i].add(v.parent)
                related[v.parent].add(i)
        lumen_sets = [
            set(co.index[np.abs(co.n) < v.radius].tolist())
            for co, v in zip(self.coords, self.vessels, strict=True)
        ]
        return [
            (np.abs(co.n) - v.radius >= 0)
            & ~np.isin(co.index, list(set().union(*(lumen_sets[j] for j in related[i]))))
            for i, (co, v) in enumerate(zip(self.coords, self.vessels, strict=True))
        ]

    @staticmethod
    def _wall_profile(v: Vessel, edge: np.ndarray) -> np.ndarray:
        """Optical density of a wall (dark ring) and its faint bright halo at distance ``edge``
        outside the lumen."""
        wall = 0.25 * np.exp(-(((edge - v.wall / 2) / (0.5 * v.wall + 0.3)) ** 2))
        halo = -0.06 * np.exp(-(((edge - v.wall - 1.0) / 1.2) ** 2))
        return wall + halo

    def _make_parts(self) -> SceneParts:
        """The static scene apart (tissue, walls, lumen depth) for the non-bright-field looks."""
        c = self.canvas
        tissue = self._tissue()
        wall, depth = np.zeros(c * c), np.zeros(c * c)
        for i, ring in zip(self.order, (self._rings()[i] for i in self.order), strict=True):
            v, co = self.vessels[i], self.coords[i]
            edge = np.abs(co.n) - v.radius
            wall[co.index[ring]] += self._wall_profile(v, edge)[ring]
            inside = (
                edge < 0
            )  # depth of the lumen along the optical axis: the chord 2 sqrt(r^2 - n^2)
            chord = 2 * np.sqrt(np.clip(v.radius**2 - co.n[inside] ** 2, 0, None)) / 30.0
            depth[co.index[inside]] = np.minimum(depth[co.index[inside]] + chord, 1.5)
        photo = photo_tissue(self.rng, c) if self.look.name == "tracers" else None
        return SceneParts(tissue, wall.reshape(c, c), depth.reshape(c, c), photo)

    def _make_illumination(self) -> np.ndarray:
        """Uneven light and vignetting in camera space, times the lamp colour, (H, W, 3)."""
        n, rng = self.cfg.size, self.rng
        y, x = (np.mgrid[0:n, 0:n] + 0.5) / n - 0.5
        gradient = 1.0 + rng.uniform(-0.15, 0.15) * x + rng.uniform(-0.15, 0.15) * y
        vignette = 1.0 - rng.uniform(0.1, 0.35) * (x**2 + y**2) / 0.5
        lamp = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.8, 0.95)])
        return (rng.uniform(0.85, 1.0) * gradient * vignette)[..., None] * lamp

    # ------------------------------------------------------------------ per frame

    def _camera_maps(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Where camera pixel p looks in the world at frame t: p + pad - d(t)."""
        n = self.cfg.size
        y, x = np.mgrid[0:n, 0:n].astype(np.float32)
        d = self.drift(t)
        return x + np.float32(self.pad - d[0]), y + np.float32(self.pad - d[1])

    def _to_camera(self, world: np.ndarray, t: float, interpolation: int) -> np.ndarray:
        if not self.pad:
            return world
        mx, my = self._camera_maps(t)
        return cv2.remap(
            world.astype(np.float32), mx, my, interpolation, borderMode=cv2.BORDER_REFLECT
        )

    def frame(self, i: int, cells: bool = True) -> np.ndarray:
        """Frame i as (H, W, 3) uint8 RGB; ``cells=False`` renders the empty vessels."""
        if self.look.name != "brightfield":
            return self._frame_look(i, cells)
        od = self._static_od.copy()
        if cells:
            od += self._splat(i, white=False)[..., None] * HB_ABSORPTION
            od += self._splat(i, white=True)[..., None] * GREY
        light = self._to_camera(np.exp(-od), i, cv2.INTER_CUBIC)
        img = light * self._illumination * self._gains[i]
        p = self.params
        if p.blur > 0:
            img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), p.blur)
        if p.noise > 0:  # read noise plus shot noise that grows with the signal
            sigma = np.sqrt(p.noise**2 + 0.5 * p.noise * np.clip(img, 0, None))
            img = img + sigma * self.rng.standard_normal(img.shape)
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _frame_look(self, i: int, cells: bool) -> np.ndarray:
        """Frame i in a non-bright-field look (:mod:`flowvid.data.looks`)."""
        c = self.canvas
        rbc = self._splat(i, white=False) if cells else np.zeros((c, c))
        wbc = self._splat(i, white=True) if cells else np.zeros((c, c))
        world = compose(self.look, self._parts, rbc, wbc)
        img = self._to_camera(world, i, cv2.INTER_CUBIC)
        img = img * self._illumination.mean(-1) * self._gains[i]
        p = self.params
        if p.blur > 0:
            img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), p.blur)
        if p.noise > 0:
            img = img + p.noise * self.rng.standard_normal(img.shape)
        img = finish(self.look, img, self.rng)
        return (img * 255.0 + 0.5).astype(np.uint8)

    def world_flow(self, i: int) -> np.ndarray:
        """Blood displacement from frame i to i+1 on the world canvas, (canvas, canvas, 2)."""
        c = self.canvas
        flow = np.zeros((c * c, 2))
        for v, (index, s, n, x0) in zip(self.vessels, self._lumen, strict=True):
            ds = (v.travel(i + 1) - v.travel(i)) * v.profile(n)
            flow[index] = v.position(s + ds, n) - x0
        return flow.reshape(c, c, 2)

    def flow(self, i: int) -> np.ndarray:
        """Ground truth flow[i] (frame i -> i+1), (H, W, 2) float32 px/frame, u right, v down."""
        if not self.pad:
            return self.world_flow(i).astype(np.float32)
        step = (self.drift(i + 1) - self.drift(i)).astype(np.float32)
        flow = self._to_camera(self.world_flow(i), i, cv2.INTER_LINEAR)
        return np.where(self.mask(i)[..., None], flow, 0.0).astype(np.float32) + step

    def mask(self, i: int) -> np.ndarray:
        """Vessel lumen at frame i, (H, W) bool: where the blood flow is defined."""
        c = self.canvas
        lumen = (self.owner >= 0).reshape(c, c)
        if not self.pad:
            return lumen
        return self._to_camera(lumen.astype(np.float32), i, cv2.INTER_LINEAR) > 0.5

    @property
    def static_mask(self) -> bool:
        """True when the vessels do not move in the frame (no camera drift)."""
        return self.pad == 0

    def describe(self) -> dict[str, object]:
        return {**asdict(self.params), "look": self.look.describe()}

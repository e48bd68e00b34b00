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
length); :mod:`flowvid.data.synth.corpus` writes many of them in the dataset layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from flowvid.data.synth.camera import Camera
from flowvid.data.synth.cells import make_cells, optical_density, positions
from flowvid.data.synth.looks import ALL_LOOKS, Look, compose, draw_look, finish
from flowvid.data.synth.scene import (
    GREY,
    HB_ABSORPTION,
    brightfield_scene,
    illumination,
    look_parts,
)
from flowvid.data.synth.vessels import make_layout, make_vessels

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
        unknown = set(self.looks) - set(ALL_LOOKS)
        if not self.looks or unknown:
            raise ValueError(f"looks must be a non-empty subset of {ALL_LOOKS}, not {self.looks}")
        if self.quality != "mixed" and self.quality not in QUALITY:
            raise ValueError(f"quality must be 'mixed' or one of {sorted(QUALITY)}")
        if self.size < 16 or self.frames < 2 or self.fps <= 0 or self.um_per_px <= 0:
            raise ValueError("size >= 16, frames >= 2, positive fps and um_per_px are needed")


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
    """Render one synthetic clip, frame by frame, from a config and a random generator.

    Everything drawn at random is drawn here, in this order (a seed gives one clip): the
    look, the quality, the camera, the vessels and their layout, the cells, the static
    scene, the illumination and the lamp flicker. Frames, flow and masks are then pure
    functions of the frame index (bar the sensor noise).
    """

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
        self.params = draw_quality(rng, cfg)
        self.camera = Camera.draw(rng, cfg.size, cfg.frames, cfg.drift_prob)
        self.canvas = c = self.camera.canvas
        self.vessels = make_vessels(rng, cfg, c, self.camera.pad)
        self.layout = make_layout(rng, self.vessels, c)
        self.cells = make_cells(
            rng,
            self.vessels,
            um_per_px=cfg.um_per_px,
            density=cfg.cell_density * self.look.density,
            cell_scale=self.look.cell_scale,
            wbc_prob=cfg.wbc_prob,
            contrast=QUALITY[self.params.quality]["contrast"],
        )
        if self.look.name == "brightfield":
            self._static_od = brightfield_scene(rng, self.vessels, self.layout, c)
        else:
            self._parts = look_parts(rng, self.vessels, self.layout, c, self.look.name)
        self._illumination = illumination(rng, cfg.size)
        self._gains = 1.0 + self.params.flicker * rng.standard_normal(cfg.frames)
        self.params.drift_px = self.camera.drift_px
        self.params.vessel_diameters_px = [round(2 * v.radius, 2) for v in self.vessels]
        self.params.vessel_speeds_px_per_frame = [round(abs(v.speed), 3) for v in self.vessels]
        self.params.peak_px_per_frame = round(
            max((abs(v.speed) * (1 + v.pulse_amp) for v in self.vessels), default=0.0), 3
        )

    @property
    def owner(self) -> np.ndarray:
        """Which vessel each world pixel shows, (canvas * canvas,) int32, -1 for none."""
        return self.layout.owner

    def drift(self, t: float) -> np.ndarray:
        return self.camera.drift(t)

    def cell_positions(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of every cell at frame time t, and its orientation (radians)."""
        return positions(self.cells, self.vessels, t)

    def cells_od(self, t: float, white: bool) -> np.ndarray:
        """Optical density of the red (or white) cells at frame time t, (canvas, canvas)."""
        return optical_density(
            self.cells, self.vessels, self.layout.owner, t, white, self.params.exposure
        )

    # ------------------------------------------------------------------ per frame

    def _sensor(self, img: np.ndarray, shot_noise: bool) -> np.ndarray:
        """Defocus blur, then read noise (plus shot noise that grows with the signal)."""
        p = self.params
        if p.blur > 0:
            img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), p.blur)
        if p.noise > 0:
            sigma = (
                np.sqrt(p.noise**2 + 0.5 * p.noise * np.clip(img, 0, None))
                if shot_noise
                else p.noise
            )
            img = img + sigma * self.rng.standard_normal(img.shape)
        return img

    def frame(self, i: int, cells: bool = True) -> np.ndarray:
        """Frame i as (H, W, 3) uint8 RGB; ``cells=False`` renders the empty vessels."""
        if self.look.name != "brightfield":
            return self._frame_look(i, cells)
        od = self._static_od.copy()
        if cells:
            od += self.cells_od(i, white=False)[..., None] * HB_ABSORPTION
            od += self.cells_od(i, white=True)[..., None] * GREY
        light = self.camera.view(np.exp(-od), i, cv2.INTER_CUBIC)
        img = self._sensor(light * self._illumination * self._gains[i], shot_noise=True)
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _frame_look(self, i: int, cells: bool) -> np.ndarray:
        """Frame i in a non-bright-field look (:mod:`flowvid.data.synth.looks`)."""
        c = self.canvas
        rbc = self.cells_od(i, white=False) if cells else np.zeros((c, c))
        wbc = self.cells_od(i, white=True) if cells else np.zeros((c, c))
        world = compose(self.look, self._parts, rbc, wbc)
        img = self.camera.view(world, i, cv2.INTER_CUBIC)
        img = self._sensor(img * self._illumination.mean(-1) * self._gains[i], shot_noise=False)
        img = finish(self.look, img, self.rng)
        return (img * 255.0 + 0.5).astype(np.uint8)

    def world_flow(self, i: int) -> np.ndarray:
        """Blood displacement from frame i to i+1 on the world canvas, (canvas, canvas, 2)."""
        c = self.canvas
        flow = np.zeros((c * c, 2))
        for v, (index, s, n, x0) in zip(self.vessels, self.layout.lumen, strict=True):
            ds = (v.travel(i + 1) - v.travel(i)) * v.profile(n)
            flow[index] = v.position(s + ds, n) - x0
        return flow.reshape(c, c, 2)

    def flow(self, i: int) -> np.ndarray:
        """Ground truth flow[i] (frame i -> i+1), (H, W, 2) float32 px/frame, u right, v down."""
        if not self.camera.pad:
            return self.world_flow(i).astype(np.float32)
        step = (self.drift(i + 1) - self.drift(i)).astype(np.float32)
        flow = self.camera.view(self.world_flow(i), i, cv2.INTER_LINEAR)
        return np.where(self.mask(i)[..., None], flow, 0.0).astype(np.float32) + step

    def mask(self, i: int) -> np.ndarray:
        """Vessel lumen at frame i, (H, W) bool: where the blood flow is defined."""
        c = self.canvas
        lumen = (self.layout.owner >= 0).reshape(c, c)
        if not self.camera.pad:
            return lumen
        return self.camera.view(lumen.astype(np.float32), i, cv2.INTER_LINEAR) > 0.5

    @property
    def static_mask(self) -> bool:
        """True when the vessels do not move in the frame (no camera drift)."""
        return self.camera.pad == 0

    def describe(self) -> dict[str, object]:
        return {**asdict(self.params), "look": self.look.describe()}


def draw_quality(rng: np.random.Generator, cfg: SynthConfig) -> ClipParams:
    """The clip's optics and sensor: a quality class (or ``cfg.quality``) and its draws."""
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

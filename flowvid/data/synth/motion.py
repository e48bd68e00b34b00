"""A generic motion corpus: layered textured objects on smooth trajectories, exact flow.

In the spirit of FlyingChairs and AutoFlow, but as sequences: a background layer moves with
its own camera motion, and 2-8 textured objects with soft-edged shapes move over it, each
on a smooth random trajectory (translation, rotation, scale and a mild non-rigid warp),
bouncing at the edges of the view, with static stretches. Speeds are log-uniform per layer
(0.05-30 px/frame by default). The point of the corpus is to teach *measuring* motion on
any texture, before any knowledge of vessels.

Geometry. A layer maps its texture coordinates q (px, about its texture's centre) to the
screen at frame t by ``P_t(q) = c_t + s_t R(theta_t) (q + a_t E(q))``, where E is a smooth
fixed displacement field and a_t its amplitude. A pixel p shows, for each layer, the q with
``P_t(q) = p`` (found by fixed-point iteration: E is mild), and its ground-truth flow is
``P_{t+1}(q) - p``: exact for every layer, in px/frame, u right, v down. Sampling is done in
float (torch ``grid_sample``; OpenCV's remap rounds positions to 1/32 px), so sub-pixel
motion is rendered as it is labelled.

Masks. ``mask(i)`` marks the *matched* pixels of pair i: the surface seen at p in frame i is
still the topmost surface at ``p + flow`` in frame i+1, inside the view. Occluded and
out-of-view pixels keep their true flow but are unmatched: losses and metrics report them
apart ("outside" the mask, as Sintel's unmatched EPE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from flowvid.data.synth.layers import WARP_SLOPE, Layer, extent, forward, inverse, sample
from flowvid.data.synth.textures import random_texture


@dataclass(frozen=True)
class MotionConfig:
    """Every knob of the motion generator, with its default, in one place."""

    size: int = 256  # frame side, px
    frames: int = 120
    fps: float = 30.0  # nominal: the corpus has no physical units
    objects: tuple[int, int] = (2, 8)
    speed_px: tuple[float, float] = (0.05, 30.0)  # per layer, log-uniform, px/frame
    static_background_prob: float = 0.25  # the camera does not move
    static_stretch_prob: float = 0.3  # a layer stops for a while
    spin: float = 0.02  # std of the rotation rate, rad/frame
    zoom: float = 0.01  # std of the log-scale rate, per frame
    warp_prob: float = 0.4  # a layer deforms mildly (up to 2 px)
    photo_prob: float = 0.5  # texture from a bundled photograph, else procedural
    noise: tuple[float, float] = (0.0, 0.03)  # sensor noise std
    blur: tuple[float, float] = (0.0, 1.0)  # optics, Gaussian sigma px
    # the image's contrast, log-uniform: 1 as rendered, 0.15 a faint image over a flat grey
    # level (bright-field and unstained tissue are low contrast; the sensor noise is added after)
    contrast: tuple[float, float] = (0.15, 1.0)
    # an object of one flat colour: nothing inside it to follow, its motion shows at its edges
    # alone (a lumen of plasma, a uniform cell), where a method can only guess or interpolate
    flat_prob: float = 0.15
    crf: tuple[int, int] = (12, 26)  # x264 quality when written to disk

    def __post_init__(self) -> None:
        if self.size < 16 or self.frames < 2:
            raise ValueError("size >= 16 and frames >= 2 are needed")
        lo, hi = self.speed_px
        if not 0 < lo <= hi:
            raise ValueError(f"speed_px must be 0 < lo <= hi, not {self.speed_px}")
        lo, hi = self.contrast
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"contrast must be 0 < lo <= hi <= 1, not {self.contrast}")
        if not 0 <= self.flat_prob <= 1:
            raise ValueError(f"flat_prob must be in [0, 1], not {self.flat_prob}")


@dataclass
class MotionParams:
    """What was drawn for one clip (saved in dataset.yaml as the clip's metadata)."""

    noise: float
    blur: float
    contrast: float
    level: float  # the grey level that a low contrast fades to
    crf: int
    flat_objects: int = 0  # objects of one flat colour
    layer_speeds_px_per_frame: list[float] = field(default_factory=list)
    static_background: bool = False


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _gate(rng: np.random.Generator, steps: int, prob: float) -> np.ndarray:
    """(steps,) in [0, 1]: 1 while moving, 0 during a static stretch (3-frame ramps)."""
    gate = np.ones(steps)
    if steps >= 6 and rng.random() < prob:
        a = int(rng.integers(0, steps - 2))
        b = int(rng.integers(a + 2, steps + 1))
        gate[a:b] = 0.0
        ramp = np.convolve(gate, np.ones(3) / 3, mode="same")
        gate = np.minimum(gate, ramp) if rng.random() < 0.5 else gate
    return gate


class MotionRenderer:
    """Render one motion clip frame by frame from a config and a random generator.

    ``frame(i)`` (H, W, 3) uint8, ``flow(i)`` (H, W, 2) float32 px/frame from frame i to
    i+1, ``mask(i)`` (H, W) bool, the matched pixels of pair i. Memory is constant in the
    clip's length (poses are per frame; frames are rendered on demand).
    """

    def __init__(self, cfg: MotionConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.params = MotionParams(
            noise=float(rng.uniform(*cfg.noise)),
            blur=float(rng.uniform(*cfg.blur)),
            contrast=1.0,
            level=0.5,
            crf=int(rng.integers(cfg.crf[0], cfg.crf[1] + 1)),
        )
        self.layers = [self._background()] + [
            self._object() for _ in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1)))
        ]
        self.params.layer_speeds_px_per_frame = [round(ly.speed, 4) for ly in self.layers]
        self._grid = self._pixel_grid()
        self._noise_seed = int(rng.integers(2**62))
        # drawn last: a seed gives the same scene at any contrast range and share of flat objects
        self.params.contrast = _loguniform(rng, *cfg.contrast)
        self.params.level = float(rng.uniform(0.2, 0.8))
        for layer in self.layers[1:]:
            if rng.random() < cfg.flat_prob:  # its texture's mean colour everywhere
                rgb = layer.texture[:, :3]
                rgb[:] = rgb.mean((-2, -1), keepdim=True)
                self.params.flat_objects += 1
        self._cache: dict[int, tuple] = {}

    # ------------------------------------------------------------------ drawing the clip

    def _pixel_grid(self) -> torch.Tensor:
        n = self.cfg.size
        y, x = torch.meshgrid(
            torch.arange(n, dtype=torch.float64),
            torch.arange(n, dtype=torch.float64),
            indexing="ij",
        )
        return torch.stack([x, y], -1)  # (H, W, 2) pixel centres, x right, y down

    def _warp_field(self, amp_max: float, size: int) -> tuple[np.ndarray, np.ndarray]:
        """E(q) = sum_k c_k (sin(k.q + phi_u), sin(k.q + phi_v)), |dE/dq| <= WARP_SLOPE; and
        its amplitude over time, px."""
        rng, t = self.rng, self.cfg.frames
        k = 3
        angle = rng.uniform(0, 2 * np.pi, k)
        freq = 2 * np.pi / (rng.uniform(0.4, 1.2, k) * size)  # wavelengths of 0.4-1.2 textures
        coef = rng.uniform(0.5, 1.0, k)
        coef *= WARP_SLOPE / np.sum(coef * freq)  # sum |c_k| |k_k| bounds the slope
        field = np.stack(
            [freq * np.cos(angle), freq * np.sin(angle), *rng.uniform(0, 2 * np.pi, (2, k)), coef],
            1,
        )
        if rng.random() >= self.cfg.warp_prob:
            return field, np.zeros(t)
        amp = rng.uniform(0.3, amp_max)
        period = rng.uniform(10, 60)
        return field, amp * np.sin(2 * np.pi * np.arange(t) / period + rng.uniform(0, 2 * np.pi))

    def _rotation_scale(self, gate: np.ndarray, scale0: float) -> tuple[np.ndarray, np.ndarray]:
        rng, cfg = self.rng, self.cfg
        spin = rng.normal(0, cfg.spin) * gate
        zoom = rng.normal(0, cfg.zoom) * gate
        log_s = np.log(scale0) + np.concatenate([[0.0], np.cumsum(zoom)])
        log_s = np.log(scale0) + np.abs(((log_s - np.log(scale0)) + 0.4) % 1.6 - 0.8) - 0.4
        angle = rng.uniform(0, 2 * np.pi) + np.concatenate([[0.0], np.cumsum(spin)])
        return angle, np.exp(log_s)  # log-scale folds back within +-0.4 of its start

    def _path(self, speed: float, gate: np.ndarray, bounds: tuple[float, float] | None):
        """(T, 2) positions: a smooth heading, speed modulated by the gate, bouncing at bounds."""
        rng, t = self.rng, self.cfg.frames
        turn = np.convolve(rng.normal(0, 0.08, t + 8), np.ones(9) / 9, mode="valid")[: t - 1]
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(turn)
        mod = 1.0 + 0.2 * np.sin(2 * np.pi * np.arange(t - 1) / rng.uniform(15, 80))
        step = (speed * gate * mod)[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)
        pos = np.empty((t, 2))
        n = self.cfg.size
        pos[0] = rng.uniform(0.15 * n, 0.85 * n, 2) if bounds else rng.uniform(0, 1000, 2)
        sign = np.ones(2)
        for i in range(t - 1):
            nxt = pos[i] + sign * step[i]
            if bounds is not None:
                lo, hi = bounds
                for k in range(2):  # reflect at the walls; flow still = difference of poses
                    while not lo <= nxt[k] <= hi:
                        nxt[k] = 2 * (lo if nxt[k] < lo else hi) - nxt[k]
                        sign[k] = -sign[k]
            pos[i + 1] = nxt
        return pos

    def _background(self) -> Layer:
        rng, cfg = self.rng, self.cfg
        size = int(2 ** np.ceil(np.log2(cfg.size * 1.5)))
        tex = random_texture(rng, size, cfg.photo_prob)
        static = rng.random() < cfg.static_background_prob
        speed = 0.0 if static else _loguniform(rng, *cfg.speed_px)
        self.params.static_background = bool(static)
        gate = _gate(rng, cfg.frames - 1, cfg.static_stretch_prob)
        if static:
            angle, scale = np.zeros(cfg.frames), np.ones(cfg.frames)
        else:
            angle, scale = self._rotation_scale(gate * 0.5, 1.0)
        centre = self._path(speed, gate, None)
        warp, amp = self._warp_field(1.5, size)
        if static:
            amp = np.zeros(cfg.frames)
        texture = torch.from_numpy(np.concatenate([tex, np.ones_like(tex[..., :1])], -1))
        return Layer(
            texture.permute(2, 0, 1)[None], True, centre, angle, scale, amp, warp, np.inf, speed
        )

    def _shape(self, size: int) -> np.ndarray:
        """A soft-edged alpha (size, size) in [0, 1]: blob, ellipse or polygon."""
        rng = self.rng
        yy, xx = (np.mgrid[0:size, 0:size] + 0.5 - size / 2) / (size / 2)
        kind = rng.integers(3)
        if kind == 0:
            blob = cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), size / 8)
            inside = (blob / blob.std() + 2.2 * (1 - np.hypot(xx, yy))) > 1.0
        elif kind == 1:
            a, b = rng.uniform(0.4, 0.95, 2)
            rot = rng.uniform(0, np.pi)
            u = xx * np.cos(rot) + yy * np.sin(rot)
            v = -xx * np.sin(rot) + yy * np.cos(rot)
            inside = (u / a) ** 2 + (v / b) ** 2 < 1
        else:
            k = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = rng.uniform(0.5, 0.95, k)
            pts = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1) * size / 2 + size / 2
            inside = np.zeros((size, size), np.uint8)
            cv2.fillPoly(inside, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_AA, shift=4)
            inside = inside > 0
        inside[[0, -1], :] = inside[:, [0, -1]] = False  # alpha is 0 at the texture's border
        return cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.7)

    def _object(self) -> Layer:
        rng, cfg = self.rng, self.cfg
        size = int(rng.uniform(0.2, 0.55) * cfg.size) + 8
        tex = random_texture(rng, size, cfg.photo_prob)[:size, :size]
        alpha = self._shape(tex.shape[0])
        speed = _loguniform(rng, *cfg.speed_px)
        gate = _gate(rng, cfg.frames - 1, cfg.static_stretch_prob)
        angle, scale = self._rotation_scale(gate, rng.uniform(0.8, 1.2))
        centre = self._path(speed, gate, (-0.1 * cfg.size, 1.1 * cfg.size))
        warp, amp = self._warp_field(2.0, tex.shape[0])
        texture = torch.from_numpy(np.concatenate([tex, alpha[..., None]], -1))
        radius = tex.shape[0] / np.sqrt(2)
        return Layer(
            texture.permute(2, 0, 1)[None], False, centre, angle, scale, amp, warp, radius, speed
        )

    def _state(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame t before optics: image (H, W, 3) float, top layer id (H, W), flow (H, W, 2)."""
        if t in self._cache:
            return self._cache[t]
        n = self.cfg.size
        image = torch.zeros(3, n, n, dtype=torch.float32)
        top = torch.zeros(n, n, dtype=torch.int64)
        flow = torch.zeros(n, n, 2, dtype=torch.float64)
        last = t + 1 < self.cfg.frames
        for k, layer in enumerate(self.layers):
            box = extent(layer, t, n)
            if box is None:
                continue
            p = self._grid[box]  # the layer's window of the view: (h, w, 2)
            q, e = inverse(layer, t, p)
            rgba = sample(layer.texture, q, layer.periodic)
            alpha = rgba[3].clamp(0, 1)
            view = image[:, box[0], box[1]]
            image[:, box[0], box[1]] = view * (1 - alpha) + rgba[:3] * alpha
            here = alpha > 0.5
            top[box][here] = k
            if last:
                flow[box][here] = (forward(layer, t + 1, q, e) - p)[here]
        state = (image.permute(1, 2, 0).numpy(), top.numpy(), flow.float().numpy())
        self._cache = {k: v for k, v in self._cache.items() if k >= t - 1}
        self._cache[t] = state
        return state

    # ------------------------------------------------------------------ per frame

    def frame(self, i: int) -> np.ndarray:
        """Frame i as (H, W, 3) uint8 RGB."""
        img = self._state(i)[0]
        p = self.params
        if p.blur > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), p.blur)
        if p.contrast < 1.0:
            img = p.level + p.contrast * (img - p.level)
        if p.noise > 0:
            noise_rng = np.random.default_rng([self._noise_seed, i])
            img = img + p.noise * noise_rng.standard_normal(img.shape).astype(np.float32)
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def flow(self, i: int) -> np.ndarray:
        """Ground truth flow[i] (frame i -> i+1), (H, W, 2) float32 px/frame, u right, v down."""
        if not 0 <= i < self.cfg.frames - 1:
            raise IndexError(f"pair {i} out of range for {self.cfg.frames} frames")
        return self._state(i)[2]

    def mask(self, i: int) -> np.ndarray:
        """Matched pixels of pair i, (H, W) bool: same surface on top at p + flow in frame i+1."""
        _, top, flow = self._state(i)
        top_next = self._state(i + 1)[1]
        n = self.cfg.size
        y, x = np.mgrid[0:n, 0:n]
        tx = np.rint(x + flow[..., 0]).astype(np.int64)
        ty = np.rint(y + flow[..., 1]).astype(np.int64)
        inside = (tx >= 0) & (tx < n) & (ty >= 0) & (ty < n)
        same = np.zeros((n, n), bool)
        same[inside] = top_next[ty[inside], tx[inside]] == top[inside]
        return same

    @property
    def static_mask(self) -> bool:
        return False

    def describe(self) -> dict[str, object]:
        return asdict(self.params)

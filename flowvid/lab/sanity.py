"""The motion sanity suite: does a method *measure* motion, on textures it was never trained on?

Clips with exactly known motion: uniform translation (sub-pixel, 0.5-5 px/frame and fast),
camera drift with a varying speed, rotation and zoom about the centre, and a static clip.
Two textures: periodic band-limited fractal noise, and a crop of scikit-image's ``retina``
fundus photograph (reserved for evaluation: it never enters a training corpus).

Rendering is exact where it can be: a translation is a Fourier phase shift of a periodic,
band-limited texture (the frame is the texture moved by exactly v, to float precision,
then rounded to uint8). Rotation and zoom sample a 2x Fourier-upsampled texture with cubic
splines. Every method sees the same uint8 frames; EPE is taken away from the border, where
content enters the view (margin = the largest displacement + 4 px).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import cv2
import lightning as L
import numpy as np
import torch
from scipy.ndimage import map_coordinates

from flowvid.data.synth.textures import fractal_noise
from flowvid.predict.classical import dis_medium, farneback

Method = Callable[[np.ndarray], np.ndarray]  # (T, H, W, 3) uint8 -> (T-1, H, W, 2) px/frame


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # translate | drift | rotate | zoom | static
    rate: float  # px/frame for translate/drift; rad/frame for rotate; scale-1 for zoom
    angle: float = 0.3  # direction of translation/drift, radians


SUITE = (
    Case("static", "static", 0.0),
    *(Case(f"translate {v:g}", "translate", v) for v in (0.1, 0.3, 0.5, 1.0, 2.0, 5.0)),
    *(Case(f"translate {v:g}", "translate", v, 2.2) for v in (8.0, 12.0, 20.0)),
    Case("drift 1.57", "drift", 1.57, 4.0),
    Case("rotate 0.02 rad", "rotate", 0.02),
    Case("zoom 1.5 %", "zoom", 0.015),
)


# ----------------------------------------------------------------------------- textures


def _lowpass(spectrum: np.ndarray) -> np.ndarray:
    fy = np.fft.fftfreq(spectrum.shape[0])[:, None]
    fx = np.fft.fftfreq(spectrum.shape[1])[None, :]
    return spectrum * np.exp(-((np.hypot(fx, fy) / 0.35) ** 4))[..., None]


def noise_canvas(size: int, seed: int) -> np.ndarray:
    """Periodic coloured fractal noise, (size, size, 3) float in about [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    fields = [fractal_noise(rng, size, b) for b in (1.2, 2.0)]
    rgb = 0.5 + 0.12 * fields[0][..., None] * np.array([1.0, 0.6, 0.3])
    rgb = rgb + 0.08 * fields[1][..., None] * np.array([-0.3, 0.7, 1.0])
    return rgb.astype(np.float64)


def photo_canvas(img: np.ndarray, size: int) -> np.ndarray:
    """A central crop of a photograph (H, W, 3), resized to size and mirrored to a periodic
    (2*size, 2*size, 3) canvas in [0, 1]."""
    img = img.astype(np.float64) / 255.0
    h, w = img.shape[:2]
    side = min(h, w) // 3
    crop = img[h // 2 - side // 2 : h // 2 + side // 2, w // 3 : w // 3 + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    top = np.concatenate([crop, crop[:, ::-1]], 1)
    return np.concatenate([top, top[::-1]], 0)


def retina_canvas(size: int) -> np.ndarray | None:
    """scikit-image's retina photograph (evaluation only, never training) as a canvas."""
    try:
        from skimage import data
    except ImportError:
        return None
    return photo_canvas(data.retina(), size)


# ----------------------------------------------------------------------------- rendering


def _positions(case: Case, frames: int) -> np.ndarray:
    """(T, 2) cumulative displacement for translate/drift cases."""
    direction = np.array([np.cos(case.angle), np.sin(case.angle)])
    if case.kind == "drift":  # speed varies +-30 %, heading turns slowly
        k = np.arange(frames - 1)
        turn = case.angle + 0.05 * k
        speed = case.rate * (1 + 0.3 * np.sin(2 * np.pi * k / 5))
        steps = speed[:, None] * np.stack([np.cos(turn), np.sin(turn)], 1)
    else:
        steps = np.repeat(case.rate * direction[None], frames - 1, 0)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, 0)])


def _shifted(canvas: np.ndarray, d: np.ndarray, size: int) -> np.ndarray:
    """The periodic canvas moved by d = (dx, dy) px (exact Fourier shift), top-left window."""
    spectrum = _lowpass(np.fft.fft2(canvas, axes=(0, 1)))
    fy = np.fft.fftfreq(canvas.shape[0])[:, None, None]
    fx = np.fft.fftfreq(canvas.shape[1])[None, :, None]
    moved = np.fft.ifft2(spectrum * np.exp(-2j * np.pi * (fx * d[0] + fy * d[1])), axes=(0, 1))
    return moved.real[:size, :size]


def _upsampled(canvas: np.ndarray) -> np.ndarray:
    """2x band-limited upsampling of a periodic canvas (zero-padded spectrum)."""
    n = canvas.shape[0]
    spec = np.fft.fftshift(_lowpass(np.fft.fft2(canvas, axes=(0, 1))), axes=(0, 1))
    big = np.zeros((2 * n, 2 * n, canvas.shape[2]), complex)
    big[n // 2 : n // 2 + n, n // 2 : n // 2 + n] = spec
    return 4 * np.fft.ifft2(np.fft.ifftshift(big, axes=(0, 1)), axes=(0, 1)).real


def _affine_matrix(case: Case) -> np.ndarray:
    if case.kind == "rotate":
        c, s = np.cos(case.rate), np.sin(case.rate)
        return np.array([[c, -s], [s, c]])
    return np.eye(2) * (1 + case.rate)


def render_case(case: Case, canvas: np.ndarray, size: int, frames: int):
    """(frames (T, H, W, 3) uint8, flow (T-1, H, W, 2) float32 truth) for one case."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if case.kind in ("rotate", "zoom"):
        big, m = _upsampled(canvas), _affine_matrix(case)
        centre = (size - 1) / 2
        out = []
        for k in range(frames):
            inv = np.linalg.matrix_power(np.linalg.inv(m), k)
            qx = inv[0, 0] * (x - centre) + inv[0, 1] * (y - centre) + centre
            qy = inv[1, 0] * (x - centre) + inv[1, 1] * (y - centre) + centre
            coords = [2 * qy + 0.5, 2 * qx + 0.5]  # pixel centres on the 2x grid
            out.append(
                np.stack(
                    [
                        map_coordinates(big[..., c], coords, order=3, mode="grid-wrap")
                        for c in range(3)
                    ],
                    -1,
                )
            )
        fx = m[0, 0] * (x - centre) + m[0, 1] * (y - centre) + centre - x
        fy = m[1, 0] * (x - centre) + m[1, 1] * (y - centre) + centre - y
        flow = np.repeat(np.stack([fx, fy], -1)[None], frames - 1, 0)
    else:
        pos = _positions(case, frames)
        out = [_shifted(canvas, pos[k], size) for k in range(frames)]
        flow = np.broadcast_to(np.diff(pos, axis=0)[:, None, None, :], (frames - 1, size, size, 2))
    frames_u8 = (np.clip(np.stack(out), 0, 1) * 255 + 0.5).astype(np.uint8)
    return frames_u8, np.ascontiguousarray(flow, np.float32)


# ----------------------------------------------------------------------------- methods


def two_frame(compute: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Method:
    def run(frames: np.ndarray) -> np.ndarray:
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        return np.stack([compute(a, b) for a, b in zip(gray[:-1], gray[1:], strict=True)])

    return run


def model_method(model: torch.nn.Module, device: torch.device) -> Method:
    """The flowvid model on a whole clip (the recurrent core sees every frame); a model with
    an expected-error head gives it as a third channel, px/frame."""
    stated = getattr(model, "error_head", None) is not None

    @torch.no_grad()
    def run(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)[None].to(device)
        if not stated:
            return model(x)[0].permute(0, 2, 3, 1).float().cpu().numpy()
        aux: dict = {}
        out = model(x, aux=aux)
        out = torch.cat([out, aux["uncertainty"].to(out.dtype)], 2)
        return out[0].permute(0, 2, 3, 1).float().cpu().numpy()

    return run


def classical_methods() -> dict[str, Method]:
    return {"farneback": two_frame(farneback), "dis_medium": two_frame(dis_medium)}


# ----------------------------------------------------------------------------- the suite


def score(pred: np.ndarray, truth: np.ndarray, margin: int) -> dict[str, float]:
    """EPE away from the border; the mean predicted and true vectors there; and where
    ``pred`` has a third channel (a stated expected error), its mean there ("stated")."""
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    p, t = pred[inner], truth[inner]
    epe = np.linalg.norm(p[..., :2] - t, axis=-1)
    scores = {
        "epe": float(epe.mean()),
        "mean_u": float(p[..., 0].mean()),
        "mean_v": float(p[..., 1].mean()),
    }
    if pred.shape[-1] == 3:
        scores["stated"] = float(p[..., 2].mean())
    return scores


def run_suite(
    methods: dict[str, Method], size: int = 128, frames: int = 6, seed: int = 0
) -> list[dict]:
    """Every case on every texture with every method: one row per (case, texture)."""
    canvases = {"noise": noise_canvas(size, seed)}
    retina = retina_canvas(size)
    if retina is not None:
        canvases["retina"] = retina
    rows = []
    for case in SUITE:
        for texture, canvas in canvases.items():
            clip, truth = render_case(case, canvas, size, frames)
            speed = np.linalg.norm(truth, axis=-1)
            margin = int(np.ceil(speed.max())) + 4
            row = {
                "case": case.name,
                "texture": texture,
                "speed": float(speed.mean()),
                "true_u": float(truth[..., 0].mean()),
                "true_v": float(truth[..., 1].mean()),
            }
            for name, method in methods.items():
                row[name] = score(method(clip), truth, margin)
            rows.append(row)
    return rows


def target(row: dict) -> float | None:
    """The issue's target EPE for a row: 0.05 px at 0.5-5 px/frame, 2 % of the speed up to 20."""
    v = row["speed"]
    if row["case"].startswith(("translate", "drift")) and 0.5 <= v <= 5:
        return 0.05
    if row["case"].startswith(("translate", "drift")) and 5 < v <= 20:
        return 0.02 * v
    return None


def render_markdown(rows: list[dict], methods: list[str], header: str = "") -> str:
    """The suite's table; where the first method states its expected error, a column of it
    beside its EPE (calibrated: the two are alike)."""
    lines = [header] if header else []
    first = methods[0]
    stated = bool(rows) and "stated" in rows[0][first]
    cols = [f"{m} EPE" for m in methods] + ([f"{first} stated error"] if stated else [])
    lines.append(
        f"| case | texture | speed px/frame | {' | '.join(cols)} | target | "
        f"{first} mean (u, v) vs truth |"
    )
    lines.append("|" + "---|" * (5 + len(cols)))
    for r in rows:
        cells = [f"{r[m]['epe']:.3f}" for m in methods]
        cells += [f"{r[first]['stated']:.3f}"] if stated else []
        goal = target(r)
        means = f"({r[first]['mean_u']:.3f}, {r[first]['mean_v']:.3f})"
        truth = f"({r['true_u']:.3f}, {r['true_v']:.3f})"
        lines.append(
            f"| {r['case']} | {r['texture']} | {r['speed']:.2f} | {' | '.join(cells)} | "
            f"{'' if goal is None else f'<= {goal:.2f}'} | {means} vs {truth} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- during training

WATCH = (
    Case("static", "static", 0.0),
    Case("translate 0.3", "translate", 0.3),
    Case("translate 2", "translate", 2.0),
    Case("translate 8", "translate", 8.0, 2.2),
)


@cache
def watch_clips(size: int = 96, frames: int = 4) -> tuple[tuple[np.ndarray, np.ndarray, int], ...]:
    """The small fixed suite a training run is scored on at each validation: (frames uint8
    (T, H, W, 3), truth (T-1, H, W, 2), border margin) per case and texture."""
    canvases = [noise_canvas(size, 0)]
    retina = retina_canvas(size)
    if retina is not None:
        canvases.append(retina)
    out = []
    for case in WATCH:
        for canvas in canvases:
            clip, truth = render_case(case, canvas, size, frames)
            out.append((clip, truth, int(np.ceil(np.linalg.norm(truth, axis=-1).max())) + 4))
    return tuple(out)


@torch.no_grad()
def watch_epe(model: torch.nn.Module, device: torch.device) -> float:
    """Mean EPE of the model on :func:`watch_clips` (px/frame): does it measure motion on
    textures it never trained on?"""
    run = model_method(model, device)
    return float(np.mean([score(run(c), t, m)["epe"] for c, t, m in watch_clips()]))


class MotionWatch(L.Callback):
    """After each validation, logs ``val/suite_epe``: the model's :func:`watch_epe`, on
    textures no corpus holds. Does it measure motion, or recall a prior?"""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or pl_module.model.task != "flow":
            return
        pl_module.log("val/suite_epe", watch_epe(pl_module.model, pl_module.device))


def watchers(watch_motion: bool) -> list[L.Callback]:
    """The callbacks a training run gets from its ``train.watch_motion`` setting."""
    return [MotionWatch()] if watch_motion else []

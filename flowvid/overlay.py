"""Draw a flow sequence over its video (``flowvid overlay``), streaming, constant memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output
from flowvid.io.flowfile import FlowSequence, open_flow
from flowvid.io.video import VideoWriter, open_video
from flowvid.viz import blend, draw_arrows, flow_to_color, put_text, wheel_legend

STYLES = ("color", "arrows", "both")
SCALE_SAMPLE = 64  # flow maps sampled to fix the clip's one colour scale


def clip_speed_scale(flow: FlowSequence, q: float = 99.0) -> float:
    """One colour scale for the clip: the q-th percentile of |flow| over sampled maps."""
    picks = np.unique(np.linspace(0, len(flow) - 1, min(len(flow), SCALE_SAMPLE)).astype(int))
    speeds = np.concatenate([np.linalg.norm(flow[int(i)], axis=-1).ravel() for i in picks])
    speeds = speeds[np.isfinite(speeds) & (speeds > 1e-3)]
    return float(np.percentile(speeds, q)) if speeds.size else 1.0


def speed_label(speed: float, um_per_px: float | None, fps: float | None) -> str:
    if um_per_px and fps:
        return f"{speed * um_per_px * fps:.0f} um/s"
    return f"{speed:.2f} px/frame"


def render_frame(
    frame: np.ndarray, flow: np.ndarray, scale: float, style: str, label: str, alpha: float = 0.55
) -> np.ndarray:
    """One overlay frame: colour-wheel blend and/or arrows, a wheel legend and the scale."""
    moving = np.linalg.norm(flow, axis=-1) > 0.02 * scale
    out = frame
    if style in ("color", "both"):
        out = blend(out, flow_to_color(flow, scale), alpha, where=moving)
    if style in ("arrows", "both"):
        step = max(8, min(frame.shape[:2]) // 24)
        out = draw_arrows(out, flow, step, scale=step / max(scale, 1e-6), where=moving)
    side = max(24, min(frame.shape[:2]) // 6)
    out = out.copy()
    out[4 : 4 + side, 4 : 4 + side] = wheel_legend(side)
    put_text(out, f"max {label}", (6 + side, 4 + side // 2), scale=max(0.3, side / 120))
    return out


def error_panel(pred: np.ndarray, gt: np.ndarray, scale: float) -> np.ndarray:
    """|pred - gt| in px/frame as a heat map (black 0 .. white-yellow >= scale / 2)."""
    epe = np.linalg.norm(pred - gt, axis=-1)
    level = np.clip(epe / max(scale / 2, 1e-6) * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(level, cv2.COLORMAP_INFERNO)[..., ::-1]


def titled(image: np.ndarray, title: str) -> np.ndarray:
    out = image.copy()
    put_text(out, title, (4, out.shape[0] - 6), scale=max(0.3, out.shape[1] / 500))
    return out


def side_by_side(
    frame: np.ndarray, pred: np.ndarray, gt: np.ndarray, scale: float, style: str, label: str
) -> np.ndarray:
    """video | prediction | ground truth | error, with the frame's EPE written on it."""
    epe = float(np.linalg.norm(pred - gt, axis=-1).mean())
    panels = [
        titled(frame, "video"),
        titled(render_frame(frame, pred, scale, style, label), "predicted"),
        titled(render_frame(frame, gt, scale, style, label), "ground truth"),
        titled(error_panel(pred, gt, scale), f"EPE {epe:.2f} px"),
    ]
    gap = np.full((frame.shape[0], 2, 3), 255, np.uint8)
    return np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)


@dataclass(frozen=True)
class FlowSource:
    """A flow file, where it starts in the video, and the factor to px/frame."""

    seq: FlowSequence
    start: int
    to_px: float
    units: str


def flow_source(path: str | Path) -> FlowSource:
    """Open a flow file; a prediction sidecar (``<file>.json``) gives its frame range and units."""
    seq = open_flow(path)
    sidecar = Path(str(path) + ".json")
    start, to_px, units = 0, 1.0, "px/frame"
    if sidecar.is_file():
        try:
            doc = json.loads(sidecar.read_text())
        except ValueError:
            doc = {}
        start = int((doc.get("frames") or [0])[0])
        if doc.get("units") == "um/s" and doc.get("um_per_s_per_px_per_frame"):
            to_px, units = 1.0 / float(doc["um_per_s_per_px_per_frame"]), "um/s"
    return FlowSource(seq, start, to_px, units)


def iter_overlay(
    video_path: Path,
    flow: FlowSource,
    style: str,
    um_per_px: float | None,
    fps: float | None,
    max_speed: float | None,
    gt: FlowSource | None = None,
) -> Iterator[np.ndarray]:
    reference = gt or flow  # one colour scale for prediction and truth: the truth's
    scale = max_speed or clip_speed_scale(reference.seq) * reference.to_px
    label = speed_label(scale, um_per_px, fps)
    with open_video(video_path) as video:
        frames = video.iter_frames(flow.start, flow.start + len(flow.seq))
        for i, frame in enumerate(frames):
            pred = flow.seq[i] * flow.to_px
            if gt is None:
                yield render_frame(frame, pred, scale, style, label)
            else:
                truth = gt.seq[flow.start - gt.start + i] * gt.to_px
                yield side_by_side(frame, pred, truth, scale, style, label)


def _check_fits(flow: FlowSource, frames: int, size: tuple[int, int], path: Path) -> None:
    """T frames need T-1 maps of the frame size (fewer when a sidecar says where they start)."""
    n = len(flow.seq)
    count_ok = n == frames - 1 if flow.start == 0 else flow.start + n <= frames - 1
    if not count_ok or flow.seq.shape[1:3] != size:
        expected = f"({frames - 1}, {size[0]}, {size[1]})"
        raise InputError(
            f"flow {flow.seq.shape[:3]} does not fit the video ({frames} frames of "
            f"{size[1]}x{size[0]}): expected {expected}; flow[i] maps frame i to i+1",
            path,
        )


def write_overlay(
    video_path: str | Path,
    flow_path: str | Path,
    out: str | Path,
    style: str = "color",
    um_per_px: float | None = None,
    fps: float | None = None,
    max_speed: float | None = None,
    gt_path: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Write the overlay of ``flow_path`` on ``video_path`` to .mp4, .gif or a PNG folder.

    With ``gt_path``: side-by-side panels video | prediction | ground truth | error map.
    """
    video_path, out = Path(video_path), Path(out)
    if style not in STYLES:
        raise InputError(f"--style must be one of {STYLES}, not {style!r}")
    flow = flow_source(flow_path)
    gt = flow_source(gt_path) if gt_path is not None else None
    with open_video(video_path) as video:
        frames, size, rate = video.num_frames, (video.height, video.width), video.fps
    _check_fits(flow, frames, size, Path(flow_path))
    if gt is not None:
        _check_fits(gt, frames, size, Path(gt_path))
    images = iter_overlay(video_path, flow, style, um_per_px, fps or rate, max_speed, gt)
    frames_iter = tqdm(
        images, total=len(flow.seq), desc="overlay", unit="frame", disable=not progress
    )
    suffix = out.suffix.lower()
    if suffix in (".mp4", ".mov", ".mkv", ".avi"):
        with VideoWriter(out, rate or 25.0) as writer:
            for image in frames_iter:
                writer.write(image)
    elif suffix == ".gif":
        _write_gif(out, frames_iter, rate or 25.0)
    elif suffix == "":
        _write_png_folder(out, frames_iter)
    else:
        raise InputError(
            f"--out must end in .mp4, .gif, or name a folder for PNGs, not {suffix!r}", out
        )
    return out


def _write_gif(out: Path, frames: Iterator[np.ndarray], fps: float) -> None:
    from PIL import Image

    frames = iter(frames)
    first = Image.fromarray(next(frames))
    with atomic_output(out) as tmp:
        first.save(
            tmp,
            format="GIF",
            save_all=True,
            loop=0,
            duration=int(1000 / fps),
            append_images=(Image.fromarray(f) for f in frames),
        )


def _write_png_folder(out: Path, frames: Iterator[np.ndarray]) -> None:
    from PIL import Image

    with atomic_output(out, is_dir=True) as tmp:
        for i, image in enumerate(frames):
            Image.fromarray(image).save(tmp / f"{i:06d}.png")

"""Draw a flow sequence over its video (``flowvid overlay``), streaming, constant memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


def iter_overlay(
    video_path: Path,
    flow: FlowSequence,
    style: str,
    um_per_px: float | None,
    fps: float | None,
    max_speed: float | None,
) -> Iterator[np.ndarray]:
    scale = max_speed or clip_speed_scale(flow)
    label = speed_label(scale, um_per_px, fps)
    with open_video(video_path) as video:
        for i, frame in enumerate(video.iter_frames(0, len(flow))):
            yield render_frame(frame, flow[i], scale, style, label)


def write_overlay(
    video_path: str | Path,
    flow_path: str | Path,
    out: str | Path,
    style: str = "color",
    um_per_px: float | None = None,
    fps: float | None = None,
    max_speed: float | None = None,
    progress: bool = True,
) -> Path:
    """Write the overlay of ``flow_path`` on ``video_path`` to .mp4, .gif or a PNG folder."""
    video_path, out = Path(video_path), Path(out)
    if style not in STYLES:
        raise InputError(f"--style must be one of {STYLES}, not {style!r}")
    flow = open_flow(flow_path)
    with open_video(video_path) as video:
        frames, size, rate = video.num_frames, (video.height, video.width), video.fps
    if len(flow) != frames - 1 or flow.shape[1:3] != size:
        raise InputError(
            f"flow {flow.shape[:3]} does not fit the video "
            f"({frames} frames of {size[1]}x{size[0]}): "
            f"expected ({frames - 1}, {size[0]}, {size[1]}); flow[i] maps frame i to i+1",
            flow_path,
        )
    frames_iter = tqdm(
        iter_overlay(video_path, flow, style, um_per_px, fps or rate, max_speed),
        total=len(flow),
        desc="overlay",
        unit="frame",
        disable=not progress,
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

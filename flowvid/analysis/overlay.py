"""Draw a flow sequence over its video (``flowvid overlay``), streaming, constant memory."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from flowvid.analysis.viz import (
    MIN_TEXT_PX,
    blend,
    colour_bar,
    display_factor,
    draw_arrows,
    enlarge,
    flow_to_color,
    heat_bar,
    put_text,
    text_scale,
    wheel_legend,
)
from flowvid.errors import InputError, check_calibration
from flowvid.io.atomic import atomic_output
from flowvid.io.flowfile import FlowSequence, open_flow
from flowvid.io.outputs import ExpectedError, read_sidecar
from flowvid.io.video import VideoWriter, open_video

log = logging.getLogger(__name__)

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


def _legend(out: np.ndarray, style: str, scale: float, label: str, k: int) -> None:
    """The key in the top-left corner, in place: the colour wheel and a speed bar (colour),
    or an arrow of the full-colour speed (arrows). Text is never under MIN_TEXT_PX."""
    h, w = out.shape[:2]
    side = max(32, min(h, w) // 6)
    font = text_scale(max(MIN_TEXT_PX, min(h, w) / 28))
    text_h = cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][1]
    if style == "arrows":
        length = round(ARROW_LENGTH * arrow_step(h, w))
        y = 6 + text_h
        out[4 : y + 14, 4 : 10 + length] //= 4  # a dark plate under the scale arrow
        cv2.arrowedLine(
            out, (6, y + 8), (6 + length, y + 8), (255, 255, 255), 2, cv2.LINE_AA, tipLength=0.3
        )
        put_text(out, f"= {label}", (16 + length, y + 8 + text_h // 2), font)
        return
    out[4 : 4 + side, 4 : 4 + side] = wheel_legend(side)
    bar_len, bar_h = min(w - side - 16, 3 * side), max(6, side // 5)
    if bar_len < 24:
        return
    x0 = 10 + side
    out[4 + text_h + 4 : 4 + text_h + 4 + bar_h, x0 : x0 + bar_len] = colour_bar(
        bar_len, bar_h, scale
    )
    put_text(out, f"0 .. {label} (99th pct)", (x0, 4 + text_h), font)


ARROW_LENGTH = 1.5  # an arrow at the scale's speed spans 1.5 grid steps


def arrow_step(height: int, width: int) -> int:
    """The spacing of the arrow grid on a displayed frame: 16 per short side, at least 12 px."""
    return max(12, min(height, width) // 16)


def render_frame(
    frame: np.ndarray,
    flow: np.ndarray,
    scale: float,
    style: str,
    label: str,
    alpha: float = 0.55,
    k: int = 1,
    doubtful: np.ndarray | None = None,
) -> np.ndarray:
    """One overlay frame, enlarged k times for display: the colour wheel over every pixel
    (slow flow is near white, as on the wheel: no uncoloured holes) and/or arrows, and the
    key that reads them. ``doubtful`` (H, W) bool: vectors not to believe (expected error
    over a threshold) are drawn as grey video, with no colour and no arrow."""
    out = enlarge(frame, k)
    trusted = None if doubtful is None else enlarge(~doubtful, k)
    if style in ("color", "both"):
        out = blend(out, enlarge(flow_to_color(flow, scale), k), alpha, where=trusted)
    if trusted is not None:
        grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None] * np.float32(0.6) + 40
        out = np.where(trusted[..., None], out, grey.astype(np.uint8))
    if style in ("arrows", "both"):
        step = arrow_step(*out.shape[:2])
        moving = enlarge(np.linalg.norm(flow, axis=-1) > 0.02 * scale, k)
        if trusted is not None:
            moving &= trusted
        length = ARROW_LENGTH * step  # of an arrow at the scale's speed
        out = draw_arrows(
            out, enlarge(flow, k) * k, step, scale=length / max(scale * k, 1e-6), where=moving
        )
    out = np.ascontiguousarray(out)
    _legend(out, style, scale, label, k)
    return out


def error_scale(epe: np.ndarray) -> float:
    """The top of an error map's scale: the 99th percentile of the error (so that the scale
    covers the error), at least 0.01 px/frame."""
    finite = epe[np.isfinite(epe)]
    return max(float(np.percentile(finite, 99)) if finite.size else 0.0, 0.01)


def clip_error_scale(flow: FlowSource, gt: FlowSource, samples: int = 16) -> float:
    """:func:`error_scale` over up to ``samples`` maps spread over the clip: one scale for
    every frame of an overlay."""
    picks = np.unique(np.linspace(0, len(flow.seq) - 1, min(samples, len(flow.seq))).astype(int))
    epe = [
        np.linalg.norm(
            flow.seq[i] * flow.to_px - gt.seq[flow.start - gt.start + i] * gt.to_px, axis=-1
        )
        for i in picks
    ]
    return error_scale(np.stack(epe))


def error_panel(
    pred: np.ndarray, gt: np.ndarray, max_error: float | None = None, k: int = 1
) -> np.ndarray:
    """|pred - gt| (px/frame) as a heat map, black 0 .. yellow >= ``max_error`` (default:
    this map's :func:`error_scale`), with its bar."""
    epe = np.linalg.norm(pred - gt, axis=-1)
    top = error_scale(epe) if max_error is None else max_error
    level = np.clip(epe / top * 255, 0, 255).astype(np.uint8)
    out = np.ascontiguousarray(
        enlarge(cv2.applyColorMap(level, cv2.COLORMAP_INFERNO)[..., ::-1], k)
    )
    h, w = out.shape[:2]
    font = text_scale(max(MIN_TEXT_PX, min(h, w) / 28))
    text_h = cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][1]
    bar_len, bar_h = w // 2, max(6, h // 40)
    out[4 + text_h + 4 : 4 + text_h + 4 + bar_h, 4 : 4 + bar_len] = heat_bar(bar_len, bar_h)
    put_text(out, f"EPE 0 .. {top:.2f} px/frame", (4, 4 + text_h), font)
    return out


def titled(image: np.ndarray, title: str) -> np.ndarray:
    out = image.copy()
    put_text(out, title, (4, out.shape[0] - 6), text_scale(max(MIN_TEXT_PX, out.shape[0] / 22)))
    return out


def frame_errors(pred: np.ndarray, gt: np.ndarray, scale: float) -> tuple[float, float]:
    """Mean EPE where the truth moves (|gt| > 5 % of the scale) and where it does not: a
    whole-frame mean would hide the vessels' error in the still background."""
    epe = np.linalg.norm(pred - gt, axis=-1)
    moving = np.linalg.norm(gt, axis=-1) > 0.05 * scale
    mean = lambda where: float(epe[where].mean()) if where.any() else float("nan")  # noqa: E731
    return mean(moving), mean(~moving)


def side_by_side(
    frame: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray,
    scale: float,
    style: str,
    label: str,
    k: int = 1,
    max_error: float | None = None,
) -> np.ndarray:
    """video | prediction | ground truth | error (its scale up to ``max_error``), with the
    EPE where the truth moves and where it does not."""
    moving, still = frame_errors(pred, gt, scale)
    parts = [f"{name} {v:.2f}" for name, v in (("moving", moving), ("still", still)) if v == v]
    panels = [
        titled(enlarge(frame, k), "video"),
        titled(render_frame(frame, pred, scale, style, label, k=k), "predicted"),
        titled(render_frame(frame, gt, scale, style, label, k=k), "ground truth"),
        titled(error_panel(pred, gt, max_error, k), f"EPE {', '.join(parts)} px"),
    ]
    gap = np.full((panels[0].shape[0], 2, 3), 255, np.uint8)
    return np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)


@dataclass(frozen=True)
class FlowSource:
    """A flow file, where it starts in the video, and the factor to px/frame."""

    seq: FlowSequence
    start: int
    to_px: float
    units: str
    video: str | None = None  # the video it was predicted for, when its sidecar says
    um_per_px: float | None = None  # the calibration its sidecar states
    fps: float | None = None
    ranged: bool = False  # its sidecar states the frames it covers


def flow_source(path: str | Path) -> FlowSource:
    """Open a flow file; a prediction sidecar (``<file>.json``) gives its frame range and units."""
    seq = open_flow(path)
    start, to_px, units = 0, 1.0, "px/frame"
    doc = read_sidecar(path)
    if doc:
        try:
            start = int((doc.get("frames") or [0])[0])
        except (TypeError, ValueError, IndexError, KeyError):
            raise InputError(
                f"its sidecar's 'frames' should be [first, stop], not {doc['frames']!r}", path
            ) from None
        if doc.get("units") == "um/s" and doc.get("um_per_s_per_px_per_frame"):
            check_calibration(um_per_s_per_px_per_frame=doc["um_per_s_per_px_per_frame"])
            to_px, units = 1.0 / float(doc["um_per_s_per_px_per_frame"]), "um/s"
    stated = {}
    for key in ("um_per_px", "fps"):
        value = doc.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            check_calibration(**{key: value})
            stated[key] = float(value)
    ranged = isinstance(doc.get("frames"), list)
    return FlowSource(seq, start, to_px, units, doc.get("video"), **stated, ranged=ranged)


def _check_same_video(flow: FlowSource, video: Path, flow_path: Path) -> None:
    """A prediction's sidecar names its video: drawing it over another is refused."""
    if flow.video is not None and Path(flow.video).name != video.name:
        raise InputError(
            f"this flow was predicted for {flow.video}, not {video}; draw it over its own "
            f"video (or delete {flow_path.name}.json if the video was only renamed)",
            flow_path,
        )


def iter_overlay(
    video_path: Path,
    flow: FlowSource,
    style: str,
    um_per_px: float | None,
    fps: float | None,
    max_speed: float | None,
    gt: FlowSource | None = None,
    doubt: tuple[ExpectedError, float] | None = None,
) -> Iterator[np.ndarray]:
    reference = gt or flow  # one colour scale for prediction and truth: the truth's
    scale = max_speed or clip_speed_scale(reference.seq) * reference.to_px
    label = speed_label(scale, um_per_px, fps)
    max_error = None if gt is None else clip_error_scale(flow, gt)
    with open_video(video_path) as video:
        k = display_factor(video.height, video.width)
        frames = video.iter_frames(flow.start, flow.start + len(flow.seq))
        for i, frame in enumerate(frames):
            pred = flow.seq[i] * flow.to_px
            doubtful = None if doubt is None else doubt[0][i] > doubt[1]
            if gt is None:
                yield render_frame(frame, pred, scale, style, label, k=k, doubtful=doubtful)
            else:
                truth = gt.seq[flow.start - gt.start + i] * gt.to_px
                yield side_by_side(frame, pred, truth, scale, style, label, k, max_error)


def _check_fits(flow: FlowSource, frames: int, size: tuple[int, int], path: Path) -> None:
    """T frames need T-1 maps of the frame size (fewer when a sidecar says where they start)."""
    n = len(flow.seq)
    count_ok = flow.start + n <= frames - 1 if flow.ranged or flow.start else n == frames - 1
    if not count_ok or flow.seq.shape[1:3] != size:
        expected = f"({frames - 1}, {size[0]}, {size[1]})"
        raise InputError(
            f"flow {flow.seq.shape[:3]} does not fit the video ({frames} frames of "
            f"{size[1]}x{size[0]}): expected {expected}; flow[i] maps frame i to i+1",
            path,
        )


def _expected_error_for(flow: FlowSource, path: str | Path) -> ExpectedError:
    """``predict --uncertainty``'s file, checked to be for this flow."""
    errors = ExpectedError(path)
    if errors.shape != flow.seq.shape[:3] or errors.start != flow.start:
        errors.close()
        raise InputError(
            f"this expected error {errors.shape} (from frame {errors.start}) is not for the "
            f"flow {flow.seq.shape[:3]} (from frame {flow.start})",
            path,
        )
    return errors


def _write_images(out: Path, images: Iterable[np.ndarray], rate: float) -> None:
    """Images to a video (.mp4, .mov, .mkv, .avi), a .gif, or a folder of PNGs (no suffix)."""
    suffix = out.suffix.lower()
    if suffix in (".mp4", ".mov", ".mkv", ".avi"):
        with VideoWriter(out, rate) as writer:
            for image in images:
                writer.write(image)
    elif suffix == ".gif":
        _write_gif(out, images, rate)
    elif suffix == "":
        _write_png_folder(out, images)
    else:
        raise InputError(
            f"--out must end in .mp4, .gif, or name a folder for PNGs, not {suffix!r}", out
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
    uncertainty_path: str | Path | None = None,
    max_uncertainty: float = 1.0,
) -> Path:
    """Write the overlay of ``flow_path`` on ``video_path`` to .mp4, .gif or a PNG folder.

    With ``gt_path``: side-by-side panels video | prediction | ground truth | error map.
    With ``uncertainty_path`` (``predict --uncertainty``): vectors whose expected error is
    over ``max_uncertainty`` px/frame are greyed out.
    """
    video_path, out = Path(video_path), Path(out)
    if style not in STYLES:
        raise InputError(f"--style must be one of {STYLES}, not {style!r}")
    flow = flow_source(flow_path)
    gt = flow_source(gt_path) if gt_path is not None else None
    with open_video(video_path) as video:
        frames, size, rate = video.num_frames, (video.height, video.width), video.fps
    _check_fits(flow, frames, size, Path(flow_path))
    _check_same_video(flow, video_path, Path(flow_path))
    if gt is not None:
        _check_fits(gt, frames, size, Path(gt_path))
    doubt = None
    if uncertainty_path is not None:
        if gt is not None:
            raise InputError("--uncertainty draws one prediction: leave out --gt")
        doubt = (_expected_error_for(flow, uncertainty_path), max_uncertainty)
    # the calibration: what the command line says, else what the flow's sidecar states
    um_per_px, fps = um_per_px or flow.um_per_px, fps or flow.fps or rate
    if um_per_px and not fps:
        raise InputError(
            "µm/s needs a frame rate: give --fps (neither the video nor the flow's sidecar "
            "states one)"
        )
    images = iter_overlay(video_path, flow, style, um_per_px, fps, max_speed, gt, doubt)
    frames_iter = tqdm(
        images, total=len(flow.seq), desc="overlay", unit="frame", disable=not progress
    )
    _write_images(out, frames_iter, rate or 25.0)
    return out


def _write_gif(out: Path, frames: Iterator[np.ndarray], fps: float) -> None:
    """Each frame gets its own 256-colour palette (median cut, dithered): the wheel's hues
    survive. A GIF still holds 256 colours a frame: .mp4 keeps every colour."""
    from PIL import Image

    log.warning("GIF holds 256 colours a frame; prefer .mp4 for exact flow colours")

    def gif_frame(image: np.ndarray) -> Image.Image:
        return Image.fromarray(image).quantize(
            256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG
        )

    frames = iter(frames)
    first = gif_frame(next(frames))
    with atomic_output(out) as tmp:
        first.save(
            tmp,
            format="GIF",
            save_all=True,
            loop=0,
            duration=int(1000 / fps),
            append_images=(gif_frame(f) for f in frames),
        )


def _write_png_folder(out: Path, frames: Iterator[np.ndarray]) -> None:
    from PIL import Image

    with atomic_output(out, is_dir=True) as tmp:
        for i, image in enumerate(frames):
            Image.fromarray(image).save(tmp / f"{i:06d}.png")

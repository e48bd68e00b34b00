"""Predictions over whole videos, in constant memory (:mod:`flowvid.predict.stream`): flow, future
frames, or the learned per-frame embedding.

Flow is written chunk by chunk into its output file (or per-pair files), never held whole;
a JSON sidecar records shape, axes, units and provenance (:mod:`flowvid.io.outputs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from flowvid.errors import InputError, VideoError, check_calibration
from flowvid.io.masks import read_mask
from flowvid.io.outputs import (
    FLOW_AXES,
    UNCERTAINTY_AXES,
    flow_sink,
    npy_stream,
    uncertainty_sink,
    write_sidecar,
)
from flowvid.models import FlowVid
from flowvid.predict.stream import Stream, open_stream, precision_name

UNITS = ("px/frame", "um/s")

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """Where the result went and what it is."""

    path: Path | None
    shape: tuple[int, ...]
    units: str
    frames: tuple[int, int]
    mean_speed: float | None  # inside the mask when one was given, px/frame
    array: np.ndarray | None = None  # when no output path was given
    um_s_per_px_frame: float | None = None  # the calibration, when pixel size and fps are known

    @property
    def mean_speed_um_s(self) -> float | None:
        if self.mean_speed is None or self.um_s_per_px_frame is None:
            return None
        return self.mean_speed * self.um_s_per_px_frame


def predict_flow(
    model: FlowVid,
    video: str | Path,
    out: str | Path | None = None,
    *,
    frames: str | None = None,
    device: str = "auto",
    batch_frames: int = 16,
    max_side: int | None = None,
    units: str = "px/frame",
    um_per_px: float | None = None,
    fps: float | None = None,
    pair_format: str = "flo",
    mask: str | Path | None = None,
    progress: bool = True,
    precision: str = "auto",
    uncertainty: str | Path | None = None,
) -> Prediction:
    """Predict flow for a whole video (or ``frames='A:B'``); write it to ``out`` or return it.

    ``uncertainty``: also write each vector's expected end-point error, ``(T-1, H, W)``
    float32 in the flow's units, to this ``.npy``/``.h5``/``.mat`` (with its own sidecar);
    the model needs an expected-error head (``model.uncertainty``).

    ``mask``: a vessel mask (PNG or .npy, ``(H, W)`` or one per pair of the whole video,
    ``(T-1, H, W)``); the flow outside it is written as 0 and the mean speed is taken inside.
    ``precision``: auto (bf16 on a GPU, fp32 on a CPU), fp32 or bf16
    (:func:`flowvid.predict.stream.resolve_precision`).

    The video is opened once and decoded once. A video not seen before is read with the
    frame count its container states, and the outputs hold the maps that decode (their
    headers are written at the end), so a wrong stated count costs nothing. Where the
    numbers written depend on the true count or rate (a mask, whose length must match the
    video's, or µm/s from the video's own rate), the frames are first counted exactly (one
    more decode, cached for the next time).
    """
    if units not in UNITS:
        raise InputError(f"--units must be one of {UNITS}, not {units!r}")
    out = None if out is None else Path(out)
    uncertainty = None if uncertainty is None else Path(uncertainty)
    if uncertainty is not None and out is not None and uncertainty.resolve() == out.resolve():
        raise InputError("--uncertainty must be another file than --out", uncertainty)
    request = flow_request(
        frames=frames,
        units=units,
        um_per_px=um_per_px,
        fps=fps,
        max_side=max_side,
        precision=precision,
        pair_format=pair_format,
        mask=mask,
    )
    exact = mask is not None or (units == "um/s" and not fps)
    with open_stream(
        model, video, frames, device, batch_frames, max_side, exact=exact, precision=precision
    ) as s:
        return _predict_stream(s, out, uncertainty, request, batch_frames, progress)


def _predict_stream(
    s: Stream,
    out: Path | None,
    uncertainty: Path | None,
    request: dict[str, Any],
    batch_frames: int,
    progress: bool,
) -> Prediction:
    mask, units, stated = request["mask"], request["units"], not s.exact
    um_per_px, fps, _ = _calibration_of(s, request["um_per_px"], request["fps"])
    keep = None if mask is None else read_mask(Path(mask), s.total - 1, s.height, s.width)
    if keep is not None and not keep.any(0).any():
        raise InputError("the mask is empty: every flow vector would be written as 0", mask)
    if units == "um/s" and not (um_per_px and fps):
        raise InputError("µm/s needs --um-per-px and --fps (or a video that states its frame rate)")
    scale = um_per_px * fps if units == "um/s" else 1.0
    expected = (s.stop - s.start - 1, s.height, s.width, 2)
    meta = {"units": units, "fps": fps, "um_per_px": um_per_px}
    with (
        flow_sink(out, expected, request["pair_format"], meta) as sink,  # a bad --out fails first
        contextlib.nullcontext(None)
        if uncertainty is None
        else uncertainty_sink(uncertainty, expected[:-1], meta) as errors,
        tqdm(total=expected[0], desc="predict", unit="pair", disable=not progress) as bar,
    ):
        chunks = s.outputs(batch_frames, request["max_side"], uncertainty=errors is not None)
        done, speed_sum, counted = 0, 0.0, 0
        for chunk, error in _checked(chunks, errors is not None, s):
            if errors is not None:
                errors[done : done + len(chunk)] = error * scale
            chunk, speeds = _inside_mask(chunk, keep, s.start + done)
            speed_sum, counted = speed_sum + float(speeds.sum()), counted + speeds.size
            sink[done : done + len(chunk)] = chunk * scale
            done += len(chunk)
            bar.update(len(chunk))
        _check_count(s, done, expected[0], stated)  # never a partly written output
    um_per_px, fps, source = _calibration_of(s, request["um_per_px"], request["fps"])
    factor = um_per_px * fps if um_per_px and fps else None
    shape = (done, *expected[1:])
    result = sink.array if out is None else None
    frames = (s.start, s.start + done + 1)
    pred = Prediction(out, shape, units, frames, speed_sum / max(counted, 1), result, factor)
    origin = _origin(s)
    if out is not None:
        extra = {} if mask is None else {"mask": str(mask), "outside_mask": "flow set to 0"}
        fields = _describe(pred, FLOW_AXES, fps) | _calibration(pred, um_per_px)
        fields["calibration_source"] = {k: v or None for k, v in source.items()}
        write_sidecar(out, {**fields, **origin, **extra, "request": request})
    if uncertainty is not None:
        write_sidecar(uncertainty, _uncertainty_fields(pred, um_per_px, fps, out) | origin)
    return pred


def _check_count(s: Stream, done: int, expected: int, stated: bool) -> None:
    """The maps decoded are the maps due: all of them, or, for a stream read with its
    container's stated count to the video's end, however many the video holds."""
    if done == expected or (stated and s.to_end and done >= 1):
        return
    if done < 1:
        raise VideoError("fewer than 2 frames decode: no flow to predict", s.video)
    if stated and s.total < s.stop:
        raise InputError(
            f"--frames {s.start}:{s.stop} reaches past the video's end: it has {s.total} "
            "frames (its container states more)"
        )
    raise VideoError(f"{done} flow maps decoded where {expected} were due", s.video)


def _checked(
    chunks: Iterator[np.ndarray], uncertainty: bool, s: Stream
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The stream's chunks as (flow (m, H, W, 2), expected error (m, H, W) or None); a
    non-finite flow is an error, never a nan written with exit 0."""
    done = 0
    for chunk in chunks:
        flow, error = (chunk[..., :2], chunk[..., 2]) if uncertainty else (chunk, None)
        if not np.isfinite(flow).all():
            raise InputError(
                f"the model gave non-finite flow (nan or inf) at pair {s.start + done} or "
                "after: the checkpoint is damaged or the video is not what it was trained on",
                s.video,
            )
        done += len(flow)
        yield flow, error


def _calibration_of(
    s: Stream, um_per_px: float | None, fps: float | None
) -> tuple[float | None, float | None, dict[str, Any]]:
    """Pixel size and frame rate: the command line's, else what the video states; and where
    each came from."""
    source = {
        "um_per_px": "--um-per-px" if um_per_px else s.um_per_px and s.calibration_source,
        "fps": "--fps" if fps else s.fps and (s.calibration_source or "the video's frame rate"),
    }
    um_per_px, fps = um_per_px or s.um_per_px, fps or s.fps
    check_calibration(um_per_px=um_per_px, fps=fps)
    return um_per_px, fps, source


def _uncertainty_fields(
    pred: Prediction, um_per_px: float | None, fps: float | None, out: Path | None
) -> dict[str, Any]:
    """The expected error's sidecar: its shape, units and what the numbers mean."""
    fields = _describe(pred, UNCERTAINTY_AXES, fps) | {
        "um_per_px": um_per_px,
        "um_per_s_per_px_per_frame": pred.um_s_per_px_frame,
    }
    fields["shape"] = list(pred.shape[:-1])
    fields["meaning"] = (
        "expected end-point error of each flow vector (the exponential scale the model "
        "was trained to state: the mean error of vectors it judges alike), "
        f"in {pred.units}; computed for the model's flow everywhere, mask or not"
    )
    fields["flow"] = None if out is None else str(out)
    return fields


def _inside_mask(
    chunk: np.ndarray, keep: np.ndarray | None, first_pair: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flow (m, H, W, 2) with the outside of the mask set to 0, and the speeds (px/frame) to
    average: inside the mask, or everywhere without one. ``first_pair``: the chunk's first
    pair in the whole video (a per-pair mask is indexed by it)."""
    speed = np.linalg.norm(chunk, axis=-1)
    if keep is None:
        return chunk, speed.ravel()
    pairs = first_pair + np.arange(len(chunk))
    inside = np.broadcast_to(keep[0 if len(keep) == 1 else pairs], speed.shape)
    return np.where(inside[..., None], chunk, np.float32(0.0)), speed[inside]


def _calibration(pred: Prediction, um_per_px: float | None) -> dict[str, Any]:
    """The physical scale, and the mean speed in every unit it allows."""
    return {
        "um_per_px": um_per_px,
        "um_per_s_per_px_per_frame": pred.um_s_per_px_frame,
        "mean_speed_px_per_frame": pred.mean_speed,
        "mean_speed_um_per_s": pred.mean_speed_um_s,
    }


def _origin(s: Stream) -> dict[str, Any]:
    """Where an output came from: the video (path, size, frames, a fingerprint) and the model
    (what ``load_model`` recorded of it, or a classical method's name)."""
    return {
        "video": str(s.video),
        "video_size_hw": [s.height, s.width],
        "video_frames": s.total,
        "video_sha256_first_mb": fingerprint(s.video),
        "video_stat": input_stat(s.video),
        **({"intensity": s.intensity} if s.intensity else {}),
        "precision": precision_name(s.precision, s.device),
        **getattr(s.model, "provenance", {}),
    }


REQUEST_KEYS = (
    "fps",
    "frames",
    "mask",
    "max_side",
    "pair_format",
    "precision",
    "um_per_px",
    "units",
)


def flow_request(**options: Any) -> dict[str, Any]:
    """The options that decide a flow output (:data:`REQUEST_KEYS`; others are ignored), as
    plain values: what a sidecar records and a batch rerun compares."""
    chosen = {k: options.get(k) for k in REQUEST_KEYS}
    return {k: str(v) if isinstance(v, Path) else v for k, v in chosen.items()}


def input_stat(path: Path) -> dict[str, int]:
    """Size and modification time of an input (for a folder of frames: of all its files),
    so that a rerun sees a replaced or edited input."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return {
        "files": len(stats),
        "bytes": sum(st.st_size for st in stats),
        "mtime_ns": max((st.st_mtime_ns for st in stats), default=0),
    }


def fingerprint(path: Path) -> str:
    """sha256 of a video's first MB (of its first frame file, for a folder of frames): enough
    to tell two recordings apart without reading hours of video."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            return ""
        path = files[0]
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read(1 << 20)).hexdigest()


def _describe(pred: Prediction, axes: str, fps: float | None) -> dict[str, Any]:
    return {
        "shape": list(pred.shape),
        "axes": axes,
        "units": pred.units,
        "frames": list(pred.frames),
        "fps": fps,
    }


FRAMES_AXES = (
    "(T, H, W, 3): frame i predicts video frame 'frames'[0] + 1 + i from the frames up to it"
)


def predict_frames(
    model: FlowVid,
    video: str | Path,
    out: str | Path,
    *,
    frames: str | None = None,
    device: str = "auto",
    batch_frames: int = 16,
    max_side: int | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> Prediction:
    """Frame t+1 predicted from frames <= t, for every t in the range: .npy (uint8) or a video.
    ``precision``: as for :func:`predict_flow`."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".mp4", ".mov", ".mkv", ".avi"):
        raise InputError("predicted frames go to .npy or a video file (.mp4)", out)
    with open_stream(
        model, video, frames, device, batch_frames, max_side, precision=precision
    ) as s:
        shape = (s.stop - s.start, s.height, s.width, 3)
        chunks = (
            (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)
            for c in tqdm(
                s.outputs(batch_frames, max_side),
                desc="predict",
                unit="chunk",
                disable=not progress,
            )
        )
        if suffix == ".npy":
            npy_stream(out, shape, np.uint8, chunks)
        else:
            _write_frames(out, chunks, s.fps or 25.0)
        pred = Prediction(out, shape, "uint8 RGB in [0, 255]", (s.start, s.stop), None)
        write_sidecar(out, {**_describe(pred, FRAMES_AXES, s.fps), **_origin(s)})
    return pred


def _write_frames(out: Path, chunks: Iterator[np.ndarray], fps: float) -> None:
    from flowvid.io.video import VideoWriter

    with VideoWriter(out, fps) as writer:
        for chunk in chunks:
            for frame in chunk:
                writer.write(frame)


def embed_video(
    model: FlowVid,
    video: str | Path,
    out: str | Path,
    *,
    pooled: bool = False,
    device: str = "auto",
    batch_frames: int = 16,
    progress: bool = True,
) -> Prediction:
    """The core's hidden state after each frame: (T, S) pooled, or (T, S, H/8, W/8), float16."""
    out = Path(out)
    if out.suffix.lower() != ".npy":
        raise InputError("embeddings are written as .npy", out)

    def reduce(chunk: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(chunk).float()
        t = t.mean((-2, -1)) if pooled else F.avg_pool2d(t, 2)
        return t.to(torch.float16).numpy()

    with open_stream(model, video, None, device, batch_frames) as s:
        hidden, m = s.model.core.hidden_dim, s.model.multiple
        h4, w4 = -(-s.height // m) * m // 4, -(-s.width // m) * m // 4
        shape = (s.total, hidden) if pooled else (s.total, hidden, h4 // 2, w4 // 2)
        chunks = (
            reduce(c)
            for c in tqdm(
                s.outputs(batch_frames, embed=True),
                desc="embed",
                unit="chunk",
                disable=not progress,
            )
        )
        npy_stream(out, shape, np.float16, chunks)
        pred = Prediction(out, shape, "none (learned features)", (0, s.total), None)
        axes = (
            "(T, S): frame i's hidden state averaged over the frame"
            if pooled
            else "(T, S, H', W'): frame i's hidden state of the temporal core at stride 8"
        )
        write_sidecar(out, {**_describe(pred, axes, s.fps), **_origin(s)})
    return pred

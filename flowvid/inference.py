"""Streaming prediction over a whole video, in constant memory.

Frames are decoded with PyAV one at a time, grouped into chunks of ``batch_frames`` for
the encoder, and the recurrent core carries its state from chunk to chunk. Flow is
written straight into a memory-mapped output (or per-pair files), never held whole.
The model may run at a working resolution; the flow is resized back to the clip's own
size and its vectors rescaled. A JSON sidecar records shape, axes, units and provenance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from flowvid.errors import InputError
from flowvid.io.masks import read_mask
from flowvid.io.outputs import FLOW_AXES, flow_sink, npy_stream, write_sidecar
from flowvid.io.video import open_video
from flowvid.models import FlowVid

UNITS = ("px/frame", "um/s")


@dataclass(frozen=True)
class Stream:
    """A video opened for prediction: the model on its device and what the video is."""

    model: FlowVid
    device: torch.device
    video: Path
    start: int  # first frame of the range
    stop: int  # one past its last frame
    total: int  # frames in the whole video
    height: int
    width: int
    fps: float | None

    def outputs(self, batch_frames: int, max_side: int | None = None, embed: bool = False):
        """:func:`stream_outputs` over this stream's range."""
        return stream_outputs(
            self.model,
            self.video,
            self.start,
            self.stop,
            self.device,
            batch_frames,
            max_side,
            embed=embed,
        )


def open_stream(
    model: FlowVid, video: str | Path, frames: str | None = None, device: str = "auto"
) -> Stream:
    """The one set-up of every prediction: device, model in eval mode, the video's range,
    size and frame rate (a bad range or device is an :class:`InputError`)."""
    video, dev = Path(video), resolve_device(device)
    with open_video(video) as reader:
        start, stop = parse_range(frames, reader.num_frames)
        size, fps, total = (reader.height, reader.width), reader.fps, reader.num_frames
    return Stream(model.to(dev).eval(), dev, video, start, stop, total, *size, fps)


@dataclass
class Prediction:
    """Where the result went and what it is."""

    path: Path | None
    shape: tuple[int, ...]
    units: str
    frames: tuple[int, int]
    mean_speed: float | None  # inside the mask when one was given, px/frame
    array: np.ndarray | None = None  # when no output path was given


def parse_range(text: str | None, total: int) -> tuple[int, int]:
    """'A:B' (either side optional) -> (start, stop) within 0..total; at least 2 frames."""
    if not text:
        start, stop = 0, total
    else:
        a, sep, b = text.partition(":")
        if not sep:
            raise InputError(f"--frames takes A:B, e.g. 0:500, not {text!r}")
        try:
            start, stop = int(a) if a else 0, int(b) if b else total
        except ValueError:
            raise InputError(f"--frames takes integers A:B, not {text!r}") from None
    start, stop = max(0, start), min(total, stop)
    if stop - start < 2:
        raise InputError(
            f"need at least 2 frames to predict flow; the range gives {max(stop - start, 0)}"
        )
    return start, stop


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def _working_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


def _chunks(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stream_outputs(
    model: FlowVid,
    video: Path,
    start: int,
    stop: int,
    device: torch.device,
    batch_frames: int,
    max_side: int | None = None,
    embed: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the model's outputs chunk by chunk as numpy arrays at the clip's size.

    Flow: (m, H, W, 2) px/frame. Frames: (m, H, W, 3) in [0, 1]. ``embed``: the hidden
    state per frame, (m, S, h/4, w/4) float16.
    """
    use_bf16 = device.type == "cuda"
    state = model.init_state()
    with open_video(video) as reader:
        height, width = reader.height, reader.width
        work = _working_size(height, width, max_side)
        for chunk in _chunks(reader.iter_frames(start, stop), batch_frames):
            x = torch.from_numpy(np.stack(chunk)).to(device).permute(0, 3, 1, 2).float() / 255.0
            if work != (height, width):
                x = F.interpolate(x, size=work, mode="area")
            with (
                torch.inference_mode(),
                torch.autocast(device.type, torch.bfloat16, enabled=use_bf16),
            ):
                if embed:
                    out, state = model.embed(x[None], state)
                    yield out[0].to(torch.float16).cpu().numpy()
                    continue
                out, state = model.step(x[None], state)
            yield _to_clip_size(out[0].float(), height, width, model.task == "flow")


def _to_clip_size(out: torch.Tensor, height: int, width: int, is_flow: bool) -> np.ndarray:
    """(m, C, h, w) at working size -> (m, H, W, C) at clip size; flow vectors rescaled."""
    if out.shape[0] == 0:
        return np.zeros((0, height, width, out.shape[1]), np.float32)
    h, w = out.shape[-2:]
    if (h, w) != (height, width):
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        if is_flow:
            out = out * out.new_tensor([width / w, height / h]).view(1, 2, 1, 1)
    return out.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


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
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> Prediction:
    """Predict flow for a whole video (or ``frames='A:B'``); write it to ``out`` or return it.

    ``mask``: a vessel mask (PNG or .npy, ``(H, W)`` or one per pair of the whole video,
    ``(T-1, H, W)``); the flow outside it is written as 0 and the mean speed is taken inside.
    """
    out = None if out is None else Path(out)
    if units not in UNITS:
        raise InputError(f"--units must be one of {UNITS}, not {units!r}")
    s = open_stream(model, video, frames, device)
    fps = fps or s.fps
    keep = None if mask is None else read_mask(Path(mask), s.total - 1, s.height, s.width)
    if units == "um/s" and not (um_per_px and fps):
        raise InputError("µm/s needs --um-per-px and --fps (or a video that states its frame rate)")
    scale = um_per_px * fps if units == "um/s" else 1.0
    shape = (s.stop - s.start - 1, s.height, s.width, 2)
    done, speed_sum, counted = 0, 0.0, 0
    bar = tqdm(total=shape[0], desc="predict", unit="pair", disable=not progress)
    with flow_sink(out, shape, pair_format) as sink:
        for chunk in s.outputs(batch_frames, max_side):
            speed = np.linalg.norm(chunk, axis=-1)
            if keep is not None:
                pairs = s.start + done + np.arange(len(chunk))
                inside = np.broadcast_to(keep[0 if len(keep) == 1 else pairs], speed.shape)
                chunk = np.where(inside[..., None], chunk, np.float32(0.0))
                speed_sum += float(speed[inside].sum())
                counted += int(inside.sum())
            else:
                speed_sum += float(speed.sum())
                counted += speed.size
            sink[done : done + len(chunk)] = chunk * scale
            done += len(chunk)
            bar.update(len(chunk))
        result = None if out is not None else sink
    bar.close()
    pred = Prediction(out, shape, units, (s.start, s.stop), speed_sum / max(counted, 1), result)
    if out is not None:
        extra = {} if mask is None else {"mask": str(mask), "outside_mask": "flow set to 0"}
        write_sidecar(
            out,
            {
                **_describe(pred, FLOW_AXES, fps),
                "um_per_px": um_per_px,
                "um_per_s_per_px_per_frame": um_per_px * fps if um_per_px and fps else None,
                "mean_speed_px_per_frame": pred.mean_speed,
                **(provenance or {}),
                **extra,
            },
        )
    return pred


def _describe(pred: Prediction, axes: str, fps: float | None) -> dict[str, Any]:
    return {
        "shape": list(pred.shape),
        "axes": axes,
        "units": pred.units,
        "frames": list(pred.frames),
        "fps": fps,
    }


def predict_frames(
    model: FlowVid,
    video: str | Path,
    out: str | Path,
    *,
    frames: str | None = None,
    device: str = "auto",
    batch_frames: int = 16,
    max_side: int | None = None,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> Prediction:
    """Frame t+1 predicted from frames <= t, for every t in the range: .npy (uint8) or a video."""
    from flowvid.io.video import VideoWriter

    out = Path(out)
    s = open_stream(model, video, frames, device)
    shape = (s.stop - s.start, s.height, s.width, 3)
    chunks = (
        (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)
        for c in tqdm(
            s.outputs(batch_frames, max_side), desc="predict", unit="chunk", disable=not progress
        )
    )
    if out.suffix.lower() == ".npy":
        npy_stream(out, shape, np.uint8, chunks)
    elif out.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi"):
        with VideoWriter(out, s.fps or 25.0) as writer:
            for chunk in chunks:
                for frame in chunk:
                    writer.write(frame)
    else:
        raise InputError("predicted frames go to .npy or a video file (.mp4)", out)
    pred = Prediction(out, shape, "uint8 RGB in [0, 255]", (s.start, s.stop), None)
    axes = "(T, H, W, 3): frame i predicts video frame 'frames'[0] + 1 + i from the frames up to it"
    write_sidecar(out, {**_describe(pred, axes, s.fps), **(provenance or {})})
    return pred


def embed_video(
    model: FlowVid,
    video: str | Path,
    out: str | Path,
    *,
    pooled: bool = False,
    device: str = "auto",
    batch_frames: int = 16,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> Prediction:
    """The core's hidden state after each frame: (T, S) pooled, or (T, S, H/8, W/8), float16."""
    out = Path(out)
    if out.suffix.lower() != ".npy":
        raise InputError("embeddings are written as .npy", out)
    s = open_stream(model, video, None, device)
    hidden, m = s.model.core.hidden_dim, s.model.multiple
    h4, w4 = -(-s.height // m) * m // 4, -(-s.width // m) * m // 4
    shape = (s.total, hidden) if pooled else (s.total, hidden, h4 // 2, w4 // 2)

    def reduce(chunk: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(chunk).float()
        t = t.mean((-2, -1)) if pooled else F.avg_pool2d(t, 2)
        return t.to(torch.float16).numpy()

    chunks = (
        reduce(c)
        for c in tqdm(
            s.outputs(batch_frames, embed=True), desc="embed", unit="chunk", disable=not progress
        )
    )
    npy_stream(out, shape, np.float16, chunks)
    pred = Prediction(out, shape, "none (learned features)", (0, s.total), None)
    axes = (
        "(T, S): frame i's hidden state averaged over the frame"
        if pooled
        else "(T, S, H', W'): frame i's hidden state of the temporal core at stride 8"
    )
    write_sidecar(out, {**_describe(pred, axes, s.fps), **(provenance or {})})
    return pred

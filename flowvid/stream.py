"""A video streamed through a model in constant memory.

Frames are decoded with PyAV one at a time, grouped into chunks of ``batch_frames`` for the
encoder, and the recurrent core carries its state from chunk to chunk. The model may run at
a working resolution; outputs come back at the clip's own size (flow vectors rescaled).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flowvid.errors import InputError
from flowvid.io.video import open_video
from flowvid.models import FlowVid


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
    model: FlowVid,
    video: str | Path,
    frames: str | None = None,
    device: str = "auto",
    batch_frames: int = 16,
    max_side: int | None = None,
) -> Stream:
    """The one set-up of every prediction: device, model in eval mode, the video's range,
    size and frame rate (a bad range, device or option is an :class:`InputError`)."""
    if batch_frames < 1:
        raise InputError(f"--batch-frames must be at least 1, not {batch_frames}")
    if max_side is not None and max_side < 16:
        raise InputError(f"--max-side must be at least 16 px, not {max_side}")
    video, dev = Path(video), resolve_device(device)
    with open_video(video) as reader:
        start, stop = parse_range(frames, reader.num_frames)
        size, fps, total = (reader.height, reader.width), reader.fps, reader.num_frames
    return Stream(model.to(dev).eval(), dev, video, start, stop, total, *size, fps)


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
            yield to_clip_size(out[0].float(), height, width, model.task == "flow")


def to_clip_size(out: torch.Tensor, height: int, width: int, is_flow: bool) -> np.ndarray:
    """(m, C, h, w) at working size -> (m, H, W, C) at clip size; flow vectors rescaled."""
    if out.shape[0] == 0:
        return np.zeros((0, height, width, out.shape[1]), np.float32)
    h, w = out.shape[-2:]
    if (h, w) != (height, width):
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        if is_flow:
            out = out * out.new_tensor([width / w, height / h]).view(1, 2, 1, 1)
    return out.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)

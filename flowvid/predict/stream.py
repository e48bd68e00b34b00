"""A video streamed through a model in constant memory.

Frames are decoded with PyAV one at a time, grouped into chunks of ``batch_frames`` for the
encoder, and the recurrent core carries its state from chunk to chunk. The model may run at
a working resolution; outputs come back at the clip's own size (flow vectors rescaled).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flowvid.errors import InputError
from flowvid.io.reader import VideoReader
from flowvid.io.video import open_video
from flowvid.models import FlowVid

log = logging.getLogger(__name__)


@dataclass
class Stream:
    """A video opened once for prediction: the model on its device, the video's reader and
    the range to read. Count and rate are the reader's: a video read with its container's
    stated count (``exact=False``) learns the true ones as it is decoded, so ask for them
    after streaming. Close it (or use it in a ``with``) to release the file."""

    model: FlowVid
    device: torch.device
    reader: VideoReader
    start: int  # first frame of the range
    stop: int  # one past its last frame (the stated end for a stream read to its end)
    to_end: bool = True  # read to wherever the video ends, however many frames it states
    precision: str = "auto"  # see resolve_precision

    @property
    def video(self) -> Path:
        return Path(self.reader.path)

    @property
    def total(self) -> int:
        """Frames in the whole video (true once a stream read to its end has ended)."""
        return self.reader.num_frames

    @property
    def height(self) -> int:
        return self.reader.height

    @property
    def width(self) -> int:
        return self.reader.width

    @property
    def fps(self) -> float | None:
        return self.reader.fps

    @property
    def exact(self) -> bool:
        return getattr(self.reader, "index", None) is None or self.reader.index.exact

    @property
    def intensity(self) -> str | None:
        """How the pixel values became 8-bit (stacks of wider data), or None."""
        scaling = getattr(self.reader, "intensity", None)
        return None if scaling is None else scaling.describe

    @property
    def um_per_px(self) -> float | None:
        """The pixel size the file states (TIFF metadata)."""
        return getattr(self.reader, "um_per_px", None)

    @property
    def calibration_source(self) -> str | None:
        """Where the file's pixel size and rate were read."""
        return getattr(self.reader, "calibration_source", None)

    def outputs(
        self,
        batch_frames: int,
        max_side: int | None = None,
        embed: bool = False,
        uncertainty: bool = False,
    ) -> Iterator[np.ndarray]:
        """:func:`stream_outputs` over this stream's range."""
        return stream_outputs(
            self.model,
            self.reader,
            self.start,
            None if self.to_end else self.stop,
            self.device,
            batch_frames,
            max_side,
            embed=embed,
            precision=self.precision,
            uncertainty=uncertainty,
        )

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stream(
    model: FlowVid,
    video: str | Path,
    frames: str | None = None,
    device: str = "auto",
    batch_frames: int = 16,
    max_side: int | None = None,
    exact: bool = True,
    precision: str = "auto",
) -> Stream:
    """The one set-up of every prediction: device, model in eval mode, the video opened once,
    its range (a bad range, device or option is an :class:`InputError`). ``exact=False``:
    see :func:`flowvid.io.video.open_video`; ``precision``: see :func:`resolve_precision`."""
    if batch_frames < 1:
        raise InputError(f"--batch-frames must be at least 1, not {batch_frames}")
    if max_side is not None and max_side < 16:
        raise InputError(f"--max-side must be at least 16 px, not {max_side}")
    video, dev = Path(video), resolve_device(device)
    check_precision(precision, dev)  # a bad value fails before the video is opened
    reader = open_video(video, exact=exact)
    try:
        start, stop = parse_range(frames, reader.num_frames)
    except InputError:
        reader.close()
        raise
    to_end = not frames or not frames.partition(":")[2]
    return Stream(model.to(dev).eval(), dev, reader, start, stop, to_end, precision)


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
    if start < 0 or stop < 0:
        raise InputError(f"--frames counts from 0: {text!r} has a negative frame")
    if stop > total:
        raise InputError(
            f"--frames {text} reaches past the video's end: it has {total} frames (0..{total - 1}"
            f"; {start}: reads to the end)"
        )
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
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} GPUs")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--precision`` on ``device``; None: plain fp32.

    ``auto`` is bf16 on a GPU and fp32 on a CPU. bf16 on a CPU is a choice: on one with bf16
    matrix units (AMX, AVX512-BF16) the model ran 1.6-1.8x faster and the flow moved by
    a few hundredths of a px (BENCHMARKS.md, "bf16 on a CPU"); on one without, it is slower.
    """
    if name not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "fp32" or (name == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def precision_autocast(name: str, device: torch.device) -> torch.autocast:
    """The autocast context of ``--precision`` on ``device`` (switched off for fp32)."""
    dtype = resolve_precision(name, device)
    return torch.autocast(device.type, dtype or torch.bfloat16, enabled=dtype is not None)


def precision_name(name: str, device: torch.device) -> str:
    """What ``--precision`` runs as on ``device``: 'fp32' or 'bf16' (for reports)."""
    return "fp32" if resolve_precision(name, device) is None else "bf16"


def check_precision(name: str, device: torch.device) -> None:
    """Set-up check of ``--precision``: an :class:`InputError` for a bad value, a warning
    where bf16 will be slow."""
    dtype = resolve_precision(name, device)
    if dtype is not None and device.type == "cpu" and not cpu_has_bf16():
        log.warning("this CPU has no bf16 units: --precision bf16 will be slower than fp32")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _working_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


def _chunks(frames: Iterator[np.ndarray], size: int, pin: bool) -> Iterator[torch.Tensor]:
    """Stack frames (H, W, 3) uint8 into chunks (m, H, W, 3), in pinned memory for a GPU."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield _stacked(chunk, pin)
            chunk = []
    if chunk:
        yield _stacked(chunk, pin)


def _stacked(chunk: list[np.ndarray], pin: bool) -> torch.Tensor:
    x = torch.from_numpy(np.stack(chunk))
    return x.pin_memory() if pin else x


_DONE = object()


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run an iterator in a background thread, ``depth`` items ahead of the consumer.

    Decoding (PyAV releases the GIL) then overlaps the model. An error in the thread is
    raised in the consumer; a consumer that stops early (an error, Ctrl-C) stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as err:  # handed to the consumer, raised there
            buffer.put(err)

    thread = threading.Thread(target=produce, name="flowvid-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.05)
        thread.join()


def stream_outputs(
    model: FlowVid,
    reader: VideoReader,
    start: int,
    stop: int | None,
    device: torch.device,
    batch_frames: int,
    max_side: int | None = None,
    embed: bool = False,
    precision: str = "auto",
    uncertainty: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the model's outputs over the reader's frames ``start..stop-1`` (``stop=None``: to
    the video's end) chunk by chunk as numpy arrays at the clip's size.

    Flow: (m, H, W, 2) px/frame. Frames: (m, H, W, 3) in [0, 1]. ``embed``: the hidden
    state per frame, (m, S, h/4, w/4) float16. ``uncertainty`` (a model with an
    expected-error head): each chunk is (m, H, W, 3), the flow with each vector's expected
    end-point error as a third channel, px/frame (scaled like the vectors).

    The stages overlap: a background thread decodes and stacks the next chunks while the
    model runs; on a GPU the chunk's frames go up from pinned memory and its outputs come
    back to pinned memory without blocking, so chunk k+1 computes while chunk k is written.
    ``precision``: see :func:`resolve_precision`.
    """
    cuda = device.type == "cuda"
    resolve_precision(precision, device)  # a bad value fails before any decoding
    if uncertainty and getattr(model, "error_head", None) is None:
        raise InputError(
            "this model has no expected-error head (model.uncertainty): it cannot write "
            "--uncertainty; use the shipped default model or one trained with it"
        )
    model = model.to(memory_format=torch.channels_last)  # faster convolutions, same numbers
    state = model.init_state()
    pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None
    height, width = reader.height, reader.width
    work = _working_size(height, width, max_side)
    for chunk in prefetch(_chunks(reader.iter_frames(start, stop), batch_frames, cuda)):
        x = chunk.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0
        if work != (height, width):
            x = F.interpolate(x, size=work, mode="area")
        with torch.inference_mode(), precision_autocast(precision, device):
            out, state = _step(model, x, state, embed, uncertainty)
        if not embed:
            out = to_clip_size(out.float(), height, width, model.task == "flow")
        # chunk k's outputs start back to the host; then chunk k-1's are handed out
        previous, pending = pending, _to_host(out, cuda)
        if previous is not None:
            yield _ready(previous)
    if pending is not None:
        yield _ready(pending)


def _step(
    model: FlowVid, x: torch.Tensor, state: Any, embed: bool, uncertainty: bool
) -> tuple[torch.Tensor, Any]:
    """One chunk's frames (m, 3, h, w) through the model: the embedding (m, S, h/4, w/4)
    float16, or the outputs (m', C, h, w), the expected error a third channel when asked."""
    if embed:
        out, state = model.embed(x[None], state)
        return out[0].to(torch.float16), state
    if not uncertainty:  # (a two-frame anchor such as RAFT takes no aux)
        out, state = model.step(x[None], state)
        return out[0], state
    aux: dict = {}
    out, state = model.step(x[None], state, aux)
    return _with_error(out, aux)[0], state


def _with_error(out: torch.Tensor, aux: dict | None) -> torch.Tensor:
    """Flow (B, m, 2, H, W) with the expected error as a third channel when it was asked for."""
    if aux is None or out.shape[1] == 0:
        return out if aux is None else out.new_zeros(*out.shape[:2], 3, *out.shape[3:])
    return torch.cat([out, aux["uncertainty"].to(out.dtype)], 2)


def _to_host(out: torch.Tensor, cuda: bool) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    if not cuda:
        return out, None
    host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
    host.copy_(out, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, done


def _ready(item: tuple[torch.Tensor, torch.cuda.Event | None]) -> np.ndarray:
    host, done = item
    if done is not None:
        done.synchronize()
    out = host.numpy()
    return out if out.dtype == np.float16 else out.astype(np.float32, copy=False)


def to_clip_size(out: torch.Tensor, height: int, width: int, is_flow: bool) -> torch.Tensor:
    """(m, C, h, w) at working size -> (m, H, W, C) at clip size, on the model's device;
    flow vectors rescaled."""
    if out.shape[0] == 0:
        return out.new_zeros((0, height, width, out.shape[1]))
    h, w = out.shape[-2:]
    if (h, w) != (height, width):
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        if is_flow:  # u, v and an expected error (third channel) scale with the size
            factors = [width / w, height / h, (width / w + height / h) / 2][: out.shape[1]]
            out = out * out.new_tensor(factors).view(1, -1, 1, 1)
    return out.permute(0, 2, 3, 1)

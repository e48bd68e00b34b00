"""Throughput measurements, each on its own: training steps and the data pipeline (clips/s),
decoding (frames/s), the model and end-to-end prediction (flow maps/s), classical flow and
torchvision RAFT on the same frames, and peak memory against video length.

:func:`run_suite` gathers them into one table from one run on one machine (``flowvid
bench``). Rates are after a warm-up: start-up (imports, model load, CUDA context) is
reported on its own row.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowvid.config import Config
from flowvid.predict.stream import cpu_has_bf16, precision_autocast, resolve_precision
from flowvid.training.module import module_from_config


@dataclass
class Throughput:
    what: str
    size: int
    clip_len: int
    batch: int
    device: str
    precision: str
    per_second: float  # clips/s for training, frames/s for inference
    params: int


def _batch(batch: int, clip_len: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, clip_len, 3, size, size), generator=g, dtype=torch.uint8)
    flow = torch.randn(batch, clip_len - 1, 2, size, size, generator=g)
    mask = torch.rand(batch, clip_len - 1, size, size, generator=g) > 0.8
    return {
        k: v.to(device)
        for k, v in dict(frames=frames, flow=flow, mask=mask, valid=torch.ones_like(mask)).items()
    }


def train_throughput(
    cfg: Config,
    size: int,
    clip_len: int,
    batch: int,
    steps: int = 5,
    device: str = "cpu",
    bf16: bool = False,
) -> Throughput:
    """Clips per second of full training steps: the training module's own loss (augment,
    forward, objective), backward and its optimiser, without the Trainer around them."""
    dev = torch.device(device)
    module = module_from_config(cfg).to(dev).train()
    opt = module.configure_optimizers()["optimizer"]
    data = _batch(batch, clip_len, size, dev)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = module.loss_on(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    rate = steps * batch / (time.perf_counter() - start)
    params = sum(p.numel() for p in module.model.parameters())
    return Throughput(
        "train", size, clip_len, batch, str(dev), "bf16-mixed" if bf16 else "32-true", rate, params
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- the suite


@dataclass
class Row:
    what: str
    size: str
    device: str
    value: float
    unit: str
    note: str = ""


def bench_clip(path: Path, frames: int, size: int) -> Path:
    """An H.264 clip of a random texture panning diagonally 1 px/frame (lossy, like real
    recordings; every frame differs)."""
    from flowvid.io.video import write_video

    rng = np.random.default_rng(0)
    span = size + frames
    from scipy import ndimage

    texture = ndimage.gaussian_filter(rng.random((span, span, 3)), (1.5, 1.5, 0))
    texture = (255 * (texture - texture.min()) / np.ptp(texture)).astype(np.uint8)
    write_video(path, (texture[t : t + size, t : t + size] for t in range(frames)), fps=100)
    return path


def _rate(count: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def decode_rate(video: Path) -> tuple[int, float]:
    """Frames and frames/s of PyAV decoding to RGB arrays (the reader predict uses)."""
    from flowvid.io.video import open_video

    with open_video(video, exact=False) as reader:
        n = reader.num_frames
        return n, _rate(n, lambda: sum(1 for _ in reader.iter_frames()))


def model_rate(
    model,  # noqa: ANN001
    size: int,
    device: torch.device,
    batch_frames: int,
    chunks: int = 3,
    precision: str = "auto",
) -> float:
    """Flow maps/s of the model alone on frames already on the device, streamed in chunks as
    predict runs it (channels_last; ``precision`` as predict's: bf16 autocast on a GPU)."""
    model = model.to(device, memory_format=torch.channels_last).eval()
    x = torch.rand(1, batch_frames, 3, size, size, device=device)
    resolve_precision(precision, device)

    def run(n: int) -> None:
        state = model.init_state()
        with torch.inference_mode(), precision_autocast(precision, device):
            for _ in range(n):
                _, state = model.step(x, state)
        _sync(device)

    run(2)  # warm-up: first chunk and steady state
    return _rate(chunks * batch_frames, lambda: run(chunks))


def predict_rate(
    model,  # noqa: ANN001
    video: Path,
    device: torch.device,
    batch_frames: int,
    precision: str = "auto",
) -> float:
    """Flow maps/s of :func:`flowvid.predict.inference.predict_flow`, video file to .npy file."""
    from flowvid.io.video import open_video
    from flowvid.predict.inference import predict_flow

    options = dict(
        device=str(device), batch_frames=batch_frames, progress=False, precision=precision
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flow.npy"
        with open_video(video) as reader:  # warm-up: two chunks, or the whole of a short video
            warm = min(2 * batch_frames, reader.num_frames)
        predict_flow(model, video, out, frames=f"0:{warm}", **options)
        start = time.perf_counter()
        pred = predict_flow(model, video, out, **options)
        return pred.shape[0] / (time.perf_counter() - start)


def _grey_frames(video: Path, limit: int) -> list[np.ndarray]:
    import cv2

    from flowvid.io.video import open_video

    with open_video(video, exact=False) as reader:
        return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in reader.iter_frames(0, limit)]


def classical_rates(video: Path, pairs: int) -> dict[str, float]:
    """Flow maps/s of OpenCV Farneback and DIS (medium), as `flowvid eval` runs them."""
    from flowvid.predict.classical import dis_medium, farneback

    grey = _grey_frames(video, pairs + 1)
    out = {}
    for name, fn in (("OpenCV Farneback", farneback), ("OpenCV DIS (medium)", dis_medium)):
        fn(grey[0], grey[1])  # warm-up
        out[name] = _rate(
            len(grey) - 1, lambda fn=fn: [fn(a, b) for a, b in itertools.pairwise(grey)]
        )
    return out


def raft_rate(name: str, size: int, device: torch.device, batch: int, rounds: int = 2) -> float:
    """Flow maps/s of torchvision RAFT (random weights: speed only), 12 iterations, fp32."""
    from torchvision.models import optical_flow

    net = getattr(optical_flow, name)(weights=None).to(device).eval()
    a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    b = torch.rand(batch, 3, size, size, device=device) * 2 - 1

    def run(n: int) -> None:
        with torch.inference_mode():
            for _ in range(n):
                net(a, b, num_flow_updates=12)
        _sync(device)

    run(1)
    return _rate(rounds * batch, lambda: run(rounds))


_PEAK = """
import json, sys, torch
from flowvid.predict.allocator import keep_freed_memory
keep_freed_memory()  # as the command line does
from flowvid.checkpoint import load_model
from flowvid.predict.inference import predict_flow
model, _ = load_model(None)
if torch.cuda.is_available() and sys.argv[3] == "cuda":
    torch.cuda.reset_peak_memory_stats()
pred = predict_flow(model, sys.argv[1], sys.argv[2], device=sys.argv[3], progress=False)
cuda = torch.cuda.max_memory_allocated() / 2**20 if sys.argv[3] == "cuda" else None
with open("/proc/self/status") as status:  # VmHWM: this process's own peak, from exec on
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"maps": pred.shape[0], "rss_mb": rss, "cuda_mb": cuda}))
"""


def peak_memory(video: Path, device: torch.device) -> dict[str, float]:
    """Peak RSS (and CUDA memory) of a fresh process predicting the whole video. The peak is
    the process's VmHWM (Linux), not ru_maxrss, which carries the parent's peak across
    fork and exec."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, str(video), str(Path(tmp) / "f.npy"), device.type],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def data_rate(cfg: Config, batches: int) -> float:
    """Clips/s the training data pipeline delivers alone (the config's loader: workers,
    crop, clip length, batch), after its first batch."""
    from flowvid.training.train import build_datamodule

    data = build_datamodule(cfg)
    data.setup("fit")
    loader = iter(data.train_dataloader())
    next(loader)  # workers started
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * cfg.data.batch_size / (time.perf_counter() - start)


@dataclass
class SuiteOptions:
    sizes: tuple[int, ...] = (256, 512)
    frames: int = 200  # frames of the clip timed at each size
    memory_frames: tuple[int, int] = (300, 3000)
    memory_size: int = 64
    batch_frames: int = 16
    raft_batch: int = 4
    classical_pairs: int = 60
    train_batches: int = 10
    train_steps: int = 2


def run_suite(
    device: torch.device,
    options: SuiteOptions,
    config: Config,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Every row of the table, measured now on this machine (see the module docstring)."""
    from flowvid.checkpoint import load_model

    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        log(f"{row.what} | {row.size} | {row.device}: {row.value:.4g} {row.unit} {row.note}")

    start = time.perf_counter()
    model, _ = load_model(None, device)
    add(
        Row(
            "start-up: load the default model (after imports)",
            "-",
            device.type,
            time.perf_counter() - start,
            "s",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in options.sizes:
            clip = bench_clip(Path(tmp) / f"clip{size}.mp4", options.frames, size)
            for row in _speed_rows(model, clip, size, device, options):
                add(row)
        for frames in options.memory_frames:
            clip = bench_clip(Path(tmp) / f"long{frames}.mp4", frames, options.memory_size)
            for row in _memory_rows(clip, frames, options.memory_size, device):
                add(row)
        for row in _training_rows(config, Path(tmp) / "corpus", device, options):
            add(row)
    return rows


def _speed_rows(model, clip: Path, size: int, device: torch.device, o: SuiteOptions):  # noqa: ANN001, ANN202
    label, dev = f"{size}x{size}", device.type
    n, rate = decode_rate(clip)
    yield Row("decode only (PyAV to RGB arrays)", label, "cpu", rate, "frames/s", f"{n} frames")
    rate = model_rate(model, size, device, o.batch_frames)
    yield Row("model only (default model)", label, dev, rate, "maps/s", _precision(device))
    rate = predict_rate(model, clip, device, o.batch_frames)
    note = f"video to .npy, {n - 1} maps"
    yield Row("flowvid predict, end to end", label, dev, rate, "maps/s", note)
    if dev == "cpu" and cpu_has_bf16():  # the opt-in --precision bf16, where it pays
        rate = model_rate(model, size, device, o.batch_frames, precision="bf16")
        yield Row("model only, --precision bf16", label, dev, rate, "maps/s", "bf16 autocast")
        rate = predict_rate(model, clip, device, o.batch_frames, precision="bf16")
        yield Row("flowvid predict, end to end, --precision bf16", label, dev, rate, "maps/s", note)
    for name, rate in classical_rates(clip, o.classical_pairs).items():
        yield Row(name, label, "cpu", rate, "maps/s")
    side = max(size, 128)  # RAFT's correlation pyramid needs 128 px at least
    for name in ("raft_small", "raft_large"):
        rate = raft_rate(name, side, device, o.raft_batch)
        what = f"torchvision {name} (12 iters, fp32)"
        yield Row(what, f"{side}x{side}", dev, rate, "maps/s", "random weights")


def _memory_rows(clip: Path, frames: int, size: int, device: torch.device):  # noqa: ANN202
    peak, label = peak_memory(clip, device), f"{size}x{size}"
    note = f"fresh process; {peak['maps']} maps written"
    yield Row(f"predict peak RSS, {frames} frames", label, device.type, peak["rss_mb"], "MB", note)
    if peak.get("cuda_mb") is not None:
        what = f"predict peak CUDA memory, {frames} frames"
        yield Row(what, label, device.type, peak["cuda_mb"], "MB")


def _training_rows(cfg: Config, corpus: Path, device: torch.device, o: SuiteOptions):  # noqa: ANN202
    from flowvid.data.synth.corpus import write_corpus
    from flowvid.data.synth.synthetic import SynthConfig

    d = cfg.data
    side = d.crop or 256
    write_corpus(corpus, 4, SynthConfig(size=side, frames=4 * d.clip_len), seed=0, progress=False)
    d.root, d.source = str(corpus), "folder"
    label = f"crop {side}, T={d.clip_len}, batch {d.batch_size}"
    rate = data_rate(cfg, o.train_batches)
    yield Row("training data pipeline alone", label, "cpu", rate, "clips/s", f"{d.workers} workers")
    bf16 = device.type == "cuda"
    step = train_throughput(cfg, side, d.clip_len, d.batch_size, o.train_steps, device.type, bf16)
    yield Row(
        "training step alone (fwd, bwd, optimiser)",
        label,
        device.type,
        step.per_second,
        "clips/s",
        step.precision,
    )


def _precision(device: torch.device) -> str:
    return "bf16 autocast" if device.type == "cuda" else "fp32"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    import os
    import platform

    import timm

    from flowvid import __version__

    units = ", bf16 units" if cpu_has_bf16() else ""
    info = {
        "cpu": f"{_cpu_name() or platform.machine()}, {platform.machine()}, "
        f"{os.cpu_count()} cores{units}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "flowvid": __version__,
        "torch threads": str(torch.get_num_threads()),
    }
    return info


def _cpu_name() -> str | None:
    """The CPU's model name (Linux), e.g. 'AMD EPYC 7B13'; None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def markdown(rows: list[Row], info: dict[str, str], command: str, date: str) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Date: {date}  ",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| what | size | device | value | unit | note |",
        "|---|---|---|---:|---|---|",
    ]
    lines += [
        f"| {r.what} | {r.size} | {r.device} | {r.value:.4g} | {r.unit} | {r.note} |" for r in rows
    ]
    return "\n".join(lines) + "\n"

"""Throughput measurements: training steps (clips/s) and streaming inference (frames/s)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from flowvid.config import Config
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

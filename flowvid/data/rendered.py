"""Training clips rendered on the fly by a generator: endless, exact, and no disk.

``RenderedClips`` yields the same sample dict as :class:`~flowvid.data.clips.ClipDataset`:
``frames`` (T, 3, h, w) uint8, ``flow`` (T-1, 2, h, w) float32 px/frame, ``mask`` (T-1, h, w)
bool and ``valid`` (T-1, h, w) bool. Each index renders a fresh clip from its own seed: a
training set draws a new base seed per run (from torch's seeded generator, like
:class:`~flowvid.data.clips.RandomClips`); a validation set uses a fixed one and keeps its
clips in memory, so every validation sees the same clips.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from flowvid.data.synth.corpus import GeneratorConfig, make_renderer
from flowvid.data.synth.motion import MotionConfig
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.errors import InputError

GENERATORS = {"motion": MotionConfig, "vessels": SynthConfig}


def generator_config(
    source: str, size: int, frames: int, options: dict[str, Any]
) -> GeneratorConfig:
    """The generator config for clips of ``frames`` frames of ``size`` px, plus ``options``
    (any of the generator's own keys; its defaults apply to the rest)."""
    if source not in GENERATORS:
        raise InputError(f"unknown data source {source!r}; choose folder or {sorted(GENERATORS)}")
    cls = GENERATORS[source]
    known = {f.name for f in fields(cls)} - {"size", "frames"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"data.generator for {source!r}: unknown keys {unknown}; valid: {sorted(known)}"
        )
    try:
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
        return replace(cfg, size=size, frames=frames)
    except (TypeError, ValueError) as err:
        raise InputError(f"data.generator for {source!r}: {err}") from None


def render_sample(cfg: GeneratorConfig, seed: list[int]) -> dict[str, torch.Tensor]:
    """One clip of ``cfg.frames`` frames as a training sample."""
    r = make_renderer(cfg, np.random.default_rng(seed))
    n = cfg.frames
    frames = np.stack([r.frame(i) for i in range(n)])
    flow = np.stack([r.flow(i) for i in range(n - 1)])
    mask = np.stack([r.mask(i) for i in range(n - 1)])
    return {
        "frames": torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
        "flow": torch.from_numpy(flow).permute(0, 3, 1, 2).contiguous(),
        "mask": torch.from_numpy(mask),
        "valid": torch.from_numpy(np.isfinite(flow).all(-1)),
    }


class RenderedClips(Dataset):
    """``samples`` clips from a generator config; ``seed`` None: a new base seed per run."""

    def __init__(self, cfg: GeneratorConfig, samples: int, seed: int | None = None) -> None:
        self.cfg, self.samples, self.seed = cfg, samples, seed
        self._kept: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.seed is None:
            return render_sample(self.cfg, [int(torch.randint(2**62, ())), index])
        if index not in self._kept:
            self._kept[index] = render_sample(self.cfg, [self.seed, index])
        return self._kept[index]


class MixedClips(Dataset):
    """Training clips from ``main``, a fraction ``mix`` of them replaced by rendered clips
    (e.g. generic motion kept in the vessel stage, so what was learned is refined, not lost).

    The choice is drawn per sample from the run's seeded torch generator, like the clips."""

    def __init__(self, main: Dataset, rendered: RenderedClips, mix: float) -> None:
        if not 0.0 <= mix <= 1.0:
            raise InputError(f"data.motion_mix must be in [0, 1], not {mix}")
        self.main, self.rendered, self.mix = main, rendered, mix

    def __len__(self) -> int:
        return len(self.main)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([int(torch.randint(2**62, ())), index])
        return self.rendered[index] if rng.random() < self.mix else self.main[index]

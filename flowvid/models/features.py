"""What the encoder gives each frame, as one typed structure that travels through the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch


@dataclass
class Features:
    """What the encoder gives each frame, for any leading dimensions (...): (N,) frames, or
    (B, N) frames of B clips. H, W: the frame's size padded to the encoder's largest stride.

    rgb (..., 3, H, W) the frame itself, in [0, 1]; skip (..., C, H/2, W/2) the encoder's
    stride-2 features (None for an encoder without them); g4 (..., D, H/4, W/4) and
    g8 (..., D, H/8, W/8) the fused pyramid; n4, n8 the same at unit length (for matching).
    """

    rgb: torch.Tensor
    skip: torch.Tensor | None
    g4: torch.Tensor
    g8: torch.Tensor
    n4: torch.Tensor
    n8: torch.Tensor

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Features:
        """The same features with ``fn`` applied to each tensor."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Features(**{k: None if v is None else fn(v) for k, v in values.items()})

    def before(self, prev: Features | None) -> Features:
        """(B, N, ...) features -> each frame's predecessor's: ``prev`` (B, ...), the last
        frame of the chunk before, for the first; the first frame itself at a stream's start.
        In each frame's memory layout: an operation mixing channels_last with the default
        layout takes a slow path (the correlations ran 10x slower)."""

        def shifted(name: str) -> torch.Tensor | None:
            v = getattr(self, name)
            if v is None:
                return None
            first = v[:, :1] if prev is None else getattr(prev, name)[:, None]
            return _layout_of(torch.cat([first, v[:, :-1]], 1), v)

        return Features(**{f.name: shifted(f.name) for f in fields(self)})


def _layout_of(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """x (B, N, C, H, W) in the memory layout of like's frames: channels_last or not."""
    frames = like.flatten(0, 1)
    if frames.is_contiguous() or not frames.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])

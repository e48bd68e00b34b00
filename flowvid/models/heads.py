"""Output heads, one per task; each head owns every choice its task makes in the model.

- ``flow``: flow from frame t-1 to frame t (px/frame, u right, v down), on frame t-1's grid,
  so a clip of T frames gives T-1 maps aligned with the ground truth. It starts from the
  feature match and the core corrects it.
- ``frames``: frame t+1 predicted from frames <= t, as a residual on frame t.

``on_previous``: the output lives on frame t-1's grid (so the very first frame of a stream
has no output); ``combine``: how the stride-4 output uses the match; ``clip_outputs``: which
outputs of a whole clip have a target in that clip.
"""

from __future__ import annotations

import torch
from torch import nn


class _Head(nn.Module):
    task: str
    on_previous: bool
    out_channels: int
    init_std: float  # of the last layer: 0 starts at "no motion" / "nothing changes"

    def __init__(self, in_dim: int) -> None:
        """in_dim: the full-resolution features' channels."""
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(in_dim, self.out_channels, 3, padding=1),
        )
        nn.init.normal_(self.net[-1].weight, std=self.init_std)
        nn.init.zeros_(self.net[-1].bias)


class FlowHead(_Head):
    task, on_previous, out_channels, init_std = "flow", True, 2, 1e-3

    @staticmethod
    def combine(coarse: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
        """The core corrects the match: (N, 2, h, w) px each."""
        return coarse + match

    @staticmethod
    def clip_outputs(out: torch.Tensor) -> torch.Tensor:
        """(B, T-1, 2, H, W) from a clip of T frames: every map has its pair in the clip."""
        return out

    def forward(self, x: torch.Tensor, rgb: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """x (N, D, H, W), coarse flow upsampled (N, 2, H, W) -> flow (N, 2, H, W), px/frame."""
        return coarse + self.net(x)


class FramesHead(_Head):
    task, on_previous, out_channels, init_std = "frames", False, 3, 0.0

    @staticmethod
    def combine(coarse: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
        """Predicted change (N, 3, h, w); the match is a cue for the core, not an output."""
        return coarse

    @staticmethod
    def clip_outputs(out: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T-1, ...): the last frame's successor is not in the clip."""
        return out[:, :-1]

    def forward(self, x: torch.Tensor, rgb: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """x (N, D, H, W), rgb = frame t in [0, 1], coarse change (N, 3, H, W)
        -> frame t+1 (N, 3, H, W) in [0, 1]."""
        return (rgb + coarse + self.net(x)).clamp(0.0, 1.0)


HEADS: dict[str, type[nn.Module]] = {"flow": FlowHead, "frames": FramesHead}

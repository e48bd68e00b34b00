"""Output heads. ``anchor`` says which frame's grid the output lives on.

- ``flow``: flow from frame t-1 to frame t (px/frame, u right, v down), on frame t-1's grid,
  so a clip of T frames gives T-1 maps aligned with the ground truth.
- ``frames``: frame t+1 predicted from frames <= t, as a residual on frame t.
"""

from __future__ import annotations

import torch
from torch import nn


class _Head(nn.Module):
    anchor: str
    out_channels: int
    init_std: float  # of the last layer: 0 starts at "no motion" / "nothing changes"

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(in_dim, self.out_channels, 3, padding=1),
        )
        nn.init.normal_(self.net[-1].weight, std=self.init_std)
        nn.init.zeros_(self.net[-1].bias)


class FlowHead(_Head):
    anchor, out_channels, init_std = "previous", 2, 1e-3

    def forward(self, x: torch.Tensor, rgb: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """x (N, D, H, W), coarse flow upsampled (N, 2, H, W) -> flow (N, 2, H, W), px/frame."""
        return coarse + self.net(x)


class FramesHead(_Head):
    anchor, out_channels, init_std = "current", 3, 0.0

    def forward(self, x: torch.Tensor, rgb: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """x (N, D, H, W), rgb = frame t in [0, 1], coarse change (N, 3, H, W)
        -> frame t+1 (N, 3, H, W) in [0, 1]."""
        return (rgb + coarse + self.net(x)).clamp(0.0, 1.0)


HEADS: dict[str, type[nn.Module]] = {"flow": FlowHead, "frames": FramesHead}

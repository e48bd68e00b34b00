"""Output heads. ``anchor`` says which frame's grid the output lives on.

- ``flow``: flow from frame t-1 to frame t (px/frame, u right, v down), on frame t-1's grid,
  so a clip of T frames gives T-1 maps aligned with the ground truth.
- ``frames``: frame t+1 predicted from frames <= t, as a residual on frame t.
"""

from __future__ import annotations

import torch
from torch import nn


class FlowHead(nn.Module):
    anchor = "previous"
    out_channels = 2

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 3, padding=1), nn.GELU(), nn.Conv2d(in_dim, 2, 3, padding=1)
        )
        nn.init.normal_(self.net[-1].weight, std=1e-3)  # start near zero flow
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """x (N, D, H, W) -> flow (N, 2, H, W) in px/frame."""
        return self.net(x)


class FramesHead(nn.Module):
    anchor = "current"
    out_channels = 3

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 3, padding=1), nn.GELU(), nn.Conv2d(in_dim, 3, 3, padding=1)
        )
        nn.init.zeros_(self.net[-1].weight)  # start as "nothing changes"
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """x (N, D, H, W), rgb = frame t in [0, 1] -> frame t+1 (N, 3, H, W) in [0, 1]."""
        return (rgb + self.net(x)).clamp(0.0, 1.0)


HEADS: dict[str, type[nn.Module]] = {"flow": FlowHead, "frames": FramesHead}

"""Iterative refinement of the flow at stride 4: look up the cost around the estimate, update it.

RAFT's lookup-and-update, per output map: sample frame t's features at p + flow(p) + d for a
small window of whole-cell offsets d (bilinear, so the window follows a fractional estimate),
correlate them with frame t-1's features at p, and let one shared network read that volume,
the recurrent state and the estimate to predict an update. The first candidates of the match
are 4 px apart; the lookup gives evidence at the estimate itself, which is what sub-pixel
accuracy needs. Lookup positions are detached (as in RAFT); the update starts at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from flowvid.models.temporal import warped_correlation


class FlowRefiner(nn.Module):
    def __init__(self, state_dim: int, radius: int, iters: int, stride: int = 4) -> None:
        super().__init__()
        self.radius, self.iters, self.stride = radius, iters, stride
        costs = (2 * radius + 1) ** 2
        self.update = nn.Sequential(
            nn.Conv2d(state_dim + costs + 2, 64, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(64, 2, 3, padding=1),
        )
        nn.init.normal_(self.update[-1].weight, std=1e-3)
        nn.init.zeros_(self.update[-1].bias)

    def forward(
        self, flow: torch.Tensor, state: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor
    ) -> torch.Tensor:
        """flow (N, 2, h, w) px on the stride grid; state (N, S, h, w); f1, f2 (N, C, h, w)
        unit-length features of frames t-1 and t. Returns the refined flow, px."""
        for _ in range(self.iters):
            cells = flow.detach() / self.stride
            corr = warped_correlation(f1, f2, cells, self.radius)
            flow = flow + self.update(torch.cat([state, corr, cells], 1))
        return flow

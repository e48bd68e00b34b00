"""Matching frame t-1 against frame t: the expected displacement under a softmax over cost
volumes (:func:`~flowvid.models.temporal.local_correlation`), and their standardisation."""

from __future__ import annotations

import torch
from torch import nn


def displacement_grid(radius: int, stride: int) -> torch.Tensor:
    """(2, (2r+1)^2) displacements in px, in :func:`local_correlation`'s channel order."""
    d = torch.arange(-radius, radius + 1, dtype=torch.float32) * stride
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()])


class SoftMatch(nn.Module):
    """Expected displacement under a softmax over the cost volumes' candidates.

    Costs are cosine similarities; a learned scale sets how sharp the distribution is. The
    output flow is in px of the input frames (the candidates carry their stride).
    """

    def __init__(self, radius4: int, radius8: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(2.0))
        grid = torch.cat([displacement_grid(radius4, 4), displacement_grid(radius8, 8)], 1)
        self.register_buffer("grid", grid, persistent=False)

    def forward(self, costs: torch.Tensor) -> torch.Tensor:
        """costs (N, K, h, w) -> flow (N, 2, h, w) in px."""
        p = torch.softmax(costs.float() * self.log_scale.exp(), 1)
        return torch.einsum("nkhw,dk->ndhw", p, self.grid).to(costs.dtype)


def contrast(corr: torch.Tensor) -> torch.Tensor:
    """Standardise a cost volume over its displacements at each pixel: where the match is,
    not how similar the textures are overall, is the motion evidence."""
    return (corr - corr.mean(1, keepdim=True)) / (corr.std(1, keepdim=True) + 1e-3)

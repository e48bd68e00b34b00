"""The temporal core: convolutional recurrent cells, and the motion cues they read.

Cells share one interface: ``init_state(x)`` gives zeros shaped like the hidden state
for input ``x``; ``cell(x, state) -> (h, state)``. Registry: :data:`CORES`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvGRUCell(nn.Module):
    """h' = (1 - z) h + z tanh(W_q [x, r h]), with gates z, r = sigmoid(W [x, h])."""

    def __init__(self, input_dim: int, hidden_dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.gates = nn.Conv2d(input_dim + hidden_dim, 2 * hidden_dim, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(input_dim + hidden_dim, hidden_dim, kernel, padding=kernel // 2)

    def init_state(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[2:]),)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor, tuple]:
        (h,) = state
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, dim=1)
        q = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        h = (1 - z) * h + z * q
        return h, (h,)


class ConvLSTMCell(nn.Module):
    """c' = f c + i g, h' = o tanh(c'), with i, f, o, g from one convolution of [x, h]."""

    def __init__(self, input_dim: int, hidden_dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.gates = nn.Conv2d(input_dim + hidden_dim, 4 * hidden_dim, kernel, padding=kernel // 2)

    def init_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[2:])
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


CORES: dict[str, type[nn.Module]] = {"gru": ConvGRUCell, "lstm": ConvLSTMCell}


def local_correlation(f1: torch.Tensor, f2: torch.Tensor, radius: int) -> torch.Tensor:
    """Cost volume: corr[:, k](p) = <f1(p), f2(p + d_k)> for |d| <= radius (zeros outside).

    f1, f2: (N, C, H, W); pass unit-length features for cosine similarity. Returns
    (N, (2r+1)^2, H, W); k runs over dy (outer), dx (inner), so a match at displacement
    (dx, dy) lights channel (dy + r) * (2r + 1) + (dx + r).
    """
    h, w = f1.shape[-2:]
    padded = F.pad(f2, (radius, radius, radius, radius))
    out = [
        (f1 * padded[:, :, dy : dy + h, dx : dx + w]).sum(1)
        for dy in range(2 * radius + 1)
        for dx in range(2 * radius + 1)
    ]
    return torch.stack(out, 1)

"""The Lucas-Kanade stage: after the network, the frames have the last word on its flow.

The network says how far off its flow may be at each pixel (``confidence``: the width of
the steps' prior, px) and, with ``trust``, how much the frames' evidence counts there; the
Gauss-Newton steps (:class:`~flowvid.models.lk.DenseLK`) then move the flow to what the
frames show, as far as their texture and noise allow. Both heads start neutral (the prior
the stage was built with, full trust), so a stage added to a trained network starts as the
plain steps.
"""

from __future__ import annotations

import torch
from torch import nn

from flowvid.models.lk import DenseLK

LOG_WIDTH = (-5.0, 3.0)  # the confidence's range: e^-5 .. e^3 x the prior


def _zero_conv(in_dim: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_dim, 1, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class LKStage(nn.Module):
    def __init__(
        self,
        feat_dim: int,
        *,
        iters: int,
        sigma: float,
        levels: int,
        prior: float,
        trust: bool,
        floor: float,
        release: float = 0.0,
    ) -> None:
        """``feat_dim``: channels of the decoder's full-resolution features; the rest are
        :class:`~flowvid.models.lk.DenseLK`'s, and ``trust`` adds the per-pixel trust."""
        super().__init__()
        self.lk = DenseLK(iters, sigma, levels, prior, floor=floor, release=release)
        self.confidence = _zero_conv(feat_dim)
        self.trust = _zero_conv(feat_dim) if trust else None

    def forward(
        self, flow: torch.Tensor, feat: torch.Tensor, img0: torch.Tensor, img1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The network's flow (N, 2, H, W) px from img0 (frame t-1) to img1 (frame t), both
        (N, 3, H, W), and its features ``feat`` (N, D, H, W) -> the refined flow, the prior's
        width (N, 1, H, W) px, the trust (N, 1, H, W) in (0, 2) or None, and the posterior's
        width (N, 1, H, W) px (what the frames leave open, :meth:`DenseLK.refine_with_width`)."""
        # bounded; the bound passes gradients straight through, so a width is never stuck
        log_width = self.confidence(feat)
        log_width = log_width + (log_width.clamp(*LOG_WIDTH) - log_width).detach()
        prior = self.lk.prior * log_width.exp()
        # the frames count from not at all to twice their noise's say
        trust = None if self.trust is None else 2.0 * torch.sigmoid(self.trust(feat))
        refined, width = self.lk.refine_with_width(flow, img0, img1, prior, trust)
        return refined, prior, trust, width

"""Neck and decoders: fuse encoder levels at strides 4 and 8; bring the stride-4 state to full
size, by a U-Net (:class:`UNetDecoder`) or by RAFT's convex upsampling (:class:`ConvexUpsample`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_dim: int, out_dim: int) -> nn.Sequential:
    """Two 3x3 convolutions, each normalised (GroupNorm keeps every input path alive)."""
    groups = max(1, out_dim // 8)
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, 3, padding=1),
        nn.GroupNorm(groups, out_dim),
        nn.GELU(),
        nn.Conv2d(out_dim, out_dim, 3, padding=1),
        nn.GroupNorm(groups, out_dim),
        nn.GELU(),
    )


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class FeaturePyramid(nn.Module):
    """Top-down fusion of every encoder level at stride >= 4 into maps at strides 4 and 8."""

    def __init__(self, channels: list[int], reductions: list[int], dim: int) -> None:
        super().__init__()
        if 4 not in reductions or 8 not in reductions:
            raise ValueError(
                f"the encoder must give stride-4 and stride-8 features, has {reductions}"
            )
        self.levels = [i for i, r in enumerate(reductions) if r >= 4]
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], dim, 1) for i in self.levels)
        self.smooth4 = nn.Conv2d(dim, dim, 3, padding=1)
        self.smooth8 = nn.Conv2d(dim, dim, 3, padding=1)
        self.reductions = [reductions[i] for i in self.levels]

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: encoder maps -> (N, dim, H/4, W/4) and (N, dim, H/8, W/8)."""
        top = None
        out: dict[int, torch.Tensor] = {}
        for lateral, i, r in reversed(
            list(zip(self.lateral, self.levels, self.reductions, strict=True))
        ):
            x = lateral(feats[i])
            top = (
                x
                if top is None
                else x + F.interpolate(top, size=x.shape[-2:], mode="bilinear", align_corners=False)
            )
            out[r] = top
        return self.smooth4(out[4]), self.smooth8(out[8])


class UNetDecoder(nn.Module):
    """Stride-4 state -> full resolution, with the stride-2 encoder skip and the RGB frame."""

    def __init__(self, state_dim: int, skip_dim: int | None, widths: tuple[int, int, int]) -> None:
        super().__init__()
        self.block4 = conv_block(state_dim, widths[0])
        self.block2 = conv_block(widths[0] + (skip_dim or 0), widths[1])
        self.block1 = conv_block(widths[1] + 3, widths[2])
        self.out_dim = widths[2]

    def forward(
        self, state: torch.Tensor, skip: torch.Tensor | None, rgb: torch.Tensor
    ) -> torch.Tensor:
        """state (N, S, H/4, W/4), skip (N, K, H/2, W/2) or None, rgb (N, 3, H, W)
        -> features (N, w, H, W)."""
        x = upsample2(self.block4(state))
        x = self.block2(x if skip is None else torch.cat([x, skip], 1))
        return self.block1(torch.cat([upsample2(x), rgb], 1))


class ConvexUpsample(nn.Module):
    """A stride-4 output to full resolution as learned convex combinations (RAFT, Teed and
    Deng 2020): each full-resolution pixel is a softmax-weighted mean of the 3x3 stride-4 cells
    around its own, the weights predicted from the state. No full-resolution layers run."""

    def __init__(self, state_dim: int, factor: int = 4) -> None:
        super().__init__()
        self.factor = factor
        self.mask = nn.Sequential(
            nn.Conv2d(state_dim, state_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(state_dim, 9 * factor * factor, 1),
        )
        # start from equal weights: each 4x4 block is the mean of its cell's 3x3 neighbourhood
        nn.init.zeros_(self.mask[-1].weight)
        nn.init.zeros_(self.mask[-1].bias)

    def forward(self, out: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """out (N, C, h, w) at stride ``factor``, in full-resolution units; state (N, S, h, w)
        -> (N, C, h * factor, w * factor)."""
        return convex_upsample(out, self.mask(state), self.factor)


def convex_upsample(x: torch.Tensor, logits: torch.Tensor, factor: int) -> torch.Tensor:
    """x (N, C, h, w), logits (N, 9 * factor^2, h, w) -> (N, C, h * factor, w * factor): the
    pixel at sub-position (i, j) of cell (y, x) is sum_k softmax_k(logits) x(neighbour k), k
    over the 3x3 cells around (y, x) (edges replicated), dy outer and dx inner."""
    n, c, h, w = x.shape
    weights = logits.view(n, 1, 9, factor, factor, h, w).softmax(2)
    cells = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3).view(n, c, 9, 1, 1, h, w)
    up = (weights * cells).sum(2)  # (N, C, factor, factor, h, w)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, c, h * factor, w * factor)

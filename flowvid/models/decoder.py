"""Neck and decoders: fuse encoder levels at strides 4 and 8; bring the stride-4 state to full
size, by a U-Net (:class:`UNetDecoder`)."""

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

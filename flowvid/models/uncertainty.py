"""Each flow vector's expected error: a per-pixel scale of the end-point error, px/frame.

The head reads what tells a vector to believe from one to doubt: the decoder's features,
the frames' disagreement with the flow (frame t warped back by it against frame t-1), the
texture there (a flat lumen says nothing about motion), whether the match left the frame,
the speed, and for a model with the Lucas-Kanade steps how far they moved the network's
flow, how wide a prior the network gave them, and how wide their posterior is (the frames'
own word on how well they pin the flow down: hundredths of a px on a clean texture, the
prior's width on a featureless one). Every input is detached: the head learns
to judge the flow and cannot change it, so it costs the flow nothing.

It is trained by the negative log-likelihood of the observed EPE under an exponential
distribution of scale ``s`` (:func:`~flowvid.training.losses.error_nll`),
``EPE / s + log s``, whose minimum over ``s`` is the mean EPE of the pixels that look
alike to the head: ``s`` is the expected EPE, in px/frame, and can be compared with an
actual error directly. (SEA-RAFT's mixture of Laplace heads models the flow's components;
this models the quantity a researcher thresholds.)

What the frames cannot tell is always stated: with the steps, the stated error is at least
the expected EPE of their posterior: ``sqrt(s_head^2 + (sqrt(pi/2) width)^2)``, where
sqrt(pi/2) width is the mean norm of a 2-D normal error of that width along each axis. So a
featureless region, where no method can see the motion, is never called certain because
the clips the head learnt from held few such regions that moved. The head is trained
through that floor, so it learns only what the floor leaves.

It runs at a quarter of the resolution, its cues too (the flow's vectors scaled with it):
a sixteenth of the work, four times the reach; the expected error, in full-resolution
px/frame, is upsampled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flowvid.flowops import backward_warp, sample_grid
from flowvid.models.lk import sobel

LOG_RANGE = (-6.0, 4.0)  # log px: expected errors from 0.0025 to 55 px/frame
START = 0.3  # px: the expected error the untrained head states everywhere
CUES = 4  # residual, texture, out of view, speed
LK_CUES = 3  # with the steps: how far they moved the flow, their prior's and posterior's widths
WIDTH = 16
POOL = 4  # the head runs at a quarter of the resolution: 1/16 of the work, 4x the reach


class ErrorHead(nn.Module):
    def __init__(self, feat_dim: int, lk: bool) -> None:
        super().__init__()
        self.lk = lk
        cues = CUES + (LK_CUES if lk else 0)
        self.net = nn.Sequential(
            nn.Conv2d(feat_dim + cues, WIDTH, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=2, dilation=2),
            nn.GELU(),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=4, dilation=4),
            nn.GELU(),
            nn.Conv2d(WIDTH, 1, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, math.log(START))

    def forward(
        self,
        feat: torch.Tensor,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        lk: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """feat (N, D, H, W), the final flow (N, 2, H, W) from img0 (frame t-1) to img1
        (frame t), both (N, 3, H, W) in [0, 1]; for a model with the steps ``lk``: the flow
        before them, their prior's and their posterior's widths (N, 1, H, W) px.
        -> expected EPE (N, 1, H, W), px/frame."""
        s = self.learned(feat, flow, img0, img1, lk)
        if lk is None:
            return s
        width = lk[2].detach().float()
        return torch.sqrt(s.square() + (math.pi / 2) * width.square())

    def learned(
        self,
        feat: torch.Tensor,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        lk: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """What the head states from its cues, before the posterior's floor (N, 1, H, W)."""
        h, w = flow.shape[-2:]

        def pool(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else F.avg_pool2d(x.detach().float(), POOL, ceil_mode=True)

        with torch.autocast(flow.device.type, enabled=False):
            # the cues of the frames and the flow at the head's own resolution (the vectors
            # scaled with it): a sixteenth of the work of full-resolution cues
            steps = None
            if lk is not None:
                start, prior, width = lk
                steps = (pool(start) / POOL, pool(prior), pool(width))
            cues = self._cues(pool(flow) / POOL, pool(img0), pool(img1), steps)
        x = torch.cat([pool(feat), cues], 1)
        log_s = self.net(x).float()
        log_s = F.interpolate(log_s, size=(h, w), mode="bilinear", align_corners=False)
        # bounded; the bound passes gradients straight through, so a scale is never stuck
        log_s = log_s + (log_s.clamp(*LOG_RANGE) - log_s).detach()
        return log_s.exp()

    @torch.no_grad()
    def _cues(
        self,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        steps: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        residual = (backward_warp(img1, flow, padding="border") - img0).abs().mean(1, keepdim=True)
        texture = sobel(img0).norm(dim=2).mean(1, keepdim=True)
        outside = (sample_grid(flow).abs() > 1.0).any(-1, keepdim=True).permute(0, 3, 1, 2)
        speed = flow.norm(dim=1, keepdim=True)
        cues = [
            torch.log(residual + 1e-3),
            torch.log(texture + 1e-3),
            outside.to(flow.dtype),
            torch.log1p(speed),
        ]
        if self.lk:
            start, prior, width = steps
            moved = (flow - start).norm(dim=1, keepdim=True)
            cues += [torch.log(moved + 1e-3), torch.log(prior), torch.log(width + 1e-3)]
        return torch.cat(cues, 1)

"""The mean over time: each flow map the mean of the stages' maps for its pair and the k - 1
pairs before it (fewer at a video's start), the last stage of a flow model
(``model.temporal_mean`` = k > 1).

Flow in a vessel changes little from one frame to the next, and each pair's map carries its
own noise: the Lucas-Kanade steps read two frames only. The maps are averaged relative to
each map's median vector, the camera's motion, which may change from frame to frame and so
stays each map's own (a camera drifting at a changing speed passes unchanged). The mean
looks back only: a stream holds no map back, and carries the last k - 1 maps from chunk to
chunk (constant memory). The expected error is averaged plainly: where the flow is steady
over the window, the mean map's error is at most the mean of the maps' errors (triangle
inequality).
"""

from __future__ import annotations

import torch
from torch import nn


class TimeMean(nn.Module):
    def __init__(self, maps: int) -> None:
        super().__init__()
        if maps < 2:
            raise ValueError(f"a mean over time takes 2 maps or more, not {maps}")
        self.maps = maps

    def forward(
        self, flow: torch.Tensor, aux: dict[str, torch.Tensor], recent: dict | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """A chunk's maps (B, M, 2, H, W), with what the stages before saw (``aux``; its
        ``uncertainty``, (B, M, 1, H, W), where the error head ran) -> each map the mean of
        it and the maps before it (those of earlier chunks from ``recent``, what the last
        call returned; None at a video's start), ``aux`` with the expected errors averaged
        likewise, and the new ``recent``."""
        # (B, M, 2, 1, 1); contiguous: torch's median reads a broadcast (stride-0) view as nan
        camera = flow.flatten(-2).contiguous().median(-1).values[..., None, None]
        recent = recent or {}
        scene, keep = self._trailing(flow - camera, recent.get("flow"))
        out, keep, aux = scene + camera, {"flow": keep}, dict(aux)
        if "uncertainty" in aux:
            aux["uncertainty"], keep["error"] = self._trailing(
                aux["uncertainty"], recent.get("error")
            )
        return out, aux, keep

    def _trailing(
        self, maps: torch.Tensor, before: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, ...) -> each map's mean with up to ``maps`` - 1 maps before it (``before``:
        the last maps of earlier chunks); and the last maps to keep."""
        k = self.maps
        seq = maps if before is None else torch.cat([before, maps], 1)
        first = seq.shape[1] - maps.shape[1]  # where this chunk starts in seq
        means = [seq[:, max(0, i + 1 - k) : i + 1].mean(1) for i in range(first, seq.shape[1])]
        return torch.stack(means, 1), seq[:, -(k - 1) :]

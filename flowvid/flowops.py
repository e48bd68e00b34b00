"""Small, exact operations on flow fields (torch): backward warping and composition.

Flow tensors are (N, 2, H, W) in px/frame, channel 0 = u (x, right), 1 = v (y, down).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_grid(flow: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) displacement -> grid_sample grid (N, H, W, 2) at p + flow(p), normalised."""
    n, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    y = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([x, y], dim=-1)


def backward_warp(image: torch.Tensor, flow: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """out(p) = image(p + flow(p)), bilinear. image (N, C, H, W), flow (N, 2, H, W).

    With flow[i] moving frame i to i+1, ``backward_warp(frame[i+1], flow[i]) ~ frame[i]``.
    """
    return F.grid_sample(
        image, sample_grid(flow), mode="bilinear", padding_mode=padding, align_corners=True
    )


def compose(flows: torch.Tensor) -> torch.Tensor:
    """Chain consecutive flows (K, 2, H, W) into one (2, H, W): frame 0 -> frame K.

    f_{0->k+1}(p) = f_{0->k}(p) + f_k(p + f_{0->k}(p)).
    """
    total = flows[0:1]
    for k in range(1, flows.shape[0]):
        total = total + backward_warp(flows[k : k + 1], total, padding="border")
    return total[0]

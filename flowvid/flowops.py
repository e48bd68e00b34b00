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


def cubic_warp(image: torch.Tensor, flow: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """out(p) = image(p + flow(p)) by Keys' cubic convolution, edges replicated.

    ``a = -0.5`` is Keys' third-order kernel: it reproduces quadratics exactly, and shifts a
    texture by the asked fraction of a pixel with a quarter of the bias of ``a = -0.75``
    (torch's and OpenCV's "bicubic"), which sub-pixel matching turns into a displacement
    error. image (N, C, H, W), flow (N, 2, H, W) px.
    """
    n, c, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x, y = xs + flow[:, 0], ys + flow[:, 1]  # (N, H, W) each
    x0, y0 = x.floor(), y.floor()
    wx, wy = _keys_weights(x - x0, a), _keys_weights(y - y0, a)  # 4 x (N, H, W) each
    flat = image.reshape(n, c, h * w)
    cols = [(x0 + (i - 1)).clamp(0, w - 1).long() for i in range(4)]
    dtype = torch.promote_types(image.dtype, flow.dtype)  # as out-of-place sums would give
    out = image.new_zeros(n, c, h, w, dtype=dtype)
    for j in range(4):  # separable: each row of taps along x, then the rows along y
        row = (y0 + (j - 1)).clamp(0, h - 1).long() * w
        line = image.new_zeros(n, c, h, w, dtype=dtype)
        for i in range(4):
            taps = flat.gather(2, (row + cols[i]).view(n, 1, h * w).expand(n, c, h * w))
            line = line.addcmul_(wx[i][:, None], taps.view(n, c, h, w))
        out = out.addcmul_(wy[j][:, None], line)
    return out


def _keys_weights(t: torch.Tensor, a: float) -> list[torch.Tensor]:
    """The cubic kernel's weights of the taps at -1, 0, 1 and 2 px for fractions t in [0, 1)."""
    s = 1.0 - t
    return [
        a * (t * s * s),
        1.0 - (a + 3.0) * t * t + (a + 2.0) * t * t * t,
        1.0 - (a + 3.0) * s * s + (a + 2.0) * s * s * s,
        a * (s * t * t),
    ]


def compose(flows: torch.Tensor) -> torch.Tensor:
    """Chain consecutive flows (K, 2, H, W) into one (2, H, W): frame 0 -> frame K.

    f_{0->k+1}(p) = f_{0->k}(p) + f_k(p + f_{0->k}(p)).
    """
    total = flows[0:1]
    for k in range(1, flows.shape[0]):
        total = total + backward_warp(flows[k : k + 1], total, padding="border")
    return total[0]

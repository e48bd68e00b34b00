"""A moving layer of the motion corpus and its exact geometry.

A layer maps its texture coordinates q (px, about its texture's centre) to the screen at
frame t by ``P_t(q) = c_t + s_t R(theta_t) (q + a_t E(q))``, E a smooth fixed displacement
field and a_t its amplitude. :func:`inverse` finds the q a screen pixel shows (fixed-point
iteration: E is mild), :func:`forward` where q is at another frame, :func:`sample` the
texture there, in float (bicubic ``grid_sample``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

WARP_SLOPE = 0.1  # bound on |dE/dq|: with a <= 2 px, q -> r - a E(q) contracts by <= 0.2
WARP_ITERATIONS = 6  # fixed-point steps to invert q + a E(q): error <= 0.2^6 |a E| < 1e-4 px


@dataclass
class Layer:
    """One moving surface: texture with alpha, and its pose at every frame."""

    texture: torch.Tensor  # (1, 4, S, S) RGB + alpha; background alpha is 1 everywhere
    periodic: bool  # background: the texture tiles the plane
    centre: np.ndarray  # (T, 2) screen position of the texture centre, px
    angle: np.ndarray  # (T,) radians, counter-clockwise on screen
    scale: np.ndarray  # (T,)
    warp_amp: np.ndarray  # (T,) amplitude of the non-rigid warp, px
    warp: np.ndarray  # (K, 5) waves of E: kx, ky (rad/px), phase_u, phase_v, coefficient
    radius: float  # texture corner distance from its centre, px (for the on-screen extent)
    speed: float  # base speed of the trajectory, px/frame


def sample(image: torch.Tensor, q: torch.Tensor, periodic: bool) -> torch.Tensor:
    """image (1, C, S, S) at texture coordinates q (H, W, 2) px about its centre -> (C, H, W).

    Bicubic; a periodic image tiles the plane, another is zero outside."""
    size = image.shape[-1]
    pix = q + size / 2 - 0.5  # texture pixel coordinates (centres at integers)
    if periodic:
        pix = torch.remainder(pix, size)
        image = F.pad(image, (3, 3, 3, 3), mode="circular")
        pix, size = pix + 3, size + 6
    grid = ((2 * pix + 1) / size - 1).float()[None]
    return F.grid_sample(image, grid, "bicubic", "zeros", align_corners=False)[0]


def field(layer: Layer, q: torch.Tensor) -> torch.Tensor:
    """E(q): the layer's smooth displacement field at texture coordinates q, (..., 2).

    In float32 (E is a few px at most); positions stay float64."""
    qx, qy = q[..., 0].float(), q[..., 1].float()
    e = torch.zeros(2, *q.shape[:-1])
    for kx, ky, phase_u, phase_v, c in layer.warp:
        arg = float(kx) * qx + float(ky) * qy
        e[0] += float(c) * torch.sin(arg + float(phase_u))
        e[1] += float(c) * torch.sin(arg + float(phase_v))
    return e.permute(*range(1, e.dim()), 0).double()


def inverse(layer: Layer, t: int, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture coordinates q with P_t(q) = p, and E(q)."""
    c, a, s = layer.centre[t], layer.angle[t], layer.scale[t]
    d = p - torch.from_numpy(c)
    cos, sin = np.cos(a), np.sin(a)  # screen y is down: counter-clockwise is (cos, -sin)
    r = torch.stack([cos * d[..., 0] - sin * d[..., 1], sin * d[..., 0] + cos * d[..., 1]], -1)
    r = r / s
    q = r
    e = torch.zeros_like(r)
    if layer.warp_amp[t] != 0.0:
        for _ in range(WARP_ITERATIONS):
            e = field(layer, q)
            q = r - layer.warp_amp[t] * e
        e = field(layer, q)
    return q, e


def forward(layer: Layer, t: int, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """P_t(q) with E(q) = e already known, (H, W, 2)."""
    c, a, s = layer.centre[t], layer.angle[t], layer.scale[t]
    w = q + layer.warp_amp[t] * e
    cos, sin = np.cos(a), np.sin(a)
    x = cos * w[..., 0] + sin * w[..., 1]
    y = -sin * w[..., 0] + cos * w[..., 1]
    return torch.stack([x, y], -1) * s + torch.from_numpy(c)


def extent(layer: Layer, t: int, n: int) -> tuple[slice, slice] | None:
    """The rows and columns of an n x n view where the layer can be non-transparent at frame
    t (its texture's corners, the bicubic support and the warp); None when off-screen."""
    if not np.isfinite(layer.radius):
        return slice(0, n), slice(0, n)
    reach = layer.radius + 3 + abs(layer.warp_amp[t]) * layer.warp[:, 4].sum()
    reach = layer.scale[t] * reach + 2
    (x0, y0), (x1, y1) = layer.centre[t] - reach, layer.centre[t] + reach
    rows = slice(int(max(np.floor(y0), 0)), int(min(np.ceil(y1) + 1, n)))
    cols = slice(int(max(np.floor(x0), 0)), int(min(np.ceil(x1) + 1, n)))
    return None if rows.start >= rows.stop or cols.start >= cols.stop else (rows, cols)

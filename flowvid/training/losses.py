"""Losses. Flow is sparse (blood moves only in vessels), so the flow loss weighs the mean
inside the vessel mask and the mean outside it separately: a plain mean over all pixels
lets "nothing moves" win.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.losses import ssim_loss


def masked_mean(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean of x over ``where`` (0 when empty, keeping the graph)."""
    where = where.to(x.dtype)
    return (x * where).sum() / where.sum().clamp(min=1.0)


def robust_epe(pred: torch.Tensor, target: torch.Tensor, eps: float, power: float) -> torch.Tensor:
    """Generalised Charbonnier of the end-point error: (|pred - target|^2 + eps^2)^power.

    pred, target: (..., 2, H, W) -> (..., H, W).
    """
    return ((pred - target).pow(2).sum(-3) + eps**2).pow(power)


def balanced_flow_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor,
    *,
    inside_weight: float,
    outside_weight: float,
    eps: float,
    power: float,
) -> torch.Tensor:
    """inside_weight * mean robust EPE in the vessel + outside_weight * mean outside it.

    Only ``valid`` pixels count; pred/target (..., 2, H, W), mask/valid (..., H, W) bool.
    """
    err = robust_epe(pred, target, eps, power)
    return balanced_mean(err, mask, valid, inside_weight, outside_weight)


def balanced_mean(
    x: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, inside: float, outside: float
) -> torch.Tensor:
    """inside x the mean of x over the valid vessel pixels + outside x the mean elsewhere."""
    return inside * masked_mean(x, mask & valid) + outside * masked_mean(x, ~mask & valid)


def error_nll(
    pred: torch.Tensor,
    scale: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor,
    *,
    inside_weight: float,
    outside_weight: float,
) -> torch.Tensor:
    """Negative log-likelihood of the flow's end-point error under an exponential distribution
    of the stated scale: EPE / s + log s per pixel, for pred/target (..., 2, H, W) and scale
    (..., 1, H, W) px. Its minimum over s is s = EPE, so for pixels that look alike to the
    model s learns their mean EPE: an expected error in px/frame. The flow is held fixed
    (this term moves the scale, not the flow); inside and outside the vessel are weighed like
    the flow loss."""
    epe = (pred.detach() - target).norm(dim=-3)
    s = scale[..., 0, :, :]
    nll = epe / s + s.log()
    return balanced_mean(nll, mask, valid, inside_weight, outside_weight)


def frames_loss(pred: torch.Tensor, target: torch.Tensor, *, ssim_weight: float) -> torch.Tensor:
    """L1 + ssim_weight * (1 - SSIM) for (B, T, 3, H, W) in [0, 1] (kornia gives (1 - SSIM) / 2)."""
    flat_p, flat_t = pred.flatten(0, 1), target.flatten(0, 1)
    return F.l1_loss(flat_p, flat_t) + ssim_weight * 2 * ssim_loss(flat_p, flat_t, window_size=7)

"""Flow-aware augmentation on the device, the same random parameters for every frame of a clip.

kornia moves pixels; it does not know that flow is made of vectors. Here every geometric
transform with linear part A also transforms the flow vectors: ``f'(A x + t) = A f(x)``.
A horizontal flip negates u, a vertical flip negates v, a 90-degree turn swaps and
negates, a rotation rotates the vectors, a scale multiplies them. Pixels whose source
falls outside the frame become invalid. Photometric jitter, blur, noise and optional
CLAHE imitate the varying quality of real clips.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine
from torch import nn

Batch = dict[str, torch.Tensor]


def hflip(s: Batch) -> Batch:
    out = {k: v.flip(-1) for k, v in s.items()}
    out["flow"] = out["flow"] * out["flow"].new_tensor([-1.0, 1.0]).view(2, 1, 1)
    return out


def vflip(s: Batch) -> Batch:
    out = {k: v.flip(-2) for k, v in s.items()}
    out["flow"] = out["flow"] * out["flow"].new_tensor([1.0, -1.0]).view(2, 1, 1)
    return out


def rot90(s: Batch) -> Batch:
    """torch.rot90 over (H, W): pixel (x, y) -> (y, W-1-x), so (u, v) -> (v, -u)."""
    out = {k: torch.rot90(v, 1, dims=(-2, -1)) for k, v in s.items()}
    u, v = out["flow"].unbind(-3)
    out["flow"] = torch.stack([v, -u], dim=-3)
    return out


def affine(s: Batch, angle_deg: float, scale: float) -> Batch:
    """Rotate by ``angle_deg`` (counter-clockwise on screen) and scale about the centre."""
    frames, flow = s["frames"], s["flow"]
    t, _, h, w = frames.shape
    centre = frames.new_tensor([[(w - 1) / 2, (h - 1) / 2]])
    m = get_rotation_matrix2d(
        centre, frames.new_tensor([angle_deg]), frames.new_tensor([[scale, scale]])
    )

    def warp(x: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        return warp_affine(
            x,
            m.expand(x.shape[0], 2, 3),
            (h, w),
            mode=mode,
            padding_mode="zeros",
            align_corners=True,
        )

    linear = m[0, :, :2]  # vectors transform by the linear part
    moved = warp(flow)
    out = {"frames": warp(frames), "flow": torch.einsum("ij,tjhw->tihw", linear, moved)}
    out["mask"] = warp(s["mask"][:, None].float(), "nearest")[:, 0] > 0.5
    inside = warp(s["valid"][:, None].float())[:, 0] > 0.999
    out["valid"] = inside
    return out


class FlowAugment(nn.Module):
    """Augment a batch: frames (B,T,3,H,W) in [0,1], flow (B,T-1,2,H,W), mask/valid (B,T-1,H,W)."""

    def __init__(
        self,
        *,
        hflip: float = 0.5,
        vflip: float = 0.5,
        rot90: float = 0.5,
        rotate_deg: float = 15.0,  # the affine's rotation range, +- degrees
        scale: tuple[float, float] = (0.8, 1.25),  # zoom range of the affine
        affine_prob: float = 0.5,  # chance of a rotation and zoom
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.02,
        noise_std: float = 0.02,  # sensor noise, up to this std (frames in [0, 1])
        blur_prob: float = 0.2,
    ) -> None:
        super().__init__()
        self.p = dict(hflip=hflip, vflip=vflip, rot90=rot90, affine=affine_prob)
        self.rotate_deg, self.scale, self.noise_std = rotate_deg, tuple(scale), noise_std
        self.photometric = K.VideoSequential(
            K.ColorJitter(brightness, contrast, saturation, hue, p=0.8),
            K.RandomGaussianBlur((5, 5), (0.1, 1.5), p=blur_prob),
            data_format="BTCHW",
            same_on_frame=True,
        )

    def _coin(self, name: str) -> bool:
        return bool(torch.rand(()) < self.p[name])

    def geometric(self, s: Batch) -> Batch:
        """One clip (no batch axis): the same transform for all its frames and flows."""
        if self._coin("hflip"):
            s = hflip(s)
        if self._coin("vflip"):
            s = vflip(s)
        if s["frames"].shape[-1] == s["frames"].shape[-2] and self._coin("rot90"):
            s = rot90(s)
        if self._coin("affine"):
            angle = float(torch.empty(()).uniform_(-self.rotate_deg, self.rotate_deg))
            lo, hi = torch.log(torch.tensor(self.scale))
            s = affine(s, angle, float(torch.exp(torch.empty(()).uniform_(float(lo), float(hi)))))
        return s

    @torch.no_grad()
    def forward(self, batch: Batch) -> Batch:
        keys = ("frames", "flow", "mask", "valid")
        clips = [
            self.geometric({k: batch[k][b] for k in keys}) for b in range(batch["frames"].shape[0])
        ]
        out = {k: torch.stack([c[k] for c in clips]) for k in keys}
        frames = self.photometric(out["frames"])
        if self.noise_std:
            sigma = torch.rand(frames.shape[0], 1, 1, 1, 1, device=frames.device) * self.noise_std
            frames = frames + sigma * torch.randn_like(frames)
        out["frames"] = frames.clamp(0.0, 1.0)
        return out

"""Dense Lucas-Kanade refinement: Gauss-Newton steps on the photometric error of a flow.

The network's flow is an estimate; where the frames have texture, the frames themselves say
how far off it is. Each step backward-warps frame t by the current flow onto frame t-1's
grid, linearises the warped image around it and solves, at every pixel, for the
displacement D of the Gaussian window around it (and a local brightness offset c):

    min_{D, c}  sum_{q in window} t(q) sum_channels (g(q) . (D - flow(q)) + c + r(q))^2 / noise
                +  |D - F|^2 / prior^2

with r = frame_t(q + flow(q)) - frame_{t-1}(q), g the mean of both images' gradients
(efficient second-order minimisation) and F the network's flow at the pixel. Each pixel of
the window is linearised around its own current flow, so the window's solution is its
displacement, not an update of one pixel's flow; flow differences inside a window are not
left standing (updating each pixel by its window's mean correction leaves them). The
second term is a Gaussian prior centred on the network's flow: ``prior`` px is how far off
it may be (a model passes its own per-pixel confidence), never less than ``floor`` px once
the trust below has scaled it (0: no floor), so no confidence can hold the flow against
texture that says otherwise. t is how much each pixel's
evidence counts (1 by default; a model may pass its own per-pixel trust in the frames, low
where their best match is not the motion it measures). ``noise`` is the frames' pixel
noise, the larger of a spatial estimate from each frame (:func:`pixel_noise`) and the
frames' difference where the network's flow is still (:func:`still_noise`, which sees the
noise a video codec has smoothed and the spatial one misses), so a noisy window over smooth
tissue moves the flow little and a clean textured one moves it to the match. Eliminating c
centres the window's statistics, so the 2x2 system is a covariance matrix. The frames are
pre-smoothed (1 px) against noise. Before each step, frame t's channels are matched to
frame t-1's in mean and spread over the image: illumination flicker and bleaching change
brightness, not position. Frame t is sampled by Keys' cubic convolution
(:func:`~flowvid.flowops.cubic_warp`): the sampling kernel's phase error at fractional
shifts is a displacement error, 0.035 px at a quarter pixel with torch's bicubic, 0.009 px
with Keys'. Each step moves the flow at most 1 px, the range where the linearisation holds,
and is damped (Levenberg-Marquardt); a coarse-to-fine pass (``levels`` > 1) applies the
same steps on images averaged 2x, 4x, ... first, adding only their update to the estimate.
A network's confidence is learned where it was trained; on a texture it never saw it can be
sure and wrong by pixels, and hold the steps off the motion. With ``release`` > 0 the coarse
levels run a second time from the network's flow, their prior never narrower than
``release`` px, and their flow wins wherever it explains the frames at least twice as well
(the windows' residual energy); the full-resolution steps then start from the winner.

The steps have no learned weights and are differentiable, so a model trains through them.
Flow convention as everywhere: (N, 2, H, W), channel 0 = u (x, right), 1 = v (y, down),
on frame t-1's grid, frame_{t-1}(p) ~ frame_t(p + flow(p)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from flowvid.flowops import cubic_warp, sample_grid

PRESMOOTH = 1.0  # px: Gaussian sigma that takes pixel noise out of the gradients
STEP_LIMIT = 1.0  # px per Gauss-Newton step at its level
STILL = 0.1  # px: flow under which a pixel counts as still for the temporal noise estimate
STILL_SHARE = 0.1  # of the pixels at least, or the temporal estimate is not used
NOISE_FLOOR = 1e-5  # step damping floor, (intensity/px)^2 per channel
RELEASE_GAIN = 0.5  # the second opinion's residual energy, at most this x the first's


class DenseLK(nn.Module):
    def __init__(
        self,
        iters: int,
        sigma: float = 2.0,
        levels: int = 1,
        prior: float = 0.25,
        damping: float = 0.05,
        floor: float = 0.0,
        release: float = 0.0,
    ):
        super().__init__()
        if min(iters, levels) < 1 or min(sigma, prior) <= 0 or min(damping, floor, release) < 0:
            raise ValueError(
                "DenseLK needs iters >= 1, levels >= 1, sigma > 0, prior > 0, damping >= 0, "
                "floor >= 0, release >= 0"
            )
        if release and levels < 2:
            raise ValueError("DenseLK's release reruns the coarse levels: it needs levels >= 2")
        self.iters, self.sigma, self.levels = iters, sigma, levels
        self.prior, self.damping, self.floor, self.release = prior, damping, floor, release
        radius = max(1, round(3 * sigma))
        self.kernel = 2 * radius + 1
        self.register_buffer("window", gaussian_taps(self.kernel, sigma), persistent=False)
        # white noise of variance v per pixel, pre-smoothed and averaged over a window, has
        # variance v / (4 pi samples): the two Gaussians make one of sigma^2 = samples
        self.samples = sigma**2 + PRESMOOTH**2

    def forward(
        self,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        prior: torch.Tensor | None = None,
        trust: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """flow (N, 2, H, W) px from frame t-1 (img0) to frame t (img1), images (N, C, H, W)
        -> the refined flow (N, 2, H, W). ``prior`` (N, 1, H, W), px: how far off the estimate
        may be at each pixel (a model's own confidence); default: the constant ``prior``.
        ``trust`` (N, 1, H, W) >= 0: how much each pixel's photometric evidence counts, relative
        to the frames' pixel noise (1: as measured, 0: not at all); default 1 everywhere.

        The steps run in fp32 under autocast too: the windowed moments are differences of
        near-equal sums (``exx - mx * mx``), which bf16 convolutions would round away."""
        return self.refine_with_width(flow, img0, img1, prior, trust)[0]

    def refine_with_width(
        self,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        prior: torch.Tensor | None = None,
        trust: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward`, and the width of the last step's posterior (N, 1, H, W) px: the
        standard deviation of the window's displacement along its least certain direction,
        sqrt(noise / (lambda_min + prior term)). Where the window has texture it is the
        frames' word (hundredths of a px on a clean texture); where it has none, the prior's
        width: what the frames cannot tell."""
        with torch.autocast(flow.device.type, enabled=False):
            dtype = flow.dtype
            flow, img0, img1 = flow.float(), img0.float(), img1.float()
            if prior is None:
                prior = flow.new_full((flow.shape[0], 1, *flow.shape[-2:]), self.prior)
            prior, trust = prior.float(), None if trust is None else trust.float()
            start, flow = flow, self._coarse(flow, img0, img1, prior, trust, self.floor)
            if self.release:
                flow = self._second_opinion(flow, start, img0, img1, prior, trust)
            delta, width = self._refine(flow, img0, img1, prior, trust, self.floor)
            return (flow + delta).to(dtype), width

    def _second_opinion(
        self,
        first: torch.Tensor,
        start: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        prior: torch.Tensor,
        trust: torch.Tensor | None,
    ) -> torch.Tensor:
        """The coarse levels again from the network's flow ``start``, their prior never
        narrower than ``release`` px, kept where they explain the frames at least
        ``1 / RELEASE_GAIN`` x better than the ``first`` (the windowed residual energy at full
        resolution): where the network's confidence held the steps off motion that the frames
        show plainly, on a texture the network never learned."""
        second = self._coarse(start, img0, img1, prior, trust, self.release)
        smooth0, smooth1 = self._presmooth(img0), self._presmooth(img1)
        energy = [self.residual_energy(f, smooth0, smooth1) for f in (first, second)]
        return torch.where(energy[1] < RELEASE_GAIN * energy[0], second, first)

    def residual_energy(
        self, flow: torch.Tensor, img0: torch.Tensor, img1: torch.Tensor
    ) -> torch.Tensor:
        """How much of the frames ``flow`` leaves unexplained around each pixel (N, 1, H, W):
        the Gaussian window's variance of frame t warped by it minus frame t-1, summed over
        the channels (a brightness offset, in the window or over the image, costs nothing)."""
        inside = ((sample_grid(flow).abs() <= 1.0).all(-1)).to(img0.dtype)[:, None]
        residual = (match_brightness(cubic_warp(img1, flow), img0, inside) - img0) * inside
        c = residual.shape[1]
        m = self._blur(torch.cat([inside, residual, (residual**2).sum(1, keepdim=True)], 1))
        weight = m[:, :1].clamp_min(1e-6)
        mean = m[:, 1 : 1 + c] / weight
        return m[:, 1 + c :] / weight - (mean**2).sum(1, keepdim=True)

    def _coarse(
        self,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        prior: torch.Tensor,
        trust: torch.Tensor | None,
        floor: float,
    ) -> torch.Tensor:
        """The coarse levels' steps, coarsest first, their prior never narrower than ``floor``
        px (of full resolution): the flow with their updates added."""
        h, w = flow.shape[-2:]
        for level in reversed(range(1, self.levels)):
            size = (max(h // 2**level, 4), max(w // 2**level, 4))
            if min(size) < self.kernel:
                continue  # too small to be worth a level
            scale = flow.new_tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
            delta, _ = self._refine(
                F.interpolate(flow, size=size, mode="area") * scale,
                F.interpolate(img0, size=size, mode="area"),
                F.interpolate(img1, size=size, mode="area"),
                F.interpolate(prior, size=size, mode="area") * scale.mean(),
                None if trust is None else F.interpolate(trust, size=size, mode="area"),
                floor * float(scale.mean()),
            )
            up = F.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow + up / scale
        return flow

    @staticmethod
    def _presmooth(x: torch.Tensor) -> torch.Tensor:
        """Pixel noise out of the gradients; 1 px keeps the texture that matters."""
        return gaussian_blur(x, PRESMOOTH_TAPS.to(x))

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.window.to(x))

    def _refine(
        self,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        prior: torch.Tensor,
        trust: torch.Tensor | None = None,
        floor: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The total update of ``iters`` steps at one level, (N, 2, h, w) px of that level,
        and the last step's posterior width (N, 1, h, w) px; ``floor``, px of that level: the
        least width of the prior, after the trust."""
        c = img0.shape[1]
        smooth0, smooth1 = self._presmooth(img0), self._presmooth(img1)
        # the noise of a window's mean of the pre-smoothed residual, summed over channels
        # (N, 1, 1): the larger of the white-noise reading of the spatial estimate and the
        # frames' difference where the network sees no motion (codec-smoothed noise escapes
        # the first, not the second)
        white = (pixel_noise(img0) + pixel_noise(img1)) / (4 * math.pi * self.samples)
        still = still_noise(img0, img1, flow, self.sigma, smoothed=(smooth0, smooth1))
        noise = torch.maximum(white, still).sum(1)
        img0, img1 = smooth0, smooth1
        grad0 = sobel(img0)  # (N, C, 2, H, W), d/dx then d/dy
        start = flow
        for _ in range(self.iters):
            m = self._moments(flow, img0, img1, grad0, trust)
            # the MAP prior: D ~ N(the network's flow, prior^2), its precision 1 / px^2
            precision = 1.0 / prior[:, 0] ** 2
            if trust is not None:  # a window of trust t holds t x the samples it has
                precision = (
                    precision * (m.coverage / m.weight.clamp_min(1e-4 * m.coverage + 1e-6))[:, 0]
                )
            if floor > 0:  # however sure the network is, or distrustful of the frames
                precision = precision.clamp_max(1.0 / floor**2)
            flow = self._solve(m, noise * precision, flow, start, c)
        return flow - start, _posterior_width(m, precision, noise, prior[:, 0])

    def _moments(
        self,
        flow: torch.Tensor,
        img0: torch.Tensor,
        img1: torch.Tensor,
        grad0: torch.Tensor,
        trust: torch.Tensor | None,
    ) -> Moments:
        """The windowed, centred moments of one Gauss-Newton step: frame t warped by
        ``flow`` against frame t-1, linearised around it."""
        c = img0.shape[1]
        grid = sample_grid(flow)
        warped = cubic_warp(img1, flow)
        inside = ((grid.abs() <= 1.0).all(-1)).to(img0.dtype)[:, None]  # (N, 1, H, W)
        warped = match_brightness(warped, img0, inside)
        g = 0.5 * (grad0 + sobel(warped))
        gx, gy = g[:, :, 0], g[:, :, 1]
        # the residual linearised back to no displacement, r(q) + g(q).(D - flow(q)) =
        # r' + g.D: the window solves for its own displacement D, not for an update of
        # each pixel's flow, so differences of flow inside a window are not left standing
        r = warped - img0 - gx * flow[:, :1] - gy * flow[:, 1:]
        # windowed first moments of every channel and second moments summed over the
        # channels (the sum commutes with the blur; only the sums are used), in one pass
        firsts = torch.cat([gx, gy, r], 1)
        seconds = torch.cat(
            [
                (a * b).sum(1, keepdim=True)
                for a, b in ((gx, gx), (gy, gy), (gx, gy), (gx, r), (gy, r))
            ],
            1,
        )
        # each pixel of a window counts by its trust: the moments are trust-weighted means
        # and the window's evidence scales with its mean trust (against the prior)
        counted = inside if trust is None else inside * trust
        maps = [inside] if trust is None else [inside, counted]
        blurred = self._blur(torch.cat([*maps, counted * firsts, counted * seconds], 1))
        coverage, blurred = blurred[:, :1], blurred[:, len(maps) - 1 :]
        weight = blurred[:, :1].clamp_min(1e-6)
        mx, my, mr = (blurred[:, 1 + k * c : 1 + (k + 1) * c] / weight for k in range(3))
        exx, eyy, exy, exr, eyr = (blurred[:, 1 + 3 * c + k] / weight[:, 0] for k in range(5))
        return Moments(
            sxx=exx - (mx * mx).sum(1),
            syy=eyy - (my * my).sum(1),
            sxy=exy - (mx * my).sum(1),
            bx=exr - (mx * mr).sum(1),
            by=eyr - (my * mr).sum(1),
            coverage=coverage,
            weight=weight,
        )

    def _solve(
        self, m: Moments, lam: torch.Tensor, flow: torch.Tensor, start: torch.Tensor, c: int
    ) -> torch.Tensor:
        """One damped step: each window's 2x2 system with the prior ``lam`` pulling towards
        ``start``, the step bounded to ``STEP_LIMIT`` px."""
        # Levenberg-Marquardt damping of each step (flat windows, ill-posed systems)
        step_damping = self.damping * 0.5 * (m.sxx + m.syy).mean((-2, -1), keepdim=True)
        damp = step_damping + NOISE_FLOOR * c
        axx, ayy = m.sxx + lam + damp, m.syy + lam + damp
        det = axx * ayy - m.sxy * m.sxy
        px = -m.bx + lam * start[:, 0] + damp * flow[:, 0]
        py = -m.by + lam * start[:, 1] + damp * flow[:, 1]
        window = torch.stack([ayy * px - m.sxy * py, axx * py - m.sxy * px], 1) / det[:, None]
        step = (window - flow).clamp(-STEP_LIMIT, STEP_LIMIT)
        return flow + step * (m.coverage > 0.5)


def _posterior_width(
    m: Moments, precision: torch.Tensor, noise: torch.Tensor, prior: torch.Tensor
) -> torch.Tensor:
    """1 / sqrt(smallest eigenvalue of the window's structure tensor / noise + the prior's
    precision), px, (N, 1, H, W): the posterior's standard deviation along the window's least
    certain direction. Windows the steps left alone (under half covered: the match leaves
    the frame) keep the prior's width ``prior`` (N, H, W)."""
    half_trace = 0.5 * (m.sxx + m.syy)
    spread = torch.sqrt((0.5 * (m.sxx - m.syy)) ** 2 + m.sxy**2)
    smallest = (half_trace - spread).clamp_min(0.0)
    covered = m.coverage[:, 0] > 0.5
    evidence = smallest / noise.clamp_min(1e-20)
    width = torch.rsqrt(torch.where(covered, evidence + precision, 1.0))
    return torch.where(covered, width, prior)[:, None]


class Moments(NamedTuple):
    """One step's windowed, centred moments, (N, H, W) each: the structure tensor (sxx, syy,
    sxy), the gradients against the residual (bx, by); the windows' coverage and weight
    (N, 1, H, W)."""

    sxx: torch.Tensor
    syy: torch.Tensor
    sxy: torch.Tensor
    bx: torch.Tensor
    by: torch.Tensor
    coverage: torch.Tensor
    weight: torch.Tensor


def gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` (odd) taps, centred, as kornia's
    ``get_gaussian_kernel1d``, fp32."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (taps / taps.sum()).float()


def gaussian_blur(image: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """kornia's ``gaussian_blur2d`` with edges replicated, (N, C, H, W) by the separable 1-D
    kernel ``taps``: two depthwise passes, which keep a channels-last input's layout (the
    model runs about 20 % faster on 2 CPU cores than with kornia's)."""
    c, r = image.shape[1], taps.numel() // 2
    row = taps.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    padded = F.pad(image, (r, r, r, r), mode="replicate")
    return F.conv2d(F.conv2d(padded, row, groups=c), row.transpose(-1, -2), groups=c)


PRESMOOTH_TAPS = gaussian_taps(5, PRESMOOTH)


def sobel(image: torch.Tensor) -> torch.Tensor:
    """The normalised Sobel gradient of kornia's ``spatial_gradient`` (edges replicated),
    (N, C, H, W) -> (N, C, 2, H, W), d/dx then d/dy, by shifted differences: the same numbers,
    5x faster on a CPU than its convolution of one channel at a time."""
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    dx = p[..., 2:] - p[..., :-2]  # (H + 2, W)
    dy = p[..., 2:, :] - p[..., :-2, :]  # (H, W + 2)
    gx = (dx[..., :-2, :] + 2.0 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8.0
    gy = (dy[..., :-2] + 2.0 * dy[..., 1:-1] + dy[..., 2:]) / 8.0
    return torch.stack([gx, gy], 2)


def match_brightness(image: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor):
    """``image`` (N, C, H, W) with each channel's mean and spread (over ``weight`` > 0) set to
    those of ``reference``: a global gain and offset, which moment matching finds even where
    the two are not aligned yet."""
    total = weight.sum((-2, -1), keepdim=True).clamp_min(1.0)

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weight).sum((-2, -1), keepdim=True) / total
        var = (((x - mean) ** 2) * weight).sum((-2, -1), keepdim=True) / total
        return mean, var.clamp_min(1e-12).sqrt()

    (m, s), (m_ref, s_ref) = moments(image), moments(reference)
    gain = torch.where(s > 1e-4, s_ref / s, torch.ones_like(s))
    return (image - m) * gain + m_ref


def still_noise(
    img0: torch.Tensor,
    img1: torch.Tensor,
    flow: torch.Tensor,
    window: float,
    smoothed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The noise of a Gaussian window's mean (sigma ``window`` px) of the pre-smoothed frames'
    difference, per image and channel (N, C, 1, 1), measured where the flow is under
    ``STILL`` px: there the difference is both frames' noise, whatever its spatial spectrum
    (a codec smooths it away from :func:`pixel_noise`). The pre-smoothing's effect on it
    gives the noise's own correlation length sigma_c (for noise smoothed by a Gaussian,
    var_smoothed / var = sigma_c^2 / (sigma_c^2 + PRESMOOTH^2)); the window then averages
    (sigma_c^2 + PRESMOOTH^2 + window^2) / (sigma_c^2 + PRESMOOTH^2) independent samples of it.
    Robust variances (1.4826 x the median absolute deviation), so a brightness offset and a
    minority of moving pixels among the still ones do not count. 0 where fewer than
    ``STILL_SHARE`` of the pixels are still: moving texture would count as noise.

    The flow's word that a pixel is still is checked against the frames: the part of the
    difference that an affine motion of the still pixels explains (translation, rotation,
    zoom, shear: camera drift, or a whole texture the flow missed) is motion, not noise, and
    is taken out first (:func:`_unexplained`). Noise, uncorrelated with the image's
    gradients, keeps all but 6 of its thousands of degrees of freedom.
    ``smoothed``: the two frames already pre-smoothed, when the caller has them."""
    c = img0.shape[1]
    still = flow.norm(dim=1, keepdim=True) < STILL  # (N, 1, H, W)
    mask = still.expand(-1, c, -1, -1).flatten(2)

    def robust_var(diff: torch.Tensor) -> torch.Tensor:
        diff = diff.flatten(2).masked_fill(~mask, float("nan"))
        centre = diff.nanmedian(-1, keepdim=True).values
        return (1.4826 * (diff - centre).abs().nanmedian(-1, keepdim=True).values) ** 2

    enough = mask.float().mean(-1, keepdim=True) >= STILL_SHARE
    if not bool(enough.any()):
        return img0.new_zeros(img0.shape[0], c, 1, 1)
    smooth0, smooth1 = smoothed or (DenseLK._presmooth(img0), DenseLK._presmooth(img1))
    # the motion is fitted on the pre-smoothed frames (the wider range of the linearisation),
    # at half resolution first (a quarter of the work), and taken out of the raw ones by the
    # same warp
    coef = None
    if min(img0.shape[-2:]) >= 64:
        half = [F.avg_pool2d(x, 2) for x in (smooth0, smooth1, still.to(img0.dtype))]
        coef = 2.0 * _unexplained(half[0], half[1], half[2] > 0.5, steps=2)[2]
    pre, motion, _ = _unexplained(
        smooth0, smooth1, still, steps=1 if coef is not None else 3, coef=coef
    )
    raw = robust_var(cubic_warp(img1, motion) - img0)
    pre = robust_var(pre)
    ratio = (pre / raw.clamp_min(1e-12)).clamp(1e-3, 0.95)
    own = PRESMOOTH**2 * ratio / (1 - ratio)  # sigma_c^2
    var = pre * (own + PRESMOOTH**2) / (own + PRESMOOTH**2 + window**2)
    return torch.where(enough, var.nan_to_num(0.0), 0.0).unsqueeze(-1)


def _unexplained(
    img0: torch.Tensor,
    img1: torch.Tensor,
    where: torch.Tensor,
    steps: int = 3,
    coef: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """img1 - img0 (N, C, H, W), less what one affine motion d(x, y) = A (1, x, y) shared by
    the channels explains over the pixels ``where`` (N, 1, H, W): a few Gauss-Newton steps on
    img1(p + d(p)) - img0(p), each channel's mean difference (a brightness offset) set aside,
    the last step's linear fit subtracted. Also returns that motion, (N, 2, H, W) px, and A
    (N, 2, 3) px over x, y in [-1, 1], from which further steps can start (``coef``). Pixels
    whose match leaves the frame do not count."""
    n, c, h, w = img0.shape
    ys = torch.linspace(-1.0, 1.0, h, device=img0.device, dtype=img0.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=img0.device, dtype=img0.dtype)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    basis = torch.stack([torch.ones_like(x), x, y]).flatten(1)  # (3, P)
    pairs = torch.stack([basis[i] * basis[j] for i in range(3) for j in range(3)])  # (9, P)
    eye = torch.eye(6, device=img0.device, dtype=img0.dtype)
    coef = img0.new_zeros(n, 2, 3) if coef is None else coef  # u, v by (1, x, y)
    flow = torch.einsum("nki,ip->nkp", coef, basis).view(n, 2, h, w)
    for _ in range(steps):
        warped = cubic_warp(img1, flow)
        inside = (sample_grid(flow).abs() <= 1.0).all(-1)[:, None]
        weight = (where & inside).to(img0.dtype)  # (N, 1, H, W)
        total = weight.sum((-2, -1), keepdim=True).clamp_min(1.0)
        g = sobel(0.5 * (img0 + warped))  # (N, C, 2, H, W)
        gx, gy = g[:, :, 0], g[:, :, 1]
        r = warped - img0
        r = r - (r * weight).sum((-2, -1), keepdim=True) / total
        # normal equations of the 6 coefficients from 3 gradient products x 9 basis products
        products = torch.stack([(gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1)], 1)
        m = torch.einsum("nkp,qp->nkq", (products * weight).flatten(2), pairs).view(n, 3, 3, 3)
        normal = torch.cat(
            [torch.cat([m[:, 0], m[:, 1]], -1), torch.cat([m[:, 1], m[:, 2]], -1)], -2
        )  # (N, 6, 6): (u; v) x (1, x, y)
        sides = torch.stack([(gx * r).sum(1), (gy * r).sum(1)], 1) * weight  # (N, 2, H, W)
        right = -torch.einsum("nkp,ip->nki", sides.flatten(2), basis).reshape(n, 6)
        scale = normal.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[:, None, None]
        step = torch.linalg.solve(normal + 1e-6 * scale * eye, right[..., None]).view(n, 2, 3)
        coef = coef + step
        change = torch.einsum("nki,ip->nkp", step, basis).view(n, 2, h, w)
        flow = torch.einsum("nki,ip->nkp", coef, basis).view(n, 2, h, w)
    return r + gx * change[:, :1] + gy * change[:, 1:], flow, coef


def pixel_noise(image: torch.Tensor) -> torch.Tensor:
    """Variance of white pixel noise per image and channel (N, C, 1, 1), from the mean
    absolute response to a Laplacian-difference mask that cancels smooth image content
    (Immerkaer, "Fast noise variance estimation", CVIU 1996)."""
    mask = image.new_tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    c = image.shape[1]
    response = F.conv2d(image, mask.expand(c, 1, 3, 3), groups=c)
    sigma = math.sqrt(math.pi / 2.0) / 6.0 * response.abs().mean((-2, -1), keepdim=True)
    return sigma**2

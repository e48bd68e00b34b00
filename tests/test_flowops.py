"""Keys' cubic warp (flowvid/flowops.py) against answers known exactly."""

import numpy as np
import torch
import torch.nn.functional as F

from flowvid.flowops import cubic_warp, sample_grid
from flowvid.lab.sanity import _shifted, noise_canvas


def _field(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random flow of up to about 3 px, (1, 2, h, w)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = 3.0 * torch.rand(1, 2, 4, 4, generator=gen) - 1.5
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)


def test_a_minus_three_quarters_is_torch_bicubic():
    """Indexing, weights and the replicated edge agree with torch's own cubic (a = -0.75)."""
    image = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    flow = _field(20, 24).expand(2, 2, 20, 24)
    ours = cubic_warp(image, flow, a=-0.75)
    theirs = F.grid_sample(
        image, sample_grid(flow), mode="bicubic", padding_mode="border", align_corners=True
    )
    inner = (slice(None), slice(None), slice(5, -5), slice(5, -5))  # torch clamps per tap
    assert torch.allclose(ours[inner], theirs[inner], atol=1e-5)


def test_quadratics_are_reproduced_exactly():
    """Keys' a = -0.5 kernel is third order: a quadratic image is sampled without error
    anywhere its 4x4 taps stay inside."""
    h, w = 24, 28
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")

    def quad(x, y):
        return 0.3 + 0.02 * x - 0.01 * y + 0.001 * x * x - 0.0015 * x * y + 0.002 * y * y

    image = quad(xs, ys)[None, None]
    flow = _field(h, w, seed=2)
    out = cubic_warp(image, flow)[0, 0]
    truth = quad(xs + flow[0, 0], ys + flow[0, 1])
    inner = (slice(6, -6), slice(6, -6))
    assert torch.allclose(out[inner], truth[inner], atol=2e-5)
    assert not torch.allclose(
        cubic_warp(image, flow, a=-0.75)[0, 0][inner], truth[inner], atol=1e-3
    )


def test_fractional_shifts_of_a_texture_are_nearly_unbiased():
    """A band-limited texture moved by an exact Fourier shift of 0.25 px and sampled back by
    that shift: what is left, read as a displacement (least squares along x), is the
    sampler's bias that sub-pixel matching inherits: 0.036 px with torch's bicubic, under
    half of that with Keys' a = -0.5 (0.014 px; less on pre-smoothed frames)."""
    canvas = noise_canvas(64, seed=3)
    f0, f1 = (
        torch.from_numpy(_shifted(canvas, np.array(d), 64)).permute(2, 0, 1)[None].float()
        for d in ((0.0, 0.0), (0.25, 0.0))
    )
    flow = torch.zeros(1, 2, 64, 64)
    flow[:, 0] = 0.25
    gx = 0.5 * (f0[..., 2:] - f0[..., :-2])[..., 4:-4, 3:-3]

    def apparent_shift(a: float) -> float:
        r = (cubic_warp(f1, flow, a=a) - f0)[..., 4:-4, 4:-4]
        return float(-(gx * r).sum() / (gx * gx).sum())

    keys, bicubic = abs(apparent_shift(-0.5)), abs(apparent_shift(-0.75))
    assert keys < 0.5 * bicubic and keys < 0.02, (keys, bicubic)


def test_gradients_reach_the_flow_and_the_image():
    image = torch.rand(1, 1, 12, 12, requires_grad=True)
    flow = (0.3 * torch.randn(1, 2, 12, 12)).requires_grad_()
    cubic_warp(image, flow).square().sum().backward()
    assert image.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_mixed_precision_inputs_give_the_promoted_precision():
    """A float32 image warped by a float64 flow sums in float64, as out-of-place sums would."""
    torch.manual_seed(0)
    image = torch.rand(1, 2, 9, 11)
    flow = 1.7 * torch.randn(1, 2, 9, 11, dtype=torch.float64)
    out = cubic_warp(image, flow)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, cubic_warp(image.double(), flow), atol=1e-12, rtol=0)

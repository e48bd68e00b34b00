"""Dense Lucas-Kanade refinement (flowvid/models/lk.py) against motion with known answers.

Frames are exact Fourier shifts of a periodic band-limited texture, so the truth is known to
float precision; errors are measured away from the border by the largest displacement.
"""

import numpy as np
import pytest
import torch

from flowvid.errors import InputError
from flowvid.lab.sanity import _shifted, noise_canvas
from flowvid.models import create_model
from flowvid.models.lk import DenseLK, gaussian_blur, gaussian_taps, pixel_noise, sobel, still_noise
from tests.helpers import TINY

SIZE = 80


def pair(d: tuple[float, float], size: int = SIZE, gain: float = 1.0, offset: float = 0.0):
    """Frames 0 and 1 (1, 3, H, W) in [0, 1] where frame 1 is frame 0 moved by d = (dx, dy)."""
    canvas = noise_canvas(size, seed=3)
    f0 = _shifted(canvas, np.zeros(2), size)
    f1 = _shifted(canvas, np.asarray(d, float), size) * gain + offset
    return tuple(torch.from_numpy(f).permute(2, 0, 1)[None].float() for f in (f0, f1))


def uniform(d: tuple[float, float], size: int = SIZE) -> torch.Tensor:
    return torch.tensor(d, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, size, size).clone()


def error(flow: torch.Tensor, d: tuple[float, float], margin: int) -> float:
    diff = flow - uniform(d, flow.shape[-1])
    return float(diff[..., margin:-margin, margin:-margin].norm(dim=1).mean())


def test_sobel_is_kornias_spatial_gradient():
    """The hand-written gradient gives kornia's numbers, the replicated border included, on
    an image with strong edges at its border and a size that is not square."""
    from kornia.filters import spatial_gradient

    torch.manual_seed(0)
    image = torch.rand(2, 3, 17, 23)
    image[..., 0, :] = 5.0  # a bright top row and a dark left column: the border matters
    image[..., :, 0] = -5.0
    torch.testing.assert_close(sobel(image), spatial_gradient(image), atol=1e-6, rtol=1e-6)
    ramp = torch.arange(23.0).expand(1, 1, 17, 23)  # d/dx = 1 inside, 1/2 at the edge columns
    g = sobel(ramp)[0, 0]
    assert torch.all(g[0, :, 1:-1] == 1.0) and torch.all(g[0, :, [0, -1]] == 0.5)
    assert torch.all(g[1] == 0.0)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_gaussian_blur_is_kornias(sigma):
    """The steps' window gives kornia's ``gaussian_blur2d`` numbers with edges replicated, on
    a channels-last input (the model's layout, kept) and a window wider than the image; a
    constant image stays constant, edges included."""
    from kornia.filters import gaussian_blur2d

    torch.manual_seed(0)
    image = torch.rand(2, 16, 11, 29)
    image[..., 0, :] = 5.0  # the border matters
    size = 2 * max(1, round(3 * sigma)) + 1
    expected = gaussian_blur2d(image, size, (sigma, sigma), border_type="replicate")
    ours = gaussian_blur(
        image.contiguous(memory_format=torch.channels_last), gaussian_taps(size, sigma)
    )
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    flat = gaussian_blur(torch.full((1, 2, 5, 6), 0.7), gaussian_taps(size, sigma))
    torch.testing.assert_close(flat, torch.full_like(flat, 0.7))


@pytest.mark.parametrize("d", [(0.3, 0.2), (-0.7, 0.45), (2.0, -1.0)])
def test_recovers_translation_from_a_rough_estimate(d):
    """Starting 30 % off, three steps land within 0.02 px (the cubic sampling's bias at
    fractional shifts, about 0.01 px, is most of what is left); the signs and axes are the
    flow's (u right, v down): frame_t(p + flow) = frame_{t-1}(p)."""
    f0, f1 = pair(d)
    start = uniform(d) * 0.7
    out = DenseLK(3)(start, f0, f1)
    assert error(start, d, 6) > 0.09
    assert error(out, d, 6) < 0.02


def test_the_steps_run_in_fp32_under_autocast():
    """Predict runs bf16 autocast on a GPU (and on a CPU when asked): the steps must give
    their fp32 numbers there, not the rounding of bf16 moment sums."""
    d = (2.0, -1.0)
    f0, f1 = pair(d)
    start = uniform(d) * 0.7
    lk = DenseLK(6, levels=2, prior=1.0)
    plain = lk(start, f0, f1)
    with torch.autocast("cpu", torch.bfloat16):
        mixed = lk(start, f0, f1)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, atol=1e-6, rtol=1e-6)
    assert error(mixed, d, 8) < 0.02


def test_coarse_to_fine_reaches_motion_beyond_one_step():
    """5 px from a zero estimate known to be poor (prior 5 px): one level cannot (steps are
    clipped to 1 px and the linearisation fails), three levels can. With a tight prior the
    estimate holds instead: the frames must outweigh it."""
    d = (4.0, -3.0)
    f0, f1 = pair(d, size=96)
    zero = torch.zeros(1, 2, 96, 96)
    assert error(DenseLK(3, levels=1, prior=5.0)(zero, f0, f1), d, 10) > 2.0
    assert error(DenseLK(3, levels=3, prior=5.0)(zero, f0, f1), d, 10) < 0.1
    assert error(DenseLK(3, levels=3, prior=0.05)(zero, f0, f1), d, 10) > 2.0


def test_static_frames_stay_static_and_a_wrong_estimate_is_pulled_back():
    f0, _ = pair((0.0, 0.0))
    assert DenseLK(3)(torch.zeros(1, 2, SIZE, SIZE), f0, f0).abs().max() < 1e-4
    out = DenseLK(3)(uniform((0.4, -0.3)), f0, f0)
    assert error(out, (0.0, 0.0), 6) < 0.015


def test_brightness_change_is_not_motion():
    """A global gain and offset (flicker, bleaching) between the frames leaves the flow right."""
    d = (0.6, -0.4)
    f0, f1 = pair(d, gain=0.85, offset=0.07)
    out = DenseLK(3)(uniform(d) * 0.5, f0, f1)
    assert error(out, d, 6) < 0.05


def test_textureless_regions_keep_the_estimate():
    """Where the frames are flat, nothing can be measured: the prior (the input) stands."""
    flat = torch.full((1, 3, SIZE, SIZE), 0.4)
    prior = torch.randn(1, 2, SIZE, SIZE) * 0.5
    out = DenseLK(3, levels=3)(prior, flat, flat)
    torch.testing.assert_close(out, prior, atol=1e-5, rtol=0)


def test_differentiable():
    d = (1.0, 0.5)
    f0, f1 = pair(d)
    start = (uniform(d) * 0.8).requires_grad_(True)
    out = DenseLK(2)(start, f0, f1)
    out.sum().backward()
    assert start.grad is not None and torch.isfinite(start.grad).all()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        DenseLK(0)
    with pytest.raises(ValueError):
        DenseLK(2, sigma=0.0)


def test_model_with_lk_streams_like_a_whole_clip():
    """The refinement sits on every output map; chunked streaming stays identical."""
    torch.manual_seed(0)
    model = create_model(**TINY, lk_iters=2, lk_levels=2).eval()
    clip = torch.rand(1, 7, 3, 64, 64)
    with torch.no_grad():
        whole = model(clip)
        state = model.init_state()
        parts = []
        for chunk in (clip[:, :3], clip[:, 3:5], clip[:, 5:]):
            out, state = model.step(chunk, state)
            parts.append(out)
    assert whole.shape == (1, 6, 2, 64, 64)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="lk_iters and model.lk_trust are for flowvid flow"):
        create_model(**{**TINY, "task": "frames"}, lk_iters=2)  # nothing to refine


def test_confidence_starts_at_the_configured_prior_and_a_plain_checkpoint_warm_starts_it():
    """The confidence is new in a model that adds the Lucas-Kanade stage: a warm start from a
    model without it keeps its zero initialisation (prior = `lk_prior` everywhere)."""
    from flowvid.checkpoint import load_weights

    torch.manual_seed(0)
    plain = create_model(**TINY)
    refined = create_model(**TINY, lk_iters=2, lk_prior=0.3)
    kept = load_weights(refined, plain.state_dict(), "plain.pt", new_modules=("refine.",))
    assert kept == ["refine.confidence.bias", "refine.confidence.weight"]
    assert float(refined.refine.confidence.weight.detach().abs().max()) == 0.0
    assert refined.refine.lk.prior == 0.3


def test_config_refuses_bad_lk_settings():
    from flowvid.config import load_config
    from flowvid.errors import InputError

    for bad in ("model.lk_iters=-1", "model.lk_levels=0", "model.lk_prior=0"):
        with pytest.raises(InputError, match="lk_"):
            load_config(None, [bad])
    for bad in ("model.lk_floor=-0.1", "model.lk_floor=0.5"):  # lk_prior is 0.25
        with pytest.raises(InputError, match="lk_floor"):
            load_config(None, [bad])
    for bad in (
        ["model.lk_release=-1"],
        ["model.lk_floor=0.2", "model.lk_release=0.2"],
        ["model.lk_levels=1", "model.lk_release=0.5"],
    ):
        with pytest.raises(InputError, match="lk_release"):
            load_config(None, bad)


def test_a_second_opinion_finds_motion_a_sure_network_missed():
    """A network 3.4 px off on a faint texture (a fifth of the contrast, noise 0.002), sure
    of its flow (a prior 0.1 px wide): the steps cannot move that far against it, and the
    flow stays over a pixel off. The coarse levels' second opinion, their prior never
    narrower than ``release``, find the motion, explain the frames far better, and win; the
    full-resolution steps from there end within 0.08 px, their posterior width with them."""
    d = (3.0, -1.5)
    noise = torch.Generator().manual_seed(0)
    f0, f1 = (
        0.5 + 0.2 * (f - 0.5) + 0.002 * torch.randn(f.shape, generator=noise)
        for f in pair(d, size=96)
    )
    start = uniform((0.5, 0.0), 96)  # the network's flow, 3.4 px off
    sure = torch.full((1, 1, 96, 96), 0.1)
    held = DenseLK(6, sigma=3.0, levels=3, prior=1.0, floor=0.1)
    second = DenseLK(6, sigma=3.0, levels=3, prior=1.0, floor=0.1, release=1.5)
    locked, locked_width = held.refine_with_width(start, f0, f1, sure)
    freed, width = second.refine_with_width(start, f0, f1, sure)
    assert error(locked, d, 12) > 1.0
    assert error(freed, d, 12) < 0.08
    energy = [
        second.residual_energy(f, f0, f1)[..., 12:-12, 12:-12].mean() for f in (locked, freed)
    ]
    # what is left is the frames' noise (2 frames x 3 channels x 0.002^2), a third of before
    assert float(energy[1]) < 1.2 * 6 * 0.002**2 < 0.4 * float(energy[0])
    assert not torch.equal(width, locked_width)


def test_a_second_opinion_leaves_a_right_flow_alone():
    """Where the first opinion already explains the frames (a network right to 0.1 px), the
    second cannot halve the residual energy that is left (the frames' noise): the
    flow is exactly the steps' without it, bit for bit."""
    d = (1.2, 0.7)
    f0, f1 = pair(d, size=64)
    f1 = f1 + 0.005 * torch.randn(f1.shape, generator=torch.Generator().manual_seed(0))
    start = uniform((1.25, 0.62), 64)
    once = DenseLK(6, sigma=3.0, levels=3, prior=1.0, floor=0.1)
    twice = DenseLK(6, sigma=3.0, levels=3, prior=1.0, floor=0.1, release=1.5)
    sure = torch.full((1, 1, 64, 64), 0.3)
    first, second = once(start, f0, f1, sure), twice(start, f0, f1, sure)
    assert error(first, d, 8) < 0.05
    torch.testing.assert_close(second, first, rtol=0, atol=0)


@pytest.mark.parametrize("how", ["confidence", "trust"])
def test_the_floor_keeps_an_overconfident_network_from_overruling_the_frames(how):
    """A network 0.36 px off that is as sure of its flow as it can be (a width of e^-5 x
    lk_prior = 0.003 px) or gives the frames a 200th of their say (trust 0.005, with a width
    of 0.15 px, over the floor) keeps its wrong flow; with ``lk_floor`` the prior is never
    narrower than the floor, whatever the two heads say, and the frames move the flow to the
    truth. Where the floor does not bind, the heads learn."""
    torch.manual_seed(0)
    kwargs = dict(**TINY, lk_iters=3, lk_prior=0.5, lk_trust=how == "trust")
    sure = create_model(**kwargs).eval()
    floored = create_model(**kwargs, lk_floor=0.1).eval()
    floored.load_state_dict(sure.state_dict())
    head = "confidence" if how == "confidence" else "trust"
    f0, f1 = pair((0.3, 0.2), size=64)
    clip = torch.stack([f0[0], f1[0]])[None]
    for model in (sure, floored):
        if how == "confidence":  # the surest width, e^-5 x lk_prior
            torch.nn.init.constant_(model.refine.confidence.bias, -20.0)
        else:  # a width over the floor (0.15 px), and a 200-fold distrust of the frames
            torch.nn.init.constant_(model.refine.confidence.bias, float(np.log(0.3)))
            torch.nn.init.constant_(model.refine.trust.bias, -6.0)
        # the network's own flow: zero, 0.36 px off
        model.head.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        model.coarse.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    aux: dict = {}
    with torch.no_grad():
        locked = sure(clip, aux=aux)[:, 0]
        freed = floored(clip)[:, 0]
    assert float(aux["lk_start"].abs().max()) == 0.0
    if how == "confidence":
        assert float(aux["lk_prior"].max()) == pytest.approx(0.5 * np.exp(-5), rel=1e-4)
    else:
        assert float(aux["lk_prior"].min()) == pytest.approx(0.15, rel=1e-4)
        assert float(aux["lk_trust"].max()) < 0.005
    assert error(locked, (0.3, 0.2), 8) > 0.25  # most of the network's 0.36 px error stays
    assert error(freed, (0.3, 0.2), 8) < 0.03  # the frames have the last word

    # where the floor does not bind, the head learns through the steps as before
    torch.nn.init.zeros_(getattr(floored.refine, head).bias)
    floored.train()
    floored(clip).abs().sum().backward()
    assert float(getattr(floored.refine, head).weight.grad.abs().sum()) > 0


def test_model_reports_where_the_steps_started_and_how_far_they_may_go():
    """``aux`` gets the flow before the steps and the prior width, cropped like the output;
    asking for them changes nothing; the steps start from that flow with that width."""
    torch.manual_seed(0)
    model = create_model(**TINY, lk_iters=2, lk_prior=0.3).eval()
    clip = torch.rand(2, 4, 3, 64, 64)
    aux: dict = {}
    with torch.no_grad():
        out = model(clip, aux=aux)
        plain = model(clip)
        again = model.refine.lk(
            aux["lk_start"].flatten(0, 1),
            clip[:, :-1].flatten(0, 1),
            clip[:, 1:].flatten(0, 1),
            aux["lk_prior"].flatten(0, 1),
        )
        odd: dict = {}
        model(clip[..., :60, :52], aux=odd)  # padded to the encoder's stride, then cropped
    torch.testing.assert_close(out, plain)
    torch.testing.assert_close(again.view(out.shape), out)
    assert aux["lk_start"].shape == (2, 3, 2, 64, 64)
    torch.testing.assert_close(aux["lk_prior"], torch.full((2, 3, 1, 64, 64), 0.3))
    assert odd["lk_start"].shape == (2, 3, 2, 60, 52) and odd["lk_prior"].shape[-2:] == (60, 52)
    none: dict = {}
    create_model(**TINY).eval()(clip[:, :2], aux=none)
    assert none == {}  # no steps, nothing to report


def test_pixel_noise_estimate():
    """Immerkaer's estimate finds white noise of known variance on a smooth image, and
    little on the clean texture."""
    f0, _ = pair((0.0, 0.0), size=128)
    gen = torch.Generator().manual_seed(0)
    noisy = f0 + 0.03 * torch.randn(f0.shape, generator=gen)
    est = pixel_noise(noisy).sqrt().flatten()
    assert torch.all((est > 0.027) & (est < 0.036)), est
    assert float(pixel_noise(f0).sqrt().max()) < 0.005


def test_noisy_frames_over_smooth_texture_hold_the_estimate():
    """Static, smooth, noisy frames (the bright-field failure case): the frames cannot say
    much, so a good estimate stays good, while clean frames would have moved it."""
    size = 96
    f0, _ = pair((0.0, 0.0), size=size)
    smooth = f0.mean(1, keepdim=True).expand_as(f0)
    smooth = torch.nn.functional.avg_pool2d(smooth, 9, 1, 4, count_include_pad=False)
    gen = torch.Generator().manual_seed(1)
    a = smooth + 0.04 * torch.randn(smooth.shape, generator=gen)
    b = smooth + 0.04 * torch.randn(smooth.shape, generator=gen)
    zero = torch.zeros(1, 2, size, size)
    out = DenseLK(3, prior=0.25)(zero, a, b)
    assert error(out, (0.0, 0.0), 8) < 0.1
    # without the noise term, the same frames pull the flow much further
    unguarded = DenseLK(3, prior=100.0)(zero, a, b)
    assert error(unguarded, (0.0, 0.0), 8) > 2 * error(out, (0.0, 0.0), 8)


def codec_smoothed_pair(size: int = 96, sigma: float = 1.5, std: float = 0.03):
    """Two static frames of smooth texture whose noise is smoothed (sigma px), as a video
    codec leaves it: each frame's noise has std ``std`` per pixel."""
    from kornia.filters import gaussian_blur2d

    f0, _ = pair((0.0, 0.0), size=size)
    smooth = torch.nn.functional.avg_pool2d(f0, 9, 1, 4, count_include_pad=False)
    gen = torch.Generator().manual_seed(2)
    frames = []
    for _ in range(2):
        white = torch.randn(smooth.shape, generator=gen)
        coloured = gaussian_blur2d(white, 11, (sigma, sigma), border_type="reflect")
        frames.append(smooth + std * coloured / coloured.std())
    return frames


def window_noise(a: torch.Tensor, b: torch.Tensor, window: float = 2.0) -> torch.Tensor:
    """What the steps need to know, measured: the variance of a window's mean of the
    pre-smoothed difference of two still frames, per channel (1, C)."""

    lk = DenseLK(1, sigma=window)
    diff = lk._blur(DenseLK._presmooth(b) - DenseLK._presmooth(a))
    return diff[..., 12:-12, 12:-12].flatten(2).var(-1)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_still_noise_predicts_the_noise_of_a_window(sigma):
    """White (sigma 0) or codec-smoothed (1.5 px) noise on still frames: the estimate from
    the still pixels matches the measured noise of a window's mean within 20 % (over the
    channels; the measurement itself varies by some 15 % per channel at this size). The
    spatial estimate (white-noise reading) does too for white noise, and sees under a fifth
    of it for smoothed noise. Not used when too few pixels are still (moving texture would count
    as noise); a still minority is enough."""
    a, b = codec_smoothed_pair(sigma=sigma) if sigma else noisy_still_pair()
    zero = torch.zeros(1, 2, 96, 96)
    truth = window_noise(a, b)
    est = still_noise(a, b, zero, 2.0).flatten(1)
    assert 0.8 < float(est.mean() / truth.mean()) < 1.2, (est, truth)
    white = (pixel_noise(a) + pixel_noise(b)).flatten(1) / (4 * np.pi * DenseLK(1).samples)
    if sigma:
        assert torch.all(white < 0.2 * truth), (white, truth)
    else:
        assert 0.8 < float(white.mean() / truth.mean()) < 1.2, (white, truth)
    assert float(still_noise(a, b, zero + 0.5, 2.0).abs().max()) == 0.0
    half = zero.clone()
    half[..., :60] = 0.5  # 62 % moving: the still rest still gives the estimate
    torch.testing.assert_close(
        still_noise(a, b, half, 2.0), still_noise(a, b, zero, 2.0), rtol=0.3, atol=0
    )


@pytest.mark.parametrize(
    "case",
    [("translate", 0.5, 0.3), ("rotate", 0.02, 0.0), ("zoom", 0.015, 0.0), ("drift", 1.57, 4.0)],
    ids=lambda c: c[0],
)
def test_still_noise_is_not_fooled_by_motion_the_flow_missed(case):
    """A flow that calls a whole moving texture still (what a network does on a look it never
    saw) must not make its motion count as noise, which would hold the flow at zero: the
    difference an affine motion explains is taken out first. The estimate stays within 2x of
    the frames' true window noise, where the plain difference reads it 5x too high or more;
    and the steps, started from zero flow, find the motion."""
    from flowvid.lab import sanity

    kind, rate, angle = case
    frames, truth = sanity.render_case(
        sanity.Case(kind, kind, rate, angle), noise_canvas(96, seed=4), 96, 2
    )
    gen = torch.Generator().manual_seed(3)
    a, b = (
        torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255
        + 0.01 * torch.randn(1, 3, 96, 96, generator=gen)
        for f in frames
    )
    zero = torch.zeros(1, 2, 96, 96)
    est = float(still_noise(a, b, zero, 2.0).mean())
    still_a = sanity.render_case(sanity.Case("s", "static", 0.0), noise_canvas(96, 4), 96, 1)[0]
    base = torch.from_numpy(still_a[0]).permute(2, 0, 1)[None].float() / 255
    noise_only = window_noise(
        base + 0.01 * torch.randn(1, 3, 96, 96, generator=gen),
        base + 0.01 * torch.randn(1, 3, 96, 96, generator=gen),
    )
    truth_noise = float(noise_only.mean())
    assert 0.5 < est / truth_noise < 2.0, (est, truth_noise)
    lk = DenseLK(1)
    naive = lk._blur(DenseLK._presmooth(b) - DenseLK._presmooth(a))[..., 12:-12, 12:-12]
    assert float(naive.flatten(2).var(-1).mean()) > 5 * truth_noise  # what the guard prevents
    out = DenseLK(6, levels=2, prior=1.0)(zero, a, b)
    epe = (out[0].permute(1, 2, 0).numpy() - truth[0])[12:-12, 12:-12]
    assert float(np.linalg.norm(epe, axis=-1).mean()) < 0.1 * max(1.0, rate)


def noisy_still_pair(size: int = 96, std: float = 0.03):
    f0, _ = pair((0.0, 0.0), size=size)
    smooth = torch.nn.functional.avg_pool2d(f0, 9, 1, 4, count_include_pad=False)
    gen = torch.Generator().manual_seed(4)
    return [smooth + std * torch.randn(smooth.shape, generator=gen) for _ in range(2)]


def test_codec_smoothed_noise_does_not_move_a_still_estimate(monkeypatch):
    """Static frames with codec-smoothed noise over texture too smooth to measure: the steps
    hold a zero flow within 0.25 px (the smoothed noise still looks a little like texture);
    with only the spatial noise estimate, it reads as texture and pulls the flow some 2 px
    off."""
    import flowvid.models.lk as lk_module

    a, b = codec_smoothed_pair()
    zero = torch.zeros(1, 2, 96, 96)
    lk = DenseLK(6, levels=2, prior=1.0)
    held = error(lk(zero, a, b), (0.0, 0.0), 8)
    monkeypatch.setattr(lk_module, "still_noise", lambda *args, **kwargs: torch.zeros(1))
    fooled = error(lk(zero, a, b), (0.0, 0.0), 8)
    assert held < 0.25 and fooled > 5 * held, (held, fooled)


def two_layers(size: int = SIZE, split: int = SIZE // 2, d: float = 2.0):
    """Frame 1 moves the left columns (< split) of frame 0 by d px to the right and leaves the
    right ones still; the true flow on frame 0's grid, (1, 2, H, W)."""
    canvas = noise_canvas(size, seed=3)
    f0 = _shifted(canvas, np.zeros(2), size)
    f1 = f0.copy()
    f1[:, :split] = _shifted(canvas, np.array([d, 0.0]), size)[:, :split]
    truth = torch.zeros(1, 2, size, size)
    truth[:, 0, :, :split] = d
    return *(torch.from_numpy(f).permute(2, 0, 1)[None].float() for f in (f0, f1)), truth


def test_unit_trust_is_no_trust_at_all():
    """trust = 1 everywhere is the default, to float precision, at every level."""
    f0, f1 = pair((1.3, -0.6))
    start = uniform((1.0, -0.4))
    lk = DenseLK(3, levels=2, prior=1.0)
    torch.testing.assert_close(
        lk(start, f0, f1, trust=torch.ones(1, 1, SIZE, SIZE)), lk(start, f0, f1), atol=1e-5, rtol=0
    )


def test_untrusted_pixels_leave_a_window_and_untrusted_frames_leave_the_estimate():
    """Two layers: a window on the moving side near the edge also holds still pixels, which
    pull its displacement toward 0 (0.1-1.1 px off); trusting only the moving side keeps it
    at the truth, up to the edge.
    Trusting no pixel leaves the estimate where it started, though the frames say otherwise."""
    f0, f1, truth = two_layers()
    lk = DenseLK(3, prior=1.0)
    band = (slice(8, -8), slice(SIZE // 2 - 6, SIZE // 2))  # moving side, up to the edge
    # trusted: the moving side less the 2 columns it occludes and the 2 that pre-smoothing
    # mixes with them
    moving = torch.zeros(1, 1, SIZE, SIZE)
    moving[..., : SIZE // 2 - 4] = 1.0

    def band_error(flow: torch.Tensor) -> float:
        return float((flow - truth)[0][:, band[0], band[1]].norm(dim=0).mean())

    assert band_error(lk(truth, f0, f1)) > 0.2
    assert band_error(lk(truth, f0, f1, trust=moving)) < 0.02
    off = uniform((0.5, 0.0))  # everywhere wrong; the frames would correct it
    assert error(lk(off, f0, f0), (0.0, 0.0), 8) < 0.05
    kept = lk(off, f0, f0, trust=torch.zeros(1, 1, SIZE, SIZE))
    torch.testing.assert_close(kept, off, atol=2e-3, rtol=0)


def test_trust_is_learned_through_the_steps():
    """`lk_trust` starts at 1 everywhere (the model equals one without it), is reported in
    ``aux``, takes gradients, and needs the steps."""
    from flowvid.config import load_config
    from flowvid.errors import InputError

    torch.manual_seed(0)
    plain = create_model(**TINY, lk_iters=2, lk_prior=0.5).eval()
    trusting = create_model(**TINY, lk_iters=2, lk_prior=0.5, lk_trust=True).eval()
    missing = trusting.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["refine.trust.bias", "refine.trust.weight"]
    clip = torch.rand(1, 3, 3, 64, 64)
    aux: dict = {}
    with torch.no_grad():
        torch.testing.assert_close(trusting(clip, aux), plain(clip), atol=1e-5, rtol=0)
    torch.testing.assert_close(aux["lk_trust"], torch.ones(1, 2, 1, 64, 64))
    trusting.train()
    trusting(clip).square().mean().backward()
    assert float(trusting.refine.trust.weight.grad.abs().sum()) > 0
    with pytest.raises(InputError, match="lk_trust"):
        load_config(None, ["model.lk_trust=true"])
    assert load_config(None, ["model.lk_iters=2", "model.lk_trust=true"]).model.lk_trust


def test_the_posterior_width_is_the_priors_where_nothing_is_seen_and_the_noises_elsewhere():
    """Featureless frames leave the prior's width (what the frames cannot tell); on a
    texture the frames' evidence adds to the prior's precision, 1 / width^2 = E / noise^2 +
    1 / prior^2, so white noise twice as strong leaves a quarter of the evidence."""
    lk = DenseLK(3, prior=0.5)
    flat = torch.full((1, 3, SIZE, SIZE), 0.4)
    _, width = lk.refine_with_width(torch.zeros(1, 2, SIZE, SIZE), flat, flat)
    torch.testing.assert_close(width, torch.full_like(width, 0.5))
    f0, f1 = pair((0.6, -0.3))
    widths = []
    for sigma in (0.01, 0.02):
        g = torch.Generator().manual_seed(0)
        noisy = [f + sigma * torch.randn(f.shape, generator=g) for f in (f0, f1)]
        _, width = lk.refine_with_width(uniform((0.6, -0.3)), *noisy)
        widths.append(float(width[..., 10:-10, 10:-10].median()))
    assert widths[0] < widths[1] < 0.5, widths
    evidence = [1 / w**2 - 1 / 0.5**2 for w in widths]
    assert evidence[0] / evidence[1] == pytest.approx(4.0, rel=0.15), widths


def test_the_ablation_tool_builds_a_model_with_the_steps_changed_or_off(tmp_path):
    """tools/lk_ablation.py on a checkpoint with the steps, their heads and the expected
    error: a changed setting keeps every weight; the steps off drop their heads and the
    expected error (the steps are among its cues), and the model still runs."""
    import importlib.util
    from pathlib import Path

    from flowvid.checkpoint import save_checkpoint

    spec = importlib.util.spec_from_file_location(
        "lk_ablation", Path(__file__).parents[1] / "tools" / "lk_ablation.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    kwargs = {**TINY, "lk_iters": 2, "lk_prior": 1.0, "lk_trust": True, "uncertainty": True}
    torch.manual_seed(0)
    source = create_model(**kwargs)
    path = save_checkpoint(tmp_path / "m.pt", source, kwargs, {})
    floored = tool.build(str(path), tool.parse_lk("floor=0.5,iters=3"))
    assert floored.refine.lk.floor == 0.5 and floored.refine.lk.iters == 3
    for key, value in source.state_dict().items():
        torch.testing.assert_close(floored.state_dict()[key], value)
    off = tool.build(str(path), tool.parse_lk("iters=0"))
    assert off.refine is None and off.error_head is None
    with torch.no_grad():
        assert off(torch.rand(1, 3, 3, 64, 64)).shape == (1, 2, 2, 64, 64)

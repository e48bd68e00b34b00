"""Model contracts: every registered encoder/core/head, gradients, streaming, ImageNet init."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowvid.errors import InputError
from flowvid.models import create_model
from flowvid.models.encoder import Encoder
from flowvid.models.temporal import CORES, local_correlation, warped_correlation

ENCODERS = ["tf_efficientnet_lite0", "resnet18", "resnet34", "efficientnet_b0", "convnext_atto"]
SMALL = dict(
    pretrained="none",
    hidden=16,
    context=16,
    corr_radius=1,
    coarse_corr_radius=1,
    decoder_widths=(16, 8, 8),
)


def _open(model):
    """Undo the near-zero inits that would hide a broken path in a random-weight model."""
    if model.upsampler is not None:  # convex upsampling: its weights start at zero
        torch.nn.init.normal_(model.upsampler.mask[-1].weight, std=0.1)
        torch.nn.init.normal_(model.coarse.weight, std=0.1)
    else:
        torch.nn.init.normal_(model.head.net[-1].weight, std=0.1)  # heads start near zero output
    for m in model.modules():  # timm zero-initialises each residual block's last BN
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    if model.lookahead:  # the later frames' branch starts at zero too
        torch.nn.init.normal_(model.ahead[-1].weight, std=0.1)


def _stream(model, clip, cuts):
    """The model's outputs for ``clip`` fed chunk by chunk, cut before the frames in ``cuts``."""
    state, parts = model.init_state(), []
    with torch.no_grad():
        for a, b in zip((0, *cuts), (*cuts, clip.shape[1]), strict=True):
            out, state = model.step(clip[:, a:b], state)
            parts.append(out)
    return torch.cat(parts, 1)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_contract(name):
    enc = Encoder(name, pretrained="none")
    x = torch.rand(2, 3, 64, 96, requires_grad=False)
    feats = enc(x)
    assert len(feats) == len(enc.channels) == len(enc.reductions)
    for f, c, r in zip(feats, enc.channels, enc.reductions, strict=True):
        assert f.shape == (2, c, 64 // r, 96 // r)
    assert enc.mean.shape == (1, 3, 1, 1) and enc.std.shape == (1, 3, 1, 1)
    sum((f**2).mean() for f in feats).backward()
    no_grad = [n for n, p in enc.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad[:5]


@pytest.mark.parametrize("core", sorted(CORES))
@pytest.mark.parametrize("task", ["flow", "frames", "flow, lookahead 2"])
def test_every_parameter_gets_a_gradient(core, task):
    look = 2 if task.endswith("lookahead 2") else 0
    task = task.split(",")[0]
    model = create_model(encoder="resnet18", core=core, task=task, lookahead=look, **SMALL)
    _open(model)
    out = model(torch.rand(1, 4, 3, 64, 64))
    assert out.shape == (1, 3, 3 if task == "frames" else 2, 64, 64)
    (out**2).mean().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, missing[:5]


@pytest.mark.parametrize("core", sorted(CORES))
@pytest.mark.parametrize("task", ["flow", "frames"])
def test_streaming_equals_whole_clip(core, task):
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", core=core, task=task, **SMALL).eval()
    for p in model.head.parameters():  # non-trivial outputs: the zero-ish init would hide errors
        torch.nn.init.normal_(p, std=0.3)
    clip = torch.rand(2, 7, 3, 50, 70)  # odd size: padded inside, cropped back
    with torch.no_grad():
        whole = model(clip)
        state, parts = model.init_state(), []
        for chunk in (clip[:, :1], clip[:, 1:4], clip[:, 4:]):
            out, state = model.step(chunk, state)
            parts.append(out)
    streamed = torch.cat(parts, 1)
    if task == "frames":
        streamed = streamed[:, :-1]  # the last prediction is of a frame the clip does not have
    assert whole.shape == (2, 6, 3 if task == "frames" else 2, 50, 70)
    assert whole.abs().mean() > 1e-2
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-4)


def test_channels_last_gives_the_same_flow_and_never_mixes_layouts(monkeypatch):
    """Predict runs the model channels_last. Its outputs must match the default layout. Every
    correlation must pair two tensors of one layout: a mixed pair ran 10x slower. The
    frames themselves must follow the weights too."""
    import flowvid.models.model as model_module

    torch.manual_seed(0)
    model = create_model(encoder="resnet18", **SMALL).eval()
    _open(model)
    clip = torch.rand(1, 6, 3, 48, 64)
    with torch.no_grad():
        plain = model(clip)
    layouts = []

    def spy(f1, f2, radius):
        layouts.append(tuple(f.is_contiguous(memory_format=torch.channels_last) for f in (f1, f2)))
        return local_correlation(f1, f2, radius)

    monkeypatch.setattr(model_module, "local_correlation", spy)
    fast = model.to(memory_format=torch.channels_last)
    state, parts = fast.init_state(), []
    with torch.no_grad():
        for chunk in (clip[:, :3], clip[:, 3:]):  # the second chunk starts from the state
            out, state = fast.step(chunk, state)
            parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), plain, atol=1e-5, rtol=1e-4)
    assert layouts and all(pair == (True, True) for pair in layouts), layouts
    assert state.prev["rgb"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("look", [1, 3])
def test_lookahead_streaming_equals_whole_clip_however_cut(look):
    """Maps held back for their later frames come out in order, the same for any chunking;
    finish() hands out the rest; the total is T-1 maps."""
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", lookahead=look, **SMALL).eval()
    _open(model)
    clip = torch.rand(1, 8, 3, 40, 56)
    with torch.no_grad():
        whole = model(clip)
    assert whole.shape == (1, 7, 2, 40, 56)
    for cuts in [(1, 2, 3, 4, 5, 6, 7), (3,), (5, 6), (2, 7)]:
        state, parts = model.init_state(), []
        with torch.no_grad():
            for a, b in zip((0, *cuts), (*cuts, 8), strict=True):
                out, state = model.step(clip[:, a:b], state)
                parts.append(out)
            tail = model.finish(state)
        assert tail is not None and tail.shape[1] == min(look, 7)
        assert model.finish(state) is None  # handed out once
        torch.testing.assert_close(torch.cat([*parts, tail], 1), whole, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("look", [0, 2])
def test_flow_map_i_reads_frames_up_to_i_plus_1_plus_lookahead(look):
    """Map i moves frame i to i+1 and also reads the next ``lookahead`` frames: a change in
    the last frame reaches the last lookahead + 1 maps (the last alone for a causal model),
    and none before them."""
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", lookahead=look, **SMALL).eval()
    _open(model)
    clip = torch.rand(1, 7, 3, 32, 32)
    other = clip.clone()
    other[:, -1] = torch.rand(3, 32, 32)
    with torch.no_grad():
        a, b = model(clip), model(other)
    assert a.shape[1] == 6  # T-1 maps
    change = (a - b).flatten(2).abs().amax(2)[0]
    torch.testing.assert_close(change[: 5 - look], torch.zeros(5 - look))
    assert (change[5 - look :] > 1e-3 * a.abs().max()).all()


def test_lookahead_starts_as_the_causal_model():
    """The later frames' branch starts at zero: a causal model's weights give its outputs."""
    torch.manual_seed(0)
    causal = create_model(encoder="resnet18", **SMALL).eval()
    _open(causal)
    ahead = create_model(encoder="resnet18", lookahead=2, **SMALL).eval()
    missing, unexpected = ahead.load_state_dict(causal.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("ahead") for k in missing)
    clip = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ahead(clip), causal(clip))
    with pytest.raises(ValueError, match="lookahead"):
        create_model(encoder="resnet18", task="frames", lookahead=1, **SMALL)


def test_local_correlation_finds_the_shift():
    f1 = F.normalize(torch.randn(1, 8, 12, 12), dim=1)
    f2 = torch.roll(f1, shifts=(1, 2), dims=(2, 3))  # content moves dx=+2, dy=+1
    corr = local_correlation(f1, f2, radius=3)
    best = corr[0, :, 4:8, 4:8].mean((1, 2)).argmax().item()
    assert best == (1 + 3) * 7 + (2 + 3)


def test_freeze_policies():
    enc = Encoder("resnet18", pretrained="none", freeze="all")
    assert not any(p.requires_grad for p in enc.parameters())
    enc = Encoder("resnet18", pretrained="none", freeze=2)  # stem and layer1
    frozen = {n.split(".")[0] for n, p in enc.model.named_parameters() if not p.requires_grad}
    trainable = {n.split(".")[0] for n, p in enc.model.named_parameters() if p.requires_grad}
    assert frozen == {"conv1", "bn1", "layer1"} and trainable == {"layer2", "layer3", "layer4"}
    enc = Encoder("resnet18", pretrained="none", freeze_bn=True).train()
    assert all(not m.training for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(InputError, match="freeze must be"):
        Encoder("resnet18", pretrained="none", freeze="some")


def test_unknown_names_list_the_choices():
    with pytest.raises(InputError, match="choose one of \\['gru', 'lstm'\\]"):
        create_model(core="rnn", pretrained="none")
    with pytest.raises(InputError, match="choose one of"):
        create_model(task="depth", pretrained="none")


def test_missing_imagenet_weights_say_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(InputError, match="model.weights=FILE") as info:
        Encoder("resnet18", pretrained="imagenet")
    assert "pretrained=none" in str(info.value)


def test_weights_from_a_local_file(tmp_path):
    import timm

    source = timm.create_model("resnet18", pretrained=False)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "r18.pth")
    enc = Encoder("resnet18", pretrained="imagenet", weights=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(enc.model.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize(
    "name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
)
@pytest.mark.parametrize(("image", "label"), [("chelsea", 285), ("coffee", 967)])
def test_packaged_encoders_are_really_imagenet_initialised(name, image, label):
    """timm's classifier with the packaged weights, at its own input size: chelsea is an
    Egyptian cat, coffee espresso."""
    import timm
    from skimage import data

    from flowvid.models.weights import packaged_weights

    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(packaged_weights(name))
    size = model.pretrained_cfg["input_size"][1:]
    img = torch.from_numpy(np.asarray(getattr(data, image)())).permute(2, 0, 1).float()[None] / 255
    img = F.interpolate(img, size=size, mode="bicubic", align_corners=False)
    with torch.no_grad():
        logits = model((img - 0.5) / 0.5)
    assert logits.argmax().item() == label
    # and the flowvid encoder holds exactly those weights
    enc = Encoder(name, pretrained="imagenet")
    torch.testing.assert_close(enc.model.conv_stem.weight, model.conv_stem.weight)


def test_frames_rollout_feeds_predictions_back():
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", task="frames", **SMALL).eval()
    clip = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        out, state = model.step(clip, model.init_state())
        ahead, _ = model.rollout(state, out[:, -1], steps=4)
        assert ahead.shape == (1, 4, 3, 32, 32)
        # the zero-initialised residual head predicts "nothing changes", all the way out
        torch.testing.assert_close(ahead[:, -1], clip[:, -1])
        _open(model)
        out, state = model.step(clip, model.init_state())
        ahead, _ = model.rollout(state, out[:, -1], steps=2)
        step_by_step, _ = model.step(out[:, -1:], state)  # the first rollout step by hand
        torch.testing.assert_close(ahead[:, 0], step_by_step[:, 0])
    with pytest.raises(ValueError, match="needs a frames model"):
        create_model(encoder="resnet18", **SMALL).rollout(state, out[:, -1], 1)


def test_warped_correlation_follows_the_estimate():
    torch.manual_seed(0)
    f1, f2 = torch.randn(2, 8, 12, 14), torch.randn(2, 8, 12, 14)
    at_zero = warped_correlation(f1, f2, torch.zeros(2, 2, 12, 14), 2)
    torch.testing.assert_close(at_zero, local_correlation(f1, f2, 2))
    flow = torch.zeros(2, 2, 12, 14)
    flow[:, 0], flow[:, 1] = 1.0, -2.0  # look up f2 at p + (1, -2)
    shifted = torch.zeros_like(f2)
    shifted[:, :, 2:, :-1] = f2[:, :, :-2, 1:]  # shifted(p) = f2(p + (1, -2))
    expected = local_correlation(f1, shifted, 1)
    got = warped_correlation(f1, f2, flow, 1)
    torch.testing.assert_close(got[:, :, 3:-1, 1:-2], expected[:, :, 3:-1, 1:-2])
    half = warped_correlation(f1, f2, flow * 0.5, 0)  # between samples: bilinear
    ends = (warped_correlation(f1, f2, flow * 0, 0) + warped_correlation(f1, f2, flow, 0)) / 2
    assert not torch.allclose(half, ends)  # bilinear in the features, not in the costs


def test_refiner_gets_gradients_and_streams():
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", refine_iters=2, **SMALL)
    assert model.refiner is not None and model.refiner.iters == 2
    assert create_model(encoder="resnet18", task="frames", refine_iters=2, **SMALL).refiner is None
    _open(model)
    torch.nn.init.normal_(model.refiner.update[-1].weight, std=0.1)
    (model(torch.rand(1, 4, 3, 64, 64)) ** 2).mean().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, missing[:5]
    model.eval()
    clip = torch.rand(1, 6, 3, 50, 70)
    with torch.no_grad():
        whole = model(clip)
    torch.testing.assert_close(_stream(model, clip, [2]), whole, atol=1e-5, rtol=1e-4)
    without = create_model(encoder="resnet18", **SMALL).eval()
    without.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")}
    )
    with torch.no_grad():
        assert (without(clip) - whole).abs().max() > 1e-4  # the refiner changes the output


def test_a_warm_start_may_add_the_refiner_and_nothing_else(tmp_path):
    from flowvid.checkpoint import load_weights

    plain = create_model(encoder="resnet18", **SMALL).state_dict()
    refined = create_model(encoder="resnet18", refine_iters=1, **SMALL)
    with pytest.raises(InputError, match="missing"):
        load_weights(refined, plain, tmp_path / "c.pt")
    fresh = load_weights(refined, plain, tmp_path / "c.pt", new_modules=("refiner.",))
    assert fresh and all(k.startswith("refiner.") for k in fresh)
    torch.testing.assert_close(refined.state_dict()["coarse.weight"], plain["coarse.weight"])
    partial = {k: v for k, v in plain.items() if not k.startswith("decoder.")}
    with pytest.raises(InputError, match="missing"):
        load_weights(refined, partial, tmp_path / "c.pt", new_modules=("refiner.",))


def test_convex_upsampling_known_answers():
    from flowvid.models.decoder import convex_upsample

    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 6)
    # a constant field stays constant, whatever the weights
    const = torch.full((1, 2, 5, 6), 1.5)
    up = convex_upsample(const, torch.randn(1, 144, 5, 6), 4)
    assert up.shape == (1, 2, 20, 24)
    torch.testing.assert_close(up, torch.full_like(up, 1.5))
    # all weight on the centre cell: each 4x4 block is its own cell (nearest neighbour)
    centre = torch.full((2, 9, 4, 4, 5, 6), -1e4)
    centre[:, 4] = 0.0
    nearest = convex_upsample(x, centre.view(2, 144, 5, 6), 4)
    torch.testing.assert_close(nearest, x.repeat_interleave(4, 2).repeat_interleave(4, 3))
    # all weight on the cell to the right (dy = 0, dx = +1), the edge replicated
    right = torch.full((2, 9, 4, 4, 5, 6), -1e4)
    right[:, 5] = 0.0
    shifted = torch.cat([x[..., 1:], x[..., -1:]], -1)
    torch.testing.assert_close(
        convex_upsample(x, right.view(2, 144, 5, 6), 4),
        shifted.repeat_interleave(4, 2).repeat_interleave(4, 3),
    )
    # equal weights: the mean of the 3x3 neighbourhood
    mean = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    torch.testing.assert_close(
        convex_upsample(x, torch.zeros(2, 144, 5, 6), 4),
        mean.repeat_interleave(4, 2).repeat_interleave(4, 3),
    )


def test_convex_model_trains_every_parameter_and_streams():
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", upsample="convex", **SMALL)
    assert model.decoder is None and not list(model.head.parameters())
    _open(model)
    out = model(torch.rand(1, 4, 3, 64, 64))
    assert out.shape == (1, 3, 2, 64, 64)
    (out**2).mean().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, missing[:5]
    model.eval()
    clip = torch.rand(1, 6, 3, 50, 70)  # odd size: padded inside, cropped back
    with torch.no_grad():
        whole = model(clip)
    assert whole.shape == (1, 5, 2, 50, 70) and whole.abs().mean() > 1e-2
    torch.testing.assert_close(_stream(model, clip, [2]), whole, atol=1e-5, rtol=1e-4)


def test_a_convex_model_warm_starts_from_a_unet_checkpoint(tmp_path):
    """Everything the two share is loaded; the U-Net is left out only when asked."""
    from flowvid.checkpoint import load_weights

    unet = create_model(encoder="resnet18", **SMALL).state_dict()
    convex = create_model(encoder="resnet18", upsample="convex", **SMALL)
    with pytest.raises(InputError, match="unexpected"):
        load_weights(convex, unet, tmp_path / "c.pt", new_modules=("upsampler.",))
    fresh = load_weights(
        convex,
        unet,
        tmp_path / "c.pt",
        new_modules=("upsampler.",),
        dropped_modules=("decoder.", "head.net."),
    )
    assert fresh and all(k.startswith("upsampler.") for k in fresh)
    shared = convex.state_dict()
    assert set(shared) - set(unet) == set(fresh)
    for k in set(shared) & set(unet):
        torch.testing.assert_close(shared[k], unet[k])


def test_convex_upsampling_is_refused_where_it_cannot_work():
    from flowvid.config import load_config

    load_config(None, ["model.upsample=convex"])  # a flow model without the steps: fine
    for bad in (["model.upsample=bilinear"], ["model.upsample=convex", "model.task=frames"]):
        with pytest.raises(InputError, match="model.upsample"):
            load_config(None, bad)
    with pytest.raises(InputError, match="model.upsample"):
        load_config(None, ["model.upsample=convex", "model.lk_iters=2"])


def test_lookahead_is_refused_where_it_cannot_work():
    from flowvid.config import load_config

    assert load_config(None, ["model.lookahead=4"]).model.lookahead == 4
    for bad in (
        ["model.lookahead=-1"],
        ["model.lookahead=2", "model.task=frames"],
        ["model.lookahead=2", "model.arch=raft_small"],
    ):
        with pytest.raises(InputError, match="model.lookahead"):
            load_config(None, bad)

"""Model contracts: every registered encoder/core/head, gradients, streaming, ImageNet init."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowvid.errors import InputError
from flowvid.models import create_model
from flowvid.models.encoder import Encoder
from flowvid.models.temporal import CORES, local_correlation
from tests.helpers import TINY

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
    torch.nn.init.normal_(model.head.net[-1].weight, std=0.1)  # heads start near zero output
    for m in model.modules():  # timm zero-initialises each residual block's last BN
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)


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
@pytest.mark.parametrize("task", ["flow", "frames"])
def test_every_parameter_gets_a_gradient(core, task):
    model = create_model(encoder="resnet18", core=core, task=task, **SMALL)
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
    assert state.prev.rgb.is_contiguous(memory_format=torch.channels_last)


def test_flow_map_i_reads_frames_up_to_i_plus_1():
    """Map i moves frame i to i+1 and reads no later frame: a change in the last frame
    reaches the last map alone."""
    torch.manual_seed(0)
    model = create_model(encoder="resnet18", **SMALL).eval()
    _open(model)
    clip = torch.rand(1, 7, 3, 32, 32)
    other = clip.clone()
    other[:, -1] = torch.rand(3, 32, 32)
    with torch.no_grad():
        a, b = model(clip), model(other)
    assert a.shape[1] == 6  # T-1 maps
    change = (a - b).flatten(2).abs().amax(2)[0]
    torch.testing.assert_close(change[:5], torch.zeros(5))
    assert change[5] > 1e-3 * a.abs().max()


def test_temporal_mean_averages_each_map_with_the_ones_before_it_in_any_chunking():
    """model.temporal_mean=3: map i is the mean of the plain model's maps i-2..i (fewer at
    the start) relative to each map's median vector, which it keeps (the camera's motion);
    its expected error the plain mean; streamed in chunks, the same numbers."""
    torch.manual_seed(0)
    kw = dict(SMALL, encoder="resnet18", lk_iters=1, uncertainty=True)
    plain = create_model(**kw).eval()
    _open(plain)
    mean3 = create_model(**kw, temporal_mean=3).eval()
    mean3.load_state_dict(plain.state_dict())
    clip = torch.rand(1, 7, 3, 32, 48)
    with torch.no_grad():
        aux_plain, aux3 = {}, {}
        flow, ours = plain(clip, aux_plain), mean3(clip, aux3)
        state, parts, errors = mean3.init_state(), [], []
        for chunk in (clip[:, :2], clip[:, 2:3], clip[:, 3:]):
            aux = {}
            out, state = mean3.step(chunk, state, aux)
            parts.append(out)
            errors.append(aux["uncertainty"])
    camera = flow.flatten(-2).median(-1).values[..., None, None]
    for got, maps, moving in (
        (ours, flow, camera),
        (aux3["uncertainty"], aux_plain["uncertainty"], 0.0),
    ):
        scene = maps - moving
        want = torch.stack([scene[:, max(0, i - 2) : i + 1].mean(1) for i in range(6)], 1)
        torch.testing.assert_close(got, want + moving)
    torch.testing.assert_close(ours[:, 0], flow[:, 0])  # the first map has no maps before it
    assert (camera[:, 1:] - camera[:, :-1]).abs().max() > 1e-3  # the medians do differ
    assert (ours - flow).abs().max() > 1e-3  # the mean did change the maps
    torch.testing.assert_close(torch.cat(parts, 1), ours, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(errors, 1), aux3["uncertainty"], atol=1e-5, rtol=1e-4)
    assert state.recent["flow"].shape[1] == 2  # memory: two maps, whatever the video's length
    with pytest.raises(InputError, match="temporal_mean"):
        create_model(encoder="resnet18", task="frames", temporal_mean=2, pretrained="none")


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


def test_a_checkpoint_from_before_the_lucas_kanade_stage_loads_under_todays_names(tmp_path):
    """Checkpoints saved when the Lucas-Kanade heads sat on the model itself
    (``lk_confidence.*``, ``lk_trust.*``) load into the stage (``refine.*``), same weights."""
    from flowvid.checkpoint import load_model, save_checkpoint

    kwargs = dict(TINY, lk_iters=1, lk_trust=True)
    torch.manual_seed(0)
    model = create_model(**kwargs)
    torch.nn.init.normal_(model.refine.trust.weight)
    path = save_checkpoint(tmp_path / "now.pt", model, kwargs, {})
    ckpt = torch.load(path, weights_only=True)
    old = {
        k.replace("refine.confidence.", "lk_confidence.").replace("refine.trust.", "lk_trust."): v
        for k, v in ckpt["state_dict"].items()
    }
    assert "lk_trust.weight" in old and not any(k.startswith("refine.") for k in old)
    torch.save(dict(ckpt, state_dict=old), tmp_path / "old.pt")
    loaded, _ = load_model(tmp_path / "old.pt")
    torch.testing.assert_close(loaded.refine.trust.weight, model.refine.trust.weight)


def test_temporal_mean_follows_a_camera_whose_speed_changes():
    """Maps of a uniform motion that changes each frame (a camera drifting) pass the mean
    unchanged; a still scene's noise is averaged down."""
    model = create_model(encoder="resnet18", temporal_mean=3, **SMALL)
    speeds = torch.tensor([0.0, 1.0, 3.0, -2.0, 0.5])
    drift = speeds.view(1, 5, 1, 1, 1).expand(1, 5, 2, 8, 8)
    out, _, _ = model.time_mean(drift, {}, None)
    torch.testing.assert_close(out, drift)
    noise = torch.randn(1, 5, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    out, _, _ = model.time_mean(drift + noise, {}, None)
    assert (out - drift)[:, 2:].std() < 0.75 * noise[:, 2:].std()

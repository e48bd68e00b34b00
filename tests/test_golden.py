"""Seeded golden outputs and save -> load round trips: a change that moves any number of the
renderer or the shipped model shows here, whatever else still passes.

The golden numbers were recorded from this code; they say nothing about being right (the
shipped model's motion errors are measured in test_sanity.py), only that nothing drifted.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from flowvid.checkpoint import load_model, read_checkpoint, save_checkpoint
from flowvid.data.synth.synthetic import ClipRenderer, SynthConfig
from flowvid.models import create_model


def _texture(n: int = 64) -> np.ndarray:
    """A smooth RGB pattern in [0, 1] from a formula: no random generator involved."""
    y, x = np.mgrid[0:n, 0:n] / n
    g = 0.5 + 0.2 * np.sin(2 * np.pi * (3 * x + y)) * np.cos(2 * np.pi * 5 * y)
    g += 0.15 * np.sin(2 * np.pi * (7 * x - 4 * y) + 1)
    return np.stack([g, 0.8 * g + 0.1, 1 - g], -1)


def _clip() -> torch.Tensor:
    """3 frames of the texture moving (+2, -1) px/frame, (1, 3, 3, 64, 64)."""
    frames = np.stack([np.roll(_texture(), (-t, 2 * t), (0, 1)) for t in range(3)])
    return torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()


def test_renderer_golden_output():
    r = ClipRenderer(SynthConfig(size=64, frames=3), np.random.default_rng(0))
    frames = np.stack([r.frame(i) for i in range(3)])
    assert r.describe()["quality"] == "fair"
    assert frames.mean() == pytest.approx(154.736, abs=0.05)
    np.testing.assert_allclose(
        frames[:, 10, 20], [[210, 207, 131], [197, 143, 124], [161, 191, 130]], atol=2
    )
    np.testing.assert_allclose(r.flow(1).sum((0, 1)), [-1050.568, -3264.895], rtol=1e-4)
    assert r.mask(1).sum() == 2540


def test_shipped_model_golden_output():
    """The flow, and what the stages after the network saw: the network's own flow, the
    Lucas-Kanade prior, trust and posterior width, and the expected error (the flow and the
    expected error are means over the last 3 maps: here of maps 0 and 1)."""
    model, _ = load_model()
    aux: dict = {}
    with torch.no_grad():
        out = model(_clip(), aux=aux)[0]
        plain = model(_clip())[0]
    assert out.shape == (2, 2, 64, 64) and torch.equal(out, plain)
    np.testing.assert_allclose(out.mean((0, 2, 3)).numpy(), [0.788507, -0.465686], atol=2e-4)
    # the centre of the second map: the true (+2, -1), measured
    np.testing.assert_allclose(out[1, :, 32, 32].numpy(), [2.010625, -0.994721], atol=2e-4)
    golden = {  # mean, and the centre of the second map
        "lk_start": (-0.261264, -0.973455),
        "lk_prior": (0.574811, 0.464276),
        "lk_trust": (0.320319, 0.153751),
        "uncertainty": (1.398854, 0.883827),
        "lk_width": (0.024566, 0.005281),
    }
    for key, (mean, centre) in golden.items():
        value = aux[key][0]
        assert float(value.mean()) == pytest.approx(mean, abs=2e-4), key
        assert float(value[1, 0, 32, 32]) == pytest.approx(centre, abs=2e-4), key


def test_shipped_model_survives_a_float16_save_and_load(tmp_path):
    """The shipped file stores float16 weights: saving them as float16 again and loading
    gives exactly the same model, so the same outputs, bit for bit."""
    model, ckpt = load_model()
    assert all(
        v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point()
    )
    path = save_checkpoint(
        tmp_path / "again.pt", model, ckpt["model_kwargs"], ckpt["config"], half=True
    )
    again, _ = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(again(_clip()), model(_clip()), rtol=0, atol=0)


@pytest.mark.parametrize("task", ["flow", "frames"])
def test_save_load_gives_identical_outputs(tmp_path, task):
    torch.manual_seed(0)
    kwargs = dict(encoder="resnet18", pretrained="none", task=task, hidden=16, context=16)
    model = create_model(**kwargs).eval()
    for p in model.head.parameters():  # non-trivial outputs: the zero-ish init would hide errors
        torch.nn.init.normal_(p, std=0.3)
    path = save_checkpoint(tmp_path / "m.pt", model, kwargs, {})
    loaded, ckpt = load_model(path)
    assert ckpt["model_kwargs"] == kwargs and loaded.task == task
    with torch.no_grad():
        torch.testing.assert_close(loaded(_clip()), model(_clip()), rtol=0, atol=0)
    # float16 storage costs precision, not correctness: close, and exactly what the rounded
    # weights give
    half = load_model(save_checkpoint(tmp_path / "h.pt", model, kwargs, {}, half=True))[0]
    rounded = {
        k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    model.load_state_dict(rounded)
    with torch.no_grad():
        torch.testing.assert_close(half(_clip()), model(_clip()), rtol=0, atol=0)
    assert read_checkpoint(path)["format"] == "flowvid-checkpoint-1"


def test_a_checkpoint_of_a_removed_option_loads_when_unused_and_is_refused_when_used(tmp_path):
    from flowvid.errors import InputError

    kwargs = dict(encoder="resnet18", pretrained="none", hidden=16, context=16)
    model = create_model(**kwargs).eval()
    unused = dict(kwargs, lookahead=0, refine_iters=0, refine_radius=1, upsample="unet")
    loaded, ckpt = load_model(save_checkpoint(tmp_path / "old.pt", model, unused, {}))
    assert ckpt["model_kwargs"] == kwargs
    for key, value in (("lookahead", 2), ("refine_iters", 3), ("upsample", "convex")):
        path = save_checkpoint(tmp_path / f"{key}.pt", model, dict(unused, **{key: value}), {})
        with pytest.raises(InputError, match=f"model.{key}=.* no longer builds"):
            load_model(path)


def test_shipping_a_model_can_set_its_mean_over_maps_and_keeps_its_weights(tmp_path):
    """tools/ship_default_model.py --set model.temporal_mean=3 (how the default ships):
    the same float16 weights, the mean set in the arguments and the config; a key that is
    not the model's is refused."""
    import subprocess
    import sys

    model = create_model(encoder="resnet18", pretrained="none", hidden=8, context=8)
    kwargs = dict(encoder="resnet18", pretrained="none", hidden=8, context=8)
    src = save_checkpoint(tmp_path / "model.pt", model, kwargs, {"model": dict(kwargs)})
    tool = [str(Path(__file__).parents[1] / "tools" / "ship_default_model.py"), str(src), "--out"]
    run = [sys.executable, *tool, str(tmp_path / "shipped.pt"), "--set", "model.temporal_mean=3"]
    subprocess.run(run, check=True, capture_output=True)
    shipped = read_checkpoint(tmp_path / "shipped.pt")
    assert shipped["model_kwargs"]["temporal_mean"] == 3
    assert shipped["config"]["model"]["temporal_mean"] == 3
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(shipped["state_dict"][name], value.half()), name
    assert load_model(tmp_path / "shipped.pt")[0].time_mean.maps == 3
    for change, message in (("train.lr=1", "model.KEY=VALUE"), ("model.temporal_mean=0", "1..")):
        bad = [sys.executable, *tool, str(tmp_path / "bad.pt"), "--set", change]
        result = subprocess.run(bad, capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "bad.pt").exists()


def test_with_settings_keeps_every_weight_and_refuses_a_change_to_them():
    """flowvid.checkpoint.with_settings (how a trained model is scored or shipped with the
    mean over maps): the same outputs on a first map, the mean on later ones; a setting that
    adds weights (the steps) or changes their shapes is refused."""
    from flowvid.checkpoint import with_settings
    from flowvid.errors import InputError

    kwargs = dict(encoder="resnet18", pretrained="none", hidden=8, context=8)
    model = create_model(**kwargs).eval()
    meaned, new_kwargs = with_settings(model, kwargs, {"temporal_mean": 3})
    assert new_kwargs == {**kwargs, "temporal_mean": 3} and kwargs.get("temporal_mean") is None
    assert meaned.time_mean.maps == 3 and model.time_mean is None
    for name, value in model.state_dict().items():
        assert torch.equal(meaned.state_dict()[name], value), name
    clip = _clip()
    with torch.no_grad():
        plain, mean = model(clip)[0], meaned(clip)[0]
    assert torch.allclose(plain[0], mean[0], atol=1e-5)  # the first map has none before it
    assert float((plain[1] - mean[1]).abs().max()) > 0.1  # the second is averaged
    assert with_settings(model, kwargs, {}) == (model, kwargs)
    for change in ({"hidden": 16}, {"lk_iters": 2}):
        with pytest.raises(InputError, match="without changing the weights"):
            with_settings(model, kwargs, change)

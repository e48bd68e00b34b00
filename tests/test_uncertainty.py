"""The expected-error head: its loss on known cases, that it cannot move the flow, and
``predict --uncertainty`` in every format; the temporally averaged classical baselines."""

import json
import math

import h5py
import numpy as np
import pytest
import torch
import yaml
from helpers import TINY
from scipy.io import loadmat

from flowvid.checkpoint import load_model, save_checkpoint
from flowvid.cli import main
from flowvid.config import load_config
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.errors import InputError
from flowvid.io.outputs import ExpectedError
from flowvid.io.video import open_video
from flowvid.lab.evaluate import temporal_mean
from flowvid.models import create_model
from flowvid.predict.classical import centred_means
from flowvid.training.losses import error_nll

UNC = dict(TINY, uncertainty=True)


def test_error_nll_value_and_gradient_on_a_known_case():
    # one vessel pixel, EPE exactly 2 (a 3-4-5 triangle scaled: error (1.2, 1.6)), scale 1
    pred = torch.zeros(1, 2, 1, 1)
    target = torch.tensor([1.2, 1.6]).view(1, 2, 1, 1)
    scale = torch.ones(1, 1, 1, 1, requires_grad=True)
    mask, valid = torch.ones(1, 1, 1, dtype=torch.bool), torch.ones(1, 1, 1, dtype=torch.bool)
    loss = error_nll(pred, scale, target, mask, valid, inside_weight=1.0, outside_weight=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(2.0)  # EPE / s + log s = 2 / 1 + 0
    assert scale.grad.item() == pytest.approx(-1.0)  # -EPE / s^2 + 1 / s
    # its minimum over the scale is the EPE itself: the scale is an expected error in px
    grid = torch.linspace(0.5, 4.0, 351).view(-1, 1, 1, 1)
    values = [
        error_nll(pred, s.view(1, 1, 1, 1), target, mask, valid, inside_weight=1, outside_weight=1)
        for s in grid
    ]
    assert grid[int(torch.stack(values).argmin())].item() == pytest.approx(2.0, abs=0.01)
    # and over many pixels, the mean of their errors
    errs = torch.tensor([0.5, 1.0, 3.0, 0.5])
    many_t = torch.stack([errs, torch.zeros(4)]).view(1, 2, 1, 4)
    s = torch.full((1, 1, 1, 4), 1.0, requires_grad=True)
    m = torch.ones(1, 1, 4, dtype=torch.bool)
    opt = torch.optim.Adam([s], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        shared = s.mean().expand(1, 1, 1, 4)  # one scale for pixels that look alike
        error_nll(
            torch.zeros(1, 2, 1, 4), shared, many_t, m, m, inside_weight=1, outside_weight=1
        ).backward()
        opt.step()
    assert s.mean().item() == pytest.approx(errs.mean().item(), abs=0.02)


def test_the_head_states_an_error_and_cannot_move_the_flow():
    torch.manual_seed(0)
    model = create_model(**UNC).eval()
    torch.nn.init.normal_(model.error_head.net[-1].weight, std=0.1)
    plain = create_model(**TINY).eval()
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("error_head.")}
    )
    clip = torch.rand(1, 4, 3, 32, 32)
    aux: dict = {}
    flow = model(clip, aux=aux)
    assert aux["uncertainty"].shape == (1, 3, 1, 32, 32)
    assert (aux["uncertainty"] > 0).all()
    torch.testing.assert_close(flow, plain(clip))  # the head changes no number of the flow
    # its loss reaches its own weights and nothing else
    target = torch.randn_like(flow)
    mask = torch.ones(1, 3, 32, 32, dtype=torch.bool)
    error_nll(
        flow, aux["uncertainty"], target, mask, mask, inside_weight=1, outside_weight=1
    ).backward()
    for name, p in model.named_parameters():
        touched = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert touched == name.startswith("error_head."), name


def test_a_head_from_before_the_posterior_width_cue_loads_and_states_what_it_did():
    """A checkpoint whose error head reads one cue fewer (no posterior width) loads: the new
    cue gets zero weights, so what the head learnt states what it stated before, whatever
    the width (the posterior's floor then applies to it as to any head)."""
    from flowvid.checkpoint import load_weights

    torch.manual_seed(0)
    lk = dict(UNC, lk_iters=2, lk_levels=1)
    model = create_model(**lk).eval()
    torch.nn.init.normal_(model.error_head.net[0].weight, std=0.1)
    torch.nn.init.normal_(model.error_head.net[-1].weight, std=0.1)
    old = dict(model.state_dict())
    old["error_head.net.0.weight"] = old["error_head.net.0.weight"][:, :-1].clone()
    again = create_model(**lk).eval()
    load_weights(again, old, "old.pt")
    weight = again.error_head.net[0].weight
    assert torch.equal(weight[:, :-1], old["error_head.net.0.weight"])
    assert torch.equal(weight[:, -1], torch.zeros_like(weight[:, -1]))
    feat, flow = torch.rand(1, 8, 32, 32), torch.rand(1, 2, 32, 32)
    img0, img1 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    start, prior = flow * 0.9, torch.full((1, 1, 32, 32), 0.5)
    narrow, wide = torch.full_like(prior, 0.01), torch.full_like(prior, 3.0)
    head = again.error_head
    with torch.no_grad():
        first = head.learned(
            feat[:, : head.net[0].in_channels - 7], flow, img0, img1, (start, prior, narrow)
        )
        second = head.learned(
            feat[:, : head.net[0].in_channels - 7], flow, img0, img1, (start, prior, wide)
        )
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_what_the_frames_leave_open_is_always_stated():
    """With the steps, the stated error is sqrt(s^2 + pi/2 width^2): an untrained head states
    0.3 px/frame from its cues; a posterior of width 0 leaves it, a width of 1 px raises it
    to sqrt(0.09 + pi/2) (the mean norm of a 2-D normal error of unit width is sqrt(pi/2))."""
    torch.manual_seed(0)
    head = create_model(**dict(UNC, lk_iters=2, lk_levels=1)).eval().error_head
    feat = torch.rand(1, head.net[0].in_channels - 7, 16, 16)
    flow, img0, img1 = torch.rand(1, 2, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    width = torch.zeros(1, 1, 16, 16)
    width[..., 8:] = 1.0
    lk = (flow, torch.ones_like(width), width)
    with torch.no_grad():
        stated = head(feat, flow, img0, img1, lk)
        learned = head.learned(feat, flow, img0, img1, lk)
    torch.testing.assert_close(learned, torch.full_like(learned, 0.3))
    torch.testing.assert_close(stated[..., :8], learned[..., :8])
    torch.testing.assert_close(
        stated[..., 8:], torch.full_like(stated[..., 8:], (0.09 + math.pi / 2) ** 0.5)
    )
    # trained through the floor: d stated / d log s = s^2 / stated, where the floor holds
    # the stated error the head's own scale counts for less; the width (an input) gets none
    width.requires_grad_()
    head.zero_grad()
    head(feat, flow, img0, img1, lk).sum().backward()
    floored = 0.09 / (0.09 + math.pi / 2) ** 0.5
    assert head.net[-1].bias.grad.item() == pytest.approx(128 * 0.3 + 128 * floored, rel=1e-4)
    assert width.grad is None


def test_uncertainty_is_for_flow_models_and_the_config_says_so_as_it_loads():
    with pytest.raises(InputError, match="model.uncertainty is for flowvid flow models"):
        create_model(**dict(UNC, task="frames"))
    with pytest.raises(InputError, match="model.uncertainty is for flowvid flow models"):
        load_config(None, ["model.uncertainty=true", "model.task=frames"])


@pytest.fixture(scope="module")
def unc_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model(**UNC)
    torch.nn.init.normal_(model.head.net[-1].weight, std=0.05)
    torch.nn.init.normal_(model.error_head.net[-1].weight, std=0.1)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "unc.pt", model, UNC, {})


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc") / "data"
    write_corpus(root, 1, SynthConfig(size=64, frames=9), seed=4, workers=1, progress=False)
    return root / "videos" / "vessel_000.mp4"


def test_predict_uncertainty_in_every_format_equals_the_whole_clip(unc_checkpoint, clip, tmp_path):
    model, _ = load_model(unc_checkpoint)
    with open_video(clip) as v:
        frames = torch.from_numpy(v.read(range(9))).permute(0, 3, 1, 2).float()[None] / 255
    aux: dict = {}
    with torch.no_grad():
        direct_flow = model(frames, aux=aux)[0].permute(0, 2, 3, 1).numpy()
    direct = aux["uncertainty"][0, :, 0].numpy()
    for suffix in (".npy", ".h5", ".mat"):
        out, unc = tmp_path / f"flow{suffix}.npy", tmp_path / f"unc{suffix}"
        args = ["predict", str(clip), "--out", str(out), "--uncertainty", str(unc)]
        assert main([*args, "--checkpoint", str(unc_checkpoint), "--batch-frames", "3"]) == 0
        if suffix == ".npy":
            got = np.load(unc)
        elif suffix == ".h5":
            with h5py.File(unc) as fh:
                got = fh["uncertainty"][()]
        else:
            got = loadmat(unc)["uncertainty"]
        assert got.shape == (8, 64, 64) and got.dtype == np.float32
        np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-5)  # chunks of 3 = whole
        np.testing.assert_allclose(np.load(out), direct_flow, atol=1e-4)
        side = json.loads((tmp_path / f"unc{suffix}.json").read_text())
        assert side["shape"] == [8, 64, 64] and side["units"] == "px/frame"
        assert "expected end-point error" in side["meaning"]
    # in um/s it scales like the flow
    out, unc = tmp_path / "f.npy", tmp_path / "u.npy"
    args = ["predict", str(clip), "--out", str(out), "--uncertainty", str(unc), "--units", "um/s"]
    assert (
        main([*args, "--um-per-px", "0.5", "--fps", "10", "--checkpoint", str(unc_checkpoint)]) == 0
    )
    np.testing.assert_allclose(np.load(unc), direct * 5.0, rtol=1e-4, atol=1e-5)
    # read back map by map in px/frame, whatever the units it was written in
    errors = ExpectedError(unc)
    assert len(errors) == 8 and errors.start == 0
    np.testing.assert_allclose(errors[3], direct[3], rtol=1e-4, atol=1e-5)
    for suffix in (".h5", ".mat"):
        np.testing.assert_allclose(
            ExpectedError(tmp_path / f"unc{suffix}")[7], direct[7], rtol=1e-4
        )


def test_overlay_greys_out_the_vectors_not_to_believe(unc_checkpoint, clip, tmp_path, capsys):
    from PIL import Image

    flow, unc = tmp_path / "f.npy", tmp_path / "u.npy"
    args = ["predict", str(clip), "--out", str(flow), "--uncertainty", str(unc)]
    assert main([*args, "--checkpoint", str(unc_checkpoint)]) == 0
    expected = np.load(unc)

    def overlay(name, *extra):
        out = tmp_path / name
        assert main(["overlay", str(clip), str(flow), "--out", str(out), *extra]) == 0
        return np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])

    plain = overlay("plain")
    threshold = float(np.median(expected))
    half = overlay("half", "--uncertainty", str(unc), "--max-uncertainty", str(threshold))
    loose = overlay("loose", "--uncertainty", str(unc), "--max-uncertainty", "1e6")
    np.testing.assert_array_equal(loose, plain)  # nothing is doubtful: the same frames
    k = plain.shape[1] // expected.shape[1]  # the display enlargement
    doubtful = np.repeat(np.repeat(expected > threshold, k, 1), k, 2)
    body = np.zeros_like(doubtful)
    body[:, plain.shape[1] // 2 :] = True  # below the legend
    grey = (half[..., 0] == half[..., 1]) & (half[..., 1] == half[..., 2])
    assert grey[doubtful & body].all()  # every doubtful pixel is grey
    coloured = ~doubtful & body
    assert (half[coloured] == plain[coloured]).all()  # every trusted pixel is as before
    assert 0.2 < doubtful[body].mean() < 0.8

    other = tmp_path / "other.npy"
    np.save(other, expected[:5])
    bad = ["overlay", str(clip), str(flow), "--out", str(tmp_path / "x"), "--uncertainty"]
    assert main([*bad, str(other)]) == 2
    assert "is not for the flow" in capsys.readouterr().err


def test_predict_uncertainty_refuses_a_model_without_the_head(clip, tmp_path, capsys):
    model = create_model(**TINY)
    ckpt = save_checkpoint(tmp_path / "plain.pt", model, TINY, {})
    out, unc = tmp_path / "f.npy", tmp_path / "u.npy"
    args = ["predict", str(clip), "--out", str(out), "--uncertainty", str(unc)]
    assert main([*args, "--checkpoint", str(ckpt)]) == 2
    assert "expected-error head" in capsys.readouterr().err
    assert not out.exists() and not unc.exists()
    bad = ["predict", str(clip), "--out", str(out), "--uncertainty", str(tmp_path / "u.flo")]
    assert main([*bad, "--checkpoint", str(ckpt)]) == 2
    assert not out.exists()


def _method_of(maps):
    def run(clip, frames):
        for m in maps:
            yield m[None]

    return run


def test_temporal_mean_leaves_a_constant_flow_and_smooths_a_sinusoid():
    const = [np.full((4, 5, 2), (2.0, -1.0), np.float32) for _ in range(7)]
    out = np.concatenate(list(temporal_mean(_method_of(const))(None, 8)))
    assert out.shape == (7, 4, 5, 2)
    np.testing.assert_allclose(out, np.stack(const), atol=1e-6)
    # u_i = sin(w i): the centred mean of 3 is sin(w i) (1 + 2 cos w) / 3, exactly, inside
    w = 0.9
    sines = [np.full((2, 2, 2), np.sin(w * i), np.float32) for i in range(20)]
    means = np.concatenate(list(temporal_mean(_method_of(sines))(None, 21)))[:, 0, 0, 0]
    inner = np.sin(w * np.arange(1, 19)) * (1 + 2 * np.cos(w)) / 3
    np.testing.assert_allclose(means[1:19], inner, atol=1e-5)
    raw = np.array([s[0, 0, 0] for s in sines])
    assert np.abs(np.diff(means)).sum() < 0.8 * np.abs(np.diff(raw)).sum()  # gain 0.75 at w
    # the ends average what exists: maps 0-1 and 18-19
    assert means[0] == pytest.approx(raw[:2].mean(), abs=1e-6)
    assert means[-1] == pytest.approx(raw[-2:].mean(), abs=1e-6)


def test_centred_means_holds_only_its_window():
    seen = []

    def maps():
        for i in range(50):
            seen.append(i)
            yield np.full((1, 1, 2), float(i))

    for k, _ in enumerate(centred_means(maps(), 1)):
        if k < 49:
            assert len(seen) <= k + 2  # map k needs only map k + 1 ahead of it
    assert len(seen) == 50


def _kept_mean_by_sorting(epe, key, removed):
    """Reference: sort by ``key``, keep the (1 - removed) N lowest, a partial pixel pro rata."""
    e = np.asarray(epe, float)[np.argsort(key, kind="stable")]
    keep = (1 - removed) * len(e)
    share = np.clip(keep - np.arange(len(e)), 0, 1)
    return float((share * e).sum() / keep)


def test_sparsification_and_ause_on_a_hand_computed_example():
    from flowvid.metrics import SPARSIFICATION, Calibration

    epe, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.1, 0.4, 0.3, 0.2])
    cal = Calibration()
    cal.update(epe[:2], predicted[:2])
    cal.update(epe[2:], predicted[2:])  # accumulates over calls
    s = cal.summary()
    at = {r: k for k, r in enumerate(s["removed"])}
    assert s["pixels"] == 4 and s["mean_epe"] == pytest.approx(2.5)
    assert s["mean_predicted"] == pytest.approx(0.25) and s["ratio"] == pytest.approx(0.1)
    # by hand: removing the most uncertain half leaves EPE 1 and 4, the oracle leaves 1 and 2
    assert s["curve"][at[0.0]] == pytest.approx(2.5) and s["oracle"][at[0.0]] == pytest.approx(2.5)
    assert s["curve"][at[0.5]] == pytest.approx(2.5) and s["oracle"][at[0.5]] == pytest.approx(1.5)
    assert s["kept_half_ratio"] == pytest.approx(1.0)
    # 1.04 pixels kept: all of the first and 4 % of the next (EPE 4 by expected error, 2 by EPE)
    assert s["curve"][at[0.74]] == pytest.approx(1.16 / 1.04)
    assert s["oracle"][at[0.74]] == pytest.approx(1.08 / 1.04)
    curve = [_kept_mean_by_sorting(epe, predicted, r) for r in SPARSIFICATION]
    oracle = [_kept_mean_by_sorting(epe, epe, r) for r in SPARSIFICATION]
    np.testing.assert_allclose(s["curve"], curve, rtol=1e-9)
    np.testing.assert_allclose(s["oracle"], oracle, rtol=1e-9)
    gap = np.subtract(curve, oracle)
    assert s["ause"] == pytest.approx(float(((gap[1:] + gap[:-1]) / 2 * 0.02).sum()))
    assert s["ause"] > 0.3

    perfect = Calibration()
    perfect.update(epe, 2 * epe)  # the right order at twice the size
    p = perfect.summary()
    assert p["ause"] == pytest.approx(0.0, abs=1e-9) and p["ratio"] == pytest.approx(2.0)
    assert p["kept_half_ratio"] == pytest.approx(1.5 / 2.5)
    inverse = Calibration()
    inverse.update(epe, 1 / epe)
    assert inverse.summary()["kept_half_ratio"] == pytest.approx(3.5 / 2.5)
    assert inverse.summary()["ause"] > s["ause"]
    assert Calibration().summary() == {"pixels": 0}


def test_eval_reports_the_calibration_of_a_model_with_the_head(unc_checkpoint, clip, tmp_path):
    data, out = clip.parent.parent, tmp_path / "eval"
    splits = yaml.safe_load((data / "dataset.yaml").read_text())["split"]
    name = next(s for s, clips in splits.items() if clips)
    assert (
        main(
            [
                "eval",
                "--data",
                str(data),
                "--split",
                name,
                "--checkpoint",
                str(unc_checkpoint),
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    vessel = report["calibration"]["flowvid"]["vessel"]
    assert vessel["pixels"] > 0 and 0 < vessel["mean_predicted"]
    assert vessel["ratio"] == pytest.approx(vessel["mean_predicted"] / vessel["mean_epe"])
    assert vessel["curve"][0] == pytest.approx(vessel["mean_epe"], rel=1e-6)
    assert report["overall"]["flowvid"]["epe_vessel"] == pytest.approx(vessel["mean_epe"], rel=1e-5)
    assert "## Expected error: calibration" in (out / "report.md").read_text()
    assert (out / "sparsification.png").stat().st_size > 1000

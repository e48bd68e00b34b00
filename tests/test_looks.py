"""Vessel looks: every look renders, validates, keeps the geometry, and its cells move with the
ground truth."""

import cv2
import numpy as np
import pytest

from flowvid.cli import main
from flowvid.data.synth.looks import ALL_LOOKS, HELD_OUT_LOOKS, LOOKS
from flowvid.data.synth.synthetic import ClipRenderer, SynthConfig

CLEAN = dict(size=96, frames=3, quality="clean", exposure=(0.0, 0.0), drift_prob=0.0)


def residual(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """|frame b sampled at p + flow - frame a| per pixel."""
    n = a.shape[0]
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    warped = cv2.remap(b, x + flow[..., 0], y + flow[..., 1], cv2.INTER_LINEAR)
    return np.abs(warped - a).mean(-1)


@pytest.mark.parametrize("look", ALL_LOOKS)
def test_cells_move_with_the_ground_truth_in_every_look(look):
    """Pixels that show a cell: the true flow carries them onto the same cell in the next
    frame, far better than no motion or the reversed flow, in every look. Sparse, slow cells
    (1-4 px/frame; dense fast flow is ambiguous to intensity matching); frames smoothed
    against photon noise."""
    sums = np.zeros(3)
    for seed in range(6):
        cfg = SynthConfig(**CLEAN, looks=(look,), speed_um_s=(100, 300), cell_density=0.3)
        r = ClipRenderer(cfg, np.random.default_rng(seed))
        assert r.look.name == look
        a, b = (cv2.GaussianBlur(r.frame(i).astype(np.float32), (0, 0), 1.5) for i in (0, 1))
        flow = r.flow(0)
        on_cell = r.cells_od(0, white=False) > 0.1  # no drift: the canvas is the frame
        moving = r.mask(0) & on_cell & (np.linalg.norm(flow, axis=-1) > 1.0)
        sums += [residual(a, b, f)[moving].sum() for f in (flow, 0 * flow, -flow)]
    true, still, reverse = sums
    assert true < 0.75 * still and true < 0.5 * reverse, sums


@pytest.mark.parametrize("look", ALL_LOOKS)
def test_a_look_changes_the_pixels_not_the_ground_truth(look):
    """For one seed, every look (as a look of a multi-look corpus) shows the same scene and
    the same flow; only the pixels differ."""
    cfg = dict(CLEAN, drift_prob=0.5)
    a = ClipRenderer(SynthConfig(**cfg, looks=(look, look)), np.random.default_rng(3))
    b = ClipRenderer(SynthConfig(**cfg, looks=("fluorescence",)), np.random.default_rng(3))
    assert a.describe()["look"]["name"] == look
    for i in range(2):
        np.testing.assert_array_equal(a.flow(i), b.flow(i))
        np.testing.assert_array_equal(a.mask(i), b.mask(i))
    assert np.abs(a.flow(0)).max() > 0.1
    if look != "fluorescence":
        assert not np.array_equal(a.frame(0), b.frame(0))


def test_every_look_renders_and_validates(tmp_path, capsys):
    data = tmp_path / "looks"
    args = ["synth", "--out", str(data), "--videos", "8", "--frames", "4", "--size", "64"]
    assert main([*args, "--workers", "1", "--looks", "all", "--seed", "2"]) == 0
    assert main(["validate", str(data)]) == 0
    assert main(["validate", str(data), "--photometric"]) == 0  # each flow moves its frames
    import yaml

    doc = yaml.safe_load((data / "dataset.yaml").read_text())
    seen = {c["meta"]["look"]["name"] for c in doc["clips"].values()}
    assert len(seen) >= 3 and seen <= set(LOOKS)
    assert doc["generator"]["config"]["looks"] == list(LOOKS)
    capsys.readouterr()
    assert main([*args, "--looks", "holographic", "--out", str(tmp_path / "x")]) == 2
    assert "looks must be" in capsys.readouterr().err


def test_the_held_out_look_renders_by_name_and_never_with_all(tmp_path):
    """dic stands in for a look the shipped model never saw: 'all' (the training corpora)
    leaves it out; named, it renders clips whose flow moves their frames."""
    assert HELD_OUT_LOOKS == ("dic",) and not set(HELD_OUT_LOOKS) & set(LOOKS)
    data = tmp_path / "dic"
    args = ["synth", "--out", str(data), "--videos", "2", "--frames", "4", "--size", "64"]
    assert main([*args, "--workers", "1", "--looks", "dic"]) == 0
    assert main(["validate", str(data), "--photometric"]) == 0
    import yaml

    doc = yaml.safe_load((data / "dataset.yaml").read_text())
    assert {c["meta"]["look"]["name"] for c in doc["clips"].values()} == {"dic"}

"""Kymographs against known answers: texture moving at a known constant speed."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from flowvid.analysis.kymo import line_path, video_kymograph, window_speeds
from flowvid.cli import main


def _moving(speed: float, angle_deg: float = 0.0, frames: int = 40, n: int = 96) -> np.ndarray:
    """(T, n, n, 3) uint8: a smooth random texture moving ``speed`` px/frame at an angle."""
    base = ndimage.gaussian_filter(np.random.default_rng(0).random((n, n)), 1.5)
    base = (base - base.min()) / np.ptp(base)
    a = np.radians(angle_deg)
    shift = np.array([np.sin(a), np.cos(a)]) * speed
    frames_ = [ndimage.shift(base, shift * t, order=3, mode="wrap") for t in range(frames)]
    return (np.repeat(np.stack(frames_)[..., None], 3, -1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.5, -1.5, 4.0])
def test_stripe_speed_of_a_known_constant_motion(speed):
    kymo = video_kymograph(_moving(speed), line_path(10, 48, 86, 48))
    measured = window_speeds(kymo, None, 32).stripe
    assert measured == pytest.approx(speed, rel=0.05, abs=0.03)


def test_the_path_direction_sets_the_sign_and_any_angle_works():
    frames = _moving(1.2, angle_deg=30)
    a = np.radians(30)
    forward = line_path(20, 30, 20 + 60 * np.cos(a), 30 + 60 * np.sin(a))
    assert window_speeds(video_kymograph(frames, forward)).stripe == pytest.approx(1.2, rel=0.05)
    backward = forward[::-1]
    assert window_speeds(video_kymograph(frames, backward)).stripe == pytest.approx(-1.2, rel=0.05)


def test_kymo_command_sets_stripe_and_model_speed_side_by_side(tmp_path, capsys):
    frames = _moving(2.0, frames=24, n=64)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    flow = np.zeros((23, 64, 64, 2), np.float32)
    flow[..., 0] = 2.0  # the true flow, standing in for the model's
    np.save(tmp_path / "flow.npy", flow)
    out = tmp_path / "kymo.png"
    argv = ["kymo", str(folder), "--flow", str(tmp_path / "flow.npy"), "--line", "5,32,58,32"]
    assert (
        main([*argv, "--out", str(out), "--window", "16", "--um-per-px", "0.5", "--fps", "10"]) == 0
    )
    doc = json.loads(out.with_suffix(".json").read_text())
    for row in doc["windows"]:
        assert row["stripe_speed_px_per_frame"] == pytest.approx(2.0, rel=0.05)
        assert row["model_speed_px_per_frame"] == pytest.approx(2.0, abs=1e-5)
        assert row["stripe_speed_um_per_s"] == pytest.approx(row["stripe_speed_px_per_frame"] * 5)
    assert doc["agreement"]["agree"] and "warning" not in doc["agreement"]
    assert "warning" not in capsys.readouterr().err
    image = np.asarray(Image.open(out))
    assert image.shape[1] > 3 * image.shape[0] // 2  # three panels side by side
    # a flow at a tenth of the speed: the kymograph's stripes say it is wrong
    np.save(tmp_path / "slow.npy", flow * 0.1)
    argv[3] = str(tmp_path / "slow.npy")
    assert main([*argv, "--out", str(tmp_path / "slow.png"), "--window", "16"]) == 0
    check = json.loads((tmp_path / "slow.json").read_text())["agreement"]
    assert not check["agree"] and check["model_over_stripe"] == pytest.approx(0.1, rel=0.06)
    assert "0.1x the speed the video's kymograph stripes show (2)" in capsys.readouterr().err
    bad = ["kymo", str(folder), "--line", "5,32,500,32", "--out", str(tmp_path / "k2.png")]
    assert main(bad) == 2 and "leaves the 64x64 frame" in capsys.readouterr().err
    assert not (tmp_path / "k2.png").exists()


def test_stripe_speeds_of_short_or_featureless_paths_are_rejected_not_guessed():
    from flowvid.analysis.kymo import MIN_STRIPE_CONFIDENCE, agreement, stripe_confidence

    good = window_speeds(video_kymograph(_moving(1.5), line_path(10, 48, 86, 48)), None, 32)
    assert good.stripe == pytest.approx(1.5, rel=0.05) and (good.confidence > 0.9).all()
    # a path with nothing that moves: flat grey and camera noise
    noise = np.random.default_rng(3).normal(128, 3, (40, 96, 96, 1)).clip(0, 255)
    noise = noise.repeat(3, -1).astype(np.uint8)
    flat = window_speeds(video_kymograph(noise, line_path(10, 48, 86, 48)), None, 32)
    assert np.isnan(flat.stripe).all() and (flat.confidence < MIN_STRIPE_CONFIDENCE).all()
    # a 12 px path: its stripe angle is biased (1.41 for 1.5), so it is not read
    short = window_speeds(video_kymograph(_moving(1.5), line_path(10, 48, 22, 48)), None, 32)
    assert np.isnan(short.stripe).all()
    # the confidence itself: high at the true speed, low at a wrong one
    kymo = video_kymograph(_moving(2.5), line_path(10, 48, 86, 48))[:32]
    assert stripe_confidence(kymo, 2.5) > 0.95 > 0.3 > stripe_confidence(kymo, 3.75)
    flat.model = np.full(len(flat.start), 1.0)
    assert agreement(flat)["agree"] is None and "no window" in agreement(flat)["warning"]

"""The photometric ground-truth check: known conventions, known mistakes, each named."""

import shutil

import numpy as np
import pytest

from flowvid.cli import main
from flowvid.data.dataset import Clip, load_dataset
from flowvid.data.gtcheck import check_ground_truth
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.motion import MotionConfig
from flowvid.io.writer import write_video
from flowvid.lab.sanity import _shifted, noise_canvas

SIZE = 64


def _translation_clip(tmp_path, steps: np.ndarray, name: str = "clip") -> Clip:
    """A periodic texture moved by exact Fourier shifts: frame k+1 = frame k moved by
    steps[k] px; the true flow of pair k is steps[k] everywhere."""
    canvas = noise_canvas(SIZE, seed=4)
    at = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, 0)])
    frames = [(np.clip(_shifted(canvas, d, SIZE), 0, 1) * 255 + 0.5).astype(np.uint8) for d in at]
    flow = np.broadcast_to(steps[:, None, None, :], (len(steps), SIZE, SIZE, 2))
    video = write_video(tmp_path / f"{name}.mp4", frames, fps=30.0)
    np.save(tmp_path / f"{name}.npy", np.ascontiguousarray(flow, np.float32))
    return Clip(name, video, tmp_path / f"{name}.npy", None, "test", 30.0, None)


def _with_flow(clip: Clip, flow: np.ndarray, tmp_path, tag: str) -> Clip:
    path = tmp_path / f"{clip.name}_{tag}.npy"
    np.save(path, np.ascontiguousarray(flow, np.float32))
    return Clip(clip.name, clip.video, path, None, "test", 30.0, None)


@pytest.fixture(scope="module")
def alternating(tmp_path_factory):
    """10 frames whose motion turns every pair: (3, 1), (-1, 2.5), (0.5, -2), (3, 1), ..."""
    steps = np.array([(3.0, 1.0), (-1.0, 2.5), (0.5, -2.0)] * 3)
    return _translation_clip(tmp_path_factory.mktemp("gt"), steps)


def test_the_stated_convention_fits_best(alternating):
    check = check_ground_truth(alternating)
    assert check.best == "as stated" and check.suspect is None
    assert check.pixels > 10_000
    worst_other = min(v for k, v in check.residual.items() if k != "as stated")
    assert check.residual["as stated"] < 0.5 * worst_other


@pytest.mark.parametrize(
    ("tag", "transform", "expected"),
    [
        ("negated", lambda f: -f, "negated"),
        ("swapped", lambda f: f[..., ::-1], "u, v swapped"),
        ("px_per_s", lambda f: 30.0 * f, "out of frame"),  # px/s at 30 fps, not px/frame
        ("late", lambda f: np.roll(f, 1, 0), "one pair late"),  # flow[i] is pair (i-1, i)
        ("early", lambda f: np.roll(f, -1, 0), "one pair early"),  # flow[i] is pair (i+1, i+2)
    ],
)
def test_each_mistake_is_named(alternating, tmp_path, tag, transform, expected):
    flow = np.load(alternating.flow)
    check = check_ground_truth(_with_flow(alternating, transform(flow), tmp_path, tag))
    assert check.suspect == expected, check.residual


def test_flow_on_static_frames_is_worse_than_none(tmp_path):
    """Still frames under a moving flow: no reading is a verdict (a clear lumen with sparse
    tracers looks like this too), but the stated flow fits worse than zero flow."""
    clip = _translation_clip(tmp_path, np.zeros((4, 2)), "still")
    moving = np.broadcast_to(np.float32([2.0, -1.0]), (4, SIZE, SIZE, 2))
    check = check_ground_truth(_with_flow(clip, moving, tmp_path, "moving"))
    assert check.still > 2.0 and check.suspect is None, check.residual
    assert (
        check_ground_truth(_with_flow(clip, np.load(clip.flow) + 0.5, tmp_path, "offset")).still > 1
    )


def test_a_two_frame_clip_is_checked_without_the_shifted_readings(tmp_path):
    clip = _translation_clip(tmp_path, np.array([(2.0, -1.0)]), "pair")
    assert check_ground_truth(clip).suspect is None
    negated = check_ground_truth(_with_flow(clip, -np.load(clip.flow), tmp_path, "neg"))
    assert negated.suspect == "negated"
    assert "one pair early" not in negated.residual


def test_a_static_clip_cannot_be_told_and_is_not_flagged(tmp_path):
    clip = _translation_clip(tmp_path, np.zeros((4, 2)), "static")
    check = check_ground_truth(clip)
    assert check.pixels == 0 and check.best is None and check.suspect is None


@pytest.fixture(scope="module")
def motion_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("gtdata") / "motion"
    cfg = MotionConfig(size=80, frames=8, speed_px=(0.5, 5.0))
    return write_corpus(out, 2, cfg, seed=3, workers=1, progress=False)


def test_rendered_motion_clips_pass(motion_dataset):
    """Layered objects with rotation, zoom, warps, occlusion, blur, noise and x264."""
    for clip in load_dataset(motion_dataset).clips:
        check = check_ground_truth(clip)
        assert check.suspect is None, (clip.name, check.residual)
        stated = check.residual["as stated"]
        assert stated <= 1.02 * min(check.residual.values())  # ties with a shift at most
        assert check.still < 0.8
        for other in ("negated", "u, v swapped", "zero flow"):
            assert stated < 0.9 * check.residual[other], (clip.name, other, check.residual)


def test_cli_photometric_flags_a_negated_dataset(motion_dataset, tmp_path, capsys):
    assert main(["validate", str(motion_dataset), "--photometric", "--pairs", "3"]) == 0
    captured = capsys.readouterr()
    assert "OK, 2 clips" in captured.out and "motion_001: ok" in captured.out
    assert captured.err == ""

    bad = tmp_path / "negated"
    shutil.copytree(motion_dataset, bad)
    flow = bad / "flow" / "motion_001.npy"
    np.save(flow, -np.load(flow))
    assert main(["validate", str(bad), "--photometric", "--pairs", "3"]) == 2
    err = capsys.readouterr().err
    assert "1 clip(s)" in err and "motion_001.npy" in err and "'negated'" in err
    assert "negate it" in err and "motion_000" not in err


def test_cli_refuses_zero_pairs(motion_dataset, capsys):
    assert main(["validate", str(motion_dataset), "--photometric", "--pairs", "0"]) == 2
    assert "--pairs must be at least 1" in capsys.readouterr().err

"""The command line end to end: exit 0 on success, 2 with one clear message on bad input."""

import subprocess
import sys

import numpy as np
import pytest

from flowvid.cli import main
from flowvid.io.flowfile import read_flow
from flowvid.io.video import open_video


def test_synth_validate_overlay_end_to_end(tmp_path, capsys):
    data = tmp_path / "demo_synth"
    assert (
        main(
            [
                "synth",
                "--out",
                str(data),
                "--videos",
                "3",
                "--frames",
                "12",
                "--size",
                "96",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    for name in ("vessel_000", "vessel_001", "vessel_002"):
        with open_video(data / "videos" / f"{name}.mp4") as v:
            assert (v.num_frames, v.height, v.width) == (12, 96, 96)
        assert read_flow(data / "flow" / f"{name}.npy").shape == (11, 96, 96, 2)
    assert main(["validate", str(data)]) == 0
    assert "OK, 3 clips" in capsys.readouterr().out
    out = tmp_path / "overlay.mp4"
    args = [
        "overlay",
        str(data / "videos/vessel_000.mp4"),
        str(data / "flow/vessel_000.npy"),
        "--out",
        str(out),
        "--style",
        "both",
        "--um-per-px",
        "0.8",
    ]
    assert main(args) == 0
    with open_video(out) as v:
        assert v.num_frames == 11 and (v.height, v.width) == (288, 288)  # 96 px shown 3x
    gif = tmp_path / "overlay.gif"
    assert main(args[:3] + ["--out", str(gif)]) == 0 and gif.stat().st_size > 0


def test_overlay_colours_every_pixel_by_its_motion(tmp_path):
    """Still on the left, moving right on the right: the left is tinted white (the wheel's
    centre: no uncoloured holes), the right red (u > 0 on the Middlebury wheel). A 96 px
    clip is enlarged 3x for display, so the key's text is legible."""
    from PIL import Image

    from flowvid.io.flowfile import write_flow
    from flowvid.io.video import write_video

    frames = np.full((4, 96, 96, 3), 128, np.uint8)
    flow = np.zeros((3, 96, 96, 2), np.float32)
    flow[:, :, 48:, 0] = 2.0
    write_video(tmp_path / "c.mp4", frames, fps=10)
    write_flow(tmp_path / "f.npy", flow)
    argv = ["overlay", str(tmp_path / "c.mp4"), str(tmp_path / "f.npy")]
    assert main([*argv, "--out", str(tmp_path / "png")]) == 0
    first = np.asarray(Image.open(tmp_path / "png" / "000000.png")).astype(int)
    assert first.shape == (288, 288, 3)  # 96 px x 3 for display
    left, right = first[150:, :130], first[150:, 160:]  # below the key
    assert (np.abs(left - left.mean((0, 1))) <= 3).all() and left.mean() > 128 + 40  # whitened
    assert right[..., 0].mean() > right[..., 2].mean() + 40


def test_validate_bad_dataset_exits_2(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"junk")
    assert main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "a.mp4: video without flow" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["validate", "/nonexistent/data"], "no such dataset folder"),
        (
            ["overlay", "/nonexistent.mp4", "/nonexistent.npy", "--out", "o.mp4"],
            "no such flow file",
        ),
        (["synth", "--out", "x", "--videos", "0"], "at least 1"),
        (["synth", "--out", "x", "--quality", "superb"], "quality must be"),
    ],
)
def test_bad_input_exit_2_with_message(tmp_path, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_overlay_flow_that_does_not_fit_the_video(tmp_path, capsys):
    from flowvid.io.flowfile import write_flow
    from flowvid.io.video import write_video

    write_video(tmp_path / "c.mp4", np.zeros((5, 16, 16, 3), np.uint8), fps=10)
    write_flow(tmp_path / "f.npy", np.zeros((5, 16, 16, 2), np.float32))  # T maps instead of T-1
    assert (
        main(
            [
                "overlay",
                str(tmp_path / "c.mp4"),
                str(tmp_path / "f.npy"),
                "--out",
                str(tmp_path / "o.mp4"),
            ]
        )
        == 2
    )
    assert "expected (4, 16, 16)" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "flowvid.cli", "synth", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "example: flowvid synth" in result.stdout


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("synth", "(default: 50)"),
        ("validate", "dataset folder"),
        ("train", "write a run folder"),
        ("predict", "(default: 16)"),
        ("overlay", "(default: color)"),
        ("eval", "(default: test)"),
        ("embed", "(default: auto)"),
        ("measure", "(default: 5)"),
        ("kymo", "(default: 32)"),
    ],
)
def test_every_subcommand_has_help_with_an_example_and_its_defaults(command, shown, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"example: flowvid {command}" in out
    assert shown in " ".join(out.split())  # argparse wraps lines


def test_train_on_a_missing_dataset_says_how_to_make_one(tmp_path, capsys):
    missing, run = tmp_path / "typo", tmp_path / "run"
    args = [
        "train",
        "--config",
        "configs/debug.yaml",
        "--data",
        str(missing),
        "--run-dir",
        str(run),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no dataset at" in err and f"flowvid synth --out {missing}" in err
    assert not missing.exists() and not run.exists()  # nothing rendered, no empty run


def test_overlay_key_text_is_legible_on_a_small_clip(tmp_path):
    """On a 128 px clip the key's capital letters are at least 12 px tall."""
    import cv2

    from flowvid.analysis.overlay import render_frame, side_by_side
    from flowvid.analysis.viz import MIN_TEXT_PX, display_factor, text_scale

    frame = np.full((128, 128, 3), 90, np.uint8)
    flow = np.zeros((128, 128, 2), np.float32)
    k = display_factor(128, 128)
    image = render_frame(frame, flow, 1.0, "color", "1.00 px/frame", k=k)
    assert image.shape[:2] == (256, 256)
    letter = cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, text_scale(0), 1)[0][1]
    assert letter >= MIN_TEXT_PX
    arrows = render_frame(frame, flow, 1.0, "arrows", "1.00 px/frame", k=k)
    assert not (arrows[4:40, 4:40] != frame[0, 0]).all(-1).all()  # no colour wheel there
    both = side_by_side(frame, flow, flow + 1.0, 2.0, "color", "2.00 px/frame", k)
    assert both.shape == (256, 4 * 256 + 3 * 2, 3)


def test_overlay_refuses_a_flow_predicted_for_another_video(tmp_path, capsys):
    import json

    from flowvid.io.flowfile import write_flow
    from flowvid.io.video import write_video

    write_video(tmp_path / "a.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=10)
    write_flow(tmp_path / "f.npy", np.zeros((2, 16, 16, 2), np.float32))
    (tmp_path / "f.npy.json").write_text(json.dumps({"video": "recordings/b.mp4"}))
    argv = ["overlay", str(tmp_path / "a.mp4"), str(tmp_path / "f.npy")]
    assert main([*argv, "--out", str(tmp_path / "o.mp4")]) == 2
    assert "predicted for recordings/b.mp4" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_overlay_takes_the_calibration_its_flow_s_sidecar_states(tmp_path, capsys, monkeypatch):
    """A frame folder states no frame rate: the flow's sidecar gives it (and the pixel size);
    with neither, --um-per-px is refused instead of silently staying in px/frame."""
    import json

    from PIL import Image

    from flowvid.analysis import overlay
    from flowvid.io.flowfile import write_flow

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(frames / f"{i:03d}.png")
    write_flow(tmp_path / "f.npy", np.ones((2, 16, 16, 2), np.float32))
    labels = []
    honest = overlay.speed_label
    monkeypatch.setattr(overlay, "speed_label", lambda *a: labels.append(a) or honest(*a))
    argv = ["overlay", str(frames), str(tmp_path / "f.npy"), "--out"]
    assert main([*argv, str(tmp_path / "a.gif"), "--um-per-px", "0.5"]) == 2
    assert "µm/s needs a frame rate: give --fps" in capsys.readouterr().err
    assert not (tmp_path / "a.gif").exists()
    (tmp_path / "f.npy.json").write_text(json.dumps({"fps": 20.0, "um_per_px": 0.5}))
    assert main([*argv, str(tmp_path / "b.gif")]) == 0
    assert labels[-1][1:] == (0.5, 20.0)  # µm/px and frames/s from the sidecar
    assert main([*argv, str(tmp_path / "c.gif"), "--fps", "40"]) == 0
    assert labels[-1][1:] == (0.5, 40.0)  # the command line wins


def test_overlay_error_scale_covers_the_error_and_captions_have_no_nan():
    from flowvid.analysis.overlay import error_panel, error_scale, side_by_side

    gt = np.zeros((64, 64, 2), np.float32)
    gt[..., 0] = 1.5  # every pixel moves: nothing is still
    pred = gt.copy()
    pred[..., 0] += np.linspace(0, 1.23, 64, dtype=np.float32)[None, :]  # errors up to 1.23
    top = error_scale(np.linalg.norm(pred - gt, axis=-1))
    assert 1.18 < top < 1.24  # the 99th percentile, not half the speed scale (0.75)
    panel = error_panel(pred, gt, None, 1)
    assert panel[40:, -2].mean() > panel[40:, 40].mean()  # the largest errors stay brightest
    frame = np.full((64, 64, 3), 90, np.uint8)
    seen = []
    import flowvid.analysis.overlay as overlay

    honest = overlay.titled
    overlay.titled = lambda image, title: seen.append(title) or honest(image, title)
    try:
        side_by_side(frame, pred, gt, 1.5, "color", "1.50 px/frame", 1)
    finally:
        overlay.titled = honest
    assert seen[-1] == "EPE moving 0.62 px" and "nan" not in " ".join(seen)


def test_overlay_arrows_at_the_scale_speed_span_one_and_a_half_grid_steps():
    from flowvid.analysis.overlay import arrow_step, render_frame

    frame = np.zeros((256, 256, 3), np.uint8)
    flow = np.zeros((256, 256, 2), np.float32)
    flow[150:155, 100:110, 0] = 2.0  # one grid point moves right at the scale's speed
    image = render_frame(frame, flow, 2.0, "arrows", "2.00 px/frame", k=1)
    step = arrow_step(256, 256)
    assert step == 16  # the grid point is (104, 152)
    lit = np.flatnonzero(image[152, :, 0] > 128)
    assert lit.min() == 104 and abs(lit.max() - 104 - 1.5 * step) <= 1  # a 24 px arrow
    image[:60, :160] = 0  # the key
    assert (image[:140] == 0).all()  # nothing else drawn where nothing moves


def test_every_command_describes_itself_in_its_help():
    import argparse

    from flowvid.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [name for name, p in sub.choices.items() if not (p.description or "").strip()]
    assert missing == []

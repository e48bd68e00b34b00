"""The one-page clip summary against a known answer: a texture flowing through a straight
vessel at a known speed over a static background."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from flowvid.analysis.summary import summarise_clip
from flowvid.cli import main

SPEED = 1.5  # px/frame, to the right, inside the vessel


def _clip(frames=40, h=64, w=96):
    """Frames (T, h, w, 3) uint8, flow (T-1, h, w, 2) and the vessel mask (rows 22-41)."""
    rng = np.random.default_rng(1)
    tissue = ndimage.gaussian_filter(rng.random((h, w)), 2.0)
    cells = ndimage.gaussian_filter(rng.random((h, w)), 1.2)
    mask = np.zeros((h, w), bool)
    mask[22:42] = True
    video = []
    for t in range(frames):
        moved = ndimage.shift(cells, (0, SPEED * t), order=3, mode="wrap")
        grey = np.where(mask, moved, tissue)
        grey = (grey - grey.min()) / np.ptp(grey)
        video.append(np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, -1))
    flow = np.zeros((frames - 1, h, w, 2), np.float32)
    flow[:, mask, 0] = SPEED
    return np.stack(video), flow, mask


def test_summary_reads_the_known_speed_from_the_flow_and_from_the_kymograph():
    video, flow, mask = _clip()
    s = summarise_clip((f for f in video), flow, mask, um_per_px=0.5, fps=20, window=16)
    (seg,) = s.measured["segments"]
    sign = np.sign(np.cos(np.radians(seg["axis_deg"])))  # the segment's axis is +x or -x
    assert s.centreline_speed[:, 0] == pytest.approx(sign * SPEED, abs=1e-5)
    assert s.speeds.stripe == pytest.approx(sign * SPEED, rel=0.05)  # same sign convention
    assert s.speeds.model == pytest.approx(sign * SPEED, abs=1e-5)
    assert seg["mean_centreline_speed_um_per_s"] == pytest.approx(SPEED * 0.5 * 20, rel=1e-5)
    assert s.mean_speed[mask] == pytest.approx(SPEED) and not s.mean_speed[~mask].any()
    np.testing.assert_allclose(s.mean_frame, video.mean(0), atol=0.5)
    assert s.kymo.shape == (len(video), len(s.path)) and s.scale == pytest.approx(10.0)


def test_summary_refuses_a_video_and_flow_of_different_lengths():
    video, flow, mask = _clip(frames=12)
    with pytest.raises(Exception, match="the video has 11 frames; the flow is for 12"):
        summarise_clip(iter(video[:-1]), flow, mask)


def test_summary_command_writes_the_figure_and_its_numbers(tmp_path, capsys):
    video, flow, mask = _clip(frames=24)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    np.save(tmp_path / "flow.npy", flow)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = tmp_path / "summary.png"
    common = [
        str(folder),
        "--flow",
        str(tmp_path / "flow.npy"),
        "--mask",
        str(tmp_path / "mask.png"),
    ]
    assert main(["summary", *common, "--out", str(out), "--window", "16", "--fps", "20"]) == 0
    image = Image.open(out)
    assert image.size[0] > image.size[1] > 700  # one landscape page, not a thumbnail
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["kymograph"]["segment"] == 1 and len(doc["segments"]) == 1
    stripe = np.abs(doc["kymograph"]["stripe_speed_px_per_frame"])
    assert stripe == pytest.approx(SPEED, rel=0.05)
    assert doc["kymograph"]["agreement"]["agree"]
    assert "warning" not in capsys.readouterr().err
    # a flow at a tenth of the speed is flagged on the page's numbers and on the terminal
    np.save(tmp_path / "slow.npy", flow * 0.1)
    slow = ["summary", str(folder), "--flow", str(tmp_path / "slow.npy"), "--mask"]
    assert main([*slow, str(tmp_path / "mask.png"), "--out", str(tmp_path / "s.png")]) == 0
    check = json.loads((tmp_path / "s.json").read_text())["kymograph"]["agreement"]
    assert not check["agree"] and check["model_over_stripe"] == pytest.approx(0.1, rel=0.06)
    assert "kymograph stripes show" in capsys.readouterr().err

    np.save(tmp_path / "short.npy", flow[:-2])
    bad = tmp_path / "bad.png"
    argv = ["summary", str(folder), "--flow", str(tmp_path / "short.npy"), "--mask"]
    assert main([*argv, str(tmp_path / "mask.png"), "--out", str(bad)]) == 2
    assert "does not fit the video" in capsys.readouterr().err and not bad.exists()
    assert main(["summary", *common, "--out", str(bad), "--segment", "3"]) == 2
    assert "segment must be 1..1" in capsys.readouterr().err and not bad.exists()


def test_summary_shows_the_expected_error_panel(tmp_path):
    video, flow, mask = _clip(frames=12)
    errors = np.where(mask, 0.2, 1.0)[None].repeat(len(flow), 0).astype(np.float32)
    errors[:, mask.nonzero()[0].min() :, :10] = 0.8  # the vessel's left end is doubtful
    s = summarise_clip(iter(video), flow, mask, window=8, errors=errors)
    np.testing.assert_allclose(s.mean_error, errors[0])
    seg = s.measured["segments"][0]
    inside = errors[0][s.segments[0].lumen]
    assert seg["mean_uncertainty_px_per_frame"] == pytest.approx(inside.mean(), rel=1e-6)
    assert seg["mean_centreline_speed_px_per_frame"] != 0  # reported, not used to drop
    from flowvid.analysis.summary import summary_figure

    summary_figure(tmp_path / "with.png", s)
    summary_figure(tmp_path / "without.png", summarise_clip(iter(video), flow, mask, window=8))
    with_panel = np.asarray(Image.open(tmp_path / "with.png").convert("RGB"))
    without = np.asarray(Image.open(tmp_path / "without.png").convert("RGB"))
    assert with_panel.shape[0] == without.shape[0]
    assert with_panel.shape[1] > 1.3 * without.shape[1]  # a third column: the error panel
    with pytest.raises(Exception, match="not for the flow"):
        summarise_clip(iter(video), flow, mask, errors=errors[:3])

    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    np.save(tmp_path / "flow.npy", flow)
    np.save(tmp_path / "unc.npy", errors)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = tmp_path / "summary.png"
    args = ["summary", str(folder), "--flow", str(tmp_path / "flow.npy"), "--mask"]
    args += [str(tmp_path / "mask.png"), "--out", str(out), "--window", "8"]
    assert main([*args, "--uncertainty", str(tmp_path / "unc.npy")]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["segments"][0]["mean_uncertainty_px_per_frame"] == pytest.approx(inside.mean())


def test_a_flow_of_a_frame_range_lines_up_in_every_command(tmp_path, capsys):
    """A flow that `predict --frames 5:16` wrote (its sidecar says so) is read against those
    frames by summary, kymo and overlay, the flow given as the second argument to each; the
    same maps without a sidecar are refused with the reason."""
    video, flow, mask = _clip(frames=24)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    np.save(tmp_path / "part.npy", flow[5:15])
    (tmp_path / "part.npy.json").write_text(json.dumps({"frames": [5, 16]}))
    part, clip, m = str(tmp_path / "part.npy"), str(folder), str(tmp_path / "mask.png")
    assert main(["summary", clip, part, "--mask", m, "--out", str(tmp_path / "s.png")]) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["frames"] == [5, 16] and doc["kymograph"]["first_frame"][0] == 5
    assert np.abs(doc["kymograph"]["stripe_speed_px_per_frame"]) == pytest.approx(SPEED, rel=0.05)
    assert doc["kymograph"]["agreement"]["agree"]
    line = ["--line", "5,32,90,32", "--window", "8"]
    assert main(["kymo", clip, part, *line, "--out", str(tmp_path / "k.png")]) == 0
    rows = json.loads((tmp_path / "k.json").read_text())["windows"]
    assert rows[0]["first_frame"] == 5 and rows[0]["model_speed_px_per_frame"] == pytest.approx(1.5)
    assert main(["overlay", clip, part, "--out", str(tmp_path / "o.gif")]) == 0
    (tmp_path / "part.npy.json").unlink()
    capsys.readouterr()
    assert main(["summary", clip, part, "--mask", m, "--out", str(tmp_path / "t.png")]) == 2
    assert "no sidecar says which frames it covers" in capsys.readouterr().err


def test_summary_without_a_kymograph_for_a_short_clip_or_when_asked(tmp_path):
    video, flow, mask = _clip(frames=12)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    for frames, extra in ((3, []), (12, ["--no-kymo"])):
        folder = tmp_path / f"clip{frames}"
        folder.mkdir()
        for i, f in enumerate(video[:frames]):
            Image.fromarray(f).save(folder / f"{i:03d}.png")
        np.save(tmp_path / f"flow{frames}.npy", flow[: frames - 1])
        out = tmp_path / f"s{frames}.png"
        argv = ["summary", str(folder), str(tmp_path / f"flow{frames}.npy"), "--mask"]
        assert main([*argv, str(tmp_path / "mask.png"), "--out", str(out), *extra]) == 0
        doc = json.loads(out.with_suffix(".json").read_text())
        assert doc["kymograph"] is None
        (seg,) = doc["segments"]
        assert abs(seg["mean_centreline_speed_px_per_frame"]) == pytest.approx(SPEED, rel=1e-4)

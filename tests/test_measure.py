"""Vessel quantities against known answers: a straight vessel with a Poiseuille profile."""

import json

import numpy as np
import pytest
from PIL import Image

from flowvid.analysis.measure import measure, pulsatility_index, segments
from flowvid.cli import main


def _vessel(h=48, w=96, radius=6.5, v_max=3.0, frames=8, angle_deg=0.0, pulse=0.0):
    """A straight vessel through the middle at ``angle_deg`` (0 = horizontal): mask and a
    Poiseuille flow along it, v(r) = v_max (1 - (r / radius)^2), pulsing in time."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    a = np.radians(angle_deg)
    along, across = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    r = (x - w / 2) * across[0] + (y - h / 2) * across[1]
    mask = np.abs(r) <= radius
    profile = np.clip(1 - (r / radius) ** 2, 0, None) * mask
    gain = 1 + pulse * np.sin(2 * np.pi * np.arange(frames) / frames)
    flow = v_max * gain[:, None, None, None] * profile[None, ..., None] * along
    return mask, flow.astype(np.float32)


def test_straight_poiseuille_vessel_gives_its_speed_diameter_and_flow_rate():
    mask, flow = _vessel()  # 13 px wide (|r| <= 6.5), centre speed 3 px/frame
    rows, summary = measure(flow, mask, um_per_px=0.5, fps=100)
    (seg,) = summary["segments"]
    assert seg["diameter_px"] == pytest.approx(13, abs=1.0)
    assert abs(seg["mean_centreline_speed_px_per_frame"]) == pytest.approx(3.0, rel=0.03)
    # the cross-section mean of a Poiseuille profile is 2/3 of the centre in 2-D projection
    mean = np.mean([abs(r["mean_speed_px_per_frame"]) for r in rows])
    assert mean == pytest.approx(3.0 * 2 / 3, rel=0.06)
    q = np.pi * 13**2 * 3.0 / 8
    assert abs(seg["mean_flow_rate_px3_per_frame"]) == pytest.approx(q, rel=0.05)
    assert seg["mean_centreline_speed_um_per_s"] == pytest.approx(
        seg["mean_centreline_speed_px_per_frame"] * 0.5 * 100
    )
    assert len(rows) == len(flow)  # one segment, one row per map
    direction = rows[0]["direction_deg"]
    assert min(abs(direction), abs(abs(direction) - 180)) < 1.0  # along the vessel


@pytest.mark.parametrize("angle", [30.0, 60.0, 90.0, 135.0])
def test_the_speed_is_taken_along_the_vessel_whatever_its_angle(angle):
    mask, flow = _vessel(h=96, w=96, angle_deg=angle)
    _, summary = measure(flow, mask)
    seg = max(summary["segments"], key=lambda s: s["length_px"])
    assert abs(seg["mean_centreline_speed_px_per_frame"]) == pytest.approx(3.0, rel=0.02)
    assert seg["diameter_px"] == pytest.approx(13, abs=0.5)


def test_pulsatility_index_of_a_known_pulse():
    mask, flow = _vessel(frames=16, pulse=0.5)  # centre speed 3 (1 + 0.5 sin): PI = 1.0
    _, summary = measure(flow, mask)
    assert summary["segments"][0]["pulsatility_index"] == pytest.approx(1.0, rel=0.05)
    assert pulsatility_index(np.array([1.0, 3.0])) == pytest.approx(1.0)


def test_a_branching_mask_splits_into_segments():
    mask = np.zeros((80, 80), bool)
    mask[38:43, 5:75] = True  # a horizontal vessel
    mask[5:40, 38:43] = True  # a branch going up from its middle
    segs = segments(mask)
    assert len(segs) == 3  # left, right, up
    assert sum(s.lumen.sum() for s in segs) <= mask.sum()


def test_measure_command_reads_the_sidecar_calibration(tmp_path, capsys):
    mask, flow = _vessel()
    np.save(tmp_path / "f.npy", flow * 50.0)  # written in um/s: 0.5 um/px x 100 fps
    side = {"units": "um/s", "um_per_s_per_px_per_frame": 50.0, "fps": 100.0, "um_per_px": 0.5}
    (tmp_path / "f.npy.json").write_text(json.dumps(side))
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    out = tmp_path / "vessels.csv"
    assert (
        main(
            [
                "measure",
                str(tmp_path / "f.npy"),
                "--mask",
                str(tmp_path / "m.png"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    header, *lines = out.read_text().splitlines()
    assert "centreline_speed_um_per_s" in header and len(lines) == len(flow)
    summary = json.loads(out.with_suffix(".json").read_text())
    seg = summary["segments"][0]
    assert abs(seg["mean_centreline_speed_px_per_frame"]) == pytest.approx(3.0, rel=0.03)
    assert abs(seg["mean_centreline_speed_um_per_s"]) == pytest.approx(150.0, rel=0.03)
    assert "um/s" in capsys.readouterr().out


def test_measure_bad_input(tmp_path, capsys):
    mask, flow = _vessel()
    np.save(tmp_path / "f.npy", flow)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros(mask.shape, np.uint8)).save(tmp_path / "empty.png")
    for name, said in (("small.png", "mask has shape"), ("empty.png", "no vessel segment")):
        argv = ["measure", str(tmp_path / "f.npy"), "--mask", str(tmp_path / name)]
        assert main([*argv, "--out", str(tmp_path / "o.csv")]) == 2
        assert said in capsys.readouterr().err
        assert not (tmp_path / "o.csv").exists()


def test_max_uncertainty_measures_only_the_vectors_to_believe(tmp_path, capsys):
    mask, flow = _vessel(frames=6)  # centre speed 3 px/frame
    h, w = mask.shape
    errors = np.full(flow.shape[:3], 0.1, np.float32)
    flow[:, :, : w // 2] = 0.0  # the left half of every map is wrong ...
    errors[:, :, : w // 2] = 5.0  # ... and says so
    errors[5] = 5.0  # the last map is all doubt
    _, plain = measure(flow, mask)
    assert abs(plain["segments"][0]["mean_centreline_speed_px_per_frame"]) < 2.0  # misled
    rows, kept = measure(flow, mask, errors=errors, max_error=1.0)
    (seg,) = kept["segments"]
    assert abs(seg["mean_centreline_speed_px_per_frame"]) == pytest.approx(3.0, rel=0.03)
    assert seg["maps_measured"] == 5 and np.isnan(rows[5]["centreline_speed_px_per_frame"])
    assert rows[0]["kept_share"] == pytest.approx(0.5, abs=0.03) and rows[5]["kept_share"] == 0
    assert rows[0]["mean_uncertainty_px_per_frame"] == pytest.approx(2.55, abs=0.1)
    _, noted = measure(flow, mask, errors=errors)  # without a threshold: reported, not used
    assert noted["segments"][0]["mean_centreline_speed_px_per_frame"] == pytest.approx(
        plain["segments"][0]["mean_centreline_speed_px_per_frame"]
    )
    with pytest.raises(Exception, match="not for the flow"):
        measure(flow, mask, errors=errors[:3], max_error=1.0)

    np.save(tmp_path / "f.npy", flow)
    np.save(tmp_path / "u.npy", errors)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    args = ["measure", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "m.png")]
    out = tmp_path / "v.csv"
    assert (
        main(
            [
                *args,
                "--out",
                str(out),
                "--uncertainty",
                str(tmp_path / "u.npy"),
                "--max-uncertainty",
                "1",
            ]
        )
        == 0
    )
    doc = json.loads(out.with_suffix(".json").read_text())
    assert abs(doc["segments"][0]["mean_centreline_speed_px_per_frame"]) == pytest.approx(
        3.0, rel=0.03
    )
    assert "expected error" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "w.csv"), "--max-uncertainty", "1"]) == 2
    assert "needs --uncertainty" in capsys.readouterr().err


def test_a_spur_of_the_skeleton_is_no_segment_unless_kept():
    """A bump on a 37 px wide vessel's edge grows a 13 px skeleton spur: it is removed, and
    the vessel stays one segment; --keep-spurs keeps the old split."""
    y, x = np.mgrid[0:120, 0:200]
    mask = np.abs(y - 60) <= 18
    mask |= (y - 78) ** 2 + (x - 100) ** 2 <= 12**2
    (seg,) = segments(mask)
    assert len(seg.centreline) > 120 and seg.diameter_px == pytest.approx(37, abs=2.5)
    assert len(segments(mask, prune_spurs=False)) == 3
    branching = np.zeros((80, 80), bool)
    branching[38:43, 5:75] = True
    branching[5:40, 38:43] = True  # a branch far longer than its vessel's radius: kept
    assert len(segments(branching)) == 3


def test_a_blurred_or_inverted_mask_is_read_by_the_rule_with_a_warning(tmp_path, caplog):
    import logging

    from scipy import ndimage

    from flowvid.io.masks import read_mask

    vessel = np.zeros((64, 64), np.uint8)
    vessel[28:36] = 255
    blurred = ndimage.gaussian_filter(vessel.astype(float), 3).round().astype(np.uint8)
    Image.fromarray(blurred).save(tmp_path / "blurred.png")
    Image.fromarray(255 - vessel).save(tmp_path / "inverted.png")
    Image.fromarray(vessel).save(tmp_path / "clean.png")
    with caplog.at_level(logging.WARNING):
        clean = read_mask(tmp_path / "clean.png", 3, 64, 64)
    assert caplog.text == "" and clean.sum() == 8 * 64
    with caplog.at_level(logging.WARNING):
        soft = read_mask(tmp_path / "blurred.png", 3, 64, 64)
    assert "levels above 0 (blurred or anti-aliased?)" in caplog.text
    assert soft.sum() > clean.sum()  # read by the rule (> 0), as the warning says
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        read_mask(tmp_path / "inverted.png", 3, 64, 64)
    assert "covers 88 % of the frame: inverted?" in caplog.text

"""predict, embed, overlay --gt and eval end to end, and every kind of bad input."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import TINY

from flowvid.checkpoint import load_model, save_checkpoint
from flowvid.cli import main
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import ClipRenderer, SynthConfig
from flowvid.io.flowfile import read_flow
from flowvid.io.outputs import flow_origin
from flowvid.io.video import open_video, write_video
from flowvid.models import create_model
from flowvid.predict.classical import CLASSICAL
from flowvid.predict.inference import predict_flow
from flowvid.predict.stream import to_clip_size


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(**TINY)
    torch.nn.init.normal_(model.head.net[-1].weight, std=0.05)  # visible, non-zero output
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, TINY, {})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict") / "data"
    return write_corpus(root, 3, SynthConfig(size=64, frames=9), seed=3, workers=1, progress=False)


def test_predict_matches_the_model_on_the_whole_clip(checkpoint, data, tmp_path):
    video = data / "videos" / "vessel_000.mp4"
    out = tmp_path / "flow.npy"
    assert (
        main(
            [
                "predict",
                str(video),
                "--out",
                str(out),
                "--checkpoint",
                str(checkpoint),
                "--batch-frames",
                "3",
            ]
        )
        == 0
    )
    flow = np.load(out, mmap_mode="r")
    assert flow.shape == (8, 64, 64, 2) and flow.dtype == np.float32
    model, _ = load_model(checkpoint)
    with open_video(video) as v:
        frames = torch.from_numpy(v.read(range(9))).permute(0, 3, 1, 2).float()[None] / 255
    with torch.no_grad():
        direct = model(frames)[0].permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(flow, direct, atol=1e-4)  # chunking does not change the numbers
    side = json.loads((tmp_path / "flow.npy.json").read_text())
    assert (
        side["shape"] == [8, 64, 64, 2]
        and side["units"] == "px/frame"
        and len(side["checkpoint_sha256"]) == 64
    )


def test_predict_units_range_and_formats(checkpoint, data, tmp_path, capsys):
    video = str(data / "videos" / "vessel_001.mp4")
    args = ["--checkpoint", str(checkpoint)]
    assert main(["predict", video, "--out", str(tmp_path / "a.npy"), *args]) == 0
    assert (
        main(
            [
                "predict",
                video,
                "--out",
                str(tmp_path / "b.npy"),
                "--units",
                "um/s",
                "--um-per-px",
                "0.5",
                "--fps",
                "20",
                *args,
            ]
        )
        == 0
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy") * 10.0, rtol=1e-5, atol=1e-6
    )
    a, b = (json.loads((tmp_path / f"{n}.npy.json").read_text()) for n in "ab")
    assert a["video"] == b["video"] == video and a["mean_speed_um_per_s"] is None
    # the mean is stated in px/frame and, with a calibration, in um/s: 0.5 um/px x 20 fps
    assert b["mean_speed_px_per_frame"] == pytest.approx(a["mean_speed_px_per_frame"])
    assert b["mean_speed_um_per_s"] == pytest.approx(10.0 * a["mean_speed_px_per_frame"])
    assert "um/s" in capsys.readouterr().out.splitlines()[-1]
    assert main(["predict", video, "--out", str(tmp_path / "r.npz"), "--frames", "2:6", *args]) == 0
    assert read_flow(tmp_path / "r.npz").shape == (3, 64, 64, 2)
    assert main(["predict", video, "--out", str(tmp_path / "pairs"), "--frames", ":4", *args]) == 0
    assert len(list((tmp_path / "pairs").glob("*.flo"))) == 3
    assert main(["embed", video, "--out", str(tmp_path / "e.npy"), "--pooled", *args]) == 0
    assert np.load(tmp_path / "e.npy").shape == (9, 16)
    side = json.loads((tmp_path / "e.npy.json").read_text())
    assert side["axes"].startswith("(T, S)") and "u (x" not in side["axes"]


def test_predict_with_a_mask_zeroes_the_flow_outside_it(checkpoint, data, tmp_path):
    from PIL import Image

    video = str(data / "videos" / "vessel_001.mp4")
    args = ["--checkpoint", str(checkpoint)]
    assert main(["predict", video, "--out", str(tmp_path / "free.npy"), *args]) == 0
    free = np.load(tmp_path / "free.npy")
    static = np.zeros((64, 64), bool)
    static[10:40, 5:50] = True
    Image.fromarray(static.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    assert main(["predict", video, "--out", str(tmp_path / "m.npy"), "--mask",
                 str(tmp_path / "mask.png"), *args]) == 0  # fmt: skip
    masked = np.load(tmp_path / "m.npy")
    assert np.abs(free[:, ~static]).max() > 0  # there was flow to remove
    assert (masked[:, ~static] == 0).all()
    np.testing.assert_array_equal(masked[:, static], free[:, static])
    side = json.loads((tmp_path / "m.npy.json").read_text())
    assert side["mask"].endswith("mask.png")
    inside = np.linalg.norm(free, axis=-1)[:, static].mean()
    assert side["mean_speed_px_per_frame"] == pytest.approx(inside, rel=1e-4)
    # one mask per pair of the whole video, with a frame range: pairs 2..4 use masks 2..4
    per_pair = np.zeros((8, 64, 64), bool)
    per_pair[3, :, :32] = True
    np.save(tmp_path / "pairs.npy", per_pair)
    assert main(["predict", video, "--out", str(tmp_path / "r.npy"), "--frames", "2:5",
                 "--mask", str(tmp_path / "pairs.npy"), *args]) == 0  # fmt: skip
    ranged = np.load(tmp_path / "r.npy")
    assert (ranged[0] == 0).all() and (ranged[1][:, 32:] == 0).all()
    assert np.abs(ranged[1][:, :32]).max() > 0
    # a mask of the wrong size: exit 2, and nothing written
    np.save(tmp_path / "bad.npy", np.ones((32, 32), bool))
    out = tmp_path / "never.npy"
    assert main(["predict", video, "--out", str(out), "--mask", str(tmp_path / "bad.npy"),
                 *args]) == 2  # fmt: skip
    assert not out.exists() and not (tmp_path / "never.npy.json").exists()


def test_working_resolution_rescales_vectors():
    out = torch.zeros(1, 2, 16, 32)
    out[:, 0], out[:, 1] = 1.0, -0.5
    back = to_clip_size(out, 32, 64, is_flow=True)
    assert back.shape == (1, 32, 64, 2)
    np.testing.assert_allclose(back[0, 10, 10], [2.0, -1.0])


def test_predict_overlay_gt_and_eval_end_to_end(checkpoint, data, tmp_path, capsys):
    video = str(data / "videos" / "vessel_002.mp4")
    pred = tmp_path / "flow.npy"
    assert main(["predict", video, "--out", str(pred), "--checkpoint", str(checkpoint)]) == 0
    panels = tmp_path / "panels.mp4"
    assert (
        main(
            [
                "overlay",
                video,
                str(pred),
                "--gt",
                str(data / "flow" / "vessel_002.npy"),
                "--out",
                str(panels),
            ]
        )
        == 0
    )
    with open_video(panels) as v:
        assert v.num_frames == 8 and v.width == 4 * 256 + 3 * 2  # 64 px panels shown 4x
    report = tmp_path / "report"
    assert (
        main(
            [
                "eval",
                "--data",
                str(data),
                "--split",
                "test",
                "--checkpoint",
                str(checkpoint),
                "--baselines",
                "--out",
                str(report),
            ]
        )
        == 0
    )
    doc = json.loads((report / "report.json").read_text())
    assert set(doc["overall"]) == {"flowvid", "zero", *CLASSICAL}
    assert doc["precision"] == "fp32"  # --precision auto on a CPU
    zero = doc["overall"]["zero"]
    # zero flow's EPE is the mean true speed, by definition: a check on the scoring itself
    assert zero["epe_vessel"] == pytest.approx(zero["zero_epe_vessel"], rel=1e-6)
    assert zero["speed_ratio_vessel"] == 0.0  # and reads no speed at all
    out = capsys.readouterr().out
    assert re.search(r"zero: vessel EPE [\d.]+ px/frame, outside [\d.]+, speed read 0.00 of", out)
    md = (report / "report.md").read_text()
    assert md.startswith("# flowvid evaluation") and "## Speed read against true speed" in md
    assert (report / "epe_per_clip.png").stat().st_size > 1000 and (
        report / "epe_vs_speed.png"
    ).is_file()


def test_frames_checkpoint_predicts_future_frames(data, tmp_path):
    kwargs = dict(TINY, task="frames")
    ckpt = save_checkpoint(tmp_path / "frames.pt", create_model(**kwargs), kwargs, {})
    video = str(data / "videos" / "vessel_000.mp4")
    assert (
        main(["predict", video, "--out", str(tmp_path / "next.npy"), "--checkpoint", str(ckpt)])
        == 0
    )
    nxt = np.load(tmp_path / "next.npy")
    assert nxt.shape == (9, 64, 64, 3) and nxt.dtype == np.uint8
    with open_video(video) as v:  # zero-initialised residual: the prediction of t+1 is frame t
        assert np.abs(nxt[3].astype(int) - v.read([3])[0]).max() <= 1
    for extra in (["--data", str(data)], ["--suite", "motion"]):
        out = tmp_path / f"eval_{extra[0][2:]}"
        assert main(["eval", *extra, "--checkpoint", str(ckpt), "--out", str(out)]) == 2
        assert not out.exists()


def _bad_inputs(tmp_path, data, checkpoint):
    (tmp_path / "notavideo.mp4").write_text("hello")
    good = (data / "videos" / "vessel_000.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[:300])
    write_video(tmp_path / "one.mp4", np.zeros((1, 32, 32, 3), np.uint8), fps=10)
    (tmp_path / "damaged.pt").write_bytes(checkpoint.read_bytes()[:5000])
    other = dict(TINY, hidden=8)
    torch.save(
        {
            "format": "flowvid-checkpoint-1",
            "model_kwargs": TINY,
            "config": {},
            "state_dict": create_model(**other).state_dict(),
        },
        tmp_path / "other.pt",
    )
    np.save(tmp_path / "short.npy", np.zeros((3, 64, 64, 2), np.float32))
    video, ck = str(data / "videos" / "vessel_000.mp4"), str(checkpoint)
    out = str(tmp_path / "out.npy")
    return [
        (["predict", str(tmp_path / "missing.mp4"), "--out", out, "--checkpoint", ck], "no such"),
        (
            ["predict", str(tmp_path / "notavideo.mp4"), "--out", out, "--checkpoint", ck],
            "not a readable video",
        ),
        (
            ["predict", str(tmp_path / "truncated.mp4"), "--out", out, "--checkpoint", ck],
            "truncated.mp4",
        ),
        (
            ["predict", str(tmp_path / "one.mp4"), "--out", out, "--checkpoint", ck],
            "at least 2 frames",
        ),
        (
            ["predict", video, "--out", out, "--checkpoint", str(tmp_path / "damaged.pt")],
            "not a readable checkpoint",
        ),
        (
            ["predict", video, "--out", out, "--checkpoint", str(tmp_path / "other.pt")],
            "does not fit this model",
        ),
        (
            ["predict", video, "--out", out, "--checkpoint", ck, "--units", "um/s"],
            "needs --um-per-px",
        ),
        (["predict", video, "--out", out, "--checkpoint", ck, "--frames", "5"], "A:B"),
        (
            ["predict", video, "--out", str(tmp_path / "x.txt"), "--checkpoint", ck],
            "--out must end",
        ),
        (
            ["predict", video, "--out", out, "--checkpoint", ck, "--task", "frames"],
            "needs a frames checkpoint",
        ),
        (
            ["overlay", video, str(tmp_path / "short.npy"), "--out", str(tmp_path / "o.mp4")],
            "does not fit the video",
        ),
        (
            ["eval", "--data", str(tmp_path / "nodata"), "--checkpoint", ck],
            "no such dataset folder",
        ),
    ]


def test_bad_input_exits_2_with_a_message_and_leaves_no_output(checkpoint, data, tmp_path, capsys):
    for argv, fragment in _bad_inputs(tmp_path, data, checkpoint):
        before = set(tmp_path.iterdir())
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert fragment in err, (argv, err)
        assert "Traceback" not in err
        assert set(tmp_path.iterdir()) == before, argv  # nothing half-written


def test_grayscale_and_odd_sized_video_predict(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    gray = (rng.random((5, 37, 51)) * 255).astype(np.uint8)
    import tifffile

    tifffile.imwrite(tmp_path / "g.tif", gray, photometric="minisblack")
    pred = predict_flow(load_model(checkpoint)[0], tmp_path / "g.tif", progress=False)
    assert pred.array.shape == (4, 37, 51, 2)


def test_shipped_default_model_beats_zero_flow(tmp_path):
    """`flowvid predict clip.mp4 --out flow.npy` with no --checkpoint uses the shipped model,
    and on unseen synthetic vessels (1-5 px/frame) it is far better than predicting no motion."""
    cfg = SynthConfig(size=128, frames=12, speed_um_s=(150.0, 600.0))
    errors, zeros = [], []
    for seed in range(3):
        renderer = ClipRenderer(cfg, np.random.default_rng(seed))
        video = tmp_path / f"clip{seed}.mp4"
        write_video(video, [renderer.frame(i) for i in range(cfg.frames)], fps=cfg.fps)
        out = tmp_path / f"flow{seed}.npy"
        assert main(["predict", str(video), "--out", str(out), "--device", "cpu"]) == 0
        pred = read_flow(out)
        gt = np.stack([renderer.flow(i) for i in range(cfg.frames - 1)])
        mask = np.stack([renderer.mask(i) for i in range(cfg.frames - 1)])
        assert pred.shape == gt.shape
        errors.append(np.linalg.norm(pred - gt, axis=-1)[mask])
        zeros.append(np.linalg.norm(gt, axis=-1)[mask])
    epe, zero = np.concatenate(errors).mean(), np.concatenate(zeros).mean()
    assert zero > 1.5  # the clips really move
    assert epe < 0.7 * zero, (epe, zero)


@pytest.mark.parametrize("name", ["f.npy", "f.npz", "pairs", "f.h5", "f.mat", None])
@pytest.mark.parametrize("expected", [7, 4, 11, 10**6])
def test_flow_sinks_hold_the_maps_written_whatever_was_expected(tmp_path, name, expected):
    """The output's length is fixed when it is finished: a container that stated the wrong
    frame count (more or fewer maps than expected, by a few or by a million) costs nothing."""
    from flowvid.io.outputs import flow_sink

    flow = np.random.default_rng(0).normal(0, 3, (7, 5, 6, 2)).astype(np.float32)
    out = None if name is None else tmp_path / name
    with flow_sink(out, (expected, 5, 6, 2), "flo") as sink:
        for start in range(0, 7, 3):  # in chunks, as predict writes
            sink[start : start + 3] = flow[start : start + 3]
        assert out is None or not out.exists()  # complete only at the end
    if out is None:
        np.testing.assert_array_equal(sink.array, flow)
        return
    np.testing.assert_array_equal(read_flow(out), flow)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    if name == "f.npy":  # the file ends after the maps: nothing reserved is left over
        with open(out, "rb") as fh:
            assert np.lib.format.read_magic(fh) == (1, 0)
            np.lib.format.read_array_header_1_0(fh)
            assert out.stat().st_size == fh.tell() + flow.nbytes


def test_an_npy_written_in_place_is_what_numpy_writes():
    """The header rewritten at the end says what numpy's own would: any count, any shape."""
    import io

    from flowvid.io.outputs import NpyWriter

    for rows, shape, dtype in [(0, (3,), np.float32), (5, (2, 3), np.uint8), (10**12, (), "<f2")]:
        w = NpyWriter.__new__(NpyWriter)
        w.dtype, w.shape = np.dtype(dtype), (rows, *shape)
        header = w._header(rows)
        assert len(header) % 64 == 0
        fh = io.BytesIO(header)
        assert np.lib.format.read_magic(fh) == (1, 0)
        got = np.lib.format.read_array_header_1_0(fh)
        assert got == ((rows, *shape), False, np.dtype(dtype)) and fh.tell() == len(header)


def test_writing_a_long_flow_takes_constant_memory(tmp_path):
    """The .npy is written with file writes, not a memory map: 256 MB written leave this
    process's resident memory where it was (a memory map would keep the pages)."""
    from flowvid.io.outputs import flow_sink

    def rss_mb() -> float:
        text = open("/proc/self/status").read()
        return int(text.split("VmRSS:")[1].split()[0]) / 1024

    chunk = np.ones((64, 256, 256, 2), np.float32)  # 32 MB
    before = rss_mb()
    with flow_sink(tmp_path / "long.npy", (512, 256, 256, 2), "flo") as sink:
        for start in range(0, 512, 64):
            sink[start : start + 64] = chunk
    assert rss_mb() - before < 100, (before, rss_mb())
    assert np.load(tmp_path / "long.npy", mmap_mode="r").shape == (512, 256, 256, 2)


def test_python_api_sidecars_name_the_model_and_the_video(checkpoint, data, tmp_path):
    import hashlib

    import flowvid

    video = data / "videos" / "vessel_001.mp4"
    model = flowvid.load_model(str(checkpoint))
    flowvid.predict_video(model, str(video), str(tmp_path / "f.npy"), progress=False)
    side = json.loads((tmp_path / "f.npy.json").read_text())
    assert side["checkpoint"] == str(checkpoint) and len(side["checkpoint_sha256"]) == 64
    assert side["model"]["task"] == "flow"
    first_mb = hashlib.sha256(video.read_bytes()[: 1 << 20]).hexdigest()
    assert side["video"] == str(video) and side["video_sha256_first_mb"] == first_mb
    assert side["video_size_hw"] == [64, 64] and side["video_frames"] == 9


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_predict_method_classical_is_opencv_on_the_same_frames(method, data, tmp_path, capsys):
    import cv2

    from flowvid.predict.classical import METHODS

    video = data / "videos" / "vessel_001.mp4"
    with open_video(video) as reader:
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in reader.iter_frames()]
    expected = np.stack([METHODS[method](a, b) for a, b in zip(grey[:-1], grey[1:], strict=True)])
    assert np.abs(expected).max() > 0.1  # the clip moves
    out = tmp_path / f"{method}.h5"
    argv = ["predict", str(video), "--out", str(out), "--method", method]
    assert main([*argv, "--batch-frames", "3", "--um-per-px", "0.8"]) == 0  # chunks carry over
    np.testing.assert_array_equal(read_flow(out), expected)
    side = json.loads((tmp_path / f"{method}.h5.json").read_text())
    assert side["method"] == method and side["checkpoint"] is None and side["um_per_px"] == 0.8
    # the figures name it (summary, kymo)
    assert (
        flow_origin(side)
        == {"dis": "flow: OpenCV DIS", "farneback": "flow: OpenCV Farneback"}[method]
    )
    # what the classical flow cannot do is refused, not ignored
    for extra, says in (
        (["--checkpoint", "x.pt"], "uses no checkpoint"),
        (["--uncertainty", str(tmp_path / "u.npy")], "--uncertainty needs the model"),
    ):
        again = [*argv[:3], str(tmp_path / "again.npy"), *argv[4:], *extra]
        assert main(again) == 2 and says in capsys.readouterr().err
        assert not (tmp_path / "again.npy").exists()


def test_the_model_s_sidecar_names_its_method(checkpoint, data, tmp_path):
    video = data / "videos" / "vessel_001.mp4"
    out = tmp_path / "model.npy"
    assert main(["predict", str(video), "--out", str(out), "--checkpoint", str(checkpoint)]) == 0
    side = json.loads((tmp_path / "model.npy.json").read_text())
    assert side["method"] == "model" and side["checkpoint_sha256"]
    label = f"flow: model {checkpoint.name} ({side['checkpoint_sha256'][:8]})"
    assert flow_origin(side) == label
    assert flow_origin({}) == "flow: source not recorded"


def test_predict_takes_the_calibration_a_tiff_states_and_says_where_from(
    checkpoint, tmp_path, capsys
):
    import tifffile

    stack = np.random.default_rng(0).integers(0, 255, (5, 32, 32), dtype=np.uint8)
    tiff = tmp_path / "stack.tif"
    meta = {"unit": "um", "finterval": 0.01, "axes": "TYX"}
    tifffile.imwrite(tiff, stack, imagej=True, resolution=(2.0, 2.0), metadata=meta)
    argv = ["predict", str(tiff), "--checkpoint", str(checkpoint), "--units", "um/s", "--out"]
    assert main([*argv, str(tmp_path / "a.npy")]) == 0
    side = json.loads((tmp_path / "a.npy.json").read_text())
    assert (side["um_per_px"], side["fps"], side["um_per_s_per_px_per_frame"]) == (0.5, 100.0, 50)
    assert side["calibration_source"] == {
        "um_per_px": "TIFF ImageJ metadata",
        "fps": "TIFF ImageJ metadata",
    }
    assert main([*argv, str(tmp_path / "b.npy"), "--fps", "40"]) == 0  # the command line wins
    side = json.loads((tmp_path / "b.npy.json").read_text())
    assert side["fps"] == 40 and side["calibration_source"]["fps"] == "--fps"
    np.testing.assert_allclose(
        np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy") * 0.4, rtol=1e-5
    )

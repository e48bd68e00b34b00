"""No output destroys data: inputs, folders of someone else's files and non-regular targets
are refused before any work (exit 2), and every file that was there is still there, byte
for byte."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image

from flowvid.checkpoint import save_checkpoint
from flowvid.cli import main
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.io.atomic import MARKER, atomic_output, check_target, outputs_beside, protecting
from flowvid.io.video import open_video
from flowvid.models import create_model


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    data = write_corpus(
        root / "data", 1, SynthConfig(size=64, frames=6), seed=5, workers=1, progress=False
    )
    video = data / "videos" / "vessel_000.mp4"
    frames = root / "frames"
    frames.mkdir()
    with open_video(video) as v:
        for i, frame in enumerate(v.read(range(6))):
            Image.fromarray(frame).save(frames / f"{i:03d}.png")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", create_model(**TINY), TINY, {})
    flow = root / "flow.npy"
    assert main(["predict", str(video), "--out", str(flow), "--checkpoint", str(ckpt)]) == 0
    mask = root / "m.png"
    band = np.zeros((64, 64), np.uint8)
    band[26:38, 4:60] = 255  # one straight vessel
    Image.fromarray(band).save(mask)
    return root, video, frames, ckpt, flow, mask


def _refused(argv, root, capsys, words):
    before = _snapshot(root)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert any(w in err for w in words), err
    assert _snapshot(root) == before  # every byte that was there is still there
    assert not [p for p in root.rglob(".*") if p.name != MARKER and p.is_file()]  # no leftovers


def test_predict_never_writes_over_its_input_frames(setup, capsys):
    root, video, frames, ckpt, *_ = setup
    argv = ["predict", str(frames), "--out", str(frames), "--checkpoint", str(ckpt)]
    _refused(argv, root, capsys, ["an input"])


def test_predict_refuses_a_folder_of_someone_elses_files(setup, tmp_path, capsys):
    root, video, frames, ckpt, *_ = setup
    theirs = root / "theirs"
    theirs.mkdir(exist_ok=True)
    (theirs / "notes.txt").write_text("a week of work")
    argv = ["predict", str(video), "--out", str(theirs), "--checkpoint", str(ckpt)]
    _refused(argv, root, capsys, ["did not write"])
    # a folder flowvid wrote may be replaced by a rerun; an empty one may be filled
    mine = root / "mine"
    assert main(["predict", str(video), "--out", str(mine), "--checkpoint", str(ckpt)]) == 0
    assert (mine / MARKER).is_file() and len(list(mine.glob("*.flo"))) == 5
    assert main(["predict", str(video), "--out", str(mine), "--checkpoint", str(ckpt)]) == 0
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    assert main(["predict", str(video), "--out", str(empty), "--checkpoint", str(ckpt)]) == 0


def test_reports_and_batches_claim_their_folder_before_any_work(setup, capsys):
    root, video, frames, ckpt, *_ = setup
    data = root / "data"
    theirs = root / "report_theirs"
    theirs.mkdir(exist_ok=True)
    (theirs / "report.md").write_text("my own notes, not flowvid's")
    (theirs / "keep.txt").write_text("a week of work")
    ev = ["eval", "--data", str(data), "--split", "train", "--baselines-only", "--out", str(theirs)]
    _refused(ev, root, capsys, ["did not write"])
    suite = ["eval", "--suite", "motion", "--baselines-only", "--size", "64", "--out", str(theirs)]
    _refused(suite, root, capsys, ["did not write"])
    batch = ["predict", str(video), "--out-dir", str(theirs), "--checkpoint", str(ckpt)]
    _refused(batch, root, capsys, ["did not write"])
    # --overwrite: only the names flowvid writes are replaced; nothing else is touched
    assert main([*ev, "--overwrite"]) == 0
    assert "flowvid evaluation" in (theirs / "report.md").read_text()
    assert (theirs / "keep.txt").read_text() == "a week of work"
    assert not (theirs / MARKER).exists()  # still theirs: no folder output may replace it
    assert main(["predict", str(video), "--out", str(theirs), "--checkpoint", str(ckpt)]) == 2
    assert main([*batch, "--overwrite"]) == 0
    assert (theirs / "vessel_000.npy").is_file() and (theirs / "keep.txt").is_file()
    # a new folder is claimed with the marker, and a rerun may write there again
    fresh = root / "report_new"
    ev_fresh = [*ev[:-1], str(fresh)]
    assert main(ev_fresh) == 0 and (fresh / MARKER).is_file()
    assert main(ev_fresh) == 0
    capsys.readouterr()


@pytest.mark.skipif(os.name != "posix", reason="device nodes")
def test_predict_refuses_a_device_or_a_fifo(setup, tmp_path, capsys):
    root, video, frames, ckpt, *_ = setup
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        argv = ["predict", str(video), "--out", str(target), "--checkpoint", str(ckpt)]
        assert main(argv) == 2
        assert "not a regular file" in capsys.readouterr().err
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()


def test_overlay_never_writes_over_its_video(setup, capsys):
    root, video, frames, ckpt, flow, _ = setup
    _refused(["overlay", str(video), str(flow), "--out", str(video)], root, capsys, ["an input"])


def test_measure_never_writes_over_its_mask_nor_its_own_csv(setup, capsys):
    root, video, frames, ckpt, flow, mask = setup
    _refused(
        ["measure", str(flow), "--mask", str(mask), "--out", str(mask)], root, capsys, ["input"]
    )
    out = root / "r.json"
    argv = ["measure", str(flow), "--mask", str(mask), "--out", str(out)]
    _refused(argv, root, capsys, ["the .json goes beside it"])
    assert not out.exists()


def test_check_target_rules(tmp_path):
    src = tmp_path / "in.npy"
    src.write_bytes(b"x")
    with protecting(src):
        with pytest.raises(Exception, match="an input"):
            check_target(src)
        with pytest.raises(Exception, match="holds"):  # a folder output holding an input
            check_target(tmp_path, is_dir=True)
    check_target(src)  # once the command is over, the path is free again
    (tmp_path / "d").mkdir()
    with pytest.raises(Exception, match="is a folder"):
        check_target(tmp_path / "d")
    with pytest.raises(Exception, match="is a file"):
        check_target(src, is_dir=True)
    with atomic_output(tmp_path / "out", is_dir=True) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (tmp_path / "out" / MARKER).is_file()
    check_target(tmp_path / "out", is_dir=True)  # ours: may be replaced
    assert outputs_beside(tmp_path / "k.png", ".json") == [tmp_path / "k.json"]
    with pytest.raises(Exception, match="goes beside it"):
        outputs_beside(tmp_path / "k.json", ".json")
    with protecting(src), pytest.raises(Exception, match="an input"):
        outputs_beside(tmp_path / "in.png", ".npy")  # the file beside is an input


@pytest.mark.parametrize("value", ["-0.8", "0", "nan", "inf", "x"])
def test_a_calibration_that_is_not_a_positive_number_is_refused(setup, value, capsys):
    root, video, frames, ckpt, flow, mask = setup
    out = root / "bad_cal.npy"
    for flag in ("--um-per-px", "--fps"):
        argv = ["predict", str(video), "--out", str(out), "--checkpoint", str(ckpt), flag, value]
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and "--" in capsys.readouterr().err
        assert not out.exists()
    argv = ["overlay", str(video), str(flow), "--out", str(root / "o.mp4"), "--max-speed", value]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and not (root / "o.mp4").exists()


def test_a_sidecar_with_a_negative_pixel_size_is_refused(setup, tmp_path, capsys):
    root, video, frames, ckpt, flow, mask = setup
    bad = tmp_path / "f.npy"
    bad.write_bytes(flow.read_bytes())
    (tmp_path / "f.npy.json").write_text('{"units": "px/frame", "um_per_px": -0.8, "fps": 100}')
    out = tmp_path / "m.csv"
    assert main(["measure", str(bad), "--mask", str(mask), "--out", str(out)]) == 2
    assert "above 0" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("window", ["0", "1", "-3"])
def test_a_speed_window_under_two_frames_is_refused(setup, window, capsys):
    root, video, frames, ckpt, flow, mask = setup
    out = root / "k.png"
    argv = ["kymo", str(video), "--flow", str(flow), "--line", "4,32,60,32", "--out", str(out)]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--window", window])
    assert stop.value.code == 2 and "at least 2 frames" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--frames=-3:"], "negative"),
        (["--frames", "2:100"], "has 6 frames"),
        (["--device", "banana"], "--device must be"),
    ],
)
def test_a_range_or_device_that_does_not_exist_is_refused(setup, extra, words, capsys):
    root, video, frames, ckpt, *_ = setup
    out = root / "r.npy"
    assert main(["predict", str(video), "--out", str(out), "--checkpoint", str(ckpt), *extra]) == 2
    assert words in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("content", ["", "[1, 2]", '"flow"', "{not json"])
def test_a_sidecar_that_is_not_a_json_object_is_a_clear_error(setup, tmp_path, content, capsys):
    root, video, frames, ckpt, flow, mask = setup
    bad = tmp_path / "f.npy"
    bad.write_bytes(flow.read_bytes())
    (tmp_path / "f.npy.json").write_text(content)
    assert main(["measure", str(bad), "--mask", str(mask), "--out", str(tmp_path / "m.csv")]) == 2
    assert "f.npy.json" in capsys.readouterr().err
    out = tmp_path / "o.mp4"
    assert main(["overlay", str(video), str(bad), "--out", str(out)]) == 2
    assert not out.exists()


def test_masks_follow_one_rule_whatever_their_dtype(tmp_path):
    from flowvid.io.masks import read_mask

    inside = np.zeros((3, 8, 8), bool)
    inside[:, 2:5, 1:7] = True
    for dtype in (np.uint8, np.int32, np.uint16, np.float32, bool):
        np.save(tmp_path / "m.npy", inside.astype(dtype) * (7 if dtype is not bool else 1))
        mask = read_mask(tmp_path / "m.npy", 3, 8, 8)
        assert mask[1].dtype == bool and (mask[1] == inside[1]).all(), dtype
        assert (mask[[0, 2]] == inside[[0, 2]]).all() and (mask.any(0) == inside[0]).all()
        assert (np.asarray(mask) == inside).all()
    # an RGBA PNG painted as a transparent layer: the alpha is the mask, whatever the colour
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200  # the colour is everywhere ...
    rgba[2:5, 1:7, 3] = 255  # ... the paint only here
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert (read_mask(tmp_path / "a.png", 3, 8, 8)[0] == inside[0]).all()
    opaque = rgba.copy()
    opaque[..., 3] = 255
    opaque[..., :3] = 0
    opaque[2:5, 1:7, :3] = 255  # fully opaque: the grey levels are the mask
    Image.fromarray(opaque, "RGBA").save(tmp_path / "o.png")
    assert (read_mask(tmp_path / "o.png", 3, 8, 8)[0] == inside[0]).all()


def test_predict_refuses_an_empty_mask(setup, tmp_path, capsys):
    root, video, frames, ckpt, *_ = setup
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "none.png")
    out = tmp_path / "f.npy"
    argv = ["predict", str(video), "--out", str(out), "--checkpoint", str(ckpt)]
    assert main([*argv, "--mask", str(tmp_path / "none.png")]) == 2
    assert "empty" in capsys.readouterr().err and not out.exists()


def _bad_checkpoints(tmp_path):
    from flowvid.checkpoint import FORMAT

    model = create_model(**TINY)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    nan = dict(good)
    first = next(k for k, v in nan.items() if v.is_floating_point())
    nan[first] = torch.full_like(nan[first], float("nan"))
    cases = {
        "kwargs_string": {"format": FORMAT, "model_kwargs": "hidden=16", "state_dict": good},
        "no_state_dict": {"format": FORMAT, "model_kwargs": dict(TINY)},
        "huge_core": {
            "format": FORMAT,
            "model_kwargs": dict(TINY, hidden=20000),
            "state_dict": good,
        },
        "wrong_kind": {
            "format": FORMAT,
            "model_kwargs": dict(TINY, hidden="wide"),
            "state_dict": good,
        },
        "nan_weights": {"format": FORMAT, "model_kwargs": dict(TINY), "state_dict": nan},
        "not_tensors": {"format": FORMAT, "model_kwargs": dict(TINY), "state_dict": {first: 3}},
    }
    paths = {}
    for name, payload in cases.items():
        paths[name] = tmp_path / f"{name}.pt"
        torch.save(payload, paths[name])
    return paths


def test_damaged_checkpoints_are_refused_before_any_allocation(setup, tmp_path, capsys):
    root, video, *_ = setup
    for name, path in _bad_checkpoints(tmp_path).items():
        out = tmp_path / f"{name}.npy"
        assert main(["predict", str(video), "--out", str(out), "--checkpoint", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err, name
        assert not out.exists()


@pytest.mark.parametrize(
    "extra",
    [["--size", "60000"], ["--speed", "500", "5"], ["--speed", "nan", "5"], ["--fps", "nan"]],
)
def test_synth_refuses_sizes_and_speeds_out_of_range(tmp_path, extra, capsys):
    out = tmp_path / "s"
    argv = ["synth", "--out", str(out), "--videos", "1", "--frames", "4", *extra]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusal, also exit 2
        code = stop.code
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert not out.exists()


def test_synth_on_a_full_disk_leaves_nothing_and_an_interrupted_corpus_is_finished(
    tmp_path, monkeypatch, capsys
):
    import errno

    from flowvid.data.synth import corpus

    honest, calls = corpus.write_clip, []

    def fills_the_disk(out, name, cfg, seed):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return honest(out, name, cfg, seed)

    monkeypatch.setattr(corpus, "write_clip", fills_the_disk)
    argv = ["synth", "--out", "", "--videos", "3", "--frames", "3", "--size", "32"]
    argv += ["--workers", "1"]
    new, empty = tmp_path / "new", tmp_path / "empty"
    empty.mkdir()
    for out in (new, empty):
        calls.clear()
        argv[2] = str(out)
        assert main(argv) == 2
        assert "No space left on device" in capsys.readouterr().err
        assert not new.exists() and empty.is_dir() and list(empty.iterdir()) == []
    # killed half-way: the marked, unfinished corpus is taken up again by a rerun
    monkeypatch.setattr(corpus, "write_clip", honest)
    (new / "videos").mkdir(parents=True)
    (new / MARKER).write_text("")
    (new / "videos" / "vessel_000.mp4").write_bytes(b"half")
    argv[2] = str(new)
    assert main(argv) == 0
    assert not (new / MARKER).exists() and (new / "dataset.yaml").is_file()
    assert open_video(new / "videos" / "vessel_000.mp4").num_frames == 3
    assert main(argv) == 2  # a finished corpus is any other folder: not replaced
    assert "is not empty" in capsys.readouterr().err


def test_a_rerun_sweeps_what_a_killed_writer_left_and_keeps_a_live_ones(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".flow.npy.flowvid-{pid}.abc123.npy"
    stale.write_bytes(b"x" * 1000)
    stale_dir = tmp_path / f".pairs.flowvid-{pid}.xyz.tmp"
    stale_dir.mkdir()
    live = tmp_path / f".flow.npy.flowvid-{os.getpid()}.keep.npy"  # this process runs
    live.write_bytes(b"y")
    theirs = tmp_path / ".flow.npy.notes"  # not flowvid's name: never touched
    theirs.write_text("mine")
    with atomic_output(tmp_path / "flow.npy") as tmp:
        tmp.write_bytes(b"new")
    with atomic_output(tmp_path / "pairs", is_dir=True) as tmp:
        (tmp / "a.flo").write_bytes(b"1")
    assert not stale.exists() and not stale_dir.exists()
    assert live.exists() and theirs.read_text() == "mine"
    assert (tmp_path / "flow.npy").read_bytes() == b"new"


def test_an_npz_that_would_expand_like_a_zip_bomb_is_refused(tmp_path, capsys):
    import zipfile

    from flowvid.io.flowfile import open_flow

    bomb = tmp_path / "bomb.npz"
    shape = (400, 512, 512, 2)  # 1.7 GB of zeros, stored in a few MB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("flow.npy", "w") as fh:
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(fh, header)
        block = bytes(1 << 24)
        for _ in range(int(np.prod(shape)) * 4 // len(block)):
            fh.write(block)
    assert bomb.stat().st_size < 10e6
    with pytest.raises(Exception, match="would expand"):
        open_flow(bomb)
    # an ordinary .npz still opens
    np.savez_compressed(
        tmp_path / "ok.npz", flow=np.random.default_rng(0).random((3, 8, 8, 2), np.float32)
    )
    assert open_flow(tmp_path / "ok.npz")[0].shape == (8, 8, 2)


def test_intensity_is_scaled_once_per_video_never_per_frame(tmp_path):
    import tifffile

    from flowvid.io.video import open_video

    # 16-bit PNG frames whose peak alternates 4000 / 4200: one 13-bit scale for all
    folder = tmp_path / "png16"
    folder.mkdir()
    base = np.full((16, 16), 2000, np.uint16)
    for i in range(4):
        frame = base.copy()
        frame[0, 0] = 4000 if i % 2 == 0 else 4200
        Image.fromarray(frame).save(folder / f"{i}.png")
    with open_video(folder) as v:
        frames = v.read(range(4))
    assert len({int(f[5, 5, 0]) for f in frames}) == 1  # the same grey in every frame
    assert frames[0][5, 5, 0] == round(2000 * 255 / 16383)  # 14 bits hold the video peak
    # a float32 TIFF in camera counts: the video's range, not "clip to 1"
    counts = np.linspace(100.0, 3000.0, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "f.tif", counts, photometric="minisblack")
    with open_video(tmp_path / "f.tif") as v:
        got = v.read(range(3))
    assert got.min() == 0 and got.max() == 255 and len(np.unique(got)) > 100
    # a 16-bit TIFF whose brightest frame is in the middle: nothing saturates
    stack = np.full((9, 8, 8), 1000, np.uint16)
    stack[4, 0, 0] = 60000
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    with open_video(tmp_path / "s.tif") as v:
        assert v.read([4])[0].max() == round(60000 * 255 / 65535)  # 16 bits: not saturated
        assert v.read([0])[0, 0, 0, 0] == round(1000 * 255 / 65535)


def test_figures_refuse_a_suffix_they_cannot_write(setup, capsys):
    root, video, frames, ckpt, flow, mask = setup
    out = root / "s.txt"
    for argv in (
        ["summary", str(video), "--flow", str(flow), "--mask", str(mask), "--out", str(out)],
        ["kymo", str(video), "--flow", str(flow), "--line", "4,32,60,32", "--out", str(out)],
    ):
        assert main(argv) == 2
        assert ".png, .pdf or .svg" in capsys.readouterr().err and not out.exists()


def test_train_refuses_a_run_folder_of_other_files_before_any_work(tmp_path, capsys):
    run = tmp_path / "results"
    run.mkdir()
    (run / "model.pt").write_bytes(b"someone else's model")
    before = _snapshot(run)
    argv = ["train", "--config", "configs/debug.yaml", "--data", str(tmp_path / "none")]
    assert main([*argv, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "files flowvid did not write" in err and "Traceback" not in err
    assert _snapshot(run) == before
    # a run to resume is taken as the user's own: not the folder is refused, the data is
    assert main([*argv, "--run-dir", str(run), "--resume"]) == 2
    assert "no dataset at" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_a_folder_output_onto_the_current_folder_is_refused_and_leaves_nothing(
    setup, tmp_path, monkeypatch, capsys
):
    _, video, _, ckpt, _, _ = setup
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", str(here), "sub/.."):
        argv = ["predict", str(video), "--out", out, "--checkpoint", str(ckpt)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is the current folder" in err and "Traceback" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]
        assert list(here.iterdir()) == []

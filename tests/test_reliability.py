"""Faults lose nothing: SIGTERM and Ctrl-C clean up and exit 143/130, training saves a
checkpoint early, on SIGTERM and on Ctrl-C, and goes on with --resume."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from flowvid.checkpoint import save_checkpoint
from flowvid.cli import main
from flowvid.config import load_config
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.io.atomic import MARKER
from flowvid.io.video import write_video
from flowvid.models import create_model

TINY = dict(encoder="resnet18", pretrained="none", hidden=16, context=16, corr_radius=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny.pt", create_model(**TINY), TINY, {}
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = np.random.default_rng(0).integers(0, 255, (24, 32, 32, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, fps=10)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "data"
    cfg = SynthConfig(size=64, frames=10, drift_prob=0.0)
    return write_corpus(root, 3, cfg, seed=1, workers=1, progress=False)


def _signal_after(monkeypatch, target: str, name: str, signum: int, calls: int = 2) -> None:
    """Send ``signum`` to this process from inside ``target.name`` on its ``calls``-th call."""
    module_name, _, attr = target.rpartition(".")
    module = __import__(module_name, fromlist=[attr])
    owner = getattr(module, attr)
    original = getattr(owner, name)
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] == calls:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("out_name", ["flow.npy", "flow.npz", "pairs"])
def test_a_signal_during_predict_leaves_nothing(
    monkeypatch, tmp_path, checkpoint, video, capsys, signum, code, out_name
):
    _signal_after(monkeypatch, "flowvid.models.model.FlowVid", "step", signum)
    out = tmp_path / "out" / out_name
    argv = ["predict", str(video), "--out", str(out), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--batch-frames", "4"]) == code
    assert not out.exists() and not out.with_name(out.name + ".json").exists()
    assert _leftovers(out.parent) == []
    err = capsys.readouterr().err
    assert ("terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted") in err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_a_sigterm_keeps_an_existing_output_intact(monkeypatch, tmp_path, checkpoint, video):
    out = tmp_path / "flow.npy"
    out.write_bytes(b"the previous result")
    _signal_after(monkeypatch, "flowvid.models.model.FlowVid", "step", signal.SIGTERM)
    argv = ["predict", str(video), "--out", str(out), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--batch-frames", "4"]) == 143
    assert out.read_bytes() == b"the previous result" and _leftovers(tmp_path) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_synth_and_overlay_leaves_nothing(
    monkeypatch, tmp_path, video, signum, code
):
    _signal_after(monkeypatch, "flowvid.data.synth.synthetic.ClipRenderer", "frame", signum, 3)
    out = tmp_path / "synth"
    argv = ["synth", "--out", str(out), "--videos", "2", "--frames", "6", "--size", "32"]
    assert main([*argv, "--workers", "1"]) == code
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == [] and not list((out / "videos").glob("*.mp4"))
    flow = tmp_path / "flow.npy"
    np.save(flow, np.zeros((23, 32, 32, 2), np.float32))
    _signal_after(monkeypatch, "flowvid.io.writer.VideoWriter", "write", signum, 3)
    assert main(["overlay", str(video), str(flow), "--out", str(tmp_path / "o.mp4")]) == code
    assert not (tmp_path / "o.mp4").exists() and _leftovers(tmp_path) == []


def _cfg(data: Path, run: Path, *extra: str):
    root = Path(__file__).parents[1] / "configs" / "debug.yaml"
    return [
        "train",
        "--config",
        str(root),
        "--data",
        str(data),
        "--run-dir",
        str(run),
        "--set",
        "data.samples_per_epoch=8",
        "--set",
        "train.checkpoint_minutes=null",
        *extra,
    ]


def _step(run: Path) -> int:
    raw = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return raw["global_step"]


@pytest.mark.parametrize(
    ("signum", "code", "said", "steps"),
    [
        (signal.SIGTERM, 143, "terminated (SIGTERM); stopped at step 3", 3),
        (signal.SIGINT, 130, "interrupted; stopped at step 2", 2),
    ],
)
def test_a_signal_during_training_saves_and_resume_finishes(
    monkeypatch, tmp_path, tiny_data, capsys, signum, code, said, steps
):
    """Stopped before its first validation, a run keeps its state and goes on.

    SIGTERM: Lightning stops at the next batch boundary (3 steps done). Ctrl-C: at once,
    inside the third step, so the state saved is the one after step 2.
    """
    from flowvid.training.module import FlowVidModule

    run, original = tmp_path / "run", FlowVidModule.training_step
    target = "flowvid.training.module.FlowVidModule"
    _signal_after(monkeypatch, target, "training_step", signum, 3)
    argv = _cfg(tiny_data, run, "--set", "train.max_steps=8", "--set", "train.val_every_steps=6")
    try:
        assert main(argv) == code
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores it after
    err = capsys.readouterr().err
    assert said in err and "--resume" in err
    assert _step(run) == steps
    assert _leftovers(run / "checkpoints") == []
    monkeypatch.setattr(FlowVidModule, "training_step", original)
    assert main([*argv, "--resume"]) == 0
    assert _step(run) == 8 and (run / "model.pt").is_file()


def test_a_run_saves_last_ckpt_before_its_first_validation(tmp_path, tiny_data):
    from flowvid.training.train import train

    root = Path(__file__).parents[1] / "configs" / "debug.yaml"
    overrides = [
        f"data.root={tiny_data}",
        f"train.run_dir={tmp_path / 'run'}",
        "data.samples_per_epoch=8",
        "train.max_steps=10",
        "train.val_every_steps=1000",
        "train.checkpoint_minutes=0.0001",
    ]
    run = train(load_config(root, overrides))
    assert _step(run) == 10  # saved by the clock; no validation ran
    assert not list((run / "checkpoints").glob("best-*"))


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".mat"])
def test_a_full_disk_is_a_clear_error_before_any_work(
    monkeypatch, tmp_path, checkpoint, video, capsys, suffix
):
    """The output's space is reserved (or, for HDF5's compressed chunks, checked) up front: a
    full disk is ENOSPC at once (exit 2), not a SIGBUS or a crash in h5py half-way through,
    and no stage or temporary file stays behind."""
    import errno
    import shutil

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    out = tmp_path / f"flow{suffix}"
    argv = ["predict", str(video), "--out", str(out), "--checkpoint", str(checkpoint)]
    assert main(argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_two_writers_to_one_output_leave_one_complete_file(tmp_path, checkpoint, video):
    """Each writer fills its own temporary file and renames it: whichever finishes last wins,
    and the file under the final name is always whole."""
    import subprocess
    import sys

    out = tmp_path / "flow.npy"
    cmd = [sys.executable, "-m", "flowvid.cli", "predict", str(video), "--out", str(out)]
    cmd += ["--checkpoint", str(checkpoint), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert np.load(out).shape == (23, 32, 32, 2)
    assert _leftovers(tmp_path) == []


def test_batch_predict_skips_what_is_done_and_goes_on_after_a_sigterm(
    monkeypatch, tmp_path, checkpoint, capsys
):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name in ("a", "b", "c"):
        write_video(
            folder / f"{name}.mp4",
            np.random.default_rng(1).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8),
            fps=10,
        )
    (folder / "broken.mp4").write_bytes(b"not a video" * 20)
    (folder / "damaged.tif").write_bytes(b"II*\x00" + bytes(200))  # a TIFF header, no image
    out = tmp_path / "flows"
    argv = ["predict", str(folder), "--out-dir", str(out), "--checkpoint", str(checkpoint)]
    # stopped by SIGTERM inside the second video: the first is kept, nothing half-written
    _signal_after(monkeypatch, "flowvid.models.model.FlowVid", "step", signal.SIGTERM, 3)
    assert main([*argv, "--batch-frames", "3"]) == 143  # 2 chunks a video: the 3rd is b's
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER) == ["a.npy", "a.npy.json"]
    monkeypatch.undo()
    capsys.readouterr()
    # run again: a is skipped, the rest is written, the broken video is reported
    assert main(argv) == 2
    said = capsys.readouterr().out
    assert "2 written, 1 already done (skipped), 2 failed" in said
    assert "broken.mp4" in said and "damaged.tif: not a readable TIFF stack" in said
    assert sorted(p.name for p in out.glob("*.npy")) == ["a.npy", "b.npy", "c.npy"]
    assert np.load(out / "c.npy").shape == (5, 32, 32, 2)
    assert main(argv) == 2 and "0 written, 3 already done" in capsys.readouterr().out


def test_batch_rerun_redoes_what_another_option_or_a_replaced_video_changes(
    tmp_path, checkpoint, capsys
):
    folder = tmp_path / "recordings"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        write_video(folder / f"{name}.mp4", rng.integers(0, 255, (5, 32, 32, 3), np.uint8), fps=10)
    out = tmp_path / "flows"
    argv = ["predict", str(folder), "--out-dir", str(out), "--checkpoint", str(checkpoint)]
    assert main(argv) == 0 and "2 written" in capsys.readouterr().out
    assert main(argv) == 0 and "0 written, 2 already done" in capsys.readouterr().out
    # other units: both redone, and the batch says why
    um = [*argv, "--units", "um/s", "--um-per-px", "0.5"]
    assert main(um) == 0
    said = capsys.readouterr().out
    assert "2 written" in said and "made with other options (um_per_px, units)" in said
    assert json.loads((out / "a.npy.json").read_text())["units"] == "um/s"
    # a range: redone again
    assert main([*um, "--frames", "1:5"]) == 0 and "2 written" in capsys.readouterr().out
    assert np.load(out / "a.npy").shape == (3, 32, 32, 2)
    # b replaced by another recording under the same name: only b is redone
    write_video(folder / "b.mp4", rng.integers(0, 255, (7, 32, 32, 3), np.uint8), fps=10)
    assert main([*um, "--frames", "1:5"]) == 0
    said = capsys.readouterr().out
    assert "1 written, 1 already done" in said and "the video changed" in said


def test_batch_refuses_two_videos_with_one_output_name(tmp_path, checkpoint, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        write_video(tmp_path / sub / "clip.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=10)
    argv = ["predict", str(tmp_path / "x"), str(tmp_path / "y"), "--out-dir", str(tmp_path / "o")]
    assert main([*argv, "--checkpoint", str(checkpoint)]) == 2
    assert "two videos would write clip" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sigterm_to_the_whole_process_group_stops_training_cleanly(tmp_path, tiny_data):
    """A cluster's time limit (Slurm's, ``kill -- -PGID``) sends SIGTERM to every process of
    the job, the data loader's workers included: the run still stops at a batch boundary,
    saves, and says how to go on (exit 143), instead of crashing on a killed worker."""
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    argv = _cfg(tiny_data, run, "--set", "train.max_steps=100000", "--set", "data.workers=1")
    argv[argv.index("train.checkpoint_minutes=null")] = "train.checkpoint_minutes=0.0001"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowvid", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "last.ckpt").is_file():  # training is under way
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM); stopped at step" in err and "--resume" in err
    assert "Traceback" not in err and "killed by signal" not in err
    assert _step(run) > 0 and _leftovers(run / "checkpoints") == []
    deadline = time.monotonic() + 30  # and no worker outlives the run
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a data loader worker outlived the run"
        time.sleep(0.5)

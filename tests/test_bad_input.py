"""The bad-input matrix: every command against many kinds of broken input.

Each case says what is wrong, the command, and what must happen: exit 2 with a message that
names the problem (never a traceback), nothing under the output's final name, no temporary
file left beside it, and an output that existed before kept byte for byte. A few cases are
inputs that look odd but are valid (prime sizes, grayscale, 16-bit TIFF, RGBA, names with
spaces): those must work (exit 0). docs/reliability.md holds the table of a run.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from flowvid.checkpoint import save_checkpoint
from flowvid.cli import main
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.io.flowfile import write_flow
from flowvid.io.video import write_video
from flowvid.models import create_model

TINY = dict(encoder="resnet18", pretrained="none", hidden=16, context=16, corr_radius=1)
KEPT = b"an earlier result that must survive"


@dataclass
class Env:
    tmp: Path
    video: Path  # 12 frames, 32 x 32
    ckpt: Path
    data: Path  # a valid dataset: 3 clips of 6 frames, 32 x 32
    out: Path  # where outputs go: must hold nothing new after a failure

    def predict(self, video: Path | str, *extra: str) -> list[str]:
        return [
            "predict",
            str(video),
            "--out",
            str(self.out),
            "--checkpoint",
            str(self.ckpt),
            *extra,
        ]

    def overlay(self, flow: Path, video: Path | None = None) -> list[str]:
        return ["overlay", str(video or self.video), str(flow), "--out", str(self.tmp / "o.mp4")]

    def dataset(self, name: str) -> Path:
        """A copy of the valid dataset to break."""
        import shutil

        return Path(shutil.copytree(self.data, self.tmp / name))


@dataclass
class Case:
    id: str
    what: str
    build: Callable[[Env], list[str]]
    expect: str  # a fragment of the message (exit 2), or "" for a case that must work

    @property
    def code(self) -> int:
        return 2 if self.expect else 0


def _frames(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def _cut(env: Env, fraction: float) -> Path:
    data = env.video.read_bytes()
    bad = env.tmp / f"cut{int(fraction * 100)}.mp4"
    bad.write_bytes(data[: int(len(data) * fraction)])
    return bad


def _corrupt_middle(env: Env) -> Path:
    data = bytearray(env.video.read_bytes())
    start = (data.find(b"mdat") + data.find(b"moov")) // 2
    data[start : start + 300] = np.random.default_rng(1).integers(0, 256, 300, np.uint8).tobytes()
    return _file(env, "damaged.mp4", bytes(data))


def _file(env: Env, name: str, content: bytes) -> Path:
    path = env.tmp / name
    path.write_bytes(content)
    return path


def _flow_file(env: Env, name: str, array: np.ndarray) -> Path:
    path = env.tmp / name
    np.save(path, array) if name.endswith(".npy") else write_flow(path, array)
    return path


def _folder(env: Env, name: str, sizes: list[tuple[int, int]], extra: dict | None = None) -> Path:
    folder = env.tmp / name
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_frames(1, h, w, i)[0]).save(folder / f"f{i:03d}.png")
    for fname, content in (extra or {}).items():
        (folder / fname).write_bytes(content)
    return folder


def _yaml(env: Env, name: str, text: str) -> Path:
    root = env.dataset(name)
    (root / "dataset.yaml").write_text(text)
    return root


def _splits(env: Env, name: str, split: dict) -> Path:
    import yaml

    root = env.dataset(name)
    doc = yaml.safe_load((root / "dataset.yaml").read_text())
    doc["split"] = split
    (root / "dataset.yaml").write_text(yaml.safe_dump(doc))
    return root


def _nan_gt(env: Env) -> Path:
    root = env.dataset("nan")
    flow = np.load(root / "flow" / "vessel_000.npy")
    flow[1, 3, 4, 0] = np.nan
    flow[2, 5, 6, 1] = np.inf
    np.save(root / "flow" / "vessel_000.npy", flow)
    return root


class _RunsCode:
    """Unpickling this runs code: a checkpoint must never be loaded that way."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/flowvid-pickle-ran"),))


def _pickle_ckpt(env: Env) -> Path:
    path = env.tmp / "evil.pt"
    torch.save({"format": "flowvid-checkpoint-1", "payload": _RunsCode()}, path)
    return path


def _train(env: Env, data: Path, *sets: str) -> list[str]:
    argv = ["train", "--config", "configs/debug.yaml", "--data", str(data)]
    argv += ["--run-dir", str(env.out.parent / "run")]
    for s in sets:
        argv += ["--set", s]
    return argv


def _under_a_file(env: Env) -> list[str]:
    out = env.out.parent / "a-file" / "f.npy"
    out.parent.write_bytes(b"not a folder")
    return ["predict", str(env.video), "--out", str(out), "--checkpoint", str(env.ckpt)]


CASES = [
    # ---------------------------------------------------------------- videos
    Case(
        "missing-video",
        "a video path that does not exist",
        lambda e: e.predict(e.tmp / "nope.mp4"),
        "no such file",
    ),
    Case(
        "dir-for-file",
        "an empty folder where a video is expected",
        lambda e: e.predict(_folder(e, "empty", [])),
        "no frames",
    ),
    Case(
        "not-a-video",
        "a text file named .mp4",
        lambda e: e.predict(_file(e, "t.mp4", b"hello " * 50)),
        "not a readable video",
    ),
    Case(
        "truncated-10",
        "an mp4 cut to 10 %",
        lambda e: e.predict(_cut(e, 0.1)),
        "not a readable video",
    ),
    Case(
        "truncated-50",
        "an mp4 cut to 50 %",
        lambda e: e.predict(_cut(e, 0.5)),
        "not a readable video",
    ),
    Case(
        "truncated-90",
        "an mp4 cut to 90 %",
        lambda e: e.predict(_cut(e, 0.9)),
        "not a readable video",
    ),
    Case(
        "corrupt-middle",
        "300 random bytes in the middle of the frame data (the decoder conceals them)",
        lambda e: e.predict(_corrupt_middle(e)),
        "",
    ),
    Case(
        "one-frame",
        "a one-frame video",
        lambda e: e.predict(write_video(e.tmp / "one.mp4", _frames(1), fps=10)),
        "at least 2 frames",
    ),
    Case(
        "zero-frames",
        "a TIFF stack with no pages",
        lambda e: e.predict(_file(e, "z.tif", b"II*\x00\x08\x00\x00\x00\x00\x00")),
        "TIFF",
    ),
    Case(
        "two-frames",
        "a two-frame video (the shortest valid one)",
        lambda e: e.predict(write_video(e.tmp / "two.mp4", _frames(2), fps=10)),
        "",
    ),
    Case(
        "size-change",
        "a frame folder whose frames change size",
        lambda e: e.predict(_folder(e, "mixed", [(32, 32), (32, 32), (24, 32)])),
        "differs from the first",
    ),
    Case(
        "stray-files",
        "a frame folder with a stray text file",
        lambda e: e.predict(_folder(e, "stray", [(32, 32)] * 3, {"notes.txt": b"x"})),
        "",
    ),
    Case(
        "tiny-frames",
        "1 x 1 frames (padded inside the model)",
        lambda e: e.predict(write_video(e.tmp / "px.mp4", _frames(3, 1, 1), fps=10)),
        "",
    ),
    Case(
        "prime-size",
        "37 x 53 frames",
        lambda e: e.predict(write_video(e.tmp / "prime.mp4", _frames(3, 37, 53), fps=10)),
        "",
    ),
    Case(
        "big-frames",
        "4096 x 4096 frames, run at --max-side 256",
        lambda e: e.predict(_big_tiff(e), "--max-side", "256"),
        "",
    ),
    Case(
        "grayscale",
        "a grayscale TIFF stack",
        lambda e: e.predict(_tiff(e, "g.tif", _frames(3)[..., 0])),
        "",
    ),
    Case("rgba", "a folder of RGBA PNG frames", lambda e: e.predict(_rgba(e)), ""),
    Case(
        "tiff-16bit",
        "a 16-bit TIFF stack",
        lambda e: e.predict(_tiff(e, "w.tif", (_frames(3)[..., 0].astype(np.uint16) * 257))),
        "",
    ),
    Case(
        "odd-names",
        "file names with spaces and non-ASCII",
        lambda e: e.predict(write_video(e.tmp / "vidéo à 1.mp4", _frames(3), fps=10)),
        "",
    ),
    Case(
        "bad-range",
        "--frames 5:3",
        lambda e: e.predict(e.video, "--frames", "5:3"),
        "at least 2 frames",
    ),
    Case(
        "bad-range-text",
        "--frames abc",
        lambda e: e.predict(e.video, "--frames", "abc"),
        "--frames takes",
    ),
    Case(
        "units-uncalibrated",
        "--units um/s without a pixel size",
        lambda e: e.predict(e.video, "--units", "um/s"),
        "needs --um-per-px",
    ),
    Case(
        "batch-frames-0",
        "--batch-frames 0",
        lambda e: e.predict(e.video, "--batch-frames", "0"),
        "--batch-frames",
    ),
    Case(
        "precision-unknown",
        "--precision fp16 (not a choice)",
        lambda e: e.predict(e.video, "--precision", "fp16"),
        "--precision must be one of auto, fp32, bf16",
    ),
    Case(
        "max-side-negative",
        "--max-side -5",
        lambda e: e.predict(e.video, "--max-side", "-5"),
        "--max-side",
    ),
    Case(
        "out-suffix",
        "--out with an unknown suffix",
        lambda e: [
            "predict",
            str(e.video),
            "--out",
            str(e.tmp / "f.txt"),
            "--checkpoint",
            str(e.ckpt),
        ],
        "--out must end",
    ),
    Case(
        "mask-shape",
        "a mask of the wrong size",
        lambda e: e.predict(e.video, "--mask", str(_mask(e, 16, 16))),
        "mask has shape",
    ),
    Case(
        "out-under-a-file",
        "an output path whose folder is a file",
        _under_a_file,
        "is a file, not a folder",
    ),
    Case(
        "embed-out-suffix",
        "embed --out that is not .npy",
        lambda e: [
            "embed",
            str(e.video),
            "--out",
            str(e.tmp / "e.csv"),
            "--checkpoint",
            str(e.ckpt),
        ],
        "embeddings are written as .npy",
    ),
    Case(
        "embed-damaged-ckpt",
        "embed with a damaged checkpoint",
        lambda e: ["embed", str(e.video), "--out", str(e.out), "--checkpoint", str(_half(e))],
        "not a readable checkpoint",
    ),
    # ---------------------------------------------------------------- flow files (overlay)
    Case(
        "flow-wrong-T",
        "a flow with T maps for T frames",
        lambda e: e.overlay(_flow_file(e, "t.npy", np.zeros((12, 32, 32, 2), np.float32))),
        "does not fit the video",
    ),
    Case(
        "flow-wrong-size",
        "a flow of another frame size",
        lambda e: e.overlay(_flow_file(e, "s.npy", np.zeros((11, 16, 16, 2), np.float32))),
        "does not fit the video",
    ),
    Case(
        "flo-bad-tag",
        "a .flo with a wrong tag",
        lambda e: e.overlay(_file(e, "tag.flo", struct.pack("<fii", 1.0, 2, 2) + bytes(32))),
        "bad .flo tag",
    ),
    Case(
        "flo-truncated",
        "a truncated .flo",
        lambda e: e.overlay(
            _file(e, "cut.flo", struct.pack("<fii", 202021.25, 32, 32) + bytes(100))
        ),
        "truncated",
    ),
    Case(
        "flo-absurd",
        "a .flo header of 2^30 x 2^30",
        lambda e: e.overlay(_file(e, "huge.flo", struct.pack("<fii", 202021.25, 1 << 30, 1 << 30))),
        "implausible",
    ),
    Case("kitti-8bit", "an 8-bit PNG given as KITTI flow", lambda e: e.overlay(_png8(e)), "16-bit"),
    Case(
        "npy-pickle",
        "an object-array .npy (pickle)",
        lambda e: e.overlay(_file(e, "obj.npy", _object_npy())),
        "refuses to load",
    ),
    Case("npz-no-key", "an .npz without a flow array", lambda e: e.overlay(_npz_other(e)), "flow"),
    Case(
        "npy-wrong-dims",
        "a .npy of shape (11, 32, 32)",
        lambda e: e.overlay(_flow_file(e, "d.npy", np.zeros((11, 32, 32), np.float32))),
        "shape",
    ),
    # ---------------------------------------------------------------- checkpoints
    Case(
        "ckpt-damaged",
        "a checkpoint cut in half",
        lambda e: e.predict(e.video).__add__(["--checkpoint", str(_half(e))]),
        "not a readable checkpoint",
    ),
    Case(
        "ckpt-foreign",
        "a torch file that is not a flowvid checkpoint",
        lambda e: e.predict(e.video).__add__(["--checkpoint", str(_foreign(e))]),
        "not a flowvid checkpoint",
    ),
    Case(
        "ckpt-pickle",
        "a pickle checkpoint that would run code",
        lambda e: e.predict(e.video).__add__(["--checkpoint", str(_pickle_ckpt(e))]),
        "not a readable checkpoint",
    ),
    Case(
        "ckpt-missing",
        "a checkpoint path that does not exist",
        lambda e: e.predict(e.video).__add__(["--checkpoint", str(e.tmp / "no.pt")]),
        "no such checkpoint",
    ),
    Case(
        "ckpt-frames-eval",
        "eval with a frames checkpoint",
        lambda e: ["eval", "--data", str(e.data), "--checkpoint", str(_frames_ckpt(e))],
        "future frames",
    ),
    # ---------------------------------------------------------------- datasets
    Case(
        "dataset-missing",
        "validate a folder that does not exist",
        lambda e: ["validate", str(e.tmp / "nodata")],
        "no such dataset folder",
    ),
    Case(
        "dataset-yaml-bad",
        "a dataset.yaml that is not YAML",
        lambda e: ["validate", str(_yaml(e, "yaml", "split: [unclosed"))],
        "dataset.yaml",
    ),
    Case(
        "dataset-yaml-list",
        "a dataset.yaml that is a list",
        lambda e: ["validate", str(_yaml(e, "yamllist", "- a\n- b\n"))],
        "mapping",
    ),
    Case(
        "split-missing-clip",
        "a split naming a clip that does not exist",
        lambda e: [
            "validate",
            str(
                _splits(
                    e,
                    "ghost",
                    {
                        "train": ["vessel_000", "ghost"],
                        "val": ["vessel_001"],
                        "test": ["vessel_002"],
                    },
                )
            ),
        ],
        "ghost",
    ),
    Case(
        "split-twice",
        "a clip named in two splits",
        lambda e: [
            "validate",
            str(
                _splits(
                    e,
                    "twice",
                    {
                        "train": ["vessel_000", "vessel_001"],
                        "val": ["vessel_001"],
                        "test": ["vessel_002"],
                    },
                )
            ),
        ],
        "vessel_001",
    ),
    Case(
        "split-empty",
        "training with an empty train split",
        lambda e: _train(
            e,
            _splits(
                e,
                "empty",
                {"train": [], "val": ["vessel_000", "vessel_001"], "test": ["vessel_002"]},
            ),
        ),
        "train",
    ),
    Case(
        "gt-nonfinite",
        "ground truth with NaN and inf",
        lambda e: ["validate", str(_nan_gt(e))],
        "non-finite",
    ),
    Case(
        "train-data-typo",
        "train --data pointing nowhere",
        lambda e: _train(e, e.tmp / "typo"),
        "flowvid synth --out",
    ),
    # ---------------------------------------------------------------- configs and --set
    Case(
        "set-unknown-key",
        "--set of a key that does not exist",
        lambda e: _train(e, e.data, "train.lrr=1"),
        "unknown config key",
    ),
    Case(
        "set-wrong-type",
        "--set with a value of the wrong type",
        lambda e: _train(e, e.data, "train.lr=fast"),
        "train.lr",
    ),
    Case(
        "set-no-equals", "--set without '='", lambda e: _train(e, e.data, "train.lr"), "key=value"
    ),
    Case(
        "set-negative",
        "--set data.batch_size=-4",
        lambda e: _train(e, e.data, "data.batch_size=-4"),
        "batch_size",
    ),
    Case(
        "set-deep",
        "--set a.b.c.d=1",
        lambda e: _train(e, e.data, "a.b.c.d=1"),
        "unknown config key",
    ),
    Case(
        "set-huge",
        "--set data.crop=99999999999",
        lambda e: _train(e, e.data, "data.crop=99999999999"),
        "crop",
    ),
    Case(
        "config-missing",
        "--config of a file that does not exist",
        lambda e: ["train", "--config", str(e.tmp / "no.yaml")],
        "no such config file",
    ),
    Case(
        "config-bad-yaml",
        "--config that is not YAML",
        lambda e: ["train", "--config", str(_file(e, "c.yaml", b"train: [1,"))],
        "not valid YAML",
    ),
    # ---------------------------------------------------------------- synth
    Case(
        "synth-videos-0",
        "synth --videos 0",
        lambda e: ["synth", "--out", str(e.out), "--videos", "0"],
        "at least 1",
    ),
    Case(
        "synth-size-8",
        "synth --size 8",
        lambda e: ["synth", "--out", str(e.out), "--size", "8"],
        "size",
    ),
    Case(
        "synth-into-data",
        "synth into a non-empty folder without --force",
        lambda e: ["synth", "--out", str(e.data), "--videos", "1"],
        "--force",
    ),
]


def _tiff(env: Env, name: str, stack: np.ndarray) -> Path:
    path = env.tmp / name
    tifffile.imwrite(path, stack, photometric="minisblack" if stack.ndim == 3 else "rgb")
    return path


def _big_tiff(env: Env) -> Path:
    stack = np.zeros((2, 4096, 4096), np.uint8)
    stack[1, 1000:2000, 1000:2000] = 200
    return _tiff(env, "big.tif", stack)


def _rgba(env: Env) -> Path:
    folder = env.tmp / "rgba"
    folder.mkdir()
    for i in range(3):
        rgba = np.concatenate([_frames(1, seed=i)[0], np.full((32, 32, 1), 128, np.uint8)], -1)
        Image.fromarray(rgba, "RGBA").save(folder / f"f{i}.png")
    return folder


def _mask(env: Env, h: int, w: int) -> Path:
    path = env.tmp / "mask.png"
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(path)
    return path


def _png8(env: Env) -> Path:
    path = env.tmp / "flow8.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    return path


def _object_npy() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _npz_other(env: Env) -> Path:
    path = env.tmp / "other.npz"
    np.savez(path, something_else=np.zeros(3))
    return path


def _half(env: Env) -> Path:
    data = env.ckpt.read_bytes()
    return _file(env, "half.pt", data[: len(data) // 2])


def _foreign(env: Env) -> Path:
    path = env.tmp / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, path)
    return path


def _frames_ckpt(env: Env) -> Path:
    kwargs = dict(TINY, task="frames")
    return save_checkpoint(env.tmp / "frames.pt", create_model(**kwargs), kwargs, {})


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", create_model(**TINY), TINY, {})
    video = write_video(root / "clip.mp4", _frames(12), fps=10)
    data = write_corpus(
        root / "data", 3, SynthConfig(size=32, frames=6), seed=0, workers=1, progress=False
    )
    return video, ckpt, data


def run_case(case: Case, tmp: Path, shared: tuple[Path, Path, Path], capsys) -> dict:
    """Run one case; return what happened (the test asserts it, the report tabulates it)."""
    video, ckpt, data = shared
    env = Env(tmp, video, ckpt, data, tmp / "out" / "result.npy")
    env.out.parent.mkdir(parents=True, exist_ok=True)
    argv = case.build(env)
    if case.code == 2:  # an earlier output under the final name must survive a failure
        env.out.write_bytes(KEPT)
    error = ""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    except BaseException as err:  # noqa: BLE001 - an escaped exception is the finding
        code, error = None, f"{type(err).__name__}: {err}"
    err = capsys.readouterr().err.replace(str(tmp), "<tmp>")  # fragments must not match paths
    leftovers = sorted(p.name for p in env.out.parent.iterdir() if p.name.startswith("."))
    return {
        "id": case.id,
        "what": case.what,
        "command": argv[0],
        "code": code,
        "message": err.strip().splitlines()[-1] if err.strip() else error,
        "traceback": "Traceback" in err or bool(error),
        "kept": case.code != 2 or env.out.read_bytes() == KEPT,
        "leftovers": leftovers,
        "stderr": err,
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, shared, capsys):
    marker = Path("/tmp/flowvid-pickle-ran")
    marker.unlink(missing_ok=True)
    r = run_case(case, tmp_path, shared, capsys)
    assert not r["traceback"], r["stderr"][-3000:] or r["message"]
    if case.code == 2:
        assert r["code"] == 2, (r["code"], r["stderr"][-2000:])
        assert case.expect in r["stderr"], r["stderr"][-2000:]
        assert r["kept"], "an existing output was damaged"
    else:
        assert r["code"] == 0, r["stderr"][-2000:]
    assert r["leftovers"] == [], r["leftovers"]
    assert not marker.exists(), "unpickling ran code"


def test_the_matrix_covers_forty_kinds():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)

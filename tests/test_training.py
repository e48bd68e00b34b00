"""Training: configs, losses, metrics, clips, overfitting one batch, checkpoints, resume, NaN."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from flowvid.checkpoint import load_model, read_checkpoint
from flowvid.config import load_config, model_kwargs
from flowvid.data.clips import FixedClips, RandomClips
from flowvid.data.dataset import load_dataset
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.errors import InputError
from flowvid.flowops import compose
from flowvid.io.flowfile import read_flow
from flowvid.metrics import ErrorStats, FlowMetrics
from flowvid.models import create_model
from flowvid.training.losses import balanced_flow_loss

CONFIG_ROOT = Path(__file__).parents[1] / "configs"
CONFIGS = sorted(
    p for p in CONFIG_ROOT.rglob("*.yaml") if "experiments" not in p.parts
)  # studies: test_study


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "data"
    return write_corpus(
        root, 3, SynthConfig(size=64, frames=10, drift_prob=0.0), seed=1, workers=1, progress=False
    )


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_ROOT)) for p in CONFIGS])
def test_every_config_loads_and_builds(path):
    from flowvid.data.rendered import generator_config

    cfg = load_config(path)
    model = create_model(**model_kwargs(cfg))
    task = "frames" if "frames" in path.name else "flow"
    assert cfg.model.task == task and model.task == task  # the file was applied
    out = model(torch.rand(1, 3, 3, 64, 64))
    assert out.shape == (1, 2, 3 if task == "frames" else 2, 64, 64)
    if cfg.data.source != "folder":
        gen = generator_config(
            cfg.data.source, cfg.data.crop, cfg.data.clip_len, cfg.data.generator
        )
        assert (gen.size, gen.frames) == (cfg.data.crop, cfg.data.clip_len)


def test_overrides_are_typed_and_checked():
    cfg = load_config(
        None, ["train.lr=1e-3", "data.batch_size=3", "model.freeze=2", "train.init_from=none"]
    )
    assert cfg.train.lr == 1e-3 and cfg.data.batch_size == 3 and cfg.model.freeze == 2
    assert cfg.train.init_from is None
    # "none" is a value of its own for a plain string key (train from scratch), and "null"
    # empties an optional one
    cfg = load_config(
        None, ["model.pretrained=none", "model.freeze=none", "train.max_minutes=null"]
    )
    assert cfg.model.pretrained == "none" and cfg.model.freeze == "none"
    assert cfg.train.max_minutes is None
    assert load_config(None, ["train.max_minutes=2.5"]).train.max_minutes == 2.5
    with pytest.raises(InputError, match="unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=1"])
    with pytest.raises(InputError, match="data.batch_size"):
        load_config(None, ["data.batch_size=many"])


def test_balanced_loss_weighs_vessel_and_background_separately():
    target = torch.zeros(1, 1, 2, 10, 10)
    pred = torch.zeros_like(target)
    mask = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    mask[..., :2, :2] = True  # a tiny vessel
    target[..., 0, :2, :2] = 3.0  # moving at 3 px/frame; the model says zero
    valid = torch.ones_like(mask)
    weights = dict(inside_weight=1.0, outside_weight=1.0, eps=1e-6, power=0.5)
    loss = balanced_flow_loss(pred, target, mask, valid, **weights)
    assert loss == pytest.approx(3.0, abs=1e-4)  # a plain mean would give 3 * 4/100 = 0.12
    valid[..., :1, :] = False
    assert balanced_flow_loss(pred, target, mask, valid, **weights) == pytest.approx(3.0, abs=1e-4)


def test_metrics_known_values():
    m = FlowMetrics()
    target = torch.zeros(1, 2, 4, 4)
    target[:, 0, :2] = 2.0  # top half moves
    pred = target.clone()
    pred[:, 0, 0] += 1.5  # first row 1.5 px off
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    m.update(pred, target, mask, torch.ones_like(mask))
    out = m.compute()
    assert out["epe_vessel"] == pytest.approx(0.75)
    assert out["epe_outside"] == pytest.approx(0.0)
    assert out["zero_epe_vessel"] == pytest.approx(2.0)
    assert out["acc_1px_vessel"] == pytest.approx(0.5)
    assert out["acc_3px_vessel"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pred_of", "ratio"),
    [
        (lambda gt: gt, 1.0),
        (lambda gt: 0.6 * gt, 0.6),  # reads 40 % low
        (lambda gt: -gt, -1.0),  # the wrong way
        (lambda gt: np.stack([-gt[..., 1], gt[..., 0]], -1), 0.0),  # at right angles
    ],
)
def test_speed_read_known_values(pred_of, ratio):
    """The speed read: the predictions' component along the true motion over the true speed,
    in the vessel, per bin of true speed, the same in the torch metric."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, (2, 8, 8))
    speed = np.where(np.arange(8)[:, None] < 4, 0.3, 5.0) * np.ones((2, 8, 8))  # two bins
    gt = np.stack([np.cos(angle), np.sin(angle)], -1) * speed[..., None]
    pred = pred_of(gt)
    pred[:, :, 0] += 7.0  # outside the vessel: not counted
    mask = np.ones((2, 8, 8), bool)
    mask[:, :, 0] = False
    stats = ErrorStats()
    stats.update(pred, gt, mask, np.ones_like(mask))
    assert stats.summary()["speed_ratio_vessel"] == pytest.approx(ratio, abs=1e-9)
    bins = {b["speed_lo"]: b for b in stats.speed_curve()}
    assert bins[0.25]["speed_ratio"] == pytest.approx(ratio, abs=1e-9)
    assert bins[4.0]["speed_ratio"] == pytest.approx(ratio, abs=1e-9)
    assert np.isnan(bins[1.0]["speed_ratio"])  # no pixel moves at 1-2 px/frame
    metric = FlowMetrics()
    as_torch = [torch.from_numpy(x).movedim(-1, 1).float() for x in (pred, gt)]
    metric.update(*as_torch, torch.from_numpy(mask), torch.ones(2, 8, 8, dtype=torch.bool))
    assert float(metric.compute()["speed_ratio_vessel"]) == pytest.approx(ratio, abs=1e-5)


def test_speed_read_weighs_by_true_speed_and_merges_by_sum():
    """A slow half read at 0.5 and a fast half (3x faster) read right: (0.5 + 3) / 4."""
    gt = np.zeros((1, 2, 4, 2))
    gt[0, 0, :, 0], gt[0, 1, :, 0] = 1.0, 3.0
    pred = gt * np.array([0.5, 1.0])[None, :, None, None]
    mask = np.ones((1, 2, 4), bool)
    whole, slow, fast = ErrorStats(), ErrorStats(), ErrorStats()
    whole.update(pred, gt, mask, mask)
    slow.update(pred[:, :1], gt[:, :1], mask[:, :1], mask[:, :1])
    fast.update(pred[:, 1:], gt[:, 1:], mask[:, 1:], mask[:, 1:])
    slow.merge(fast)
    assert whole.summary()["speed_ratio_vessel"] == pytest.approx(3.5 / 4)
    assert slow.summary() == pytest.approx(whole.summary(), nan_ok=True)
    for merged, one in zip(slow.speed_curve(), whole.speed_curve(), strict=True):
        assert merged == pytest.approx(one, nan_ok=True)
    still = ErrorStats()
    still.update(pred, np.zeros_like(gt), mask, mask)
    assert np.isnan(still.summary()["speed_ratio_vessel"])  # nothing moves: no ratio


def test_training_and_evaluation_metrics_agree():
    """One definition: the torch metric and the numpy statistics give the same numbers."""
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 3, 2, 16, 16, generator=g) * 2
    pred = target + torch.randn(2, 3, 2, 16, 16, generator=g)
    mask = torch.rand(2, 3, 16, 16, generator=g) > 0.6
    valid = torch.rand(2, 3, 16, 16, generator=g) > 0.1
    m = FlowMetrics()
    m.update(pred, target, mask, valid)
    torch_out = m.compute()
    stats = ErrorStats()
    as_np = [x.movedim(2, -1).numpy() for x in (pred, target)]
    stats.update(*as_np, mask.numpy(), valid.numpy())
    np_out = stats.summary()
    assert torch_out.keys() <= np_out.keys()
    for key, value in torch_out.items():
        assert float(value) == pytest.approx(np_out[key], rel=1e-5), key


def test_clips_align_flow_i_with_frames_i_and_i_plus_1(tiny_data):
    data = load_dataset(tiny_data)
    clips = FixedClips(data.clips[:1], clip_len=4, stride=1, crop=0, windows=2)
    sample = clips[1]
    c, start = clips.items[1][0], clips.items[1][1]
    flow = read_flow(data.clips[c].flow)
    assert sample["frames"].shape == (4, 3, 64, 64) and sample["frames"].dtype == torch.uint8
    np.testing.assert_array_equal(
        sample["flow"].permute(0, 2, 3, 1).numpy(), flow[start : start + 3]
    )
    assert sample["mask"].shape == (3, 64, 64) and sample["valid"].all()


def test_frame_stride_composes_flows(tiny_data):
    data = load_dataset(tiny_data)
    one = FixedClips(data.clips[:1], clip_len=3, stride=1, crop=0, windows=1)[0]
    two = FixedClips(data.clips[:1], clip_len=2, stride=2, crop=0, windows=1)[0]
    assert two["flow"].shape == (1, 2, 64, 64)
    torch.testing.assert_close(two["frames"][1], one["frames"][2])
    torch.testing.assert_close(
        two["flow"][0], compose(one["flow"][:2])
    )  # compose: tested exactly elsewhere
    static = ~one["mask"][0]
    assert two["flow"][0][:, static].abs().max() < 1e-4  # background: 0 + 0


def test_random_clips_are_fair_and_cropped(tiny_data):
    data = load_dataset(tiny_data)
    train = RandomClips(data.clips, clip_len=4, stride=1, crop=48, samples=10)
    assert np.allclose(train.weights, 1 / 3)
    sample = train[0]
    assert sample["frames"].shape == (4, 3, 48, 48) and sample["flow"].shape == (3, 2, 48, 48)


def test_overfit_one_batch():
    """A small model drives the vessel EPE of one batch well below where it started."""
    from flowvid.data.synth.synthetic import ClipRenderer

    torch.manual_seed(0)
    r = ClipRenderer(
        SynthConfig(size=64, frames=4, drift_prob=0.0, quality="clean", speed_um_s=(80, 200)),
        np.random.default_rng(2),
    )
    frames = (
        torch.from_numpy(np.stack([r.frame(i) for i in range(4)])).permute(0, 3, 1, 2)[None].float()
        / 255
    )
    flow = torch.from_numpy(np.stack([r.flow(i) for i in range(3)])).permute(0, 3, 1, 2)[None]
    mask = torch.from_numpy(np.stack([r.mask(i) for i in range(3)]))[None]
    valid = torch.ones_like(mask)
    model = create_model(  # a light encoder: the test is about learning, not capacity
        encoder="mobilenetv3_small_050",
        pretrained="none",
        hidden=16,
        context=16,
        corr_radius=2,
        coarse_corr_radius=2,
        decoder_widths=(16, 16, 16),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def vessel_epe() -> float:
        with torch.no_grad():
            return float((model(frames) - flow).norm(dim=2)[mask].mean())

    start = vessel_epe()
    for _ in range(60):
        loss = balanced_flow_loss(
            model(frames), flow, mask, valid, inside_weight=1, outside_weight=1, eps=0.01, power=0.5
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = vessel_epe()
    assert start > 0.5
    assert end < 0.3 * start, (start, end)


def _debug_cfg(data: Path, run: Path, *extra: str):
    root = Path(__file__).parents[1] / "configs" / "debug.yaml"
    return load_config(
        root,
        [
            f"data.root={data}",
            f"train.run_dir={run}",
            "train.max_steps=6",
            "train.val_every_steps=3",
            "data.samples_per_epoch=8",
            *extra,
        ],
    )


def test_train_checkpoint_resume_and_load(tiny_data, tmp_path):
    from flowvid.training.train import train

    run = train(_debug_cfg(tiny_data, tmp_path / "run"))
    last = run / "checkpoints" / "last.ckpt"
    raw = torch.load(last, map_location="cpu", weights_only=True)  # plain types only
    assert raw["global_step"] == 6
    # last.ckpt is written after the best checkpoint is chosen: the best it names exists
    best = [v["best_model_path"] for v in raw["callbacks"].values() if "best_model_path" in v]
    assert best and all(Path(p).is_file() for p in best), best
    model, ckpt = load_model(run / "model.pt")
    assert ckpt["model_kwargs"]["task"] == "flow"
    assert model(torch.rand(1, 3, 3, 64, 64)).shape == (1, 2, 2, 64, 64)
    assert (run / "config.yaml").is_file()
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()
    # resume after an interruption: the step count goes on from the last checkpoint
    train(_debug_cfg(tiny_data, tmp_path / "run", "train.max_steps=9", "train.resume=last"))
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 9
    assert (run / "logs" / "version_1" / "metrics.csv").is_file()  # the first run's log is kept
    # init a new run from the exported model (the two-stage recipe)
    again = train(_debug_cfg(tiny_data, tmp_path / "run2", f"train.init_from={run / 'model.pt'}"))
    assert read_checkpoint(again / "model.pt")["state_dict"].keys() == ckpt["state_dict"].keys()
    # and into a model with the Lucas-Kanade heads and the error head: they start from scratch
    grown = train(
        _debug_cfg(
            tiny_data,
            tmp_path / "run3",
            f"train.init_from={run / 'model.pt'}",
            "model.lk_iters=1",
            "model.uncertainty=true",
        )
    )
    added = read_checkpoint(grown / "model.pt")["state_dict"].keys() - ckpt["state_dict"].keys()
    assert added and all(k.startswith(("refine.", "error_head.")) for k in added)


def test_train_only_trains_the_named_modules_and_nothing_else(tiny_data, tmp_path):
    """Frozen means frozen: weights and batch statistics outside the named heads stay put."""
    from flowvid.training.train import train

    lk = ["model.lk_iters=1", "model.lk_trust=true"]
    start = train(_debug_cfg(tiny_data, tmp_path / "start", *lk)) / "model.pt"
    before = read_checkpoint(start)["state_dict"]
    run = train(
        _debug_cfg(
            tiny_data,
            tmp_path / "heads",
            *lk,
            f"train.init_from={start}",
            "train.train_only=[refine]",
            "train.lr=0.05",
        )
    )
    after = read_checkpoint(run / "model.pt")["state_dict"]
    moved = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert moved and all(k.startswith("refine.") for k in moved), moved
    assert any(k.startswith("encoder.") and "running_mean" in k for k in before)
    with pytest.raises(InputError, match=r"no module \['lk_heads'\]; it has \[.*'encoder'"):
        train(_debug_cfg(tiny_data, tmp_path / "bad", *lk, "train.train_only=[lk_heads]"))
    assert not (tmp_path / "bad").exists()  # refused before the run folder


def test_freeze_all_but_returns_the_largest_frozen_modules():
    from torch import nn

    from flowvid.training.module import freeze_all_but

    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)), nn.ReLU(), nn.Conv2d(2, 1, 1)
    )
    frozen = freeze_all_but(model, ["2"])
    assert frozen == [model[0], model[1]]  # not model[0]'s children: their parent is enough
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["2.weight", "2.bias"]
    with pytest.raises(InputError, match="leaves nothing to train"):
        freeze_all_but(model, ["1"])  # a module without parameters


def test_nan_loss_stops_with_a_clear_message(tiny_data, tmp_path, monkeypatch):
    from flowvid.training import module, objectives
    from flowvid.training.train import train

    monkeypatch.setattr(
        objectives.FlowObjective,
        "loss",
        lambda self, pred, batch, aux=None: pred.sum() * float("nan"),
    )
    with pytest.raises(module.TrainingDiverged, match="loss became nan at step 0.*no checkpoint"):
        train(_debug_cfg(tiny_data, tmp_path / "nan"))


def test_checkpoint_from_another_architecture_is_refused(tiny_data, tmp_path):
    from flowvid.checkpoint import load_weights, save_checkpoint

    small = create_model(encoder="resnet18", pretrained="none", hidden=16, context=16)
    path = save_checkpoint(tmp_path / "m.pt", small, {}, {})
    other = create_model(encoder="resnet18", pretrained="none", hidden=32, context=16)
    with pytest.raises(InputError, match="does not fit this model architecture"):
        load_weights(other, read_checkpoint(path)["state_dict"], path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tiny_data, tmp_path):
    """Lightning's DDP (gloo) on CPU, through the command line."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "flowvid.cli",
        "train",
        "--config",
        "configs/debug.yaml",
        "--data",
        str(tiny_data),
        "--run-dir",
        str(tmp_path / "ddp"),
        "--set",
        "train.accelerator=cpu",
        "--set",
        "train.devices=2",
        "--set",
        "train.strategy=ddp",
        "--set",
        "train.max_steps=4",
        "--set",
        "train.val_every_steps=2",
        "--set",
        "data.samples_per_epoch=8",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained:") == 1  # printed by the main process only
    assert (
        torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == 4
    )


def test_a_run_with_the_error_head_trains_it_from_a_start_without_one(tiny_data, tmp_path):
    """The two-stage path: a model without the head starts a run that adds it; the head
    learns (its weights move from their start) and the run's model.pt rebuilds with it."""
    from flowvid.training.train import train

    start = train(_debug_cfg(tiny_data, tmp_path / "start")) / "model.pt"
    run = train(
        _debug_cfg(
            tiny_data, tmp_path / "unc", "model.uncertainty=true", f"train.init_from={start}"
        )
    )
    model, _ = load_model(run / "model.pt")
    assert model.error_head is not None
    # its last layer starts at zero (ErrorHead): after the run it is not
    assert model.error_head.net[-1].weight.abs().sum() > 0


def test_validation_reports_the_classical_methods_on_the_same_clips():
    """Known answer: with the truth set to Farneback's flow averaged over 3 maps of each clip
    (frames i and i+1 for map i), that method's EPE is 0 and the others' is not (the textures
    speed up, so averaging over time changes the maps); the values are measured once, and the
    ratio compares the model with the best of them."""
    from flowvid.predict.classical import CLASSICAL, classical_flows
    from flowvid.training.objectives import FlowObjective

    rng = np.random.default_rng(0)
    base = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    shift = (0, 1, 3, 6)  # 1, 2 and 3 px/frame
    frames = np.stack(  # (B=2, T=4, H, W, 3): textures moving along x and along y
        [
            np.stack([np.roll(base, (dy * s, dx * s), (0, 1)) for s in shift])
            for dx, dy in ((1, 0), (0, 1))
        ]
    )
    truth = np.stack([classical_flows(clip)["farneback_t3"] for clip in frames])  # (2, 3, H, W, 2)
    batch = {
        "frames": torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255.0,
        "flow": torch.from_numpy(truth).permute(0, 1, 4, 2, 3),
        "mask": torch.ones(2, 3, 40, 40, dtype=torch.bool),
        "valid": torch.ones(2, 3, 40, 40, dtype=torch.bool),
    }
    objective = FlowObjective(inside_weight=1.0, outside_weight=1.0, eps=0.01, power=0.5)
    objective.update(batch["flow"] + 0.5, batch)  # a model 0.5 px off along u
    values = objective.compute()
    assert set(objective.reference) == set(CLASSICAL)
    assert objective.reference["farneback_t3"] == pytest.approx(0.0, abs=1e-6)
    assert min(v for k, v in objective.reference.items() if k != "farneback_t3") > 0.1
    assert float(values["score"]) == pytest.approx(0.5 * np.sqrt(2), rel=1e-5)
    assert float(values["classical_epe"]) == pytest.approx(0.0, abs=1e-6)
    assert "vs_classical" not in values and "(farneback_t3) 0.000" in objective.describe(values)
    # measured once: later validations reuse it, whatever their batches
    objective.update(batch["flow"], dict(batch, frames=torch.zeros_like(batch["frames"])))
    values = objective.compute()
    assert objective.reference["farneback_t3"] == pytest.approx(0.0, abs=1e-6)
    assert float(values["score"]) == pytest.approx(0.0, abs=1e-6)


def test_the_loss_weighs_raft_updates_as_its_sequence_loss():
    """Updates 2, 1, 0.5 px off in every pixel (the last is the prediction): the loss is
    0.8^2 * 2 + 0.8 * 1 + 0.5 per side of the vessel mask, against 0.5 for the last alone."""
    from flowvid.training.objectives import FlowObjective

    flow = torch.zeros(1, 2, 2, 6, 6)
    batch = {
        "flow": flow,
        "mask": torch.zeros(1, 2, 6, 6, dtype=torch.bool).index_fill_(-1, torch.arange(3), True),
        "valid": torch.ones(1, 2, 6, 6, dtype=torch.bool),
    }
    updates = torch.stack([flow + torch.tensor([e, 0.0])[:, None, None] for e in (2, 1, 0.5)])
    objective = FlowObjective(inside_weight=1.0, outside_weight=0.3, eps=1e-6, power=0.5)
    alone = objective.loss(updates[-1], batch)
    assert float(alone) == pytest.approx(1.3 * 0.5, rel=1e-4)
    loss = objective.loss(updates[-1], batch, {"iterations": updates})
    assert float(loss) == pytest.approx(1.3 * (0.64 * 2 + 0.8 * 1 + 0.5), rel=1e-4)


def test_minutes_stops_the_run_on_time_and_saves_a_model(tiny_data, tmp_path, capsys):
    import time

    from flowvid.cli import main

    run = tmp_path / "timed"
    argv = ["train", "--config", str(CONFIG_ROOT / "debug.yaml"), "--data", str(tiny_data)]
    argv += [
        "--run-dir",
        str(run),
        "--set",
        "train.max_steps=100000",
        "--set",
        "train.val_every_steps=2",
    ]
    start = time.monotonic()
    assert main([*argv, "--minutes", "0.25"]) == 0
    took = time.monotonic() - start
    steps = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 2 <= steps < 100000 and took < 15 + 30, (steps, took)  # 15 s of training + start-up
    assert load_model(run / "model.pt")[0] is not None
    out = capsys.readouterr().out
    assert re.search(r"validation at step 2 \(\d+\.\d min\): vessel EPE", out)
    assert "best classical (" in out and re.search(r"; speed read -?\d\.\d\d of true", out)
    header = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/classical_epe" in header and "val/vs_classical" in header
    assert "val/speed_ratio_vessel" in header
    assert "val/minutes" in header
    for bad in ("0", "-1", "nan"):
        assert main([*argv[:-4], "--run-dir", str(tmp_path / bad), "--minutes", bad]) == 2
        assert "--minutes" in capsys.readouterr().err


def test_init_from_takes_the_checkpoint_s_architecture_and_the_config_changes_what_it_names():
    from flowvid.checkpoint import DEFAULT_CHECKPOINT

    shipped = read_checkpoint(DEFAULT_CHECKPOINT)["model_kwargs"]
    assert shipped["lk_iters"] > 0 and shipped["uncertainty"]  # the steps and the error head
    cfg = load_config(CONFIG_ROOT / "flow_lite0.yaml", ["train.init_from=default"])
    assert cfg.train.init_from == str(DEFAULT_CHECKPOINT)
    assert {k: v for k, v in model_kwargs(cfg).items() if k in shipped} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in shipped.items()
    }
    named = load_config(None, ["train.init_from=default", "model.lk_floor=0.5"])
    assert named.model.lk_floor == 0.5 and named.model.lk_iters == shipped["lk_iters"]
    assert load_config(None, []).model.lk_iters == 0  # no start, no checkpoint's settings


def test_train_without_a_config_fine_tunes_the_shipped_model(tiny_data, tmp_path, capsys):
    from flowvid.checkpoint import DEFAULT_CHECKPOINT
    from flowvid.cli import main
    from flowvid.predict.classical import CLASSICAL

    run = tmp_path / "mine"
    small = ["data.crop=64", "data.batch_size=1", "data.clip_len=3", "data.workers=0"]
    small += ["train.max_steps=2", "train.val_every_steps=2", "data.samples_per_epoch=2"]
    argv = ["train", "--data", str(tiny_data), "--run-dir", str(run)]
    assert main([*argv, *(x for s in small for x in ("--set", s))]) == 0
    out = capsys.readouterr().out
    assert f"starting from {DEFAULT_CHECKPOINT}" in out and "best classical (" in out
    trained, shipped = read_checkpoint(run / "model.pt"), read_checkpoint(DEFAULT_CHECKPOINT)
    assert trained["state_dict"].keys() == shipped["state_dict"].keys()
    assert trained["config"]["train"]["lr"] == 1e-4
    # a quarter of the clips generic motion: fine-tuning must not forget motion
    assert trained["config"]["data"]["motion_mix"] == 0.25
    # and the test split's comparison with the classical methods, in the run folder
    report = json.loads((run / "test_eval" / "report.json").read_text())
    assert {"flowvid", "farneback", "dis_medium_t3"} <= set(report["overall"])
    assert "test split: vessel EPE" in out and "x; better on " in out
    best = min(CLASSICAL, key=lambda m: report["overall"][m]["epe_vessel"])
    won = sum(
        c["flowvid"]["epe_vessel"] < c[best]["epe_vessel"] for c in report["per_clip"].values()
    )
    read = report["overall"]["flowvid"]["speed_ratio_vessel"]
    assert f"better on {won} of {len(report['per_clip'])} clips; speed read {read:.2f}" in out


def test_a_run_bounded_by_time_brings_the_learning_rate_down_by_the_clock(monkeypatch):
    from flowvid.training import module

    now = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    by_steps = module.warmup_cosine(10, 1000)
    timed = module.warmup_cosine(10, 1000, minutes=2.0)
    assert timed(5) == by_steps(5) == pytest.approx(0.6)  # the warm-up counts steps
    assert timed(10) == by_steps(10) == pytest.approx(1.0)
    now[0] += 60.0  # half the time, 1 % of the steps: the clock leads
    assert timed(20) == pytest.approx(0.01 + 0.99 * 0.5) and by_steps(20) > 0.99
    now[0] += 120.0  # past the time: the floor
    assert timed(30) == pytest.approx(0.01)
    assert timed(1000) == by_steps(1000) == pytest.approx(0.01)

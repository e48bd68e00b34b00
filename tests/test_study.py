"""The transfer study's pieces: its file, its nested target datasets, the RAFT anchor, and one
tiny end-to-end run (two arms, one seed, a few steps)."""

import csv
import dataclasses
import json
import shutil

import pytest
import torch
import yaml

from flowvid.checkpoint import DEFAULT_CHECKPOINT, with_settings
from flowvid.data.dataset import load_dataset
from flowvid.errors import InputError
from flowvid.lab import study as study_mod
from flowvid.lab.study import (
    StudyConfig,
    load_study,
    render_table,
    run_order,
    run_study,
    target_datasets,
    write_report,
)
from flowvid.models import create_model
from flowvid.models.raft import RaftFlow


def test_the_study_file_and_its_cpu_and_small_modes_load():
    full = load_study("configs/experiments/transfer.yaml")
    small = load_study("configs/experiments/transfer.yaml", mode="small")
    cpu = load_study("configs/experiments/transfer.yaml", mode="cpu")
    assert full.train_clips == [5, 10, 40] and len(full.seeds) == 3
    assert small.size < full.size and small.steps < full.steps
    # the CPU scale: >= 128 px crops, clips of >= 8 frames, 10 and 40 clips, 2 seeds
    assert cpu.target_look == "dic" and cpu.train_clips == [10, 40] and len(cpu.seeds) >= 2
    assert "data.crop=128" in cpu.overrides and "data.clip_len=8" in cpu.overrides
    assert {"default", "imagenet", "frozen", "scratch", "raft_small"} <= set(cpu.arms)
    assert set(full.arms) == {
        "imagenet",
        "frozen",
        "scratch",
        "curriculum",
        "scratch_curriculum",
        "raft_small",
    }
    with pytest.raises(InputError, match="has no gpu: section"):
        load_study("configs/experiments/transfer.yaml", mode="gpu")


def test_the_two_frame_file_is_the_cpu_mode_with_two_arms():
    """Its record answers the CPU mode's two-frame question: every size and setting of
    transfer.yaml's cpu: section, only the default arm and RAFT-small."""
    cpu = load_study("configs/experiments/transfer.yaml", mode="cpu")
    two = load_study("configs/experiments/two_frame_cpu.yaml")
    assert two.arms == ["default", "raft_small"]
    assert {**two.__dict__, "arms": cpu.arms} == cpu.__dict__


@pytest.mark.parametrize(
    "text, message",
    [
        ("target_look: purple\n", "target_look must be one of"),
        ("arms: [imagenet, magic]\n", "unknown arms ['magic']"),
        ("colour: red\n", "unknown keys ['colour']"),
        ("train_clips: [0]\n", "positive clip counts"),
        ("arms: [default]\n", "the default arm needs a target look the shipped model never"),
    ],
)
def test_a_bad_study_file_is_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(path)


def test_target_datasets_are_nested_and_share_val_and_test(tmp_path):
    s = StudyConfig(size=32, frames=5, train_clips=[1, 3], val_clips=1, test_clips=2, workers=1)
    roots = target_datasets(tmp_path, s)
    splits = {}
    for n, root in roots.items():
        data = load_dataset(root)  # a valid dataset folder
        splits[n] = {k: sorted(c.name for c in data.split(k)) for k in ("train", "val", "test")}
        assert len(splits[n]["train"]) == n
        clips = yaml.safe_load((root / "dataset.yaml").read_text())["clips"].values()
        looks = {c["meta"]["look"]["name"] for c in clips}
        assert looks == {"tracers"}  # the held-out look only
    assert set(splits[1]["train"]) < set(splits[3]["train"])
    assert splits[1]["val"] == splits[3]["val"] and splits[1]["test"] == splits[3]["test"]
    used = [set(v) for v in splits[3].values()]
    assert not (used[0] & used[1] or used[0] & used[2] or used[1] & used[2])


class _ConstantNet(torch.nn.Module):
    """Stands in for RAFT's network: flow (3, -1) on whatever grid it is given."""

    def forward(self, a, b, num_flow_updates):
        self.seen = a.shape
        flow = torch.zeros(a.shape[0], 2, *a.shape[-2:])
        flow[:, 0], flow[:, 1] = 3.0, -1.0
        return [flow]


def test_raft_on_small_clips_is_enlarged_and_its_flow_brought_back_to_the_clip():
    model = RaftFlow("raft_small")
    model.net = _ConstantNet()
    flow = model(torch.rand(1, 3, 3, 40, 52))
    assert flow.shape == (1, 2, 2, 40, 52)
    assert model.net.seen[-2:] == (160, 208)  # enlarged x4 to reach 128 px
    assert torch.allclose(flow[:, :, 0], torch.tensor(0.75)) and torch.allclose(
        flow[:, :, 1], torch.tensor(-0.25)
    )


class _UpdatesNet(torch.nn.Module):
    """Stands in for RAFT's network: after update i the flow is (i + 1, 0) everywhere."""

    def forward(self, a, b, num_flow_updates):
        flows = [torch.zeros(a.shape[0], 2, *a.shape[-2:]) for _ in range(num_flow_updates)]
        for i, flow in enumerate(flows):
            flow[:, 0] = i + 1.0
        return flows


def test_raft_hands_every_update_to_the_loss_in_training_only():
    model = RaftFlow("raft_small", iterations=3)
    model.net = _UpdatesNet()
    clip = torch.rand(2, 4, 3, 40, 52)  # enlarged x4 for RAFT: the vectors come back / 4
    aux: dict = {}
    flow = model.train()(clip, aux=aux)
    assert aux["iterations"].shape == (3, 2, 3, 2, 40, 52)
    assert aux["iterations"][:, :, :, 0].amax(dim=(1, 2, 3, 4)).tolist() == [0.25, 0.5, 0.75]
    assert torch.equal(flow, aux["iterations"][-1]) and not aux["iterations"][:, :, :, 1].any()
    aux = {}
    assert torch.equal(model.eval()(clip, aux=aux), flow) and aux == {}  # scoring: the last


def test_raft_streams_like_it_runs_on_the_whole_clip():
    torch.manual_seed(0)
    model = create_model(arch="raft_small").eval()
    clip = torch.rand(1, 5, 3, 64, 64)
    with torch.no_grad():
        whole = model(clip)
        first, state = model.step(clip[:, :2], model.init_state())
        rest, _ = model.step(clip[:, 2:], state)
    assert first.shape[1] == 1 and rest.shape[1] == 3
    torch.testing.assert_close(torch.cat([first, rest], 1), whole, atol=1e-4, rtol=1e-4)


def test_arms_with_a_pretraining_chain_of_their_own_run_after_all_others():
    s = StudyConfig(
        seeds=[0, 1], train_clips=[10, 40], arms=["default", "raft_small", "imagenet", "scratch"]
    )
    order = run_order(s)
    assert len(order) == len(set(order)) == 16
    assert order[:3] == [(0, 10, "default"), (0, 10, "imagenet"), (0, 10, "scratch")]
    assert order[3:6] == [(0, 40, "default"), (0, 40, "imagenet"), (0, 40, "scratch")]
    assert order[-4:] == [(seed, n, "raft_small") for seed in (0, 1) for n in (10, 40)]


def test_the_table_puts_each_arm_beside_the_best_classical_method():
    run = {"arm": "default", "clips": 10, "epe_outside": 0.5, "acc_1px_vessel": 0.7}
    result = {
        "runs": [
            {**run, "seed": 0, "epe_vessel": 0.9, "steps_to_target": 100},
            {**run, "seed": 1, "epe_vessel": 1.1, "steps_to_target": None},
            {**run, "arm": "imagenet", "seed": 0, "epe_vessel": 1.2, "steps_to_target": None},
        ],
        "classical": {
            "zero": {"epe_vessel": 0.5, "epe_outside": 0.0, "acc_1px_vessel": 0.5},  # no method
            "dis_medium": {"epe_vessel": 1.25, "epe_outside": 0.8, "acc_1px_vessel": 0.7},
            "dis_medium_t3": {"epe_vessel": 1.0, "epe_outside": 0.8, "acc_1px_vessel": 0.7},
        },
    }
    # per clip, against the best method pooled (DIS t3), not the best on each clip
    result["classical_clips_vessel"] = {
        "zero": {"a": 0.1, "b": 0.1, "c": 0.1},
        "dis_medium": {"a": 0.2, "b": 0.2, "c": 0.2},
        "dis_medium_t3": {"a": 0.5, "b": 1.0, "c": 2.0},
    }
    result["runs"][0]["clips_vessel"] = {"a": 0.4, "b": 1.5, "c": 1.0}  # wins a and c
    result["runs"][1]["clips_vessel"] = {"a": 0.6, "b": 0.9, "c": 2.0}  # wins b; c is a tie
    result["runs"][0]["speed_ratio_vessel"] = 0.8  # the second seed's record predates it
    result["classical_speed_read"] = {"zero": 0.0, "dis_medium": 0.9, "dis_medium_t3": 0.85}
    rows = render_table(result).splitlines()
    default = next(r for r in rows if r.startswith("| ImageNet -> motion -> vessels"))
    assert "| 1.000 (0.900-1.100) | 1.00 (0.90-1.10) | 3/6 | 0.80 |" in default
    assert "| 100 (1/2 seeds) |" in default
    imagenet = next(r for r in rows if r.startswith("| ImageNet, fully fine-tuned"))
    assert "| 1.200 | 1.20 | - | - |" in imagenet  # a record without per-clip scores
    assert "| DIS, 3 maps averaged | - | 1.000 | 1.00 | - | 0.85 |" in rows[-1]
    assert "| OpenCV DIS | - | 1.250 | 1.25 | - | 0.90 |" in rows[-2]
    del result["classical_speed_read"]  # a record from before it: no column is made up
    assert "| DIS, 3 maps averaged | - | 1.000 | 1.00 | - | - |" in render_table(result)


def test_a_tiny_study_runs_end_to_end_and_resumes(tmp_path):
    s = StudyConfig(
        size=32,
        frames=6,
        train_clips=[1],
        val_clips=1,
        test_clips=1,
        seeds=[0],
        arms=["scratch", "raft_small"],
        steps=2,
        val_every=1,
        motion_steps=1,
        vessel_steps=1,
        vessel_videos=2,
        workers=1,
        overrides=[
            "data.clip_len=3",
            "data.batch_size=1",
            "data.workers=0",
            "train.watch_motion=false",
            "data.rendered_val_clips=1",
            "data.val_windows=1",
            "train.checkpoint_minutes=none",
        ],
    )
    result = run_study(tmp_path, s)
    assert {(r["arm"], r["clips"], r["seed"]) for r in result["runs"]} == {
        ("scratch", 1, 0),
        ("raft_small", 1, 0),
    }
    for run in result["runs"]:
        assert run["epe_vessel"] > 0 and run["val_curve"]
    # steps to target compare each validation with the classical methods on the same
    # windows, as the run logged them (not the whole validation clips)
    run_dir = tmp_path / "runs" / "scratch" / "clips1" / "seed0"
    logged = {
        float(row["val/classical_epe"])
        for path in (run_dir / "logs").glob("version_*/metrics.csv")
        for row in csv.DictReader(path.open())
        if row.get("val/epe_vessel")
    }
    assert logged == {result["target_epe"]}
    whole = json.loads((tmp_path / "eval_classical_val" / "report.json").read_text())["overall"]
    assert min(whole[m]["epe_vessel"] for m in study_mod.BASELINES if m != "zero") != pytest.approx(
        result["target_epe"]
    )
    for run in result["runs"]:
        below = [step for step, epe, _ in run["val_curve"] if epe <= result["target_epe"]]
        assert run["steps_to_target"] == (below[0] if below else None)
    assert (tmp_path / "pretrain" / "raft_small" / "2_vessels" / "model.pt").is_file()
    report = write_report(tmp_path, result, "flowvid study test.yaml --out x")
    text = report.read_text()
    assert "| random init | 1 |" in text and "OpenCV DIS" in text
    assert (tmp_path / "val_curves.png").stat().st_size > 0
    run_dir = tmp_path / "runs" / "scratch" / "clips1" / "seed0"
    written = [
        run_dir / "model.pt",
        run_dir / "eval" / "report.json",
        tmp_path / "eval_classical" / "report.json",
        tmp_path / "eval_classical_val" / "report.json",
    ]
    stamps = [p.stat().st_mtime_ns for p in written]
    again = run_study(tmp_path, s)  # resumes: nothing is retrained or scored again
    assert again["target_epe"] == result["target_epe"]  # the windows' figure, from the logs
    assert [p.stat().st_mtime_ns for p in written] == stamps
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == json.loads(
        json.dumps(again["runs"])
    )
    for run in again["runs"]:  # one test clip: its score is the pooled one
        (clip_epe,) = run["clips_vessel"].values()
        assert clip_epe == pytest.approx(run["epe_vessel"])
        report = study_mod._run_dir(tmp_path, run["arm"], 1, 0) / "eval" / "report.json"
        scored = json.loads(report.read_text())["overall"]["flowvid"]
        assert run["speed_ratio_vessel"] == scored["speed_ratio_vessel"]
    assert set(again["classical_speed_read"]) == set(study_mod.BASELINES)
    assert again["classical_speed_read"]["zero"] == 0.0
    assert "| test clips won |" in text and "| random init | 1 |" in text
    # a record from before the per-clip scores takes them from the runs' folders
    record = json.loads((tmp_path / "results.json").read_text())
    for run in record["runs"]:
        del run["clips_vessel"], run["speed_ratio_vessel"]
    (tmp_path / "results.json").write_text(json.dumps(record))
    assert run_study(tmp_path, s)["runs"] == again["runs"]
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == again["runs"]
    # results.json is the record: copied into a new folder (another machine), its runs
    # count as finished though their folders are not there
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(tmp_path / "results.json", moved / "results.json")
    assert run_study(moved, s)["runs"] == again["runs"]
    assert not (moved / "runs").exists() and not (moved / "pretrain").exists()
    # ... but not when it is another setup's: refused, and left as it was
    before = (moved / "results.json").read_bytes()
    with pytest.raises(InputError, match=r"another setup of the study \(study\.steps differ\)"):
        run_study(moved, dataclasses.replace(s, steps=3))
    assert (moved / "results.json").read_bytes() == before
    # ... nor when its test clips are other clips (the classical methods score them otherwise)
    record = json.loads(before)
    record["classical"]["farneback"]["epe_vessel"] += 0.01
    (moved / "results.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="other test clips"):
        run_study(moved, s)
    # a run stopped before its model was exported (so not in results.json) goes on from its
    # last checkpoint, and its new model is scored anew
    (run_dir / "model.pt").unlink()
    record = json.loads((tmp_path / "results.json").read_text())
    record["runs"] = [r for r in record["runs"] if r["arm"] != "scratch"]
    (tmp_path / "results.json").write_text(json.dumps(record))
    run_study(tmp_path, s)
    assert (run_dir / "eval" / "report.json").stat().st_mtime_ns > stamps[1]
    # the record keeps the runs after the retrained one in the order too
    arms = [r["arm"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]]
    assert arms == ["scratch", "raft_small"]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["resume"] == "last" and (run_dir / "model.pt").is_file()
    validations = [
        (path.parent.name, int(row["step"]))
        for path in (run_dir / "logs").glob("version_*/metrics.csv")
        for row in csv.DictReader(path.open())
        if row.get("val/epe_vessel")
    ]
    assert validations == [("version_0", 0), ("version_0", 1)]  # nothing trained twice


def test_the_cpu_mode_fine_tunes_the_shipped_model_on_the_held_out_look(tmp_path, monkeypatch):
    """The CPU mode's smallest arm end to end on tiny data: the default arm starts from the
    shipped model (its architecture kept), trains on the look it never saw, logs its
    training minutes, and the report draws the curves and EPE against clips."""
    cpu = load_study("configs/experiments/transfer.yaml", mode="cpu")
    tiny = [
        "data.clip_len=3",
        "data.batch_size=1",
        "data.workers=0",
        "data.crop=64",
        "data.val_windows=1",
        "train.checkpoint_minutes=none",
    ]
    s = dataclasses.replace(
        cpu,
        size=64,
        frames=5,
        train_clips=[1],
        val_clips=1,
        test_clips=1,
        seeds=[0],
        arms=["default"],
        steps=2,
        val_every=1,
        workers=1,
        overrides=[*cpu.overrides, *tiny],
    )
    applied = []

    def recording(model, kwargs, changes):
        applied.append(changes)
        return with_settings(model, kwargs, changes)

    monkeypatch.setattr(study_mod, "with_settings", recording)
    result = run_study(tmp_path, s)
    (run,) = result["runs"]
    assert run["arm"] == "default" and run["epe_vessel"] > 0
    # trained as the stages were, scored as the shipped file runs
    assert applied == [{"temporal_mean": 3, "lk_sigma": 3.0, "lk_release": 1.5}]
    assert all(minutes is not None and minutes >= 0 for _, _, minutes in run["val_curve"])
    run_dir = tmp_path / "runs" / "default" / "clips1" / "seed0"
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["init_from"] == str(DEFAULT_CHECKPOINT)
    assert cfg["model"]["lk_iters"] == 6 and cfg["model"]["uncertainty"] is True
    looks = yaml.safe_load((tmp_path / "corpora" / "target_dic_1" / "dataset.yaml").read_text())
    assert {c["meta"]["look"]["name"] for c in looks["clips"].values()} == {"dic"}
    text = write_report(tmp_path, result, "flowvid study x.yaml --out y --cpu").read_text()
    assert "the shipped model" in text
    for png in ("val_curves.png", "epe_vs_clips.png"):
        assert (tmp_path / png).stat().st_size > 0

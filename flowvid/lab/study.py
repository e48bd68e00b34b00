"""The transfer study: with a few labelled clips of your own, does ImageNet pretraining help,
and how (fully fine-tuned, frozen, from scratch, or through the curriculum)? And does the
video model beat a two-frame network trained the same way?

A look held out of the vessel corpus stands in for the user's clips (the *target*): a pool
of its clips for training (the first 5, 10, 40 of it, nested), a few for validation and a
separate set for the test. Every arm trains on the target with the same steps, schedule,
augmentation and loss, for every seed:

- ``imagenet``: ImageNet encoder, fully unfrozen;
- ``frozen``: ImageNet encoder, frozen;
- ``scratch``: random initialisation;
- ``curriculum``: ImageNet -> generic motion -> vessels (every look but the target) -> target;
- ``default``: the shipped default model -> target. It is the curriculum's path as it ships
  (ImageNet -> motion -> vessels in the four training looks), what ``flowvid train --data``
  starts from; only for a target look held out of its corpus (``dic``);
- ``scratch_curriculum``: random init -> motion -> vessels -> target;
- ``raft_small``: torchvision's RAFT-small (random init, no download) through the same
  curriculum, data pipeline and loss;

and zero flow, OpenCV Farneback and DIS are scored on the same test clips. The pretraining
stages are trained once per initialisation (seed 0) and shared by the seeds of an arm.
A study file holds the GPU sizes, a ``cpu:`` section (2 CPU cores, a few hours, resumable)
and a ``small:`` one (CPU, about an hour, a smoke test of the arms).

Everything lands under one folder and a finished step is never redone (corpora with a
``dataset.yaml``, runs with a ``model.pt``, evaluations with a ``report.json`` newer than
the model they score), so an interrupted study resumes where it stopped. A run scored in the
folder's ``results.json`` counts as finished even where its run folder is gone: copy that
file into a new ``--out`` (another machine, a fresh checkout) and the study goes on from it.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flowvid.checkpoint import DEFAULT_CHECKPOINT, file_hash, load_model, with_settings
from flowvid.config import load_config, model_settings
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.looks import ALL_LOOKS, HELD_OUT_LOOKS, LOOKS
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output
from flowvid.lab.evaluate import evaluate
from flowvid.lab.sanity import watchers
from flowvid.training.train import train

CURRICULUM = Path(__file__).resolve().parents[2] / "configs" / "curriculum"
# classical flow, two-frame and averaged over 3 consecutive maps (it pools time too)
BASELINES = {
    "zero": "zero flow",
    "farneback": "OpenCV Farneback",
    "dis_medium": "OpenCV DIS",
    "farneback_t3": "Farneback, 3 maps averaged",
    "dis_medium_t3": "DIS, 3 maps averaged",
}
METRICS = ("epe_vessel", "epe_outside", "acc_1px_vessel")
SPEED_READ = "speed_ratio_vessel"  # recorded where the evaluation has it (not every record)
MODES = ("cpu", "small")  # a study file's sections that replace its (GPU) sizes


@dataclass(frozen=True)
class Arm:
    label: str
    overrides: tuple[str, ...]
    chain: str | None = None  # the curriculum's initialisation, or "shipped" (the default)


ARMS: dict[str, Arm] = {
    "imagenet": Arm("ImageNet, fully fine-tuned", ("model.pretrained=imagenet",)),
    "frozen": Arm("ImageNet, frozen encoder", ("model.pretrained=imagenet", "model.freeze=all")),
    "scratch": Arm("random init", ("model.pretrained=none",)),
    "curriculum": Arm(
        "ImageNet -> motion -> vessels -> target", ("model.pretrained=imagenet",), "imagenet"
    ),
    "default": Arm("ImageNet -> motion -> vessels (the shipped model) -> target", (), "shipped"),
    "scratch_curriculum": Arm(
        "random -> motion -> vessels -> target", ("model.pretrained=none",), "none"
    ),
    "raft_small": Arm(
        "RAFT-small (two frames) -> motion -> vessels -> target",
        ("model.arch=raft_small", "model.pretrained=none"),
        "raft_small",
    ),
}


@dataclass
class StudyConfig:
    """``configs/experiments/transfer.yaml``: every size of the study (its ``cpu:`` and
    ``small:`` sections hold the values that replace these in those modes)."""

    config: str = "configs/curriculum/3_finetune.yaml"  # the target stage's training config
    target_look: str = "tracers"
    train_clips: list[int] = field(default_factory=lambda: [5, 10, 40])
    val_clips: int = 4
    test_clips: int = 8
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: [a for a in ARMS if a != "default"])
    size: int = 192
    frames: int = 48
    steps: int = 800
    val_every: int = 100
    motion_steps: int = 4000
    vessel_steps: int = 4000
    vessel_videos: int = 50
    overrides: list[str] = field(default_factory=list)  # every training run, every stage
    flowvid_model: list[str] = field(default_factory=list)  # the flowvid arms' architecture
    # settings without weights of their own that the flowvid arms' models are scored with on
    # the test clips (model.KEY=VALUE: as the shipped file has them)
    score_with: list[str] = field(default_factory=list)
    target_epe: float | None = None  # "steps to reach"; default: the best classical method
    seed: int = 0  # of the corpora
    workers: int | None = None  # processes that render the corpora (default: all cores)


def load_study(path: str | Path, mode: str | None = None) -> StudyConfig:
    """Read a study file; ``mode`` ("cpu" or "small") applies that section of it."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such study file", path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise InputError("a study file is a mapping of keys to values", path)
    sections = {m: raw.pop(m, None) or {} for m in MODES}
    if mode is not None:
        if mode not in MODES or not sections[mode]:
            raise InputError(f"has no {mode}: section", path)
        raw |= sections[mode]
    known = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"unknown keys {unknown}; the keys are {sorted(known)}", path)
    study = StudyConfig(**raw)
    if study.target_look not in ALL_LOOKS:
        raise InputError(f"target_look must be one of {ALL_LOOKS}, not {study.target_look!r}", path)
    bad = sorted(set(study.arms) - set(ARMS))
    if bad:
        raise InputError(f"unknown arms {bad}; the arms are {sorted(ARMS)}", path)
    if "default" in study.arms and study.target_look not in HELD_OUT_LOOKS:
        raise InputError(
            f"the default arm needs a target look the shipped model never saw {HELD_OUT_LOOKS}, "
            f"not {study.target_look!r}",
            path,
        )
    if not study.train_clips or min(study.train_clips) < 1:
        raise InputError("train_clips must list positive clip counts", path)
    return study


# ------------------------------------------------------------------------------ corpora


def _corpus(
    root: Path, videos: int, cfg: SynthConfig, seed: int, workers: int | None = None
) -> Path:
    if not (root / "dataset.yaml").is_file():
        write_corpus(root, videos, cfg, seed=seed, workers=workers, force=True, progress=False)
    return root


def target_datasets(out: Path, s: StudyConfig) -> dict[int, Path]:
    """One dataset folder per training-set size: the first N clips of the target pool for
    training (so the sets are nested), and the same validation and test clips for all."""
    pool_size = max(s.train_clips) + s.val_clips + s.test_clips
    synth = SynthConfig(size=s.size, frames=s.frames, looks=(s.target_look,))
    pool = _corpus(
        out / "corpora" / f"target_{s.target_look}", pool_size, synth, s.seed + 7, s.workers
    )
    meta = yaml.safe_load((pool / "dataset.yaml").read_text())
    names = sorted(meta["clips"])
    val = names[: s.val_clips]
    test = names[s.val_clips : s.val_clips + s.test_clips]
    rest = names[s.val_clips + s.test_clips :]
    out_roots = {}
    for n in s.train_clips:
        root = out / "corpora" / f"target_{s.target_look}_{n}"
        out_roots[n] = _subset(pool, root, meta, {"train": rest[:n], "val": val, "test": test})
    return out_roots


def _subset(pool: Path, root: Path, meta: dict, split: dict[str, list[str]]) -> Path:
    """A dataset folder of some of ``pool``'s clips (symbolic links) with its own split."""
    if (root / "dataset.yaml").is_file():
        return root
    chosen = [n for names in split.values() for n in names]
    for sub in ("videos", "flow", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for item in (pool / sub).iterdir():
            if item.name.split(".")[0] in chosen and not (root / sub / item.name).exists():
                os.symlink(item.resolve(), root / sub / item.name)
    doc = dict(meta, split=split, clips={n: meta["clips"][n] for n in chosen})
    look = meta["clips"][chosen[0]]["meta"]["look"]["name"]
    doc["notes"] = (
        f"Stands in for a user's own labelled clips in the transfer study: the look '{look}' "
        "is held out of every pretraining corpus (data_cards/transfer_target.md). "
        + str(meta.get("notes", ""))
    )
    with atomic_output(root / "dataset.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


# ---------------------------------------------------------------------------- training


def _run(config: str | Path, overrides: list[str], run_dir: Path) -> Path:
    """Train one run, or take its model when it has one; a run stopped part way goes on from
    its last checkpoint."""
    model = run_dir / "model.pt"
    if not model.is_file():
        resume = ["train.resume=last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
        cfg = load_config(config, [*overrides, f"train.run_dir={run_dir}", *resume])
        train(cfg, callbacks=watchers(cfg.train.watch_motion))
    return model


def _sized(s: StudyConfig, steps: int) -> list[str]:
    """The study's sizes for a run of ``steps``; its overrides come last (a smaller crop)."""
    return [
        f"data.crop={s.size}",
        f"train.max_steps={steps}",
        f"train.val_every_steps={min(s.val_every, steps)}",
        f"train.warmup_steps={max(1, steps // 10)}",
        *s.overrides,
    ]


def _raft(arm: Arm) -> bool:
    return any(o.startswith("model.arch=raft") for o in arm.overrides)


def _arm_settings(s: StudyConfig, arm: Arm) -> list[str]:
    """The arm's own overrides, after the study's architecture for the flowvid arms."""
    return [*([] if _raft(arm) else s.flowvid_model), *arm.overrides]


def pretrained_chain(out: Path, s: StudyConfig, chain: str, arm: Arm) -> Path:
    """Motion stage, then vessel stage (every look but the target): the model to start the
    target stage from. Trained once per initialisation and reused."""
    base = out / "pretrain" / chain
    stage1 = _run(
        CURRICULUM / "1_motion.yaml",
        [*_sized(s, s.motion_steps), *_arm_settings(s, arm), "train.seed=0"],
        base / "1_motion",
    )
    others = tuple(look for look in LOOKS if look != s.target_look)
    vessels = _corpus(
        out / "corpora" / f"vessels_without_{s.target_look}",
        s.vessel_videos,
        SynthConfig(size=s.size, frames=s.frames, looks=others),
        s.seed,
        s.workers,
    )
    return _run(
        CURRICULUM / "2_vessels.yaml",
        [
            *_sized(s, s.vessel_steps),
            *_arm_settings(s, arm),
            f"data.root={vessels}",
            f"train.init_from={stage1}",
            "train.seed=0",
        ],
        base / "2_vessels",
    )


def _val_rows(run_dir: Path) -> list[dict[str, str]]:
    """The validation rows of the run's CSV logs."""
    rows = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with path.open() as f:
            rows += [row for row in csv.DictReader(f) if row.get("val/epe_vessel")]
    return rows


def _val_curve(run_dir: Path) -> list[tuple[int, float, float | None]]:
    """(step, validation vessel EPE, training minutes) from the run's CSV logs."""
    points = []
    for row in _val_rows(run_dir):
        minutes = float(row["val/minutes"]) if row.get("val/minutes") else None
        points.append((int(row["step"]), float(row["val/epe_vessel"]), minutes))
    return sorted(points)


def _val_target(run_dir: Path) -> float | None:
    """The best classical method's vessel EPE on the run's own validation windows, as its
    validation logged it beside the model's (None where the logs lack it)."""
    logged = [
        float(r["val/classical_epe"]) for r in _val_rows(run_dir) if r.get("val/classical_epe")
    ]
    return logged[0] if logged else None


def _start(out: Path, s: StudyConfig, arm: Arm) -> Path | None:
    """The checkpoint the arm's target runs start from (None: its initialisation)."""
    if arm.chain == "shipped":
        return DEFAULT_CHECKPOINT
    return None if arm.chain is None else pretrained_chain(out, s, arm.chain, arm)


def _target_run(out: Path, s: StudyConfig, name: str, n: int, root: Path, seed: int) -> Path:
    arm = ARMS[name]
    start = _start(out, s, arm)
    return _run(
        s.config,
        [
            *_sized(s, s.steps),
            *_arm_settings(s, arm),
            f"train.init_from={start or 'none'}",  # no stage-3 default start
            f"data.root={root}",
            f"train.seed={seed}",
        ],
        _run_dir(out, name, n, seed),
    )


def _run_dir(out: Path, name: str, n: int, seed: int) -> Path:
    return out / "runs" / name / f"clips{n}" / f"seed{seed}"


def _evaluated(
    root: Path,
    split: str,
    model_path: Path | None,
    out_dir: Path,
    progress: bool,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``eval`` of the model at ``model_path`` (None: the classical baselines) on ``split``
    of ``root``, with the model ``settings`` that have no weights of their own, or its report
    from an earlier start of the study when that is newer than the model and the clips (a
    corpus is written once)."""
    report = out_dir / "report.json"
    sources = [root / "dataset.yaml"] + ([] if model_path is None else [model_path])
    if report.is_file() and all(report.stat().st_mtime_ns > p.stat().st_mtime_ns for p in sources):
        return json.loads(report.read_text())
    model = None
    if model_path is not None:
        model, ckpt = load_model(model_path)
        if settings:
            model, _ = with_settings(model, ckpt["model_kwargs"], settings)
    return evaluate(root, split, model, baselines=model is None, out_dir=out_dir, progress=progress)


def run_order(s: StudyConfig) -> list[tuple[int, int, str]]:
    """(seed, training clips, arm) in the order they run: seeds outermost, then sizes, then
    arms, and the arms whose start needs a pretraining chain of their own (hours on a CPU)
    after all the others: a study stopped part way has compared the starts from ImageNet,
    from scratch and from the shipped model on the seeds and sizes it reached."""
    runs = [(seed, n, arm) for seed in s.seeds for n in s.train_clips for arm in s.arms]
    own_chain = {a for a in s.arms if ARMS[a].chain not in (None, "shipped")}
    return sorted(runs, key=lambda r: r[2] in own_chain)  # stable: the order above within


def _setup(s: StudyConfig) -> dict[str, Any]:
    """What a study's results belong to: its settings, and the shipped model's bytes when the
    default arm (which starts from it) is one of its arms."""
    setup: dict[str, Any] = {"study": json.loads(json.dumps(s.__dict__))}
    if "default" in s.arms:
        setup["shipped_model_sha256"] = file_hash(DEFAULT_CHECKPOINT)
    return setup


def _earlier(out: Path, setup: dict[str, Any]) -> dict[str, Any]:
    """OUT/results.json of an earlier start ({} where there is none); a file written by another
    setup of the study is refused, not mixed in or overwritten."""
    path = out / "results.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    changed = [
        f"study.{key}"
        for key, value in setup["study"].items()
        if old.get("study", {}).get(key) != value
    ] + [key for key in setup if key != "study" and old.get(key) != setup[key]]
    if changed:
        raise InputError(
            f"{path} holds the results of another setup of the study ({', '.join(changed)} "
            "differ): give another --out, or move that file away to start over"
        )
    return old


def _finished(
    out: Path, old: dict[str, Any], classical: dict[str, dict[str, float]]
) -> dict[tuple[int, int, str], dict[str, Any]]:
    """The runs scored in an earlier start's results (``old``), by (seed, clips, arm), when
    its test clips are these: the classical methods score them the same (to 1e-3 px/frame;
    a corpus rendered or encoded differently is other clips)."""
    if not old:
        return {}
    before = old.get("classical", {})
    if any(
        abs(before.get(m, {}).get(k, np.inf) - classical[m][k]) > 1e-3
        for m in classical
        for k in classical[m]
    ):
        raise InputError(
            f"{out / 'results.json'} was scored on other test clips (the classical methods "
            "score these differently): give another --out, or move that file away to start over"
        )
    return {(r["seed"], r["clips"], r["arm"]): r for r in old.get("runs", [])}


def _per_clip(report: dict[str, Any], method: str) -> dict[str, float]:
    """A method's vessel EPE on each test clip of an ``eval`` report."""
    return {clip: row[method]["epe_vessel"] for clip, row in report["per_clip"].items()}


def _backfilled(run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run from the record with its per-clip scores and speed read, taken from its
    folder's evaluation where the record predates them and that evaluation is the one
    recorded (or a rerun of it that scores the same)."""
    report = run_dir / "eval" / "report.json"
    if ("clips_vessel" in run and SPEED_READ in run) or not report.is_file():
        return run
    scored = json.loads(report.read_text())
    overall = scored["overall"]["flowvid"]
    if abs(overall["epe_vessel"] - run["epe_vessel"]) > 1e-6:
        return run
    found = {"clips_vessel": _per_clip(scored, "flowvid"), SPEED_READ: overall.get(SPEED_READ)}
    return {k: v for k, v in found.items() if v is not None} | run


def run_study(out: str | Path, s: StudyConfig, progress: bool = False) -> dict[str, Any]:
    """Train and score every arm, size and seed (in :func:`run_order`) that OUT/results.json
    does not already hold; rewrite results.json, every run in it, after each new run and at
    the end."""
    out = Path(out)
    scored_with = model_settings(s.score_with)  # refused before any work
    setup = _setup(s)
    old = _earlier(out, setup)
    datasets = target_datasets(out, s)
    first = datasets[min(s.train_clips)]
    classical_report = _evaluated(first, "test", None, out / "eval_classical", progress)
    classical = classical_report["overall"]
    scores = {m: {k: classical[m][k] for k in METRICS} for m in BASELINES}
    finished = _finished(out, old, scores)
    val_classical = _evaluated(first, "val", None, out / "eval_classical_val", progress)["overall"]
    logged = (_val_target(_run_dir(out, name, n, seed)) for seed, n, name in finished)
    target_epe = (
        s.target_epe
        or next((t for t in logged if t is not None), None)
        or min(val_classical[m]["epe_vessel"] for m in BASELINES if m != "zero")
    )
    result: dict[str, Any] = {
        **setup,
        "target_epe": target_epe,
        "classical": scores,
        "classical_clips_vessel": {m: _per_clip(classical_report, m) for m in BASELINES},
    }
    if all(SPEED_READ in classical[m] for m in BASELINES):
        result["classical_speed_read"] = {m: classical[m][SPEED_READ] for m in BASELINES}
    order = run_order(s)
    runs = {
        (seed, n, name): _backfilled(run, _run_dir(out, name, n, seed))
        for (seed, n, name), run in finished.items()
    }
    for seed, n, name in order:
        if (seed, n, name) in runs:
            continue
        root = datasets[n]
        model_path = _target_run(out, s, name, n, root, seed)
        run_dir = model_path.parent
        settings = None if _raft(ARMS[name]) else scored_with
        report = _evaluated(root, "test", model_path, run_dir / "eval", progress, settings)
        scores = report["overall"]["flowvid"]
        curve = _val_curve(run_dir)
        # the target: the classical methods on the run's own validation windows, as logged
        if s.target_epe is None:
            result["target_epe"] = _val_target(run_dir) or result["target_epe"]
        reached = next((p[0] for p in curve if p[1] <= result["target_epe"]), None)
        runs[seed, n, name] = {
            "arm": name,
            "clips": n,
            "seed": seed,
            **{m: scores[m] for m in METRICS},
            **({SPEED_READ: scores[SPEED_READ]} if SPEED_READ in scores else {}),
            "clips_vessel": _per_clip(report, "flowvid"),
            "val_curve": curve,
            "steps_to_target": reached,
        }
        _save(out, result, runs, order)  # the record keeps every run, also those to come
    return _save(out, result, runs, order)


def _save(
    out: Path, result: dict[str, Any], runs: dict[tuple, dict[str, Any]], order: list[tuple]
) -> dict[str, Any]:
    result = {**result, "runs": [runs[key] for key in order if key in runs]}
    with atomic_output(out / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result


# ----------------------------------------------------------------------------- report


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean and spread (min-max) over seeds, per arm and training-set size, and the test clips
    on which the arm beat the best classical method (over all seeds; None where the record
    holds no per-clip scores)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in result["runs"]:
        groups.setdefault((run["arm"], run["clips"]), []).append(run)
    rows = []
    for (arm, clips), runs in groups.items():
        row: dict[str, Any] = {"arm": arm, "clips": clips, "seeds": len(runs)}
        for m in METRICS:
            row[m] = _spread([r[m] for r in runs])
        read = [r[SPEED_READ] for r in runs if SPEED_READ in r]
        row[SPEED_READ] = _spread(read) if read else None
        steps = [r["steps_to_target"] for r in runs]
        row["steps_to_target"] = steps
        row["clips_won"] = _clips_won(result, runs)
        rows.append(row)
    return rows


def _spread(values: list[float]) -> tuple[float, float, float]:
    """Mean, min and max."""
    a = np.array(values, float)
    return float(a.mean()), float(a.min()), float(a.max())


def _clips_won(result: dict[str, Any], runs: list[dict[str, Any]]) -> tuple[int, int] | None:
    """(clips won, clips scored) against the best classical method, clip by clip."""
    best = result.get("classical_clips_vessel", {}).get(best_classical_method(result))
    scored = [r["clips_vessel"] for r in runs if "clips_vessel" in r]
    if best is None or not scored:
        return None
    pairs = [(run[clip], best[clip]) for run in scored for clip in run]
    return sum(ours < theirs for ours, theirs in pairs), len(pairs)


def _cell(v: tuple[float, float, float], digits: int = 3) -> str:
    mean, lo, hi = v
    return (
        f"{mean:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})" if hi > lo else f"{mean:.{digits}f}"
    )


def _steps(steps: list[int | None]) -> str:
    reached = [s for s in steps if s is not None]
    if not reached:
        return "never"
    median = int(np.median(reached))
    return f"{median} ({len(reached)}/{len(steps)} seeds)"


def best_classical_method(result: dict[str, Any]) -> str:
    """The classical method (two-frame or averaged over 3 maps; zero flow is no method) with
    the lowest test vessel EPE."""
    methods = {m: v["epe_vessel"] for m, v in result["classical"].items() if m != "zero"}
    return min(methods, key=methods.get)


def best_classical(result: dict[str, Any]) -> float:
    """The best classical method's test vessel EPE."""
    return result["classical"][best_classical_method(result)]["epe_vessel"]


def render_table(result: dict[str, Any]) -> str:
    best = best_classical(result)
    lines = [
        "| arm | train clips | vessel EPE | x best classical | test clips won | speed read "
        "| outside EPE | <1 px (vessel) | steps to target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summarise(result):
        ratio = tuple(v / best for v in row["epe_vessel"])
        won = "-" if row["clips_won"] is None else "{}/{}".format(*row["clips_won"])
        read = "-" if row[SPEED_READ] is None else _cell(row[SPEED_READ], 2)
        lines.append(
            f"| {ARMS[row['arm']].label} | {row['clips']} | {_cell(row['epe_vessel'])} | "
            f"{_cell(ratio, 2)} | {won} | {read} | {_cell(row['epe_outside'])} | "
            f"{_cell(row['acc_1px_vessel'])} | {_steps(row['steps_to_target'])} |"
        )
    reads = result.get("classical_speed_read", {})
    for m, scores in result["classical"].items():
        read = f"{reads[m]:.2f}" if m in reads else "-"
        lines.append(
            f"| {BASELINES[m]} | - | {scores['epe_vessel']:.3f} | "
            f"{scores['epe_vessel'] / best:.2f} | - | {read} | {scores['epe_outside']:.3f} | "
            f"{scores['acc_1px_vessel']:.3f} | - |"
        )
    return "\n".join(lines) + "\n"


def _axes(curves: list[list]) -> list[tuple[int, str]]:
    """The x axes of the validation curves: steps, and training minutes when every point has
    them (wall-clock minutes, so on a shared machine they count the other work too)."""
    timed = all(len(p) > 2 and p[2] is not None for c in curves for p in c)
    return [(0, "step")] + ([(2, "training minutes")] if timed else [])


def plot_curves(result: dict[str, Any], path: Path) -> None:
    """Validation vessel EPE against steps and training minutes (one row each; minutes only
    when every run logged them): per arm the mean over seeds with its range, one panel per
    training-set size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["clips"] for r in result["runs"]})
    axes_x = _axes([r["val_curve"] for r in result["runs"]])
    fig, axes = plt.subplots(
        len(axes_x),
        len(sizes),
        figsize=(4.5 * len(sizes), 3.6 * len(axes_x) + 0.8),
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )
    for row, (x, xlabel) in zip(axes, axes_x, strict=True):
        for ax, n in zip(row, sizes, strict=True):
            for arm in ARMS:
                curves = [
                    r["val_curve"] for r in result["runs"] if r["arm"] == arm and r["clips"] == n
                ]
                curves = [c for c in curves if c]
                if not curves:
                    continue
                length = min(len(c) for c in curves)
                xs = np.array([[c[i][x] for i in range(length)] for c in curves]).mean(0)
                values = np.array([[c[i][1] for i in range(length)] for c in curves])
                (line,) = ax.plot(xs, values.mean(0), marker=".", label=ARMS[arm].label)
                ax.fill_between(xs, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
            ax.axhline(
                result["target_epe"], color="k", ls=":", lw=1, label="target (best classical, val)"
            )
            ax.set(title=f"{n} training clips", xlabel=xlabel)
        row[0].set_ylabel("validation vessel EPE (px/frame)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = 1 if len(sizes) == 1 else 2  # the arms' labels are long: one per panel's width
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_clips(result: dict[str, Any], path: Path) -> None:
    """Test vessel EPE against the number of training clips: per arm the mean over seeds with
    its range, beside the classical methods (horizontal lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    rows = summarise(result)
    for arm in ARMS:
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["clips"])
        if not mine:
            continue
        n = [r["clips"] for r in mine]
        mean, lo, hi = (np.array([r["epe_vessel"][i] for r in mine]) for i in range(3))
        ax.errorbar(
            n, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3, label=ARMS[arm].label
        )
    styles = {"farneback": "--", "dis_medium": ":", "dis_medium_t3": "-."}
    for m, ls in styles.items():
        if m in result["classical"]:  # a study from before the averaged baselines
            score = result["classical"][m]["epe_vessel"]
            ax.axhline(score, color="k", ls=ls, lw=1, label=BASELINES[m])
    ax.set_xscale("log")
    sizes = sorted({r["clips"] for r in rows})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set(xlabel="training clips of the target look", ylabel="test vessel EPE (px/frame)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, result: dict[str, Any], command: str) -> Path:
    """OUT/transfer_study.md (the table and how it was made), OUT/val_curves.png and
    OUT/epe_vs_clips.png."""
    s = result["study"]
    with atomic_output(out / "val_curves.png") as tmp:
        plot_curves(result, tmp)
    with atomic_output(out / "epe_vs_clips.png") as tmp:
        plot_clips(result, tmp)
    text = (
        f"Command: `{command}`\n\n"
        f"Target look (stands in for the user's clips): **{s['target_look']}**, "
        f"{s['size']} px, {s['frames']} frames per clip; {s['val_clips']} validation and "
        f"{s['test_clips']} test clips. Target stage: {s['steps']} steps from "
        f"`{s['config']}`; seeds {s['seeds']}; overrides {s['overrides']}. "
        + (
            f"The flowvid arms are scored with {s['score_with']} (settings without weights). "
            if s.get("score_with")
            else ""
        )
        + "Pretraining of the "
        f"curriculum arms: {s['motion_steps']} motion steps, {s['vessel_steps']} vessel steps "
        f"on {s['vessel_videos']} clips of the other looks; the default arm starts from the "
        "shipped model.\n\n"
        "Test-set figures, px/frame: mean over seeds (min-max). *Steps to target*: the first "
        f"validation step at which the vessel EPE was at or below {result['target_epe']:.3f} "
        "(the best classical method on the same validation windows); median over the seeds "
        "that reached it. *x best classical*: the vessel EPE over the best classical method's on "
        "the same test clips (two-frame or averaged over 3 maps), pooled over their pixels, "
        "so a few fast clips weigh most; *test clips won*: the clips, over all seeds, on "
        "which the arm's vessel EPE is below that method's; *speed read*: the speed a mean of "
        "the flow reads in the test vessels as a share of the true speed (1: unbiased; - where "
        "the record predates it).\n\n"
        + render_table(result)
        + "\n![validation EPE](val_curves.png)\n\n![test EPE against clips](epe_vs_clips.png)\n"
    )
    path = out / "transfer_study.md"
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return path

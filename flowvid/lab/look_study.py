"""Leave-one-look-out: does the model measure flow in a look of video it has never seen?

For every look of the vessel corpus (:data:`flowvid.data.synth.looks.LOOKS`): write a training
corpus of all the *other* looks, train the vessel stage on it (any config, e.g.
``configs/curriculum/2_vessels.yaml`` starting ``--init-from`` the motion stage), and score
the model zero-shot on a separate corpus of the held-out look only, beside zero flow, OpenCV
Farneback and DIS on the same frames (two-frame and averaged over 3 maps), with the
settings a model ships with and that have no weights of their own (``settings``: the mean
over maps, the steps' window) applied to the trained weights. The held-out corpora use other
seeds than the training corpora, so no scene is shared.

Everything lands under one folder and a finished step is never redone: corpora with a
``dataset.yaml``, runs with a ``model.pt`` and scores in a fold's ``row.json`` are reused, so
an interrupted study resumes. ``hold_out`` runs some folds only: several processes (or
machines sharing the folder) can each take their own, and every one of them writes the table
of all the folds finished so far.
"""

from __future__ import annotations

import json
from pathlib import Path

from flowvid.checkpoint import load_model, with_settings
from flowvid.config import load_config, model_settings
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.looks import LOOKS
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output, claim_folder
from flowvid.lab.evaluate import evaluate
from flowvid.lab.sanity import watchers
from flowvid.predict.classical import CLASSICAL
from flowvid.training.train import train

HELD_OUT_SEED = 10_000  # added to the seed: held-out scenes never repeat a training scene
TARGET = 1.0  # the held-out look's vessel EPE over the best classical method's, at most


def _corpus(root: Path, videos: int, cfg: SynthConfig, seed: int, split: str | None) -> Path:
    if not (root / "dataset.yaml").is_file():
        write_corpus(root, videos, cfg, seed=seed, force=True, split=split)
    return root


def _row(look: str, overall: dict) -> dict:
    best = min(CLASSICAL, key=lambda m: overall[m]["epe_vessel"])
    model = overall["flowvid"]
    ratio = model["epe_vessel"] / max(overall[best]["epe_vessel"], 1e-9)
    return {
        "look": look,
        **{f"{m}_epe_vessel": overall[m]["epe_vessel"] for m in ("flowvid", *CLASSICAL, "zero")},
        **{f"{m}_epe_outside": overall[m]["epe_outside"] for m in ("flowvid", *CLASSICAL)},
        "best_classical": best,
        "ratio_to_best_classical": ratio,
        "target_met": bool(ratio <= TARGET),
    }


def _score(
    held: str, model_path: Path, test_root: Path, base: Path, settings: list[str] | tuple[str, ...]
) -> None:
    """The fold's row.json: its model, with ``settings``, on the held-out look's clips."""
    model, ckpt = load_model(model_path)
    model, _ = with_settings(model, ckpt["model_kwargs"], model_settings(settings))
    report = evaluate(test_root, "test", model, baselines=True, out_dir=base / "eval")
    row = {**_row(held, report["overall"]), "settings": list(settings)}
    with atomic_output(base / "row.json") as tmp:
        tmp.write_text(json.dumps(row, indent=2))


def leave_one_look_out(
    out: str | Path,
    config: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    looks: tuple[str, ...] = LOOKS,
    train_videos: int = 50,
    test_videos: int = 8,
    frames: int = 120,
    size: int = 256,
    seed: int = 0,
    hold_out: tuple[str, ...] | None = None,
    settings: list[str] | tuple[str, ...] = (),
) -> list[dict]:
    """Run the folds that hold out each look of ``hold_out`` (default: every look of
    ``looks``), training on the other looks of ``looks``, each fold scored with the model
    ``settings`` (``model.KEY=VALUE``); write results.json and results.md to ``out`` with
    every fold finished so far, in the order of ``looks``, and return those rows."""
    out = Path(out)
    model_settings(settings)  # refused before any work
    if len(looks) < 2 or set(looks) - set(LOOKS):
        raise InputError(f"give at least two looks from {LOOKS}, not {looks}")
    hold_out = looks if hold_out is None else hold_out
    if not hold_out or set(hold_out) - set(looks):
        raise InputError(f"hold out one or more of the study's looks {looks}, not {hold_out}")
    claim_folder(out)  # a new folder, or one this study wrote: before any work
    for held in hold_out:
        base = out / f"without_{held}"
        if (base / "row.json").is_file():
            continue
        rest = tuple(name for name in looks if name != held)
        train_root = _corpus(
            base / "corpus",
            train_videos,
            SynthConfig(size=size, frames=frames, looks=rest),
            seed,
            None,
        )
        test_root = _corpus(
            out / "held_out" / held,
            test_videos,
            SynthConfig(size=size, frames=frames, looks=(held,)),
            seed + HELD_OUT_SEED,
            "test",
        )
        run = base / "run"
        if not (run / "model.pt").is_file():
            cfg = load_config(
                config, [*overrides, f"data.root={train_root}", f"train.run_dir={run}"]
            )
            train(cfg, callbacks=watchers(cfg.train.watch_motion))
        _score(held, run / "model.pt", test_root, base, settings)
    rows = [
        json.loads(path.read_text())
        for path in (out / f"without_{held}" / "row.json" for held in looks)
        if path.is_file()
    ]
    _write(out, rows)
    return rows


def render_markdown(rows: list[dict]) -> str:
    lines = [
        "| held-out look | flowvid vessel EPE | Farneback | DIS | best classical | zero "
        "| flowvid / best classical | flowvid outside EPE | Farneback outside | target met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = r["best_classical"]
        lines.append(
            f"| {r['look']} | {r['flowvid_epe_vessel']:.3f} | {r['farneback_epe_vessel']:.3f} | "
            f"{r['dis_medium_epe_vessel']:.3f} | {r[f'{best}_epe_vessel']:.3f} ({best}) | "
            f"{r['zero_epe_vessel']:.3f} | {r['ratio_to_best_classical']:.2f} | "
            f"{r['flowvid_epe_outside']:.3f} | {r['farneback_epe_outside']:.3f} | "
            f"{'yes' if r['target_met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _write(out: Path, rows: list[dict]) -> None:
    with atomic_output(out / "results.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2))
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(
            "Leave-one-look-out: trained without the look, scored zero-shot on it (px/frame). "
            f"Target: vessel EPE <= {TARGET}x the best classical method (Farneback or DIS, "
            "two-frame or averaged over 3 maps).\n\n" + render_markdown(rows)
        )

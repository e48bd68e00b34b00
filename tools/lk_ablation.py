"""Dense Lucas-Kanade refinement on or off, for trained models, on data they never saw.

    python tools/lk_ablation.py --out runs/lk_ablation \
        --checkpoint runs/cpu_motion/model.pt flowvid/weights/flow_lite0_lk.pt \
        --looks-root runs/looks_eval --lk as-trained iters=3,prior=0.25 iters=3,levels=2,prior=0.5

Every checkpoint runs with each ``--lk`` setting: ``as-trained`` (its own settings),
``iters=0`` (none), or other ``model.lk_*`` keys, e.g. ``iters=3,levels=2,prior=0.5`` or
``floor=0.1`` (its own settings, with the prior in the steps held to 0.1 px or wider).
A checkpoint trained without the refinement gets it with an untrained confidence (the
constant prior). Scores: the motion sanity suite (mean EPE over its cases, and over those at
<= 1 px/frame), and vessel / outside EPE on the test split of every dataset under
``--looks-root`` (held-out looks: ``flowvid synth --looks LOOK --split-all test``).
Writes OUT/results.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from flowvid.checkpoint import load_weights, read_checkpoint
from flowvid.cli import run
from flowvid.lab.evaluate import evaluate, motion_suite
from flowvid.models import create_model


def parse_lk(text: str) -> dict[str, float | int]:
    if text == "as-trained":
        return {}
    out: dict[str, float | int] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in ("iters", "levels", "prior", "sigma", "floor", "release"):
            raise SystemExit(
                f"--lk: unknown key {key!r} (iters, levels, prior, sigma, floor, release)"
            )
        out[f"lk_{key}"] = int(value) if key in ("iters", "levels") else float(value)
    return out


def build(path: str, lk: dict[str, float | int]):
    ckpt = read_checkpoint(path)
    kwargs = {**ckpt["model_kwargs"], "pretrained": "none", "weights": None, **lk}
    if not kwargs.get("lk_iters"):  # no steps: no trust in their evidence, and no expected
        kwargs.update(lk_trust=False, uncertainty=False)  # error (the steps are among its cues)
    model = create_model(**kwargs)
    state = ckpt["state_dict"]
    heads = ("refine.",)
    if model.refine is None:  # switched off: the confidence and the trust have nothing to weigh
        state = {k: v for k, v in state.items() if not k.startswith((*heads, "error_head."))}
    load_weights(model, state, path, new_modules=heads)
    return model.eval()


def _main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    looks = sorted(p.parent.name for p in Path(args.looks_root).glob("*/dataset.yaml"))
    rows = []
    for path in args.checkpoint:
        for setting in args.lk:
            tag = f"{Path(path).parent.name}_{Path(path).stem}_{setting.replace(',', '_')}"
            model = build(path, parse_lk(setting))
            motion_suite(model, out / tag / "suite", device=args.device)
            suite = json.loads((out / tag / "suite" / "motion_suite.json").read_text())["rows"]
            row = {
                "checkpoint": path,
                "lk": setting,
                "suite": float(np.mean([r["flowvid"]["epe"] for r in suite])),
                "suite_slow": float(
                    np.mean([r["flowvid"]["epe"] for r in suite if r["speed"] <= 1])
                ),
            }
            for look in looks:
                report = evaluate(
                    Path(args.looks_root) / look,
                    "test",
                    model,
                    out_dir=out / tag / look,
                    device=args.device,
                    progress=False,
                )["overall"]["flowvid"]
                row[look] = (report["epe_vessel"], report["epe_outside"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    head = "| checkpoint | lk | suite mean | suite <= 1 px/frame | " + " | ".join(
        f"{look} vessel / outside" for look in looks
    )
    lines = [head + " |", "|" + "---|" * (4 + len(looks))]
    for r in rows:
        cells = " | ".join(f"{r[k][0]:.3f} / {r[k][1]:.3f}" for k in looks)
        suite = f"{r['suite']:.3f} | {r['suite_slow']:.3f}"
        lines.append(f"| {r['checkpoint']} | {r['lk']} | {suite} | {cells} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", nargs="+", required=True)
    p.add_argument("--looks-root", required=True, help="folder of datasets, one per look")
    p.add_argument("--lk", nargs="+", default=["as-trained", "iters=3,prior=0.25"])
    p.add_argument("--device", default="auto")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    args.command = "lk_ablation"
    return run(_main, args)


if __name__ == "__main__":
    sys.exit(main())

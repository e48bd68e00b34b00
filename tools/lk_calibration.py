"""Is the confidence of a Lucas-Kanade model calibrated, and where do the steps help?

    python tools/lk_calibration.py --checkpoint runs/lk/ft3_B/model.pt \
        --looks-root runs/looks_eval --out runs/lk/calibration_B [--lk floor=0.1]

For the test clips of every dataset under ``--looks-root``, the model runs with its own
Lucas-Kanade settings and reports, inside and outside the vessels: the EPE of the network's
flow before the steps and after them; the prior width the model gives the steps (mean, px);
the width a calibrated model would give, RMS(error before the steps) / sqrt(2) (the width
at which the true flow is most likely under the Gaussian prior); and the rank correlation of
width and error over pixels (does it know *where* it is wrong?). For a model with a learned
trust in the frames (``model.lk_trust``), also the mean trust. Writes OUT/results.md and
OUT/results.json, with the EPE before and after the steps per clip (and its quality, where the
dataset records one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from flowvid.cli import run
from flowvid.data.dataset import load_dataset
from flowvid.io.flowfile import open_flow
from flowvid.io.masks import read_mask
from flowvid.io.video import open_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lk_ablation import build, parse_lk  # noqa: E402 - a sibling tool

REGIONS = ("vessel", "outside")


def clip_pixels(model, clip, frames: int, generator: np.random.Generator) -> dict:
    """Per-pixel error before and after the steps and the width, sampled per region."""
    if clip.mask is None:
        raise SystemExit(f"{clip.name}: no vessel mask; the regions need one")
    with open_video(clip.video) as reader:
        n = min(frames, reader.num_frames)
        rgb = reader.read(list(range(n)))
        h, w = reader.height, reader.width
    sequence = open_flow(clip.flow)
    flow = np.asarray(sequence[: n - 1], np.float32)  # (n-1, H, W, 2)
    mask = read_mask(clip.mask, len(sequence), h, w)
    mask = np.broadcast_to(mask[: n - 1] if mask.shape[0] > 1 else mask, (n - 1, h, w))
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2)[None].float() / 255.0
    aux: dict = {}
    with torch.no_grad():
        out = model(x, aux=aux)[0].permute(0, 2, 3, 1).numpy()
    start = aux["lk_start"][0].permute(0, 2, 3, 1).numpy()
    width = aux["lk_prior"][0, :, 0].numpy()
    trust = aux["lk_trust"][0, :, 0].numpy() if "lk_trust" in aux else np.full_like(width, np.nan)
    valid = np.isfinite(flow).all(-1)
    e0 = np.linalg.norm(start - flow, axis=-1)
    e1 = np.linalg.norm(out - flow, axis=-1)
    result = {"clip": {"name": clip.name, "quality": clip.meta.get("quality", "?")}}
    for region, where in zip(REGIONS, (mask & valid, ~mask & valid), strict=True):
        result["clip"][region] = (float(e0[where].mean()), float(e1[where].mean()))
        idx = np.flatnonzero(where)
        pick = generator.choice(idx, size=min(20_000, idx.size), replace=False)
        result[region] = {
            "e0": e0.ravel()[pick],
            "e1": e1.ravel()[pick],
            "width": width.ravel()[pick],
            "trust": trust.ravel()[pick],
        }
    return result


def summarise(samples: list[dict]) -> dict:
    out = {}
    for region in REGIONS:
        e0, e1, width, trust = (
            np.concatenate([s[region][k] for s in samples]) for k in ("e0", "e1", "width", "trust")
        )
        out[region] = {
            "epe_before": float(e0.mean()),
            "epe_after": float(e1.mean()),
            "width_mean": float(width.mean()),
            "width_calibrated": float(np.sqrt((e0**2).mean() / 2)),
            "rank_corr": float(spearmanr(width, e0).statistic) if width.std() > 0 else 0.0,
            "trust_mean": None if np.isnan(trust).all() else float(trust.mean()),
        }
    return out


def _main(args: argparse.Namespace) -> int:
    torch.set_grad_enabled(False)
    model = build(args.checkpoint, parse_lk(args.lk))
    if model.lk is None:
        raise SystemExit(f"{args.checkpoint} has no Lucas-Kanade steps (model.lk_iters=0)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, clips = {}, {}
    for root in sorted(Path(args.looks_root).glob("*/dataset.yaml")):
        dataset = load_dataset(root.parent)
        generator = np.random.default_rng(0)
        samples = [clip_pixels(model, c, args.frames, generator) for c in dataset.split(args.split)]
        rows[root.parent.name] = summarise(samples)
        clips[root.parent.name] = [s["clip"] for s in samples]
        print(root.parent.name, json.dumps(rows[root.parent.name]), flush=True)
    (out / "results.json").write_text(json.dumps({**rows, "clips": clips}, indent=2))
    lines = [
        f"`{args.checkpoint}`, first {args.frames} frames of each {args.split} clip",
        "",
        "| look | region | EPE before steps | after | width, mean px | calibrated width px "
        "| rank corr. width-error | trust, mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for look, regions in rows.items():
        for region, r in regions.items():
            lines.append(
                f"| {look} | {region} | {r['epe_before']:.3f} | {r['epe_after']:.3f} | "
                f"{r['width_mean']:.3f} | {r['width_calibrated']:.3f} | {r['rank_corr']:.2f} | "
                + ("-" if r["trust_mean"] is None else f"{r['trust_mean']:.2f}")
                + " |"
            )
    lines += [
        "",
        "| look | clip | quality | vessel: before -> after | outside: before -> after |",
        "|---|---|---|---|---|",
    ]
    for look, per_clip in clips.items():
        for c in per_clip:
            (v0, v1), (o0, o1) = c["vessel"], c["outside"]
            lines.append(
                f"| {look} | {c['name']} | {c['quality']} | {v0:.3f} -> {v1:.3f} "
                f"| {o0:.3f} -> {o1:.3f} |"
            )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--looks-root", required=True, help="folder of datasets, one per look")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=24, help="frames per clip (from the start)")
    p.add_argument(
        "--lk", default="as-trained", help="the steps' settings, as in lk_ablation.py --lk"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    args.command = "lk_calibration"
    return run(_main, args)


if __name__ == "__main__":
    sys.exit(main())

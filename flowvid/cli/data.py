"""``flowvid synth`` and ``flowvid validate``: datasets."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from flowvid.cli.common import EXIT_BAD_INPUT, HelpFormatter, positive
from flowvid.errors import InputError

VESSEL_ONLY = ("fps", "um_per_px", "speed", "max_px_per_frame", "quality", "looks")


SYNTH_RANGES = {"size": (16, 4096), "frames": (2, 100_000)}


def _synth_config(args: argparse.Namespace):  # noqa: ANN202 - SynthConfig | MotionConfig
    """The generator config from the options given; every default is the generator's own."""
    from flowvid.data.synth.motion import MotionConfig
    from flowvid.data.synth.synthetic import SynthConfig

    given = {k: v for k, v in vars(args).items() if v is not None}
    for key, (lo, hi) in SYNTH_RANGES.items():
        if key in given and not lo <= given[key] <= hi:
            flag = "--" + key.replace("_", "-")
            raise InputError(f"{flag} must be in {lo}..{hi}, not {given[key]}")
    for key in ("speed", "speed_px"):
        if key in given:
            lo, hi = given[key]
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                flag = "--" + key.replace("_", "-")
                raise InputError(f"{flag} LO HI needs 0 < LO <= HI, not {lo} {hi}")
    common = {k: given[k] for k in ("size", "frames") if k in given}
    if args.kind == "motion":
        wrong = [f"--{k.replace('_', '-')}" for k in VESSEL_ONLY if k in given]
        if wrong:
            raise InputError(f"{', '.join(wrong)} apply to --kind vessels only")
        if "speed_px" in given:
            common["speed_px"] = tuple(given["speed_px"])
        return MotionConfig(**common)
    if "speed_px" in given:
        raise InputError("--speed-px applies to --kind motion; vessels take --speed in um/s")
    extra = {k: given[k] for k in ("fps", "um_per_px", "max_px_per_frame", "quality") if k in given}
    if "speed" in given:
        extra["speed_um_s"] = tuple(given["speed"])
    if "looks" in given:
        from flowvid.data.synth.looks import LOOKS

        names = tuple(n.strip() for n in given["looks"].split(",") if n.strip())
        extra["looks"] = LOOKS if names == ("all",) else names
    return SynthConfig(**common, **extra)


def _cmd_synth(args: argparse.Namespace) -> int:
    from flowvid.analysis.viz import write_preview
    from flowvid.data.synth.corpus import clip_name, write_corpus

    try:
        cfg = _synth_config(args)
    except ValueError as err:
        raise InputError(str(err)) from None
    out = write_corpus(
        args.out,
        args.videos,
        cfg,
        seed=args.seed,
        workers=args.workers,
        force=args.force,
        split=args.split_all,
    )
    preview = write_preview(out, clip_name(0, args.kind))
    print(f"wrote {args.videos} {args.kind} clips to {out} (preview: {preview})")
    return 0


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        formatter_class=HelpFormatter,
        help="write a synthetic dataset (vessels, or generic motion)",
        description="Write procedural clips with exact flow in the dataset layout: bright-field "
        "vessel microscopy (--kind vessels), or layered textured objects moving on smooth "
        "trajectories (--kind motion; the mask marks matched, non-occluded pixels). Options "
        "left out take the generator's defaults (flowvid/data/synth/synthetic.py, motion.py).",
        epilog="example: flowvid synth --out demo_synth --videos 3 --frames 12 --size 96\n"
        "example: flowvid synth --kind motion --out motion --videos 200 --frames 24",
    )
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument(
        "--kind", default="vessels", choices=("vessels", "motion"), help="which generator"
    )
    p.add_argument("--videos", type=int, default=50, help="number of clips")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 120)")
    p.add_argument("--size", type=int, default=None, help="frame side, px (default 256)")
    p.add_argument("--seed", type=int, default=0, help="the corpus is the same for a seed")
    p.add_argument("--fps", type=positive, default=None, help="vessels: frame rate (default 100)")
    p.add_argument(
        "--um-per-px", type=positive, default=None, help="vessels: pixel size (default 0.8)"
    )
    p.add_argument(
        "--speed",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="vessels: mean centreline blood speed range, um/s (default 20 1600, log-uniform)",
    )
    p.add_argument("--max-px-per-frame", type=float, default=None, help="vessels: peak speed cap")
    p.add_argument("--quality", default=None, help="vessels: mixed, clean, good, fair or poor")
    p.add_argument(
        "--looks",
        default=None,
        help="vessels: comma-separated appearance families, one drawn per clip, or 'all' "
        "(the four training looks): brightfield (default), fluorescence, dark, tracers; and "
        "dic, held out of every training corpus (a look to fine-tune on)",
    )
    p.add_argument(
        "--speed-px",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="motion: per-layer speed range, px/frame (default 0.05 30, log-uniform)",
    )
    p.add_argument(
        "--split-all",
        default=None,
        choices=("train", "val", "test"),
        help="put every clip in this split (e.g. test: an evaluation set); default 80/10/10",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=_cmd_synth)


def _cmd_validate(args: argparse.Namespace) -> int:
    from flowvid.data.dataset import scan_dataset, validate_dataset

    if args.pairs < 1:
        raise InputError(f"--pairs must be at least 1, not {args.pairs}")
    problems = validate_dataset(args.dir)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_BAD_INPUT
    data, _ = scan_dataset(args.dir)
    if args.photometric and not _photometric(data.clips, args.pairs):
        return EXIT_BAD_INPUT
    counts = {s: len(data.split(s)) for s in ("train", "val", "test")}
    print(
        f"{args.dir}: OK, {len(data.clips)} clips "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())})"
    )
    return 0


def _photometric(clips: list, pairs: int) -> bool:
    """One line per clip: does its flow move its frames? False where a clip's is off."""
    from flowvid.data.gtcheck import FIXES, check_ground_truth

    print("clip: verdict | residual under the stated flow / under zero flow")
    suspects = []
    for clip in clips:
        r = check_ground_truth(clip, pairs)
        if r.suspect == "out of frame":
            verdict = f"the flow sends {r.leaving} of {r.leaving + r.pixels} moving px out of view"
        elif r.suspect:
            verdict = f"'{r.suspect}' fits the frames better"
        elif r.best is None:
            verdict = f"too little motion to tell ({r.pixels} moving px)"
        else:
            verdict = "ok"
        if r.suspect:
            suspects.append(f"  - {clip.flow}: {verdict} -> {FIXES[r.suspect]}")
        note = ""
        if r.still > 1:
            note = " (frames look still where the flow moves: a clear lumen, or wrong units?)"
        print(f"  {clip.name}: {verdict} | {r.still:.2f}{note}")
    if suspects:
        print(f"{len(suspects)} clip(s) whose flow does not move their frames:", file=sys.stderr)
        print("\n".join(suspects), file=sys.stderr)
    return not suspects


def add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        formatter_class=HelpFormatter,
        help="check a dataset folder and list every problem",
        description="Check a dataset folder (videos/, flow/, masks/, dataset.yaml) and list "
        "every problem at once: missing or extra files, frame counts and sizes that do not "
        "match their flow, non-finite values, bad masks and splits. Exit 0 when it is valid, "
        "2 when anything is wrong. --photometric also warps each frame by its flow to catch "
        "a negated, swapped, shifted or mis-scaled flow.",
        epilog="example: flowvid validate demo_synth\n"
        "example: flowvid validate my_dataset --photometric",
    )
    p.add_argument("dir", type=Path, help="dataset folder")
    p.add_argument(
        "--photometric",
        action="store_true",
        help="also warp frames by their flow: is it negated, u/v swapped, one pair off, in "
        "the wrong units? (decodes a few pairs per clip; flowvid/data/gtcheck.py)",
    )
    p.add_argument(
        "--pairs", type=int, default=8, help="--photometric: frame pairs per clip (default 8)"
    )
    p.set_defaults(func=_cmd_validate)

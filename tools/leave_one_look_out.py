"""Leave-one-look-out study of the vessel stage (see flowvid/lab/look_study.py).

    python tools/leave_one_look_out.py --out runs/lolo \
        --config configs/curriculum/2_vessels.yaml \
        --set train.init_from=runs/curriculum/1_motion/model.pt --set train.max_steps=3000 \
        --score-set model.temporal_mean=3

Writes OUT/results.md and OUT/results.json; an interrupted study resumes where it stopped.
Folds can run side by side, one per process: `--hold-out dark` in one, `--hold-out tracers`
in another, and so on, all with the same --out.
"""

from __future__ import annotations

import argparse
import sys

from flowvid.cli import run
from flowvid.data.synth.looks import LOOKS
from flowvid.lab.look_study import leave_one_look_out, render_markdown


def _main(args: argparse.Namespace) -> int:
    rows = leave_one_look_out(
        args.out,
        args.config,
        args.set,
        tuple(args.looks.split(",")),
        args.train_videos,
        args.test_videos,
        args.frames,
        args.size,
        args.seed,
        tuple(args.hold_out.split(",")) if args.hold_out else None,
        args.score_set,
    )
    print(render_markdown(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="configs/curriculum/2_vessels.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--score-set",
        action="append",
        default=[],
        metavar="model.KEY=VALUE",
        help="a setting without weights of its own that each fold is scored with, as a model "
        "ships with it (the mean over maps, the steps' window)",
    )
    p.add_argument("--looks", default=",".join(LOOKS), help="comma-separated, at least two")
    p.add_argument(
        "--hold-out",
        help="comma-separated: run only the folds that hold out these looks (default: all); "
        "processes sharing --out can take a fold each",
    )
    p.add_argument("--train-videos", type=int, default=50)
    p.add_argument("--test-videos", type=int, default=8)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    args.command = "leave_one_look_out"
    return run(_main, args)


if __name__ == "__main__":
    sys.exit(main())

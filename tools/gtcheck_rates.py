"""How often does ``flowvid validate --photometric`` catch a known mistake, and how often does
it cry wolf? Every clip's flow is corrupted in each known way (in a temporary copy of the
dataset) and checked; the untouched flow is checked too.

    python tools/gtcheck_rates.py runs/looks_eval/brightfield runs/looks_eval/tracers

Prints one markdown row per dataset: clips flagged out of all, per corruption (the right
verdict, and any verdict), and for the untouched flow (any verdict is a false alarm).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from flowvid.cli import run
from flowvid.data.dataset import load_dataset
from flowvid.data.gtcheck import check_ground_truth
from flowvid.io.flowfile import read_flow

CORRUPTIONS = {  # name -> (transform of a (T-1, H, W, 2) flow, the verdict it should get)
    "negated": (lambda f: -f, "negated"),
    "u, v swapped": (lambda f: f[..., ::-1], "u, v swapped"),
    "one pair late": (lambda f: np.roll(f, 1, 0), "one pair late"),
    "one pair early": (lambda f: np.roll(f, -1, 0), "one pair early"),
    "um/s at 100 fps, 0.8 um/px": (lambda f: 80.0 * f, "out of frame"),
}


def rates(root: Path, pairs: int) -> dict[str, tuple[int, int]]:
    """{corruption: (clips with the right verdict, clips with any verdict)}, plus 'none'."""
    clips = load_dataset(root).clips
    out = {"none": (0, sum(check_ground_truth(c, pairs).suspect is not None for c in clips))}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / root.name
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns("eval*"))
        for name, (transform, verdict) in CORRUPTIONS.items():
            right = flagged = 0
            for clip in load_dataset(copy, check=False).clips:
                original = read_flow(root / "flow" / clip.flow.name)
                np.save(clip.flow, np.ascontiguousarray(transform(original), np.float32))
                suspect = check_ground_truth(clip, pairs).suspect
                right += suspect == verdict
                flagged += suspect is not None
                np.save(clip.flow, original)
            out[name] = (right, flagged)
    return out


def _main(args: argparse.Namespace) -> int:
    names = ["none", *CORRUPTIONS]
    print("| dataset | clips | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for root in map(Path, args.data):
        r = rates(root, args.pairs)
        n = len(load_dataset(root).clips)
        cells = [f"{r['none'][1]} false"] + [f"{r[k][0]} ({r[k][1]})" for k in CORRUPTIONS]
        print(f"| {root} | {n} | " + " | ".join(cells) + " |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data", nargs="+", help="dataset folders")
    p.add_argument("--pairs", type=int, default=8, help="frame pairs per clip")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    args.command = "gtcheck_rates"
    return run(_main, args)


if __name__ == "__main__":
    sys.exit(main())

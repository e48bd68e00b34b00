"""Rendering speed of the on-the-fly training sources, one CPU thread.

python tools/bench_render.py [--source motion] [--size 192] [--frames 6] [--clips 24]
"""

from __future__ import annotations

import argparse
import time

import torch

from flowvid.data.rendered import generator_config, render_sample


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", default="motion", choices=("motion", "vessels"))
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--clips", type=int, default=24)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = generator_config(args.source, args.size, args.frames, {})
    render_sample(cfg, [0, 0])  # warm-up: imports, photograph cache
    start = time.perf_counter()
    for i in range(args.clips):
        render_sample(cfg, [7, i])
    per_clip = (time.perf_counter() - start) / args.clips
    print(
        f"{args.source} {args.size}px x{args.frames}: {1000 * per_clip:.0f} ms/clip, "
        f"{1 / per_clip:.2f} clips/s per core"
    )


if __name__ == "__main__":
    main()

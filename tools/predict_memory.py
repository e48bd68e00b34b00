"""Peak memory of `flowvid predict` on a short and a 10x longer clip (constant-memory check).

python tools/predict_memory.py --checkpoint model.pt --frames 300 3000 20000 --size 64

Also checks that the flow written has exactly one map per pair of frames.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flowvid.io.video import VideoWriter


def make_clip(path: Path, frames: int, size: int) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((size * 2, size * 2, 3)) * 255).astype(np.uint8)
    with VideoWriter(path, fps=100) as writer:
        for t in range(frames):
            y = t % size
            writer.write(base[y : y + size, :size])


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory of one child process, MB (ru_maxrss of a fresh helper)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip()) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    print("| frames | size | peak RSS MB | flow maps written | seconds (with start-up) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            clip = Path(tmp) / f"clip{n}.mp4"
            make_clip(clip, n, args.size)
            cmd = [
                sys.executable,
                "-m",
                "flowvid.cli",
                "predict",
                str(clip),
                "--out",
                str(Path(tmp) / f"f{n}.npy"),
            ]
            if args.checkpoint:
                cmd += ["--checkpoint", args.checkpoint]
            start = time.perf_counter()
            peak = peak_rss_mb(cmd)
            seconds = time.perf_counter() - start
            maps = np.load(Path(tmp) / f"f{n}.npy", mmap_mode="r").shape[0]
            exact = "exact" if maps == n - 1 else f"WRONG (expected {n - 1})"
            print(
                f"| {n} | {args.size}x{args.size} | {peak:.0f} | {maps} ({exact}) | "
                f"{seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

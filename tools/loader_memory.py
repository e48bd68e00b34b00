"""Memory of the training data pipeline over many epochs: does RSS grow?

    python tools/loader_memory.py --clips 50 --epochs 10 --workers 2

Writes a synthetic corpus of ``--clips`` clips, then iterates the training loader of
:class:`~flowvid.data.datamodule.ClipDataModule` (``--workers`` processes) for ``--epochs``
epochs, printing after each epoch the resident memory of the main process and of the main
process plus its workers, in MB, split into anonymous memory (what a leak grows) and
file-backed pages (memory-mapped flow files, decoders' libraries: the kernel can drop them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int, kind: str = "VmRSS") -> float:
    """Resident memory of a process, MB: all of it (VmRSS), or its anonymous part (RssAnon:
    what a leak grows) or its file-backed part (RssFile: pages of memory-mapped files and
    libraries, which the kernel can drop)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(kind + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


KINDS = ("VmRSS", "RssAnon", "RssFile")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200, help="clips per epoch")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from flowvid.data.datamodule import ClipDataModule
    from flowvid.data.synth.corpus import write_corpus
    from flowvid.data.synth.synthetic import SynthConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = write_corpus(
            Path(tmp) / "data", args.clips, SynthConfig(size=args.size, frames=args.frames)
        )
        dm = ClipDataModule(
            root,
            clip_len=8,
            crop=64,
            batch_size=8,
            workers=args.workers,
            samples_per_epoch=args.samples,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        me = os.getpid()
        print(
            "| epoch | batches | seconds | main RSS MB | all RSS MB | all anonymous MB | "
            "all file-backed MB |"
        )
        print("|---|---|---|---|---|---|---|")
        for epoch in range(args.epochs):
            start, batches = time.perf_counter(), 0
            for _ in loader:
                batches += 1
            pids = [me, *children(me)]
            total, anon, files = (sum(rss_mb(p, k) for p in pids) for k in KINDS)
            print(
                f"| {epoch} | {batches} | {time.perf_counter() - start:.1f} | "
                f"{rss_mb(me):.0f} | {total:.0f} | {anon:.0f} | {files:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

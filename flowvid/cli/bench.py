"""``flowvid bench``: one table of speed and memory figures from one run on this machine."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from flowvid.cli.common import HelpFormatter
from flowvid.errors import InputError

QUICK = dict(
    sizes=(48,),
    frames=12,
    memory_frames=(20, 40),
    memory_size=32,
    classical_pairs=4,
    raft_batch=1,
    train_batches=1,
    train_steps=1,
)


def _cmd_bench(args: argparse.Namespace) -> int:
    from flowvid.config import load_config
    from flowvid.io.atomic import atomic_output
    from flowvid.lab.bench import SuiteOptions, machine, markdown, run_suite
    from flowvid.predict.stream import resolve_device

    if any(s < 32 for s in args.sizes) or args.frames < 8:
        raise InputError("--sizes must be at least 32 px and --frames at least 8")
    device = resolve_device(args.device)
    cfg = load_config(args.config, args.set)
    if args.quick:
        options = SuiteOptions(**QUICK)
        cfg.data.crop, cfg.data.clip_len, cfg.data.batch_size, cfg.data.workers = 32, 3, 1, 0
    else:
        options = SuiteOptions(
            sizes=tuple(args.sizes),
            frames=args.frames,
            memory_frames=tuple(args.memory_frames),
            memory_size=args.memory_size,
        )
    rows = run_suite(device, options, cfg, log=lambda line: print(line, file=sys.stderr))
    if args.quick:
        command = f"flowvid bench --quick --device {args.device}"
    else:
        command = (
            f"flowvid bench --device {args.device} --sizes {' '.join(map(str, args.sizes))} "
            f"--frames {args.frames} --memory-frames {' '.join(map(str, args.memory_frames))} "
            f"--memory-size {args.memory_size}"
            + (f" --config {args.config}" if args.config else "")
            + "".join(f" --set {shlex.quote(s)}" for s in args.set)
        )
    table = markdown(rows, machine(), command, datetime.date.today().isoformat())
    print(table)
    if args.out is not None:
        with atomic_output(args.out) as tmp:
            tmp.write_text(table)
        print(f"wrote {args.out}")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        formatter_class=HelpFormatter,
        help="speed and memory figures on this machine, as one Markdown table",
        description="Measure, on this machine and in one run: PyAV decoding alone; the default "
        "model alone and `flowvid predict` end to end at each size; OpenCV Farneback and DIS "
        "on the same frames; torchvision RAFT small and large (random weights, speed only) on "
        "the same device; peak memory of predict on a short and a 10x longer video; the "
        "training data pipeline alone against the training step alone. Clips are generated. "
        "Rates are after a warm-up; model load is its own row. The table goes to stdout (and "
        "--out), progress to stderr.",
        epilog="example: flowvid bench --out bench.md    (about 10 minutes on 2 CPU cores)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the table here (.md)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="frame sides, px")
    p.add_argument("--frames", type=int, default=200, help="frames of each timed clip")
    p.add_argument("--memory-frames", type=int, nargs=2, default=[300, 3000], help="two lengths")
    p.add_argument("--memory-size", type=int, default=64, help="frame side of the memory clips")
    p.add_argument(
        "--config", type=Path, default=None, help="training config for the training rows"
    )
    p.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs")
    p.set_defaults(func=_cmd_bench)

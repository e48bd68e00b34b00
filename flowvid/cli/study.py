"""``flowvid study``: the transfer study (does ImageNet pretraining help, and how?)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowvid.cli.common import HelpFormatter


def _cmd_study(args: argparse.Namespace) -> int:
    from flowvid.lab.study import load_study, render_table, run_study, write_report

    study = load_study(args.study, mode=args.mode)
    result = run_study(args.out, study, progress=not args.quiet)
    command = f"flowvid study {args.study} --out {args.out}" + (
        f" --{args.mode}" if args.mode else ""
    )
    report = write_report(Path(args.out), result, command)
    print(render_table(result))
    print(
        f"wrote {report}, {Path(args.out) / 'val_curves.png'} and {Path(args.out) / 'results.json'}"
    )
    return 0


def add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        formatter_class=HelpFormatter,
        help="transfer study: ImageNet fine-tuned, frozen, scratch, curriculum, RAFT-small",
        description="Train every arm of the study on a vessel look held out of all pretraining "
        "(standing in for your own clips) at several training-set sizes and seeds, score each "
        "on the same test clips beside zero flow, Farneback and DIS, and write a table, the "
        "validation curves and results.json. A finished run is never redone: run the same "
        "command again to resume, or copy results.json into a new --out to go on elsewhere. "
        "--cpu and --small use the study file's cpu: and small: "
        "sections (sizes for 2 CPU cores).",
        epilog="example: flowvid study configs/experiments/transfer.yaml --out runs/transfer_cpu "
        "--cpu",
    )
    p.add_argument(
        "study", type=Path, help="study file (YAML), e.g. configs/experiments/transfer.yaml"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for corpora, runs and results")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--cpu",
        dest="mode",
        action="store_const",
        const="cpu",
        help="the CPU mode: a look the shipped model never saw, 128 px, clips of 8, 2 seeds "
        "(several hours on 2 cores; resumable)",
    )
    mode.add_argument(
        "--small",
        dest="mode",
        action="store_const",
        const="small",
        help="the small mode (CPU, about an hour; tiny clips, a smoke test of the arms)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars while scoring")
    p.set_defaults(func=_cmd_study)

"""``flowvid study``: the transfer study (does ImageNet pretraining help, and how?)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowvid.cli.common import HelpFormatter


def _cmd_study(args: argparse.Namespace) -> int:
    from flowvid.study import load_study, render_table, run_study, write_report

    study = load_study(args.study, small=args.small)
    result = run_study(args.out, study, progress=not args.quiet)
    command = f"flowvid study {args.study} --out {args.out}" + (" --small" if args.small else "")
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
        "command again to resume. --small uses the study file's small: section (CPU sizes).",
        epilog="example: flowvid study configs/experiments/transfer.yaml --out runs/transfer "
        "--small",
    )
    p.add_argument(
        "study", type=Path, help="study file (YAML), e.g. configs/experiments/transfer.yaml"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for corpora, runs and results")
    p.add_argument("--small", action="store_true", help="the small mode (CPU, about an hour)")
    p.add_argument("--quiet", action="store_true", help="no progress bars while scoring")
    p.set_defaults(func=_cmd_study)

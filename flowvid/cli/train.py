"""``flowvid train`` and ``flowvid eval``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowvid.cli.common import HelpFormatter, add_overwrite, add_precision
from flowvid.errors import InputError


def _cmd_train(args: argparse.Namespace) -> int:
    from flowvid.config import FINETUNE, load_config
    from flowvid.lab.sanity import watchers
    from flowvid.training.module import TrainingDiverged
    from flowvid.training.train import train

    overrides = list(args.set)
    for key, value in (
        ("train.devices", args.devices),
        ("train.strategy", args.strategy),
        ("data.root", args.data),
        ("train.run_dir", args.run_dir),
        ("train.init_from", args.init_from),
        ("train.resume", args.resume),
        ("train.max_minutes", args.minutes),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.config is None:  # the default job: the shipped model, fine-tuned on your clips
        overrides = [*FINETUNE, *overrides]
    cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if cfg.train.init_from:
        print(f"starting from {cfg.train.init_from}")
    try:
        run_dir = train(cfg, overwrite=args.overwrite, callbacks=watchers(cfg.train.watch_motion))
    except TrainingDiverged as err:
        print(f"flowvid train: {err}", file=sys.stderr)
        return 1
    if run_dir is None:  # another DDP rank
        return 0
    print(f"trained: {run_dir} (model: {run_dir / 'model.pt'}, logs: {run_dir / 'logs'})")
    if args.config is None and cfg.data.source == "folder":  # the default job: does it pay?
        _compare_on_test(cfg.data.root, run_dir)
    return 0


def _compare_on_test(data: str, run_dir: Path) -> None:
    """The trained model beside the classical methods on the dataset's test clips, written
    to the run folder (eval --baselines), and its one-line verdict."""
    from flowvid.checkpoint import load_model
    from flowvid.data.dataset import load_dataset
    from flowvid.lab.evaluate import evaluate
    from flowvid.predict.classical import CLASSICAL

    if not load_dataset(data).split("test"):
        print("no test clips: no comparison on the test split")
        return
    model, _ = load_model(run_dir / "model.pt")
    report = evaluate(data, "test", model, baselines=True, out_dir=run_dir / "test_eval")
    vessel = {name: row["epe_vessel"] for name, row in report["overall"].items()}
    best = min(CLASSICAL, key=vessel.get)
    clips = report["per_clip"].values()  # pooled EPE weighs fast clips most: count them too
    won = sum(c["flowvid"]["epe_vessel"] < c[best]["epe_vessel"] for c in clips)
    read = {name: row["speed_ratio_vessel"] for name, row in report["overall"].items()}
    print(
        f"test split: vessel EPE {vessel['flowvid']:.3f} px/frame, best classical ({best}) "
        f"{vessel[best]:.3f}: {vessel['flowvid'] / vessel[best]:.2f}x; better on {won} of "
        f"{len(clips)} clips; speed read {read['flowvid']:.2f} of true ({best} "
        f"{read[best]:.2f}) (report: {run_dir / 'test_eval' / 'report.md'})"
    )


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        formatter_class=HelpFormatter,
        help="train a model (Lightning; GPU when there is one)",
        description="Train a model on a dataset folder (or clips rendered on the fly) and "
        "write a run folder: config.yaml, checkpoints/ (best by validation score, and last, "
        "to resume from), logs/ (CSV; TensorBoard when installed) and model.pt, the best "
        "weights in flowvid's own format for predict/eval. Without --config it fine-tunes the "
        "shipped model on --data's clips (a recipe sized for a CPU); each validation prints "
        "the model's vessel EPE beside the best classical method's on the same clips. "
        "Settings come from --config, then each --set key=value (--print-config shows every "
        "key); --init-from takes the architecture of the checkpoint it names.",
        epilog="example: flowvid train --data my_dataset --minutes 60 (or: --config "
        "configs/flow_lite0.yaml --set train.max_steps=5000)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config (default: fine-tune the shipped model, flowvid.config.FINETUNE)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set data.batch_size=4 (repeatable)",
    )
    p.add_argument("--data", default=None, help="dataset folder (data.root)")
    p.add_argument("--run-dir", default=None, help="where logs and checkpoints go (train.run_dir)")
    p.add_argument("--init-from", default=None, help="start from a flowvid checkpoint's weights")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="stop after this long and save the model (train.max_minutes); the learning rate "
        "comes down by the clock as well as by the steps",
    )
    p.add_argument("--devices", default=None, help="e.g. 4 GPUs (train.devices)")
    p.add_argument("--strategy", default=None, help="e.g. ddp (train.strategy)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        help="resume an interrupted run (default: its last.ckpt)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (every key, after --config, --set and the other "
        "options) as YAML and exit",
    )
    add_overwrite(p)
    p.set_defaults(func=_cmd_train)


def _cmd_eval(args: argparse.Namespace) -> int:
    from flowvid.checkpoint import load_model
    from flowvid.lab.evaluate import evaluate, motion_suite

    model = None if args.baselines_only else load_model(args.checkpoint)[0]
    if model is not None and model.task != "flow":
        raise InputError(
            "eval scores flow, and this checkpoint predicts future frames; "
            "pass a flow checkpoint (or --baselines-only)"
        )
    if args.suite == "motion":
        md = motion_suite(
            model, args.out, device=args.device, size=args.size, overwrite=args.overwrite
        )
        print(md)
        print(f"report: {args.out / 'motion_suite.md'}")
        return 0
    if args.data is None:
        raise InputError("eval needs --data DIR (a dataset), or --suite motion")
    report = evaluate(
        args.data,
        args.split,
        model,
        baselines=args.baselines or args.baselines_only,
        out_dir=args.out,
        device=args.device,
        batch_frames=args.batch_frames,
        max_side=args.max_side,
        precision=args.precision,
        overwrite=args.overwrite,
    )
    for name, m in report["overall"].items():
        print(
            f"{name:>13}: vessel EPE {m['epe_vessel']:.3f} px/frame, "
            f"outside {m['epe_outside']:.3f}, speed read {m['speed_ratio_vessel']:.2f} of true, "
            f"{m['ms_per_frame']:.1f} ms/frame"
        )
    print(f"report: {args.out / 'report.md'}")
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        formatter_class=HelpFormatter,
        help="score a model (and classical baselines) against ground truth",
        description="Score a model on a dataset split against its ground truth: EPE in the "
        "vessels and outside, accuracy at 1 and 3 px, by speed; with --baselines beside zero "
        "flow, Farneback and DIS (two-frame and averaged over 3 maps); with a model that "
        "states its expected error, its calibration (sparsification curves, AUSE). "
        "--suite motion scores known motion on textures no model trained on.",
        epilog="example: flowvid eval --data my_dataset --split test --baselines\n"
        "example: flowvid eval --suite motion --out suite   (known motion, no dataset needed)",
    )
    p.add_argument("--data", type=Path, default=None, help="dataset folder")
    p.add_argument(
        "--suite",
        default=None,
        choices=("motion",),
        help="instead of a dataset: the motion sanity suite (translation 0.1-20 px/frame, "
        "drift, rotation, zoom, static) on unseen textures, beside Farneback and DIS",
    )
    p.add_argument("--size", type=int, default=128, help="--suite: frame side, px")
    p.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="clips to score"
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--baselines", action="store_true", help="also zero flow, Farneback, DIS")
    p.add_argument("--baselines-only", action="store_true", help="no model, only the baselines")
    p.add_argument("--out", type=Path, default=Path("eval_report"), help="report folder")
    add_overwrite(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-frames", type=int, default=16, help="frames per encoder batch")
    p.add_argument("--max-side", type=int, default=None, help="run the model at most this size")
    add_precision(p)
    p.set_defaults(func=_cmd_eval)

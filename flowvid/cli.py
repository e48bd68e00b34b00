"""The ``flowvid`` command line: parse arguments, call library functions, map errors to exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flowvid import __version__
from flowvid.errors import InputError

EXIT_BAD_INPUT = 2


VESSEL_ONLY = ("fps", "um_per_px", "speed", "max_px_per_frame", "quality", "looks")


def _synth_config(args: argparse.Namespace):  # noqa: ANN202 - SynthConfig | MotionConfig
    """The generator config from the options given; every default is the generator's own."""
    from flowvid.data.motion import MotionConfig
    from flowvid.data.synthetic import SynthConfig

    given = {k: v for k, v in vars(args).items() if v is not None}
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
        from flowvid.data.looks import LOOKS

        names = tuple(n.strip() for n in given["looks"].split(",") if n.strip())
        extra["looks"] = LOOKS if names == ("all",) else names
    return SynthConfig(**common, **extra)


def _cmd_synth(args: argparse.Namespace) -> int:
    from flowvid.data.corpus import clip_name, write_corpus
    from flowvid.viz import write_preview

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


def _cmd_validate(args: argparse.Namespace) -> int:
    from flowvid.data.dataset import scan_dataset, validate_dataset

    problems = validate_dataset(args.dir)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_BAD_INPUT
    data, _ = scan_dataset(args.dir)
    counts = {s: len(data.split(s)) for s in ("train", "val", "test")}
    print(
        f"{args.dir}: OK, {len(data.clips)} clips "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())})"
    )
    return 0


def _cmd_overlay(args: argparse.Namespace) -> int:
    from flowvid.overlay import write_overlay

    out = write_overlay(
        args.video,
        args.flow,
        args.out,
        style=args.style,
        um_per_px=args.um_per_px,
        fps=args.fps,
        max_speed=args.max_speed,
        gt_path=args.gt,
    )
    print(f"wrote {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from flowvid.config import load_config
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
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides)
    try:
        run_dir = train(cfg)
    except TrainingDiverged as err:
        print(f"flowvid train: {err}", file=sys.stderr)
        return 1
    if run_dir is not None:  # the main process
        print(f"trained: {run_dir} (model: {run_dir / 'model.pt'}, logs: {run_dir / 'logs'})")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (Lightning; GPU when there is one)",
        epilog="example: flowvid train --config configs/flow_lite0.yaml --set train.max_steps=5000",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: built-in defaults)"
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
    p.add_argument("--devices", default=None, help="e.g. 4 GPUs (train.devices)")
    p.add_argument("--strategy", default=None, help="e.g. ddp (train.strategy)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        help="resume an interrupted run (default: its last.ckpt)",
    )
    p.set_defaults(func=_cmd_train)


def _provenance(checkpoint: Path | None, ckpt: dict) -> dict:
    from flowvid.checkpoint import DEFAULT_CHECKPOINT, file_hash

    path = checkpoint or DEFAULT_CHECKPOINT
    kwargs = ckpt.get("model_kwargs", {})
    model = {k: kwargs.get(k) for k in ("encoder", "core", "task", "hidden")}
    return {"checkpoint": str(path), "checkpoint_sha256": file_hash(path), "model": model}


def _cmd_predict(args: argparse.Namespace) -> int:
    from flowvid.checkpoint import load_model
    from flowvid.inference import predict_flow, predict_frames

    model, ckpt = load_model(args.checkpoint)
    common = dict(
        frames=args.frames,
        device=args.device,
        batch_frames=args.batch_frames,
        max_side=args.max_side,
        provenance=_provenance(args.checkpoint, ckpt),
    )
    if args.task and args.task != model.task:
        raise InputError(
            f"--task {args.task} needs a {args.task} checkpoint; this one predicts {model.task}"
        )
    if model.task == "frames":
        out = predict_frames(model, args.video, args.out, **common)
        print(f"wrote predicted frames {out.shape} to {out.path}")
        return 0
    pred = predict_flow(
        model,
        args.video,
        args.out,
        units=args.units,
        um_per_px=args.um_per_px,
        fps=args.fps,
        pair_format=args.pair_format,
        mask=args.mask,
        **common,
    )
    print(
        f"wrote flow {pred.shape} ({pred.units}) to {pred.path}; "
        f"mean speed {pred.mean_speed:.3f} px/frame"
    )
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict flow (or future frames) for a video",
        epilog="example: flowvid predict clip.mp4 --out flow.npy --um-per-px 0.8 --fps 100",
    )
    p.add_argument("video", type=Path, help=".mp4/.avi/.mov, a .tif stack or a folder of frames")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="flow.npy (memory-mapped), flow.npz, or a folder for per-pair .flo/.png",
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument(
        "--task", default=None, choices=("flow", "frames"), help="default: the checkpoint's"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--frames", default=None, metavar="A:B", help="only frames A..B-1")
    p.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="vessel mask, .png or .npy, (H, W) or (T-1, H, W): flow outside it is written as 0",
    )
    p.add_argument("--batch-frames", type=int, default=16, help="frames per encoder batch")
    p.add_argument("--max-side", type=int, default=None, help="run the model at most this size")
    p.add_argument("--units", default="px/frame", choices=("px/frame", "um/s"))
    p.add_argument("--um-per-px", type=float, default=None)
    p.add_argument("--fps", type=float, default=None, help="default: the video's own rate")
    p.add_argument(
        "--pair-format", default="flo", choices=("flo", "png"), help="for a folder --out"
    )
    p.set_defaults(func=_cmd_predict)


def _cmd_embed(args: argparse.Namespace) -> int:
    from flowvid.checkpoint import load_model
    from flowvid.inference import embed_video

    model, ckpt = load_model(args.checkpoint)
    out = embed_video(
        model,
        args.video,
        args.out,
        pooled=args.pooled,
        device=args.device,
        batch_frames=args.batch_frames,
        provenance=_provenance(args.checkpoint, ckpt),
    )
    print(f"wrote embeddings {out.shape} to {out.path}")
    return 0


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="write the learned per-frame representation",
        epilog="example: flowvid embed clip.mp4 --out feats.npy --pooled",
    )
    p.add_argument("video", type=Path)
    p.add_argument("--out", required=True, type=Path, help=".npy, float16")
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument(
        "--pooled", action="store_true", help="one vector per frame (else a stride-8 map)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-frames", type=int, default=16)
    p.set_defaults(func=_cmd_embed)


def _cmd_eval(args: argparse.Namespace) -> int:
    from flowvid.checkpoint import load_model
    from flowvid.evaluate import evaluate, motion_suite

    model = None if args.baselines_only else load_model(args.checkpoint)[0]
    if model is not None and model.task != "flow":
        raise InputError(
            "eval scores flow, and this checkpoint predicts future frames; "
            "pass a flow checkpoint (or --baselines-only)"
        )
    if args.suite == "motion":
        md = motion_suite(model, args.out, device=args.device, size=args.size)
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
    )
    for name, m in report["overall"].items():
        print(
            f"{name:>12}: vessel EPE {m['epe_vessel']:.3f} px/frame, "
            f"outside {m['epe_outside']:.3f}, {m['ms_per_frame']:.1f} ms/frame"
        )
    print(f"report: {args.out / 'report.md'}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score a model (and classical baselines) against ground truth",
        epilog="example: flowvid eval --data my_dataset --split test --baselines\n"
        "example: flowvid eval --suite motion --out suite   (known motion, no dataset needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--baselines", action="store_true", help="also zero flow, Farneback, DIS")
    p.add_argument("--baselines-only", action="store_true", help="no model, only the baselines")
    p.add_argument("--out", type=Path, default=Path("eval_report"))
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-frames", type=int, default=16)
    p.add_argument("--max-side", type=int, default=None)
    p.set_defaults(func=_cmd_eval)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic dataset (vessels, or generic motion)",
        description="Write procedural clips with exact flow in the dataset layout: bright-field "
        "vessel microscopy (--kind vessels), or layered textured objects moving on smooth "
        "trajectories (--kind motion; the mask marks matched, non-occluded pixels). Options "
        "left out take the generator's defaults (flowvid/data/synthetic.py, motion.py).",
        epilog="example: flowvid synth --out demo_synth --videos 3 --frames 12 --size 96\n"
        "example: flowvid synth --kind motion --out motion --videos 200 --frames 24",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--kind", default="vessels", choices=("vessels", "motion"))
    p.add_argument("--videos", type=int, default=50)
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 120)")
    p.add_argument("--size", type=int, default=None, help="frame side, px (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=None, help="vessels: frame rate (default 100)")
    p.add_argument(
        "--um-per-px", type=float, default=None, help="vessels: pixel size (default 0.8)"
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
        help="vessels: comma-separated appearance families, one drawn per clip, or 'all': "
        "brightfield (default), fluorescence, dark, tracers",
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


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a dataset folder and list every problem",
        epilog="example: flowvid validate demo_synth",
    )
    p.add_argument("dir", type=Path)
    p.set_defaults(func=_cmd_validate)


def _add_overlay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "overlay",
        help="draw flow over a video",
        epilog="example: flowvid overlay clip.mp4 flow.npy --out overlay.mp4 --style both",
    )
    p.add_argument("video", type=Path)
    p.add_argument("flow", type=Path, help="(T-1,H,W,2) flow: .npy, .npz, or a folder of .flo/.png")
    p.add_argument("--out", required=True, type=Path, help=".mp4, .gif, or a folder for PNGs")
    p.add_argument("--style", default="color", choices=("color", "arrows", "both"))
    p.add_argument(
        "--gt",
        type=Path,
        default=None,
        help="ground-truth flow: adds panels video | predicted | truth | error, with EPE",
    )
    p.add_argument("--max-speed", type=float, default=None, help="px/frame at full colour")
    p.add_argument("--um-per-px", type=float, default=None, help="label the scale in um/s")
    p.add_argument("--fps", type=float, default=None)
    p.set_defaults(func=_cmd_overlay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowvid", description="Learn blood flow from microscope video."
    )
    parser.add_argument("--version", action="version", version=f"flowvid {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_synth,
        _add_validate,
        _add_train,
        _add_predict,
        _add_overlay,
        _add_eval,
        _add_embed,
    ):
        add(sub)
    return parser


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call a subcommand; bad input becomes one message and exit code 2."""
    try:
        return func(args)
    except InputError as err:
        if args.debug:
            raise
        print(f"flowvid {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())

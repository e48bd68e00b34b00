"""``flowvid predict``, ``flowvid embed`` and ``flowvid overlay``: using a model on videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowvid.cli.common import HelpFormatter, add_overwrite, add_precision, positive
from flowvid.errors import InputError


def _cmd_predict(args: argparse.Namespace) -> int:
    from flowvid.checkpoint import load_model
    from flowvid.predict.inference import predict_flow, predict_frames

    if args.method == "model":
        model, _ = load_model(args.checkpoint)
    else:
        from flowvid.predict.classical import ClassicalFlow

        if args.checkpoint is not None:
            raise InputError(f"--method {args.method} uses no checkpoint: drop --checkpoint")
        if args.uncertainty is not None:
            raise InputError(
                f"--method {args.method} states no expected error: --uncertainty needs the model"
            )
        model = ClassicalFlow(args.method)
    common = dict(
        frames=args.frames,
        device=args.device,
        batch_frames=args.batch_frames,
        max_side=args.max_side,
        precision=args.precision,
    )
    if args.task and args.task != model.task:
        raise InputError(
            f"--task {args.task} needs a {args.task} checkpoint; this one predicts {model.task}"
        )
    if (args.out is None) == (args.out_dir is None):
        raise InputError("give --out FILE for one video, or --out-dir DIR for several")
    if model.task == "frames":
        if args.out_dir is not None or len(args.video) != 1:
            raise InputError("a frames checkpoint predicts one video at a time: use --out")
        out = predict_frames(model, args.video[0], args.out, **common)
        print(f"wrote predicted frames {out.shape} to {out.path}")
        return 0
    flow_options = dict(
        units=args.units,
        um_per_px=args.um_per_px,
        fps=args.fps,
        pair_format=args.pair_format,
        mask=args.mask,
        uncertainty=args.uncertainty,
        **common,
    )
    if args.out_dir is None:
        if len(args.video) != 1:
            raise InputError("several videos need --out-dir DIR, not --out")
        pred = predict_flow(model, args.video[0], args.out, **flow_options)
        _say(pred, args.mask)
        return 0
    return _predict_batch(model, args, flow_options, model.provenance["checkpoint_sha256"])


def _say(pred, mask: Path | None) -> None:  # noqa: ANN001 - a Prediction
    um_s = pred.mean_speed_um_s
    physical = "" if um_s is None else f" = {um_s:.1f} um/s"
    where = " inside the mask" if mask else ""
    print(
        f"wrote flow {pred.shape} ({pred.units}) to {pred.path}; "
        f"mean speed{where} {pred.mean_speed:.3f} px/frame{physical}"
    )


def _predict_batch(model, args: argparse.Namespace, options: dict, sha: str) -> int:  # noqa: ANN001
    from flowvid.predict.batch import predict_many
    from flowvid.predict.inference import predict_flow

    if options["mask"] is not None:
        raise InputError("--mask is for one video; a batch predicts without masks")
    if options["uncertainty"] is not None:
        raise InputError("--uncertainty is for one video (with --out)")
    from flowvid.predict.inference import flow_request

    summary = predict_many(
        lambda video, out: _say(predict_flow(model, video, out, **options), None),
        args.video,
        args.out_dir,
        fmt=args.format,
        checkpoint_sha256=sha,
        request=flow_request(**options),
        overwrite=args.overwrite,
    )
    print(summary)
    return 2 if summary.failed else 0


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """Which model or method, on which device, at what size and precision."""
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument(
        "--method",
        default="model",
        choices=("model", "dis", "farneback"),
        help="the flowvid model, or classical optical flow (OpenCV's DIS, medium preset, or "
        "Farneback, as eval --baselines scores them) written to the same files and sidecar",
    )
    p.add_argument(
        "--task", default=None, choices=("flow", "frames"), help="default: the checkpoint's"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-frames", type=int, default=16, help="frames per encoder batch")
    p.add_argument("--max-side", type=int, default=None, help="run the model at most this size")
    add_precision(p)


def _frames_and_units_arguments(p: argparse.ArgumentParser) -> None:
    """Which frames, which pixels, what else is written, and in which units."""
    p.add_argument("--frames", default=None, metavar="A:B", help="only frames A..B-1")
    p.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="vessel mask, .png or .npy, (H, W) or (T-1, H, W): flow outside it is written as 0",
    )
    p.add_argument(
        "--uncertainty",
        type=Path,
        default=None,
        help="also write each vector's expected end-point error, (T-1, H, W), in the flow's "
        "units: unc.npy, unc.h5 or unc.mat",
    )
    p.add_argument(
        "--units", default="px/frame", choices=("px/frame", "um/s"), help="unit of the output"
    )
    p.add_argument("--um-per-px", type=positive, default=None, help="pixel size, for um/s")
    p.add_argument("--fps", type=positive, default=None, help="default: the video's own rate")
    p.add_argument(
        "--pair-format", default="flo", choices=("flo", "png"), help="for a folder --out"
    )


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        formatter_class=HelpFormatter,
        help="predict flow (or future frames) for a video, or many",
        description="Predict pixel-wise flow, (T-1, H, W, 2) px/frame (flow[i] moves frame i "
        "to i+1, u right, v down), for a video, a .tif stack or a folder of frames, in "
        "constant memory; or for many videos with --out-dir (resumable). A JSON sidecar "
        "beside the output records the units, calibration, frame range, method and model. "
        "--method dis|farneback writes classical flow through the same files.",
        epilog="example: flowvid predict clip.mp4 --out flow.npy --um-per-px 0.8 --fps 100\n"
        "example: flowvid predict recordings/ --out-dir flows/ --format h5   "
        "(run again to go on after a stop)",
    )
    p.add_argument(
        "video",
        type=Path,
        nargs="+",
        help=".mp4/.avi/.mov, a .tif stack or a folder of frames; with --out-dir, several, or "
        "folders of videos",
    )
    p.add_argument(
        "--out",
        default=None,
        type=Path,
        help="flow.npy, flow.npz, flow.h5 (HDF5), flow.mat (MATLAB, PIVlab-style u/v/x/y), "
        "or a folder for per-pair .flo/.png",
    )
    p.add_argument(
        "--out-dir",
        default=None,
        type=Path,
        help="batch: one <video name>.<format> per video here; videos already done are skipped",
    )
    add_overwrite(p)
    p.add_argument(
        "--format", default="npy", choices=("npy", "npz", "h5", "mat"), help="batch output format"
    )
    _model_arguments(p)
    _frames_and_units_arguments(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_embed(args: argparse.Namespace) -> int:
    from flowvid.checkpoint import load_model
    from flowvid.predict.inference import embed_video

    model, ckpt = load_model(args.checkpoint)
    out = embed_video(
        model,
        args.video,
        args.out,
        pooled=args.pooled,
        device=args.device,
        batch_frames=args.batch_frames,
    )
    print(f"wrote embeddings {out.shape} to {out.path}")
    return 0


def add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        formatter_class=HelpFormatter,
        help="write the learned per-frame representation",
        description="Write the model's recurrent state for every frame, (T, S, H/4, W/4) "
        "float16 (or one pooled vector per frame with --pooled): features for clustering, "
        "search or a downstream model.",
        epilog="example: flowvid embed clip.mp4 --out feats.npy --pooled",
    )
    p.add_argument("video", type=Path, help="video file, .tif stack or folder of frames")
    p.add_argument("--out", required=True, type=Path, help=".npy, float16")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument(
        "--pooled", action="store_true", help="one vector per frame (else a stride-8 map)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-frames", type=int, default=16, help="frames per encoder batch")
    p.set_defaults(func=_cmd_embed)


def _cmd_overlay(args: argparse.Namespace) -> int:
    from flowvid.analysis.overlay import write_overlay

    out = write_overlay(
        args.video,
        args.flow,
        args.out,
        style=args.style,
        um_per_px=args.um_per_px,
        fps=args.fps,
        max_speed=args.max_speed,
        gt_path=args.gt,
        uncertainty_path=args.uncertainty,
        max_uncertainty=args.max_uncertainty,
    )
    print(f"wrote {out}")
    return 0


def add_overlay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "overlay",
        formatter_class=HelpFormatter,
        help="draw flow over a video",
        description="Draw a flow file over its video: colour (the direction wheel, saturation "
        "= speed) and/or arrows, with a key; .mp4, .gif or a folder of PNGs. --gt adds the "
        "ground truth and an error map side by side; --uncertainty greys out vectors whose "
        "expected error is over --max-uncertainty. Calibration comes from the options, else "
        "from the flow's sidecar.",
        epilog="example: flowvid overlay clip.mp4 flow.npy --out overlay.mp4 --style both",
    )
    p.add_argument("video", type=Path, help="video file, .tif stack or folder of frames")
    p.add_argument("flow", type=Path, help="(T-1,H,W,2) flow: .npy, .npz, or a folder of .flo/.png")
    p.add_argument("--out", required=True, type=Path, help=".mp4, .gif, or a folder for PNGs")
    p.add_argument(
        "--style", default="color", choices=("color", "arrows", "both"), help="how flow is drawn"
    )
    p.add_argument(
        "--gt",
        type=Path,
        default=None,
        help="ground-truth flow: adds panels video | predicted | truth | error, with EPE",
    )
    p.add_argument(
        "--uncertainty",
        type=Path,
        default=None,
        help="expected error from predict --uncertainty: grey out the vectors not to believe",
    )
    p.add_argument(
        "--max-uncertainty",
        type=positive,
        default=1.0,
        help="with --uncertainty: expected error (px/frame) above which a vector is greyed out",
    )
    p.add_argument("--max-speed", type=positive, default=None, help="px/frame at full colour")
    p.add_argument("--um-per-px", type=positive, default=None, help="label the scale in um/s")
    p.add_argument("--fps", type=positive, default=None, help="default: the video's own rate")
    p.set_defaults(func=_cmd_overlay)

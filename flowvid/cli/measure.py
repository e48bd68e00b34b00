"""``flowvid measure``: per-segment vessel quantities from a flow and a vessel mask."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from flowvid.cli.common import HelpFormatter, add_flow, flow_argument, frames_window, positive
from flowvid.errors import InputError

FIGURES = (".png", ".pdf", ".svg")  # what the figure writer makes


def _cmd_measure(args: argparse.Namespace) -> int:
    from flowvid.analysis.measure import Scaled, flow_in_px, measure, rows_to_csv
    from flowvid.errors import check_calibration
    from flowvid.io.atomic import atomic_output, outputs_beside
    from flowvid.io.masks import read_mask
    from flowvid.io.outputs import ExpectedError

    (json_path,) = outputs_beside(args.out, ".json")  # both checked before any work
    flow, factor, side = flow_in_px(args.flow)
    um_per_px = args.um_per_px or side.get("um_per_px")
    fps = args.fps or side.get("fps")
    check_calibration(um_per_px=um_per_px, fps=fps)
    n, h, w = flow.shape[:3]
    mask = read_mask(args.mask, n, h, w).any(0)
    if args.max_uncertainty is not None and args.uncertainty is None:
        raise InputError("--max-uncertainty needs --uncertainty (from predict --uncertainty)")
    errors = None if args.uncertainty is None else ExpectedError(args.uncertainty)
    try:
        rows, summary = measure(
            Scaled(flow, factor),
            mask,
            um_per_px,
            fps,
            args.min_length,
            errors,
            args.max_uncertainty,
            prune_spurs=not args.keep_spurs,
        )
    finally:
        if errors is not None:
            errors.close()
    summary |= {"flow": str(args.flow), "mask": str(args.mask), "video": side.get("video")}
    if errors is not None:
        summary |= {"uncertainty": str(args.uncertainty), "max_uncertainty": args.max_uncertainty}
    with atomic_output(args.out) as tmp:
        tmp.write_text(rows_to_csv(rows))
    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    for seg in summary["segments"]:
        speed = seg["mean_centreline_speed_px_per_frame"]
        physical = (
            f" = {seg['mean_centreline_speed_um_per_s']:.1f} um/s"
            if "mean_centreline_speed_um_per_s" in seg
            else ""
        )
        doubt = (
            f", expected error {seg['mean_uncertainty_px_per_frame']:.3f} px/frame"
            if "mean_uncertainty_px_per_frame" in seg
            else ""
        )
        print(
            f"segment {seg['segment']}: diameter {seg['diameter_px']:.1f} px, centreline "
            f"speed {speed:.3f} px/frame{physical}, PI {seg['pulsatility_index']:.2f}{doubt}"
        )
    print(f"wrote {len(rows)} rows to {args.out} and the summary to {json_path}")
    return 0


def add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        formatter_class=HelpFormatter,
        help="per-segment speed, diameter, flow rate and pulsatility from a flow and a mask",
        description="Split a vessel mask into segments (skeleton cut at branch points) and "
        "report, per segment and flow map, the centreline and mean speed along the vessel, "
        "the diameter, the volume flow rate (Poiseuille: Q = pi d^2 v_centre / 8) and the "
        "direction; per segment, the pulsatility index. A tidy CSV and a JSON summary. "
        "Calibration comes from the flow's sidecar unless given.",
        epilog="example: flowvid measure flow.npy --mask vessels.png --out vessels.csv "
        "--um-per-px 0.8 --fps 100",
    )
    p.add_argument("flow", type=Path, help="flow file (.npy, .npz, .h5, .mat, .flo folder)")
    p.add_argument("--mask", type=Path, required=True, help="vessel mask, .png or .npy")
    p.add_argument("--out", type=Path, required=True, help="CSV; the summary goes beside as .json")
    p.add_argument("--um-per-px", type=positive, default=None, help="default: the flow's sidecar")
    p.add_argument("--fps", type=positive, default=None, help="default: the flow's sidecar")
    p.add_argument("--min-length", type=int, default=5, help="shortest segment kept, px")
    p.add_argument(
        "--keep-spurs",
        action="store_true",
        help="keep skeleton branches that end free and are shorter than their vessel's radius "
        "(by default they are removed: bumps of the mask's edge, not vessels)",
    )
    p.add_argument(
        "--uncertainty",
        type=Path,
        default=None,
        help="expected error from predict --uncertainty: each row gains the lumen's mean",
    )
    p.add_argument(
        "--max-uncertainty",
        type=positive,
        default=None,
        help="measure only the vectors whose expected error is at most this, px/frame",
    )
    p.set_defaults(func=_cmd_measure)


def _kymograph_doc(summary: Any, start: int) -> dict | None:
    """The summary's kymograph for its JSON (frames counted in the video, from ``start``)."""
    if summary.speeds is None:
        return None
    return {
        "segment": summary.kymo_segment,
        "window_frames": summary.window,
        "first_frame": (summary.speeds.start + start).tolist(),  # in the video
        "stripe_speed_px_per_frame": [  # None: rejected (see stripe_confidence)
            None if v != v else v for v in summary.speeds.stripe.tolist()
        ],
        "stripe_confidence": summary.speeds.confidence.tolist(),
        "model_speed_px_per_frame": summary.speeds.model.tolist(),
        "agreement": summary.agreement,
    }


def _cmd_summary(args: argparse.Namespace) -> int:
    from flowvid.analysis.measure import flow_for_video
    from flowvid.analysis.summary import summarise_clip, summary_figure
    from flowvid.io.atomic import atomic_output, outputs_beside
    from flowvid.io.masks import read_mask
    from flowvid.io.outputs import ExpectedError, flow_origin
    from flowvid.io.video import open_video

    if args.out.suffix.lower() not in FIGURES:
        raise InputError(
            f"--out is a figure: .png, .pdf or .svg, not {args.out.suffix!r}", args.out
        )
    (json_path,) = outputs_beside(args.out, ".json")  # both checked before any work
    args.flow = flow_argument(args, required=True)

    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_video(args.video))
        total, h, w = reader.num_frames, reader.height, reader.width
        flow, side, (start, stop) = flow_for_video(args.flow, total, h, w)
        mask = read_mask(args.mask, stop - start - 1, h, w).any(0)
        errors = None
        if args.uncertainty is not None:
            errors = ExpectedError(args.uncertainty)
            stack.callback(errors.close)
        summary = summarise_clip(
            reader.iter_frames(start, stop),
            flow,
            mask,
            um_per_px=args.um_per_px or side.get("um_per_px"),
            fps=args.fps or side.get("fps") or reader.fps,
            segment=args.segment,
            window=args.window,
            errors=errors,
            kymograph=not args.no_kymo,
        )
    doc = summary.measured | {
        "video": str(args.video),
        "flow": str(args.flow),
        "mask": str(args.mask),
        "frames": [start, stop],
        "kymograph": _kymograph_doc(summary, start),
    }
    with atomic_output(args.out) as tmp:
        summary_figure(
            tmp,
            summary,
            f"{Path(args.video).name}: {len(summary.segments)} segments\n{flow_origin(side)}",
        )
    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    if summary.agreement is not None and not summary.agreement["agree"]:
        print(f"warning: {summary.agreement['warning']}", file=sys.stderr)
    print(f"wrote {args.out} and {json_path}")
    return 0


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        formatter_class=HelpFormatter,
        help="one-page figure per clip: mean speed map, kymograph, speed over time, table",
        description="One page per clip: the mean frame with the mean speed inside the vessels "
        "and the segments numbered; the kymograph along one segment; every segment's "
        "centreline speed over time beside the kymograph's stripe speed; a table of length, "
        "diameter, speed, flow rate and pulsatility (the numbers of `flowvid measure`). The "
        "format follows --out's suffix (.png, .pdf, .svg); the numbers go beside as .json.",
        epilog="example: flowvid summary clip.mp4 --flow flow.npy --mask vessels.png "
        "--out clip_summary.pdf",
    )
    p.add_argument("video", type=Path, help="video file, .tif stack or folder of frames")
    add_flow(p, "the flow predicted for this video")
    p.add_argument("--mask", type=Path, required=True, help="vessel mask, .png or .npy")
    p.add_argument("--out", type=Path, required=True, help="figure (.png, .pdf or .svg)")
    p.add_argument("--segment", type=int, default=None, help="kymograph segment; default: longest")
    p.add_argument(
        "--window", type=frames_window, default=32, help="frames per stripe-speed estimate"
    )
    p.add_argument(
        "--no-kymo",
        action="store_true",
        help="no kymograph stripe speeds (a clip under 4 frames gets none anyway)",
    )
    p.add_argument("--um-per-px", type=positive, default=None, help="default: the flow's sidecar")
    p.add_argument("--fps", type=positive, default=None, help="default: the sidecar's or video's")
    p.add_argument(
        "--uncertainty",
        type=Path,
        default=None,
        help="expected error from predict --uncertainty: adds its panel and a column",
    )
    p.set_defaults(func=_cmd_summary)

"""``flowvid kymo``: the kymograph along a line or a vessel segment, and its speeds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from flowvid.cli.common import HelpFormatter, add_flow, flow_argument, frames_window, positive
from flowvid.errors import InputError

FIGURES = (".png", ".pdf", ".svg")  # what the figure writer makes


def _path(args: argparse.Namespace, height: int, width: int, pairs: int):  # noqa: ANN202
    from flowvid.analysis.kymo import line_path, segment_path

    if (args.line is None) == (args.segment is None):
        raise InputError("give --line X0,Y0,X1,Y1, or --segment N with --mask")
    if args.line is not None:
        try:
            x0, y0, x1, y1 = (float(v) for v in args.line.split(","))
        except ValueError:
            raise InputError(f"--line takes X0,Y0,X1,Y1 in px, not {args.line!r}") from None
        inside = all(0 <= x < width for x in (x0, x1)) and all(0 <= y < height for y in (y0, y1))
        if not inside:
            raise InputError(f"--line {args.line} leaves the {width}x{height} frame")
        return line_path(x0, y0, x1, y1), f"line {args.line}"
    if args.mask is None:
        raise InputError("--segment needs --mask (the vessel mask it is a segment of)")
    from flowvid.analysis.measure import segments
    from flowvid.io.masks import read_mask

    segs = segments(read_mask(args.mask, pairs, height, width).any(0))
    if not 1 <= args.segment <= len(segs):
        raise InputError(f"--segment must be 1..{len(segs)} for this mask, not {args.segment}")
    return segment_path(segs[args.segment - 1]), f"segment {args.segment}"


def _window_rows(speeds: Any, start: int, scale: float | None) -> list[dict]:
    """One JSON row per window of the kymograph (frames counted in the video)."""
    return [
        {
            "first_frame": int(s) + start,  # in the video
            "stripe_speed_px_per_frame": None if np.isnan(a) else float(a),  # None: rejected
            "stripe_confidence": float(speeds.confidence[i]),
            "model_speed_px_per_frame": None if speeds.model is None else float(speeds.model[i]),
            **(
                {"stripe_speed_um_per_s": None if np.isnan(a) else float(a) * scale}
                if scale
                else {}
            ),
        }
        for i, (s, a) in enumerate(zip(speeds.start, speeds.stripe, strict=True))
    ]


def _describe(row: dict) -> str:
    """A window's line for the terminal."""
    model, stripe = row["model_speed_px_per_frame"], row["stripe_speed_px_per_frame"]
    return (
        f"frames {row['first_frame']}+: stripe "
        + ("rejected" if stripe is None else f"{stripe:.3f} px/frame")
        + f" (confidence {row['stripe_confidence']:.2f})"
        + ("" if model is None else f", model {model:.3f} px/frame")
    )


def _cmd_kymo(args: argparse.Namespace) -> int:
    from flowvid.analysis.kymo import (
        agreement,
        flow_kymograph,
        kymo_figure,
        video_kymograph,
        window_speeds,
    )
    from flowvid.analysis.measure import flow_for_video
    from flowvid.io.atomic import atomic_output, outputs_beside
    from flowvid.io.outputs import flow_origin
    from flowvid.io.video import open_video

    if args.out.suffix.lower() not in FIGURES:
        raise InputError(
            f"--out is a figure: .png, .pdf or .svg, not {args.out.suffix!r}", args.out
        )
    (summary,) = outputs_beside(args.out, ".json")  # both checked before any work
    args.flow = flow_argument(args, required=False)

    with open_video(args.video) as reader:
        height, width, fps, total = reader.height, reader.width, reader.fps, reader.num_frames
        flow, side, (start, stop) = None, {}, (0, total)
        if args.flow is not None:
            flow, side, (start, stop) = flow_for_video(args.flow, total, height, width)
        path, what = _path(args, height, width, stop - start - 1)
        kymo = video_kymograph(reader.iter_frames(start, stop), path)
    flow_kymo = None if flow is None else flow_kymograph((flow[i] for i in range(len(flow))), path)
    speeds = window_speeds(kymo, flow_kymo, args.window)
    fps = args.fps or side.get("fps") or fps
    um_per_px = args.um_per_px or side.get("um_per_px")
    scale = um_per_px * fps if um_per_px and fps else None
    rows = _window_rows(speeds, start, scale)
    with atomic_output(args.out) as tmp:
        title = f"{Path(args.video).name}: {what}"
        if flow is not None:
            title += f"\n{flow_origin(side)}"
        kymo_figure(tmp, kymo, flow_kymo, speeds, scale, title)
    check = agreement(speeds)
    doc = {"video": str(args.video), "path": what, "windows": rows}
    with atomic_output(summary) as tmp:
        tmp.write_text(json.dumps(doc | ({"agreement": check} if check else {}), indent=2))
    for row in rows:
        print(_describe(row))
    if check is not None and not check["agree"]:
        print(f"warning: {check['warning']}", file=sys.stderr)
    print(f"wrote {args.out} and {summary}")
    return 0


def add_kymo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kymo",
        formatter_class=HelpFormatter,
        help="kymograph along a line or a vessel segment; speed from its stripes vs the model",
        description="Sample the video along a line (or a vessel segment's centreline) in every "
        "frame: the kymograph. The speed of what moves along the path is read from the stripe "
        "angle (Radon transform, the line-scan method), window by window, and set beside the "
        "model's flow along the same path (--flow). Speeds are + from the path's start to "
        "its end.",
        epilog="example: flowvid kymo clip.mp4 --flow flow.npy --line 10,40,120,40 --out kymo.png",
    )
    p.add_argument("video", type=Path, help="video file, .tif stack or folder of frames")
    p.add_argument("--out", type=Path, required=True, help="figure (.png); speeds beside as .json")
    add_flow(p, "the flow predicted for this video (optional: its speed beside the stripes')")
    p.add_argument("--line", default=None, help="X0,Y0,X1,Y1 in px")
    p.add_argument("--segment", type=int, default=None, help="a segment number of --mask")
    p.add_argument("--mask", type=Path, default=None, help="vessel mask, for --segment")
    p.add_argument("--window", type=frames_window, default=32, help="frames per speed estimate")
    p.add_argument("--um-per-px", type=positive, default=None, help="default: the flow's sidecar")
    p.add_argument("--fps", type=positive, default=None, help="default: the sidecar's or video's")
    p.set_defaults(func=_cmd_kymo)

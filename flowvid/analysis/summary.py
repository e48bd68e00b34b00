"""One page per clip: the figure a researcher puts in a lab notebook or a supplement.

Four panels from a video, its flow and a vessel mask:

- the mean frame with the mean speed (``|flow|`` averaged over the pairs) coloured inside
  the vessels, each segment numbered, and the kymograph's path drawn from its start;
- the kymograph of the video along one segment's centreline (the longest by default);
- each segment's centreline speed over time, with the kymograph's stripe speed (the
  line-scan method) beside the model's on the same segment;
- a table per segment: length, diameter, mean centreline speed, volume flow rate
  (Poiseuille) and pulsatility index, in µm units when the calibration is known;
- with the expected error of each vector (``predict --uncertainty``), a fifth panel: its
  mean over the pairs, inside the vessels, and a column of each segment's mean.

The video and the flow are each read once, frame by frame: memory does not grow with the
length of the clip. The numbers are those of :func:`flowvid.analysis.measure.measure` and
:mod:`flowvid.analysis.kymo`; this module only gathers and draws them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowvid.analysis.kymo import (
    KymoSpeeds,
    agreement,
    directions,
    flow_along,
    grey_along,
    segment_path,
    window_speeds,
)
from flowvid.analysis.measure import Segment, frame_rows, pulsatility_index, segments, summarise
from flowvid.errors import InputError

MAX_CURVES = 8  # segments drawn in the speed-over-time panel (the longest)
MAX_TABLE_ROWS = 12


@dataclass
class ClipSummary:
    mean_frame: np.ndarray  # (H, W, 3) uint8
    mean_speed: np.ndarray  # (H, W) px/frame: |flow| averaged over the pairs
    mask: np.ndarray  # (H, W) bool
    segments: list[Segment]
    centreline_speed: np.ndarray  # (T-1, S) px/frame, signed along each segment's axis
    measured: dict[str, Any]  # flowvid.analysis.measure's summary
    kymo_segment: int  # the label of the segment the kymograph follows
    path: np.ndarray  # (N, 2) x, y
    kymo: np.ndarray  # (T, N) grey levels
    speeds: KymoSpeeds | None  # stripe and model speed per window, px/frame (None: no kymograph)
    window: int  # frames per stripe-speed window
    um_per_px: float | None
    fps: float | None
    mean_error: np.ndarray | None = None  # (H, W) px/frame: expected error over the pairs

    @property
    def agreement(self) -> dict | None:
        """Whether the model's speed along the kymograph's path agrees with its stripes'
        (:func:`flowvid.analysis.kymo.agreement`)."""
        return None if self.speeds is None else agreement(self.speeds)

    @property
    def scale(self) -> float | None:
        """µm/s per px/frame, when the calibration is known."""
        return self.um_per_px * self.fps if self.um_per_px and self.fps else None


def summarise_clip(
    frames: Iterable[np.ndarray],
    flow: Any,
    mask: np.ndarray,
    *,
    um_per_px: float | None = None,
    fps: float | None = None,
    segment: int | None = None,
    window: int = 32,
    min_length: int = 5,
    errors: Any = None,
    kymograph: bool = True,
) -> ClipSummary:
    """Gather what the one-page figure shows.

    ``frames``: the video's frames (H, W, 3) uint8, in order, read once; ``flow``:
    (T-1, H, W, 2) px/frame, an array or a lazy sequence read map by map; ``mask``: (H, W)
    bool; ``segment``: the label of the segment whose kymograph is drawn (default: the
    longest); ``errors``: (T-1, H, W) expected error, px/frame, read map by map;
    ``kymograph=False`` (and any clip under :data:`KYMO_MIN_FRAMES` frames): no kymograph
    and no stripe speeds, the rest as ever.
    """
    mask = np.asarray(mask, bool)
    segs, segment = _chosen_segment(flow, mask, errors, segment, min_length)
    path = segment_path(segs[segment - 1])
    speed_sum, error_sum, rows, along_path = _flow_pass(flow, errors, segs, path, um_per_px, fps)
    centre = np.array([r["centreline_speed_px_per_frame"] for r in rows]).reshape(
        len(flow), len(segs)
    )
    frame_sum, kymo, count = _frame_pass(frames, path)
    if count != len(flow) + 1:
        raise InputError(f"the video has {count} frames; the flow is for {len(flow) + 1}")
    kymo_arr = np.stack(kymo).astype(np.float32)
    speeds = None
    if kymograph and count >= KYMO_MIN_FRAMES:
        speeds = window_speeds(kymo_arr, np.stack(along_path).astype(np.float32), window)
    return ClipSummary(
        mean_frame=np.clip(frame_sum / count, 0, 255).round().astype(np.uint8),
        mean_speed=(speed_sum / len(flow)).astype(np.float32),
        mask=mask,
        segments=segs,
        centreline_speed=np.asarray(centre, np.float32),
        measured=summarise(rows, segs, um_per_px, fps),
        kymo_segment=segment,
        path=path,
        kymo=kymo_arr,
        speeds=speeds,
        window=min(window, len(kymo_arr)),
        um_per_px=um_per_px,
        fps=fps,
        mean_error=None if error_sum is None else (error_sum / len(flow)).astype(np.float32),
    )


def _chosen_segment(
    flow: Any, mask: np.ndarray, errors: Any, segment: int | None, min_length: int
) -> tuple[list, int]:
    """The mask's segments and the label of the one the kymograph follows, after checking
    that the mask and the expected error fit the flow."""
    if mask.shape != tuple(flow.shape[1:3]):
        raise InputError(f"mask {mask.shape} does not fit flow maps {tuple(flow.shape[1:3])}")
    if errors is not None and tuple(errors.shape) != tuple(flow.shape[:3]):
        raise InputError(
            f"the expected error {tuple(errors.shape)} is not for the flow {tuple(flow.shape[:3])}"
        )
    segs = segments(mask, min_length)
    if not segs:
        raise InputError(f"the mask holds no vessel segment of {min_length} px or more")
    if segment is None:
        segment = max(segs, key=lambda s: s.length_px).label
    if not 1 <= segment <= len(segs):
        raise InputError(f"the segment must be 1..{len(segs)} for this mask, not {segment}")
    return segs, segment


def _flow_pass(
    flow: Any,
    errors: Any,
    segs: list,
    path: np.ndarray,
    um_per_px: float | None,
    fps: float | None,
) -> tuple[np.ndarray, np.ndarray | None, list[dict], list[np.ndarray]]:
    """One pass over the flow maps (and their expected errors): the sums of speed and error,
    each map's per-segment rows, and the flow along the kymograph's path."""
    tangent = directions(path)
    shape = tuple(flow.shape[1:3])
    speed_sum = np.zeros(shape, np.float64)
    error_sum = None if errors is None else np.zeros(shape, np.float64)
    rows, along_path = [], []
    for i in range(len(flow)):
        f = np.asarray(flow[i], np.float64)
        speed_sum += np.hypot(f[..., 0], f[..., 1])
        e = None if errors is None else np.asarray(errors[i], np.float64)
        if e is not None:
            error_sum += e
        rows += frame_rows(i, f, segs, um_per_px, fps, e)
        along_path.append(flow_along(f, path, tangent))
    return speed_sum, error_sum, rows, along_path


def _frame_pass(frames: Iterable[np.ndarray], path: np.ndarray) -> tuple[Any, list, int]:
    """One pass over the frames: their sum, the kymograph's rows along ``path``, and their
    count."""
    frame_sum, kymo, count = None, [], 0
    for frame in frames:
        frame = np.asarray(frame)
        frame_sum = frame.astype(np.float64) if frame_sum is None else frame_sum + frame
        kymo.append(grey_along(frame, path))
        count += 1
    return frame_sum, kymo, count


def _table(s: ClipSummary) -> tuple[list[str], list[list[str]]]:
    calibrated = s.scale is not None
    columns = ["segment", "length", "diameter", "centre\nspeed", "flow rate\n(Poiseuille)", "PI"]
    units = (
        ["", "µm", "µm", "µm/s", "nL/min", ""]
        if calibrated
        else ["", "px", "px", "px/frame", "px³/frame", ""]
    )
    rows = []
    for entry in s.measured["segments"][:MAX_TABLE_ROWS]:
        if calibrated:
            values = [
                entry["length_px"] * s.um_per_px,
                entry["diameter_um"],
                entry["mean_centreline_speed_um_per_s"],
                entry["mean_flow_rate_um3_per_s"] * 60e-6,
            ]
        else:
            values = [
                entry["length_px"],
                entry["diameter_px"],
                entry["mean_centreline_speed_px_per_frame"],
                entry["mean_flow_rate_px3_per_frame"],
            ]
        row = [str(entry["segment"]), *(f"{v:.3g}" for v in values)]
        row.append(f"{entry['pulsatility_index']:.2f}")
        if s.mean_error is not None:
            row.append(f"{entry['mean_uncertainty_px_per_frame'] * (s.scale or 1.0):.3g}")
        rows.append(row)
    if s.mean_error is not None:
        columns.append("expected\nerror")
        units.append(units[3])
    header = [f"{c}\n({u})" if u else c for c, u in zip(columns, units, strict=True)]
    return header, rows


KYMO_MIN_FRAMES = 4  # the fewest frames a stripe speed is read from


def _kymo_title(ax, s: ClipSummary, k: float, unit: str) -> None:  # noqa: ANN001 - an Axes
    """The kymograph panel's title: both speeds (medians), flagged where they disagree."""
    model = float(np.median(s.speeds.model)) * k
    if np.isnan(s.speeds.stripe).all():
        ax.set_title(
            f"kymograph along segment {s.kymo_segment}\nno confident stripe speed "
            f"(short or low-texture path); flow {model:.3g} {unit}",
            fontsize=10,
        )
        return
    stripe = float(np.nanmedian(s.speeds.stripe)) * k
    check = s.agreement
    disagree = check is not None and not check["agree"]
    ax.set_title(
        f"kymograph along segment {s.kymo_segment}\nspeed from its stripes {stripe:.3g}, "
        f"flow {model:.3g} {unit} (medians)"
        + (f"\nDISAGREE: flow / stripes = {check['model_over_stripe']:.2g}" if disagree else ""),
        fontsize=10,
        color="firebrick" if disagree else "black",
    )


def summary_figure(path_out: str | Path, s: ClipSummary, title: str = "") -> None:
    """Draw the one-page summary (A4 landscape) to ``path_out`` (.png, .pdf or .svg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = s.scale or 1.0
    unit = "µm/s" if s.scale else "px/frame"
    layout, size = [["map", "kymo"], ["time", "table"]], (11.69, 8.27)  # A4 landscape
    if s.mean_error is not None:
        layout, size = [["map", "kymo", "error"], ["time", "time", "table"]], (16.5, 8.27)
    axes = plt.figure(figsize=size, layout="constrained").subplot_mosaic(layout)
    fig = axes["map"].figure
    if s.mean_error is not None:
        _error_panel(axes["error"], s, k, unit)
    _map_panel(axes["map"], s, k, unit)
    _kymo_panel(axes["kymo"], s, k, unit)
    _time_panel(axes["time"], s, k, unit)
    _table_panel(axes["table"], s)
    if title:
        fig.suptitle(title)
    fig.savefig(path_out, dpi=110)
    plt.close(fig)


def _error_panel(ax, s: ClipSummary, k: float, unit: str) -> None:  # noqa: ANN001 - an Axes
    """The expected error in the vessels, mean over the pairs, over the mean frame."""
    ax.imshow(s.mean_frame)
    error = np.ma.masked_where(~s.mask, s.mean_error * k)
    top = float(np.percentile(s.mean_error[s.mask], 99) * k) if s.mask.any() else 1.0
    shown = ax.imshow(error, cmap="viridis", vmin=0, vmax=top or 1.0, alpha=0.85)
    ax.figure.colorbar(shown, ax=ax, shrink=0.85, label=f"expected error ({unit})")
    ax.set_title(
        "expected error, mean over the pairs\n"
        f"in the vessels: {float(s.mean_error[s.mask].mean()) * k:.3g} {unit}",
        fontsize=10,
    )
    ax.set_axis_off()


def _map_panel(ax, s: ClipSummary, k: float, unit: str) -> None:  # noqa: ANN001 - an Axes
    """The mean speed in the vessels over the mean frame, the segments' labels and the
    kymograph's path."""
    ax.imshow(s.mean_frame)
    speed = np.ma.masked_where(~s.mask, s.mean_speed * k)
    top = float(np.percentile(s.mean_speed[s.mask], 99) * k) if s.mask.any() else 1.0
    shown = ax.imshow(speed, cmap="inferno", vmin=0, vmax=top or 1.0, alpha=0.85)
    ax.figure.colorbar(shown, ax=ax, shrink=0.85, label=f"mean speed ({unit}; top: 99th pct)")
    for seg in s.segments:
        r, c = seg.centreline[len(seg.centreline) // 2]
        ax.annotate(
            str(seg.label),
            (c, r),
            color="white",
            fontsize=10,
            ha="center",
            va="center",
            bbox={"boxstyle": "round,pad=0.15", "fc": "black", "alpha": 0.6, "lw": 0},
        )
    ax.plot(s.path[:, 0], s.path[:, 1], "--", color="cyan", lw=1.2)
    ax.plot(*s.path[0], "o", color="cyan", ms=5)
    ax.set_title(
        "mean frame, mean speed in the vessels\n"
        f"kymograph path: segment {s.kymo_segment}, o = start",
        fontsize=10,
    )
    ax.set_axis_off()


def _time_scale(s: ClipSummary) -> tuple[float, str]:
    """Seconds per frame and "s" with a frame rate; 1 and "frame" without."""
    return (1.0 / s.fps, "s") if s.fps is not None else (1.0, "frame")


def _kymo_panel(ax, s: ClipSummary, k: float, unit: str) -> None:  # noqa: ANN001 - an Axes
    """The video along the path over time, titled with both speeds."""
    t_scale, t_unit = _time_scale(s)
    extent = (0, s.kymo.shape[1], s.kymo.shape[0] * t_scale, 0)
    ax.imshow(s.kymo, cmap="gray", aspect="auto", extent=extent)
    ax.set(xlabel="position along the path from its start (px)", ylabel=f"time ({t_unit})")
    if s.speeds is not None:
        _kymo_title(ax, s, k, unit)
        return
    why = (
        f"a clip of {len(s.kymo)} frames (stripe speeds need {KYMO_MIN_FRAMES})"
        if len(s.kymo) < KYMO_MIN_FRAMES
        else "not asked for (--no-kymo)"
    )
    ax.set_title(f"video along segment {s.kymo_segment}\nno stripe speed: {why}", fontsize=10)


def _time_panel(ax, s: ClipSummary, k: float, unit: str) -> None:  # noqa: ANN001 - an Axes
    """The centreline speed of the longest segments over time, and the stripes' speeds."""
    t_scale, t_unit = _time_scale(s)
    order = sorted(s.segments, key=lambda g: -g.length_px)[:MAX_CURVES]
    t = np.arange(len(s.centreline_speed)) * t_scale
    for seg in sorted(order, key=lambda g: g.label):
        series = s.centreline_speed[:, seg.label - 1]
        ax.plot(t, series * k, lw=1, label=f"{seg.label} (PI {pulsatility_index(series):.2f})")
    if s.speeds is not None:
        centres = (s.speeds.start + (s.window - 1) / 2) * t_scale  # the middle of each window
        ax.plot(
            centres, s.speeds.stripe * k, "kx", ms=7, label=f"{s.kymo_segment}: kymograph stripes"
        )
    ax.axhline(0, color="0.6", lw=0.5)
    more = "" if len(order) == len(s.segments) else f" ({len(order)} longest of {len(s.segments)})"
    ax.set_title(f"centreline speed over time{more}\n+ along each segment's axis", fontsize=10)
    ax.set(xlabel=f"time ({t_unit})", ylabel=f"speed ({unit})")
    ax.legend(
        fontsize=8, title="segment", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )


def _table_panel(ax, s: ClipSummary) -> None:  # noqa: ANN001 - an Axes
    """The per-segment table and its notes (definitions, calibration, warnings)."""
    header, rows = _table(s)
    ax.set_axis_off()
    height = min(0.8, 0.055 * (len(rows) + 3))  # the header takes three lines
    table = ax.table(
        cellText=rows, colLabels=header, cellLoc="center", bbox=(0.0, 1.0 - height, 1.0, height)
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 3)
    notes = [
        "flow rate: Poiseuille, Q = π d² v_centre / 8",
        "PI: (max − min) / |mean| of the centreline speed",
    ]
    if len(s.measured["segments"]) > MAX_TABLE_ROWS:
        notes.append(f"{len(s.measured['segments']) - MAX_TABLE_ROWS} more segments in the JSON")
    if s.agreement is not None and not s.agreement["agree"]:
        notes.append(textwrap.fill("warning: " + s.agreement["warning"], 62))
    if s.scale:
        notes.append(f"calibration: {s.um_per_px:g} µm/px, {s.fps:g} frames/s")
    else:
        notes.append("no calibration: give --um-per-px and --fps for µm/s")
    ax.text(0.0, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=8, va="bottom")

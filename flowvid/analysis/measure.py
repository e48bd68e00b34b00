"""From a flow and a vessel mask to the numbers a researcher reports, per vessel segment.

Segments: the mask's skeleton (scikit-image) cut at its branch points; each mask pixel
belongs to the segment whose centreline is nearest (pixels nearest a branch point belong
to none). Per segment and flow map (pair i: frame i -> i+1):

- ``centreline_speed``: mean over the centreline (less a half-width at each end, where
  the skeleton bends away from the centre) of the flow along the segment's axis (signed:
  + points from the segment's first end to its last, see ``axis_deg``);
- ``mean_speed``: the same over the whole lumen of the segment (a cross-section mean);
- ``diameter``: the lumen's area per unit length of centreline (its width);
- ``flow_rate``: volume flow ``Q = pi d^2 v_centre / 8``, assuming a Poiseuille profile
  (cross-section mean = half the centre speed), and ``flow_rate_from_mean``,
  ``pi d^2 v_mean / 4``, which assumes nothing about the profile;
- ``direction_deg``: the angle of the mean flow vector in the lumen, image coordinates
  (0 = right, 90 = down).

Per segment over time: the pulsatility index ``(max - min) / |mean|`` of the centreline
speed (Gosling). Units: px/frame and px; with ``um_per_px`` and ``fps``, also µm/s, µm and
µm³/s (and nL/min).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from flowvid.errors import InputError

POISEUILLE = "Q = pi d^2 v_centre / 8: a Poiseuille profile, cross-section mean = centre / 2"


@dataclass
class Segment:
    label: int
    centreline: np.ndarray  # (K, 2) row, col of its skeleton pixels
    lumen: np.ndarray  # (H, W) bool: the mask pixels that belong to it
    axis: np.ndarray  # (2,) unit (u, v): from the first end of the centreline to the last
    diameter_px: float
    skeleton: np.ndarray  # (L, 2) row, col: the whole ordered skeleton, ends included

    @property
    def length_px(self) -> float:
        return float(len(self.centreline))


def segments(mask: np.ndarray, min_length: int = 5, prune_spurs: bool = True) -> list[Segment]:
    """Split a vessel mask (H, W) bool into segments between branch points and ends.

    ``prune_spurs``: a skeleton branch that ends free and is shorter than the vessel's radius
    where it grows (a bump of the mask's edge, not a vessel) is removed first, so that it
    neither becomes a row of its own nor cuts its vessel in two."""
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, bool)
    half_width = ndimage.distance_transform_edt(mask)
    skeleton = skeletonize(mask)
    if prune_spurs:
        skeleton = _without_spurs(skeleton, half_width)
    _, labels, count = _pieces(skeleton)
    _, (near_r, near_c) = ndimage.distance_transform_edt(~skeleton, return_indices=True)
    owner = np.where(mask, labels[near_r, near_c], 0)  # 0: nearest a branch point, or outside
    out = []
    for label in range(1, count + 1):
        line = np.argwhere(labels == label)
        if len(line) < min_length:
            continue
        whole = _ordered(line)
        line = _trimmed(whole, half_width)
        axis, lumen = _axis(line), owner == label
        diameter = _diameter(line, lumen, axis)
        out.append(Segment(len(out) + 1, line, lumen, axis, diameter, whole))
    return out


_EIGHT = np.ones((3, 3), int)


def _neighbours(skeleton: np.ndarray) -> np.ndarray:
    """How many of its 8 neighbours each pixel of the skeleton has."""
    return ndimage.convolve(skeleton.astype(int), _EIGHT, mode="constant") - 1


def _pieces(skeleton: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(branch points, labelled pieces between them, how many pieces) of a skeleton."""
    branch = skeleton & (_neighbours(skeleton) > 2)
    pieces = skeleton & ~ndimage.binary_dilation(branch, np.ones((3, 3), bool))
    labels, count = ndimage.label(pieces, _EIGHT)
    return branch, labels, count


def _without_spurs(skeleton: np.ndarray, half_width: np.ndarray, rounds: int = 3) -> np.ndarray:
    """The skeleton less its spurs: pieces with a free end that touch a branch point and are
    shorter than the largest half-width along them (the vessel's radius where they grow)."""
    from skimage.morphology import skeletonize

    for _ in range(rounds):
        branch, labels, count = _pieces(skeleton)
        if not branch.any():
            break
        ends = skeleton & (_neighbours(skeleton) <= 1)
        zone = ndimage.binary_dilation(branch, np.ones((5, 5), bool))
        spurs = np.zeros_like(skeleton)
        for label in range(1, count + 1):
            piece = labels == label
            length = int(piece.sum())
            if (piece & ends).any() and (piece & zone).any() and length < half_width[piece].max():
                spurs |= piece
        if not spurs.any():
            break
        skeleton = skeleton & ~spurs
        for _ in range(3):  # the stub the spur leaves at its branch point
            loose = skeleton & (_neighbours(skeleton) <= 1) & zone
            if not loose.any():
                break
            skeleton = skeleton & ~loose
        skeleton = skeletonize(skeleton)  # thins what is left of the junction to a line
    return skeleton


def _ordered(line: np.ndarray) -> np.ndarray:
    """Skeleton pixels (K, 2) sorted along the segment's principal direction."""
    centred = line - line.mean(0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    return line[np.argsort(centred @ direction)]


def _trimmed(line: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Drop a half-width of centreline at each end: where a vessel ends, branches or leaves
    the frame, the skeleton bends away from the true centre."""
    cut = int(np.ceil(np.median(half_width[tuple(line.T)]))) + 1
    return line[cut:-cut] if len(line) > 2 * cut + 2 else line


def _diameter(line: np.ndarray, lumen: np.ndarray, axis: np.ndarray) -> float:
    """Lumen area per unit of centreline length, over the centreline's extent: the width of
    the vessel, free of the lattice (a skeleton pixel can sit half a pixel off the centre)."""
    direction = axis[::-1]  # (u, v) -> (row, col)
    extent = line @ direction
    lo, hi = extent.min(), extent.max()
    pixels = np.argwhere(lumen) @ direction
    inside = ((pixels >= lo) & (pixels <= hi)).sum()
    return float(inside / (hi - lo + 1.0)) if hi > lo else float("nan")


def _axis(line: np.ndarray) -> np.ndarray:
    """Unit (u, v) from the first to the last pixel of an ordered centreline."""
    d = (line[-1] - line[0]).astype(float)[::-1]  # (row, col) -> (x, y)
    norm = np.linalg.norm(d)
    return d / norm if norm else np.array([1.0, 0.0])


def _mean(values: np.ndarray) -> float | np.ndarray:
    """The mean over the first axis; NaN (of the right shape) where there is nothing."""
    if len(values):
        return values.mean(0)
    return np.full(values.shape[1:], np.nan) if values.ndim > 1 else np.nan


def measure_map(
    flow: np.ndarray,
    segs: list[Segment],
    errors: np.ndarray | None = None,
    max_error: float | None = None,
) -> Iterator[dict[str, float]]:
    """One flow map (H, W, 2) px/frame -> one row per segment (px units). ``errors`` (H, W):
    each vector's expected error, px/frame; the row gains the lumen's mean expected error,
    and with ``max_error`` only the vectors at or under it are measured (NaN where none is)."""
    for seg in segs:
        along = flow @ seg.axis  # (H, W) px/frame along the segment's axis
        line, lumen = tuple(seg.centreline.T), seg.lumen
        extra = {}
        if errors is not None:
            extra["mean_uncertainty_px_per_frame"] = float(_mean(errors[lumen]))
            if max_error is not None:
                trusted = errors <= max_error
                extra["kept_share"] = float(trusted[lumen].mean()) if lumen.any() else np.nan
                line = tuple(seg.centreline[trusted[line]].T)
                lumen = lumen & trusted
        centre = float(_mean(along[line]))
        mean = float(_mean(along[lumen]))
        mean_vec = _mean(flow[lumen])
        d = seg.diameter_px
        yield {
            "segment": seg.label,
            "centreline_speed_px_per_frame": centre,
            "mean_speed_px_per_frame": mean,
            "diameter_px": d,
            "flow_rate_px3_per_frame": np.pi * d**2 * centre / 8.0,
            "flow_rate_from_mean_px3_per_frame": np.pi * d**2 * mean / 4.0,
            "direction_deg": float(np.degrees(np.arctan2(mean_vec[1], mean_vec[0]))),
            **extra,
        }


def pulsatility_index(speed: np.ndarray) -> float:
    """Gosling's PI of a speed time series: (max - min) / |mean|."""
    mean = abs(float(np.mean(speed)))
    return float((np.max(speed) - np.min(speed)) / mean) if mean > 0 else float("nan")


def _physical(row: dict[str, float], um_per_px: float, fps: float) -> dict[str, float]:
    speed = um_per_px * fps  # µm/s per px/frame
    volume = um_per_px**3 * fps  # µm³/s per px³/frame
    extra = {}
    if "mean_uncertainty_px_per_frame" in row:
        extra["mean_uncertainty_um_per_s"] = row["mean_uncertainty_px_per_frame"] * speed
    return extra | {
        "centreline_speed_um_per_s": row["centreline_speed_px_per_frame"] * speed,
        "mean_speed_um_per_s": row["mean_speed_px_per_frame"] * speed,
        "diameter_um": row["diameter_px"] * um_per_px,
        "flow_rate_um3_per_s": row["flow_rate_px3_per_frame"] * volume,
        "flow_rate_nl_per_min": row["flow_rate_px3_per_frame"] * volume * 60e-6,
    }


def measure(
    flow: Any,
    mask: np.ndarray,
    um_per_px: float | None = None,
    fps: float | None = None,
    min_length: int = 5,
    errors: Any = None,
    max_error: float | None = None,
    prune_spurs: bool = True,
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Tidy rows (one per segment and flow map) and a per-segment summary.

    ``flow``: (T-1, H, W, 2) px/frame (an array or a lazy FlowSequence, read map by map);
    ``mask``: (H, W) bool vessel mask; ``errors``: (T-1, H, W) expected error, px/frame
    (``predict --uncertainty``, read map by map), with ``max_error`` the most a measured
    vector may have (see :func:`measure_map`).
    """
    if mask.shape != tuple(flow.shape[1:3]):
        raise InputError(f"mask {mask.shape} does not fit flow maps {tuple(flow.shape[1:3])}")
    segs = segments(mask, min_length, prune_spurs)
    if not segs:
        raise InputError(f"the mask holds no vessel segment of {min_length} px or more")
    if errors is not None and tuple(errors.shape) != tuple(flow.shape[:3]):
        raise InputError(
            f"the expected error {tuple(errors.shape)} is not for the flow {tuple(flow.shape[:3])}"
        )
    rows = []
    for i in range(len(flow)):
        errors_i = None if errors is None else np.asarray(errors[i], np.float64)
        flow_i = np.asarray(flow[i], np.float64)
        rows += frame_rows(i, flow_i, segs, um_per_px, fps, errors_i, max_error)
    return rows, summarise(rows, segs, um_per_px, fps)


def frame_rows(
    i: int,
    flow_map: np.ndarray,
    segs: list[Segment],
    um_per_px: float | None,
    fps: float | None,
    errors: np.ndarray | None = None,
    max_error: float | None = None,
) -> list[dict[str, float]]:
    """The tidy rows of flow map ``i`` (H, W, 2) px/frame: one per segment."""
    out = []
    for row in measure_map(flow_map, segs, errors, max_error):
        row = {"frame": i, **({"time_s": i / fps} if fps else {}), **row}
        out.append(row | (_physical(row, um_per_px, fps) if um_per_px and fps else {}))
    return out


def summarise(
    rows: list[dict], segs: list[Segment], um_per_px: float | None, fps: float | None
) -> dict[str, Any]:
    """Per segment over the whole clip: mean speed, flow rate, pulsatility, geometry."""
    out = []
    for seg in segs:
        mine = [r for r in rows if r["segment"] == seg.label]
        centre = np.array([r["centreline_speed_px_per_frame"] for r in mine])
        measured = centre[np.isfinite(centre)]  # maps with no trusted vector left are NaN
        rate = np.array([r["flow_rate_px3_per_frame"] for r in mine])
        entry = {
            "segment": seg.label,
            "length_px": seg.length_px,
            "diameter_px": seg.diameter_px,
            "axis_deg": float(np.degrees(np.arctan2(seg.axis[1], seg.axis[0]))),
            "first_end_rc": seg.centreline[0].tolist(),
            "last_end_rc": seg.centreline[-1].tolist(),
            "mean_centreline_speed_px_per_frame": float(_mean(measured)),
            "pulsatility_index": pulsatility_index(measured) if len(measured) else np.nan,
            "mean_flow_rate_px3_per_frame": float(_mean(rate[np.isfinite(rate)])),
            "maps_measured": int(len(measured)),
        }
        if "mean_uncertainty_px_per_frame" in mine[0]:
            entry["mean_uncertainty_px_per_frame"] = float(
                np.nanmean([r["mean_uncertainty_px_per_frame"] for r in mine])
            )
        if um_per_px and fps:
            entry |= {
                "diameter_um": seg.diameter_px * um_per_px,
                "mean_centreline_speed_um_per_s": entry["mean_centreline_speed_px_per_frame"]
                * um_per_px
                * fps,
                "mean_flow_rate_um3_per_s": entry["mean_flow_rate_px3_per_frame"]
                * um_per_px**3
                * fps,
            }
        out.append(entry)
    return {
        "segments": out,
        "assumptions": {
            "flow_rate": POISEUILLE,
            "pulsatility_index": "(max - min) / |mean| of the centreline speed",
        },
        "units": "px, px/frame, px^3/frame"
        + ("; um, um/s, um^3/s, nL/min" if um_per_px and fps else ""),
        "um_per_px": um_per_px,
        "fps": fps,
    }


def rows_to_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def flow_in_px(path: Path) -> tuple[Any, float, dict[str, Any]]:
    """A flow file opened lazily, the factor that brings it to px/frame, and its sidecar
    (``{}`` when there is none): a flow written in µm/s is measured in px/frame here."""
    from flowvid.errors import check_calibration
    from flowvid.io.flowfile import open_flow
    from flowvid.io.outputs import read_sidecar, sidecar_path

    flow = open_flow(path)
    side = read_sidecar(path)
    factor = 1.0
    if side.get("units") == "um/s":
        scale = side.get("um_per_s_per_px_per_frame")
        if not scale:
            raise InputError("the sidecar says um/s but not the calibration", sidecar_path(path))
        check_calibration(um_per_s_per_px_per_frame=scale)
        factor = 1.0 / scale
    return flow, factor, side


def flow_for_video(
    path: Path, frames: int, height: int, width: int
) -> tuple[Scaled, dict, tuple[int, int]]:
    """The flow file for a video of ``frames`` frames of ``width`` x ``height``, lazily in
    px/frame, its sidecar, and the frames it covers, ``(start, stop)``: from the sidecar's
    ``frames`` (``predict --frames A:B``), else the whole video. A flow that does not fit
    the video there is refused."""
    flow, factor, side = flow_in_px(path)
    first = side.get("frames") if isinstance(side.get("frames"), list) else None
    start = first[0] if first and isinstance(first[0], int) and first[0] >= 0 else 0
    stop = start + flow.shape[0] + 1
    if stop > frames or tuple(flow.shape[1:3]) != (height, width):
        where = f" from frame {start}" if start else ""
        raise InputError(
            f"flow {tuple(flow.shape[:3])}{where} does not fit the video "
            f"({frames} frames of {width}x{height})",
            path,
        )
    if first is None and stop != frames:
        raise InputError(
            f"flow {tuple(flow.shape[:3])} does not fit the video ({frames} frames of "
            f"{width}x{height}), and no sidecar says which frames it covers",
            path,
        )
    return Scaled(flow, factor), side, (start, stop)


class Scaled:
    """A lazy flow sequence times a factor."""

    def __init__(self, flow: Any, factor: float) -> None:
        self.flow, self.factor, self.shape = flow, factor, flow.shape

    def __len__(self) -> int:
        return len(self.flow)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flow[i] * self.factor

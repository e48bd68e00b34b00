"""``flowvid eval``: the model and classical optical flow on the same clips and frames.

Methods: the flowvid model (streamed like ``predict``), and with ``baselines`` zero flow,
OpenCV Farneback and OpenCV DIS (medium preset), each also averaged over 3 consecutive maps
(``farneback_t3``, ``dis_medium_t3``: classical flow that pools frames, as a video model
does). All are scored by :mod:`flowvid.metrics` per clip and overall, timed in milliseconds
per frame, and written as report.json, report.md and PNG plots (EPE per clip per method;
EPE against true speed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from flowvid.data.clips import describe
from flowvid.data.dataset import Clip, load_dataset
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output, claim_folder
from flowvid.io.flowfile import open_flow
from flowvid.io.masks import read_mask
from flowvid.io.video import open_video
from flowvid.metrics import REGIONS, Calibration, ErrorStats, epe_map, regions
from flowvid.models import FlowVid
from flowvid.predict.classical import TEMPORAL_WINDOW, centred_means, dis_medium, farneback
from flowvid.predict.stream import check_precision, precision_name, resolve_device, stream_outputs

FlowMethod = Callable[[Clip, int], Iterator[np.ndarray]]  # yields (m, H, W, 2) chunks in order


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def two_frame_method(compute: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FlowMethod:
    def run(clip: Clip, frames: int) -> Iterator[np.ndarray]:
        with open_video(clip.video) as video:
            prev = None
            for frame in video.iter_frames(0, frames):
                gray = _gray(frame)
                if prev is not None:
                    yield compute(prev, gray)[None].astype(np.float32)
                prev = gray

    return run


def temporal_mean(method: FlowMethod, window: int = TEMPORAL_WINDOW) -> FlowMethod:
    """A classical method that pools frames too: each of its maps averaged with its
    neighbours in time, ``window`` (odd) consecutive maps centred on it (fewer at the clip's
    ends). Blood flow changes slowly from frame to frame, so this takes noise out of a
    two-frame method the way a video model's memory can; a constant flow is left as it is."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the window is an odd number of maps, not {window}")
    half = window // 2

    def run(clip: Clip, frames: int) -> Iterator[np.ndarray]:
        yield from centred_means((m for chunk in method(clip, frames) for m in chunk), half)

    return run


def zero_flow(clip: Clip, frames: int) -> Iterator[np.ndarray]:
    with open_video(clip.video) as video:
        h, w = video.height, video.width
    for _ in range(frames - 1):
        yield np.zeros((1, h, w, 2), np.float32)


# the classical methods `eval --baselines` scores: two-frame, and averaged over 3 maps
BASELINES: dict[str, FlowMethod] = {
    "zero": zero_flow,
    "farneback": two_frame_method(farneback),
    "dis_medium": two_frame_method(dis_medium),
    "farneback_t3": temporal_mean(two_frame_method(farneback)),
    "dis_medium_t3": temporal_mean(two_frame_method(dis_medium)),
}


def model_method(
    model: FlowVid,
    device: torch.device,
    batch_frames: int,
    max_side: int | None,
    precision: str = "auto",
) -> FlowMethod:
    """The model's flow; with its expected error as a third channel where it has the head."""
    uncertainty = getattr(model, "error_head", None) is not None

    def run(clip: Clip, frames: int) -> Iterator[np.ndarray]:
        with open_video(clip.video) as reader:
            yield from stream_outputs(
                model,
                reader,
                0,
                frames,
                device,
                batch_frames,
                max_side,
                precision=precision,
                uncertainty=uncertainty,
            )

    return run


def score_clip(
    clip: Clip, frames: int, method: FlowMethod
) -> tuple[ErrorStats, dict[str, Calibration] | None, float]:
    """Run ``method`` over a clip against its ground truth: (stats, calibration per region
    where the method gives each vector's expected error as a third channel, ms per frame)."""
    gt = open_flow(clip.flow)
    with open_video(clip.video) as v:
        h, w = v.height, v.width
    mask = read_mask(clip.mask, frames - 1, h, w) if clip.mask else np.ones((1, h, w), bool)
    stats, calibration, done, seconds = ErrorStats(), None, 0, 0.0
    outputs = method(clip, frames)
    while True:
        start = time.perf_counter()
        chunk = next(outputs, None)
        seconds += time.perf_counter() - start
        if chunk is None:
            break
        for k in range(len(chunk)):
            i = done + k
            valid = gt.valid(i)
            truth = gt[i]
            ok = np.isfinite(truth).all(-1) if valid is None else valid & np.isfinite(truth).all(-1)
            truth, where = np.nan_to_num(truth), mask[min(i, len(mask) - 1)]
            stats.update(chunk[k, ..., :2], truth, where, ok)
            if chunk.shape[-1] == 3:
                calibration = calibration or {r: Calibration() for r in REGIONS}
                epe = epe_map(chunk[k, ..., :2], truth)
                for region, px in regions(where, ok).items():
                    calibration[region].update(epe[px], chunk[k, ..., 2][px])
        done += len(chunk)
    if done != frames - 1:
        raise InputError(f"method produced {done} maps for {frames - 1} pairs", clip.video)
    return stats, calibration, 1000.0 * seconds / max(done, 1)


def _score_all(
    clips: list[Clip], methods: dict[str, FlowMethod], split: str, progress: bool
) -> tuple[dict, dict[str, ErrorStats], dict[str, dict[str, Calibration]], dict[str, list]]:
    """Every method on every clip: per-clip summaries, the statistics pooled over the clips,
    the expected error's calibration (methods that state one) and the times per frame."""
    infos = {i.clip.name: i for i in describe(clips)}
    per_clip: dict[str, dict] = {}
    pooled = {name: ErrorStats() for name in methods}
    calibration: dict[str, dict[str, Calibration]] = {}
    times: dict[str, list] = {name: [] for name in methods}
    for clip in tqdm(clips, desc=f"eval {split}", unit="clip", disable=not progress):
        frames = infos[clip.name].frames
        per_clip[clip.name] = {"frames": frames, "meta": clip.meta}
        for name, method in methods.items():
            stats, calib, ms = score_clip(clip, frames, method)
            per_clip[clip.name][name] = {**stats.summary(), "ms_per_frame": ms}
            pooled[name].merge(stats)
            if calib is not None:
                into = calibration.setdefault(name, {r: Calibration() for r in REGIONS})
                for region, c in calib.items():
                    into[region].merge(c)
            times[name].append(ms)
    return per_clip, pooled, calibration, times


def evaluate(
    data_root: str | Path,
    split: str = "test",
    model: FlowVid | None = None,
    baselines: bool = False,
    out_dir: str | Path = "eval_report",
    device: str = "auto",
    batch_frames: int = 16,
    max_side: int | None = None,
    progress: bool = True,
    precision: str = "auto",
    overwrite: bool = False,
) -> dict:
    """Score every clip of ``split``; write report.json, report.md and plots to ``out_dir``
    (claimed before any work: :func:`~flowvid.io.atomic.claim_folder`, ``overwrite`` as
    there). ``precision``: the model's, as for :func:`flowvid.predict.inference.predict_flow`."""
    data = load_dataset(data_root)
    clips = data.split(split)
    if not clips:
        raise InputError(f"no clips in split {split!r}", data_root)
    dev = None if model is None else resolve_device(device)
    methods: dict[str, FlowMethod] = {}
    if model is not None:
        check_precision(precision, dev)
        model = model.to(dev).eval()
        methods["flowvid"] = model_method(model, dev, batch_frames, max_side, precision)
    if baselines:
        methods.update(BASELINES)
    if not methods:
        raise InputError("nothing to evaluate: give a checkpoint, or --baselines")
    claim_folder(out_dir, overwrite)
    per_clip, pooled, calibration, times = _score_all(clips, methods, split, progress)
    report = _report(data_root, split, per_clip, pooled, times)
    if calibration:
        report["calibration"] = {
            name: {region: c.summary() for region, c in by_region.items()}
            for name, by_region in calibration.items()
        }
    if model is not None:
        report["precision"] = precision_name(precision, dev)
    write_report(Path(out_dir), report)
    return report


def _report(root: str | Path, split: str, per_clip: dict, pooled: dict, times: dict) -> dict:
    methods = list(pooled)
    overall = {}
    for name in methods:
        clip_epes = [c[name]["epe_vessel"] for c in per_clip.values()]
        overall[name] = {
            **pooled[name].summary(),
            "clip_mean_epe_vessel": float(np.nanmean(clip_epes)),
            "clip_median_epe_vessel": float(np.nanmedian(clip_epes)),
            "ms_per_frame": float(np.mean(times[name])),
        }
    return {
        "data": str(root),
        "split": split,
        "clips": len(per_clip),
        "units": "px/frame",
        "metrics": "EPE = |pred - gt|; AE in degrees (Barron); Fl: EPE > 3 px and > 5 % of |gt|; "
        "medians to 0.005 px; pooled over pixels unless named clip_*",
        "overall": overall,
        "speed_curve": {name: pooled[name].speed_curve() for name in methods},
        "per_clip": per_clip,
    }


def write_report(out_dir: Path, report: dict) -> None:
    from flowvid.lab.report import (
        plot_per_clip,
        plot_sparsification,
        plot_speed_curve,
        render_markdown,
    )

    claim_folder(out_dir, overwrite=True)  # the caller claimed it (or owns it)
    with atomic_output(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    with atomic_output(out_dir / "report.md") as tmp:
        tmp.write_text(render_markdown(report))
    plot_per_clip(report, out_dir / "epe_per_clip.png")
    plot_speed_curve(report, out_dir / "epe_vs_speed.png")
    if report.get("calibration"):
        plot_sparsification(report, out_dir / "sparsification.png")


def motion_suite(
    model: FlowVid | None,
    out_dir: str | Path,
    device: str = "auto",
    size: int = 128,
    frames: int = 6,
    overwrite: bool = False,
) -> str:
    """The motion sanity suite (:mod:`flowvid.lab.sanity`) for the model and Farneback/DIS;
    writes motion_suite.md and motion_suite.json to ``out_dir`` and returns the table."""
    from flowvid.lab import sanity

    if size < 64:  # the 20 px/frame case keeps a 24 px border out of the score
        raise InputError(f"--size must be at least 64 for the motion suite, not {size}")
    out = claim_folder(out_dir, overwrite)
    methods: dict[str, sanity.Method] = {}
    if model is not None:
        dev = resolve_device(device)
        methods["flowvid"] = sanity.model_method(model.to(dev).eval(), dev)
    methods.update(sanity.classical_methods())
    rows = sanity.run_suite(methods, size=size, frames=frames)
    header = (
        f"Motion sanity suite: {size}x{size}, {frames} frames per case; EPE in px/frame, "
        "mean over all pairs, away from the border."
    )
    md = sanity.render_markdown(rows, list(methods), header + "\n")
    with atomic_output(out / "motion_suite.json") as tmp:
        tmp.write_text(json.dumps({"size": size, "frames": frames, "rows": rows}, indent=2))
    with atomic_output(out / "motion_suite.md") as tmp:
        tmp.write_text(md)
    return md

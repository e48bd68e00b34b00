"""Predict flow for many videos into one folder, resumably.

Each video's flow goes to ``<out_dir>/<video stem>.<format>`` with its sidecar. A video whose
output and sidecar are already there, made by the same checkpoint with the same options
(``request``: range, units, calibration, working size, precision) from the same input (its
path, size and modification time, as the sidecar records them), is skipped, so a batch
stopped by a time limit goes on where it stopped when run again; anything else is redone,
and the batch says why. Outputs are written
atomically: a stopped batch leaves finished outputs and nothing half-written. A video that
cannot be read is reported and the batch goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowvid.errors import InputError
from flowvid.io.atomic import claim_folder
from flowvid.io.outputs import sidecar_path
from flowvid.io.reader import IMAGE_SUFFIXES, TIFF_SUFFIXES, VIDEO_SUFFIXES

FORMATS = ("npy", "npz", "h5", "mat")


@dataclass
class BatchSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # finished by an earlier run
    failed: dict[Path, str] = field(default_factory=dict)  # video -> why

    def __str__(self) -> str:
        text = (
            f"{len(self.written)} written, {len(self.skipped)} already done (skipped), "
            f"{len(self.failed)} failed"
        )
        return text + "".join(f"\n  - {video}: {why}" for video, why in self.failed.items())


def expand_videos(paths: Sequence[str | Path]) -> list[Path]:
    """Videos from files and folders: a folder holding video files gives those (sorted, not
    recursive); a folder of image frames is one video."""
    videos: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            videos.append(path)
            continue
        inside = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES + TIFF_SUFFIXES
        )
        frames = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
        if inside:
            videos += inside
        elif frames:
            videos.append(path)
        else:
            raise InputError("folder holds no videos and no frames", path)
    stems: dict[str, Path] = {}
    for video in videos:
        other = stems.setdefault(video.stem, video)
        if other != video:
            raise InputError(f"two videos would write {video.stem}: {other} and {video}")
    return videos


def stale(
    out: Path, video: Path, checkpoint_sha256: str | None, request: dict | None = None
) -> str | None:
    """Why the output must be (re)made, or None when it is there and up to date: made from
    this video as it is now (path, size, modification time), by this checkpoint, with these
    options (``request``, as :func:`flowvid.predict.inference.predict_flow` records them)."""
    from flowvid.predict.inference import input_stat

    side = sidecar_path(out)
    if not (out.exists() and side.is_file()):
        return "not done yet"
    try:
        doc = json.loads(side.read_text())
    except (OSError, ValueError):
        return "its sidecar cannot be read"
    if not isinstance(doc, dict) or doc.get("video") != str(video):
        return "made from another video"
    if checkpoint_sha256 is not None and doc.get("checkpoint_sha256") != checkpoint_sha256:
        return "made by another checkpoint or method"
    if doc.get("video_stat") != input_stat(video):
        return "the video changed since (size or modification time)"
    if request is not None and doc.get("request") != request:
        old = doc.get("request") or {}
        changed = sorted(k for k in {*old, *request} if old.get(k) != request.get(k))
        return f"made with other options ({', '.join(changed)})"
    return None


def predict_many(
    predict: Callable[[Path, Path], Any],
    videos: Sequence[str | Path],
    out_dir: str | Path,
    fmt: str = "npy",
    checkpoint_sha256: str | None = None,
    report: Callable[[str], None] = print,
    request: dict | None = None,
    overwrite: bool = False,
) -> BatchSummary:
    """Call ``predict(video, out)`` for every video whose output is not up to date
    (:func:`stale`); bad input is recorded and the batch goes on (anything else, Ctrl-C and
    SIGTERM included, stops it). ``out_dir`` is claimed first
    (:func:`~flowvid.io.atomic.claim_folder`; ``overwrite`` as there)."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {FORMATS}, not {fmt!r}")
    todo = expand_videos(videos)  # bad input first: it leaves no folder behind
    out_dir = claim_folder(out_dir, overwrite)
    summary = BatchSummary()
    for i, video in enumerate(todo, 1):
        out = out_dir / f"{video.stem}.{fmt}"
        why = stale(out, video, checkpoint_sha256, request)
        if why is None:
            summary.skipped.append(out)
            continue
        redo = "" if why == "not done yet" else f" (again: {why})"
        report(f"[{i}/{len(todo)}] {video} -> {out}{redo}")
        try:
            predict(video, out)
        except InputError as err:
            summary.failed[video] = str(err)
            report(f"  failed: {err}")
            continue
        summary.written.append(out)
    return summary

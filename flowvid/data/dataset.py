"""The dataset folder layout, its metadata, splits, and validation.

::

    my_dataset/
      dataset.yaml          # optional: fps, um_per_px, split, per-clip metadata, notes
      videos/<clip>.mp4     # or .avi/.mov/.mkv, a multi-page .tif, or a folder of frames
      flow/<clip>.npy       # (T-1,H,W,2) px/frame -- or .npz, or flow/<clip>/ per-pair files
      masks/<clip>.png      # optional: static (H,W); or <clip>.npy, (H,W) or (T-1,H,W)

Splits are by clip, never by frame. :func:`validate_dataset` lists every problem at
once, each with the file and the fix; :func:`load_dataset` raises them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from flowvid.errors import DatasetError, FlowFormatError, InputError, VideoError
from flowvid.io.flowfile import FlowSequence, open_flow
from flowvid.io.masks import read_mask
from flowvid.io.video import TIFF_SUFFIXES, VIDEO_SUFFIXES, open_video

SPLITS = ("train", "val", "test")
TOP_KEYS = {"name", "fps", "um_per_px", "flow_units", "notes", "split", "clips", "generator"}
CLIP_KEYS = {"fps", "um_per_px", "meta"}
FLOW_CHUNK = 16  # flow maps read at once when scanning for non-finite values


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where, what, and how to fix it."""

    path: Path
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f" -> {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Clip:
    """One clip of a dataset and where its files are."""

    name: str
    video: Path
    flow: Path
    mask: Path | None
    split: str
    fps: float | None
    um_per_px: float | None
    meta: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Dataset:
    root: Path
    clips: list[Clip]
    fps: float | None = None
    um_per_px: float | None = None
    notes: str = ""

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]


def default_split(names: list[str], seed: int = 0) -> dict[str, str]:
    """Deterministic 80/10/10 split by clip: at least one val and one test clip from 3 clips."""
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(0.1 * n)) if n >= 3 else 0
    n_val = max(1, round(0.1 * n)) if n >= 2 else 0
    split = {name: "test" for name in order[:n_test]}
    split.update({name: "val" for name in order[n_test : n_test + n_val]})
    split.update({name: "train" for name in order[n_test + n_val :]})
    return split


# ----------------------------------------------------------------------------- layout


def _entries(
    folder: Path, suffixes: tuple[str, ...], dirs: bool
) -> tuple[dict[str, list[Path]], list[Path]]:
    """Clip name -> matching files (or sub-folders) in ``folder``; plus what does not match."""
    found: dict[str, list[Path]] = {}
    other: list[Path] = []
    if not folder.is_dir():
        return found, other
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if (p.is_dir() and dirs) or (p.is_file() and p.suffix.lower() in suffixes):
            found.setdefault(p.stem if p.is_file() else p.name, []).append(p)
        else:
            other.append(p)
    return found, other


def _read_meta(root: Path, problems: list[Problem]) -> dict:
    path = root / "dataset.yaml"
    if not path.is_file():
        return {}
    try:
        meta = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        problems.append(Problem(path, f"is not valid YAML ({err})", "fix the syntax"))
        return {}
    if not isinstance(meta, dict):
        problems.append(
            Problem(path, "must be a mapping of keys to values", "see data_cards/TEMPLATE.md")
        )
        return {}
    unknown = set(meta) - TOP_KEYS
    if unknown:
        problems.append(
            Problem(path, f"unknown keys {sorted(unknown)}", f"use only {sorted(TOP_KEYS)}")
        )
    for key in ("fps", "um_per_px"):
        if not _positive_or_none(meta.get(key)):
            problems.append(Problem(path, f"{key} must be a positive number, not {meta[key]!r}"))
            meta[key] = None
    for key in ("name", "notes", "flow_units"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            problems.append(Problem(path, f"{key} must be text, not {meta[key]!r}"))
            meta[key] = None
    meta["clips"] = _clip_meta(path, meta.get("clips"), problems)
    return meta


def _positive_or_none(value: object) -> bool:
    if value is None:
        return True
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and bool(np.isfinite(value)) and value > 0


def _clip_meta(path: Path, given: object, problems: list[Problem]) -> dict[str, dict]:
    """``clips:``, a mapping of clip name to {fps, um_per_px, meta}; what is wrong is dropped
    (and listed)."""
    if given is None:
        return {}
    fix = "clips: {<clip>: {fps: 100, um_per_px: 0.8, meta: {...}}}"
    if not isinstance(given, dict):
        problems.append(Problem(path, f"clips must be a mapping of clip names, not {given!r}", fix))
        return {}
    out: dict[str, dict] = {}
    for name, entry in given.items():
        entry = {} if entry is None else entry
        if not isinstance(entry, dict) or set(entry) - CLIP_KEYS:
            problems.append(Problem(path, f"clips: {name!r} must map {sorted(CLIP_KEYS)}", fix))
            continue
        bad = [k for k in ("fps", "um_per_px") if not _positive_or_none(entry.get(k))]
        if bad or not isinstance(entry.get("meta", {}), dict):
            problems.append(Problem(path, f"clips: {name!r} has a bad {bad or 'meta'}", fix))
            continue
        out[str(name)] = entry
    return out


def _split_from_meta(
    path: Path, meta: dict, names: list[str], problems: list[Problem]
) -> dict[str, str]:
    given = meta.get("split")
    if not given:
        return default_split(names)
    if not isinstance(given, dict) or set(given) - set(SPLITS):
        problems.append(Problem(path, f"split must map {SPLITS} to lists of clip names"))
        return default_split(names)
    split: dict[str, str] = {}
    for name, clips in given.items():
        if clips is not None and (
            not isinstance(clips, list) or not all(isinstance(c, str) for c in clips)
        ):
            problems.append(Problem(path, f"split: {name} must be a list of clip names"))
            continue
        for clip in clips or []:
            if clip in split:
                problems.append(Problem(path, f"clip {clip!r} is in both {split[clip]} and {name}"))
            elif clip not in names:
                problems.append(
                    Problem(path, f"split lists {clip!r}, which has no video", "remove it")
                )
            split[clip] = name
    missing = [n for n in names if n not in split]
    if missing:
        problems.append(Problem(path, f"clips in no split: {missing}", "add them to split"))
    return split


def scan_dataset(root: str | Path) -> tuple[Dataset, list[Problem]]:
    """Match videos, flows and masks by clip name (no decoding); list layout problems."""
    root = Path(root)
    problems: list[Problem] = []
    if not root.is_dir():
        raise DatasetError("no such dataset folder", root)
    meta = _read_meta(root, problems)
    videos, stray = _entries(root / "videos", VIDEO_SUFFIXES + TIFF_SUFFIXES, dirs=True)
    flows, stray_flow = _entries(root / "flow", (".npy", ".npz", ".flo"), dirs=True)
    masks, stray_mask = _entries(root / "masks", (".png", ".npy"), dirs=False)
    if not videos:
        problems.append(Problem(root / "videos", "holds no videos", "put <clip>.mp4 files there"))
    for p in stray + stray_flow + stray_mask:
        problems.append(
            Problem(p, "is not a file flowvid reads here", "move it out of the dataset")
        )
    for kind, found in (("video", videos), ("flow", flows), ("mask", masks)):
        for name, paths in found.items():
            if len(paths) > 1:
                problems.append(
                    Problem(paths[0], f"{len(paths)} {kind}s for clip {name!r}", "keep one")
                )
    for name, paths in flows.items():
        if name not in videos:
            problems.append(
                Problem(paths[0], "flow without a video", f"add videos/{name}.mp4 or remove it")
            )
    for name, paths in masks.items():
        if name not in videos:
            problems.append(
                Problem(paths[0], "mask without a video", f"add videos/{name}.mp4 or remove it")
            )
    split = _split_from_meta(root / "dataset.yaml", meta, sorted(videos), problems)
    per_clip = meta.get("clips", {})
    clips = []
    for name in sorted(videos):
        if name not in flows:
            problems.append(Problem(videos[name][0], "video without flow", f"add flow/{name}.npy"))
            continue
        extra = per_clip.get(name) or {}
        clips.append(
            Clip(
                name,
                videos[name][0],
                flows[name][0],
                masks.get(name, [None])[0],
                split.get(name, "train"),
                extra.get("fps", meta.get("fps")),
                extra.get("um_per_px", meta.get("um_per_px")),
                extra.get("meta") or {},
            )
        )
    data = Dataset(root, clips, meta.get("fps"), meta.get("um_per_px"), meta.get("notes") or "")
    return data, problems


# ----------------------------------------------------------------------------- contents


def _nonfinite_pairs(flow: FlowSequence) -> list[int]:
    bad: list[int] = []
    for start in range(0, len(flow), FLOW_CHUNK):
        chunk = flow[start : start + FLOW_CHUNK]
        bad += (start + np.flatnonzero(~np.isfinite(chunk).all(axis=(1, 2, 3)))).tolist()
    return bad


def check_clip(clip: Clip) -> list[Problem]:
    """Decode-level checks of one clip: readable, T vs T-1, sizes, finite flow, mask."""
    try:
        with open_video(clip.video) as video:
            frames, height, width = video.num_frames, video.height, video.width
    except (VideoError, OSError) as err:
        reason = str(err).removeprefix(f"{clip.video}: ")
        return [
            Problem(
                clip.video,
                f"cannot be decoded ({reason})",
                "re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4",
            )
        ]
    problems = []
    if frames < 2:
        problems.append(Problem(clip.video, f"has {frames} frame(s); flow needs at least 2"))
    try:
        flow = open_flow(clip.flow)
    except FlowFormatError as err:
        return [*problems, Problem(clip.flow, str(err).removeprefix(f"{clip.flow}: "))]
    n, fh, fw = flow.shape[:3]
    if n != frames - 1:
        fix = (
            "flow[i] maps frame i to i+1, so T frames have T-1 maps: drop the extra map"
            if n == frames
            else f"provide {frames - 1} flow maps"
        )
        problems.append(Problem(clip.flow, f"has {n} flow maps for {frames} frames", fix))
    if (fh, fw) != (height, width):
        problems.append(Problem(clip.flow, f"flow is {fw}x{fh} but the video is {width}x{height}"))
    bad = _nonfinite_pairs(flow) if (fh, fw) == (height, width) else []
    if bad:
        problems.append(
            Problem(
                clip.flow,
                f"non-finite values in {len(bad)} maps (first: {bad[:5]})",
                "set unknown vectors to 0 and mark them invalid in masks/<clip>.npy",
            )
        )
    if clip.mask is not None:
        try:
            read_mask(clip.mask, max(frames - 1, 1), height, width)
        except InputError as err:
            problems.append(Problem(clip.mask, str(err).removeprefix(f"{clip.mask}: ")))
    return problems


def validate_dataset(root: str | Path) -> list[Problem]:
    """Every problem of a dataset folder, layout and contents, in one list."""
    data, problems = scan_dataset(root)
    for clip in data.clips:
        problems += check_clip(clip)
    return problems


def load_dataset(root: str | Path, check: bool = True) -> Dataset:
    """The dataset at ``root``; raises :class:`DatasetError` listing every problem found."""
    data, problems = scan_dataset(root)
    if check:
        for clip in data.clips:
            problems += check_clip(clip)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise DatasetError(f"{len(problems)} problem(s):\n{listing}", root)
    return data

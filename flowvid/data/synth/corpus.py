"""Write a synthetic corpus in the dataset layout (``flowvid synth``).

Clips are rendered in parallel, one process per clip, each from its own child of one
``SeedSequence``: the corpus is the same for a seed whatever the number of workers.
Each clip streams to disk frame by frame, so memory does not grow with its length.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from flowvid import __version__
from flowvid.data.dataset import default_split
from flowvid.data.synth.motion import MotionConfig, MotionRenderer
from flowvid.data.synth.synthetic import ClipRenderer, SynthConfig
from flowvid.errors import InputError
from flowvid.io.atomic import MARKER, atomic_output, reserved_memmap
from flowvid.io.masks import write_png_mask
from flowvid.io.video import VideoWriter

Renderer = ClipRenderer | MotionRenderer
GeneratorConfig = SynthConfig | MotionConfig
KIND_OF = {SynthConfig: "vessels", MotionConfig: "motion"}
PREFIX = {"vessels": "vessel", "motion": "motion"}
NOTES = {
    "vessels": "Procedural bright-field vessel microscopy; see data_cards/synthetic_vessels.md.",
    "motion": "Generic layered motion (mask = matched pixels); see data_cards/synthetic_motion.md.",
}


def clip_name(i: int, kind: str = "vessels") -> str:
    return f"{PREFIX[kind]}_{i:03d}"


def make_renderer(cfg: GeneratorConfig, rng: np.random.Generator) -> Renderer:
    """The renderer for a generator config: vessels (SynthConfig) or motion (MotionConfig)."""
    return MotionRenderer(cfg, rng) if isinstance(cfg, MotionConfig) else ClipRenderer(cfg, rng)


def write_clip(root: Path, name: str, cfg: GeneratorConfig, seed: np.random.SeedSequence) -> dict:
    """Render one clip into ``root`` (video, flow, mask) in one pass; return its metadata."""
    renderer = make_renderer(cfg, np.random.default_rng(seed))
    shape = (cfg.frames - 1, cfg.size, cfg.size)
    static = renderer.static_mask
    mask_path = root / "masks" / f"{name}.{'png' if static else 'npy'}"
    with (
        atomic_output(root / "flow" / f"{name}.npy") as flow_tmp,
        atomic_output(mask_path) as mask_tmp,
    ):
        flow = reserved_memmap(flow_tmp, np.float32, (*shape, 2))
        masks = None if static else reserved_memmap(mask_tmp, bool, shape)
        with VideoWriter(
            root / "videos" / f"{name}.mp4", cfg.fps, crf=renderer.params.crf
        ) as video:
            for i in range(cfg.frames):
                video.write(renderer.frame(i))
                if i < cfg.frames - 1:
                    flow[i] = renderer.flow(i)
                    if masks is not None:
                        masks[i] = renderer.mask(i)
        for arr in (flow, masks):
            if arr is not None:
                arr.flush()
        del flow, masks
        if static:
            write_png_mask(mask_tmp, renderer.mask(0))
    return renderer.describe()


def _one_thread() -> None:
    """Pool workers render one clip each with one torch thread, like DataLoader workers: a
    forked child must not start OpenMP threads its parent had already started (it hangs)."""
    import torch

    torch.set_num_threads(1)


def _check_target(out: Path, force: bool) -> bool:
    """Whether ``out`` is new (or empty): a corpus folder that an interrupted run left (marked,
    no dataset.yaml yet) is taken up again; any other non-empty folder needs ``force``."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder; choose another --out", out)
    if not out.is_dir() or not any(out.iterdir()):
        return True
    unfinished = (out / MARKER).is_file() and not (out / "dataset.yaml").exists()
    if not unfinished and not force:
        raise InputError("is not empty; choose another --out or pass --force to add to it", out)
    return False


def write_corpus(
    out: str | Path,
    videos: int = 50,
    cfg: GeneratorConfig | None = None,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    split: str | None = None,
) -> Path:
    """Write ``videos`` synthetic clips to ``out`` in the dataset layout, with dataset.yaml.

    ``cfg`` picks the generator: :class:`SynthConfig` (vessels, the default) or
    :class:`~flowvid.data.synth.motion.MotionConfig` (generic motion). ``split`` puts every clip in
    one split (e.g. "test" for an evaluation-only corpus); default: 80/10/10 by clip.
    """
    out = Path(out)
    cfg = cfg or SynthConfig()
    if videos < 1:
        raise InputError(f"--videos must be at least 1, not {videos}")
    fresh, existed = _check_target(out, force), out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:  # marks the corpus as unfinished until its dataset.yaml is written
            (out / MARKER).write_text(
                "an unfinished corpus of flowvid synth; a rerun finishes it\n"
            )
        for sub in ("videos", "flow", "masks"):
            (out / sub).mkdir(exist_ok=True)
        _write_clips(out, videos, cfg, seed, workers, progress, split)
    except BaseException:
        if fresh:  # nothing of the user's was there: nothing half-made stays
            for part in out.iterdir() if existed else ():
                shutil.rmtree(part) if part.is_dir() else part.unlink()
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
        raise
    (out / MARKER).unlink(missing_ok=True)  # finished: a folder like any other
    return out


def _write_clips(
    out: Path,
    videos: int,
    cfg: GeneratorConfig,
    seed: int,
    workers: int | None,
    progress: bool,
    split: str | None,
) -> None:
    names = [clip_name(i, KIND_OF[type(cfg)]) for i in range(videos)]
    seeds = np.random.SeedSequence(seed).spawn(videos)
    workers = max(1, min(workers or os.cpu_count() or 1, videos))
    start = time.perf_counter()
    meta: dict[str, dict] = {}
    if workers == 1:  # in this process: nothing to fork
        for name, s in tqdm(
            list(zip(names, seeds, strict=True)), desc="synth", unit="clip", disable=not progress
        ):
            meta[name] = write_clip(out, name, cfg, s)
    else:
        with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
            jobs = {
                name: pool.submit(write_clip, out, name, cfg, s)
                for name, s in zip(names, seeds, strict=True)
            }
            for name in tqdm(names, desc="synth", unit="clip", disable=not progress):
                meta[name] = jobs[name].result()
    _write_metadata(out, cfg, seed, names, meta, time.perf_counter() - start, split)


def _write_metadata(
    out: Path,
    cfg: GeneratorConfig,
    seed: int,
    names: list[str],
    meta: dict,
    seconds: float,
    only: str | None = None,
) -> None:
    split = {n: only for n in names} if only else default_split(names)
    kind = KIND_OF[type(cfg)]
    doc = {
        "name": f"synthetic_{kind}",
        "fps": cfg.fps,
        **({"um_per_px": cfg.um_per_px} if kind == "vessels" else {}),
        "flow_units": "px/frame; flow[i] moves frame i to i+1; u right, v down",
        "notes": NOTES[kind],
        "generator": {
            "flowvid": __version__,
            "seed": seed,
            "seconds": round(seconds, 1),
            "config": json.loads(json.dumps(asdict(cfg))),
        },
        "split": {s: [n for n in names if split[n] == s] for s in ("train", "val", "test")},
        "clips": {n: {"meta": json.loads(json.dumps(meta[n], default=float))} for n in names},
    }
    with atomic_output(out / "dataset.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))

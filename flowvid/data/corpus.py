"""Write a synthetic corpus in the dataset layout (``flowvid synth``).

Clips are rendered in parallel, one process per clip, each from its own child of one
``SeedSequence``: the corpus is the same for a seed whatever the number of workers.
Each clip streams to disk frame by frame, so memory does not grow with its length.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from flowvid import __version__
from flowvid.data.dataset import default_split
from flowvid.data.synthetic import ClipRenderer, SynthConfig
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output
from flowvid.io.video import VideoWriter
from flowvid.viz import flow_to_color, robust_max_speed


def clip_name(i: int) -> str:
    return f"vessel_{i:03d}"


def write_clip(root: Path, name: str, cfg: SynthConfig, seed: np.random.SeedSequence) -> dict:
    """Render one clip into ``root`` (video, flow, mask); return its metadata."""
    renderer = ClipRenderer(cfg, np.random.default_rng(seed))
    shape = (cfg.frames - 1, cfg.size, cfg.size, 2)
    with atomic_output(root / "flow" / f"{name}.npy") as flow_tmp:
        flow = np.lib.format.open_memmap(flow_tmp, mode="w+", dtype=np.float32, shape=shape)
        with VideoWriter(
            root / "videos" / f"{name}.mp4", cfg.fps, crf=renderer.params.crf
        ) as video:
            for i in range(cfg.frames):
                video.write(renderer.frame(i))
                if i < cfg.frames - 1:
                    flow[i] = renderer.flow(i)
        flow.flush()
        del flow
    _write_mask(root, name, renderer)
    return renderer.describe()


def _write_mask(root: Path, name: str, renderer: ClipRenderer) -> None:
    from PIL import Image

    if renderer.static_mask:
        with atomic_output(root / "masks" / f"{name}.png") as tmp:
            Image.fromarray(renderer.mask(0).astype(np.uint8) * 255).save(tmp, format="PNG")
        return
    with atomic_output(root / "masks" / f"{name}.npy") as tmp:
        masks = np.lib.format.open_memmap(
            tmp,
            mode="w+",
            dtype=bool,
            shape=(renderer.cfg.frames - 1, renderer.cfg.size, renderer.cfg.size),
        )
        for i in range(len(masks)):
            masks[i] = renderer.mask(i)
        masks.flush()
        del masks


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder; choose another --out", out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError("is not empty; choose another --out or pass --force to add to it", out)


def write_corpus(
    out: str | Path,
    videos: int = 50,
    cfg: SynthConfig | None = None,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``videos`` synthetic clips to ``out`` in the dataset layout, with dataset.yaml."""
    out = Path(out)
    cfg = cfg or SynthConfig()
    if videos < 1:
        raise InputError(f"--videos must be at least 1, not {videos}")
    _check_target(out, force)
    for sub in ("videos", "flow", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = [clip_name(i) for i in range(videos)]
    seeds = np.random.SeedSequence(seed).spawn(videos)
    workers = max(1, min(workers or os.cpu_count() or 1, videos))
    start = time.perf_counter()
    meta: dict[str, dict] = {}
    with ProcessPoolExecutor(workers) as pool:
        jobs = {
            name: pool.submit(write_clip, out, name, cfg, s)
            for name, s in zip(names, seeds, strict=True)
        }
        for name in tqdm(names, desc="synth", unit="clip", disable=not progress):
            meta[name] = jobs[name].result()
    _write_metadata(out, cfg, seed, names, meta, time.perf_counter() - start)
    write_preview(out, names[0], cfg)
    return out


def _write_metadata(
    out: Path, cfg: SynthConfig, seed: int, names: list[str], meta: dict, seconds: float
) -> None:
    split = default_split(names)
    doc = {
        "name": "synthetic_vessels",
        "fps": cfg.fps,
        "um_per_px": cfg.um_per_px,
        "flow_units": "px/frame; flow[i] moves frame i to i+1; u right, v down",
        "notes": "Procedural bright-field vessel microscopy; see data_cards/synthetic_vessels.md.",
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


def write_preview(out: Path, name: str, cfg: SynthConfig) -> Path:
    """preview.png: frames 0, mid, last of one clip over its flow colours and mask."""
    import cv2

    from flowvid.data.dataset import read_mask
    from flowvid.io.flowfile import open_flow
    from flowvid.io.video import open_video

    with open_video(out / "videos" / f"{name}.mp4") as video:
        picks = sorted({0, video.num_frames // 2, video.num_frames - 2})
        frames = video.read(picks)
    flow = open_flow(out / "flow" / f"{name}.npy")
    mask_path = next((out / "masks").glob(f"{name}.*"))
    mask = read_mask(mask_path, len(flow), cfg.size, cfg.size)
    scale = robust_max_speed(flow[0 : len(flow)], mask)
    rows = []
    for frame, i in zip(frames, picks, strict=True):
        m = mask[min(i, len(mask) - 1)]
        rows.append(
            np.concatenate(
                [
                    frame,
                    flow_to_color(flow[i], scale),
                    np.repeat(m[..., None] * 255, 3, 2).astype(np.uint8),
                ],
                1,
            )
        )
    with atomic_output(out / "preview.png") as tmp:
        cv2.imwrite(str(tmp), np.concatenate(rows, 0)[..., ::-1])
    return out / "preview.png"

"""Training and validation clips: T frames, their T-1 flows, vessel masks and validity.

A sample is a dict of tensors: ``frames`` (T, 3, h, w) uint8 (converted to float on the
device), ``flow`` (T-1, 2, h, w) float32 px/frame, ``mask`` (T-1, h, w) bool (vessel),
``valid`` (T-1, h, w) bool (ground truth known). With a frame stride k, clip frames are
k apart and each flow is the composition of k consecutive flows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from flowvid.data.dataset import Clip
from flowvid.flowops import compose
from flowvid.io.atomic import atomic_output, reserved_memmap
from flowvid.io.flowfile import FlowSequence, open_flow
from flowvid.io.masks import read_mask
from flowvid.io.video import VideoReader, cache_dir, open_video, video_index


@dataclass(frozen=True)
class ClipInfo:
    clip: Clip
    frames: int
    height: int
    width: int


def describe(clips: list[Clip]) -> list[ClipInfo]:
    out = []
    for clip in clips:
        if clip.video.is_dir() or clip.video.suffix.lower() in (".tif", ".tiff"):
            with open_video(clip.video) as v:
                out.append(ClipInfo(clip, v.num_frames, v.height, v.width))
        else:
            index = video_index(clip.video)
            out.append(ClipInfo(clip, index.num_frames, index.height, index.width))
    return out


def decoded_cache_path(video: Path) -> Path:
    stat = video.stat()
    key = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / "decoded" / (hashlib.sha1(key.encode()).hexdigest() + ".npy")


def build_decoded_cache(infos: list[ClipInfo], progress: bool = True) -> None:
    """Decode each video once into a uint8 (T, H, W, 3) .npy: training then reads a memmap."""
    todo = [i for i in infos if not decoded_cache_path(i.clip.video).is_file()]
    for info in tqdm(todo, desc="decode cache", unit="video", disable=not progress or not todo):
        with (
            atomic_output(decoded_cache_path(info.clip.video)) as tmp,
            open_video(info.clip.video) as v,
        ):
            arr = reserved_memmap(tmp, np.uint8, (v.num_frames, v.height, v.width, 3))
            for t, frame in enumerate(v.iter_frames()):
                arr[t] = frame
            arr.flush()
            del arr


class _Sources:
    """Lazily opened readers (one set per DataLoader worker)."""

    def __init__(self, use_cache: bool) -> None:
        self.use_cache = use_cache
        self.videos: dict[str, VideoReader | np.ndarray] = {}
        self.flows: dict[str, FlowSequence] = {}
        self.masks: dict[str, np.ndarray | None] = {}

    def frames(self, info: ClipInfo, idx: list[int]) -> np.ndarray:
        name = info.clip.name
        if name not in self.videos:
            path = decoded_cache_path(info.clip.video)
            self.videos[name] = (
                np.load(path, mmap_mode="r")
                if self.use_cache and path.is_file()
                else open_video(info.clip.video, backend="auto")
            )
        src = self.videos[name]
        return np.asarray(src[idx]) if isinstance(src, np.ndarray) else src.read(idx)

    def flow(self, info: ClipInfo) -> FlowSequence:
        if info.clip.name not in self.flows:
            self.flows[info.clip.name] = open_flow(info.clip.flow)
        return self.flows[info.clip.name]

    def mask(self, info: ClipInfo) -> np.ndarray | None:
        if info.clip.name not in self.masks:
            m = info.clip.mask
            self.masks[info.clip.name] = (
                None if m is None else read_mask(m, info.frames - 1, info.height, info.width)
            )
        return self.masks[info.clip.name]


class ClipDataset(Dataset):
    """Clips at (clip index, start frame, crop corner) positions: random or fixed."""

    def __init__(
        self,
        clips: list[Clip],
        clip_len: int,
        stride: int = 1,
        crop: int = 0,
        use_cache: bool = False,
    ) -> None:
        self.infos = describe(clips)
        self.clip_len, self.stride, self.crop = clip_len, stride, crop
        self.span = (clip_len - 1) * stride + 1
        short = [i.clip.name for i in self.infos if i.frames < self.span]
        if short:
            raise ValueError(
                f"clips shorter than {self.span} frames (clip_len, frame_stride): {short}"
            )
        self.use_cache = use_cache
        if use_cache:
            build_decoded_cache(self.infos)
        self._sources: _Sources | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sources"] = None  # each worker opens its own readers
        return state

    @property
    def sources(self) -> _Sources:
        if self._sources is None:
            self._sources = _Sources(self.use_cache)
        return self._sources

    def load(self, clip_index: int, start: int, top: int, left: int) -> dict[str, torch.Tensor]:
        info = self.infos[clip_index]
        idx = [start + k * self.stride for k in range(self.clip_len)]
        size = self.crop or None
        h = min(size or info.height, info.height)
        w = min(size or info.width, info.width)
        window = (slice(top, top + h), slice(left, left + w))
        frames = self.sources.frames(info, idx)[:, window[0], window[1]]
        flow_seq = self.sources.flow(info)
        pairs = []
        valid = []
        for k in range(self.clip_len - 1):
            group = [flow_seq[i][window] for i in range(idx[k], idx[k] + self.stride)]
            first_valid = flow_seq.valid(idx[k])
            valid.append(np.ones((h, w), bool) if first_valid is None else first_valid[window])
            stacked = torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2)
            pairs.append(stacked[0] if self.stride == 1 else compose(stacked))
        mask = self.sources.mask(info)
        if mask is None:
            masks = np.ones((self.clip_len - 1, h, w), bool)
        else:
            masks = np.stack([mask[min(i, len(mask) - 1)][window] for i in idx[:-1]])
        sample = {
            "frames": torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2),
            "flow": torch.stack(pairs).float(),
            "mask": torch.from_numpy(masks),
            "valid": torch.from_numpy(np.stack(valid)) & torch.isfinite(torch.stack(pairs)).all(1),
        }
        sample["flow"] = torch.nan_to_num(sample["flow"])
        return _pad_to(sample, size) if size else sample

    def __len__(self) -> int:
        raise NotImplementedError


def _pad_to(sample: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """Pad a crop of a clip smaller than ``size`` with zeros marked invalid."""
    h, w = sample["frames"].shape[-2:]
    if (h, w) == (size, size):
        return sample
    pad = (0, size - w, 0, size - h)
    return {k: torch.nn.functional.pad(v, pad) for k, v in sample.items()}


class RandomClips(ClipDataset):
    """Random training clips: every valid (clip, start) equally likely, random crops."""

    def __init__(
        self,
        clips: list[Clip],
        clip_len: int,
        stride: int,
        crop: int,
        samples: int,
        use_cache: bool = False,
    ) -> None:
        super().__init__(clips, clip_len, stride, crop, use_cache)
        self.samples = samples
        starts = np.array([i.frames - self.span + 1 for i in self.infos], np.float64)
        self.weights = starts / starts.sum()  # long clips are sampled in proportion to their length

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([int(torch.randint(2**62, ())), index])  # seeded per run
        c = int(rng.choice(len(self.infos), p=self.weights))
        info = self.infos[c]
        start = int(rng.integers(0, info.frames - self.span + 1))
        top = int(rng.integers(0, max(info.height - self.crop, 0) + 1)) if self.crop else 0
        left = int(rng.integers(0, max(info.width - self.crop, 0) + 1)) if self.crop else 0
        return self.load(c, start, top, left)


class FixedClips(ClipDataset):
    """Validation clips: ``windows`` evenly spaced starts per clip, centre crop."""

    def __init__(
        self, clips: list[Clip], clip_len: int, stride: int, crop: int, windows: int
    ) -> None:
        super().__init__(clips, clip_len, stride, crop)
        self.items = []
        for c, info in enumerate(self.infos):
            last = info.frames - self.span
            starts = np.unique(np.linspace(0, last, max(windows, 1)).astype(int))
            top = max(info.height - crop, 0) // 2 if crop else 0
            left = max(info.width - crop, 0) // 2 if crop else 0
            self.items += [(c, int(s), top, left) for s in starts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.load(*self.items[index])

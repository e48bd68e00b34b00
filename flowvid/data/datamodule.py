"""LightningDataModules: a validated dataset folder -> random training clips and fixed
validation clips; or a generator (motion, vessels) -> clips rendered on the fly."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from flowvid.data.clips import FixedClips, RandomClips
from flowvid.data.dataset import Dataset, load_dataset
from flowvid.errors import DatasetError, InputError


def ensure_dataset(
    root: str | Path, *, synthesize: bool, videos: int, frames: int, size: int, seed: int
) -> Path:
    """The dataset at ``root``. A missing folder is an error that says how to make one, unless
    ``synthesize`` asks for the synthetic corpus to be written there."""
    root = Path(root)
    if (root / "videos").is_dir():
        return root
    if not synthesize:
        raise InputError(
            f"no dataset at {root} (no videos/ folder). Point --data at your dataset (layout: "
            f"README, 'Your data'), or make the synthetic one: flowvid synth --out {root} "
            "(or --set data.synthesize=true to have train write it)"
        )
    from flowvid.data.synth.corpus import write_corpus
    from flowvid.data.synth.synthetic import SynthConfig

    write_corpus(root, videos, SynthConfig(size=size, frames=frames), seed=seed)
    return root


class ClipDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str | Path,
        *,
        clip_len: int = 8,  # frames per training clip (T)
        frame_stride: int = 1,  # take every k-th frame (flows are composed)
        crop: int = 192,  # random square crop for training, px (0: full frame)
        batch_size: int = 8,
        workers: int = 4,
        samples_per_epoch: int = 2000,
        val_windows: int = 4,  # evenly spaced clips per validation video
        val_crop: int = 0,  # centre crop for validation, px (0: full frame)
        decoded_cache: bool = False,  # decode each video once to a uint8 .npy memmap (uses disk)
        motion_mix: float = 0.0,  # this fraction of training clips are generic motion instead
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.motion_mix = motion_mix
        self.clip_len, self.frame_stride, self.crop = clip_len, frame_stride, crop
        self.batch_size, self.workers = batch_size, workers
        self.samples, self.val_windows, self.val_crop = samples_per_epoch, val_windows, val_crop
        self.decoded_cache = decoded_cache
        self.dataset: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.dataset = load_dataset(self.root)  # lists every problem at once if there are any
        train, val = (
            self.dataset.split("train"),
            self.dataset.split("val") or self.dataset.split("test"),
        )
        if not train:
            raise DatasetError(
                "no clips in the train split: name some in dataset.yaml's 'split', or leave "
                "'split' out for 80/10/10 by clip",
                self.root,
            )
        self.train_set = RandomClips(
            train,
            self.clip_len,
            self.frame_stride,
            self.crop,
            self.samples,
            use_cache=self.decoded_cache,
        )
        if self.motion_mix > 0:  # validation stays on the dataset itself
            from flowvid.data.rendered import MixedClips, RenderedClips, generator_config

            motion = generator_config("motion", self.crop, self.clip_len, {})
            self.train_set = MixedClips(
                self.train_set, RenderedClips(motion, self.samples), self.motion_mix
            )
        self.val_set = FixedClips(
            val or train[:1], self.clip_len, self.frame_stride, self.val_crop, self.val_windows
        )

    def train_dataloader(self) -> DataLoader:
        return make_loader(self.train_set, self.batch_size, self.workers, train=True)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.val_set, self.batch_size, self.workers, train=False)


def make_loader(data: TorchDataset, batch_size: int, workers: int, train: bool) -> DataLoader:
    """Samples are random already: no shuffling; training drops a last partial batch."""
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        drop_last=train,
        worker_init_fn=_leave_sigterm_to_the_main_process,
    )


def _leave_sigterm_to_the_main_process(worker_id: int) -> None:
    """A stop sent to the whole process group (a cluster's time limit, ``kill -- -PGID``)
    reaches the workers too; a worker it killed would crash the run before the main process
    stops at its batch boundary and saves. The main process shuts the workers down itself
    (and a worker whose main process is gone exits on its own)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class RenderedDataModule(L.LightningDataModule):
    """Training clips rendered on the fly (a new clip every sample); a fixed validation set
    rendered once from ``val_seed``."""

    def __init__(
        self,
        source: str,
        *,
        generator: dict[str, Any],
        clip_len: int,
        crop: int,
        batch_size: int,
        workers: int,
        samples_per_epoch: int,
        val_clips: int,
        val_seed: int,
    ) -> None:
        super().__init__()
        from flowvid.data.rendered import generator_config

        self.cfg = generator_config(source, crop, clip_len, generator)
        self.batch_size, self.workers = batch_size, workers
        self.samples, self.val_clips, self.val_seed = samples_per_epoch, val_clips, val_seed

    def setup(self, stage: str | None = None) -> None:
        from flowvid.data.rendered import RenderedClips

        self.train_set = RenderedClips(self.cfg, self.samples)
        self.val_set = RenderedClips(self.cfg, self.val_clips, seed=self.val_seed)

    def train_dataloader(self) -> DataLoader:
        return make_loader(self.train_set, self.batch_size, self.workers, train=True)

    def val_dataloader(self) -> DataLoader:
        # in the main process: the fixed clips are rendered once and kept
        return make_loader(self.val_set, self.batch_size, 0, train=False)

"""``train(cfg)``: the whole training run, from a resolved config to a run folder."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from flowvid.checkpoint import load_weights, read_checkpoint, save_checkpoint
from flowvid.config import Config, model_kwargs
from flowvid.data.datamodule import ClipDataModule, RenderedDataModule, ensure_dataset
from flowvid.errors import InputError, Terminated
from flowvid.io.atomic import atomic_output, check_target, claim_folder
from flowvid.training.checkpoints import LastCheckpoint, lightning_handles_sigterm
from flowvid.training.module import FlowVidModule, TrainingDiverged, module_from_config

log = logging.getLogger(__name__)


def resolve_precision(cfg: Config) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    on_gpu = torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


def build_trainer(cfg: Config, run_dir: Path, callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    t = cfg.train
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{step}",
        monitor="val/score",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    last = LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", t.checkpoint_minutes)
    loggers = [CSVLogger(run_dir, name="logs")]  # logs/version_N: a resumed run never overwrites
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    return L.Trainer(
        max_steps=t.max_steps,
        max_time=None if t.max_minutes is None else timedelta(minutes=t.max_minutes),
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=resolve_precision(cfg),
        gradient_clip_val=t.grad_clip or None,
        val_check_interval=t.val_every_steps,
        check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every_steps,
        callbacks=[best, last, LearningRateMonitor("step"), *callbacks],
        logger=loggers,
        default_root_dir=run_dir,
        num_sanity_val_steps=0,
        enable_progress_bar=True,
    )


def build_datamodule(cfg: Config) -> ClipDataModule | RenderedDataModule:
    d = cfg.data
    if d.source != "folder":
        return RenderedDataModule(
            d.source,
            generator=d.generator,
            clip_len=d.clip_len,
            crop=d.crop,
            batch_size=d.batch_size,
            workers=d.workers,
            samples_per_epoch=d.samples_per_epoch,
            val_clips=d.rendered_val_clips,
            val_seed=cfg.train.seed + 1,
        )
    root = ensure_dataset(
        d.root,
        synthesize=d.synthesize,
        videos=d.synth_videos,
        frames=d.synth_frames,
        size=d.synth_size,
        seed=d.synth_seed,
    )
    return ClipDataModule(
        root,
        clip_len=d.clip_len,
        frame_stride=d.frame_stride,
        crop=d.crop,
        batch_size=d.batch_size,
        workers=d.workers,
        samples_per_epoch=d.samples_per_epoch,
        val_windows=d.val_windows,
        val_crop=d.val_crop,
        decoded_cache=d.decoded_cache,
        motion_mix=d.motion_mix,
    )


def _resume_path(cfg: Config, run_dir: Path) -> str | None:
    if cfg.train.resume in (None, ""):
        return None
    path = (
        run_dir / "checkpoints" / "last.ckpt"
        if cfg.train.resume == "last"
        else Path(cfg.train.resume)
    )
    if not path.is_file():
        raise InputError("no checkpoint to resume from", path)
    return str(path)


def train(
    cfg: Config, overwrite: bool = False, callbacks: Sequence[L.Callback] = ()
) -> Path | None:
    """Train, checkpoint (best by validation score, and last) and export ``model.pt``.

    ``callbacks``: Lightning callbacks of the caller's, e.g. what it watches at each
    validation (:func:`flowvid.lab.sanity.watchers`: the motion suite).

    The run folder must be new, empty or flowvid's own (a run to resume included); a folder
    of other files needs ``overwrite``. Returns the run folder on the main process (None on
    the other DDP ranks).
    """
    run_dir = Path(cfg.train.run_dir)
    resuming = cfg.train.resume not in (None, "")
    check_target(run_dir, is_dir=True, others_ok=overwrite or resuming)
    datamodule = build_datamodule(cfg)  # first: bad data leaves no run folder behind
    datamodule.setup("fit")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = module_from_config(cfg)  # a model the config cannot build leaves no folder either
    if cfg.train.init_from:
        ckpt = read_checkpoint(cfg.train.init_from)
        fresh = load_weights(
            module.model,
            ckpt["state_dict"],
            cfg.train.init_from,
            new_modules=("refine.", "error_head."),
        )
        if fresh:
            log.warning("%d tensors of new modules start from their initialisation", len(fresh))
    claim_folder(run_dir, overwrite=overwrite or resuming)
    with atomic_output(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    trainer = build_trainer(cfg, run_dir, callbacks)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        with lightning_handles_sigterm():
            trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(cfg, run_dir))
    except TrainingDiverged as err:
        kept = (
            f"the last good checkpoint is {last}"
            if last.is_file()
            else "no checkpoint was saved yet"
        )
        raise TrainingDiverged(f"{err}; {kept}. Lower train.lr or check the data.") from None
    except SIGTERMException:
        raise Terminated(_stopped(trainer, last)) from None
    except SystemExit:  # Lightning exits 1 after Ctrl-C
        if isinstance(_last_callback(trainer).stopped_by, KeyboardInterrupt):
            raise KeyboardInterrupt(_stopped(trainer, last)) from None
        raise
    if trainer.global_rank != 0:
        return None
    export_best(trainer, module, cfg, run_dir)
    return run_dir


def _last_callback(trainer: L.Trainer) -> LastCheckpoint:
    return next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint))


def _stopped(trainer: L.Trainer, last: Path) -> str:
    return f"stopped at step {trainer.global_step}, saved in {last}; go on with --resume"


def export_best(trainer: L.Trainer, module: FlowVidModule, cfg: Config, run_dir: Path) -> Path:
    """model.pt: the best checkpoint's weights in flowvid's own small format."""
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback else ""
    if best:
        load_weights(module.model, read_checkpoint(best)["state_dict"], best)
    return save_checkpoint(run_dir / "model.pt", module.model, model_kwargs(cfg), cfg.to_dict())

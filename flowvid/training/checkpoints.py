"""last.ckpt, the state a run resumes from, and what stops a run without losing it.

Lightning writes every checkpoint atomically (a temporary file, then a rename: a run killed
while saving leaves the previous file intact). Lightning also turns SIGTERM into a stop at
the next batch boundary (``SIGTERMException``); :class:`LastCheckpoint` saves there too.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

CHECK_EVERY_STEPS = 10  # how often the clock is read (all ranks agree on the answer)


class LastCheckpoint(Checkpoint):
    """last.ckpt after every validation, every ``minutes`` of training (so a run killed
    before its first validation can resume), at the end, and when the run is stopped by
    SIGTERM or Ctrl-C.

    Lightning runs checkpoint callbacks after all others and in their given order, so this
    one runs after the best checkpoint has been chosen and saved: a resumed run knows which
    best checkpoint is on disk.
    """

    def __init__(self, path: Path, minutes: float | None) -> None:
        self.path = path
        self.interval = None if not minutes else minutes * 60.0
        self.saved_at = time.monotonic()
        self.saved_step = -1
        self.stopped_by: BaseException | None = None

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # resuming needs the optimiser
        self.saved_at, self.saved_step = time.monotonic(), trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.saved_at = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self.interval is None or trainer.global_step % CHECK_EVERY_STEPS:
            return
        due = time.monotonic() - self.saved_at >= self.interval
        if trainer.strategy.broadcast(due, src=0):  # rank 0's clock decides for all
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.saved_step:  # the final state, to go on from
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # SIGTERM stops every rank at the same batch boundary; Ctrl-C only one process
        interrupted = isinstance(exception, KeyboardInterrupt) and trainer.world_size == 1
        if isinstance(exception, SIGTERMException) or interrupted:
            self.stopped_by = exception
            self.save(trainer)


@contextlib.contextmanager
def lightning_handles_sigterm() -> Iterator[None]:
    """While training, Lightning's own SIGTERM handler alone: it stops at a batch boundary
    (another handler beside it would raise at once, mid-step)."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread: nothing to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""The LightningModule: augmentation on the device, model, the task's objective, optimiser.

It takes explicit arguments (plain types, saved as hyper-parameters so Lightning checkpoints
load with ``weights_only=True``); :func:`module_from_config` turns a config into them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch

from flowvid.config import Config, model_kwargs
from flowvid.data.augment import FlowAugment
from flowvid.errors import InputError
from flowvid.models import create_model
from flowvid.training.objectives import OBJECTIVES


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class FlowVidModule(L.LightningModule):
    """``model_kwargs`` build the model (:func:`~flowvid.models.create_model`); ``augment``
    builds :class:`~flowvid.data.augment.FlowAugment`; ``objective`` the task's objective
    (:data:`~flowvid.training.objectives.OBJECTIVES`); ``train_only`` names the modules to
    train (empty: all; :func:`freeze_all_but`); the rest is the optimiser's schedule
    (:func:`warmup_cosine`; ``max_minutes`` when the run is bounded by time).
    ``config``, when given, is only stored (the run's resolved config, for provenance)."""

    def __init__(
        self,
        model_kwargs: dict[str, Any],
        *,
        augment: dict[str, Any],
        objective: dict[str, Any],
        lr: float,
        encoder_lr_factor: float,
        weight_decay: float,
        warmup_steps: int,
        max_steps: int,
        train_only: list[str],
        max_minutes: float | None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(**model_kwargs)
        self.augment = FlowAugment(**augment)
        self.objective = OBJECTIVES[self.model.task](**objective)
        self.frozen = freeze_all_but(self.model, train_only) if train_only else []
        self.seconds_before = 0.0  # training time of the runs this one resumes
        self.started = time.monotonic()
        self.train(self.training)  # Lightning restores each submodule's mode as it found it

    def train(self, mode: bool = True) -> FlowVidModule:
        super().train(mode)
        for module in self.frozen:  # frozen means frozen: no batch statistics, no dropout
            module.eval()
        return self

    def _prepare(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        batch = dict(batch, frames=batch["frames"].float() / 255.0)
        return self.augment(batch) if train else batch

    def loss_on(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training forward on a uint8 batch: the loss and the batch's statistics."""
        batch = self._prepare(batch, train=True)
        aux: dict[str, torch.Tensor] = {}
        pred = self.model(batch["frames"], aux=aux)
        loss = self.objective.loss(pred, batch, aux)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {self.global_step}")
        return loss, self.objective.batch_stats(pred, batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, stats = self.loss_on(batch)
        size = batch["frames"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in stats.items():
            self.log(f"train/{name}", value, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = self._prepare(batch, train=False)
        pred = self.model(batch["frames"])
        size = pred.shape[0]
        self.log("val/loss", self.objective.loss(pred, batch), batch_size=size, sync_dist=True)
        self.objective.update(pred, batch)

    def on_fit_start(self) -> None:
        self.started = time.monotonic()

    def minutes(self) -> float:
        """Wall-clock minutes of training so far, resumed runs included."""
        return (self.seconds_before + time.monotonic() - self.started) / 60.0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["train_seconds"] = 60.0 * self.minutes()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.seconds_before = float(checkpoint.get("train_seconds", 0.0))

    def on_validation_epoch_end(self) -> None:
        values = self.objective.compute()
        values["minutes"] = self.minutes()
        self.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)
        self.print(
            f"validation at step {self.global_step} ({values['minutes']:.1f} min): "
            + self.objective.describe(values)
        )

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        encoder = [p for p in self.model.encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in self.model.encoder.parameters()}
        rest = [p for p in self.model.parameters() if id(p) not in ids and p.requires_grad]
        groups = [{"params": rest, "lr": hp.lr}]
        if encoder:
            groups.append({"params": encoder, "lr": hp.lr * hp.encoder_lr_factor})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(hp.warmup_steps, hp.max_steps, hp.max_minutes)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def objective_kwargs(cfg: Config) -> dict[str, Any]:
    """The ``loss:`` settings the config's task uses, as its objective's keyword arguments."""
    c = cfg.loss
    if cfg.model.task == "frames":
        return {"ssim_weight": c.ssim_weight}
    return {
        "inside_weight": c.inside_weight,
        "outside_weight": c.outside_weight,
        "eps": c.charbonnier_eps,
        "power": c.charbonnier_power,
    }


def module_from_config(cfg: Config) -> FlowVidModule:
    t = cfg.train
    return FlowVidModule(
        model_kwargs(cfg),
        augment=dict(vars(cfg.augment)),
        objective=objective_kwargs(cfg),
        lr=t.lr,
        encoder_lr_factor=t.encoder_lr_factor,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        max_steps=t.max_steps,
        train_only=list(t.train_only),
        max_minutes=t.max_minutes,
        config=cfg.to_dict(),
    )


def freeze_all_but(
    model: torch.nn.Module, names: tuple[str, ...] | list[str]
) -> list[torch.nn.Module]:
    """Freeze every parameter outside the submodules ``names`` (as in ``named_modules``).

    Returns the largest submodules left with no trainable parameter, which training keeps in
    eval mode. A name the model does not have is an error that lists the ones it has.
    """
    modules = dict(model.named_modules())
    unknown = [n for n in names if not n or n not in modules]
    if unknown:
        have = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
        raise InputError(f"train.train_only: the model has no module {unknown}; it has {have}")
    for name, param in model.named_parameters():
        if not any(name.startswith(n + ".") for n in names):
            param.requires_grad = False
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError(f"train.train_only: {list(names)} leaves nothing to train")

    trains = {
        name for name, m in model.named_modules() if any(p.requires_grad for p in m.parameters())
    }
    return [  # frozen, with a parent that trains (the root, "", always does here)
        m
        for name, m in model.named_modules()
        if name and name not in trains and name.rpartition(".")[0] in trains
    ]


def warmup_cosine(warmup: int, total: int, minutes: float | None = None):  # noqa: ANN201
    """Linear warm-up to 1 over ``warmup`` steps, then cosine down to 0.01 at ``total``. With
    ``minutes`` (a run bounded by time) the cosine follows the clock too: its progress is the
    larger of the steps' share and the time's, so the rate has come down when time is up."""
    started = time.monotonic()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total - warmup, 1)
        if minutes:
            progress = max(progress, (time.monotonic() - started) / (60.0 * minutes))
        progress = min(progress, 1.0)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor

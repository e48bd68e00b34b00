"""The LightningModule: augmentation on the device, model, balanced loss, metrics, optimiser."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from flowvid.config import config_from_dict, model_kwargs
from flowvid.data.augment import FlowAugment
from flowvid.models import create_model
from flowvid.sanity import watch_epe
from flowvid.training.losses import balanced_flow_loss, frames_loss
from flowvid.training.metrics import FlowMetrics


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class FlowVidModule(L.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg = config_from_dict(config)
        self.model = create_model(**model_kwargs(self.cfg))
        self.augment = FlowAugment(**vars(self.cfg.augment))
        self.task = self.cfg.model.task
        self.val_flow = FlowMetrics()
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)  # one MSE over all pixels and channels
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)

    def _prepare(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        batch = dict(batch, frames=batch["frames"].float() / 255.0)
        return self.augment(batch) if train else batch

    def _loss(self, batch: dict[str, torch.Tensor], pred: torch.Tensor) -> torch.Tensor:
        c = self.cfg.loss
        if self.task == "frames":
            return frames_loss(pred, batch["frames"][:, 1:], c.ssim_weight)
        return balanced_flow_loss(
            pred,
            batch["flow"],
            batch["mask"],
            batch["valid"],
            c.inside_weight,
            c.outside_weight,
            c.charbonnier_eps,
            c.charbonnier_power,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch = self._prepare(batch, train=True)
        pred = self.model(batch["frames"])
        loss = self._loss(batch, pred)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        if self.task == "flow":
            with torch.no_grad():
                where = batch["mask"] & batch["valid"]
                epe = (pred - batch["flow"]).norm(dim=2)[where]
                if epe.numel():
                    self.log(
                        "train/epe_vessel", epe.mean(), prog_bar=True, batch_size=pred.shape[0]
                    )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = self._prepare(batch, train=False)
        pred = self.model(batch["frames"])
        self.log("val/loss", self._loss(batch, pred), batch_size=pred.shape[0], sync_dist=True)
        if self.task == "flow":
            self.val_flow.update(pred, batch["flow"], batch["mask"], batch["valid"])
        else:
            target = batch["frames"][:, 1:].flatten(0, 1)
            self.val_psnr.update(pred.flatten(0, 1), target)
            self.val_ssim.update(pred.flatten(0, 1), target)

    def on_validation_epoch_end(self) -> None:
        if self.task == "flow":
            values = self.val_flow.compute()
            self.val_flow.reset()
            self.log_dict(
                {f"val/{k}": v for k, v in values.items()}, sync_dist=True
            )  # same on all ranks
            self.log("val/score", values["epe_vessel"], sync_dist=True)
            # motion on textures no corpus holds (flowvid.sanity): measured, not a prior?
            self.log("val/suite_epe", watch_epe(self.model, self.device), sync_dist=True)
        else:
            psnr, ssim = self.val_psnr.compute(), self.val_ssim.compute()
            self.val_psnr.reset()
            self.val_ssim.reset()
            self.log_dict({"val/psnr": psnr, "val/ssim": ssim, "val/score": -psnr}, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.cfg.train
        encoder = [p for p in self.model.encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in self.model.encoder.parameters()}
        rest = [p for p in self.model.parameters() if id(p) not in ids and p.requires_grad]
        groups = [{"params": rest, "lr": t.lr}]
        if encoder:
            groups.append({"params": encoder, "lr": t.lr * t.encoder_lr_factor})
        optimizer = torch.optim.AdamW(groups, weight_decay=t.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(t.warmup_steps, t.max_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def warmup_cosine(warmup: int, total: int):  # noqa: ANN201 - a schedule function
    """Linear warm-up to 1 over ``warmup`` steps, then cosine down to 0.01 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor

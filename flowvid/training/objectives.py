"""What a task trains for and how it is scored: one objective per task, chosen once.

An objective owns its loss, the statistics logged on training batches, and the validation
metrics (torchmetrics, so they are correct under DDP). ``val/score`` is the number the best
checkpoint is chosen by (lower is better).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from flowvid.metrics import FlowMetrics
from flowvid.sanity import watch_epe
from flowvid.training.losses import balanced_flow_loss, error_nll, frames_loss, prior_nll

Batch = dict[str, torch.Tensor]
UNCERTAINTY_WEIGHT = 0.1  # of the expected-error head's NLL (flowvid.models.uncertainty)


class FlowObjective(nn.Module):
    """Balanced robust EPE (inside and outside the vessel weighed apart); EPE metrics.

    ``watch_motion``: also log ``suite_epe``, the EPE on a small motion suite of textures no
    corpus holds (:mod:`flowvid.sanity`): does the model measure motion or recall a prior?
    ``confidence_weight``: for models with Lucas-Kanade steps, add this times the NLL of the
    network's own error under the prior width it gives the steps
    (:func:`~flowvid.training.losses.prior_nll`), so the width is a calibrated confidence.
    A model with an expected-error head (``model.uncertainty``) trains it by
    :func:`~flowvid.training.losses.error_nll` on every batch.
    """

    def __init__(
        self,
        *,
        inside_weight: float,
        outside_weight: float,
        eps: float,
        power: float,
        confidence_weight: float,
        watch_motion: bool = True,
    ) -> None:
        super().__init__()
        self.weights = dict(inside_weight=inside_weight, outside_weight=outside_weight)
        self.eps, self.power, self.watch_motion = eps, power, watch_motion
        self.confidence_weight = confidence_weight
        self.metrics = FlowMetrics()

    def loss(self, pred: torch.Tensor, batch: Batch, aux: dict | None = None) -> torch.Tensor:
        """pred (B, T-1, 2, H, W) px/frame against the batch's flow, mask and valid; ``aux``,
        the model's ``lk_start`` and ``lk_prior`` (see ``FlowVid.step``), when it has them."""
        loss = balanced_flow_loss(
            pred,
            batch["flow"],
            batch["mask"],
            batch["valid"],
            **self.weights,
            eps=self.eps,
            power=self.power,
        )
        if self.confidence_weight and aux and "lk_prior" in aux:
            loss = loss + self.confidence_weight * prior_nll(
                aux["lk_start"],
                aux["lk_prior"],
                batch["flow"],
                batch["mask"],
                batch["valid"],
                **self.weights,
            )
        if aux and "uncertainty" in aux:
            # the head's inputs are detached, so this trains the head alone; the factor only
            # keeps its gradients from taking the clipping norm's share from the flow's
            loss = loss + UNCERTAINTY_WEIGHT * error_nll(
                pred,
                aux["uncertainty"],
                batch["flow"],
                batch["mask"],
                batch["valid"],
                **self.weights,
            )
        return loss

    @torch.no_grad()
    def batch_stats(self, pred: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        epe = (pred - batch["flow"]).norm(dim=2)[batch["mask"] & batch["valid"]]
        return {"epe_vessel": epe.mean()} if epe.numel() else {}

    def update(self, pred: torch.Tensor, batch: Batch) -> None:
        self.metrics.update(pred, batch["flow"], batch["mask"], batch["valid"])

    def compute(self, model: nn.Module) -> dict[str, torch.Tensor]:
        values = self.metrics.compute()
        self.metrics.reset()
        values["score"] = values["epe_vessel"]
        if self.watch_motion:
            values["suite_epe"] = torch.tensor(watch_epe(model, values["score"].device))
        return values


class FramesObjective(nn.Module):
    """L1 + SSIM on the predicted next frames; PSNR and SSIM metrics (score: -PSNR)."""

    def __init__(self, *, ssim_weight: float) -> None:
        super().__init__()
        self.ssim_weight = ssim_weight
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)  # one MSE over all pixels and channels
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)

    def loss(self, pred: torch.Tensor, batch: Batch, aux: dict | None = None) -> torch.Tensor:
        """pred (B, T-1, 3, H, W): frames 1..T-1 predicted from the frames before each."""
        return frames_loss(pred, batch["frames"][:, 1:], ssim_weight=self.ssim_weight)

    def batch_stats(self, pred: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {}

    def update(self, pred: torch.Tensor, batch: Batch) -> None:
        target = batch["frames"][:, 1:].flatten(0, 1)
        self.psnr.update(pred.flatten(0, 1), target)
        self.ssim.update(pred.flatten(0, 1), target)

    def compute(self, model: nn.Module) -> dict[str, torch.Tensor]:
        psnr, ssim = self.psnr.compute(), self.ssim.compute()
        self.psnr.reset()
        self.ssim.reset()
        return {"psnr": psnr, "ssim": ssim, "score": -psnr}


OBJECTIVES: dict[str, type[nn.Module]] = {"flow": FlowObjective, "frames": FramesObjective}

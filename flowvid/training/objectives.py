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
from flowvid.predict.classical import CLASSICAL, classical_flows
from flowvid.training.losses import balanced_flow_loss, error_nll, frames_loss

Batch = dict[str, torch.Tensor]
UNCERTAINTY_WEIGHT = 0.1  # of the expected-error head's NLL (flowvid.models.uncertainty)
# RAFT's sequence loss (Teed and Deng 2020): update i of I weighs SEQUENCE_GAMMA ** (I - 1 - i)
SEQUENCE_GAMMA = 0.8


class FlowObjective(nn.Module):
    """Balanced robust EPE (inside and outside the vessel weighed apart); EPE metrics.

    A model with an expected-error head (``model.uncertainty``) trains it by
    :func:`~flowvid.training.losses.error_nll` on every batch.

    Validation also scores the classical methods (:data:`~flowvid.predict.classical.CLASSICAL`) on
    the same clips, once (the validation clips are fixed), and reports the best of them
    beside the model (``classical_epe``, ``vs_classical``): does training pay?
    """

    def __init__(
        self,
        *,
        inside_weight: float,
        outside_weight: float,
        eps: float,
        power: float,
    ) -> None:
        super().__init__()
        self.weights = dict(inside_weight=inside_weight, outside_weight=outside_weight)
        self.eps, self.power = eps, power
        self.metrics = FlowMetrics()
        self.classical = nn.ModuleDict({name: FlowMetrics() for name in CLASSICAL})
        self.reference: dict[str, float] | None = None  # vessel EPE per method, once measured

    def loss(self, pred: torch.Tensor, batch: Batch, aux: dict | None = None) -> torch.Tensor:
        """pred (B, T-1, 2, H, W) px/frame against the batch's flow, mask and valid; ``aux``,
        what the model put there: the expected-error head's ``uncertainty``, or RAFT's flow
        after each update (``iterations``, the last being ``pred``), each then scored and
        weighed as RAFT's sequence loss does."""
        preds = list(aux["iterations"]) if aux and "iterations" in aux else [pred]
        loss = sum(
            SEQUENCE_GAMMA ** (len(preds) - 1 - i)
            * balanced_flow_loss(
                p,
                batch["flow"],
                batch["mask"],
                batch["valid"],
                **self.weights,
                eps=self.eps,
                power=self.power,
            )
            for i, p in enumerate(preds)
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
        if self.reference is not None:
            return
        # (B, T, H, W, 3) uint8: the frames as they were stored, for OpenCV
        frames = (batch["frames"] * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
        for b, clip in enumerate(frames.cpu().numpy()):
            for name, flow in classical_flows(clip).items():
                flow = torch.from_numpy(flow).permute(0, 3, 1, 2).to(pred.device)
                self.classical[name].update(
                    flow, batch["flow"][b], batch["mask"][b], batch["valid"][b]
                )

    def compute(self) -> dict[str, torch.Tensor]:
        values = self.metrics.compute()
        self.metrics.reset()
        values["score"] = values["epe_vessel"]
        if self.reference is None:
            self.reference = {
                name: float(m.compute()["epe_vessel"]) for name, m in self.classical.items()
            }
        best = min(self.reference.values())
        values["classical_epe"] = torch.tensor(best)
        if best > 0:
            values["vs_classical"] = values["score"] / best
        return values

    def describe(self, values: dict[str, torch.Tensor]) -> str:
        """One line for the terminal: the model's validation EPE beside the best classical,
        and the speed it reads in the vessels as a share of the true speed."""
        name = min(self.reference, key=self.reference.get)
        line = f"vessel EPE {float(values['score']):.3f} px/frame; best classical"
        line += f" ({name}) {self.reference[name]:.3f}"
        if "vs_classical" in values:
            line += f": {float(values['vs_classical']):.2f}x"
        if "speed_ratio_vessel" in values and torch.isfinite(values["speed_ratio_vessel"]):
            line += f"; speed read {float(values['speed_ratio_vessel']):.2f} of true"
        return line


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

    def compute(self) -> dict[str, torch.Tensor]:
        psnr, ssim = self.psnr.compute(), self.ssim.compute()
        self.psnr.reset()
        self.ssim.reset()
        return {"psnr": psnr, "ssim": ssim, "score": -psnr}

    def describe(self, values: dict[str, torch.Tensor]) -> str:
        return f"PSNR {float(values['psnr']):.2f} dB, SSIM {float(values['ssim']):.3f}"


OBJECTIVES: dict[str, type[nn.Module]] = {"flow": FlowObjective, "frames": FramesObjective}

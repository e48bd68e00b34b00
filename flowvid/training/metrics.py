"""Flow metrics accumulated over a validation set (torchmetrics: correct under DDP).

EPE = |pred - gt| per pixel in px/frame, averaged over all valid pixels, the vessel mask,
and outside it; accuracy at 1 px and 3 px inside the vessel; and the same EPEs for
predicting zero flow on the same pixels, so a model that collapsed to "nothing moves" is
seen at once.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

REGIONS = ("all", "vessel", "outside")


class FlowMetrics(Metric):
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for region in REGIONS:
            for name in ("epe", "zero", "count"):
                self.add_state(
                    f"{name}_{region}", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
                )
        for px in (1, 3):
            self.add_state(f"acc{px}", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
    ) -> None:
        """pred, target (..., 2, H, W); mask, valid (..., H, W) bool."""
        epe = (pred.float() - target.float()).norm(dim=-3)
        zero = target.float().norm(dim=-3)
        regions = {"all": valid, "vessel": valid & mask, "outside": valid & ~mask}
        for name, where in regions.items():
            setattr(self, f"epe_{name}", getattr(self, f"epe_{name}") + epe[where].double().sum())
            setattr(
                self, f"zero_{name}", getattr(self, f"zero_{name}") + zero[where].double().sum()
            )
            setattr(self, f"count_{name}", getattr(self, f"count_{name}") + where.sum())
        vessel = regions["vessel"]
        for px in (1, 3):
            setattr(self, f"acc{px}", getattr(self, f"acc{px}") + (epe[vessel] < px).sum())

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for region in REGIONS:
            n = getattr(self, f"count_{region}").clamp(min=1)
            out[f"epe_{region}"] = getattr(self, f"epe_{region}") / n
            out[f"zero_epe_{region}"] = getattr(self, f"zero_{region}") / n
        n = self.count_vessel.clamp(min=1)
        out["acc1_vessel"] = self.acc1 / n
        out["acc3_vessel"] = self.acc3 / n
        return {k: v.float() for k, v in out.items()}

"""Flow error measures, one set of definitions and names for evaluation and training.

Per pixel: EPE = |pred - gt| (px/frame); angular error (Barron et al.: the angle between
(u, v, 1) and (u_gt, v_gt, 1), degrees); Fl outlier = EPE > 3 px and > 5 % of |gt|
(KITTI). Regions: all valid pixels, the vessel mask, and outside it. ``zero_epe_<region>``
is the EPE of predicting no motion (= the mean true speed), so a model that collapsed to
"nothing moves" is seen at once; ``acc_<t>px_vessel`` is the share of vessel pixels with
EPE under t px.

:class:`ErrorStats` accumulates over a dataset in numpy (medians from a fine histogram,
0.005 px bins, so nothing grows with the video length); :class:`FlowMetrics` is the same
measures as a torchmetrics ``Metric`` for validation during training (correct under DDP).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torchmetrics import Metric

REGIONS = ("all", "vessel", "outside")
ACC_THRESHOLDS = (0.5, 1.0, 3.0)  # px
M = TypeVar("M", np.ndarray, torch.Tensor)


def regions(mask: M, valid: M) -> dict[str, M]:
    """The pixels each region counts: all valid ones, the vessel, and the rest."""
    return {"all": valid, "vessel": valid & mask, "outside": valid & ~mask}


def acc_name(threshold: float) -> str:
    return f"acc_{threshold:g}px_vessel"


EPE_BINS = np.concatenate([np.arange(0, 20, 0.005), np.arange(20, 1000, 0.5), [np.inf]])
SPEED_BINS = np.array([0, 0.25, 0.5, 1, 2, 4, 8, 16, np.inf])  # true speed, px/frame


def epe_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pred - gt, axis=-1)


def angular_error_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    dot = 1.0 + (pred * gt).sum(-1)
    norm = np.sqrt(1.0 + (pred**2).sum(-1)) * np.sqrt(1.0 + (gt**2).sum(-1))
    return np.degrees(np.arccos(np.clip(dot / norm, -1.0, 1.0)))


class ErrorStats:
    """Sums, counts and histograms of flow errors over any number of maps."""

    def __init__(self) -> None:
        self.n = dict.fromkeys(REGIONS, 0)
        self.sums = {r: dict(epe=0.0, ae=0.0, fl=0.0, zero=0.0) for r in REGIONS}
        self.hist = {r: np.zeros(len(EPE_BINS) - 1, np.int64) for r in REGIONS}
        self.acc = dict.fromkeys(ACC_THRESHOLDS, 0)  # vessel pixels under t px
        self.speed_epe = np.zeros(len(SPEED_BINS) - 1)
        self.speed_n = np.zeros(len(SPEED_BINS) - 1, np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> None:
        """pred, gt (..., H, W, 2) px/frame; mask, valid (..., H, W) bool."""
        epe, ae = epe_map(pred, gt), angular_error_deg(pred, gt)
        speed = np.linalg.norm(gt, axis=-1)
        outlier = (epe > 3.0) & (epe > 0.05 * speed)
        where_ = regions(mask, valid)
        for name, where in where_.items():
            e = epe[where]
            self.n[name] += e.size
            s = self.sums[name]
            s["epe"] += float(e.sum())
            s["ae"] += float(ae[where].sum())
            s["fl"] += float(outlier[where].sum())
            s["zero"] += float(speed[where].sum())
            self.hist[name] += np.histogram(e, EPE_BINS)[0]
        vessel = where_["vessel"]
        for t in self.acc:
            self.acc[t] += int((epe[vessel] < t).sum())
        which = np.digitize(speed[vessel], SPEED_BINS) - 1
        np.add.at(self.speed_epe, which, epe[vessel])
        np.add.at(self.speed_n, which, 1)

    def _median(self, region: str) -> float:
        counts = self.hist[region]
        if counts.sum() == 0:
            return float("nan")
        k = np.searchsorted(np.cumsum(counts), counts.sum() / 2)
        return float((EPE_BINS[k] + min(EPE_BINS[k + 1], EPE_BINS[k] + 0.5)) / 2)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in REGIONS:
            n = max(self.n[r], 1)
            out[f"epe_{r}"] = self.sums[r]["epe"] / n if self.n[r] else float("nan")
            out[f"median_epe_{r}"] = self._median(r)
            out[f"ae_deg_{r}"] = self.sums[r]["ae"] / n if self.n[r] else float("nan")
            out[f"fl_{r}"] = self.sums[r]["fl"] / n if self.n[r] else float("nan")
            out[f"zero_epe_{r}"] = self.sums[r]["zero"] / n if self.n[r] else float("nan")
        nv = max(self.n["vessel"], 1)
        for t, hits in self.acc.items():
            out[acc_name(t)] = hits / nv if self.n["vessel"] else float("nan")
        return out

    def speed_curve(self) -> list[dict[str, float]]:
        """Vessel EPE per bin of true speed."""
        return [
            {
                "speed_lo": float(lo),
                "speed_hi": float(hi),
                "pixels": int(n),
                "epe": float(e / n) if n else float("nan"),
            }
            for lo, hi, e, n in zip(
                SPEED_BINS[:-1], SPEED_BINS[1:], self.speed_epe, self.speed_n, strict=True
            )
        ]


class FlowMetrics(Metric):
    """EPE and zero-flow EPE per region, and 1 px / 3 px accuracy in the vessel (torch)."""

    full_state_update = False
    thresholds = (1.0, 3.0)

    def __init__(self) -> None:
        super().__init__()
        names = [f"{k}_{r}" for r in REGIONS for k in ("epe", "zero_epe", "count")]
        for name in names + [acc_name(t) for t in self.thresholds]:
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, name: str, value: torch.Tensor) -> None:
        setattr(self, name, getattr(self, name) + value)

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
    ) -> None:
        """pred, target (..., 2, H, W) px/frame; mask, valid (..., H, W) bool."""
        epe = (pred.float() - target.float()).norm(dim=-3)
        zero = target.float().norm(dim=-3)
        where_ = regions(mask, valid)
        for name, where in where_.items():
            self._add(f"epe_{name}", epe[where].double().sum())
            self._add(f"zero_epe_{name}", zero[where].double().sum())
            self._add(f"count_{name}", where.sum())
        for t in self.thresholds:
            self._add(acc_name(t), (epe[where_["vessel"]] < t).sum())

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for r in REGIONS:
            n = getattr(self, f"count_{r}").clamp(min=1)
            out[f"epe_{r}"] = getattr(self, f"epe_{r}") / n
            out[f"zero_epe_{r}"] = getattr(self, f"zero_epe_{r}") / n
        for t in self.thresholds:
            out[acc_name(t)] = getattr(self, acc_name(t)) / self.count_vessel.clamp(min=1)
        return {k: v.float() for k, v in out.items()}

"""Flow error measures, one set of definitions and names for evaluation and training.

Per pixel: EPE = |pred - gt| (px/frame); angular error (Barron et al.: the angle between
(u, v, 1) and (u_gt, v_gt, 1), degrees); Fl outlier = EPE > 3 px and > 5 % of |gt|
(KITTI). Regions: all valid pixels, the vessel mask, and outside it. ``zero_epe_<region>``
is the EPE of predicting no motion (= the mean true speed), so a model that collapsed to
"nothing moves" is seen at once; ``acc_<t>px_vessel`` is the share of vessel pixels with
EPE under t px. ``speed_ratio_vessel`` is the speed a method reads, as a share of the true
one: the sum over vessel pixels of the prediction's component along the true motion over the
sum of the true speeds (1: unbiased; 0.6: the mean speed reads 40 % low, as a mean-velocity
measurement would; 0: nothing or only motion across the true direction). EPE says how far
off each vector is; the ratio says which way a mean of them leans.

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


def along_true(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The prediction's component along the true motion, px/frame (0 where nothing moves)."""
    speed = np.linalg.norm(gt, axis=-1)
    return (pred * gt).sum(-1) / np.where(speed > 0, speed, 1.0)


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
        self.speed_along = np.zeros(len(SPEED_BINS) - 1)
        self.speed_sum = np.zeros(len(SPEED_BINS) - 1)
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
        along = along_true(pred[vessel], gt[vessel])
        which = np.digitize(speed[vessel], SPEED_BINS) - 1
        np.add.at(self.speed_epe, which, epe[vessel])
        np.add.at(self.speed_along, which, along)
        np.add.at(self.speed_sum, which, speed[vessel])
        np.add.at(self.speed_n, which, 1)

    def merge(self, other: ErrorStats) -> None:
        """Add another's counts (another clip's) to these."""
        for r in self.n:
            self.n[r] += other.n[r]
            self.hist[r] += other.hist[r]
            for k in self.sums[r]:
                self.sums[r][k] += other.sums[r][k]
        for t in self.acc:
            self.acc[t] += other.acc[t]
        for name in ("speed_epe", "speed_along", "speed_sum", "speed_n"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

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
        out["speed_ratio_vessel"] = _ratio(self.speed_along.sum(), self.speed_sum.sum())
        return out

    def speed_curve(self) -> list[dict[str, float]]:
        """Vessel EPE and the speed read (``speed_ratio``) per bin of true speed."""
        return [
            {
                "speed_lo": float(lo),
                "speed_hi": float(hi),
                "pixels": int(n),
                "epe": float(e / n) if n else float("nan"),
                "speed_ratio": _ratio(a, s),
            }
            for lo, hi, e, a, s, n in zip(
                SPEED_BINS[:-1],
                SPEED_BINS[1:],
                self.speed_epe,
                self.speed_along,
                self.speed_sum,
                self.speed_n,
                strict=True,
            )
        ]


def _ratio(along: float, speed: float) -> float:
    """The speed read over the true speed; nan where nothing moves."""
    return float(along / speed) if speed > 0 else float("nan")


class FlowMetrics(Metric):
    """EPE and zero-flow EPE per region, 1 px / 3 px accuracy and the speed read in the
    vessel (torch)."""

    full_state_update = False
    thresholds = (1.0, 3.0)

    def __init__(self) -> None:
        super().__init__()
        names = [f"{k}_{r}" for r in REGIONS for k in ("epe", "zero_epe", "count")]
        for name in names + [acc_name(t) for t in self.thresholds] + ["along_vessel"]:
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
        vessel = where_["vessel"]
        for t in self.thresholds:
            self._add(acc_name(t), (epe[vessel] < t).sum())
        along = (pred.float() * target.float()).sum(-3) / torch.where(zero > 0, zero, 1.0)
        self._add("along_vessel", along[vessel].double().sum())

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for r in REGIONS:
            n = getattr(self, f"count_{r}").clamp(min=1)
            out[f"epe_{r}"] = getattr(self, f"epe_{r}") / n
            out[f"zero_epe_{r}"] = getattr(self, f"zero_epe_{r}") / n
        for t in self.thresholds:
            out[acc_name(t)] = getattr(self, acc_name(t)) / self.count_vessel.clamp(min=1)
        moving = self.zero_epe_vessel
        out["speed_ratio_vessel"] = torch.where(
            moving > 0, self.along_vessel / moving.clamp(min=1e-12), float("nan")
        )
        return {k: v.float() for k, v in out.items()}


# expected-error bins, px/frame: log-spaced 0.001-1000 (0.7 % wide), with 0 and inf at the ends
UNC_BINS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 2001), [np.inf]])
SPARSIFICATION = np.round(np.arange(0.0, 0.99, 0.02), 2)  # share of pixels removed


class Calibration:
    """How well a predicted expected error (px/frame) ranks and sizes the actual EPE.

    Accumulates in histograms, so memory is constant in the number of pixels: pixels by
    predicted error (count and EPE sum per bin) for the sparsification curve, pixels by actual
    EPE for the oracle curve (Ilg et al. 2018, "Uncertainty estimates and multi-hypotheses
    networks for optical flow"). Within a bin, removal takes the bin's mean, so the curves are
    exact wherever a removed share ends on a bin edge.
    """

    def __init__(self) -> None:
        self.n = 0
        self.sum_epe = 0.0
        self.sum_pred = 0.0
        self.by_pred = np.zeros((2, len(UNC_BINS) - 1))  # count, EPE sum
        self.by_epe = np.zeros((2, len(EPE_BINS) - 1))

    def update(self, epe: np.ndarray, predicted: np.ndarray) -> None:
        """epe, predicted: the same pixels (any shape), px/frame."""
        epe, predicted = epe.ravel().astype(np.float64), predicted.ravel().astype(np.float64)
        self.n += epe.size
        self.sum_epe += float(epe.sum())
        self.sum_pred += float(predicted.sum())
        for hist, key, bins in ((self.by_pred, predicted, UNC_BINS), (self.by_epe, epe, EPE_BINS)):
            which = np.clip(np.digitize(key, bins) - 1, 0, len(bins) - 2)
            hist[0] += np.bincount(which, minlength=len(bins) - 1)
            hist[1] += np.bincount(which, weights=epe, minlength=len(bins) - 1)

    def merge(self, other: Calibration) -> None:
        self.n += other.n
        self.sum_epe += other.sum_epe
        self.sum_pred += other.sum_pred
        self.by_pred += other.by_pred
        self.by_epe += other.by_epe

    @staticmethod
    def _kept_mean(hist: np.ndarray, removed: np.ndarray) -> np.ndarray:
        """Mean EPE of the pixels left after removing the ``removed`` share from the top bins."""
        count, total = hist
        cum_n = np.concatenate([[0.0], np.cumsum(count)])
        cum_e = np.concatenate([[0.0], np.cumsum(total)])
        keep = (1.0 - removed) * cum_n[-1]
        k = np.clip(np.searchsorted(cum_n, keep, side="left"), 1, len(count))  # bin k-1 holds it
        mean_in = np.divide(total, count, out=np.zeros_like(total), where=count > 0)[k - 1]
        return (cum_e[k - 1] + (keep - cum_n[k - 1]) * mean_in) / np.maximum(keep, 1e-12)

    def summary(self) -> dict:
        """Sparsification and oracle curves (mean EPE of what is kept), AUSE (px/frame, area
        between them over the removed share), the EPE kept at half the pixels over the EPE
        of all of them, and mean predicted / mean actual error."""
        if self.n == 0:
            return {"pixels": 0}
        curve = self._kept_mean(self.by_pred, SPARSIFICATION)
        oracle = self._kept_mean(self.by_epe, SPARSIFICATION)
        mean = self.sum_epe / self.n
        gap = curve - oracle  # the area by the trapezoid rule
        ause = float(((gap[1:] + gap[:-1]) / 2 * np.diff(SPARSIFICATION)).sum())
        half = float(self._kept_mean(self.by_pred, np.array([0.5]))[0])
        return {
            "pixels": int(self.n),
            "mean_epe": mean,
            "mean_predicted": self.sum_pred / self.n,
            "ratio": self.sum_pred / max(self.sum_epe, 1e-12),
            "ause": ause,
            "kept_half_ratio": half / mean if mean > 0 else float("nan"),
            "removed": SPARSIFICATION.tolist(),
            "curve": curve.tolist(),
            "oracle": oracle.tolist(),
        }

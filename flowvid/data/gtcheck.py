"""Does a clip's ground truth move its frames? A photometric check of the flow convention.

Flow files are easy to get subtly wrong: negated (or backward, frame i+1 to i), u and v
swapped, one pair off (T vs T-1), or in the wrong units (um/s or px/s instead of
px/frame, which sends the pixels out of the frame). Each reading of ``flow[i]`` is tried
on frame pairs sampled over the clip: frame i+1 is warped back by it onto frame i's grid
(cubic) and compared with frame i, both smoothed 1 px against pixel noise, with a global
gain and offset matched, where the stated flow moves (> 0.25 px/frame) and lands inside
frame i+1. The stated reading must fit at least as well as every other; a clip where
another one fits clearly better (residual below ``FLAG`` times the stated one's), or whose
flow sends most moving pixels out of the frame, has a problem to fix before training or
evaluation.

Zero flow is the reference, not a verdict: ``still`` is the stated flow's residual over
zero flow's. Above 1, the frames look still where the flow moves. That is a flow in the
wrong units or for other frames, or a clear lumen whose sparse tracers are the only moving
thing (the label moves the whole lumen, the pixels show the still tissue behind it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from flowvid.data.dataset import Clip
from flowvid.flowops import cubic_warp, sample_grid
from flowvid.io.flowfile import FlowSequence, open_flow
from flowvid.io.video import open_video
from flowvid.models.lk import DenseLK, match_brightness

FLAG = 0.85  # another reading whose residual is below this fraction of the stated one's
MOVING = 0.25  # px/frame: pixels where readings can differ
MIN_PIXELS = 200  # fewer moving pixels than this and the convention cannot be told
BORDER = 4  # px left out at the frame's edge

Reading = Callable[[tuple[np.ndarray, ...]], np.ndarray]  # maps (i-1, i, i+1) -> (H, W, 2)

READINGS: dict[str, Reading] = {
    "as stated": lambda maps: maps[1],
    "negated": lambda maps: -maps[1],
    "u, v swapped": lambda maps: maps[1][..., ::-1],
    "one pair early": lambda maps: maps[0],  # flow[i] belongs to the frames (i+1, i+2)
    "one pair late": lambda maps: maps[2],  # flow[i] belongs to the frames (i-1, i)
    "zero flow": lambda maps: np.zeros_like(maps[1]),  # the reference, never a verdict
}
SHIFTED = ("one pair early", "one pair late")

FIXES = {
    "negated": "flow[i] must move frame i to frame i+1 (u right, v down): negate it, "
    "or it is backward flow (frame i+1 to i)",
    "u, v swapped": "channel 0 must be u (x, to the right), channel 1 v (y, down): swap them",
    "one pair early": "flow[i] must belong to the frames (i, i+1): the maps are one pair off",
    "one pair late": "flow[i] must belong to the frames (i, i+1): the maps are one pair off",
    "out of frame": "the flow sends most moving pixels out of the frame: check its units "
    "(px/frame; um/s divides by um_per_px * fps)",
}


@dataclass
class GroundTruthCheck:
    """One clip's verdict: mean |residual| per reading over the pixels its flow moves."""

    clip: str
    pairs: list[int]
    pixels: int = 0  # pixels compared: the stated flow moves them and keeps them in view
    leaving: int = 0  # pixels the stated flow moves out of the frame
    still: float = float("nan")  # residual of the stated flow / of zero flow
    residual: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> str | None:
        """The moving reading that fits best, or None where too little moves to tell."""
        if self.pixels < MIN_PIXELS:
            return None
        moving = {k: v for k, v in self.residual.items() if k != "zero flow"}
        return min(moving, key=moving.__getitem__)

    @property
    def suspect(self) -> str | None:
        """Another reading that fits clearly better than the stated one, if any."""
        if self.leaving > max(self.pixels, MIN_PIXELS):
            return "out of frame"
        best = self.best
        if best is None or best == "as stated":
            return None
        return best if self.residual[best] < FLAG * self.residual["as stated"] else None


def _tensor(x: np.ndarray) -> torch.Tensor:
    """(H, W, C) -> (1, C, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(2, 0, 1)[None]


def _warp_residual(
    frame0: torch.Tensor, smooth0: torch.Tensor, frame1: torch.Tensor, flow: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """|smoothed frame1(p + flow) - smoothed frame0(p)| averaged over channels (H, W), and
    where the warp stays inside the frame (H, W) bool; ``smooth0`` is smoothed frame0."""
    inside = (sample_grid(flow).abs() <= 1.0).all(-1)[0]
    warped = match_brightness(cubic_warp(frame1, flow), frame0, inside[None, None].float())
    return (DenseLK._presmooth(warped) - smooth0).abs().mean(1)[0], inside


def check_ground_truth(clip: Clip, pairs: int = 8) -> GroundTruthCheck:
    """Try every reading of ``clip``'s flow on ``pairs`` frame pairs spread over the clip.

    The shifted readings need the pair's neighbours, so pairs are drawn from the inner ones
    where the clip has any (3 or more maps); a 2-frame clip is checked without them.
    """
    gt = open_flow(clip.flow)
    n = len(gt)
    pool = list(range(1, n - 1)) if n >= 3 else list(range(n))
    chosen = sorted({pool[round(k)] for k in np.linspace(0, len(pool) - 1, min(pairs, len(pool)))})
    readings = {k: v for k, v in READINGS.items() if n >= 3 or k not in SHIFTED}
    result = GroundTruthCheck(clip.name, chosen)
    sums = dict.fromkeys(readings, 0.0)
    with open_video(clip.video) as video:
        for i in chosen:
            frames = video.read([i, i + 1]).astype(np.float32) / 255.0
            f0, f1 = _tensor(frames[0]), _tensor(frames[1])
            maps = tuple(
                np.nan_to_num(np.asarray(gt[min(max(j, 0), n - 1)])) for j in (i - 1, i, i + 1)
            )
            moving = torch.from_numpy(_compared(gt, i, np.asarray(gt[i])))
            smooth0 = DenseLK._presmooth(f0)
            res, inside = {}, {}
            for name, reading in readings.items():
                flow = _tensor(reading(maps))
                res[name], inside[name] = _warp_residual(f0, smooth0, f1, flow)
            keep = moving & inside["as stated"]
            result.pixels += int(keep.sum())
            result.leaving += int((moving & ~inside["as stated"]).sum())
            for name, r in res.items():
                sums[name] += float(r[keep].sum())
    result.residual = {k: v / max(result.pixels, 1) for k, v in sums.items()}
    if sums["zero flow"] > 0:
        result.still = sums["as stated"] / sums["zero flow"]
    return result


def _compared(gt: FlowSequence, i: int, flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: known, finite, moving vectors of map i, away from the frame's edge."""
    valid = np.isfinite(flow).all(-1)
    if gt.valid(i) is not None:
        valid &= gt.valid(i)
    valid &= np.linalg.norm(np.nan_to_num(flow), axis=-1) > MOVING
    valid[:BORDER], valid[-BORDER:], valid[:, :BORDER], valid[:, -BORDER:] = (False,) * 4
    return valid

"""Classical optical flow behind the model's streaming interface: ``predict --method dis`` or
``--method farneback`` writes the same files and sidecar as the model, so ``measure``,
``kymo``, ``summary`` and ``overlay`` read either, and a user can set the two side by side on
a video without ground truth.

The methods are the ones ``eval --baselines`` scores and training's validation reports beside
the model (:data:`CLASSICAL`), on the same 8-bit grey frames: Farneback and DIS (medium
preset), each also averaged over 3 consecutive maps (:func:`centred_means`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch


def farneback(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 4, 15, 3, 5, 1.2, 0)


_DIS: dict[str, cv2.DISOpticalFlow] = {}


def dis_medium(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    if "medium" not in _DIS:
        _DIS["medium"] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _DIS["medium"].calc(prev, nxt, None)


TEMPORAL_WINDOW = 3  # maps averaged by the temporal baselines
# the classical methods a model is judged against: two-frame, and averaged over time
CLASSICAL = ("farneback", "dis_medium", "farneback_t3", "dis_medium_t3")


def centred_means(maps: Iterator[np.ndarray], half: int) -> Iterator[np.ndarray]:
    """Maps (H, W, 2) in order -> (1, H, W, 2) chunks, each the mean of the maps within
    ``half`` of it; at most 2 * half + 1 maps held at a time."""
    held: list[np.ndarray] = []  # maps i - half .. i + half that have arrived
    first = 0  # index of held[0]
    n = 0  # maps arrived
    for m in maps:
        held.append(m)
        n += 1
        i = n - 1 - half  # the map whose window is now complete
        if i >= 0:
            lo = max(i - half, 0)
            yield np.mean(held[lo - first :], axis=0, dtype=np.float32)[None]
            if i - half >= first:  # map i - half is needed by no later window
                held.pop(0)
                first += 1
    for i in range(max(n - half, 0), n):  # the last maps: their windows end at the clip's end
        lo = max(i - half, 0)
        yield np.mean(held[lo - first :], axis=0, dtype=np.float32)[None]


def classical_flows(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Each of :data:`CLASSICAL` on one clip's frames (T, H, W, 3) uint8 RGB -> its flow
    (T-1, H, W, 2) px/frame; the averaged ones pool maps within the clip only."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flows = {}
    for name, compute in (("farneback", farneback), ("dis_medium", dis_medium)):
        maps = [compute(a, b) for a, b in zip(grey[:-1], grey[1:], strict=True)]
        flows[name] = np.stack(maps)
        means = centred_means(iter(maps), TEMPORAL_WINDOW // 2)
        flows[f"{name}_t3"] = np.concatenate(list(means))
    return flows


METHODS = {"dis": dis_medium, "farneback": farneback}


class ClassicalFlow(torch.nn.Module):
    """DIS (OpenCV's medium preset) or Farneback, chunk by chunk: ``step`` takes frames
    (1, N, 3, H, W) in [0, 1] and returns the flow of each frame that has a predecessor,
    (1, N or N-1, 2, H, W) px/frame, frame t-1 to t; the state is the last grey frame."""

    task = "flow"
    error_head = None  # no expected error: --uncertainty needs the model

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method, self.compute = method, METHODS[method]
        self.provenance: dict[str, Any] = {
            "method": method,
            "checkpoint": None,
            "checkpoint_sha256": f"opencv-{cv2.__version__}-{method}",
            "model": {"method": method, "opencv": cv2.__version__},
        }

    def init_state(self) -> dict[str, np.ndarray | None]:
        return {"previous": None}

    def step(
        self, frames: torch.Tensor, state: dict[str, np.ndarray | None]
    ) -> tuple[torch.Tensor, dict[str, np.ndarray | None]]:
        pixels = (frames[0].float() * 255).round().clamp(0, 255).to(torch.uint8)
        previous, maps = state["previous"], []
        for frame in pixels.permute(0, 2, 3, 1).cpu().numpy():
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if previous is not None:
                maps.append(self.compute(previous, grey))
            previous = grey
        h, w = frames.shape[-2:]
        flow = np.stack(maps) if maps else np.zeros((0, h, w, 2), np.float32)
        out = torch.from_numpy(np.ascontiguousarray(flow, np.float32)).permute(0, 3, 1, 2)
        return out[None].to(frames.device), {"previous": previous}

"""Classical optical flow behind the model's streaming interface: ``predict --method dis`` or
``--method farneback`` writes the same files and sidecar as the model, so ``measure``,
``kymo``, ``summary`` and ``overlay`` read either, and a user can set the two side by side on
a video without ground truth.

The methods are the ones ``eval --baselines`` scores (:func:`flowvid.evaluate.dis_medium`,
:func:`flowvid.evaluate.farneback`), on the same 8-bit grey frames.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from flowvid.evaluate import dis_medium, farneback

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

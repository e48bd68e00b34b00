"""The microscope's camera over the synthetic world: a slow drift with a little wobble.

The world canvas is the frame plus a margin (``pad``) wide enough for the whole drift;
camera pixel p at frame t looks at world point ``p + pad - d(t)``, so content seen at p in
frame 0 is at ``p + d(t) - d(0)`` in frame t.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Camera:
    size: int  # frame side, px
    frames: int
    direction: np.ndarray  # (2,) unit vector of the drift
    total: float  # drift over the whole clip, px (0: a still camera)
    wobble: tuple[float, float]  # amplitude (px) and phase of the sideways wobble
    pad: int  # world margin around the frame, px

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int, frames: int, drift_prob: float) -> Camera:
        """A still camera (probability ``1 - drift_prob``) or one drifting 2 px to 12 % of
        the frame over the clip, in a random direction."""
        total = rng.uniform(2.0, max(2.0, 0.12 * size)) if rng.random() < drift_prob else 0.0
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        wobble = (float(rng.uniform(0, 1.0)) if total else 0.0, rng.uniform(0, 2 * np.pi))
        pad = int(np.ceil(total + wobble[0] * 2)) + 2 if total else 0
        return cls(size, frames, direction, float(total), wobble, pad)

    @property
    def canvas(self) -> int:
        """Side of the world canvas, px."""
        return self.size + 2 * self.pad

    @property
    def drift_px(self) -> list[float]:
        """The drift over the whole clip, (dx, dy) px."""
        return [round(float(x), 3) for x in self.direction * self.total]

    def drift(self, t: float) -> np.ndarray:
        """Camera offset at frame t, px: content seen at p in frame 0 is at p + d(t) - d(0)."""
        if not self.total:
            return np.zeros(2)
        frac = t / max(self.frames - 1, 1)
        amp, phase = self.wobble
        perp = np.array([-self.direction[1], self.direction[0]])
        wobble = amp * (np.sin(2 * np.pi * frac * 1.5 + phase) - np.sin(phase))
        return self.total * frac * self.direction + wobble * perp

    def maps(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Where camera pixel p looks in the world at frame t: p + pad - d(t), (H, W) each."""
        n = self.size
        y, x = np.mgrid[0:n, 0:n].astype(np.float32)
        d = self.drift(t)
        return x + np.float32(self.pad - d[0]), y + np.float32(self.pad - d[1])

    def view(self, world: np.ndarray, t: float, interpolation: int) -> np.ndarray:
        """The frame-t view of a world-canvas image, (canvas, canvas, ...) -> (H, W, ...)."""
        if not self.pad:
            return world
        mx, my = self.maps(t)
        return cv2.remap(
            world.astype(np.float32), mx, my, interpolation, borderMode=cv2.BORDER_REFLECT
        )

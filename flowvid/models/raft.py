"""torchvision's RAFT as a flowvid model: the best two-frame network, as an anchor.

It sees one pair of frames at a time (no temporal core) and exposes the interface of
:class:`~flowvid.models.model.FlowVid`: ``forward`` on a clip, ``step`` for streaming, a
``task`` and an ``encoder`` (its feature encoder). Random initialisation only: nothing is
downloaded. RAFT needs frames of 128 px or more (its correlation pyramid works at 1/8 and
halves three times): smaller clips are enlarged by a whole factor for it and the flow is
brought back to the clip's grid (vectors divided by the same factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

RAFT_MIN_SIDE = 128
RAFT_MODELS = ("raft_small", "raft_large")


@dataclass
class PairState:
    last: torch.Tensor | None = None  # the previous chunk's last frame (B, 3, H, W)


class RaftFlow(nn.Module):
    task = "flow"

    def __init__(self, name: str = "raft_small", iterations: int = 12) -> None:
        super().__init__()
        from torchvision.models import optical_flow

        if name not in RAFT_MODELS:
            raise ValueError(f"unknown RAFT model {name!r}; choose one of {RAFT_MODELS}")
        self.net = getattr(optical_flow, name)(weights=None, progress=False)
        self.iterations = iterations

    @property
    def encoder(self) -> nn.Module:
        return self.net.feature_encoder

    def init_state(self) -> PairState:
        return PairState()

    def pairs(self, a: torch.Tensor, b: torch.Tensor, every: bool = False) -> torch.Tensor:
        """Frames a, b (N, 3, H, W) in [0, 1] -> flow from a to b (N, 2, H, W), px; with
        ``every``, the flow after each of the updates (I, N, 2, H, W), the last one last."""
        h, w = a.shape[-2:]
        k = max(1, math.ceil(RAFT_MIN_SIDE / min(h, w)))
        ph, pw = -(h * k) % 8, -(w * k) % 8
        x = torch.cat([a, b]) * 2 - 1  # RAFT's input range
        if k > 1:
            x = F.interpolate(x, scale_factor=k, mode="bilinear", align_corners=False)
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        flows = self.net(x[: len(a)], x[len(a) :], num_flow_updates=self.iterations)
        flow = torch.stack(flows if every else flows[-1:])[..., : h * k, : w * k]
        if k > 1:
            flow = F.avg_pool2d(flow.flatten(0, 1), k).unflatten(0, flow.shape[:2]) / k
        return flow if every else flow[0]

    def step(self, frames: torch.Tensor, state: PairState) -> tuple[torch.Tensor, PairState]:
        """A chunk (B, N, 3, H, W) -> flow into each frame that has a predecessor
        (B, N or N-1, 2, H, W), like FlowVid.step."""
        if state.last is not None:
            frames = torch.cat([state.last[:, None], frames], 1)
        b, n = frames.shape[:2]
        if n < 2:
            empty = frames.new_zeros(b, 0, 2, *frames.shape[-2:])
            return empty, PairState(frames[:, -1])
        a = frames[:, :-1].flatten(0, 1)
        z = frames[:, 1:].flatten(0, 1)
        flow = self.pairs(a, z).unflatten(0, (b, n - 1))
        return flow, PairState(frames[:, -1])

    def forward(self, frames: torch.Tensor, aux: dict | None = None) -> torch.Tensor:
        """A clip (B, T, 3, H, W) in [0, 1] -> flow (B, T-1, 2, H, W). In training, ``aux``
        (a dict) receives every update's flow as ``iterations`` (I, B, T-1, 2, H, W) for
        RAFT's sequence loss: torchvision's RAFT detaches the flow between updates, so a loss
        on the last one alone hardly trains the earlier ones."""
        if aux is None or not self.training:
            return self.step(frames, self.init_state())[0]
        flows = self.pairs(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), every=True)
        aux["iterations"] = flows.unflatten(1, (frames.shape[0], -1))
        return aux["iterations"][-1]

    def embed(self, frames: torch.Tensor, state: PairState):  # noqa: ANN201
        raise ValueError("a RAFT model has no per-frame embedding (it has no temporal core)")

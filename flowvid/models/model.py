"""FlowVid, the network: encoder -> matching and motion cues -> recurrent core at stride 4 ->
U-Net decoder -> head, then the optional stages after it.

The flow head starts from a soft-argmax match of learned features (frame t-1 against frame t,
candidate displacements at strides 4 and 8); the recurrent core, which has seen every frame
so far, corrects it at stride 4, and the decoder adds full-resolution detail. Stages after
the network (built by :func:`~flowvid.models.build.create_model`): the Lucas-Kanade stage
(:mod:`~flowvid.models.refine`), where the frames have the last word, and the expected-error
head (:mod:`~flowvid.models.uncertainty`); last, the mean over time (:mod:`~.timemean`).

Streaming: ``state = model.init_state()``, then ``out, state = model.step(chunk, state)``
chunk after chunk of a video of any length, in constant memory; ``forward(clip)`` is one
``step`` from a fresh state and gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from flowvid.models.decoder import FeaturePyramid, UNetDecoder
from flowvid.models.encoder import Encoder
from flowvid.models.features import Features
from flowvid.models.heads import HEADS
from flowvid.models.matching import SoftMatch, contrast
from flowvid.models.refine import LKStage
from flowvid.models.temporal import CORES, local_correlation
from flowvid.models.timemean import TimeMean
from flowvid.models.uncertainty import ErrorHead


@dataclass
class StreamState:
    """What the model carries from one chunk to the next."""

    core: tuple[torch.Tensor, ...] | None = None  # recurrent state at stride 4
    prev: Features | None = None  # the last frame's features, (B, ...)
    size: tuple[int, int] | None = None  # (H, W) of the video
    recent: dict[str, torch.Tensor] | None = None  # the mean over time's last maps


class FlowVid(nn.Module):
    def __init__(
        self,
        encoder: Encoder,
        *,
        core: str,
        task: str,
        hidden: int,
        context: int,
        corr_radius: int,
        coarse_corr_radius: int,
        decoder_widths: tuple[int, int, int],
        refine: LKStage | None,
        error_head: ErrorHead | None,
        time_mean: TimeMean | None,
    ) -> None:
        """Built by :func:`~flowvid.models.build.create_model`, whose keyword arguments (a
        checkpoint's ``model_kwargs``) hold every default once. ``refine``, ``error_head``,
        ``time_mean``: the stages after the network (flow models only), or None."""
        super().__init__()
        self.encoder = encoder
        self.pyramid = FeaturePyramid(encoder.channels, encoder.reductions, context)
        self.corr_radius, self.coarse_corr_radius = corr_radius, coarse_corr_radius
        costs = (2 * corr_radius + 1) ** 2 + (2 * coarse_corr_radius + 1) ** 2
        self.match = SoftMatch(corr_radius, coarse_corr_radius)
        self.cost_encoder = nn.Sequential(  # the matching evidence gets its own branch
            nn.Conv2d(costs + 2, context, 1),
            nn.GELU(),
            nn.Conv2d(context, context, 3, padding=1),
            nn.GELU(),
        )
        self.motion = nn.Sequential(nn.Conv2d(3 * context, context, 3, padding=1), nn.GELU())
        self.core = CORES[core](context, hidden)
        skip = encoder.channels[encoder.reductions.index(2)] if 2 in encoder.reductions else None
        self.decoder = UNetDecoder(hidden, skip, decoder_widths)  # to full resolution, with detail
        self.head = HEADS[task](self.decoder.out_dim)
        # the output at stride 4, straight from the state; the decoder adds full-resolution detail
        self.coarse = nn.Conv2d(hidden, self.head.out_channels, 3, padding=1)
        nn.init.normal_(self.coarse.weight, std=self.head.init_std)
        nn.init.zeros_(self.coarse.bias)
        self.refine, self.error_head, self.time_mean = refine, error_head, time_mean
        self.multiple = max(encoder.reductions)

    @property
    def task(self) -> str:
        """What the model predicts: ``flow`` or ``frames`` (its head's task)."""
        return self.head.task

    def _memory_format(self) -> torch.memory_format:
        """channels_last after ``model.to(memory_format=torch.channels_last)``: the frames
        follow the weights, so no operation mixes the two layouts (each mix takes a slow path)."""
        w = self.coarse.weight
        if not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
        return torch.contiguous_format

    def init_state(self) -> StreamState:
        return StreamState()

    def step(
        self, frames: torch.Tensor, state: StreamState, aux: dict | None = None
    ) -> tuple[torch.Tensor, StreamState]:
        """Consume a chunk (B, N, 3, H, W) in [0, 1]; return this chunk's outputs and the state.

        Flow head: one (2, H, W) map per frame that has a predecessor (N, or N-1 for the
        first chunk), flow from frame t-1 to t. Frames head: one (3, H, W) prediction of
        frame t+1 per frame t (N). Output: (B, N_out, C, H, W).

        ``aux``, a dict when given, receives what the stages after the network saw, each
        (B, N_out, C, H, W): with the Lucas-Kanade stage ``lk_start`` (the network's flow),
        ``lk_prior`` (how far off it may be, px), ``lk_trust`` (the weight of the frames'
        evidence, with a trust head) and ``lk_width`` (what the frames leave open, px); with
        the error head ``uncertainty``, each output vector's expected end-point error, px/frame.
        """
        b, _, _, h, w = frames.shape
        hiddens, feats, before, match, new_state = self._advance(frames, state)
        # a flow map needs frame t-1 (none for a stream's frame 0); a frame, the one it follows
        skip = 1 if state.prev is None and self.head.on_previous else 0
        if hiddens.shape[1] == skip:
            return frames.new_zeros(b, 0, self.head.out_channels, h, w), new_state
        anchor = (before if self.head.on_previous else feats).map(lambda v: v[:, skip:])
        out, extra = self._decode(
            hiddens[:, skip:], match[:, skip:], feats.rgb[:, skip:], anchor, aux is not None
        )
        out, extra = out[..., :h, :w], {k: v[..., :h, :w] for k, v in extra.items()}
        if self.time_mean is not None:
            out, extra, new_state.recent = self.time_mean(out, extra, state.recent)
        if aux is not None:
            aux.update(extra)
        return out, new_state

    def embed(self, frames: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        """The learned per-frame representation: the core's hidden state after each frame.

        frames (B, N, 3, H, W) -> (B, N, S, ceil(H/4), ceil(W/4)), streaming like :meth:`step`.
        """
        hiddens, *_, new_state = self._advance(frames, state)
        return hiddens, new_state

    def _advance(
        self, frames: torch.Tensor, state: StreamState
    ) -> tuple[torch.Tensor, Features, Features, torch.Tensor, StreamState]:
        """Encode a chunk (B, N, 3, H, W), match each frame to its predecessor and step the
        core through the frames. Returns every frame's hidden state (B, N, S, H/4, W/4); the
        frames' features and their predecessors' (B, N, ...); the match from each predecessor
        to its frame (B, N, 2, H/4, W/4) px; and the new state."""
        b, n, _, h, w = frames.shape
        if state.size is not None and state.size != (h, w):
            raise ValueError(f"frame size changed from {state.size} to {(h, w)} mid-stream")
        feats = self._encode(frames).map(lambda v: rearrange(v, "(b n) ... -> b n ...", b=b))
        before = feats.before(state.prev)
        # the cues depend on frames alone: one batched pass for the chunk, then the core steps
        x, match = self._cues(*(f.map(lambda v: v.flatten(0, 1)) for f in (before, feats)))
        x, match = (rearrange(v, "(b n) ... -> b n ...", b=b) for v in (x, match))
        core, hiddens = state.core, []
        for t in range(n):
            hidden, core = self.core(
                x[:, t], self.core.init_state(x[:, t]) if core is None else core
            )
            hiddens.append(hidden)
        last = feats.map(lambda v: v[:, -1])
        return torch.stack(hiddens, 1), feats, before, match, StreamState(core, last, (h, w))

    def _encode(self, frames: torch.Tensor) -> Features:
        """frames (B, N, 3, H, W) -> their features (B * N, ...), padded to the encoder's
        largest stride."""
        h, w = frames.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        flat = F.pad(frames.flatten(0, 1), (0, pw, 0, ph), mode="replicate")
        flat = flat.contiguous(memory_format=self._memory_format())
        feats = self.encoder(flat)
        g4, g8 = self.pyramid(feats)
        skip = feats[self.encoder.reductions.index(2)] if 2 in self.encoder.reductions else None
        return Features(flat, skip, g4, g8, F.normalize(g4, dim=1), F.normalize(g8, dim=1))

    def _cues(self, prev: Features, cur: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion cues from frame t-1 to t at stride 4, (N, context, H/4, W/4), and the
        matched flow (N, 2, H/4, W/4) px: features, their difference, the standardised cost
        volumes and the match."""
        corr4 = local_correlation(prev.n4, cur.n4, self.corr_radius)
        corr8 = local_correlation(prev.n8, cur.n8, self.coarse_corr_radius)
        corr8 = F.interpolate(corr8, size=corr4.shape[-2:], mode="bilinear", align_corners=False)
        match = self.match(torch.cat([corr4, corr8], 1))
        evidence = torch.cat([contrast(corr4), contrast(corr8), match / 4.0], 1)
        x = self.motion(torch.cat([prev.g4, cur.g4 - prev.g4, self.cost_encoder(evidence)], 1))
        return x, match

    def _decode(
        self,
        states: torch.Tensor,
        match: torch.Tensor,
        next_rgb: torch.Tensor,
        anchor: Features,
        aux: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The outputs' core states (B, M, S, h, w), matches (B, M, 2, h, w) px, the frames
        after their anchors (B, M, 3, H, W) and the anchor frames' features (B, M, ...)
        -> the outputs (B, M, C, H, W) and what the stages after the network saw (with
        ``aux``; the error head runs only then)."""
        b = states.shape[0]
        state, match, next_rgb = (v.flatten(0, 1) for v in (states, match, next_rgb))
        rgb = anchor.rgb.flatten(0, 1)
        skip = None if anchor.skip is None else anchor.skip.flatten(0, 1)
        coarse = self.head.combine(self.coarse(state), match)
        coarse = F.interpolate(coarse, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        feat = self.decoder(state, skip, rgb)
        out = self.head(feat, rgb, coarse)
        extra, start, prior = {}, None, None
        if self.refine is not None:
            start = out
            out, prior, trust, width = self.refine(start, feat, rgb, next_rgb)
            extra = {"lk_start": start, "lk_prior": prior, "lk_trust": trust, "lk_width": width}
        if self.error_head is not None and aux:
            lk = None if start is None else (start, prior, width)
            extra["uncertainty"] = self.error_head(feat, out, rgb, next_rgb, lk)
        outs = {"flow": out} | {k: v for k, v in extra.items() if v is not None}
        outs = {k: rearrange(v, "(b m) ... -> b m ...", b=b) for k, v in outs.items()}
        return outs.pop("flow"), outs

    def rollout(
        self, state: StreamState, prediction: torch.Tensor, steps: int
    ) -> tuple[torch.Tensor, StreamState]:
        """Frames head: feed predictions back to see further ahead.

        After :meth:`step` has consumed frames up to t and predicted frame t+1
        (``prediction``, (B, 3, H, W)), return frames t+2 .. t+1+steps, (B, steps, 3, H, W).
        """
        if self.task != "frames":
            raise ValueError(f"rollout needs a frames model, not a {self.task} model")
        outs = []
        for _ in range(steps):
            out, state = self.step(prediction[:, None], state)
            prediction = out[:, -1]
            outs.append(prediction)
        return torch.stack(outs, 1), state

    def forward(self, frames: torch.Tensor, aux: dict | None = None) -> torch.Tensor:
        """A whole clip (B, T, 3, H, W) in [0, 1] -> (B, T-1, C, H, W).

        Flow: flow[:, i] moves frame i to i+1. Frames: out[:, i] predicts frame i+1.
        ``aux``: see :meth:`step`.
        """
        out, _ = self.step(frames, self.init_state(), aux)
        return self.head.clip_outputs(out)

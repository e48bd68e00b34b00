"""FlowVid: encoder -> matching and motion cues -> recurrent core at stride 4 -> U-Net decoder
-> head.

The flow head starts from a soft-argmax match of learned features (frame t-1 against frame t,
candidate displacements at strides 4 and 8); the recurrent core, which has seen every frame
so far, corrects it at stride 4, and the decoder adds full-resolution detail. With
``lk_iters`` the frames have the last word: Gauss-Newton steps on their photometric error
(:mod:`~flowvid.models.lk`); with ``uncertainty`` each vector also gets its expected error
(:mod:`~flowvid.models.uncertainty`).

``create_model(...)`` is the one front door: it resolves the names of the encoder (timm),
the core (:data:`~flowvid.models.temporal.CORES`) and the head
(:data:`~flowvid.models.heads.HEADS`), and its keyword arguments are exactly what a
checkpoint stores to rebuild the model.

Streaming: ``state = model.init_state()``, then ``out, state = model.step(chunk, state)``
chunk after chunk of a video of any length, in constant memory; ``forward(clip)`` is one
``step`` from a fresh state and gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from flowvid.config import ModelConfig
from flowvid.errors import InputError
from flowvid.models.decoder import FeaturePyramid, UNetDecoder
from flowvid.models.encoder import Encoder
from flowvid.models.heads import HEADS
from flowvid.models.lk import DenseLK
from flowvid.models.matching import SoftMatch, contrast
from flowvid.models.temporal import CORES, local_correlation
from flowvid.models.uncertainty import ErrorHead


@dataclass
class Features:
    """What the encoder gives each frame, for any leading dimensions (...): (N,) frames, or
    (B, N) frames of B clips. H, W: the frame's size padded to the encoder's largest stride.

    rgb (..., 3, H, W) the frame itself, in [0, 1]; skip (..., C, H/2, W/2) the encoder's
    stride-2 features (None for an encoder without them); g4 (..., D, H/4, W/4) and
    g8 (..., D, H/8, W/8) the fused pyramid; n4, n8 the same at unit length (for matching).
    """

    rgb: torch.Tensor
    skip: torch.Tensor | None
    g4: torch.Tensor
    g8: torch.Tensor
    n4: torch.Tensor
    n8: torch.Tensor

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Features:
        """The same features with ``fn`` applied to each tensor."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Features(**{k: None if v is None else fn(v) for k, v in values.items()})

    def before(self, prev: Features | None) -> Features:
        """(B, N, ...) features -> each frame's predecessor's: ``prev`` (B, ...), the last
        frame of the chunk before, for the first; the first frame itself at a stream's start.
        In each frame's memory layout: an operation mixing channels_last with the default
        layout takes a slow path (the correlations ran 10x slower)."""

        def shifted(name: str) -> torch.Tensor | None:
            v = getattr(self, name)
            if v is None:
                return None
            first = v[:, :1] if prev is None else getattr(prev, name)[:, None]
            return _layout_of(torch.cat([first, v[:, :-1]], 1), v)

        return Features(**{f.name: shifted(f.name) for f in fields(self)})


@dataclass
class StreamState:
    """What the model carries from one chunk to the next."""

    core: tuple[torch.Tensor, ...] | None = None  # recurrent state at stride 4
    prev: Features | None = None  # the last frame's features, (B, ...)
    size: tuple[int, int] | None = None  # (H, W) of the video


DEFAULTS = ModelConfig()


def _layout_of(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """x (B, N, C, H, W) in the memory layout of like's frames: channels_last or not."""
    frames = like.flatten(0, 1)
    if frames.is_contiguous() or not frames.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])


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
        lk_iters: int,
        lk_sigma: float,
        lk_levels: int,
        lk_prior: float,
        lk_trust: bool,
        lk_floor: float,
        uncertainty: bool,
    ) -> None:
        """Built by :func:`create_model`, whose keyword arguments (a checkpoint's
        ``model_kwargs``) hold every default once."""
        super().__init__()
        if uncertainty and task != "flow":
            raise ValueError("uncertainty is for flow models")
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
        # the frames have the last word where they have texture: Gauss-Newton on the output
        self.lk = (
            DenseLK(lk_iters, lk_sigma, lk_levels, lk_prior, floor=lk_floor)
            if lk_iters and self.head.on_previous
            else None
        )
        if self.lk is not None:  # the model's own confidence: how far off may its flow be, px
            self.lk_confidence = nn.Conv2d(self.decoder.out_dim, 1, 3, padding=1)
            nn.init.zeros_(self.lk_confidence.weight)
            nn.init.zeros_(self.lk_confidence.bias)
        # and, optionally, its trust in the frames' evidence at each pixel (1 at initialisation)
        self.lk_trust = (
            nn.Conv2d(self.decoder.out_dim, 1, 3, padding=1)
            if self.lk is not None and lk_trust
            else None
        )
        if self.lk_trust is not None:
            nn.init.zeros_(self.lk_trust.weight)
            nn.init.zeros_(self.lk_trust.bias)
        # each vector's expected error, px/frame (computed when asked for: aux["uncertainty"])
        self.error_head = (
            ErrorHead(self.decoder.out_dim, lk=self.lk is not None) if uncertainty else None
        )
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

    # ------------------------------------------------------------------ streaming

    def init_state(self) -> StreamState:
        return StreamState()

    def _features(self, frames: torch.Tensor) -> Features:
        """frames (N, 3, H, W) padded -> their features (N, ...)."""
        feats = self.encoder(frames)
        g4, g8 = self.pyramid(feats)
        skip = feats[self.encoder.reductions.index(2)] if 2 in self.encoder.reductions else None
        return Features(frames, skip, g4, g8, F.normalize(g4, dim=1), F.normalize(g8, dim=1))

    def _cues(self, prev: Features, cur: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion cues from frame t-1 to t at stride 4, (N, context, H/4, W/4), and the
        matched flow (N, 2, H/4, W/4) px: features, their difference, the standardised cost
        volumes and the match."""
        corr4 = local_correlation(prev.n4, cur.n4, self.corr_radius)
        corr8 = local_correlation(prev.n8, cur.n8, self.coarse_corr_radius)
        corr8 = F.interpolate(corr8, size=corr4.shape[-2:], mode="bilinear", align_corners=False)
        costs = torch.cat([corr4, corr8], 1)
        match = self.match(costs)
        evidence = torch.cat([contrast(corr4), contrast(corr8), match / 4.0], 1)
        x = self.motion(torch.cat([prev.g4, cur.g4 - prev.g4, self.cost_encoder(evidence)], 1))
        return x, match

    def _advance(
        self, frames: torch.Tensor, state: StreamState
    ) -> tuple[torch.Tensor, Features, Features, torch.Tensor, StreamState]:
        """Run the encoder on a chunk (B, N, 3, H, W) and step the core through its frames.

        Returns every frame's hidden state (B, N, S, H/4, W/4); the frames' features and
        their predecessors' (B, N, ...); the match from each predecessor to its frame
        (B, N, 2, H/4, W/4) px; and the new state.
        """
        b, n, _, h, w = frames.shape
        if state.size is not None and state.size != (h, w):
            raise ValueError(f"frame size changed from {state.size} to {(h, w)} mid-stream")
        ph, pw = -h % self.multiple, -w % self.multiple
        flat = F.pad(
            rearrange(frames, "b n c h w -> (b n) c h w"), (0, pw, 0, ph), mode="replicate"
        ).contiguous(memory_format=self._memory_format())
        feats = self._features(flat).map(lambda v: rearrange(v, "(b n) ... -> b n ...", b=b))
        before = feats.before(state.prev)
        # the cues depend on frames alone: one batched pass for the chunk, then the core steps
        x, match = self._cues(
            before.map(lambda v: v.flatten(0, 1)), feats.map(lambda v: v.flatten(0, 1))
        )
        x, match = (rearrange(v, "(b n) ... -> b n ...", b=b) for v in (x, match))
        core, hiddens = state.core, []
        for t in range(n):
            hidden, core = self.core(
                x[:, t], self.core.init_state(x[:, t]) if core is None else core
            )
            hiddens.append(hidden)
        last = feats.map(lambda v: v[:, -1])
        return torch.stack(hiddens, 1), feats, before, match, StreamState(core, last, (h, w))

    def step(
        self,
        frames: torch.Tensor,
        state: StreamState,
        aux: dict | None = None,
    ) -> tuple[torch.Tensor, StreamState]:
        """Consume a chunk (B, N, 3, H, W) in [0, 1]; return this chunk's outputs and the state.

        Flow head: one (2, H, W) map per frame that has a predecessor (N, or N-1 for the
        first chunk), flow from frame t-1 to t. Frames head: one (3, H, W) prediction of
        frame t+1 per frame t (N). Output: (B, N_out, C, H, W).

        ``aux``, a dict when given, receives what the Lucas-Kanade steps started from (models
        with ``lk_iters``): ``lk_start``, the network's flow before them, and ``lk_prior``, how
        far off it may be, px, (B, N_out, 1, H, W); training supervises the latter. Models
        with ``lk_trust`` add ``lk_trust``, the weight of the frames' evidence (B, N_out, 1, H, W).
        Models with ``uncertainty`` add ``uncertainty``, each vector's expected end-point error,
        px/frame (B, N_out, 1, H, W) (:mod:`flowvid.models.uncertainty`).
        """
        b, _, _, h, w = frames.shape
        hiddens, feats, before, match, new_state = self._advance(frames, state)
        # a flow map is on its first frame's grid and needs a predecessor (none for frame 0 of
        # a stream); a predicted frame is anchored on the frame it follows
        skip = 1 if state.prev is None and self.head.on_previous else 0
        anchor = before if self.head.on_previous else feats
        if hiddens.shape[1] == skip:
            return frames.new_zeros(b, 0, self.head.out_channels, h, w), new_state
        out = self._decode(
            *(v[:, skip:] for v in (hiddens, match, feats.rgb)),
            anchor.map(lambda v: v[:, skip:]),
            aux,
        )
        if aux is not None:
            aux.update({k: v[..., :h, :w] for k, v in aux.items()})
        return out[..., :h, :w], new_state

    def embed(self, frames: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        """The learned per-frame representation: the core's hidden state after each frame.

        frames (B, N, 3, H, W) -> (B, N, S, ceil(H/4), ceil(W/4)), streaming like :meth:`step`.
        """
        hiddens, *_, new_state = self._advance(frames, state)
        return hiddens, new_state

    def _decode(
        self,
        states: torch.Tensor,
        match: torch.Tensor,
        next_rgb: torch.Tensor,
        anchor: Features,
        aux: dict | None = None,
    ) -> torch.Tensor:
        """The outputs' core states (B, M, S, h, w), matches (B, M, 2, h, w) px, the frames
        after their anchors (B, M, 3, H, W) and the anchor frames' features (B, M, ...)
        -> (B, M, C, H, W)."""
        b = states.shape[0]
        state, match, next_rgb = (v.flatten(0, 1) for v in (states, match, next_rgb))
        anchor = anchor.map(lambda v: v.flatten(0, 1))
        coarse = self.head.combine(self.coarse(state), match)
        rgb = anchor.rgb
        coarse = F.interpolate(coarse, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        feat = self.decoder(state, anchor.skip, rgb)
        out = self.head(feat, rgb, coarse)
        start = prior = None
        if self.lk is not None:
            # bounded to [e^-5, e^3] x lk_prior; the bound passes gradients straight through,
            # so a width pushed past it is not stuck there
            log_width = self.lk_confidence(feat)
            log_width = log_width + (log_width.clamp(-5.0, 3.0) - log_width).detach()
            prior = self.lk.prior * log_width.exp()
            # in (0, 2): the frames count from not at all to twice their noise's say
            trust = None if self.lk_trust is None else 2.0 * torch.sigmoid(self.lk_trust(feat))
            if aux is not None:
                aux["lk_start"] = rearrange(out, "(b m) ... -> b m ...", b=b)
                aux["lk_prior"] = rearrange(prior, "(b m) ... -> b m ...", b=b)
                if trust is not None:
                    aux["lk_trust"] = rearrange(trust, "(b m) ... -> b m ...", b=b)
            start, out = out, self.lk(out, rgb, next_rgb, prior, trust)
        if self.error_head is not None and aux is not None:
            error = self.error_head(feat, out, rgb, next_rgb, start, prior)
            aux["uncertainty"] = rearrange(error, "(b m) ... -> b m ...", b=b)
        return rearrange(out, "(b m) ... -> b m ...", b=b)

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


def create_model(
    *,
    arch: str = DEFAULTS.arch,
    encoder: str = DEFAULTS.encoder,
    pretrained: str = DEFAULTS.pretrained,
    weights: str | None = DEFAULTS.weights,
    freeze: str | int = DEFAULTS.freeze,
    freeze_bn: bool = DEFAULTS.freeze_bn,
    core: str = DEFAULTS.core,
    task: str = DEFAULTS.task,
    hidden: int = DEFAULTS.hidden,
    context: int = DEFAULTS.context,
    corr_radius: int = DEFAULTS.corr_radius,
    coarse_corr_radius: int = DEFAULTS.coarse_corr_radius,
    decoder_widths: tuple[int, int, int] | list[int] = tuple(DEFAULTS.decoder_widths),
    lk_iters: int = DEFAULTS.lk_iters,
    lk_sigma: float = DEFAULTS.lk_sigma,
    lk_levels: int = DEFAULTS.lk_levels,
    lk_prior: float = DEFAULTS.lk_prior,
    lk_trust: bool = DEFAULTS.lk_trust,
    lk_floor: float = DEFAULTS.lk_floor,
    uncertainty: bool = DEFAULTS.uncertainty,
) -> FlowVid:
    """Build a FlowVid model by name; unknown names raise an error listing the valid ones.
    ``arch`` other than ``flowvid`` builds torchvision's RAFT instead (random init, a
    two-frame anchor for comparisons; :mod:`flowvid.models.raft`), ignoring the rest.

    The defaults are :class:`~flowvid.config.ModelConfig`'s (their one home), and the keyword
    arguments are exactly the fields of ``model:`` in a config and what a checkpoint stores.
    """
    if arch != "flowvid":
        from flowvid.models.raft import RAFT_MODELS, RaftFlow

        if arch not in RAFT_MODELS:
            raise InputError(f"unknown arch {arch!r}; choose one of {['flowvid', *RAFT_MODELS]}")
        if task != "flow":
            raise InputError(f"a {arch} model predicts flow only, not {task!r}")
        return RaftFlow(arch)
    for kind, name, registry in (("core", core, CORES), ("task", task, HEADS)):
        if name not in registry:
            raise InputError(f"unknown {kind} {name!r}; choose one of {sorted(registry)}")
    enc = Encoder(
        encoder, pretrained=pretrained, weights=weights, freeze=freeze, freeze_bn=freeze_bn
    )
    return FlowVid(
        enc,
        core=core,
        task=task,
        hidden=hidden,
        context=context,
        corr_radius=corr_radius,
        coarse_corr_radius=coarse_corr_radius,
        decoder_widths=tuple(decoder_widths),
        lk_iters=lk_iters,
        lk_sigma=lk_sigma,
        lk_levels=lk_levels,
        lk_prior=lk_prior,
        lk_trust=lk_trust,
        lk_floor=lk_floor,
        uncertainty=uncertainty,
    )

"""The encoder: a timm ``features_only`` CNN with a tested contract.

It exposes ``channels`` and ``reductions`` (one per feature level) and owns its input
normalisation (mean/std of its pretrained config), so images enter it in [0, 1] RGB.
The decoder and the temporal core are built from those numbers only.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from flowvid.errors import InputError
from flowvid.models.weights import imagenet_weights

FREEZE_CHOICES = "'none', 'all', or the number of stages to freeze"


class Encoder(nn.Module):
    """Per-frame multi-scale features of a timm CNN, from images in [0, 1]."""

    def __init__(
        self,
        name: str,
        *,
        pretrained: str,
        weights: str | None = None,
        freeze: str | int = "none",
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        if pretrained not in ("imagenet", "none"):
            raise InputError(f"pretrained must be 'imagenet' or 'none', not {pretrained!r}")
        try:
            self.model = timm.create_model(name, pretrained=False, features_only=True)
        except RuntimeError as err:
            raise InputError(f"encoder {name!r}: {err}") from None
        if pretrained == "imagenet":
            self._load(imagenet_weights(name, weights))
        info = self.model.feature_info
        self.channels: list[int] = info.channels()
        self.reductions: list[int] = info.reduction()
        self.stage_modules: list[str] = info.module_name()
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.freeze_bn = freeze_bn
        self.frozen_stages = self._freeze(freeze)

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        missing, _unexpected = self.model.load_state_dict(state, strict=False)
        if missing:
            raise InputError(f"weights lack {len(missing)} encoder tensors, e.g. {missing[:3]}")

    def _freeze(self, policy: str | int) -> int:
        """Freeze 'none', 'all', or the first N stages; returns the number of frozen stages."""
        stages = len(self.stage_modules)
        if policy == "none":
            return 0
        if policy == "all":
            count = stages
        elif isinstance(policy, int) and 0 <= policy <= stages:
            count = policy
        else:
            raise InputError(f"freeze must be {FREEZE_CHOICES} (0-{stages}), not {policy!r}")
        if count == 0:
            return 0
        order = {n: i for i, (n, _) in enumerate(self.model.named_modules())}
        last = self.stage_modules[count - 1]
        end = max(i for n, i in order.items() if n == last or n.startswith(last + "."))
        for name, param in self.model.named_parameters():
            if order[name.rpartition(".")[0]] <= end:
                param.requires_grad = False
        return count

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        if mode and self.freeze_bn:  # small batches: keep ImageNet statistics
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (N, 3, H, W) in [0, 1] RGB -> one (N, C_k, H/r_k, W/r_k) map per level."""
        return self.model((images - self.mean) / self.std)

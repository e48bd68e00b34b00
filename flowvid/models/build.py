"""``create_model``: the one front door to a model.

Its keyword arguments are exactly the ``model:`` section of a config (:mod:`flowvid.config`
builds that section from this signature) and what a checkpoint stores to rebuild the model;
their defaults live here, once, and so do their checks (:func:`check_model_args`).
"""

from __future__ import annotations

import inspect

from torch import nn

from flowvid.errors import InputError
from flowvid.models.encoder import Encoder
from flowvid.models.heads import HEADS
from flowvid.models.model import FlowVid
from flowvid.models.refine import LKStage
from flowvid.models.temporal import CORES
from flowvid.models.timemean import TimeMean
from flowvid.models.uncertainty import ErrorHead


def create_model(
    *,
    arch: str = "flowvid",  # flowvid (video model) | raft_small | raft_large (two-frame anchor)
    task: str = "flow",  # flow | frames
    encoder: str = "tf_efficientnet_lite0",  # a timm model
    pretrained: str = "imagenet",  # imagenet | none
    weights: str | None = None,  # local ImageNet weights file for other encoders
    freeze: str | int = "none",  # none | all | number of stages
    freeze_bn: bool = False,
    core: str = "gru",  # gru | lstm
    hidden: int = 64,
    context: int = 64,
    corr_radius: int = 3,  # stride-4 correlation: +-12 px
    coarse_corr_radius: int = 4,  # stride-8 correlation: +-32 px
    decoder_widths: tuple[int, int, int] = (64, 32, 16),
    lk_iters: int = 0,  # flow: the Lucas-Kanade stage's Gauss-Newton steps (0: no stage)
    lk_sigma: float = 2.0,  # their window, Gaussian sigma in px
    lk_levels: int = 1,  # coarse-to-fine levels (1: full resolution only)
    lk_prior: float = 0.25,  # px: how far off the network's flow may be where it has no opinion
    lk_trust: bool = False,  # learn a per-pixel trust in the frames' evidence
    lk_floor: float = 0.0,  # px: the least width of the prior, after confidence and trust
    lk_release: float = 0.0,  # px: the coarse levels' second opinion's floor (0: none)
    uncertainty: bool = False,  # flow: also each vector's expected end-point error, px/frame
    temporal_mean: int = 1,  # flow: each map averaged with the maps before it, this many in all
) -> nn.Module:
    """Build a model by name; a bad argument raises an error that names it and the valid
    values. ``arch`` other than ``flowvid`` builds torchvision's RAFT instead (random init, a
    two-frame anchor for comparisons; :mod:`flowvid.models.raft`), ignoring the rest."""
    args = dict(locals())
    check_model_args(**args)
    if arch != "flowvid":
        from flowvid.models.raft import RaftFlow

        return RaftFlow(arch)
    head_dim = decoder_widths[-1]  # the decoder's full-resolution features
    refine = None
    if lk_iters:
        steps = dict(iters=lk_iters, sigma=lk_sigma, levels=lk_levels, prior=lk_prior)
        refine = LKStage(head_dim, **steps, trust=lk_trust, floor=lk_floor, release=lk_release)
    return FlowVid(
        Encoder(
            encoder, pretrained=pretrained, weights=weights, freeze=freeze, freeze_bn=freeze_bn
        ),
        core=core,
        task=task,
        hidden=hidden,
        context=context,
        corr_radius=corr_radius,
        coarse_corr_radius=coarse_corr_radius,
        decoder_widths=tuple(decoder_widths),
        refine=refine,
        error_head=ErrorHead(head_dim, lk=refine is not None) if uncertainty else None,
        time_mean=TimeMean(temporal_mean) if temporal_mean > 1 else None,
    )


MAX_MEAN = 16  # model.temporal_mean: maps at most


def check_model_args(**args: object) -> None:
    """Every check of :func:`create_model`'s arguments, before anything is built (a config
    runs them as it loads): the first problem raises an :class:`InputError` naming its key."""
    a = {**{k: p.default for k, p in _PARAMS.items()}, **args}
    unknown = sorted(set(args) - set(_PARAMS))
    if unknown:
        raise InputError(f"unknown model keys {unknown}; the keys are {sorted(_PARAMS)}")
    from flowvid.models.raft import RAFT_MODELS

    names = {"arch": ["flowvid", *RAFT_MODELS], "task": sorted(HEADS), "core": sorted(CORES)}
    for key, valid in names.items():
        if a[key] not in valid:
            raise InputError(f"unknown model.{key} {a[key]!r}; choose one of {valid}")
    if a["arch"] != "flowvid" and a["task"] != "flow":
        raise InputError(f"a {a['arch']} model predicts flow only, not {a['task']!r}")
    for key in ("hidden", "context", "corr_radius", "coarse_corr_radius", "lk_iters"):
        lowest = 0 if key in ("corr_radius", "coarse_corr_radius", "lk_iters") else 1
        if a[key] < lowest:
            raise InputError(f"model.{key} must be at least {lowest}, not {a[key]}")
    if len(a["decoder_widths"]) != 3 or min(a["decoder_widths"]) < 1:
        raise InputError(f"model.decoder_widths must list 3 widths, not {a['decoder_widths']}")
    flowvid_flow = a["arch"] == "flowvid" and a["task"] == "flow"
    if a["lk_levels"] < 1 or a["lk_sigma"] <= 0 or a["lk_prior"] <= 0:
        raise InputError("model.lk_levels must be >= 1, model.lk_sigma and model.lk_prior > 0")
    if not 0 <= a["lk_floor"] <= a["lk_prior"]:
        raise InputError(
            f"model.lk_floor must be in [0, model.lk_prior = {a['lk_prior']}] px, "
            f"not {a['lk_floor']}"
        )
    if a["lk_release"] < 0 or 0 < a["lk_release"] <= a["lk_floor"]:
        raise InputError(
            f"model.lk_release must be 0 (none) or wider than model.lk_floor = "
            f"{a['lk_floor']} px, not {a['lk_release']}"
        )
    if a["lk_release"] and a["lk_levels"] < 2:
        raise InputError("model.lk_release reruns the coarse levels: set model.lk_levels >= 2")
    if (a["lk_iters"] or a["lk_trust"]) and not flowvid_flow:
        raise InputError("model.lk_iters and model.lk_trust are for flowvid flow models")
    if a["lk_trust"] and not a["lk_iters"]:
        raise InputError(
            "model.lk_trust weighs the evidence of the Lucas-Kanade steps: set model.lk_iters > 0"
        )
    if a["uncertainty"] and not flowvid_flow:
        raise InputError("model.uncertainty is for flowvid flow models (model.task=flow)")
    if not isinstance(a["temporal_mean"], int) or not 1 <= a["temporal_mean"] <= MAX_MEAN:
        raise InputError(
            f"model.temporal_mean must be 1..{MAX_MEAN} maps, not {a['temporal_mean']}"
        )
    if a["temporal_mean"] > 1 and not flowvid_flow:
        raise InputError("model.temporal_mean is for flowvid flow models (model.task=flow)")


_PARAMS = inspect.signature(create_model).parameters

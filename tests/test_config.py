"""Every default lives once: the config schema and the constructors it feeds agree."""

import dataclasses
import inspect

import numpy as np
import pytest

from flowvid.config import AugmentConfig, Config, DataConfig, LossConfig, ModelConfig
from flowvid.data.augment import FlowAugment
from flowvid.data.datamodule import ClipDataModule, RenderedDataModule
from flowvid.models import create_model
from flowvid.models.encoder import Encoder
from flowvid.training.module import FlowVidModule, module_from_config, objective_kwargs
from flowvid.training.objectives import OBJECTIVES


def _defaults(fn) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _same(a, b) -> bool:
    return list(a) == list(b) if isinstance(a, tuple | list) else a == b


@pytest.mark.parametrize(
    ("fn", "section", "renamed", "exact"),
    [
        (create_model, ModelConfig(), {}, True),
        (Encoder.__init__, ModelConfig(), {"name": "encoder"}, False),
        (FlowAugment.__init__, AugmentConfig(), {}, True),
        (ClipDataModule.__init__, DataConfig(), {}, False),
    ],
    ids=["create_model", "Encoder", "FlowAugment", "ClipDataModule"],
)
def test_constructor_defaults_are_the_configs(fn, section, renamed, exact):
    """A default written in a constructor is the config's; ``exact``: the config section is
    exactly the constructor's keyword arguments."""
    params = inspect.signature(fn).parameters
    fields = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    for name, default in _defaults(fn).items():
        key = renamed.get(name, name)
        assert key in fields, f"{fn.__qualname__}({name}=...) has no config key"
        assert _same(default, fields[key]), (name, default, fields[key])
    keyword_only = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keyword_only, f"{fn.__qualname__} should take keyword-only arguments"
    if exact:
        assert set(params) - {"self"} == set(fields)


def test_internal_constructors_carry_no_defaults_of_their_own():
    """Where a config is always what calls it, the constructor has no defaults to drift."""
    for fn in (RenderedDataModule.__init__, *(o.__init__ for o in OBJECTIVES.values())):
        own = set(_defaults(fn))
        assert not own, (fn.__qualname__, own)
    assert not set(_defaults(FlowVidModule.__init__)) - {"config"}


@pytest.mark.parametrize("task", ["flow", "frames"])
def test_every_loss_setting_reaches_the_objective(task):
    cfg = Config()
    cfg.model.task = task
    kwargs = objective_kwargs(cfg)
    OBJECTIVES[task](**kwargs)  # the objective takes exactly these
    used = {"flow": 4, "frames": 1}[task]
    assert len(kwargs) == used
    assert len(dataclasses.fields(LossConfig)) == 5  # 4 flow + 1 frames: none left unused


def test_module_from_config_builds_the_config_model():
    cfg = Config()
    cfg.model.pretrained, cfg.model.encoder, cfg.model.hidden = "none", "resnet18", 16
    module = module_from_config(cfg)
    assert module.model.core.hidden_dim == 16 and module.model.task == "flow"
    assert module.hparams["model_kwargs"] == dataclasses.asdict(cfg.model)
    # the saved hyper-parameters are plain types: Lightning checkpoints load weights_only
    plain = (dict, list, str, int, float, bool, type(None))
    assert all(type(v) in plain for v in module.hparams.values())


def test_synth_help_states_the_generators_own_defaults():
    """`flowvid synth` leaves generator options unset (the generator's defaults apply); the
    defaults its help states are those defaults, for each generator the option applies to."""
    import argparse
    import re

    from flowvid.cli import build_parser
    from flowvid.data.synth.motion import MotionConfig
    from flowvid.data.synth.synthetic import SynthConfig

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    synth = sub.choices["synth"]
    fields = {  # option -> (generators it applies to, config field)
        "frames": ((SynthConfig, MotionConfig), "frames"),
        "size": ((SynthConfig, MotionConfig), "size"),
        "fps": ((SynthConfig,), "fps"),
        "um_per_px": ((SynthConfig,), "um_per_px"),
        "speed": ((SynthConfig,), "speed_um_s"),
        "speed_px": ((MotionConfig,), "speed_px"),
    }
    checked = 0
    for action in synth._actions:
        if action.dest not in fields:
            continue
        assert action.default is None, action.dest  # unset: the generator decides
        stated = re.search(r"\(default ([\d. ]+)", action.help)
        assert stated, action.dest
        numbers = [float(x) for x in stated.group(1).split()]
        generators, key = fields[action.dest]
        for gen in generators:
            value = getattr(gen(), key)
            assert numbers == [float(v) for v in np.atleast_1d(value)], (action.dest, gen)
        checked += 1
    assert checked == len(fields)


def test_a_config_key_that_is_not_a_name_is_a_clear_error(tmp_path):
    """Found by fuzzing: YAML allows `null: 1`, which once crashed the merge."""
    from flowvid.config import load_config
    from flowvid.errors import InputError

    for text in ("null: 1\n", "train: {3: 1}\n"):
        (tmp_path / "c.yaml").write_text(text)
        with pytest.raises(InputError, match="config keys are names"):
            load_config(tmp_path / "c.yaml")

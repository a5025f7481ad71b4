"""Recipe configs: the registry, overrides and validation (no training)."""

import dataclasses
import math

import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import data


def test_every_recipe_validates_and_has_a_smoke_variant():
    for name, config in cfg.RECIPES.items():
        cfg.validate(config)
        smoke = cfg.validate(cfg.smoke(config))
        assert smoke.epochs == 2 and smoke.steps_per_epoch == 2, name
        assert smoke.dataset == config.dataset, name
        assert cfg.smoke(config, offline=True).dataset in data.BUILTIN_DATASETS


def test_variants_differ_only_in_what_they_override():
    r20, r56 = cfg.RECIPES["cifar10_resnet20"], cfg.RECIPES["cifar10_resnet56"]
    diff = {
        f.name
        for f in dataclasses.fields(cfg.Config)
        if getattr(r20, f.name) != getattr(r56, f.name)
    }
    assert diff == {"model"}


def test_override_parses_types_and_dict_entries():
    config = cfg.override(
        cfg.Config(),
        [
            "epochs=3",
            "lr=0.05",
            "jit_compile=true",
            "step_epochs=[1, 2]",
            "model_kwargs.width=8",
            "target_norm=initial",
            "weight_decay=none",
            "warmup-epochs=1",
        ],
    )
    assert config.epochs == 3 and config.lr == 0.05 and config.jit_compile is True
    assert config.step_epochs == (1, 2) and config.model_kwargs == {"width": 8}
    assert config.target_norm == "initial" and config.weight_decay is None
    assert config.warmup_epochs == 1.0 and isinstance(config.warmup_epochs, float)
    assert cfg.from_dict(cfg.to_dict(config)) == config


def test_override_errors():
    for assignment, match in [
        ("epoch=3", "Unknown config field 'epoch'.*Did you mean: epochs"),
        ("epochs", "KEY=VALUE"),
        ("epochs.x=1", "not a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            cfg.override(cfg.Config(), [assignment])


# One test with a loop, not a parametrization: the per-test Keras reset of
# conftest.py costs more than these checks.
_BAD_CONFIGS = [
    ({"model": "resnet18"}, "Unknown model 'resnet18'. Valid models: .*resnet20"),
    ({"optimizer": "adagradd"}, "Valid optimizers: adadelta, adafactor, adagrad, adam, adamax"),
    ({"regularization": "dropout"}, "Valid regularizations: adamh, cwd, l2, none, sgdp, wd, wrs"),
    ({"precision": "float16"}, "Valid precisions"),
    ({"strategy": "tpu"}, "Valid strategies: default, mirrored"),
    ({"batch_size": 0}, "batch_size` must be an integer > 0"),
    ({"batch_size": 2.5}, "batch_size` must be an integer"),
    ({"epochs": -1}, "epochs` must be an integer > 0"),
    ({"lr": 0.0}, "lr` must be a number > 0"),
    ({"lr": math.nan}, "lr` must be a number > 0"),
    ({"weight_decay": -1e-4}, "weight_decay` must be a number >= 0"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"warmup_epochs": 30.0}, "warmup_epochs"),
    ({"schedule": "step"}, "warmup_epochs=0"),
    ({"schedule": "step", "warmup_epochs": 0.0}, "step_epochs"),
    ({"schedule": "step", "warmup_epochs": 0.0, "step_epochs": (40,)}, "step_epochs"),
    ({"target_norm": -1.0}, "target_norm"),
    ({"dataset": ""}, "dataset"),
]


def test_validate_rejects_bad_input():
    for changes, match in _BAD_CONFIGS:
        with pytest.raises(ValueError, match=match):
            cfg.validate(dataclasses.replace(cfg.Config(), **changes))


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ValueError, match="Valid recipes: cifar100_wrn28_10, .*digits"):
        cfg.get_recipe("cifar10_resnet18")

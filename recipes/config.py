"""Recipe configurations: one frozen dataclass, one small override per recipe.

A recipe is a `Config`; variants change a few fields with
`dataclasses.replace`, and the command line changes more with
`override(config, ["epochs=3", "model_kwargs.width=8"])`. `validate` checks
every name and number before any data is loaded or model built.

Recipes (`RECIPES`), with the test accuracy the architecture's paper reports
for SGD with weight decay (PyTorch-style coupled L2). These recipes use Keras's
decoupled decay and have not been run to the end by keras-wrs (CIFAR needs a
network), so expect about these numbers, not these digits:

| name | data | model | schedule | published accuracy |
|---|---|---|---|---|
| `digits` | scikit-learn digits (offline) | small CNN | warmup + cosine, 20 epochs | see recipes/results/digits |
| `shapes_resnet20` | synthetic shapes (offline) | ResNet-20 | warmup + cosine, 15 epochs | none (synthetic) |
| `cifar10_resnet20` | CIFAR-10 (TFDS) | ResNet-20 | step, 164 epochs | 91.25% (He et al. 2016, Table 6) |
| `cifar10_resnet56` | CIFAR-10 (TFDS) | ResNet-56 | as ResNet-20 | 93.03% (He et al. 2016, Table 6) |
| `cifar10_vgg16` | CIFAR-10 (TFDS) | VGG16-BN | cosine, 200 epochs | none in the paper's text (Liu et al. v1, Fig. 1 plots it) |
| `cifar10_wrn16_8` | CIFAR-10 (TFDS) | WRN-16-8 | step, 200 epochs | 95.19% (Zagoruyko & Komodakis 2016, v1 Table 4) |
| `cifar100_wrn28_10` | CIFAR-100 (TFDS) | WRN-28-10 | as WRN-16-8 | 79.50% (same; later versions, with mean/std preprocessing, report more) |
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from typing import Any

from keras_wrs.recipes.data import AUGMENTATIONS, BUILTIN_DATASETS
from keras_wrs.recipes.models import MODELS
from keras_wrs.recipes.optim import (LR_SCALINGS, OPTIMIZERS, REGULARIZATIONS,
                                     SCHEDULES)

__all__ = [
    "Config",
    "RECIPES",
    "PRECISIONS",
    "STRATEGIES",
    "get_recipe",
    "override",
    "validate",
    "smoke",
    "to_dict",
    "from_dict",
]

PRECISIONS = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Defaults are the `digits` recipe.

    `lr` and `weight_decay` of `None` take the optimizer's defaults
    (`keras_wrs.recipes.optim.OPTIMIZERS`). `weight_decay` is used by the
    `wd` and `wrs` regularizations (with `wrs` it applies to the variables
    that are not rescaled) and, halved, as the `l2` factor.
    """

    # Data.
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    augment: str = "crop"
    pad: int = 1
    synthetic_train: int = 10_000
    synthetic_test: int = 2_000
    # Model.
    model: str = "small_cnn"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    # Optimization.
    optimizer: str = "sgdm"
    regularization: str = "wrs"
    lr: float | None = None
    weight_decay: float | None = None
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    lr_scaling: str = "none"
    base_batch_size: int = 128
    schedule: str = "cosine"
    warmup_epochs: float = 2.0
    step_epochs: tuple = ()
    step_factor: float = 0.1
    label_smoothing: float = 0.0
    epochs: int = 20
    batch_size: int = 64
    steps_per_epoch: int | None = None
    # Weight rescaling.
    target_norm: Any = 1.0
    granularity: str = "filter"
    rescale_every: int = 1
    # System.
    seed: int = 0
    precision: str = "float32"
    jit_compile: bool = False
    strategy: str = "default"
    dynamics: bool = True
    noise_every: int = 5
    probe_examples: int = 256
    plots: bool = True
    tensorboard: bool = True


_DIGITS = Config()
_SHAPES = Config(dataset="synthetic_shapes", model="resnet20", augment="crop_flip",
                 pad=4, epochs=15, batch_size=128, warmup_epochs=1.0)
_RESNET20 = dataclasses.replace(
    _SHAPES, dataset="cifar10", epochs=164, weight_decay=1e-4, schedule="step",
    warmup_epochs=0.0, step_epochs=(82, 123), noise_every=10)
_WRN16_8 = dataclasses.replace(
    _RESNET20, model="wrn16_8", epochs=200, weight_decay=5e-4,
    step_epochs=(60, 120, 160), step_factor=0.2,
    optimizer_kwargs={"nesterov": True})

RECIPES: dict[str, Config] = {
    "digits": _DIGITS,
    "shapes_resnet20": _SHAPES,
    "cifar10_resnet20": _RESNET20,
    "cifar10_resnet56": dataclasses.replace(_RESNET20, model="resnet56"),
    "cifar10_vgg16": dataclasses.replace(
        _RESNET20, model="vgg16_bn", epochs=200, weight_decay=5e-4,
        schedule="cosine", step_epochs=()),
    "cifar10_wrn16_8": _WRN16_8,
    "cifar100_wrn28_10": dataclasses.replace(
        _WRN16_8, dataset="cifar100", model="wrn28_10"),
}

# Smoke runs: the same builder at its smallest depth and a few channels
# (tracing a 56-layer graph costs a minute on a small CPU; the full depths are
# built by the parameter-count tests).
_SMOKE_MODEL_KWARGS = {
    "small_cnn": {"width": 4},
    "resnet20": {"width": 4, "depth": 8},
    "resnet56": {"width": 4, "depth": 8},
    "vgg16_bn": {"width": 8},
    "wrn16_8": {"widen_factor": 1, "base_width": 4, "depth": 10},
    "wrn28_10": {"widen_factor": 1, "base_width": 4, "depth": 10},
}


def get_recipe(name):
    """The `Config` of a registered recipe; unknown names list the valid ones."""
    if name not in RECIPES:
        raise ValueError(_unknown("recipe", name, RECIPES))
    return RECIPES[name]


def _unknown(kind, value, valid):
    close = difflib.get_close_matches(str(value), list(valid), 3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return (f"Unknown {kind} {value!r}. Valid {plural}: "
            f"{', '.join(sorted(valid))}.{hint}")


def _parse_value(text, current):
    """Parse a command-line value as JSON, falling back to a plain string."""
    if text.lower() in ("none", "null"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def override(config, assignments):
    """Return `config` with `key=value` assignments applied.

    Values are parsed as JSON (`3`, `0.1`, `true`, `[60, 120]`, `"x"`), else
    taken as strings; `none` gives None. `model_kwargs.width=8` sets one
    entry of a dict field.

    Args:
        config: a `Config`.
        assignments: strings `"key=value"`.

    Returns:
        A new `Config`.

    Raises:
        ValueError: a malformed assignment or an unknown field (listing the
            valid fields).
    """
    fields = {f.name for f in dataclasses.fields(Config)}
    changes = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        field, dot, sub = key.partition(".")
        if not sep or not key:
            raise ValueError(f"Overrides are KEY=VALUE. Received: {item!r}")
        if field not in fields:
            raise ValueError(_unknown("config field", field, fields))
        current = changes.get(field, getattr(config, field))
        if dot:
            if not isinstance(current, dict):
                raise ValueError(f"{field!r} is not a dict; cannot set {key!r}")
            changes[field] = {**current, sub: _parse_value(text, None)}
        else:
            changes[field] = _parse_value(text, current)
    return dataclasses.replace(config, **changes)


def _check_number(config, name, kind, low, low_ok=False, allow_none=False):
    value = getattr(config, name)
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    ok = ok and math.isfinite(value) and (value >= low if low_ok else value > low)
    if not ok:
        bound = f">= {low}" if low_ok else f"> {low}"
        raise ValueError(f"`{name}` must be a{'n integer' if kind is int else ' number'} "
                         f"{bound}. Received: {name}={value!r}")


def _check_choice(config, name, valid):
    value = getattr(config, name)
    if value not in valid:
        raise ValueError(_unknown(name, value, valid))


def validate(config):
    """Check every name and number of `config`; raise ValueError on the first bad one.

    Dataset names other than the built-in ones are checked against the TFDS
    catalogue later, when the data is loaded (still before any training).
    """
    for name, valid in (("model", MODELS), ("optimizer", OPTIMIZERS),
                        ("regularization", REGULARIZATIONS),
                        ("schedule", SCHEDULES), ("lr_scaling", LR_SCALINGS),
                        ("precision", PRECISIONS), ("strategy", STRATEGIES),
                        ("augment", AUGMENTATIONS),
                        ("granularity", ("filter", "layer"))):
        _check_choice(config, name, valid)
    if not isinstance(config.dataset, str) or not config.dataset:
        raise ValueError(f"`dataset` must be a name such as "
                         f"{', '.join(BUILTIN_DATASETS)} or a TFDS name. "
                         f"Received: dataset={config.dataset!r}")
    for name in ("epochs", "batch_size", "base_batch_size", "synthetic_train",
                 "synthetic_test", "rescale_every", "noise_every",
                 "probe_examples"):
        _check_number(config, name, int, 0)
    for name in ("steps_per_epoch", "image_size"):
        _check_number(config, name, int, 0, allow_none=True)
    _check_number(config, "pad", int, 0, low_ok=True)
    _check_number(config, "seed", int, 0, low_ok=True)
    _check_number(config, "lr", float, 0, allow_none=True)
    _check_number(config, "weight_decay", float, 0, low_ok=True, allow_none=True)
    _check_number(config, "warmup_epochs", float, 0, low_ok=True)
    _check_number(config, "step_factor", float, 0)
    _check_number(config, "label_smoothing", float, 0, low_ok=True)
    _validate_relations(config)
    return config


def _validate_relations(config):
    if config.label_smoothing >= 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1). "
                         f"Received: label_smoothing={config.label_smoothing}")
    if config.warmup_epochs >= config.epochs:
        raise ValueError(f"`warmup_epochs` ({config.warmup_epochs}) must be "
                         f"less than `epochs` ({config.epochs})")
    if config.schedule == "step":
        if config.warmup_epochs:
            raise ValueError("Warmup works with the cosine and constant "
                             "schedules; set warmup_epochs=0 for 'step'.")
        bad = [e for e in config.step_epochs if not 0 < e < config.epochs]
        if not config.step_epochs or bad:
            raise ValueError(f"The step schedule needs `step_epochs` inside "
                             f"(0, epochs={config.epochs}). "
                             f"Received: step_epochs={config.step_epochs!r}")
    target = config.target_norm
    if target != "initial" and not (isinstance(target, (int, float))
                                    and not isinstance(target, bool)
                                    and math.isfinite(target) and target > 0):
        raise ValueError(f"`target_norm` must be a positive number or "
                         f"'initial'. Received: target_norm={target!r}")
    if not isinstance(config.jit_compile, bool):
        raise ValueError(f"`jit_compile` must be true or false. "
                         f"Received: jit_compile={config.jit_compile!r}")
    for name in ("model_kwargs", "optimizer_kwargs"):
        if not isinstance(getattr(config, name), dict):
            raise ValueError(f"`{name}` must be a dict. "
                             f"Received: {getattr(config, name)!r}")


def smoke(config, offline=False, full_depth=False):
    """A smoke variant: tiny widths and depths, two epochs of two steps, batch 16.

    Dynamics are measured on a 16-image probe; per-run plots are off (they
    cost more than the training; reports still draw theirs).

    Args:
        config: a `Config`.
        offline: replace a TFDS data set by `synthetic_shapes` (for machines
            without the data); tests keep the TFDS path and mock it instead.
        full_depth: keep the recipe's depth, shrink widths only.

    Returns:
        A new `Config` that runs the same code in seconds on a CPU.
    """
    tiny = dict(_SMOKE_MODEL_KWARGS[config.model])
    if full_depth:
        tiny.pop("depth", None)
    changes = dict(
        model_kwargs={**config.model_kwargs, **tiny},
        epochs=2, steps_per_epoch=2, batch_size=16, warmup_epochs=0.0,
        synthetic_train=64, synthetic_test=32, probe_examples=16, plots=False)
    if config.schedule == "step":
        changes["step_epochs"] = (1,)
    if offline and config.dataset not in BUILTIN_DATASETS:
        changes["dataset"] = "synthetic_shapes"
    return dataclasses.replace(config, **changes)


def to_dict(config):
    """A JSON-ready dict of every field."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


def from_dict(values):
    """The inverse of `to_dict`; unknown keys raise a ValueError."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"Unknown config fields: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if k == "step_epochs" else v for k, v in values.items()}
    return Config(**values)

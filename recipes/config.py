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

from keras_wrs.recipes.names import AUGMENTATIONS, BUILTIN_DATASETS
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
    train_examples: int | None = None
    channels: int | None = None
    # Model.
    model: str = "small_cnn"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    sync_bn: bool = False
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
    wrs_other_decay: bool = True
    # System.
    seed: int = 0
    precision: str = "float32"
    jit_compile: bool = False
    strategy: str = "default"
    dynamics: bool = True
    noise_every: int = 5
    noise_kernels: tuple = ()
    noise_threshold: float = 1e-6
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

# Fashion-MNIST (28x28x1). The protocol of the literature runs: pad-4 crop +
# flip, mean/std normalization, SGD-momentum 0.1, WD 5e-4 for the WD runs.
_FMNIST = dataclasses.replace(
    _SHAPES, dataset="fashion_mnist", model="resnet20", epochs=40, pad=4,
    batch_size=128, weight_decay=5e-4, warmup_epochs=1.0, noise_every=5)
# Sized for a 2-core CPU: ResNet-8 at width 8 (19k parameters) on a fixed,
# balanced 5,000-image subset, 5 epochs with XLA, tested on all 10,000 test
# images (about 1.5 minutes a run on 2 idle cores).
_FMNIST_SMALL = dataclasses.replace(
    _FMNIST, model="resnet8", model_kwargs={"width": 8}, train_examples=5_000,
    epochs=5, noise_every=1, probe_examples=128, jit_compile=True)

RECIPES: dict[str, Config] = {
    "digits": _DIGITS,
    "shapes_resnet20": _SHAPES,
    "fashion_mnist_small": _FMNIST_SMALL,
    # Grayscale replicated to 3 channels, as when grayscale data goes into an
    # RGB network: the first conv's 3x3x3 patches span 9 of 27 dimensions, so
    # its weight noise (the part outside the span) is real and measurable.
    "fashion_mnist_rgb": dataclasses.replace(
        _FMNIST_SMALL, channels=3, noise_every=1,
        noise_kernels=("stem_conv/kernel",)),
    "fmnist_resnet20": _FMNIST,
    "fmnist_wrn16_4": dataclasses.replace(
        _FMNIST, model="wrn16_4", optimizer_kwargs={"nesterov": True}),
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
    "resnet8": {"width": 4},
    "resnet20": {"width": 4, "depth": 8},
    "resnet56": {"width": 4, "depth": 8},
    "vgg16_bn": {"width": 8},
    "wrn16_4": {"widen_factor": 1, "base_width": 4, "depth": 10},
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


# The type of every field, from its annotation: what `--set` parses a value
# as and what `validate` checks (for configs made in Python too).
_TYPES = {f.name: str(f.type).replace(" ", "") for f in dataclasses.fields(Config)}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _field_error(name, text, expected, example):
    return ValueError(f"`{name}` must be {expected} (e.g. --set {name}={example}). "
                      f"Received: {name}={text}")


def _parse_bool(name, text):
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _field_error(name, text, "true or false", "true")


def _parse_number(name, text, kind):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    expected = "an integer" if kind == "int" else "a number"
    raise _field_error(name, text, expected, "3" if kind == "int" else "0.1")


def _parse_tuple(name, text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text.split(",") if text else []
    if not isinstance(value, list):
        raise _field_error(name, text, "a list", "[60,120]" if name == "step_epochs"
                           else "[a,b]")
    return tuple(value)


def _parse_any(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_value(name, text):
    """Parse the command-line text of field `name` by the field's type.

    Strings are taken as written (`augment=none` is the name "none"); only a
    field that may be None (`lr`, `data_dir`, ...) reads `none`/`null` as None.
    """
    kind = _TYPES[name]
    optional = kind.endswith("|None")
    if optional and text.lower() in ("none", "null"):
        return None
    base = kind.removesuffix("|None")
    if base == "bool":
        return _parse_bool(name, text)
    if base in ("int", "float"):
        return _parse_number(name, text, base)
    if base == "tuple":
        return _parse_tuple(name, text)
    if base == "dict":
        value = _parse_any(text)
        if not isinstance(value, dict):
            raise _field_error(name, text, "a JSON object", '{"width":8}')
        return value
    if base == "str":
        return text
    return _parse_any(text)


def override(config, assignments):
    """Return `config` with `key=value` assignments applied.

    Each value is parsed by its field's type: integers (`epochs=3`; `3.0` is
    an error), numbers (`lr=0.1`), booleans (`plots=false`, also `no`, `0`),
    lists as JSON (`step_epochs=[60,120]`), strings as written
    (`augment=none`), and `none` for None in the fields that allow it.
    `model_kwargs.width=8` sets one entry of a dict field (the value read as
    JSON, else as a string).

    Args:
        config: a `Config`.
        assignments: strings `"key=value"`.

    Returns:
        A new `Config` (check it with `validate`).

    Raises:
        ValueError: a malformed assignment, an unknown field (listing the
            valid fields) or a value of the wrong type.
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
            if not isinstance(current, dict) or not sub:
                raise ValueError(f"{field!r} is not a dict; cannot set {key!r}")
            changes[field] = {**current, sub: _parse_any(text)}
        else:
            changes[field] = _parse_value(field, text.strip())
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


_PY_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,),
             "tuple": (tuple, list), "dict": (dict,)}
_TYPE_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number",
               "str": "a string", "tuple": "a list", "dict": "a dict"}


def _check_types(config):
    """Every field holds a value of its annotated type (bools are not numbers)."""
    for name, kind in _TYPES.items():
        value = getattr(config, name)
        base = kind.removesuffix("|None")
        if base not in _PY_TYPES or (value is None and kind.endswith("|None")):
            continue
        ok = isinstance(value, _PY_TYPES[base])
        if base != "bool" and isinstance(value, bool):
            ok = False
        if not ok:
            raise ValueError(f"`{name}` must be {_TYPE_WORDS[base]}. "
                             f"Received: {name}={value!r} ({type(value).__name__})")
    for name, kinds, word in (("step_epochs", (int, float), "numbers"),
                              ("noise_kernels", (str,), "layer names or paths")):
        bad = [v for v in getattr(config, name)
               if not isinstance(v, kinds) or isinstance(v, bool)]
        if bad:
            raise ValueError(f"`{name}` must be a list of {word}. Received: "
                             f"{name}={list(getattr(config, name))!r}")


def _check_optimizer_kwargs(config):
    if not config.optimizer_kwargs:
        return  # nothing to check: keep Keras (and its backend) unloaded
    import inspect

    import keras

    cls = getattr(keras.optimizers, OPTIMIZERS[config.optimizer].class_name)
    params = inspect.signature(cls.__init__).parameters
    for key in config.optimizer_kwargs:
        if key not in params or key in ("self", "learning_rate", "weight_decay"):
            valid = sorted(set(params) - {"self", "kwargs", "learning_rate",
                                          "weight_decay"})
            raise ValueError(
                f"`optimizer_kwargs.{key}` is not an argument of "
                f"keras.optimizers.{cls.__name__} (learning_rate and "
                f"weight_decay are the `lr` and `weight_decay` fields). "
                f"Valid: {', '.join(valid)}.")


def validate(config):
    """Check every field of `config`; raise ValueError on the first bad one.

    Types first (every field), then names, numbers and the relations between
    fields; each message names the field, the value and the fix. Dataset
    names other than the built-in ones are checked against the TFDS
    catalogue later, when the data is loaded (still before any training).
    """
    from keras_wrs.recipes.models import check_model_kwargs, resolve_builder

    _check_types(config)
    for name, valid in (("optimizer", OPTIMIZERS),
                        ("regularization", REGULARIZATIONS),
                        ("schedule", SCHEDULES), ("lr_scaling", LR_SCALINGS),
                        ("precision", PRECISIONS), ("strategy", STRATEGIES),
                        ("augment", AUGMENTATIONS),
                        ("granularity", ("filter", "layer"))):
        _check_choice(config, name, valid)
    resolve_builder(config.model)
    check_model_kwargs(config.model, config.model_kwargs)
    _check_optimizer_kwargs(config)
    if not config.dataset:
        raise ValueError(f"`dataset` must be a name such as "
                         f"{', '.join(BUILTIN_DATASETS)} or a TFDS name. "
                         f"Received: dataset={config.dataset!r}")
    for name in ("epochs", "batch_size", "base_batch_size", "synthetic_train",
                 "synthetic_test", "rescale_every", "noise_every",
                 "probe_examples"):
        _check_number(config, name, int, 0)
    for name in ("steps_per_epoch", "image_size", "train_examples", "channels"):
        _check_number(config, name, int, 0, allow_none=True)
    _check_number(config, "pad", int, 0, low_ok=True)
    _check_number(config, "seed", int, 0, low_ok=True)
    _check_number(config, "lr", float, 0, allow_none=True)
    _check_number(config, "weight_decay", float, 0, low_ok=True, allow_none=True)
    _check_number(config, "warmup_epochs", float, 0, low_ok=True)
    _check_number(config, "step_factor", float, 0)
    _check_number(config, "label_smoothing", float, 0, low_ok=True)
    _check_number(config, "noise_threshold", float, 0, low_ok=True)
    _validate_relations(config)
    return config


def _suggest_steps(config):
    """The recipe's step epochs scaled to `epochs` (what to pass instead)."""
    full = max(config.step_epochs) / 0.8 if config.step_epochs else config.epochs
    steps = sorted({max(1, min(config.epochs - 1, round(e * config.epochs / full)))
                    for e in config.step_epochs} or {max(1, config.epochs // 2)})
    return "[" + ",".join(str(e) for e in steps) + "]"


def _validate_relations(config):
    if config.label_smoothing >= 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1). "
                         f"Received: label_smoothing={config.label_smoothing}")
    if config.noise_threshold >= 1:
        raise ValueError(f"`noise_threshold` (relative eigenvalue threshold) must "
                         f"be in [0, 1). Received: {config.noise_threshold}")
    if config.warmup_epochs >= config.epochs:
        raise ValueError(
            f"`warmup_epochs` ({config.warmup_epochs}) must be less than `epochs` "
            f"({config.epochs}): for a run this short pass --set warmup_epochs="
            f"{0 if config.epochs < 2 else config.epochs / 4:g}.")
    if config.schedule == "step":
        if config.warmup_epochs:
            raise ValueError("Warmup works with the cosine and constant "
                             "schedules; pass --set warmup_epochs=0 for 'step'.")
        bad = [e for e in config.step_epochs if not 0 < e < config.epochs]
        if not config.step_epochs or bad or config.epochs < 2:
            fix = (f"pass --set step_epochs={_suggest_steps(config)}"
                   if config.epochs >= 2 else "use --set schedule=cosine")
            raise ValueError(f"The step schedule needs `step_epochs` inside "
                             f"(0, epochs={config.epochs}). Received: "
                             f"step_epochs={list(config.step_epochs)!r}; {fix}.")
    target = config.target_norm
    if target != "initial" and not (isinstance(target, (int, float))
                                    and not isinstance(target, bool)
                                    and math.isfinite(target) and target > 0):
        raise ValueError(f"`target_norm` must be a positive number or "
                         f"'initial'. Received: target_norm={target!r}")
    if config.channels is not None and config.channels < 2:
        raise ValueError(f"`channels` replicates grayscale images to 2 or more "
                         f"channels (3 for an RGB network), or is none. "
                         f"Received: channels={config.channels}")


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
    tiny = dict(_SMOKE_MODEL_KWARGS.get(config.model, {}))
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
    values = {k: tuple(v) if _TYPES[k] == "tuple" else v for k, v in values.items()}
    return Config(**values)

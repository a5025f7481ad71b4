"""`validate(config)`: every name and number of a `Config`, before any work.

Types first (every field), then names, numbers and the relations between
fields; each message names the field, the value and the fix. Nothing here
loads Keras unless `optimizer_kwargs` must be checked against an optimizer's
signature, so the command line answers a bad value at once.
"""

from __future__ import annotations

import math
import os

from keras_wrs import checks
from keras_wrs.recipes.config.schema import (
    AUGMENTATIONS,
    BUILTIN_DATASETS,
    FIELD_TYPES,
    FLOAT32_MAX,
    FLOAT32_TINY,
    FREEZES,
    LR_SCALINGS,
    MAX_IN_MEMORY_BYTES,
    MAX_INT,
    MAX_SEED,
    PRECISIONS,
    REGULARIZATIONS,
    SCHEDULES,
    STRATEGIES,
    SYNTHETIC_IMAGE_BYTES,
    unknown_name,
)

__all__ = ["validate", "check_total_steps", "check_recipe_lr"]


def _check_number(config, name, kind, low, low_ok=False, allow_none=False, high=None):
    value = getattr(config, name)
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and isinstance(value, int)
    ok = ok and (kind is int or math.isfinite(value)) and (value >= low if low_ok else value > low)
    if not ok:
        bound = f">= {low}" if low_ok else f"> {low}"
        raise ValueError(
            f"`{name}` must be a{'n integer' if kind is int else ' number'} "
            f"{bound}. Received: {name}={value!r}"
        )
    _check_representable(name, value, kind, high)


def _check_representable(name, value, kind, high=None):
    """Numbers the training code can hold: int32 counts, uint32 seeds, float32 values."""
    if kind is int:
        high = MAX_INT if high is None else high
        if value > high:
            raise ValueError(
                f"`{name}` must be at most {high} (the largest value the training "
                f"code can hold for it). Received: {name}={value}"
            )
    elif value and not FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
        raise ValueError(
            f"`{name}` must be 0 or between {FLOAT32_TINY:g} and {FLOAT32_MAX:g} in "
            f"size: it is used as a float32, which holds nothing else. "
            f"Received: {name}={value!r}"
        )


def _check_choice(config, name, valid):
    value = getattr(config, name)
    if value not in valid:
        raise ValueError(unknown_name(name, value, valid))


_PY_TYPES = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "tuple": (tuple, list),
    "dict": (dict,),
}
_TYPE_WORDS = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "tuple": "a list",
    "dict": "a dict",
}


def _check_types(config):
    """Every field holds a value of its annotated type (bools are not numbers)."""
    for name, kind in FIELD_TYPES.items():
        value = getattr(config, name)
        base = kind.removesuffix("|None")
        if base not in _PY_TYPES or (value is None and kind.endswith("|None")):
            continue
        ok = isinstance(value, _PY_TYPES[base])
        if base != "bool" and isinstance(value, bool):
            ok = False
        if not ok:
            raise ValueError(
                f"`{name}` must be {_TYPE_WORDS[base]}. "
                f"Received: {name}={value!r} ({type(value).__name__})"
            )
    for name, kinds, word in (
        ("step_epochs", (int, float), "numbers"),
        ("noise_kernels", (str,), "layer names or paths"),
    ):
        bad = [v for v in getattr(config, name) if not isinstance(v, kinds) or isinstance(v, bool)]
        if bad:
            raise ValueError(
                f"`{name}` must be a list of {word}. Received: "
                f"{name}={list(getattr(config, name))!r}"
            )


def _check_optimizer_kwargs(config):
    if not config.optimizer_kwargs:
        return  # nothing to check: keep Keras (and its backend) unloaded
    from keras_wrs.recipes import console

    console.import_backend()  # Keras loads here: quietly, as the commands load it
    from keras_wrs.recipes.training import optim

    name, valid = optim.optimizer_arguments(config.regularization, config.optimizer)
    for key in config.optimizer_kwargs:
        if key not in valid:
            raise ValueError(
                f"`optimizer_kwargs.{key}` is not an argument of {name} "
                f"(learning_rate and weight_decay are the `lr` and `weight_decay` fields). "
                f"Valid: {', '.join(valid)}."
            )


def validate(config):
    """Check every field of `config`; raise ValueError on the first bad one.

    Dataset names other than the built-in ones are checked against the TFDS
    catalogue later, when the data is loaded (still before any training).

    Args:
        config: a `Config`.

    Returns:
        `config`, unchanged.

    Raises:
        ValueError: the first bad field, named with its value and the fix.
    """
    from keras_wrs.recipes.models import check_model_kwargs, resolve_builder
    from keras_wrs.recipes.training.optim import OPTIMIZERS, check_method

    _check_types(config)
    for name, valid in (
        ("optimizer", OPTIMIZERS),
        ("regularization", REGULARIZATIONS),
        ("schedule", SCHEDULES),
        ("lr_scaling", LR_SCALINGS),
        ("precision", PRECISIONS),
        ("strategy", STRATEGIES),
        ("augment", AUGMENTATIONS),
        ("freeze", FREEZES),
    ):
        _check_choice(config, name, valid)
    check_method(config.regularization, config.optimizer)
    # The rescaling arguments: the library's own checks (keras_wrs.checks).
    checks.check_granularity(config.granularity)
    checks.check_rescale_every(config.rescale_every)
    checks.check_target_norm(config.target_norm)
    resolve_builder(config.model)
    check_model_kwargs(config.model, config.model_kwargs)
    _check_optimizer_kwargs(config)
    if not config.dataset:
        raise ValueError(
            f"`dataset` must be a name such as "
            f"{', '.join(BUILTIN_DATASETS)} or a TFDS name. "
            f"Received: dataset={config.dataset!r}"
        )
    for name in (
        "epochs",
        "batch_size",
        "base_batch_size",
        "synthetic_train",
        "synthetic_test",
        "noise_every",
        "probe_examples",
    ):
        _check_number(config, name, int, 0)
    for name in (
        "steps_per_epoch",
        "image_size",
        "train_examples",
        "channels",
        "validation_examples",
    ):
        _check_number(config, name, int, 0, allow_none=True)
    _check_number(config, "pad", int, 0, low_ok=True)
    _check_number(config, "seed", int, 0, low_ok=True, high=MAX_SEED)
    _check_number(config, "lr", float, 0, allow_none=True)
    _check_number(config, "weight_decay", float, 0, low_ok=True, allow_none=True)
    _check_number(config, "warmup_epochs", float, 0, low_ok=True)
    _check_number(config, "step_factor", float, 0)
    _check_number(config, "label_smoothing", float, 0, low_ok=True)
    _check_number(config, "noise_threshold", float, 0, low_ok=True)
    _validate_relations(config)
    return config


def check_recipe_lr(recipe, optimizers, named, source):
    """Refuse a recipe's learning rate carried over to an optimizer of another family.

    A recipe that sets `lr` tuned it for its own optimizer: `fmnist_resnet9`'s
    0.2 is for SGD-momentum, 200 times Adam's default. An optimizer of another
    family (`OptimizerSpec.family`: SGD-like or Adam-like) must come with an lr
    named on the command line.

    Args:
        recipe: the `Config` the command starts from (a recipe or `--config`).
        optimizers: the optimizer names the runs will use.
        named: the config fields the command line names for these runs.
        source: the recipe as the message names it (`"recipe 'fmnist_resnet9'"`).

    Raises:
        ValueError: an optimizer of another family with the recipe's lr.
    """
    if recipe.lr is None or "lr" in named:
        return
    from keras_wrs.recipes.training.optim import OPTIMIZERS

    family = OPTIMIZERS[recipe.optimizer].family
    for name in dict.fromkeys(optimizers):
        spec = OPTIMIZERS.get(name)
        if spec is not None and spec.family != family:
            raise ValueError(
                f"optimizer={name} would train at lr {recipe.lr:g}, which {source} sets for "
                f"{recipe.optimizer} (family {family!r}; {name} is of family {spec.family!r}, "
                f"default lr {spec.lr:g}). Name the learning rate too: lr=none for each optimizer's "
                f"default, or lr=VALUE (--set, or in the --grid group that sets the optimizer)."
            )


def _suggest_steps(config):
    """The recipe's step epochs scaled to `epochs` (what to pass instead)."""
    full = max(config.step_epochs) / 0.8 if config.step_epochs else config.epochs
    steps = sorted(
        {
            max(1, min(config.epochs - 1, round(e * config.epochs / full)))
            for e in config.step_epochs
        }
        or {max(1, config.epochs // 2)}
    )
    return "[" + ",".join(str(e) for e in steps) + "]"


def _validate_schedule(config):
    if config.warmup_epochs >= config.epochs:
        raise ValueError(
            f"`warmup_epochs` ({config.warmup_epochs}) must be less than `epochs` "
            f"({config.epochs}): for a run this short pass --set warmup_epochs="
            f"{0 if config.epochs < 2 else config.epochs / 4:g}."
        )
    if config.schedule == "step":
        if config.warmup_epochs:
            raise ValueError(
                "Warmup works with the cosine and constant "
                "schedules; pass --set warmup_epochs=0 for 'step'."
            )
        bad = [e for e in config.step_epochs if not 0 < e < config.epochs]
        if not config.step_epochs or bad or config.epochs < 2:
            fix = (
                f"pass --set step_epochs={_suggest_steps(config)}"
                if config.epochs >= 2
                else "use --set schedule=cosine"
            )
            raise ValueError(
                f"The step schedule needs `step_epochs` inside "
                f"(0, epochs={config.epochs}). Received: "
                f"step_epochs={list(config.step_epochs)!r}; {fix}."
            )


def _validate_relations(config):
    if config.label_smoothing >= 1:
        raise ValueError(
            f"`label_smoothing` must be in [0, 1). "
            f"Received: label_smoothing={config.label_smoothing}"
        )
    if config.noise_threshold >= 1:
        raise ValueError(
            f"`noise_threshold` (relative eigenvalue threshold) must "
            f"be in [0, 1). Received: {config.noise_threshold}"
        )
    _validate_schedule(config)
    _validate_data_source(config)
    _validate_fine_tuning(config)
    if config.steps_per_epoch is not None:
        check_total_steps(config.steps_per_epoch, config.epochs)
    if config.channels is not None and config.channels < 2:
        raise ValueError(
            f"`channels` replicates grayscale images to 2 or more "
            f"channels (3 for an RGB network), or is none. "
            f"Received: channels={config.channels}"
        )


def check_total_steps(steps_per_epoch, epochs):
    """The run's step count fits the optimizer's step counter and schedules (int32).

    Raises:
        ValueError: `steps_per_epoch * epochs` is larger than `MAX_INT`.
    """
    if steps_per_epoch * epochs > MAX_INT:
        raise ValueError(
            f"`epochs` x steps per epoch = {epochs} x {steps_per_epoch} = "
            f"{epochs * steps_per_epoch} training steps, more than {MAX_INT} (the "
            f"largest step count the training code can hold). Received: epochs={epochs}"
        )


# Data sets that read no directory: a `data_dir` given with them would be ignored.
_NO_DIRECTORY = {
    "digits": "is bundled with scikit-learn",
    "synthetic_shapes": "is drawn by keras-wrs",
}


def _validate_data_source(config):
    if config.data_dir is not None and config.dataset in _NO_DIRECTORY:
        raise ValueError(
            f"`data_dir` names where a data set is read from, but {config.dataset!r} "
            f"{_NO_DIRECTORY[config.dataset]} and reads no directory: drop --data-dir. "
            f"Received: data_dir={config.data_dir!r}"
        )
    if config.data_dir is not None and not config.data_dir.strip():
        raise ValueError(
            f"`data_dir` must name a directory, or be none. Received: data_dir={config.data_dir!r}"
        )
    if config.dataset == "synthetic_shapes":
        images = config.synthetic_train + config.synthetic_test
        if images * SYNTHETIC_IMAGE_BYTES > MAX_IN_MEMORY_BYTES:
            raise ValueError(
                f"`synthetic_train` + `synthetic_test` = {images} images of 32x32x3 "
                f"bytes do not fit the in-memory pipeline of the recipes (limit "
                f"{MAX_IN_MEMORY_BYTES // 2**30} GiB, "
                f"{MAX_IN_MEMORY_BYTES // SYNTHETIC_IMAGE_BYTES} images). Received: "
                f"synthetic_train={config.synthetic_train}, "
                f"synthetic_test={config.synthetic_test}"
            )


def _validate_fine_tuning(config):
    """`init_from` names a `.keras` file that exists; `freeze` needs it."""
    path = config.init_from
    if path is not None and not (path.endswith(".keras") and os.path.isfile(path)):
        raise ValueError(
            f"`init_from` must name an existing `.keras` file written by `model.save` "
            f"(a finished run leaves its model in <run>/model.keras), or be none. "
            f"Received: init_from={path!r}"
        )
    if config.freeze != "none" and path is None:
        raise ValueError(
            f"`freeze` freezes part of a model loaded from `init_from`; a model built "
            f"from scratch has nothing to keep. Pass --set init_from=<run>/model.keras, "
            f"or --set freeze=none. Received: freeze={config.freeze!r}, init_from=None"
        )

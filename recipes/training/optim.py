"""Optimizers, regularization and learning-rate schedules of the recipes.

Regularization is one field, and the four choices differ only in it:

* `none`: the plain Keras optimizer;
* `wd`: the Keras optimizer with decoupled `weight_decay` on every variable;
* `l2`: the plain optimizer and `keras.regularizers.L2(weight_decay / 2)` on
  every kernel (for plain SGD the same step as `wd`);
* `wrs`: the keras-wrs optimizer of the same name with `rescale=model`
  (kernels feeding BatchNormalization rescaled to `target_norm` after each
  step); its `weight_decay` applies to the other variables only (BatchNorm
  gamma/beta, biases, the classifier head), or to none with
  `wrs_other_decay=False`.

The other answers to weight decay on scale-invariant kernels replace the
Keras class of the base optimizer (`TOOLKIT`):

* `sgdp`: SGD -> `keras_wrs.optimizers.SGDP`, Adam/AdamW -> `AdamP`, with the
  reference's per-step cosine test (`projection="cosine"`) and its `delta` and
  `wd_ratio`; decay on every variable (times `wd_ratio` where projected).
  SGDP divides its decay by `1 - momentum`, as the reference; the recipes
  pass it `weight_decay * (1 - momentum)`, so that its per-step shrink is the
  `wd` run's, `lr * weight_decay`;
* `adamh`: Adam -> `keras_wrs.optimizers.AdamH` as published (one radius per
  kernel, the initial norm) on the kernels feeding BatchNormalization; the
  other variables take Adam's step, with `weight_decay` as for `wrs`;
* `cwd`: SGD -> `keras_wrs.optimizers.SGDC`, Adam/AdamW -> `AdamC`: decay by
  `lr_t**2 / lr_peak * weight_decay` per step on every variable, with the
  schedule's peak learning rate as `max_learning_rate`.

`optimizer_kwargs` reach the class a run builds (`delta`, `wd_ratio`,
`projection`, `granularity`, ... for these).
"""

from __future__ import annotations

import dataclasses
import math

from keras_wrs._lazy import keras

__all__ = [
    "OptimizerSpec",
    "OPTIMIZERS",
    "Hyperparameters",
    "resolve_hyperparameters",
    "learning_rate_schedule",
    "kernel_regularizer",
    "applies_weight_decay",
    "rescales",
    "TOOLKIT",
    "method_exists",
    "check_method",
    "optimizer_class_name",
    "optimizer_class",
    "optimizer_arguments",
    "make_optimizer",
    "coverage",
]


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer: Keras class, family and default hyperparameters.

    `family` picks the batch-size scaling rule of `lr_scaling="auto"`:
    linear for `"sgd"`, square root for `"adam"`-like optimizers.
    `weight_decay` is Keras's decoupled decay (`w -= lr * wd * w` per step).
    """

    class_name: str
    family: str
    lr: float
    weight_decay: float
    kwargs: dict = dataclasses.field(default_factory=dict)


# One of each of Keras's twelve optimizers (SGD twice: plain and with
# momentum). Learning rates are the usual ones (the papers' for SGD, Adam,
# Adamax, Adadelta and Adagrad; Keras's defaults otherwise); each weight
# decay makes the decoupled shrink per step, lr x wd, the same 5e-5.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec("SGD", "sgd", 0.1, 5e-4),
    "sgdm": OptimizerSpec("SGD", "sgd", 0.1, 5e-4, {"momentum": 0.9}),
    "adam": OptimizerSpec("Adam", "adam", 1e-3, 5e-2),
    "adamw": OptimizerSpec("AdamW", "adam", 1e-3, 5e-2),
    "rmsprop": OptimizerSpec("RMSprop", "adam", 1e-3, 5e-2),
    "nadam": OptimizerSpec("Nadam", "adam", 1e-3, 5e-2),
    "lion": OptimizerSpec("Lion", "adam", 1e-4, 0.5),
    "lamb": OptimizerSpec("Lamb", "adam", 1e-3, 5e-2),
    "adagrad": OptimizerSpec("Adagrad", "adam", 1e-2, 5e-3),
    "adadelta": OptimizerSpec("Adadelta", "adam", 1.0, 5e-5),
    "adamax": OptimizerSpec("Adamax", "adam", 2e-3, 2.5e-2),
    "adafactor": OptimizerSpec("Adafactor", "adam", 1e-3, 5e-2),
    "muon": OptimizerSpec("Muon", "adam", 1e-3, 5e-2),
}


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Resolved numbers of a run, as written to `config.json`."""

    learning_rate: float
    weight_decay: float
    lr_scale: float
    steps_per_epoch: int
    total_steps: int


def _lr_scale(config, family):
    rule = config.lr_scaling
    if rule == "auto":
        rule = "linear" if family == "sgd" else "sqrt"
    ratio = config.batch_size / config.base_batch_size
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def resolve_hyperparameters(config, steps_per_epoch):
    """Fill in optimizer defaults and scale the learning rate with batch size.

    With `lr_scaling` `"linear"` the learning rate is multiplied by
    `batch_size / base_batch_size`, with `"sqrt"` by its square root, with
    `"auto"` by the rule of the optimizer's family (linear for SGD, square
    root for Adam-like optimizers).

    Args:
        config: a validated `Config`.
        steps_per_epoch: optimizer steps per epoch.

    Returns:
        A `Hyperparameters`.
    """
    spec = OPTIMIZERS[config.optimizer]
    lr = spec.lr if config.lr is None else config.lr
    wd = spec.weight_decay if config.weight_decay is None else config.weight_decay
    scale = _lr_scale(config, spec.family)
    return Hyperparameters(lr * scale, wd, scale, steps_per_epoch, steps_per_epoch * config.epochs)


def learning_rate_schedule(config, hp):
    """The learning rate as a float or a built-in Keras schedule.

    `constant` and `cosine` warm up linearly from 0 over `warmup_epochs`;
    `cosine` then decays to 0 at the end of training; `step` multiplies the
    rate by `step_factor` at each of `step_epochs`. Only built-in schedules
    are used, so a saved model reloads without importing the recipes.
    """
    warmup = int(round(config.warmup_epochs * hp.steps_per_epoch))
    if config.schedule == "step":
        # PiecewiseConstantDecay switches *after* a boundary step: the first
        # step of epoch e (0-based step e * steps) gets the new rate.
        boundaries = [max(0, int(e * hp.steps_per_epoch) - 1) for e in config.step_epochs]
        values = [hp.learning_rate * config.step_factor**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if config.schedule == "constant" and not warmup:
        return hp.learning_rate
    alpha = 1.0 if config.schedule == "constant" else 0.0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else hp.learning_rate,
        decay_steps=max(1, hp.total_steps - warmup),
        alpha=alpha,
        warmup_target=hp.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def kernel_regularizer(config, hp):
    """`L2(weight_decay / 2)` for the `l2` regularization, else None."""
    if config.regularization != "l2":
        return None
    return keras.regularizers.L2(hp.weight_decay / 2)


def applies_weight_decay(regularization, wrs_other_decay=True):
    """Whether the optimizer of a run gets the decoupled `weight_decay`.

    `wd`, `sgdp` and `cwd` decay every variable (`sgdp` times `wd_ratio` on
    projected ones, `cwd` corrected); `wrs` and `adamh` decay the variables
    they do not rescale, unless `wrs_other_decay` is off; `none` and `l2`
    (whose decay is the kernel regularizer) do not decay in the optimizer.

    Args:
        regularization: one of `keras_wrs.recipes.config.REGULARIZATIONS`.
        wrs_other_decay: the config's field of that name.
    """
    if rescales(regularization):
        return bool(wrs_other_decay)
    return regularization in ("wd", "sgdp", "cwd")


def rescales(regularization):
    """Whether the run holds the kernels feeding BatchNorm at a fixed norm (`wrs`, `adamh`)."""
    return regularization in ("wrs", "adamh")


# The methods beside WD and WRS: the keras-wrs class that replaces each Keras
# class (`OptimizerSpec.class_name`) a method exists for.
TOOLKIT = {
    "sgdp": {"SGD": "SGDP", "Adam": "AdamP", "AdamW": "AdamP"},
    "adamh": {"Adam": "AdamH"},
    "cwd": {"SGD": "SGDC", "Adam": "AdamC", "AdamW": "AdamC"},
}
_TOOLKIT_TITLES = {
    "sgdp": "SGDP/AdamP, the projection of Heo et al.",
    "adamh": "AdamH, Adam on the hyperball",
    "cwd": "SGDC/AdamC, corrected weight decay",
}


def method_exists(regularization, optimizer):
    """Whether `regularization` can run with the optimizer named `optimizer`."""
    table = TOOLKIT.get(regularization)
    return table is None or OPTIMIZERS[optimizer].class_name in table


def check_method(regularization, optimizer):
    """Raise a ValueError when `regularization` has no class for `optimizer`.

    Raises:
        ValueError: naming both, the optimizers the method runs with, and
            the regularizations that run with every optimizer.
    """
    if method_exists(regularization, optimizer):
        return
    classes = TOOLKIT[regularization]
    valid = [name for name, spec in OPTIMIZERS.items() if spec.class_name in classes]
    raise ValueError(
        f"`regularization={regularization!r}` ({_TOOLKIT_TITLES[regularization]}) exists "
        f"for {', '.join(sorted(classes))} only: use optimizer "
        f"{' or '.join(filter(None, [', '.join(valid[:-1]), valid[-1]]))} with it "
        f"(none, wd, l2 and wrs run with every optimizer). Received: "
        f"optimizer={optimizer!r} (keras.optimizers.{OPTIMIZERS[optimizer].class_name})"
    )


def optimizer_class_name(regularization, optimizer):
    """The class a run builds, as `keras.optimizers.SGD`, `keras_wrs.optimizers.AdamP`, ...

    Raises:
        ValueError: the method does not exist for the optimizer (`check_method`).
    """
    class_name = OPTIMIZERS[optimizer].class_name
    if regularization in TOOLKIT:
        check_method(regularization, optimizer)
        return f"keras_wrs.optimizers.{TOOLKIT[regularization][class_name]}"
    package = "keras_wrs" if regularization == "wrs" else "keras"
    return f"{package}.optimizers.{class_name}"


def optimizer_class(regularization, optimizer):
    """The class a run of `regularization` x `optimizer` builds (loads Keras)."""
    package, _, name = optimizer_class_name(regularization, optimizer).rpartition(".")
    if package == "keras.optimizers":
        return getattr(keras.optimizers, name)
    from keras_wrs import optimizers as wrs_optimizers

    return getattr(wrs_optimizers, name)


# Arguments the recipe passes itself: from the `lr` and `weight_decay` fields,
# the model (`rescale`) and the schedule's peak (`max_learning_rate`).
_SET_BY_RECIPE = ("learning_rate", "weight_decay", "rescale", "max_learning_rate")


def optimizer_arguments(regularization, optimizer):
    """The class whose arguments `optimizer_kwargs` may give, and those arguments.

    The toolkit's class for `sgdp`, `adamh` and `cwd`; Keras's class
    otherwise (WRS's own arguments are config fields). The arguments are the
    named ones of `__init__` along the class's bases, less those the recipe
    passes itself.

    Returns:
        `(class name, sorted argument names)`, the name as `optimizer_class_name`.
    """
    import inspect

    owner = regularization if regularization in TOOLKIT else "none"
    names = set()
    for klass in optimizer_class(owner, optimizer).__mro__:
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return optimizer_class_name(owner, optimizer), sorted(names - {"self", *_SET_BY_RECIPE})


def make_optimizer(config, hp, learning_rate, model):
    """Build the optimizer of `config.optimizer` for `config.regularization`.

    Args:
        config: a validated `Config`.
        hp: the run's `Hyperparameters`.
        learning_rate: a float or schedule from `learning_rate_schedule`.
        model: the model (the `rescale` argument of WRS optimizers).

    Returns:
        A `keras.optimizers.Optimizer`.
    """
    spec = OPTIMIZERS[config.optimizer]
    kwargs = {**spec.kwargs, **config.optimizer_kwargs, "learning_rate": learning_rate}
    if applies_weight_decay(config.regularization, config.wrs_other_decay):
        kwargs["weight_decay"] = hp.weight_decay
    elif spec.class_name == "AdamW":
        kwargs["weight_decay"] = 0.0  # AdamW insists on a float
    cls = optimizer_class(config.regularization, config.optimizer)
    if config.regularization == "wrs":
        return cls(
            rescale=model,
            target_norm=config.target_norm,
            granularity=config.granularity,
            rescale_every=config.rescale_every,
            **kwargs,
        )
    if config.regularization == "adamh":
        return cls(rescale=model, **kwargs)
    if config.regularization == "cwd":
        return cls(max_learning_rate=hp.learning_rate, **kwargs)
    if config.regularization == "sgdp" and kwargs.get("weight_decay") and cls.__name__ == "SGDP":
        # SGDP shrinks by lr * wd / (1 - momentum): the same step as `wd`'s.
        kwargs["weight_decay"] *= 1.0 - kwargs.get("momentum", 0.0)
    return cls(**kwargs)


def coverage(model, applied):
    """How much of `model` WRS rescales: kernels and their share of the parameters.

    Args:
        model: the run's model.
        applied: whether the run rescales (`rescales`: `wrs`, `adamh`); the numbers
            are the same either way, so WD and WRS runs can be read side by side.

    Returns:
        `{"applied", "kernels", "kernel_params", "trainable_params",
        "param_fraction"}`, as `config.json` records it.
    """
    from keras_wrs.optimizers.describe import parameter_coverage
    from keras_wrs.selection import select_scale_invariant

    try:
        selected = select_scale_invariant(model)
    except ValueError:  # no scale-invariant kernel at all
        selected = []
    return {"applied": bool(applied), **parameter_coverage(model, selected)}

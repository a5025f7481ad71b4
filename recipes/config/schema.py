"""The recipe `Config`, its field types and the names the recipes accept.

This module imports nothing heavy: `keras-wrs list`, `--help` and config
checks read it without loading Keras or a backend.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

__all__ = [
    "Config",
    "FIELD_TYPES",
    "BUILTIN_DATASETS",
    "AUGMENTATIONS",
    "PRECISIONS",
    "STRATEGIES",
    "REGULARIZATIONS",
    "SCHEDULES",
    "LR_SCALINGS",
    "FREEZES",
    "unknown_name",
    "MAX_INT",
    "MAX_SEED",
    "FLOAT32_MAX",
    "FLOAT32_TINY",
    "MAX_IN_MEMORY_BYTES",
    "SYNTHETIC_IMAGE_BYTES",
]

BUILTIN_DATASETS = ("digits", "fashion_mnist", "synthetic_shapes")
AUGMENTATIONS = ("none", "crop", "crop_flip")
PRECISIONS = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")
REGULARIZATIONS = ("none", "wd", "l2", "wrs", "sgdp", "adamh", "cwd")
SCHEDULES = ("constant", "cosine", "step")
LR_SCALINGS = ("none", "auto", "linear", "sqrt")
# What a fine-tuning run (`init_from`) freezes: keras_wrs.recipes.training.finetune.
FREEZES = ("none", "batchnorm", "backbone")

# The numbers the training code can hold. Counts (epochs, steps, sizes) end up
# in int32 step counters and shapes; seeds in NumPy's and Keras's uint32 seed;
# real numbers (learning rate, decay, ...) in float32 variables, whose
# largest value is FLOAT32_MAX and smallest normal value FLOAT32_TINY.
MAX_INT = 2**31 - 1
MAX_SEED = 2**32 - 1
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
# Data sets are held in memory as uint8 arrays up to this size;
# synthetic_shapes images are 32x32x3 bytes.
MAX_IN_MEMORY_BYTES = 8 * 2**30
SYNTHETIC_IMAGE_BYTES = 32 * 32 * 3


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Defaults are the `digits` recipe.

    `lr` and `weight_decay` of `None` take the optimizer's defaults
    (`keras_wrs.recipes.training.optim.OPTIMIZERS`). `weight_decay` is used
    by the `wd`, `wrs`, `sgdp`, `adamh` and `cwd` regularizations (with `wrs`
    and `adamh` it applies to the variables that are not rescaled) and,
    halved, as the `l2` factor. `sgdp`, `adamh` and `cwd` are SGDP/AdamP,
    AdamH and SGDC/AdamC (`keras_wrs.recipes.training.optim.TOOLKIT`).
    """

    # Data.
    dataset: str = "digits"  # BUILTIN_DATASETS, a registered or a TFDS name
    data_dir: str | None = None  # a directory that must hold the data
    download: bool = False  # let TFDS download a missing set
    image_size: int | None = None  # pixels; resizes TFDS images
    augment: str = "crop"  # AUGMENTATIONS
    pad: int = 1  # pixels of zero padding before the random crop
    synthetic_train: int = 10_000  # images of synthetic_shapes
    synthetic_test: int = 2_000
    train_examples: int | None = None  # a class-balanced training subset
    validation_examples: int | None = None  # class-balanced, held out of train
    channels: int | None = None  # replicate grayscale to this many channels
    # Model.
    model: str = "small_cnn"  # a key of models.MODELS or "module:function"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    sync_bn: bool = False
    # Fine-tuning: start from a saved `.keras` model (it replaces `model` and
    # `model_kwargs`) and freeze part of it (FREEZES; training.finetune).
    init_from: str | None = None
    freeze: str = "none"
    # Optimization.
    optimizer: str = "sgdm"  # a key of training.optim.OPTIMIZERS
    regularization: str = "wrs"  # REGULARIZATIONS
    lr: float | None = None  # peak learning rate at base_batch_size
    weight_decay: float | None = None  # decoupled, per step: w -= lr * wd * w
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    lr_scaling: str = "none"  # LR_SCALINGS
    base_batch_size: int = 128
    schedule: str = "cosine"  # SCHEDULES
    warmup_epochs: float = 2.0
    step_epochs: tuple = ()  # epochs where the step schedule multiplies lr
    step_factor: float = 0.1
    label_smoothing: float = 0.0
    epochs: int = 20
    batch_size: int = 64  # global batch (all replicas)
    steps_per_epoch: int | None = None  # at most this many batches per epoch
    # Weight rescaling (the library's arguments of the same names).
    target_norm: Any = 1.0  # a positive number or "initial"
    granularity: str = "filter"  # keras_wrs.math.GRANULARITIES
    rescale_every: int = 1  # steps between rescales
    wrs_other_decay: bool = True  # weight decay on the variables WRS leaves
    # System.
    seed: int = 0
    precision: str = "float32"  # PRECISIONS
    jit_compile: bool = False  # XLA
    strategy: str = "default"  # STRATEGIES
    dynamics: bool = True  # WeightDynamics and SpanNoise callbacks
    noise_every: int = 5  # epochs between weight-noise measurements
    noise_kernels: tuple = ()  # kernels SpanNoise watches (all when empty)
    noise_threshold: float = 1e-6  # relative eigenvalue threshold of the span
    probe_examples: int = 256  # training images of the span probe
    plots: bool = True
    tensorboard: bool = True


# The type of every field, from its annotation: what `--set` parses a value
# as and what `validate` checks (for configs made in Python too).
FIELD_TYPES = {f.name: str(f.type).replace(" ", "") for f in dataclasses.fields(Config)}


def unknown_name(kind, value, valid):
    """The message for a name that is not one of `valid`, with close matches.

    Args:
        kind: what the name is (`"recipe"`, `"config field"`, ...).
        value: the name received.
        valid: the valid names.

    Returns:
        `"Unknown <kind> <value>. Valid <kinds>: ... Did you mean: ...?"`.
    """
    close = difflib.get_close_matches(str(value), list(valid), 3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return f"Unknown {kind} {value!r}. Valid {plural}: {', '.join(sorted(valid))}.{hint}"

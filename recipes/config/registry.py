"""The registered recipes: one `Config` each, and their smoke variants.

Recipes (`RECIPES`), with the test accuracy the architecture's paper reports
for SGD with weight decay (PyTorch-style coupled L2). These recipes use Keras's
decoupled decay and have not been run to the end by keras-wrs (CIFAR needs a
network), so expect about these numbers, not these digits:

| name | data | model | schedule | published accuracy |
|---|---|---|---|---|
| `digits` | scikit-learn digits (offline) | small CNN | warmup + cosine, 20 epochs | see recipes/results/digits |
| `shapes_resnet20` | synthetic shapes (offline) | ResNet-20 | warmup + cosine, 15 epochs | none (synthetic) |
| `fmnist_resnet9` | Fashion-MNIST (all 60,000) | ResNet-9 | warmup + cosine, 8 epochs | see recipes/results/fmnist_full |
| `cifar10_resnet20` | CIFAR-10 (TFDS) | ResNet-20 | step, 164 epochs | 91.25% (He et al. 2016, Table 6) |
| `cifar10_resnet56` | CIFAR-10 (TFDS) | ResNet-56 | as ResNet-20 | 93.03% (He et al. 2016, Table 6) |
| `cifar10_vgg16` | CIFAR-10 (TFDS) | VGG16-BN | cosine, 200 epochs | none in the paper's text (Liu et al. v1, Fig. 1 plots it) |
| `cifar10_wrn16_8` | CIFAR-10 (TFDS) | WRN-16-8 | step, 200 epochs | 95.19% (Zagoruyko & Komodakis 2016, v1 Table 4) |
| `cifar100_wrn28_10` | CIFAR-100 (TFDS) | WRN-28-10 | as WRN-16-8 | 79.50% (same; later versions, with mean/std preprocessing, report more) |
"""

from __future__ import annotations

import dataclasses

from keras_wrs.recipes.config.schema import BUILTIN_DATASETS, Config, unknown_name

__all__ = ["RECIPES", "get_recipe", "smoke"]

_DIGITS = Config()
_SHAPES = Config(
    dataset="synthetic_shapes",
    model="resnet20",
    augment="crop_flip",
    pad=4,
    epochs=15,
    batch_size=128,
    warmup_epochs=1.0,
)
_RESNET20 = dataclasses.replace(
    _SHAPES,
    dataset="cifar10",
    epochs=164,
    weight_decay=1e-4,
    schedule="step",
    warmup_epochs=0.0,
    step_epochs=(82, 123),
    noise_every=10,
)
_WRN16_8 = dataclasses.replace(
    _RESNET20,
    model="wrn16_8",
    epochs=200,
    weight_decay=5e-4,
    step_epochs=(60, 120, 160),
    step_factor=0.2,
    optimizer_kwargs={"nesterov": True},
)

# Fashion-MNIST (28x28x1). The protocol of the literature runs: pad-4 crop +
# flip, mean/std normalization, SGD-momentum 0.1, WD 5e-4 for the WD runs.
_FMNIST = dataclasses.replace(
    _SHAPES,
    dataset="fashion_mnist",
    model="resnet20",
    epochs=40,
    pad=4,
    batch_size=128,
    weight_decay=5e-4,
    warmup_epochs=1.0,
    noise_every=5,
)
# Sized for a 2-core CPU: ResNet-8 at width 8 (19k parameters) on a fixed,
# balanced 5,000-image subset, 5 epochs with XLA, tested on all 10,000 test
# images (about 1.5 minutes a run on 2 idle cores).
_FMNIST_SMALL = dataclasses.replace(
    _FMNIST,
    model="resnet8",
    model_kwargs={"width": 8},
    train_examples=5_000,
    epochs=5,
    noise_every=1,
    probe_examples=128,
    jit_compile=True,
)
# All 60,000 images to >= 93% test accuracy in 8 epochs on a 2-core CPU
# (about 50 CPU seconds an epoch; benchmarks/fmnist_time_to_accuracy.md):
# ResNet-9 pools early, bfloat16 uses the CPU's AMX units, XLA is off (it
# costs more CPU here). Weight decay 5e-3 is Keras's decoupled decay: with
# Nesterov momentum 0.9 it shrinks weights per step as PyTorch's coupled 5e-4.
_FMNIST_RESNET9 = dataclasses.replace(
    _FMNIST,
    model="resnet9",
    pad=2,
    epochs=8,
    batch_size=256,
    lr=0.2,
    weight_decay=5e-3,
    label_smoothing=0.1,
    optimizer_kwargs={"nesterov": True},
    precision="mixed_bfloat16",
)

RECIPES: dict[str, Config] = {
    "digits": _DIGITS,
    "shapes_resnet20": _SHAPES,
    "fashion_mnist_small": _FMNIST_SMALL,
    # Grayscale replicated to 3 channels, as when grayscale data goes into an
    # RGB network: the first conv's 3x3x3 patches span 9 of 27 dimensions, so
    # its weight noise (the part outside the span) is real and measurable.
    "fashion_mnist_rgb": dataclasses.replace(
        _FMNIST_SMALL, channels=3, noise_every=1, noise_kernels=("stem_conv/kernel",)
    ),
    "fmnist_resnet20": _FMNIST,
    "fmnist_resnet9": _FMNIST_RESNET9,
    "fmnist_wrn16_4": dataclasses.replace(
        _FMNIST, model="wrn16_4", optimizer_kwargs={"nesterov": True}
    ),
    "cifar10_resnet20": _RESNET20,
    "cifar10_resnet56": dataclasses.replace(_RESNET20, model="resnet56"),
    "cifar10_vgg16": dataclasses.replace(
        _RESNET20,
        model="vgg16_bn",
        epochs=200,
        weight_decay=5e-4,
        schedule="cosine",
        step_epochs=(),
    ),
    "cifar10_wrn16_8": _WRN16_8,
    "cifar100_wrn28_10": dataclasses.replace(_WRN16_8, dataset="cifar100", model="wrn28_10"),
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
    "resnet9": {"width": 4},
}


def get_recipe(name):
    """The `Config` of a registered recipe; unknown names list the valid ones."""
    if name not in RECIPES:
        raise ValueError(unknown_name("recipe", name, RECIPES))
    return RECIPES[name]


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
        epochs=2,
        steps_per_epoch=2,
        batch_size=16,
        warmup_epochs=0.0,
        synthetic_train=64,
        synthetic_test=32,
        probe_examples=16,
        plots=False,
    )
    if config.schedule == "step":
        changes["step_epochs"] = (1,)
    if offline and config.dataset not in BUILTIN_DATASETS:
        changes["dataset"] = "synthetic_shapes"
    return dataclasses.replace(config, **changes)

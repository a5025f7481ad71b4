"""Image classifiers with BatchNormalization, as Keras functional builders.

Every convolution that feeds a BatchNormalization has no bias (BN's beta takes
its place), so the kernel is scale-invariant and a candidate for weight
rescaling. The classifier head is a plain `Dense` that outputs float32 logits,
also under a mixed-precision policy.

Trainable parameter counts (10 classes, 32x32x3 input, default widths) are
checked by the tests against the published numbers:

| builder | trainable parameters | published |
|---|---|---|
| `resnet(depth=20)` | 269,722 | 0.27M (He et al. 2016, Table 6) |
| `resnet(depth=56)` | 853,018 | 0.85M (He et al. 2016, Table 6) |
| `vgg16_bn(head="linear")` | 14,724,042 | 14.7M (the usual CIFAR VGG16-BN) |
| `vgg16_bn(head="mlp")` | 15,250,378 | 15.0-15.3M (512-512 BN head) |
| `wide_resnet(16, 8)` | 10,961,370 | 11.0M (Zagoruyko & Komodakis 2016) |
| `wide_resnet(28, 10)` | 36,479,194 | 36.5M (Zagoruyko & Komodakis 2016) |
| `small_cnn()` (8x8x1 input) | 65,834 | (ours) |
| `resnet9()` (28x28x1 input) | 412,666 | (ours; the ResNet-9 layout of Page 2018) |
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable

from keras_wrs._lazy import keras, layers
from keras_wrs.recipes.hub_models import HUB_MODELS

__all__ = [
    "MODELS",
    "build_model",
    "check_model_kwargs",
    "register_model",
    "resolve_builder",
    "resnet",
    "vgg16_bn",
    "wide_resnet",
    "small_cnn",
    "resnet9",
    "synchronize_batchnorm",
]

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _conv(x, filters, kernel_size=3, strides=1, regularizer=None, name=None):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=name,
    )(x)


def _bn(x, momentum, name=None):
    return layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=name)(x)


def _head(x, num_classes, regularizer):
    # float32 logits keep the softmax stable under mixed precision.
    return layers.Dense(
        num_classes, kernel_regularizer=regularizer, dtype="float32", name="logits"
    )(x)


def _pad_shortcut(x, filters):
    """He et al.'s option A: subsample by 2 and zero-pad the new channels.

    Written with built-in layers only (no Lambda, no custom layer), so the
    saved model reloads and exports without importing keras-wrs.
    """
    height, width, channels = x.shape[1:]
    x = layers.MaxPooling2D(pool_size=1, strides=2)(x)
    x = layers.Reshape((height // 2, width // 2, channels, 1))(x)
    extra = filters - channels
    x = layers.ZeroPadding3D(((0, 0), (0, 0), (extra // 2, extra - extra // 2)))(x)
    return layers.Reshape((height // 2, width // 2, filters))(x)


def _basic_block(x, filters, strides, bn_momentum, regularizer, name):
    shortcut = x
    y = _conv(x, filters, strides=strides, regularizer=regularizer, name=f"{name}_conv1")
    y = layers.ReLU()(_bn(y, bn_momentum, name=f"{name}_bn1"))
    y = _bn(
        _conv(y, filters, regularizer=regularizer, name=f"{name}_conv2"),
        bn_momentum,
        name=f"{name}_bn2",
    )
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _pad_shortcut(x, filters)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(
    input_shape=(32, 32, 3),
    num_classes=10,
    depth=20,
    width=16,
    bn_momentum=0.9,
    kernel_regularizer=None,
    name=None,
):
    """CIFAR ResNet v1 (He et al. 2016, section 4.2) with option-A shortcuts.

    Three stages of `(depth - 2) / 6` basic blocks with `width`, `2 width`,
    `4 width` filters. ResNet-20: 0.27M parameters, ResNet-56: 0.85M.

    Args:
        input_shape: image shape, height and width divisible by 4.
        num_classes: number of classes.
        depth: `6n + 2` (20, 32, 44, 56, 110).
        width: filters of the first stage (16 in the paper).
        bn_momentum: BatchNormalization momentum (0.9 = PyTorch's 0.1).
        kernel_regularizer: regularizer for every kernel (the "l2" recipe).
        name: model name, `resnet{depth}` by default.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Example:
        >>> model = resnet(depth=20)
        >>> sum(int(v.numpy().size) for v in model.trainable_variables)
        269722

    References:
        He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition.
        CVPR 2016.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"`depth` must be 6n+2 (20, 32, 44, 56, 110). Received: depth={depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = _conv(inputs, width, regularizer=kernel_regularizer, name="stem_conv")
    x = layers.ReLU()(_bn(x, bn_momentum, name="stem_bn"))
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(
                x, filters, strides, bn_momentum, kernel_regularizer, f"s{stage + 1}b{block + 1}"
            )
    x = layers.GlobalAveragePooling2D()(x)
    outputs = _head(x, num_classes, kernel_regularizer)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def vgg16_bn(
    input_shape=(32, 32, 3),
    num_classes=10,
    width=64,
    head="linear",
    bn_momentum=0.9,
    kernel_regularizer=None,
    name="vgg16_bn",
):
    """VGG16 with BatchNormalization after every convolution, CIFAR version.

    Thirteen 3x3 convolutions in five blocks (`width` to `8 width` filters),
    each followed by BN and ReLU, max-pooling between blocks.

    Args:
        input_shape: image shape, height and width divisible by 32.
        num_classes: number of classes.
        width: filters of the first block (64 in the paper).
        head: `"linear"`: one Dense layer on the 512 features (14.7M
            parameters, the common CIFAR variant); `"mlp"`: Dense(512)-BN-ReLU
            twice, then the classifier (15.25M).
        bn_momentum: BatchNormalization momentum.
        kernel_regularizer: regularizer for every kernel.
        name: model name.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    References:
        Simonyan, Zisserman. Very Deep Convolutional Networks for Large-Scale
        Image Recognition. ICLR 2015.
    """
    if head not in ("linear", "mlp"):
        raise ValueError(f"`head` must be 'linear' or 'mlp'. Received: {head!r}")
    inputs = keras.Input(input_shape)
    x = inputs
    index = 0
    for item in _VGG16:
        if item == "M":
            x = layers.MaxPooling2D(2)(x)
            continue
        index += 1
        x = _conv(x, item * width // 64, regularizer=kernel_regularizer, name=f"conv{index}")
        x = layers.ReLU()(_bn(x, bn_momentum, name=f"bn{index}"))
    x = layers.Flatten()(x)
    if head == "mlp":
        for i in (1, 2):
            x = layers.Dense(
                8 * width, use_bias=False, kernel_regularizer=kernel_regularizer, name=f"fc{i}"
            )(x)
            x = layers.ReLU()(_bn(x, bn_momentum, name=f"fc{i}_bn"))
    outputs = _head(x, num_classes, kernel_regularizer)
    return keras.Model(inputs, outputs, name=name)


def _wide_block(x, filters, strides, dropout, bn_momentum, regularizer, name):
    preact = layers.ReLU()(_bn(x, bn_momentum, name=f"{name}_bn1"))
    y = _conv(preact, filters, strides=strides, regularizer=regularizer, name=f"{name}_conv1")
    y = layers.ReLU()(_bn(y, bn_momentum, name=f"{name}_bn2"))
    if dropout:
        y = layers.Dropout(dropout)(y)
    y = _conv(y, filters, regularizer=regularizer, name=f"{name}_conv2")
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(
            preact,
            filters,
            kernel_size=1,
            strides=strides,
            regularizer=regularizer,
            name=f"{name}_shortcut",
        )
    return layers.Add()([y, shortcut])


def wide_resnet(
    input_shape=(32, 32, 3),
    num_classes=10,
    depth=28,
    widen_factor=10,
    dropout=0.0,
    base_width=16,
    bn_momentum=0.9,
    kernel_regularizer=None,
    name=None,
):
    """Wide ResNet WRN-depth-k with pre-activation basic blocks.

    WRN-16-8: 11.0M parameters; WRN-28-10: 36.5M.

    Args:
        input_shape: image shape, height and width divisible by 4.
        num_classes: number of classes.
        depth: `6n + 4` (10, 16, 22, 28, 40).
        widen_factor: k, the width multiplier of the three groups.
        dropout: dropout rate between the two convolutions of a block.
        base_width: 16 in the paper; smaller values give tiny test models.
        bn_momentum: BatchNormalization momentum.
        kernel_regularizer: regularizer for every kernel.
        name: model name, `wrn{depth}_{k}` by default.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    References:
        Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016.
    """
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"`depth` must be 6n+4 (10, 16, 22, 28, 40). Received: depth={depth}")
    blocks = (depth - 4) // 6
    inputs = keras.Input(input_shape)
    x = _conv(inputs, base_width, regularizer=kernel_regularizer, name="stem_conv")
    for group in range(3):
        filters = base_width * widen_factor * 2**group
        for block in range(blocks):
            strides = 2 if group > 0 and block == 0 else 1
            x = _wide_block(
                x,
                filters,
                strides,
                dropout,
                bn_momentum,
                kernel_regularizer,
                f"g{group + 1}b{block + 1}",
            )
    x = layers.ReLU()(_bn(x, bn_momentum, name="final_bn"))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = _head(x, num_classes, kernel_regularizer)
    return keras.Model(inputs, outputs, name=name or f"wrn{depth}_{widen_factor}")


def small_cnn(
    input_shape=(8, 8, 1),
    num_classes=10,
    width=32,
    head="linear",
    bn_momentum=0.9,
    kernel_regularizer=None,
    name="small_cnn",
):
    """A small Conv-BN-ReLU network for 8x8 digits and other tiny images.

    Two stages of two 3x3 convolutions (`width`, `2 width` filters) with
    max-pooling between them, global average pooling and a linear classifier.
    65,834 trainable parameters at `width=32` on 8x8x1 inputs.

    Args:
        input_shape: image shape, height and width at least 2.
        num_classes: number of classes.
        width: filters of the first stage.
        head: `"linear"`: the classifier on the pooled features; `"mlp"`:
            Dense(`2 width`, no bias)-BN-ReLU first, a head whose hidden
            kernel stays scale-invariant when the convolutions' BatchNorm
            layers are frozen for fine-tuning (`freeze="batchnorm"`).
        bn_momentum: BatchNormalization momentum.
        kernel_regularizer: regularizer for every kernel.
        name: model name.

    Returns:
        An uncompiled `keras.Model` that outputs logits.
    """
    if head not in ("linear", "mlp"):
        raise ValueError(f"`head` must be 'linear' or 'mlp'. Received: head={head!r}")
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, filters in enumerate((width, 2 * width)):
        if stage:
            x = layers.MaxPooling2D(2)(x)
        for i in (1, 2):
            conv = f"s{stage + 1}_conv{i}"
            x = _conv(x, filters, regularizer=kernel_regularizer, name=conv)
            x = layers.ReLU()(_bn(x, bn_momentum, name=f"{conv}_bn"))
    x = layers.GlobalAveragePooling2D()(x)
    if head == "mlp":
        x = layers.Dense(
            2 * width, use_bias=False, kernel_regularizer=kernel_regularizer, name="fc"
        )(x)
        x = layers.ReLU()(_bn(x, bn_momentum, name="fc_bn"))
    outputs = _head(x, num_classes, kernel_regularizer)
    return keras.Model(inputs, outputs, name=name)


def _conv_pool(x, filters, bn_momentum, regularizer, name):
    """Conv, 2x2 max-pool, BN, ReLU: the downsampling step of `resnet9`.

    Max-pooling commutes with a positive scale of the kernel, so the kernel
    still feeds BatchNormalization scale-invariantly.
    """
    x = _conv(x, filters, regularizer=regularizer, name=f"{name}_conv")
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.ReLU()(_bn(x, bn_momentum, name=f"{name}_bn"))


def _residual(x, filters, bn_momentum, regularizer, name):
    y = x
    for i in (1, 2):
        y = _conv(y, filters, regularizer=regularizer, name=f"{name}_conv{i}")
        y = layers.ReLU()(_bn(y, bn_momentum, name=f"{name}_bn{i}"))
    return layers.Add(name=f"{name}_add")([x, y])


def resnet9(
    input_shape=(28, 28, 1),
    num_classes=10,
    width=16,
    bn_momentum=0.9,
    kernel_regularizer=None,
    name="resnet9",
):
    """A ResNet-9 (Page's DAWNBench network) sized for small images on a CPU.

    Stem conv (`width`), then conv + pool (`2 width`) with a residual block
    of two convs, conv + pool (`4 width`), conv + pool (`8 width`) with a
    residual block, global max-pooling and a linear head: 8 convolutions,
    each followed by BatchNormalization and ReLU. Pooling early keeps most of
    the work at 1/4 of the input resolution and below. 412,666 trainable parameters at
    `width=16` on 28x28x1 inputs.

    Args:
        input_shape: image shape, height and width at least 8.
        num_classes: number of classes.
        width: filters of the stem.
        bn_momentum: BatchNormalization momentum.
        kernel_regularizer: regularizer for every kernel.
        name: model name.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    References:
        Page. How to train your ResNet (Myrtle.ai blog, 2018), the ResNet-9
        of the DAWNBench CIFAR-10 entries.
    """
    if min(input_shape[:2]) < 8:
        raise ValueError(
            f"`input_shape` must be at least 8x8 (three 2x2 poolings). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    inputs = keras.Input(input_shape)
    x = _conv(inputs, width, regularizer=kernel_regularizer, name="stem_conv")
    x = layers.ReLU()(_bn(x, bn_momentum, name="stem_bn"))
    x = _conv_pool(x, 2 * width, bn_momentum, kernel_regularizer, "l1")
    x = _residual(x, 2 * width, bn_momentum, kernel_regularizer, "r1")
    x = _conv_pool(x, 4 * width, bn_momentum, kernel_regularizer, "l2")
    x = _conv_pool(x, 8 * width, bn_momentum, kernel_regularizer, "l3")
    x = _residual(x, 8 * width, bn_momentum, kernel_regularizer, "r3")
    x = layers.GlobalMaxPooling2D()(x)
    outputs = _head(x, num_classes, kernel_regularizer)
    return keras.Model(inputs, outputs, name=name)


MODELS: dict[str, Callable[..., keras.Model]] = {
    "resnet8": functools.partial(resnet, depth=8),
    "resnet20": functools.partial(resnet, depth=20),
    "resnet56": functools.partial(resnet, depth=56),
    "vgg16_bn": vgg16_bn,
    "wrn16_4": functools.partial(wide_resnet, depth=16, widen_factor=4),
    "wrn16_8": functools.partial(wide_resnet, depth=16, widen_factor=8),
    "wrn28_10": functools.partial(wide_resnet, depth=28, widen_factor=10),
    "small_cnn": small_cnn,
    "resnet9": resnet9,
    # KerasHub image classifiers (the `hub` extra), see keras_wrs.recipes.hub_models.
    **HUB_MODELS,
}


def register_model(name, builder):
    """Register your own model builder under `name` (for configs and the CLI).

    Args:
        name: the name configs use (`Config(model=name)`).
        builder: a callable `(input_shape, num_classes, **model_kwargs) ->
            keras.Model`; it should accept `kernel_regularizer` too, or the
            `l2` regularization cannot be used with it.

    Returns:
        `builder`, so this works as a decorator factory's target.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"A model name is a non-empty string without ':'. Received: name={name!r}")
    if not callable(builder):
        raise ValueError(f"`builder` must be callable. Received: {builder!r}")
    MODELS[name] = builder
    return builder


def resolve_builder(name):
    """The builder of a registered name, or of `"package.module:function"`.

    Raises:
        ValueError: an unknown name, a module that does not import or a
            function it does not have.
    """
    if name in MODELS:
        return MODELS[name]
    if isinstance(name, str) and ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(
                f"Model {name!r}: module {module_name!r} does not "
                f"import ({err}). Put it on PYTHONPATH, or use a "
                f"registered model."
            ) from err
        builder = getattr(module, attr, None)
        if not callable(builder):
            raise ValueError(f"Model {name!r}: {module_name!r} has no function {attr!r}.")
        return builder
    raise ValueError(
        f"Unknown model {name!r}. Valid models: "
        f"{', '.join(sorted(MODELS))}, or your own builder as "
        f"'package.module:function'."
    )


def check_model_kwargs(name, kwargs):
    """Raise a ValueError naming any `model_kwargs` key the builder does not take."""
    builder = resolve_builder(name)
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    fixed = {"input_shape", "num_classes", "kernel_regularizer"}
    valid = sorted(set(params) - fixed)
    for key in kwargs:
        if key not in params or key in fixed:
            raise ValueError(
                f"`model_kwargs.{key}` is not an argument of model "
                f"{name!r}. Valid: {', '.join(valid) or 'none'}."
            )


def _bn_layers(model):
    """Every BatchNormalization of `model`: in nested models and subclassed blocks too."""
    from keras_wrs.selection import iter_layers

    return [layer for layer in iter_layers(model) if isinstance(layer, layers.BatchNormalization)]


def build_model(name, input_shape, num_classes, sync_bn=False, **kwargs):
    """Build a registered model by name (or `"module:function"`).

    Args:
        name: a key of `MODELS`, or `"package.module:function"`.
        input_shape: image shape `(height, width, channels)`.
        num_classes: number of classes.
        sync_bn: make every BatchNormalization compute its batch statistics
            across replicas (`synchronized=True`) under a TensorFlow
            distribution strategy. Other backends compute them over the
            global batch under `keras.distribution` already, so there it
            changes nothing.
        **kwargs: builder arguments (`width`, `bn_momentum`, ...).

    Returns:
        An uncompiled `keras.Model`.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    model = resolve_builder(name)(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Model builder {name!r} returned {type(model).__name__}, not a keras.Model."
        )
    if sync_bn:
        synchronize_batchnorm(model)
    return model


def synchronize_batchnorm(model):
    """Make every BatchNormalization of `model` cross-replica (`synchronized=True`).

    Only under TensorFlow: other backends compute batch statistics over the
    global batch under `keras.distribution` already, so there it changes
    nothing. Also for models loaded from a file (`init_from`).
    """
    if keras.backend.backend() == "tensorflow":
        for layer in _bn_layers(model):
            layer.synchronized = True  # read at call time, saved by get_config

"""KerasHub image classifiers for the recipes, built from constructor arguments.

Each builder makes a KerasHub backbone with random weights and continues its
graph with KerasHub's ImageClassifier head (global average pooling and a
`Dense` classifier) in one functional `keras.Model` (`_classifier` says why
not the task class). Presets need a download, so
the backbones are built from the architecture arguments of their presets
(the constants below, which the selection tests use too):

| name | backbone | parameters (10 classes, 28x28x1) |
|---|---|---|
| `hub_resnet18` | ResNet-18 v1, basic blocks | 11,184,970 |
| `hub_mobilenetv3_small` | MobileNetV3-Small (timm's mobilenetv3_small_100) | 944,602 |
| `hub_efficientnetv2_b0` | EfficientNetV2-B0 (3 fused, 3 unfused stages) | 5,936,794 |

Input size: the models take the recipe's images as they are (28x28x1 for
Fashion-MNIST, 8x8x1 for digits), without resizing. Their stems and stages
downsample by 32 with "same"-style padding, so a 28x28 image reaches the
last stage as a 1x1 map (8x8 as well), which global pooling accepts.
Upsampling to the 224x224 of the presets would cost 64 times the compute
for images that hold no more information; on a 2-core CPU a ResNet-18 step
of 128 Fashion-MNIST images takes about 0.4 s at 28x28.

The head outputs float32 logits (`activation=None`, `head_dtype="float32"`,
also under a mixed-precision policy), as the recipes' loss
(`from_logits=True`) expects. keras-hub is imported inside the builders; it
is the `hub` extra (`pip install "keras-wrs[hub]"`).
"""

from __future__ import annotations

from keras_wrs._lazy import keras, layers
from keras_wrs.recipes.config.extras import MissingExtraError

__all__ = [
    "RESNET18",
    "MOBILENET_V3_SMALL",
    "EFFICIENTNET_V2_B0",
    "HUB_MODELS",
    "hub_resnet18",
    "hub_mobilenetv3_small",
    "hub_efficientnetv2_b0",
    "set_kernel_regularizer",
]

# Backbone arguments of KerasHub's timm presets, less `image_shape`.
RESNET18 = {
    "input_conv_filters": [64],
    "input_conv_kernel_sizes": [7],
    "stackwise_num_filters": [64, 128, 256, 512],
    "stackwise_num_blocks": [2, 2, 2, 2],
    "stackwise_num_strides": [1, 2, 2, 2],
    "block_type": "basic_block",
    "use_pre_activation": False,
}
MOBILENET_V3_SMALL = {
    "stackwise_expansion": [[72, 88], [96, 240, 240], [120, 144], [288, 576, 576]],
    "stackwise_num_blocks": [2, 3, 2, 3],
    "stackwise_num_filters": [[24, 24], [40, 40, 40], [48, 48], [96, 96, 96]],
    "stackwise_kernel_size": [[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
    "stackwise_num_strides": [[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
    "stackwise_se_ratio": [[None, None], [0.25] * 3, [0.25] * 2, [0.25] * 3],
    "stackwise_activation": [
        ["relu", "relu"],
        ["hard_swish"] * 3,
        ["hard_swish"] * 2,
        ["hard_swish"] * 3,
    ],
    "stackwise_padding": [[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
    "output_num_filters": 1024,
    "input_num_filters": 16,
    "depthwise_filters": 16,
    "depthwise_stride": 2,
    "depthwise_residual": False,
    "squeeze_and_excite": 0.5,
    "last_layer_filter": 576,
    "input_activation": "hard_swish",
    "output_activation": "hard_swish",
}
# EfficientNetV2-B0's blocks, as in keras.applications. This backbone takes
# `input_shape` where the others take `image_shape`.
EFFICIENTNET_V2_B0 = {
    "stackwise_kernel_sizes": [3, 3, 3, 3, 3, 3],
    "stackwise_num_repeats": [1, 2, 2, 3, 5, 8],
    "stackwise_input_filters": [32, 16, 32, 48, 96, 112],
    "stackwise_output_filters": [16, 32, 48, 96, 112, 192],
    "stackwise_expansion_ratios": [1, 4, 4, 4, 6, 6],
    "stackwise_squeeze_and_excite_ratios": [0, 0, 0, 0.25, 0.25, 0.25],
    "stackwise_strides": [1, 2, 2, 2, 1, 2],
    "stackwise_block_types": ["fused"] * 3 + ["unfused"] * 3,
    "stackwise_width_coefficients": [1.0] * 6,
    "stackwise_depth_coefficients": [1.0] * 6,
    "stackwise_force_input_filters": [0] * 6,
    "stackwise_nores_option": [False] * 6,
    "dropout": 0,
}

# The kernels an L2 regularizer applies to, by variable name (Conv/Dense
# `kernel`, DepthwiseConv's and SeparableConv's kernels).
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _keras_hub():
    try:
        import keras_hub
    except ImportError as err:
        raise MissingExtraError(
            f"The KerasHub models need keras-hub, which is not installed ({err}). "
            'Install it with `pip install "keras-wrs[hub]"`, or use a model of '
            "keras_wrs.recipes.models.MODELS that does not start with `hub_`."
        ) from err
    return keras_hub


def set_kernel_regularizer(model, regularizer):
    """Put `regularizer` on every Conv/Dense-like kernel of a built `model`.

    For models whose constructors take no `kernel_regularizer` (KerasHub
    backbones) and for loaded models. The penalty enters `model.losses`
    (Keras reads `variable.regularizer` of every trainable variable); it is
    not part of the model's config, so a reloaded model has none.

    Args:
        model: a built Keras model.
        regularizer: a `keras.regularizers.Regularizer`, or None (no change).

    Returns:
        The number of kernels regularized.
    """
    if regularizer is None:
        return 0
    kernels = [v for v in model.trainable_variables if v.name in _KERNEL_NAMES]
    for variable in kernels:
        variable.regularizer = regularizer
    return len(kernels)


def _classifier(backbone, num_classes, kernel_regularizer, name):
    """KerasHub's ImageClassifier head (`pooling="avg"`, no dropout, linear), as a functional model.

    Not the `ImageClassifier` task class itself: its `fit` (keras-hub 0.32)
    turns a `keras.utils.PyDataset`, the recipes' input stream, into a
    `tf.data` dataset and fails ("Can't convert non-rectangular Python
    sequence to Tensor"), and its `compile` override replaces the optimizer
    of a reloaded model. The layers and weights are the same.
    """
    x = layers.GlobalAveragePooling2D(name="pooler")(backbone.outputs[0])
    outputs = layers.Dense(
        num_classes, kernel_regularizer=kernel_regularizer, dtype="float32", name="logits"
    )(x)
    set_kernel_regularizer(backbone, kernel_regularizer)
    # The backbone's graph, not the backbone as a nested model: the dynamics
    # callbacks read a layer's input from the model's own graph.
    return keras.Model(backbone.input, outputs, name=name)


def hub_resnet18(
    input_shape=(28, 28, 1), num_classes=10, kernel_regularizer=None, name="hub_resnet18"
):
    """KerasHub's ResNet-18 v1 (the arguments of its timm preset) as an image classifier.

    Args:
        input_shape: image shape; any size from 8x8 up, any number of channels.
        num_classes: number of classes.
        kernel_regularizer: regularizer for every Conv/Dense kernel (the
            recipes' `l2`), set on the built variables.
        name: model name.

    Returns:
        A `keras.Model`: the KerasHub backbone, average pooling and a float32
        `Dense` head (logits).

    Raises:
        MissingExtraError: keras-hub is not installed.
    """
    backbone = _keras_hub().models.ResNetBackbone(image_shape=tuple(input_shape), **RESNET18)
    return _classifier(backbone, num_classes, kernel_regularizer, name)


def hub_mobilenetv3_small(
    input_shape=(28, 28, 1), num_classes=10, kernel_regularizer=None, name="hub_mobilenetv3_small"
):
    """KerasHub's MobileNetV3-Small (timm's mobilenetv3_small_100) as an image classifier.

    Its inverted-residual blocks are subclassed layers with squeeze-excite
    and hard-swish; the selection finds the invariant kernels inside them.

    Args:
        input_shape: image shape; any size from 8x8 up, any number of channels.
        num_classes: number of classes.
        kernel_regularizer: as for `hub_resnet18`.
        name: model name.

    Returns:
        A `keras.Model`: the KerasHub backbone, average pooling and a float32
        `Dense` head (logits).

    Raises:
        MissingExtraError: keras-hub is not installed.
    """
    backbone = _keras_hub().models.MobileNetBackbone(
        image_shape=tuple(input_shape), **MOBILENET_V3_SMALL
    )
    return _classifier(backbone, num_classes, kernel_regularizer, name)


def hub_efficientnetv2_b0(
    input_shape=(28, 28, 1), num_classes=10, kernel_regularizer=None, name="hub_efficientnetv2_b0"
):
    """KerasHub's EfficientNet backbone with EfficientNetV2-B0's blocks, as an image classifier.

    Args:
        input_shape: image shape; any size from 8x8 up, any number of channels.
        num_classes: number of classes.
        kernel_regularizer: as for `hub_resnet18`.
        name: model name.

    Returns:
        A `keras.Model`: the KerasHub backbone, average pooling and a float32
        `Dense` head (logits).

    Raises:
        MissingExtraError: keras-hub is not installed.
    """
    backbone = _keras_hub().models.EfficientNetBackbone(
        input_shape=tuple(input_shape), **EFFICIENTNET_V2_B0
    )
    return _classifier(backbone, num_classes, kernel_regularizer, name)


HUB_MODELS = {
    "hub_resnet18": hub_resnet18,
    "hub_mobilenetv3_small": hub_mobilenetv3_small,
    "hub_efficientnetv2_b0": hub_efficientnetv2_b0,
}

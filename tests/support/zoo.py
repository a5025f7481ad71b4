"""Models people train, built from constructor arguments with random weights.

KerasHub task models (keras-hub 0.32) with the architecture arguments of
their presets (presets themselves need a download), and stock
`keras.applications` models, each at a small input size. Used by the
selection tests and by `benchmarks/selection_coverage.py`. The arguments of
ResNet, EfficientNetV2-B0 and MobileNetV3-Small are the recipes' own
(`keras_wrs.recipes.hub_models`), so the recipes train the models tested here.

Each entry: name -> (input size, builder). A builder returns a built model.
"""

import keras

from keras_wrs.recipes import hub_models

__all__ = ["HUB", "APPLICATIONS", "build", "hub_available"]


def hub_available() -> bool:
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        return False
    return True


def _hub():
    import keras_hub

    return keras_hub


def _classifier(backbone, num_classes=5):
    return _hub().models.ImageClassifier(backbone=backbone, num_classes=num_classes)


def resnet(blocks, block_type, pre_activation=False, size=64):
    """ResNet backbone arguments of KerasHub's timm presets (resnet18/50, resnetv2_50)."""
    hub = _hub()
    args = {
        **hub_models.RESNET18,
        "stackwise_num_blocks": blocks,
        "block_type": block_type,
        "use_pre_activation": pre_activation,
    }
    return hub.models.ResNetBackbone(image_shape=(size, size, 3), **args)


def resnet18_v1(size=64):
    return _classifier(resnet([2, 2, 2, 2], "basic_block", size=size))


def resnet18_v1_frozen_bn(size=64):
    """The standard fine-tuning setup: every BatchNormalization frozen."""
    model = resnet18_v1(size)
    for layer in model.backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def resnet50_v1(size=64):
    return _classifier(resnet([3, 4, 6, 3], "bottleneck_block", size=size))


def resnet18_v2(size=64):
    return _classifier(resnet([2, 2, 2, 2], "basic_block", pre_activation=True, size=size))


def efficientnet_b0(size=64):
    hub = _hub()
    backbone = hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3],
        stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
        stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
        stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
        stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6],
        stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
        stackwise_block_types=["v1"] * 7,
        stackwise_squeeze_and_excite_ratios=[0.25] * 7,
        stackwise_width_coefficients=[1.0] * 7,
        stackwise_depth_coefficients=[1.0] * 7,
        min_depth=None,
        include_stem_padding=True,
        use_depth_divisor_as_min_depth=True,
        cap_round_filter_decrease=True,
        stem_conv_padding="valid",
        dropout=0,
        input_shape=(size, size, 3),
    )
    return _classifier(backbone)


def efficientnet_v2_b0(size=64):
    """EfficientNetV2-B0's blocks (as in keras.applications): 3 fused, 3 unfused stages."""
    backbone = _hub().models.EfficientNetBackbone(
        input_shape=(size, size, 3), **hub_models.EFFICIENTNET_V2_B0
    )
    return _classifier(backbone)


def mobilenet_v3_small(size=64):
    """Arguments of KerasHub's timm converter for mobilenetv3_small_100."""
    backbone = _hub().models.MobileNetBackbone(
        image_shape=(size, size, 3), **hub_models.MOBILENET_V3_SMALL
    )
    return _classifier(backbone)


def mobilenet_v3_tiny(size=32):
    """Two stacks of MobileNetV3 blocks (subclassed layers, squeeze-excite, hard-swish):
    the KerasHub model of the default test run."""
    hub = _hub()
    backbone = hub.models.MobileNetBackbone(
        stackwise_expansion=[[32], [48, 48]],
        stackwise_num_blocks=[1, 2],
        stackwise_num_filters=[[16], [24, 24]],
        stackwise_kernel_size=[[3], [5, 5]],
        stackwise_num_strides=[[2], [2, 1]],
        stackwise_se_ratio=[[None], [0.25, 0.25]],
        stackwise_activation=[["relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1], [2, 2]],
        output_num_filters=64,
        input_num_filters=8,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=48,
        input_activation="hard_swish",
        output_activation="hard_swish",
        image_shape=(size, size, 3),
    )
    return _classifier(backbone)


def hgnetv2_b0(size=64):
    """Arguments of KerasHub's timm converter for hgnetv2_b0 (learnable affine blocks on)."""
    hub = _hub()
    backbone = hub.models.HGNetV2Backbone(
        depths=[1, 1, 2, 1],
        embedding_size=16,
        hidden_sizes=[64, 256, 512, 1024],
        stem_channels=[3, 16, 16],
        hidden_act="relu",
        use_learnable_affine_block=True,
        stackwise_stage_filters=[
            [16, 16, 64, 1, 3, 3],
            [64, 32, 256, 1, 3, 3],
            [256, 64, 512, 2, 3, 5],
            [512, 128, 1024, 1, 3, 5],
        ],
        apply_downsample=[False, True, True, True],
        use_lightweight_conv_block=[False, False, True, True],
        image_shape=(size, size, 3),
    )
    return hub.models.HGNetV2ImageClassifier(backbone=backbone, preprocessor=None, num_classes=5)


def cspdarknet53(size=64):
    """Arguments of KerasHub's timm converter for cspdarknet53."""
    hub = _hub()
    backbone = hub.models.CSPNetBackbone(
        stem_filters=32,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 2, 8, 8, 4],
        stackwise_strides=[2, 2, 2, 2, 2],
        stackwise_num_filters=[64, 128, 256, 512, 1024],
        block_type="dark_block",
        groups=1,
        stage_type="csp",
        bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5),
        expand_ratio=(2.0, 1.0),
        stem_padding="same",
        stem_pooling=None,
        avg_down=False,
        down_growth=True,
        cross_linear=False,
        image_shape=(size, size, 3),
    )
    return _classifier(backbone)


def densenet121(size=32):
    hub = _hub()
    backbone = hub.models.DenseNetBackbone(
        stackwise_num_repeats=[6, 12, 24, 16],
        compression_ratio=0.5,
        growth_rate=32,
        image_shape=(size, size, 3),
    )
    return _classifier(backbone)


def xception41(size=64):
    """Xception's entry, middle (8 blocks) and exit flows."""
    hub = _hub()
    backbone = hub.models.XceptionBackbone(
        stackwise_conv_filters=[[32, 64], [128, 128], [256, 256], [728, 728]]
        + [[728, 728, 728]] * 8
        + [[728, 1024], [1536, 2048]],
        stackwise_pooling=[False, True, True, True] + [False] * 8 + [True, False],
        image_shape=(size, size, 3),
    )
    return _classifier(backbone)


def deeplab_v3(size=64):
    """DeepLabV3 (atrous pyramid pooling over P5, decoder with P2) on a ResNet-18 encoder."""
    hub = _hub()
    encoder = resnet([2, 2, 2, 2], "basic_block", size=size)
    backbone = hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        spatial_pyramid_pooling_key="P5",
        upsampling_size=8,
        dilation_rates=[6, 12, 18],
        low_level_feature_key="P2",
        projection_filters=48,
        image_shape=(size, size, 3),
    )
    return hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


HUB = {
    "ResNet18 v1": (64, resnet18_v1),
    "ResNet50 v1": (64, resnet50_v1),
    "ResNet18 v2": (64, resnet18_v2),
    "EfficientNet-B0": (64, efficientnet_b0),
    "EfficientNetV2-B0": (64, efficientnet_v2_b0),
    "MobileNetV3-Small": (64, mobilenet_v3_small),
    "HGNetV2-B0": (64, hgnetv2_b0),
    "CSPDarkNet53": (64, cspdarknet53),
    "DenseNet121": (64, densenet121),
    "Xception41": (64, xception41),
    "DeepLabV3 (ResNet18)": (64, deeplab_v3),
    "ResNet18 v1, BatchNorm frozen": (64, resnet18_v1_frozen_bn),
    "MobileNetV3, 2 stacks": (32, mobilenet_v3_tiny),
}


def _app(name, **kwargs):
    def build(size):
        return getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=5, **kwargs
        )

    return build


APPLICATIONS = {
    "ResNet50": (64, _app("ResNet50")),
    "ResNet50V2": (64, _app("ResNet50V2")),
    "MobileNet": (64, _app("MobileNet", alpha=0.25)),
    "MobileNetV2": (64, _app("MobileNetV2", alpha=0.35)),
    "MobileNetV3Small": (64, _app("MobileNetV3Small", alpha=0.75)),
    "EfficientNetB0": (64, _app("EfficientNetB0")),
    "EfficientNetV2B0": (64, _app("EfficientNetV2B0")),
    "DenseNet121": (64, _app("DenseNet121")),
    "NASNetMobile": (64, _app("NASNetMobile")),
    "Xception": (71, _app("Xception")),
    "ConvNeXtTiny": (64, _app("ConvNeXtTiny")),
}


def build(name, seed=0):
    """The model called `name` in `HUB` or `APPLICATIONS`, with seeded random weights."""
    size, builder = HUB[name] if name in HUB else APPLICATIONS[name]
    keras.utils.set_random_seed(seed)
    return builder(size)

"""Recipe models: published parameter counts, option-A shortcuts, naming, errors."""

import keras
import numpy as np
import pytest

from keras_wrs.recipes import models


def _trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize(
    "name, kwargs, expected, published",
    [
        ("resnet20", {}, 269_722, 0.27e6),  # He et al. 2016, Table 6
        ("resnet56", {}, 853_018, 0.85e6),
        ("vgg16_bn", {}, 14_724_042, 14.7e6),  # linear head
        ("vgg16_bn", {"head": "mlp"}, 15_250_378, 15.25e6),
        ("wrn16_8", {}, 10_961_370, 11.0e6),  # Zagoruyko & Komodakis 2016
        ("wrn28_10", {}, 36_479_194, 36.5e6),
    ],
)
def test_parameter_counts_match_published(name, kwargs, expected, published):
    model = models.build_model(name, (32, 32, 3), 10, **kwargs)
    count = _trainable(model)
    assert count == expected
    assert abs(count - published) / published < 0.01


def test_small_cnn_count_and_output():
    model = models.small_cnn()
    assert _trainable(model) == 65_834
    assert model.output_shape == (None, 10)


def test_model_names():
    expected = {
        "resnet20": "resnet20",
        "resnet56": "resnet56",
        "vgg16_bn": "vgg16_bn",
        "wrn16_8": "wrn16_1",
        "wrn28_10": "wrn28_1",  # widen_factor=1 below
        "small_cnn": "small_cnn",
    }
    tiny = {
        "vgg16_bn": {"width": 8},
        "wrn16_8": {"base_width": 2, "widen_factor": 1},
        "wrn28_10": {"base_width": 2, "widen_factor": 1},
    }
    for key, name in expected.items():
        kwargs = tiny.get(key, {"width": 2})
        assert models.build_model(key, (32, 32, 3), 10, **kwargs).name == name


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    inputs = keras.Input((8, 8, 4))
    out = models._pad_shortcut(inputs, 8)
    y = keras.ops.convert_to_numpy(keras.Model(inputs, out)(x))
    expected = np.zeros((2, 4, 4, 8), "float32")
    expected[..., 2:6] = x[:, ::2, ::2, :]
    np.testing.assert_array_equal(y, expected)


def test_builders_use_only_builtin_layers_and_stable_names():
    model = models.build_model("resnet20", (32, 32, 3), 10, width=4)
    for layer in model.layers:
        assert type(layer).__module__.startswith("keras."), type(layer)
    names = {layer.name for layer in model.layers}
    assert {"stem_conv", "s1b1_conv1", "s3b3_bn2", "logits"} <= names
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(not conv.use_bias for conv in convs)


def test_logits_stay_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = models.small_cnn(width=4)
    assert model.get_layer("s1_conv1").compute_dtype == "bfloat16"
    logits = model(np.zeros((1, 8, 8, 1), "float32"))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"  # torch.float32 too


def test_kernel_regularizer_reaches_every_kernel():
    reg = keras.regularizers.L2(1e-3)
    model = models.build_model(
        "wrn16_8", (16, 16, 3), 10, widen_factor=1, base_width=4, kernel_regularizer=reg
    )
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert len(model.losses) == len(kernels) > 0


def test_small_cnn_mlp_head():
    model = models.small_cnn(width=4, head="mlp")
    assert not model.get_layer("fc").use_bias and model.get_layer("fc").units == 8
    assert model.get_layer("fc_bn").input.shape == (None, 8)
    with pytest.raises(ValueError, match="`head` must be 'linear' or 'mlp'. Received: head='deep'"):
        models.small_cnn(head="deep")


def test_unknown_model_lists_valid_names():
    with pytest.raises(
        ValueError,
        match="Valid models: hub_efficientnetv2_b0, hub_mobilenetv3_small, hub_resnet18, resnet20, "
        "resnet56, resnet8, resnet9, small_cnn",
    ):
        models.build_model("resnet18", (32, 32, 3), 10)


@pytest.mark.parametrize("builder, depth", [(models.resnet, 21), (models.wide_resnet, 27)])
def test_bad_depth_is_rejected(builder, depth):
    with pytest.raises(ValueError, match="depth"):
        builder(depth=depth)


def test_vgg_head_is_validated():
    with pytest.raises(ValueError, match="head"):
        models.vgg16_bn(head="conv")


def _resnet9_trainable_by_hand(width, channels=1, classes=10):
    """Trainable parameters of `resnet9`, counted layer by layer from its description."""
    convs = [
        (channels, width),
        (width, 2 * width),
        (2 * width, 2 * width),
        (2 * width, 2 * width),
        (2 * width, 4 * width),
        (4 * width, 8 * width),
        (8 * width, 8 * width),
        (8 * width, 8 * width),
    ]
    kernels = sum(9 * c_in * c_out for c_in, c_out in convs)
    batchnorm = sum(2 * c_out for _, c_out in convs)  # gamma and beta
    return kernels + batchnorm + 8 * width * classes + classes


@pytest.mark.parametrize("width", [4, 16])
def test_resnet9_counts_and_every_conv_feeds_batchnorm(width):
    from keras_wrs.selection import select_scale_invariant

    model = models.build_model("resnet9", (28, 28, 1), 10, width=width)
    assert _trainable(model) == _resnet9_trainable_by_hand(width)
    if width == 16:
        assert _trainable(model) == 412_666
    convs = [v.path for v in model.trainable_variables if "conv" in v.path and "kernel" in v.path]
    # Conv -> MaxPool -> BN is still scale-invariant: all 8 kernels are selected.
    assert sorted(s.path for s in select_scale_invariant(model)) == sorted(convs)
    assert len(convs) == 8
    assert tuple(model.output.shape) == (None, 10)


def test_resnet9_rejects_images_too_small_to_pool_three_times():
    with pytest.raises(ValueError, match=r"at least 8x8.*input_shape=\(4, 4, 1\)"):
        models.resnet9(input_shape=(4, 4, 1))

"""Automatic selection, checked against the brute-force twin (one forward pass per kernel)."""

import keras
import numpy as np
import pytest
from support.invariance import brute_force_invariant
from support.nets import conv_bn

import keras_wrs

L = keras.layers


def _selected(model):
    return {s.path for s in keras_wrs.select_scale_invariant(model)}


def _invariant(model, shape):
    x = np.random.default_rng(0).normal(size=(16,) + shape).astype("float32")
    return brute_force_invariant(model, x)


def resnet_style():
    inp = keras.Input((8, 8, 3))
    h = L.ReLU()(L.BatchNormalization(name="bn0")(L.Conv2D(8, 3, padding="same", name="stem")(inp)))
    y = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(8, 3, padding="same", name="a")(h)))
    y = L.BatchNormalization(name="bn2")(L.Conv2D(8, 3, padding="same", name="b")(y))
    h = L.ReLU()(L.Add()([h, y]))
    y = L.ReLU()(L.BatchNormalization(name="bn3")(L.Conv2D(16, 3, 2, padding="same", name="c")(h)))
    y = L.BatchNormalization(name="bn4")(L.Conv2D(16, 3, padding="same", name="d")(y))
    s = L.BatchNormalization(name="bn5")(L.Conv2D(16, 1, 2, name="proj")(h))
    h = L.ReLU()(L.Add()([s, y]))
    out = L.Dense(10, name="head")(L.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out)


def vgg_style():
    layers = [keras.Input((8, 8, 3))]
    for i, w in enumerate([8, 8, 16]):
        layers += [
            L.Conv2D(w, 3, padding="same", name=f"conv{i}"),
            L.BatchNormalization(),
            L.ReLU(),
        ]
    layers += [
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dense(32, name="fc"),
        L.BatchNormalization(),
        L.ReLU(),
        L.Dense(10, name="head"),
    ]
    return keras.Sequential(layers)


def test_resnet_style():
    m = resnet_style()
    expected = {f"{n}/kernel" for n in ["stem", "a", "b", "c", "d", "proj"]}
    assert _selected(m) == expected
    assert _invariant(m, (8, 8, 3)) == expected


def test_vgg_style_sequential_with_dense_bn():
    m = vgg_style()
    sel = _selected(m)
    assert {p.split("/")[-2] for p in sel} == {"conv0", "conv1", "conv2", "fc"}
    assert _invariant(m, (8, 8, 3)) == sel


def test_not_selected():
    inp = keras.Input((8, 8, 3))
    plain = L.Conv2D(4, 3, padding="same", name="plain")(inp)  # no BN at all
    # A zero bias would make ReLU positively homogeneous and these invariant
    # after all; with a bias they are not, and the graph cannot know the bias.
    b = keras.initializers.Constant(0.5)
    relu_bn = L.BatchNormalization()(
        L.ReLU()(L.Conv2D(4, 3, padding="same", bias_initializer=b, name="relu_bn")(inp))
    )
    act_bn = L.BatchNormalization()(
        L.Conv2D(4, 3, padding="same", activation="relu", bias_initializer=b, name="act")(inp)
    )
    leak = L.Conv2D(4, 3, padding="same", name="leak")(inp)  # BN and a raw use
    both = L.Add()([L.BatchNormalization()(leak), leak])
    ok = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name="ok")(inp))
    h = L.Concatenate()([plain, relu_bn, act_bn, both, ok])
    out = L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h))
    m = keras.Model(inp, out)
    assert _selected(m) == {"ok/kernel"}
    inv = _invariant(m, (8, 8, 3))
    assert "ok/kernel" in inv and not inv & {
        "plain/kernel",
        "leak/kernel",
        "head/kernel",
        "act/kernel",
        "relu_bn/kernel",
    }


def test_nested_and_shared_layers():
    block_in = keras.Input((8, 8, 4))
    block = keras.Model(
        block_in,
        L.BatchNormalization(name="ibn")(L.Conv2D(4, 3, padding="same", name="inner")(block_in)),
        name="block",
    )
    shared = L.Conv2D(4, 1, name="shared")
    inp = keras.Input((8, 8, 4))
    h = block(inp)
    a = L.BatchNormalization(name="s1")(shared(h))
    b = L.BatchNormalization(name="s2")(shared(inp))
    exits = L.Conv2D(4, 1, name="exits")(inp)  # leaves the nested model unnormalized
    sub_in = keras.Input((8, 8, 4))
    sub = keras.Model(sub_in, L.Conv2D(4, 1, name="to_outer")(sub_in), name="sub")
    c = L.BatchNormalization(name="after_sub")(sub(inp))  # BN reached across the model boundary
    out = L.Dense(2, name="head")(L.GlobalAveragePooling2D()(L.Concatenate()([a, b, c, exits])))
    m = keras.Model(inp, out)
    assert _selected(m) == {"inner/kernel", "shared/kernel", "to_outer/kernel"}
    assert _selected(m) <= _invariant(m, (8, 8, 4))


def test_shared_layer_with_one_unnormalized_use_is_not_selected():
    shared = L.Conv2D(4, 1, name="shared")
    inp = keras.Input((8, 8, 4))
    out = L.Add()([L.BatchNormalization()(shared(inp)), shared(inp)])
    assert not {"shared/kernel"} & set(_try_select(keras.Model(inp, out)))


def _try_select(m):
    try:
        return _selected(m)
    except ValueError:
        return set()


@pytest.mark.parametrize(
    "layer, axes",
    [
        (L.Conv2DTranspose(4, 3, padding="same", name="t"), (-2,)),
        (L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="t"), (-2, -1)),
        (L.SeparableConv2D(4, 3, padding="same", name="t"), (-1,)),
        (L.Conv1D(4, 3, padding="same", name="t"), (-1,)),
    ],
)
def test_channel_axes_by_layer_type(layer, axes):
    shape = (8, 3) if isinstance(layer, L.Conv1D) else (8, 8, 3)
    inp = keras.Input(shape)
    h = L.BatchNormalization()(layer(inp))
    m = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
    (s,) = keras_wrs.select_scale_invariant(m)
    assert s.channel_axes == axes and s.path.startswith("t/")
    assert s.path in _invariant(m, shape)


def test_channels_first_needs_bn_on_axis_1():
    inp = keras.Input((3, 8, 8))
    good = L.BatchNormalization(axis=1)(
        L.Conv2D(4, 3, data_format="channels_first", name="good")(inp)
    )
    bad = L.BatchNormalization(axis=-1)(
        L.Conv2D(4, 3, data_format="channels_first", name="bad")(inp)
    )
    m = keras.Model(inp, L.Add()([good, bad]))
    assert _selected(m) == {"good/kernel"}


def test_dense_reshape_keeping_channels_then_bn():
    inp = keras.Input((6, 5))
    h = L.Dense(4, name="d")(inp)
    h = L.Reshape((3, 2, 4))(h)  # last axis (4 channels) unchanged
    h = L.BatchNormalization()(h)
    m = keras.Model(inp, h)
    assert _selected(m) == {"d/kernel"}
    assert _invariant(m, (6, 5)) == {"d/kernel"}


def test_reasons_are_readable():
    (s, *_) = keras_wrs.select_scale_invariant(conv_bn())
    assert s.reason == "Conv2D 'c1' -> bias, BatchNormalization 'bn1'"


def test_errors():
    inp = keras.Input((4,))
    no_bn = keras.Model(inp, L.Dense(2)(L.Dense(3)(inp)), name="mlp")
    with pytest.raises(ValueError, match="'mlp' has no scale-invariant kernel"):
        keras_wrs.select_scale_invariant(no_bn)

    class Sub(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv, self.bn = L.Conv2D(4, 3, name="conv"), L.BatchNormalization(name="bn")

        def call(self, x, training=None):
            return self.bn(self.conv(x), training=training)

    sub = Sub(name="sub")
    with pytest.raises(ValueError, match="'sub' is not built: call it on a batch"):
        keras_wrs.select_scale_invariant(sub)
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    sub(x)
    with pytest.raises(ValueError, match="'sub' has no known inputs.*Pass a batch: `x=`"):
        keras_wrs.select_scale_invariant(sub)
    assert [s.path for s in keras_wrs.select_scale_invariant(sub, x)] == ["sub/conv/kernel"]


def test_channel_concatenation_and_pooling_keep_channels_apart():
    """Each filter's channel keeps its own slot through a channel-axis
    Concatenate (DenseNet), max pooling and valid average pooling."""
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", name="b")(inp)
    h = L.BatchNormalization(name="bn_cat")(L.Concatenate(axis=-1)([a, b]))
    p = L.MaxPooling2D(3, 2, padding="same", name="mp")(
        L.Conv2D(4, 3, padding="same", name="pooled")(inp)
    )
    q = L.AveragePooling2D(2, 2, name="ap")(L.Conv2D(4, 3, padding="same", name="avg")(inp))
    s = L.AveragePooling2D(3, 2, padding="same", name="aps")(
        L.Conv2D(4, 3, padding="same", name="avg_same")(inp)
    )
    rows = [L.Conv2D(4, 3, padding="same", name=n)(inp) for n in ("rows", "rows2")]
    spatial = L.Concatenate(axis=1)(rows)  # along height: channels shared, not kept apart
    out = L.Concatenate()(
        [
            L.GlobalAveragePooling2D()(h),
            L.GlobalAveragePooling2D()(L.BatchNormalization()(L.Concatenate()([p, q]))),
            L.GlobalAveragePooling2D()(L.BatchNormalization()(s)),
            L.GlobalAveragePooling2D()(L.BatchNormalization()(spatial)),
        ]
    )
    m = keras.Model(inp, L.Dense(2, name="head")(out))
    expected = {"a/kernel", "b/kernel", "pooled/kernel", "avg/kernel"}
    # "same" average pooling divides by the count of valid elements on some
    # backends (then a shift stays a shift and the kernel is invariant) and by
    # the window size on others: the numerical test follows the backend.
    invariant = _invariant(m, (8, 8, 3))
    assert _selected(m) == expected | ({"avg_same/kernel"} & invariant)
    assert expected <= invariant and not {"rows/kernel", "rows2/kernel"} & invariant


def test_zero_padding_and_dropout_only_on_a_path_without_bias():
    inp = keras.Input((8, 8, 3))
    outs = []
    for bias in (False, True):
        h = L.Conv2D(4, 3, use_bias=bias, bias_initializer="ones", name=f"pad_{bias}")(inp)
        outs.append(L.BatchNormalization()(L.ZeroPadding2D()(h)))
        h = L.Conv2D(4, 3, use_bias=bias, bias_initializer="ones", name=f"drop_{bias}")(inp)
        outs.append(L.BatchNormalization()(L.Dropout(0.5)(h)))
    out = L.Concatenate()([L.GlobalAveragePooling2D()(o) for o in outs])
    m = keras.Model(inp, L.Dense(2, name="head")(out))
    assert _selected(m) == {"pad_False/kernel", "drop_False/kernel"}
    # In training, dropout scales each element on its own: the dropped path with
    # a bias is not invariant; the verifier runs dropout as fit does.
    assert _invariant(m, (8, 8, 3)) == {"pad_False/kernel", "drop_False/kernel"}


class _Block(keras.layers.Layer):
    """A subclassed block keeping sublayers in an attribute, a dict and a list."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, padding="same", name="blk_conv")
        self.parts = {"bn": L.BatchNormalization(name="blk_bn"), "acts": [L.ReLU(name="blk_relu")]}

    def call(self, x, training=None):
        return self.parts["acts"][0](self.parts["bn"](self.conv(x), training=training))


def test_iter_layers_walks_nested_models_and_subclassed_layers_once():
    inner = keras.Sequential(
        [L.Conv2D(4, 1, name="seq_conv"), L.BatchNormalization(name="seq_bn")], name="seq"
    )
    shared = L.Conv2D(4, 1, name="shared")
    inp = keras.Input((8, 8, 3), name="x")
    h = shared(inner(_Block(name="blk")(inp)))
    h = L.Bidirectional(L.LSTM(2, name="lstm"), name="bi")(L.Reshape((64, 4), name="r")(shared(h)))
    m = keras.Model(inp, h)
    names = [layer.name for layer in keras_wrs.selection.iter_layers(m)]
    assert names == [
        "x",
        "blk",
        "blk_conv",
        "blk_bn",
        "blk_relu",
        "seq",
        "seq_conv",
        "seq_bn",
        "shared",
        "r",
        "bi",
        "forward_lstm",
        "lstm_cell",
        "backward_lstm",
        "lstm_cell",
    ]
    assert [layer.name for layer in keras_wrs.selection.iter_layers(m, include_self=True)][:2] == [
        m.name,
        "x",
    ]


@pytest.mark.parametrize(
    "build", [keras.applications.MobileNetV3Small, keras.applications.DenseNet121]
)
def test_iter_layers_finds_what_keras_tracks(build):
    m = build(weights=None, input_shape=(32, 32, 3), include_top=False)
    walked = {id(layer) for layer in keras_wrs.selection.iter_layers(m)}
    tracked = {id(layer) for layer in m._flatten_layers(include_self=False)}  # Keras's own walk
    assert walked == tracked

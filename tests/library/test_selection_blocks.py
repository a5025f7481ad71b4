"""Selection where the graph cannot see: BatchNorm modes under `fit`, subclassed blocks,
nested models. Each case against the brute-force twin (one forward pass per kernel)."""

import keras
import numpy as np
import pytest
from support.invariance import brute_force_invariant
from support.nets import loss

import keras_wrs
from keras_wrs.selection import excluded_kernels

L = keras.layers


def _batch(shape=(8, 8, 3), n=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


def _selected(model, x=None):
    return {s.path for s in keras_wrs.select_scale_invariant(model, x)}


def _reasons(model):
    return {s.path: s.reason for s in excluded_kernels(model)}


class ConvBNReLU(L.Layer):
    """The block users write: Conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, filters, bn_training=None, **kwargs):
        super().__init__(**kwargs)
        self.bn_training = bn_training
        self.conv = L.Conv2D(filters, 3, padding="same", use_bias=False, name="conv")
        self.bn = L.BatchNormalization(name="bn")

    def call(self, x, training=None):
        # `bn_training=False` hard-codes inference mode, as some blocks do.
        mode = training if self.bn_training is None else self.bn_training
        return keras.ops.relu(self.bn(self.conv(x), training=mode))


def _blocks_model(**block_kwargs):
    inp = keras.Input((8, 8, 3))
    h = ConvBNReLU(8, name="block1")(inp)
    h = ConvBNReLU(8, name="block2", **block_kwargs)(h)
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))


def test_kernels_inside_a_subclassed_block_are_selected():
    m = _blocks_model()
    assert (
        _selected(m)
        == brute_force_invariant(m, _batch())
        == {"block1/conv/kernel", "block2/conv/kernel"}
    )
    reason = {s.path: s.reason for s in keras_wrs.select_scale_invariant(m)}["block1/conv/kernel"]
    assert reason.startswith(
        "Conv2D 'conv' (in ConvBNReLU 'block1'): every filter scale-invariant in training mode"
    )


def test_a_block_that_hard_codes_inference_mode_is_left_out():
    m = _blocks_model(bn_training=False)
    assert _selected(m) == brute_force_invariant(m, _batch()) == {"block1/conv/kernel"}
    assert "not scale-invariant in training mode" in _reasons(m)["block2/conv/kernel"]


def _functional(frozen=False, training=None):
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    bn = L.BatchNormalization(name="bn1", trainable=not frozen)
    h = L.ReLU()(bn(h) if training is None else bn(h, training=training))
    h = L.BatchNormalization(name="bn2")(L.Conv2D(8, 3, padding="same", name="c2")(h))
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))


def test_a_frozen_batchnorm_keeps_its_kernel_out():
    m = _functional(frozen=True)
    assert _selected(m) == brute_force_invariant(m, _batch()) == {"c2/kernel"}
    assert _reasons(m)["c1/kernel"] == (
        "Conv2D 'c1': feeds BatchNormalization 'bn1', frozen (trainable=False): it normalizes "
        "with its moving statistics under fit, so the kernel's scale reaches the outputs"
    )


def test_explicit_training_false_in_a_functional_graph_follows_keras():
    m = _functional(training=False)
    x = _batch()
    # Keras 3.15: the model's `training=True` (what fit passes) overrides the
    # node's `training=False`, so bn1 normalizes with batch statistics.
    bn_in = keras.ops.convert_to_numpy(keras.Model(m.input, m.get_layer("c1").output)(x))
    bn_out = keras.Model(m.input, m.get_layer("bn1").output)(x, training=True)
    mean, var = bn_in.mean(axis=(0, 1, 2)), bn_in.var(axis=(0, 1, 2))
    batch_normalized = (bn_in - mean) / np.sqrt(var + 1e-3)
    overridden = np.allclose(keras.ops.convert_to_numpy(bn_out), batch_normalized, atol=1e-4)
    assert _selected(m) == brute_force_invariant(m, x)
    assert ("c1/kernel" in _selected(m)) == overridden


def test_a_frozen_nested_model_freezes_its_batchnorm():
    norm = keras.Sequential([L.BatchNormalization(name="inner_bn")], name="norm")
    inp = keras.Input((8, 8, 3))
    h = L.ReLU()(norm(L.Conv2D(8, 3, padding="same", name="c1")(inp)))
    h = L.BatchNormalization(name="bn2")(L.Conv2D(8, 3, padding="same", name="c2")(h))
    m = keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))
    assert _selected(m) == {"c1/kernel", "c2/kernel"}
    norm.trainable = False  # the selection is recomputed after a change of trainable flags
    assert _selected(m) == brute_force_invariant(m, _batch()) == {"c2/kernel"}
    assert "BatchNormalization 'inner_bn', frozen (trainable=False)" in _reasons(m)["c1/kernel"]


def test_a_frozen_kernel_and_an_unused_one_are_left_out_with_reasons():
    inp = keras.Input((8, 8, 3))
    frozen = L.Conv2D(8, 3, padding="same", name="frozen", trainable=False)
    used = L.BatchNormalization()(frozen(inp))
    unused = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", name="unused")(inp))
    # A backbone with two outputs of which the task uses one (DeepLabV3's pyramid).
    backbone = keras.Model(inp, {"used": used, "unused": unused}, name="backbone")
    outer = keras.Input((8, 8, 3))
    features = backbone(outer)["used"]
    m = keras.Model(outer, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(features)))
    reasons = _reasons(m)
    assert reasons["frozen/kernel"] == "Conv2D 'frozen': not trainable, so no optimizer updates it"
    assert reasons["unused/kernel"] == (
        "Conv2D 'unused': the model's outputs do not depend on it (no gradient reaches it), "
        "so there is nothing to keep at a norm"
    )
    assert set(reasons) == {"frozen/kernel", "unused/kernel", "head/kernel"}
    with pytest.raises(ValueError, match="has no scale-invariant kernel.*excluded_kernels"):
        keras_wrs.select_scale_invariant(m)


def test_a_nested_model_and_a_block_in_a_task_like_wrapper():
    """A backbone model nested in a classifier, blocks inside the backbone (KerasHub's shape)."""
    inp = keras.Input((8, 8, 3))
    h = ConvBNReLU(8, name="stem")(inp)
    h = L.BatchNormalization(name="bn")(L.DepthwiseConv2D(3, padding="same", name="dw")(h))
    backbone = keras.Model(inp, h, name="backbone")
    outer = keras.Input((8, 8, 3))
    m = keras.Model(outer, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(backbone(outer))))
    assert _selected(m) == brute_force_invariant(m, _batch()) == {"stem/conv/kernel", "dw/kernel"}


def test_fit_rescales_kernels_inside_blocks():
    m = _blocks_model()
    opt = keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=m)
    m.compile(optimizer=opt, loss=loss())
    x, y = _batch(n=16), np.arange(16) % 3
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert {s.path for s in opt.rescale_selection} == {"block1/conv/kernel", "block2/conv/kernel"}
    for s in opt.rescale_selection:
        norms = np.sqrt(np.sum(np.square(keras.ops.convert_to_numpy(s.variable)), axis=(0, 1, 2)))
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


@pytest.mark.tensorflow_only
def test_selection_inside_a_traced_function():
    """Keras may build the optimizer, and so select, inside a traced train step,
    where TensorFlow records no gradient (`tf.init_scope` pauses the tape)."""
    import tensorflow as tf

    m, found = _blocks_model(), {}

    @tf.function
    def traced():
        found["paths"] = _selected(m)
        return tf.constant(0)

    traced()
    assert found["paths"] == {"block1/conv/kernel", "block2/conv/kernel"}


def test_a_kernel_before_layer_normalization_is_not_per_filter_invariant():
    """ConvNeXt's depthwise kernel feeds a LayerNormalization, which normalizes across
    channels: scaling one filter changes every channel. Through a residual stream the
    outputs may move little (the brute-force check's threshold can miss it, see
    benchmarks/selection_coverage_results.md); the normalization's own output shows it."""
    inp = keras.Input((8, 8, 16))
    h = L.DepthwiseConv2D(7, padding="same", name="dw")(inp)
    normed = L.LayerNormalization(epsilon=1e-6, name="ln")(h)
    h = L.Dense(16, name="pw2")(L.Activation("gelu")(L.Dense(32, name="pw1")(normed)))
    m = keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(L.Add()([inp, h]))))
    assert "dw/kernel" in _reasons(m)
    x = _batch((8, 8, 16))
    sub = keras.Model(m.input, normed)
    kernel = m.get_layer("dw").kernel
    w = keras.ops.convert_to_numpy(kernel)
    base = keras.ops.convert_to_numpy(sub(x, training=True))
    kernel.assign(w * np.where(np.arange(16) == 0, 2.0, 1.0).reshape(1, 1, 16, 1))
    changed = keras.ops.convert_to_numpy(sub(x, training=True))
    assert np.max(np.abs(changed - base)) / np.max(np.abs(base)) > 0.05


class _Mixed(L.Layer):
    """keras.ops inside a block: a channel concatenation, a transpose, ReLU after a kernel
    without bias (homogeneous), and GroupNormalization with one channel per group
    (per-filter invariant) and with two (not)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        conv = lambda name, bias: L.Conv2D(4, 3, padding="same", use_bias=bias, name=name)
        self.a, self.b, self.c = conv("a", False), conv("b", True), conv("c", True)
        self.d, self.e = conv("d", False), conv("e", False)
        self.bns = [L.BatchNormalization(name=f"bn{i}") for i in range(3)]
        self.instance = L.GroupNormalization(groups=4, name="instance")
        self.groups = L.GroupNormalization(groups=2, name="groups")

    def call(self, x, training=None):
        h = self.bns[0](keras.ops.concatenate([self.a(x), self.b(x)], axis=-1), training=training)
        r = self.bns[1](keras.ops.relu(self.d(x)), training=training)
        t = self.bns[2](keras.ops.transpose(self.e(x), (0, 2, 1, 3)), training=training)
        c = self.c(x)
        return keras.ops.concatenate([h, r, t, self.instance(c), self.groups(c)], axis=-1)


def test_ops_inside_a_block_and_other_normalizations():
    inp = keras.Input((8, 8, 3))
    h = L.GlobalAveragePooling2D()(_Mixed(name="mixed")(inp))
    m = keras.Model(inp, L.Dense(3, name="head")(h))
    expected = {f"mixed/{n}/kernel" for n in "abde"}
    assert _selected(m) == brute_force_invariant(m, _batch()) == expected


def test_a_clipping_activation_after_a_kernel_without_bias_is_caught():
    """ReLU6(c z) = c ReLU6(z) only below the clip: on small inputs the outputs do not
    move when the filters are scaled, but the function is not invariant."""
    inp = keras.Input((8, 8, 3))
    h = L.BatchNormalization()(L.ReLU(6.0)(L.Conv2D(8, 3, use_bias=False, name="r6")(inp)))
    relu = L.Conv2D(8, 3, use_bias=False, activation="relu", name="relu")(inp)
    h = L.Concatenate()([h, L.BatchNormalization()(relu)])
    m = keras.Model(inp, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    small = 0.01 * _batch()
    assert brute_force_invariant(m, small) == {"r6/kernel", "relu/kernel"}  # fooled
    assert _selected(m) == {"relu/kernel"}  # the second test point passes the clip
    assert brute_force_invariant(m, 10 * _batch()) == {"relu/kernel"}

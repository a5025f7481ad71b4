"""Every bad argument gets a ValueError that names it, the value and what is accepted."""

import keras
import numpy as np
import pytest
from support.nets import conv_bn

import keras_wrs
from keras_wrs import optimizers as wo


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "final", True, None])
def test_bad_target_norm(value):
    with pytest.raises(
        ValueError, match=r"`target_norm` must be a positive finite number.*Received: target_norm="
    ):
        wo.SGD(0.1, rescale=[], target_norm=value)


def test_bad_granularity():
    with pytest.raises(
        ValueError,
        match=r"`granularity` must be one of \('filter', 'layer'\). Received: granularity='channel'",
    ):
        wo.SGD(0.1, rescale=[], granularity="channel")


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_bad_rescale_every(value):
    with pytest.raises(
        ValueError, match=r"`rescale_every` must be an integer >= 1.*Received: rescale_every="
    ):
        wo.SGD(0.1, rescale=[], rescale_every=value)


def test_bad_rescale_values():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        wo.SGD(0.1, rescale="c1/(kernel")
    with pytest.raises(ValueError, match="`rescale` must be a Keras model"):
        wo.SGD(0.1, rescale=3)
    with pytest.raises(ValueError, match="must hold variables or variable paths; it holds int"):
        wo.SGD(0.1, rescale=[1, 2])


def test_unset_rescale_raises_at_build_with_the_fix():
    m = conv_bn()
    opt = wo.SGD(0.1)
    with pytest.raises(ValueError, match=r"`rescale` is not set.*rescale=model.*rescale=\[\]"):
        opt.build(m.trainable_variables)


def test_regex_matching_nothing():
    m = conv_bn()
    with pytest.raises(
        ValueError,
        match=r"regex 'conv\.\*' matches no trainable variable path. Paths are like 'c1/kernel'",
    ):
        wo.SGD(0.1, rescale="conv.*").build(m.trainable_variables)


def test_callable_selecting_nothing():
    m = conv_bn()
    with pytest.raises(ValueError, match="selects no trainable variable"):
        wo.SGD(0.1, rescale=lambda v: False).build(m.trainable_variables)


def test_model_without_scale_invariant_kernels():
    inp = keras.Input((4,))
    mlp = keras.Model(inp, keras.layers.Dense(2)(inp), name="mlp")
    with pytest.raises(ValueError, match="'mlp' has no scale-invariant kernel.*use weight decay"):
        wo.SGD(0.1, rescale=mlp).build(mlp.trainable_variables)


def test_variables_that_are_not_the_models():
    m, other = conv_bn(), conv_bn(name="other")
    with pytest.raises(ValueError, match="not among the variables this optimizer is built with"):
        wo.SGD(0.1, rescale=[other.get_layer("c1").kernel]).build(m.trainable_variables)
    with pytest.raises(ValueError, match="None of the scale-invariant kernels of model 'other'"):
        wo.SGD(0.1, rescale=other).build(m.trainable_variables)
    with pytest.raises(ValueError, match="path 'nope/kernel' matches no trainable variable"):
        wo.SGD(0.1, rescale=["nope/kernel"]).build(m.trainable_variables)


def test_callable_cannot_be_saved_before_build():
    opt = wo.SGD(0.1, rescale=lambda v: "kernel" in v.path)
    with pytest.raises(ValueError, match="callable cannot be saved before the optimizer is built"):
        opt.get_config()
    m = conv_bn()
    opt.build(m.trainable_variables)
    assert set(opt.get_config()["rescale"]) == {"c1/kernel", "c2/kernel", "head/kernel"}


def test_wrs_needs_an_optimizer_class():
    with pytest.raises(
        TypeError, match="subclass of keras.optimizers.Optimizer. Received: optimizer_class="
    ):
        keras_wrs.wrs(keras.layers.Dense)


def test_describe_rescaling():
    m = conv_bn()
    opt = wo.SGD(0.1, rescale=m, target_norm="initial", rescale_every=2)
    before = keras_wrs.describe_rescaling(opt)
    assert "c1/kernel  3x3x4x8" in before and "initial" in before
    m.compile(optimizer=opt, loss="mse")
    opt.build(m.trainable_variables)
    text = keras_wrs.describe_rescaling(m)
    assert text.startswith("SGD rescales 2 kernel(s), every 2 steps:")
    assert "Conv2D 'c2' -> BatchNormalization 'bn2'" in text
    mean = np.mean(np.sqrt((m.get_layer("c1").kernel.numpy() ** 2).sum(axis=(0, 1, 2))))
    assert f"initial (mean {mean:.4g})" in text
    assert text.splitlines()[-2:] == [
        "Left out (1 kernel(s)):",
        f"  head/kernel: {keras_wrs.selection.excluded_kernels(m)[0].reason}",
    ]
    assert "head/kernel: Dense 'head': not scale-invariant in training mode" in text
    with pytest.raises(ValueError, match="needs a keras-wrs optimizer.*Received: SGD"):
        keras_wrs.describe_rescaling(keras.optimizers.SGD())


@pytest.mark.parametrize("cls", ["LossScaleOptimizer", "MultiOptimizer"])
def test_wrappers_are_refused_with_the_supported_form(cls):
    with pytest.raises(
        ValueError,
        match=rf"cannot add rescaling to {cls}.*keras_wrs\.optimizers\.SGD\(\.\.\., rescale=model\)",
    ):
        keras_wrs.wrs(getattr(keras.optimizers, cls))


@pytest.mark.parametrize("cls", ["Ftrl", "ScheduleFreeAdamW"])
def test_optimizers_that_rebuild_weights_from_state_are_refused(cls):
    with pytest.raises(ValueError, match=rf"refuses {cls}: .*Received: optimizer_class={cls}"):
        keras_wrs.wrs(getattr(keras.optimizers, cls))

    class Sub(getattr(keras.optimizers, cls)):
        pass

    with pytest.raises(ValueError, match=rf"refuses {cls}"):
        keras_wrs.wrs(Sub, name="SubOfRefused")


def test_a_users_class_never_takes_the_projects_registered_name():
    class SGD(keras.optimizers.SGD):  # a user's class that happens to be called SGD
        pass

    with pytest.raises(
        ValueError, match=r"'SGD' is the registered name of keras-wrs's own.*name='MySGD'"
    ):
        keras_wrs.wrs(SGD)
    with pytest.raises(ValueError, match="registered name of keras-wrs's own"):
        keras_wrs.wrs(keras.optimizers.Adam, name="SGD")
    assert keras.saving.get_registered_object("keras_wrs>SGD") is wo.SGD
    assert issubclass(keras_wrs.wrs(SGD, name="MySGD"), SGD)


def _build(rescale, variables, **kw):
    wo.SGD(0.1, rescale=rescale, **kw).build(variables)


def test_scalar_variable_selected():
    s = keras.Variable(2.0, name="scale")
    with pytest.raises(ValueError, match=r"selects the scalar variable 'scale'.*kernel\$"):
        _build("scale", [s])


def test_one_dimensional_variable_selected_by_a_loose_regex():
    m = conv_bn()
    with pytest.raises(
        ValueError,
        match=r"variable 'head/bias' of shape \(3,\).*1-D variable is a bias.*granularity='layer'",
    ):
        _build("head", m.trainable_variables)
    _build("head", m.trainable_variables, granularity="layer")  # one norm per variable is fine


def test_channel_axis_out_of_range():
    m = conv_bn()
    with pytest.raises(
        ValueError,
        match=r"'c1/kernel' of shape \(3, 3, 4, 8\) channel axes \(5,\); axes \[5\] are out of range",
    ):
        _build({"c1/kernel": 5}, m.trainable_variables)
    with pytest.raises(ValueError, match=r"dict values must be integer channel axes.*'c1/kernel'"):
        wo.SGD(0.1, rescale={"c1/kernel": "last"})


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.Variable exists on TensorFlow only"
)
def test_raw_tf_variable_among_the_optimizers_variables():
    import tensorflow as tf

    m = conv_bn()
    raw = tf.Variable(np.full((2, 3), 2.0, "float32"), name="raw")
    opt = wo.SGD(0.1, rescale=r"kernel$|^raw")
    opt.apply(
        [tf.zeros(v.shape) for v in m.trainable_variables] + [tf.zeros((2, 3))],
        m.trainable_variables + [raw],
    )
    assert {s.path for s in opt.rescale_selection} == {
        "c1/kernel",
        "c2/kernel",
        "head/kernel",
        "raw:0",
    }
    np.testing.assert_allclose(np.linalg.norm(raw.numpy(), axis=0), 1.0, rtol=1e-6)

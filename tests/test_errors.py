"""Every bad argument gets a ValueError that names it, the value and what is accepted."""

import keras
import numpy as np
import pytest

import keras_wrs
from _nets import conv_bn
from keras_wrs import optimizers as wo


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "final", True, None])
def test_bad_target_norm(value):
    with pytest.raises(ValueError, match=r"`target_norm` must be a positive finite number.*Received: target_norm="):
        wo.SGD(0.1, rescale=[], target_norm=value)


def test_bad_granularity():
    with pytest.raises(ValueError, match=r"`granularity` must be one of \('filter', 'layer'\). Received: granularity='channel'"):
        wo.SGD(0.1, rescale=[], granularity="channel")


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_bad_rescale_every(value):
    with pytest.raises(ValueError, match=r"`rescale_every` must be an integer >= 1.*Received: rescale_every="):
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
    with pytest.raises(ValueError, match=r"regex 'conv\.\*' matches no trainable variable path. Paths are like 'c1/kernel'"):
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
    with pytest.raises(TypeError, match="subclass of keras.optimizers.Optimizer. Received: optimizer_class="):
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
    with pytest.raises(ValueError, match="needs a keras-wrs optimizer.*Received: SGD"):
        keras_wrs.describe_rescaling(keras.optimizers.SGD())

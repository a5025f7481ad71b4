"""Hostile numbers and objects at the library's front door: refused before any work, or accepted
when NumPy spells a plain number."""

import keras
import numpy as np
import pytest
from support.nets import conv_bn, data, loss

from keras_wrs import checks
from keras_wrs import optimizers as wo
from keras_wrs.dynamics import Sharpness, SpanNoise, WeightDynamics, plot_dynamics


@pytest.mark.parametrize(
    "value", [np.float32(2.0), np.float64(0.5), np.int64(3), np.array(2.0), np.array(4)]
)
def test_target_norm_accepts_numpy_scalars_and_0d_arrays(value):
    opt = wo.SGD(0.1, rescale=[], target_norm=value)
    assert opt.target_norm == float(value) and type(opt.target_norm) is float


@pytest.mark.parametrize(
    "value", [1e30, 1e17, 1e-10, np.float32(1e30), np.array([1.0]), np.bool_(True)]
)
def test_target_norm_outside_what_float32_holds_is_refused(value):
    with pytest.raises(
        ValueError, match=r"`target_norm` must be a positive finite number from 1e-09 to 1e\+16"
    ):
        wo.SGD(0.1, rescale=[], target_norm=value)


def test_target_norm_range_ends_rescale_to_finite_unit_filters():
    # The twin: a NumPy rescale at both ends of the range stays finite in float32.
    for target in checks.TARGET_NORM_RANGE:
        w = np.random.default_rng(0).normal(size=(3, 3, 64, 8)).astype(np.float32)
        w = w * np.float32(target / np.linalg.norm(w.reshape(-1, 8), axis=0).max())
        norms = np.sqrt((w.astype(np.float32) ** 2).sum(axis=(0, 1, 2)))
        assert np.isfinite(norms).all() and (norms > 0).all()


@pytest.mark.parametrize("value", [np.int64(2), np.array(3)])
def test_rescale_every_accepts_numpy_integers(value):
    assert wo.SGD(0.1, rescale=[], rescale_every=value).rescale_every == int(value)


def test_positive_int_names_the_argument():
    assert checks.positive_int(np.int32(4), "every_n_epochs") == 4
    with pytest.raises(
        ValueError, match=r"`every_n_epochs` must be an integer >= 1. Received: every_n_epochs=2.5"
    ):
        checks.positive_int(2.5, "every_n_epochs")


def test_rescale_refuses_a_layer_with_the_fix():
    model = conv_bn()
    with pytest.raises(
        ValueError,
        match=r"`rescale` was given the Conv2D 'c1', which is not a filter.*rescale=\[layer.kernel\]",
    ):
        wo.SGD(0.1, rescale=model.get_layer("c1"))


def test_rescale_refuses_a_class_and_a_callable_of_the_wrong_arity():
    with pytest.raises(ValueError, match=r"`rescale` was given the class Conv2D"):
        wo.SGD(0.1, rescale=keras.layers.Conv2D)
    with pytest.raises(
        ValueError, match=r"`rescale` callable .* must take one argument \(a variable\)"
    ):
        wo.SGD(0.1, rescale=lambda a, b: True)
    with pytest.raises(
        ValueError, match=r"`rescale` must be a Keras model .* Received: rescale=<keras.*SGD"
    ):
        wo.SGD(0.1, rescale=keras.optimizers.SGD())


def test_rescale_accepts_a_one_argument_filter():
    model = conv_bn()
    opt = wo.SGD(0.1, rescale=lambda v: v.path.endswith("c1/kernel"))
    opt.build(model.trainable_variables)
    assert [s.path for s in opt.rescale_selection] == [model.get_layer("c1").kernel.path]


@pytest.mark.parametrize(
    "make",
    [
        lambda x, y: Sharpness(probe=(x, y[:-1])),
        lambda x, y: WeightDynamics(probe=(x, y[:-1])),
    ],
)
def test_probe_with_mismatched_lengths_is_refused_when_built(make):
    x, y = data(16)
    with pytest.raises(
        ValueError,
        match=r"`probe` holds inputs and targets with different numbers of examples \(\[15, 16\]\)",
    ):
        make(x, y)


@pytest.mark.parametrize(
    "make",
    [
        lambda x, y: Sharpness(probe=(x, y)),
        lambda x, y: SpanNoise(x),
        lambda x, y: WeightDynamics(probe=(x, y)),
    ],
)
def test_probe_of_nans_is_refused_when_built(make):
    x, y = data(8)
    x = np.full_like(x, np.nan)
    with pytest.raises(ValueError, match=r"`probe` holds NaN or infinite values"):
        make(x, y)


def test_probe_labels_outside_the_model_classes_are_refused_before_the_first_step():
    x, y = data(16)
    model = conv_bn()
    model.compile(keras.optimizers.SGD(0.01), loss())
    bad = np.full_like(y, 7)
    sharp = Sharpness(probe=(x, bad))
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(
        ValueError, match=r"`probe` labels run from 7 to 7, but model .* has 3 outputs"
    ):
        model.fit(x, y, epochs=1, batch_size=8, callbacks=[sharp], verbose=0)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # no step was taken


def test_plot_dynamics_into_an_existing_file_is_a_clear_error(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "figures"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match=r"`out_dir` must be a directory .* is an existing file"):
        plot_dynamics({"norm_mean/c1": [1.0]}, str(target))
    assert target.read_text() == "not a folder"

"""What the callbacks share: probes, schedules, kernel names, and no side effect on training."""

import keras
import numpy as np
import pytest
from support.backends import tf_installed
from support.nets import conv_bn, data, loss

import keras_wrs
from keras_wrs.dynamics import (
    SpanNoise,
    WeightDynamics,
    kernel_keys,
    step_schedule,
    tracked_kernels,
)
from keras_wrs.dynamics.probe import probe_batches, probe_loss, take_examples
from keras_wrs.dynamics.sharpness import Sharpness
from keras_wrs.selection import Selection


def test_probe_from_arrays_and_iterables():
    x, y = data(10)
    batches = probe_batches((x, y), batch_size=4)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert probe_batches(x, batch_size=None)[0][1] is None
    loader = [(x[:3], y[:3]), (x[3:6], y[3:6]), (x[6:], y[6:])]  # what a DataLoader yields
    got = probe_batches(iter(loader), max_batches=2)
    assert [b[0].shape[0] for b in got] == [3, 3] and got[1][1] is loader[1][1]
    assert [b[0].shape[0] for b in probe_batches(x[i : i + 5] for i in (0, 5))] == [5, 5]
    assert [b[0].shape[0] for b in take_examples(batches, 6)] == [4, 2]
    with pytest.raises(ValueError, match=r"`probe` holds no example \(it is empty\)"):
        probe_batches(iter([]))
    with pytest.raises(
        ValueError,
        match=r"`probe` must be an array of inputs.*a `torch.utils.data.DataLoader`.*Received: probe=None",
    ):
        probe_batches(None)


@pytest.mark.skipif(not tf_installed, reason="tf.data needs TensorFlow, which is not installed")
def test_probe_from_tf_datasets():
    import tensorflow as tf

    x, y = data(10)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    assert [int(b[0].shape[0]) for b in probe_batches(ds, max_batches=2)] == [3, 3]
    only_x = tf.data.Dataset.from_tensor_slices(x).batch(5)
    assert len(probe_batches(only_x)) == 2
    with pytest.raises(ValueError, match=r"`probe` holds no example \(it is empty\)"):
        probe_batches(ds.take(0))
    with pytest.raises(
        ValueError, match=r"`probe` must hold targets, `\(x, y\)`.*x of shape \(5, 8, 8, 4\)"
    ):
        probe_batches(only_x, need_targets=True)


def test_log_and_callable_schedules():
    due = step_schedule("log")
    assert [s for s in range(130) if due(s)] == [
        *range(10),
        10,
        13,
        16,
        20,
        25,
        32,
        40,
        50,
        63,
        79,
        100,
        126,
    ]
    assert [s for s in range(7) if step_schedule(3)(s)] == [0, 3, 6]
    odd = lambda s: s % 2 == 1
    assert step_schedule(odd) is odd


def test_kernel_keys_fall_back_to_paths_when_layer_names_repeat():
    v = keras.Variable(np.zeros((2, 2)))
    layer = keras.layers.Dense(2, name="fc")
    sels = [
        Selection(v, "a/fc/kernel", (-1,), layer),
        Selection(v, "b/fc/kernel", (-1,), layer),
        Selection(v, "c/kernel", (-1,), None),
    ]
    assert kernel_keys(sels) == ["a/fc/kernel", "b/fc/kernel", "c/kernel"]


def test_tracked_kernels_of_a_plain_optimizer_are_the_scale_invariant_ones():
    model = conv_bn()
    model.compile(keras.optimizers.SGD(0.1, weight_decay=1e-4), loss())
    sels = tracked_kernels(model, ["head"])
    assert [(s.path, s.layer.name, s.reason.startswith("named")) for s in sels] == [
        ("c1/kernel", "c1", False),
        ("c2/kernel", "c2", False),
        ("head/kernel", "head", True),
    ]
    assert [s.path for s in tracked_kernels(model, ["c2/kernel"], default=False)] == ["c2/kernel"]


def test_probe_loss_is_the_training_mode_loss_and_has_no_side_effect():
    x, y = data(16)
    model = conv_bn()
    model.compile(keras.optimizers.SGD(0.1), loss())
    before = [v.numpy() for v in model.variables]
    got = float(probe_loss(model, x, y))
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    y_pred, _ = model.stateless_call(tv, ntv, x, training=True)
    np.testing.assert_allclose(got, float(loss()(y, y_pred)), rtol=1e-6)
    for a, b in zip(before, model.variables, strict=True):  # BN moving statistics untouched
        np.testing.assert_array_equal(a, b.numpy())


def test_training_is_the_same_with_and_without_the_callbacks():
    x, y = data(32)
    weights, runs = None, []
    for with_callbacks in (False, True):
        keras.utils.set_random_seed(3)
        model = conv_bn()
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model), loss())
        callbacks = (
            [
                WeightDynamics(probe=(x[:8], y[:8])),
                SpanNoise(x[:8], training=True),
                Sharpness((x[:8], y[:8]), max_iterations=3),
            ]
            if with_callbacks
            else []
        )
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=callbacks)
        runs.append([v.numpy() for v in model.variables])  # BN moving statistics included
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)

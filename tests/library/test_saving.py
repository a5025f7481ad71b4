"""A model saved with a keras-wrs optimizer trains on after loading, in lock-step.

KerasHub task models override `compile()`, so `keras.saving.load_model` gives
them back with Adam; `keras_wrs.load_model` restores the keras-wrs optimizer,
its selection and its state (momentum, step count).
"""

import warnings

import keras
import numpy as np
import pytest
from support import zoo
from support.nets import conv_bn, loss

import keras_wrs

DATA = (np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype("float32"), np.arange(16) % 3)


def _tiny_hub_classifier():
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(16, 16, 3),
    )
    return keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3)


def _fit(model, steps):
    x, y = DATA
    model.fit(x[: 8 * steps], y[: 8 * steps], batch_size=8, epochs=1, shuffle=False, verbose=0)


def _assert_lock_step(original, loaded):
    assert type(loaded.optimizer) is type(original.optimizer)
    assert [s.path for s in loaded.optimizer.rescale_selection] == [
        s.path for s in original.optimizer.rescale_selection
    ]
    for a, b in zip(original.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    _fit(original, 2)
    _fit(loaded, 2)
    for a, b in zip(original.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-6
        )
    assert int(loaded.optimizer.iterations) == 3


@pytest.mark.skipif(not zoo.hub_available(), reason="keras-hub is not installed")
def test_a_keras_hub_task_reloads_with_its_optimizer_and_momentum(tmp_path):
    model = _tiny_hub_classifier()
    model.compile(
        optimizer=keras_wrs.optimizers.SGD(0.05, momentum=0.9, rescale=model), loss=loss()
    )
    _fit(model, 1)
    path = tmp_path / "task.keras"
    with pytest.warns(UserWarning, match=r"overrides compile\(\).*keras_wrs.load_model\(path\)"):
        model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's own: compile() not called, state skipped
        swapped = keras.saving.load_model(path)
    assert not isinstance(swapped.optimizer, keras_wrs.WRSMixin)  # what Keras does alone
    loaded = keras_wrs.load_model(path)
    momentum = [v for v in loaded.optimizer.variables if "momentum" in v.path]
    assert momentum and all(np.any(keras.ops.convert_to_numpy(v)) for v in momentum)
    _assert_lock_step(model, loaded)


def test_a_functional_model_loads_as_keras_loads_it(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, name="c"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer=keras_wrs.optimizers.SGD(0.05, momentum=0.9, rescale=model), loss=loss()
    )
    _fit(model, 1)
    path = tmp_path / "model.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # none for a model with Keras's compile()
        model.save(path)
    _assert_lock_step(model, keras_wrs.load_model(path))


def test_errors(tmp_path):
    path = tmp_path / "model.weights.h5"
    conv_bn().save_weights(path)
    with pytest.raises(
        ValueError,
        match=r"`filepath` must be an existing `.keras` archive.*"
        r"model.weights.h5.*model.load_weights",
    ):
        keras_wrs.load_model(path)
    with pytest.raises(ValueError, match="Received: filepath='missing.keras'"):
        keras_wrs.load_model("missing.keras")

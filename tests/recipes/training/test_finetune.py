"""Fine-tuning from a saved model (`init_from`) with BatchNorm or the backbone frozen.

A small CNN with an MLP head (`small_cnn(head="mlp")`) is trained, saved, and
fine-tuned under WRS with the convolutions' BatchNorm layers frozen. Only the
head's hidden kernel stays scale-invariant; the convolutions' kernels must take
the plain Keras optimizer's step (the lock-step twin below), the frozen
BatchNorm variables must not move, and accuracy must not collapse. Digits by
default; Fashion-MNIST (a few hundred images) with the slow tests.
"""

import dataclasses

import keras
import numpy as np
import pytest

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import models
from keras_wrs.recipes.training import finetune
from keras_wrs.recipes.training.train import RunSetupError, train

MLP = {"width": 8, "head": "mlp"}
QUIET = {"dynamics": False, "tensorboard": False, "plots": False}
DIGITS = dataclasses.replace(
    cfg.RECIPES["digits"], model_kwargs=MLP, epochs=3, warmup_epochs=0.0, **QUIET
)
FMNIST = dataclasses.replace(
    cfg.RECIPES["fashion_mnist_small"],
    model="small_cnn",
    model_kwargs=MLP,
    train_examples=1000,
    batch_size=32,
    epochs=3,
    warmup_epochs=0.0,
    jit_compile=False,
    **QUIET,
)
FROZEN_BN = ("s1_conv1_bn", "s1_conv2_bn", "s2_conv1_bn", "s2_conv2_bn")


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def _bn_values(model):
    return {
        v.path: _numpy(v)
        for name in FROZEN_BN
        for v in model.get_layer(name).weights  # gamma, beta, moving mean and variance
    }


def _lock_step(path, x, y):
    """One step of WRS and of Keras's SGD from the same loaded, frozen model."""
    results = []
    for optimizer in (keras_wrs.optimizers.SGD, keras.optimizers.SGD):
        model = finetune.load_initial_model(path, x.shape[1:], y.shape[-1])
        finetune.freeze_layers(model, "batchnorm")
        kwargs = {"rescale": model} if optimizer is keras_wrs.optimizers.SGD else {}
        opt = optimizer(learning_rate=0.1, momentum=0.9, **kwargs)
        model.compile(opt, keras.losses.CategoricalCrossentropy(from_logits=True))
        model.train_on_batch(x, y)
        results.append((model, {v.path: _numpy(v) for v in model.weights}))
    return results


@pytest.mark.parametrize(
    "base",
    [
        pytest.param(DIGITS, id="digits"),
        pytest.param(FMNIST, id="fashion_mnist", marks=pytest.mark.slow),
    ],
)
def test_fine_tuning_with_frozen_batchnorm_rescales_only_invariant_kernels(base, tmp_path):
    pre = train(base, tmp_path / "pre", verbose=0)
    path = str(tmp_path / "pre" / "model.keras")
    tuned = train(
        dataclasses.replace(base, init_from=path, freeze="batchnorm", epochs=1, lr=0.01),
        tmp_path / "tuned",
        verbose=0,
    )
    start = keras.saving.load_model(path)
    end = keras_wrs.load_model(tmp_path / "tuned" / "model.keras")
    # The record names the network it started from, not the config's default builder.
    assert (pre["model"], tuned["model"]) == (base.model, "model.keras (init_from)")
    # (a) WRS rescales the head's hidden kernel only; the reasons name the frozen BN.
    assert [s.path for s in end.optimizer.rescale_selection] == ["fc/kernel"]
    reasons = {s.path: s.reason for s in keras_wrs.selection.excluded_kernels(end)}
    for conv in ("s1_conv1", "s1_conv2", "s2_conv1", "s2_conv2"):
        assert "frozen (trainable=False)" in reasons[f"{conv}/kernel"]
    # ... and the convolutions take exactly the plain optimizer's step.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, *start.inputs[0].shape[1:])).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 32)]
    (wrs, a), (_, b) = _lock_step(path, x, y)
    for key in a:
        if key != "fc/kernel":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)
    twin = b["fc/kernel"] / np.linalg.norm(b["fc/kernel"], axis=0)  # WRS: unit norm per filter
    np.testing.assert_allclose(a["fc/kernel"], twin, rtol=1e-5, atol=1e-6)
    assert wrs.optimizer.rescale_selection[0].path == "fc/kernel"
    # (b) The frozen BatchNorm layers keep their statistics, gamma and beta.
    before, after = _bn_values(start), _bn_values(end)
    assert before.keys() == after.keys() and len(before) == 16
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    # ... while the head's BatchNorm trains.
    assert not np.array_equal(
        _numpy(start.get_layer("fc_bn").moving_mean), _numpy(end.get_layer("fc_bn").moving_mean)
    )
    # (c) Accuracy does not collapse.
    assert pre["test_accuracy"] > 0.5
    assert tuned["test_accuracy"] >= pre["test_accuracy"] - 0.05


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small_cnn(head="mlp") for digits, untrained, saved; and variants that do not fit."""
    where = tmp_path_factory.mktemp("saved")
    paths = {}
    for key, shape, classes in (
        ("fits", (8, 8, 1), 10),
        ("shape", (9, 9, 1), 10),
        ("classes", (8, 8, 1), 3),
    ):
        model = models.small_cnn(shape, classes, **MLP)
        paths[key] = str(where / f"{key}.keras")
        model.save(paths[key])
    return paths


def _tiny(**changes):
    return dataclasses.replace(
        DIGITS, **{"epochs": 3, "steps_per_epoch": 4, "batch_size": 16, **changes}
    )


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")


def test_resumed_fine_tuning_run_equals_the_whole_one(saved, tmp_path):
    config = _tiny(init_from=saved["fits"], freeze="batchnorm")
    whole = train(config, tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", verbose=0, callbacks=[_Interrupt()])
    resumed = train(config, tmp_path / "cut", resume=True, verbose=0)
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    a = keras_wrs.load_model(tmp_path / "whole" / "model.keras")
    b = keras_wrs.load_model(tmp_path / "cut" / "model.keras")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 12
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(_numpy(va), _numpy(vb), rtol=1e-5, atol=1e-6)
    assert not b.get_layer("s1_conv1_bn").trainable  # the frozen flags survive the resume


def test_freeze_backbone_trains_the_head_only(saved, tmp_path):
    train(_tiny(init_from=saved["fits"], freeze="backbone", epochs=1), tmp_path, verbose=0)
    start = keras.saving.load_model(saved["fits"])
    end = keras_wrs.load_model(tmp_path / "model.keras")
    head = {"fc", "fc_bn", "logits"}
    for layer in start.layers:
        for v0, v1 in zip(layer.weights, end.get_layer(layer.name).weights, strict=True):
            moved = not np.array_equal(_numpy(v0), _numpy(v1))
            assert moved == (layer.name in head), v0.path


def test_split_backbone_of_a_model_without_pooling():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    backbone, head = finetune.split_backbone(model)
    assert [layer.name for layer in head] == ["out"]
    assert "hidden" in [layer.name for layer in backbone]


@pytest.mark.parametrize(
    "key, match",
    [
        ("shape", r"holds a model for 9x9x1 inputs, but the data set's images are 8x8x1"),
        ("classes", r"holds a model with 3 outputs, but the data set has 10 classes"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_refused_before_training(saved, key, match, tmp_path):
    with pytest.raises(RunSetupError, match=match):
        train(_tiny(init_from=saved[key]), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "history.csv").exists()


def test_wrs_with_nothing_left_invariant_is_refused_before_training(tmp_path):
    path = str(tmp_path / "linear.keras")
    models.small_cnn(width=4).save(path)  # every BN-fed kernel is in the backbone
    with pytest.raises(
        RunSetupError,
        match=r"has no scale-invariant kernel once freeze='batchnorm'.*regularization=wd",
    ):
        train(_tiny(init_from=path, freeze="batchnorm"), tmp_path / "run", verbose=0)


@pytest.mark.parametrize(
    "changes, match",
    [
        (
            {"init_from": "missing.keras"},
            r"`init_from` must name an existing `\.keras` file.*'missing\.keras'",
        ),
        (
            {"freeze": "batchnorm"},
            r"`freeze` freezes part of a model loaded from `init_from`.*--set init_from",
        ),
        ({"freeze": "bn"}, r"Unknown freeze 'bn'. Valid freezes: backbone, batchnorm, none"),
        ({"init_from": 3}, r"`init_from` must be a string"),
    ],
)
def test_bad_fine_tuning_fields_are_refused_by_validate(changes, match):
    with pytest.raises(ValueError, match=match):
        cfg.validate(dataclasses.replace(cfg.Config(), **changes))


def test_init_from_must_be_a_keras_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"`init_from` must name an existing `\.keras` file"):
        cfg.validate(cfg.Config(init_from=str(path)))


def test_config_hash_of_runs_without_fine_tuning_is_unchanged():
    """Runs recorded before `init_from` and `freeze` existed still resume under their hash."""
    import hashlib
    import json

    from keras_wrs.recipes.runs.record import config_hash

    config = cfg.get_recipe("fashion_mnist_small")
    old = {k: v for k, v in cfg.to_dict(config).items() if k not in ("init_from", "freeze")}
    text = json.dumps(old, sort_keys=True, default=str)
    assert config_hash(config) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    tuned = dataclasses.replace(config, init_from="m.keras", freeze="batchnorm")
    assert config_hash(tuned) != config_hash(config)

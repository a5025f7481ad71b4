"""Optimizers, schedules and regularization of the recipes (no training)."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.models import small_cnn
from keras_wrs.recipes.training import optim


def _hp(config, steps=10):
    return optim.resolve_hyperparameters(config, steps)


def test_lr_scaling_with_batch_size():
    for optimizer, rule, expected in [
        ("sgdm", "linear", 4.0),
        ("sgdm", "auto", 4.0),
        ("adam", "auto", 2.0),
        ("adam", "sqrt", 2.0),
        ("adam", "none", 1.0),
        ("lamb", "auto", 2.0),
    ]:
        config = cfg.Config(
            optimizer=optimizer, lr_scaling=rule, batch_size=512, base_batch_size=128
        )
        hp = _hp(config)
        assert hp.lr_scale == pytest.approx(expected), (optimizer, rule)
        assert hp.learning_rate == pytest.approx(optim.OPTIMIZERS[optimizer].lr * expected)


def test_warmup_cosine_schedule():
    config = cfg.Config(epochs=10, warmup_epochs=2.0, lr=0.4)
    schedule = optim.learning_rate_schedule(config, _hp(config, steps=10))
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    np.testing.assert_allclose(values, [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)


def test_step_schedule_and_constant():
    config = cfg.Config(
        epochs=10, schedule="step", warmup_epochs=0.0, step_epochs=(5, 8), step_factor=0.1, lr=1.0
    )
    schedule = optim.learning_rate_schedule(config, _hp(config, steps=10))
    values = [float(schedule(step)) for step in (0, 49, 50, 79, 80)]
    np.testing.assert_allclose(values, [1, 1, 0.1, 0.1, 0.01], rtol=1e-6)
    constant = dataclasses.replace(config, schedule="constant")
    assert optim.learning_rate_schedule(constant, _hp(constant)) == 1.0


def test_regularization_builds_the_right_optimizer():
    model = small_cnn(width=4)
    built = {}
    for reg in filter(lambda r: optim.method_exists(r, "sgdm"), cfg.REGULARIZATIONS):
        config = cfg.Config(regularization=reg, weight_decay=1e-3)
        hp = _hp(config)
        built[reg] = optim.make_optimizer(config, hp, 0.1, model)
        assert (optim.kernel_regularizer(config, hp) is not None) == (reg == "l2")
    # Plain Keras SGD (on PyTorch, Keras returns its torch subclass of SGD).
    for reg in ("none", "l2"):
        assert isinstance(built[reg], keras.optimizers.SGD), reg
        assert not isinstance(built[reg], keras_wrs.optimizers.WRSMixin), reg
    assert built["none"].weight_decay is None
    assert built["wd"].weight_decay == pytest.approx(1e-3)
    assert isinstance(built["wrs"], keras_wrs.optimizers.SGD)
    assert built["wrs"].target_norm == 1.0 and built["wrs"].momentum == 0.9
    l2_config = cfg.Config(regularization="l2", weight_decay=1e-3)
    assert optim.kernel_regularizer(l2_config, _hp(l2_config)).l2 == pytest.approx(5e-4)


def test_adamw_without_decay_gets_zero():
    config = cfg.Config(optimizer="adamw", regularization="none")
    opt = optim.make_optimizer(config, _hp(config), 1e-3, small_cnn(width=4))
    assert opt.weight_decay == 0.0

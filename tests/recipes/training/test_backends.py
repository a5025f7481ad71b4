"""The recipes on the backend the tests run on: resume, precision, XLA, strategies.

`tests/test_recipes_train.py` checks the trainer on TensorFlow; this file
checks what must also hold on JAX and PyTorch (`.ci/run` runs it under each),
on digits, in seconds.
"""

import csv
import dataclasses

import keras
import numpy as np
import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import train
from keras_wrs.recipes.training import system

BACKEND = keras.backend.backend()
TINY = dataclasses.replace(
    cfg.smoke(cfg.RECIPES["digits"]),
    epochs=3,
    steps_per_epoch=3,
    dynamics=False,
    tensorboard=False,
    plots=False,
)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")


def _losses(run_dir):
    with (run_dir / "history.csv").open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="tests/test_recipes_train.py runs this on TensorFlow"
)
def test_backup_and_restore_resumes_to_the_uninterrupted_run(tmp_path):
    whole = train(TINY, tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "cut", verbose=0, callbacks=[_Interrupt()])
    assert len(_losses(tmp_path / "cut")) == 2
    resumed = train(TINY, tmp_path / "cut", resume=True, verbose=0)
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-5)
    np.testing.assert_allclose(_losses(tmp_path / "cut"), _losses(tmp_path / "whole"), rtol=1e-5)
    a = keras.saving.load_model(tmp_path / "whole" / "model.keras")
    b = keras.saving.load_model(tmp_path / "cut" / "model.keras")
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == 9
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(vb), keras.ops.convert_to_numpy(va), rtol=1e-5, atol=1e-6
        )


def test_mixed_precision_and_jit_map_to_this_backend(tmp_path):
    config = dataclasses.replace(TINY, epochs=1, precision="mixed", jit_compile=False)
    summary = train(config, tmp_path, verbose=0)
    assert summary["dtype_policy"] == ("mixed_float16" if system.has_gpu() else "mixed_bfloat16")
    # On JAX a step is always XLA-compiled; elsewhere jit_compile=False stays off.
    assert summary["jit_compile"] is (BACKEND == "jax")
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.get_layer("s1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("s1_conv1").kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_jit_compile_resolution():
    assert system.resolve_jit_compile(True) is True
    assert system.resolve_jit_compile(False) is (BACKEND == "jax")


def test_environment_names_the_backend_and_its_devices():
    from keras_wrs.recipes.runs import rundir

    env = rundir.environment()
    assert env["versions"]["backend"] == BACKEND
    assert any(d["type"] == "CPU" for d in env["devices"]) or system.has_gpu()


@pytest.mark.skipif(BACKEND == "tensorflow", reason="tf.distribute exists on TensorFlow")
def test_tf_distribute_strategies_are_refused_off_tensorflow(tmp_path):
    assert system.make_strategy("default").num_replicas_in_sync == 1
    for name in ("mirrored", "one_device"):
        with pytest.raises(ValueError, match=f"strategy='{name}'.*TensorFlow backend"):
            system.make_strategy(name)
    with pytest.raises(ValueError, match="Unknown strategy 'tpu'"):
        system.make_strategy("tpu")
    with pytest.raises(ValueError, match="TensorFlow backend"):
        train(dataclasses.replace(TINY, strategy="mirrored"), tmp_path / "run", verbose=0)

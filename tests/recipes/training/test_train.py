"""Training runs: every recipe's smoke variant, resume, features, the compare runner."""

import csv
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.sweeps import grid as compare
from keras_wrs.recipes.sweeps import report
from keras_wrs.recipes.training import system
from keras_wrs.recipes.training.train import ConfigMismatchError, train

TINY = cfg.smoke(cfg.RECIPES["digits"])


def _rows(run_dir):
    with (run_dir / "history.csv").open() as f:
        return list(csv.DictReader(f))


def _train_recipe(config, run_dir):
    if config.dataset in ("digits", "synthetic_shapes"):
        return train(config, run_dir, verbose=0)
    with tfds.testing.mock_data(num_examples=40):
        return train(config, run_dir, verbose=0)


def _smoke_marks(name):
    # The Fashion-MNIST recipes read and check 55 MB of IDX files and compile
    # with XLA: 30-65 s each here, so they run with the slow tests.
    dataset = cfg.RECIPES[name].dataset
    return pytest.mark.slow if dataset == "fashion_mnist" else ()


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=_smoke_marks(n)) for n in sorted(cfg.RECIPES)]
)
def test_recipe_smoke_run(name, tmp_path):
    config = cfg.smoke(cfg.RECIPES[name])
    config = dataclasses.replace(config, plots=name == "digits")
    summary = _train_recipe(config, tmp_path)
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["regularization"] == "wrs" and summary["images_per_second"] > 0
    assert summary["synthetic"] == (config.dataset == "synthetic_shapes")
    assert any(k.startswith("norm_mean/") for k in summary["dynamics"])
    for path in (
        "config.json",
        "environment.json",
        "history.csv",
        "model.keras",
        "summary.json",
        "tb",
    ):
        assert (tmp_path / path).exists(), path
    if config.plots:
        assert (tmp_path / "plots" / "history.png").exists()
        assert (tmp_path / "plots" / "norms.png").exists()
    assert not (tmp_path / "backup").exists()  # deleted once the run finished
    assert len(_rows(tmp_path)) == 2
    resolved = json.loads((tmp_path / "config.json").read_text())
    assert resolved["dataset"]["name"] == config.dataset
    assert len(resolved["dataset"]["class_names"]) == resolved["dataset"]["num_classes"]
    assert len(resolved["preprocessing"]["mean"]) == resolved["dataset"]["input_shape"][-1]
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(model.optimizer, keras_wrs.optimizers.WRSMixin)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10_resnet56", "cifar100_wrn28_10"])
def test_recipe_smoke_run_full_depth(name, tmp_path):
    summary = _train_recipe(cfg.smoke(cfg.RECIPES[name], full_depth=True), tmp_path)
    assert 0.0 <= summary["test_accuracy"] <= 1.0


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    config = dataclasses.replace(
        TINY, epochs=3, steps_per_epoch=4, dynamics=False, tensorboard=False
    )
    whole = train(config, tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", verbose=0, callbacks=[_Interrupt()])
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert len(_rows(tmp_path / "cut")) == 2
    with pytest.raises(Exception, match="already exists"):
        train(config, tmp_path / "cut", verbose=0)
    resumed = train(config, tmp_path / "cut", resume=True, verbose=0)
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-6)
    a = keras.saving.load_model(tmp_path / "whole" / "model.keras")
    b = keras.saving.load_model(tmp_path / "cut" / "model.keras")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 12
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-5, atol=1e-6)
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    for ra, rb in zip(_rows(tmp_path / "whole"), _rows(tmp_path / "cut"), strict=True):
        np.testing.assert_allclose(
            [float(ra[k]) for k in keys], [float(rb[k]) for k in keys], rtol=1e-5
        )
    # A finished run resumes to itself; a changed config refuses to resume.
    assert train(config, tmp_path / "cut", resume=True) == resumed
    with pytest.raises(ConfigMismatchError, match="differs in epochs"):
        train(dataclasses.replace(config, epochs=4), tmp_path / "cut", resume=True)


def test_mixed_precision_xla_label_smoothing_l2(tmp_path):
    config = dataclasses.replace(
        TINY,
        precision="mixed",
        jit_compile=True,
        label_smoothing=0.1,
        regularization="l2",
        optimizer="adam",
        lr_scaling="auto",
        dynamics=False,
        tensorboard=False,
    )
    summary = train(config, tmp_path, verbose=0)
    assert summary["dtype_policy"] == "mixed_bfloat16"  # no GPU here
    assert summary["jit_compile"] is True
    assert keras.config.dtype_policy().name == "float32"  # restored
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.get_layer("s1_conv1").compute_dtype == "bfloat16"
    assert type(model.optimizer).__name__ == "Adam" and len(model.losses) == 5


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, mirrored_strategy, monkeypatch):
    monkeypatch.setitem(system._STRATEGIES, "mirrored", mirrored_strategy)
    config = dataclasses.replace(TINY, strategy="mirrored", dynamics=False, tensorboard=False)
    summary = train(config, tmp_path, verbose=0)
    assert summary["replicas"] == 2 and summary["strategy"] == "MirroredStrategy"


def test_xla_with_mirrored_on_cpu_is_refused_before_work(tmp_path):
    config = dataclasses.replace(TINY, strategy="mirrored", jit_compile=True)
    with pytest.raises(ValueError, match="XLA"):
        train(config, tmp_path / "run")


def test_compare_grid_writes_tables_and_resumes(tmp_path, capsys):
    base = dataclasses.replace(TINY, tensorboard=False)
    grid = compare.Grid(("wd", "wrs"), ("sgdm",), (0,))
    table = compare.run_grid(base, grid, tmp_path, verbose=0, recipe="digits")
    assert "| sgdm | wd | " in table and "| sgdm | wrs | " in table
    for name in ("results.md", "results.csv", "accuracy.png", "norms.png"):
        assert (tmp_path / name).exists(), name
    runs = report.find_runs([tmp_path])
    assert [r.name for r in runs] == ["wd-sgdm-s0", "wrs-sgdm-s0"]
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["regularization"] for r in rows] == ["wd", "wrs"]
    assert rows[0]["seeds"] == "0" and 0 <= float(rows[0]["test_accuracy_mean"]) <= 1
    before = (runs[0] / "summary.json").stat().st_mtime_ns
    with pytest.raises(Exception, match="already exists"):
        compare.run_grid(base, grid, tmp_path, verbose=0)
    compare.run_grid(base, grid, tmp_path, resume=True, verbose=0)
    assert (runs[0] / "summary.json").stat().st_mtime_ns == before
    summaries = [s for _, s in report.load_summaries(runs)]
    # The report is the results table, then the per-layer noise table.
    assert table.split("\n\n")[0] == report.markdown_table(report.aggregate(summaries))


def test_grid_rejects_bad_axes_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="Valid regularizations"):
        compare.run_grid(TINY, compare.Grid(("wd", "decay"), ("sgdm",), (0,)), tmp_path)
    with pytest.raises(ValueError, match="repeats a cell"):
        compare.run_grid(TINY, compare.Grid(("wd", "wd"), ("sgdm",), (0,)), tmp_path)
    assert not any(tmp_path.iterdir())

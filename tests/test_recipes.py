"""Recipe configs, optimizers, schedules and run-directory rules (no training)."""

import dataclasses
import math

import keras
import numpy as np
import pytest

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import data, optim, rundir
from keras_wrs.recipes.models import small_cnn


def _hp(config, steps=10):
    return optim.resolve_hyperparameters(config, steps)


def test_every_recipe_validates_and_has_a_smoke_variant():
    for name, config in cfg.RECIPES.items():
        cfg.validate(config)
        smoke = cfg.validate(cfg.smoke(config))
        assert smoke.epochs == 2 and smoke.steps_per_epoch == 2, name
        assert smoke.dataset == config.dataset, name
        assert cfg.smoke(config, offline=True).dataset in data.BUILTIN_DATASETS


def test_variants_differ_only_in_what_they_override():
    r20, r56 = cfg.RECIPES["cifar10_resnet20"], cfg.RECIPES["cifar10_resnet56"]
    diff = {f.name for f in dataclasses.fields(cfg.Config)
            if getattr(r20, f.name) != getattr(r56, f.name)}
    assert diff == {"model"}


def test_override_parses_types_and_dict_entries():
    config = cfg.override(cfg.Config(), [
        "epochs=3", "lr=0.05", "jit_compile=true", "step_epochs=[1, 2]",
        "model_kwargs.width=8", "target_norm=initial", "weight_decay=none",
        "warmup-epochs=1"])
    assert config.epochs == 3 and config.lr == 0.05 and config.jit_compile is True
    assert config.step_epochs == (1, 2) and config.model_kwargs == {"width": 8}
    assert config.target_norm == "initial" and config.weight_decay is None
    assert config.warmup_epochs == 1.0 and isinstance(config.warmup_epochs, float)
    assert cfg.from_dict(cfg.to_dict(config)) == config


def test_override_errors():
    for assignment, match in [
            ("epoch=3", "Unknown config field 'epoch'.*Did you mean: epochs"),
            ("epochs", "KEY=VALUE"),
            ("epochs.x=1", "not a dict")]:
        with pytest.raises(ValueError, match=match):
            cfg.override(cfg.Config(), [assignment])


# One test with a loop, not a parametrization: the per-test Keras reset of
# conftest.py costs more than these checks.
_BAD_CONFIGS = [
    ({"model": "resnet18"}, "Unknown model 'resnet18'. Valid models: .*resnet20"),
    ({"optimizer": "adagrad"}, "Valid optimizers: adam, adamw, lamb, lion"),
    ({"regularization": "dropout"}, "Valid regularizations: l2, none, wd, wrs"),
    ({"precision": "float16"}, "Valid precisions"),
    ({"strategy": "tpu"}, "Valid strategies: default, mirrored"),
    ({"batch_size": 0}, "batch_size` must be an integer > 0"),
    ({"batch_size": 2.5}, "batch_size` must be an integer"),
    ({"epochs": -1}, "epochs` must be an integer > 0"),
    ({"lr": 0.0}, "lr` must be a number > 0"),
    ({"lr": math.nan}, "lr` must be a number > 0"),
    ({"weight_decay": -1e-4}, "weight_decay` must be a number >= 0"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"warmup_epochs": 30.0}, "warmup_epochs"),
    ({"schedule": "step"}, "warmup_epochs=0"),
    ({"schedule": "step", "warmup_epochs": 0.0}, "step_epochs"),
    ({"schedule": "step", "warmup_epochs": 0.0, "step_epochs": (40,)}, "step_epochs"),
    ({"target_norm": -1.0}, "target_norm"),
    ({"dataset": ""}, "dataset"),
]


def test_validate_rejects_bad_input():
    for changes, match in _BAD_CONFIGS:
        with pytest.raises(ValueError, match=match):
            cfg.validate(dataclasses.replace(cfg.Config(), **changes))


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ValueError, match="Valid recipes: cifar100_wrn28_10, .*digits"):
        cfg.get_recipe("cifar10_resnet18")


def test_lr_scaling_with_batch_size():
    for optimizer, rule, expected in [
            ("sgdm", "linear", 4.0), ("sgdm", "auto", 4.0), ("adam", "auto", 2.0),
            ("adam", "sqrt", 2.0), ("adam", "none", 1.0), ("lamb", "auto", 2.0)]:
        config = cfg.Config(optimizer=optimizer, lr_scaling=rule, batch_size=512,
                            base_batch_size=128)
        hp = _hp(config)
        assert hp.lr_scale == pytest.approx(expected), (optimizer, rule)
        assert hp.learning_rate == pytest.approx(optim.OPTIMIZERS[optimizer].lr * expected)


def test_warmup_cosine_schedule():
    config = cfg.Config(epochs=10, warmup_epochs=2.0, lr=0.4)
    schedule = optim.learning_rate_schedule(config, _hp(config, steps=10))
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    np.testing.assert_allclose(values, [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)


def test_step_schedule_and_constant():
    config = cfg.Config(epochs=10, schedule="step", warmup_epochs=0.0,
                        step_epochs=(5, 8), step_factor=0.1, lr=1.0)
    schedule = optim.learning_rate_schedule(config, _hp(config, steps=10))
    values = [float(schedule(step)) for step in (0, 49, 50, 79, 80)]
    np.testing.assert_allclose(values, [1, 1, 0.1, 0.1, 0.01], rtol=1e-6)
    constant = dataclasses.replace(config, schedule="constant")
    assert optim.learning_rate_schedule(constant, _hp(constant)) == 1.0


def test_regularization_builds_the_right_optimizer():
    model = small_cnn(width=4)
    built = {}
    for reg in optim.REGULARIZATIONS:
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


def test_run_dir_is_never_reused_silently(tmp_path):
    run = tmp_path / "run"
    rundir.prepare_run_dir(run)
    (run / "config.json").write_text("{}")
    with pytest.raises(rundir.RunDirError, match="already exists.*--resume.*--overwrite"):
        rundir.prepare_run_dir(run)
    assert rundir.prepare_run_dir(run, resume=True) == run
    assert (run / "config.json").exists()
    rundir.prepare_run_dir(run, overwrite=True)
    assert not (run / "config.json").exists()
    with pytest.raises(rundir.RunDirError, match="either"):
        rundir.prepare_run_dir(run, resume=True, overwrite=True)


def test_unwritable_output_dir_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(rundir.RunDirError, match="not writable"):
        rundir.prepare_run_dir(blocker / "run")
    with pytest.raises(rundir.RunDirError, match="not a directory"):
        rundir.prepare_run_dir(blocker)


def test_backup_epoch_reads_keras_metadata(tmp_path):
    assert rundir.backup_epoch(tmp_path) == 0
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    assert rundir.backup_epoch(tmp_path) == 3


def test_environment_records_versions_and_devices():
    env = rundir.environment()
    assert env["versions"]["keras"] == keras.__version__
    assert any(d["type"] == "CPU" for d in env["devices"])


def test_aggregate_means_and_sample_std_over_seeds():
    from keras_wrs.recipes import report

    def run(reg, seed, acc, noise):
        return {"regularization": reg, "optimizer": "sgdm", "seed": seed,
                "test_accuracy": acc, "noise_ratio": noise, "wall_seconds": 10.0,
                "images_per_second": 100.0, "synthetic": False}

    rows = report.aggregate([run("wrs", 0, 0.90, None), run("wd", 1, 0.80, 0.2),
                             run("wd", 0, 0.70, 0.4), run("wrs", 1, 0.94, None)])
    assert [(r["regularization"], r["seeds"]) for r in rows] == [("wd", [0, 1]), ("wrs", [0, 1])]
    mean, std = rows[0]["test_accuracy"]
    assert mean == pytest.approx(0.75) and std == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert rows[1]["noise_ratio"] == (None, None)
    table = report.markdown_table(rows)
    assert "| sgdm | wd | 2 | 75.00 ± 7.07 | 0.300 ± 0.141 |" in table
    assert "| sgdm | wrs | 2 | 92.00 ± 2.83 | n/a |" in table

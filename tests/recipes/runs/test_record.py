"""The run record: `config.json` / `summary.json` written and read through `runs.record`."""

import dataclasses
import json
import math
import types

import numpy as np
import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import data
from keras_wrs.recipes.runs import record


def _stored(config):
    splits = data.load_splits("synthetic_shapes", synthetic_size=(20, 10))
    hp = types.SimpleNamespace(
        learning_rate=0.1, weight_decay=5e-4, lr_scale=1.0, steps_per_epoch=2, total_steps=4
    )
    strategy = types.SimpleNamespace(num_replicas_in_sync=1)
    return record.resolved_config(
        config, hp, splits, "float32", strategy, {"workers": 1}, {"applied": True, "kernels": 3}
    ), splits


def test_config_json_round_trip(tmp_path):
    config = dataclasses.replace(
        cfg.get_recipe("shapes_resnet20"), synthetic_train=20, synthetic_test=10, step_epochs=(3,)
    )
    stored, splits = _stored(config)
    record.write_config(tmp_path, stored)
    run = record.RunRecord.read(tmp_path)
    assert run.config == config and run.config_hash == record.config_hash(config)
    assert run.summary is None and run.rescaling == {"applied": True, "kernels": 3}
    assert run.resolved["learning_rate"] == 0.1 and run.dataset["num_train"] == 20
    x = splits.x_test[:4]
    np.testing.assert_array_equal(run.preprocessing.apply(x), data.normalize(x, splits.info))
    again = run.splits()
    np.testing.assert_array_equal(again.x_test, splits.x_test)


def test_a_directory_without_a_record_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no config.json: it is not a keras-wrs"):
        record.RunRecord.read(tmp_path)


def test_config_hash_changes_with_any_field():
    base = cfg.Config()
    assert record.config_hash(base) == record.config_hash(cfg.Config())
    assert record.config_hash(base) != record.config_hash(dataclasses.replace(base, seed=1))


def test_final_dynamics_takes_the_last_finite_value_per_kernel():
    nan = math.nan
    history = {
        "loss": [1.0, 0.5],
        "noise_ratio_mean/a": [0.2, nan],
        "noise_ratio_mean/b": [nan, 0.4],
        "norm_mean/a": [1.0, 1.1],
        "noise_ratio_max/a": [nan, nan],
    }
    dyn = record.final_dynamics(history)
    assert dyn["per_kernel"] == {
        "noise_ratio_mean/a": 0.2,
        "noise_ratio_mean/b": 0.4,
        "norm_mean/a": 1.1,
        "noise_ratio_max/a": None,
    }
    assert dyn["noise_ratio"] == pytest.approx((0.2 + 0.4) / 2)
    assert record.final_dynamics({"loss": [1.0]}) == {"noise_ratio": None, "per_kernel": {}}


def test_median_rate_skips_epochs_without_a_rate():
    assert record.median_rate({"images_per_second": [nan := math.nan, 10.0, 30.0, 20.0]}) == 20.0
    assert record.median_rate({"images_per_second": [nan]}) is None
    assert record.median_rate({}) is None


def _run_dir(tmp_path, summary_changes=None, config_changes=None):
    """A run directory with a real config.json and a summary.json."""
    config = dataclasses.replace(
        cfg.get_recipe("shapes_resnet20"), synthetic_train=20, synthetic_test=10
    )
    stored, _ = _stored(config)
    stored.update(config_changes or {})
    record.write_config(tmp_path, stored)
    summary = {
        "status": "finished",
        "diverged": None,
        "recipe": None,
        "dataset": "x",
        "model": "resnet20",
        "optimizer": "sgdm",
        "regularization": "wrs",
        "seed": 0,
        "epochs": 2,
        "test_accuracy": 0.5,
        "test_loss": 1.2,
        "train_accuracy": 0.6,
        "train_loss": 1.1,
        "noise_ratio": None,
        "images_per_second": 100.0,
        "wall_seconds": 3.0,
        "dynamics": {},
    }
    summary.update(summary_changes or {})
    record.write_summary(tmp_path, summary)
    return tmp_path


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"test_accuracy": 1e300}, r"test_accuracy=1e\+300 is not a finite number in \[0, 1\]"),
        ({"wall_seconds": -5.0}, r"wall_seconds=-5.0 is not a finite number >= 0"),
        ({"seed": 1.5}, r"seed=1.5 is not an integer"),
        ({"status": "done"}, r"status='done' is neither"),
        ({"optimizer": 3}, r"optimizer=3 is not a name"),
        ({"dynamics": {"norm_mean/c": "big"}}, r"dynamics\['norm_mean/c'\]='big'"),
    ],
)
def test_a_summary_out_of_range_is_named(tmp_path, changes, words):
    run = _run_dir(tmp_path, summary_changes=changes)
    with pytest.raises(record.RunRecordError, match=rf"summary.json'?: {words}.*edited by hand"):
        record.RunRecord.read(run)


def test_a_cut_file_is_named(tmp_path):
    run = _run_dir(tmp_path)
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text[: len(text) // 2])
    with pytest.raises(record.RunRecordError, match=r"summary.json'?: not readable as JSON"):
        record.RunRecord.read(run)
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(record.RunRecordError, match=r"config.json'?: holds a JSON list"):
        record.RunRecord.read(run)


@pytest.mark.parametrize(
    "changes,words",
    [
        (
            {"preprocessing": {"rescale": 1.0, "mean": [0.1], "std": [0.0]}},
            r"preprocessing.std=0.0 is not a finite number >= 1e-12",
        ),
        (
            {"preprocessing": {"rescale": "x", "mean": [0.1], "std": [1.0]}},
            r"preprocessing.rescale='x'",
        ),
        ({"resolved": {"learning_rate": float("inf")}}, r"resolved.learning_rate=inf"),
        ({"dataset": None}, r"its .dataset. section is None, not an object"),
    ],
)
def test_a_config_record_out_of_range_is_named(tmp_path, changes, words):
    run = _run_dir(tmp_path, config_changes=changes)
    with pytest.raises(record.RunRecordError, match=words):
        record.RunRecord.read(run)


def test_a_config_that_no_longer_validates_is_named(tmp_path):
    run = _run_dir(tmp_path)
    stored = json.loads((run / "config.json").read_text())
    stored["config"]["epochs"] = -3
    (run / "config.json").write_text(json.dumps(stored))
    with pytest.raises(record.RunRecordError, match=r"its config does not validate \(`epochs`"):
        record.RunRecord.read(run)

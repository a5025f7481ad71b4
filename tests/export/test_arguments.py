"""Export arguments, sources and parity batches: every error names the fix, before any work."""

import json
import types

import keras
import numpy as np
import pytest

from keras_wrs.export import export_model, load_batch, random_batch
from keras_wrs.export.inputs import as_parity_batch
from keras_wrs.recipes.config import Config
from keras_wrs.recipes.data import load_splits
from keras_wrs.recipes.runs import record

L = keras.layers


def tiny():
    inp = keras.Input((8, 8, 4))
    h = L.GlobalAveragePooling2D()(L.BatchNormalization()(L.Conv2D(8, 3)(inp)))
    return keras.Model(inp, L.Dense(3)(h), name="tiny")


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tiny().save(run / "model.keras")
    return run


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"formats": "tflite16"},
            r"`formats` must name one or more of saved_model, onnx, tflite"
            r", tflite_int8, tflite_dynamic, onnx_int8.*tflite16",
        ),
        ({"formats": ""}, r"`formats` must name one or more"),
        ({"opset": 8}, r"`opset` must be an integer from 9 to 18.*opset=8"),
        ({"opset": 19}, r"`opset` must be an integer from 9 to 18.*opset=19"),
        ({"formats": "onnx_int8", "opset": 12}, r"'onnx_int8' .* needs opset >= 13.*opset=12"),
        ({"opset": "15"}, r"`opset` must be an integer.*opset='15'"),
        ({"formats": "saved_model", "float16": True}, r"`float16=True` makes an ONNX file"),
        ({"input_name": "my input"}, r"`input_name` must be an identifier.*'my input'"),
        ({"output_name": ""}, r"`output_name` must be an identifier"),
        ({"input_name": "x", "output_name": "x"}, r"must differ.*'x'"),
        ({"batch_size": 0}, r"`batch_size` must be a positive integer.*batch_size=0"),
        (
            {"batch": np.zeros((2, 8, 8, 3))},
            r"shape \(2, 8, 8, 3\), the model takes \(n,\) \+ \(8, 8, 4\)",
        ),
        ({"batch": np.zeros((0, 8, 8, 4))}, r"at least one numeric example"),
        ({"batch": np.full((1, 8, 8, 4), "a")}, r"at least one numeric example.*dtype=<U1"),
    ],
)
def test_bad_arguments_raise_before_anything_is_written(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_model(tiny(), tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_tolerance_must_be_a_tolerance(tmp_path):
    with pytest.raises(TypeError, match=r"`tolerance` must be a keras_wrs.export.Tolerance.*1e-05"):
        export_model(tiny(), tmp_path / "out", tolerance=1e-5)


def test_in_memory_model_needs_an_output():
    with pytest.raises(ValueError, match="`output` is required when exporting an in-memory model"):
        export_model(tiny())


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist. Pass a run directory"):
        export_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="is a directory without model.keras"):
        export_model(tmp_path)
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"is not a \.keras file.*model\.save"):
        export_model(tmp_path / "model.h5")
    with pytest.raises(TypeError, match="`source` must be a keras.Model.*Received: source=3"):
        export_model(3, tmp_path / "out")


def test_output_that_would_replace_the_source_is_refused(run_dir):
    for output in (run_dir, run_dir.parent):
        with pytest.raises(ValueError, match="contains the model being exported.*Choose another"):
            export_model(run_dir, output, overwrite=True)
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.keras"]


@pytest.mark.parametrize(
    "config, match",
    [
        ("{not json", r"config.json' is not readable JSON"),
        ("[1, 2]", r"holds a list, not a JSON object"),
        (json.dumps({"class_names": ["a", "b"]}), r"lists 2 classes but the model has 3 outputs"),
        (
            json.dumps({"data": {"class_names": "abc"}}),
            r"`class_names` .* must be a list of strings",
        ),
    ],
)
def test_bad_run_config_is_a_clear_error(run_dir, config, match):
    (run_dir / "config.json").write_text(config)
    with pytest.raises(ValueError, match=match):
        export_model(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.keras"]


def run_record():
    """A valid `config.json` written by the recipes' `runs.record.resolved_config`."""
    splits = load_splits("synthetic_shapes", synthetic_size=(20, 10))
    hp = types.SimpleNamespace(
        learning_rate=0.1, weight_decay=5e-4, lr_scale=1.0, steps_per_epoch=2, total_steps=4
    )
    strategy = types.SimpleNamespace(num_replicas_in_sync=1)
    config = Config(dataset="synthetic_shapes", synthetic_train=20, synthetic_test=10)
    return record.resolved_config(config, hp, splits, "float32", strategy, {"workers": 1}, None)


def _drop_config(stored):
    del stored["config"]


def _bad_epochs(stored):
    stored["config"]["epochs"] = -3


def _zero_std(stored):
    stored["preprocessing"]["std"] = [0.0]


@pytest.mark.parametrize(
    "edit, match",
    [
        (_drop_config, r"config\.json': has no 'config' section.*start the run again"),
        (_bad_epochs, r"config\.json': its config does not validate.*epochs"),
        (_zero_std, r"config\.json': preprocessing\.std=0\.0 is not a finite number >= 1e-12"),
    ],
)
def test_an_edited_run_record_is_named_before_any_work(run_dir, edit, match):
    stored = run_record()
    edit(stored)
    record.write_config(run_dir, stored)
    with pytest.raises(ValueError, match=match):
        export_model(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.keras"]


def test_a_run_record_without_preprocessing_cannot_calibrate(run_dir):
    stored = run_record()
    del stored["preprocessing"]
    record.write_config(run_dir, stored)
    with pytest.raises(ValueError, match=r"but the run's config.json does not record its prepro"):
        export_model(run_dir, formats="tflite_int8", batch=np.zeros((4, 8, 8, 4), "float32"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.keras"]


def test_batch_files(tmp_path):
    x = np.ones((3, 8, 8, 4), "float32")
    np.save(tmp_path / "x.npy", x)
    loaded = load_batch(tmp_path / "x.npy")
    assert loaded.real and loaded.description == "given batch x.npy"
    np.testing.assert_array_equal(loaded.inputs, x)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    assert load_batch(tmp_path / "two.npz", batch_key="b").description == "given batch two.npz['b']"
    with pytest.raises(ValueError, match=r"holds arrays \['a', 'b'\] and none is named.*batch_key"):
        load_batch(tmp_path / "two.npz")
    with pytest.raises(ValueError, match=r"`batch_key`='z' is not in .* which holds \['a', 'b'\]"):
        load_batch(tmp_path / "two.npz", batch_key="z")
    with pytest.raises(FileNotFoundError, match=r"`batch`=.*nope.npy' does not exist"):
        load_batch(tmp_path / "nope.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"must be a \.npy or \.npz file"):
        load_batch(tmp_path / "x.csv")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="is not a readable NumPy file"):
        load_batch(tmp_path / "bad.npy")


def test_random_batch_is_seeded_and_labelled_not_real():
    a, b = random_batch((2, 3), batch_size=4, seed=7), random_batch((2, 3), batch_size=4, seed=7)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert a.inputs.shape == (4, 2, 3) and a.inputs.dtype == np.float32
    assert not a.real and a.description.startswith("RANDOM inputs, not real data")
    cast = as_parity_batch(np.ones((2, 2, 3), "uint8"), (2, 3))
    assert cast.inputs.dtype == np.float32 and cast.real

"""LiteRT float32 / int8 and ONNX int8 exports of a WRS model trained under mixed precision."""

import json
import types

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf

import keras_wrs
from keras_wrs.export import (
    TfliteConversionError,
    export_model,
    read_metadata,
    read_tflite_metadata,
)
from keras_wrs.export.formats.litert import load_tflite_runner, quantize
from keras_wrs.recipes.config import Config
from keras_wrs.recipes.data import load_splits, normalize
from keras_wrs.recipes.runs import record

L = keras.layers
ALL = "saved_model,onnx,tflite,tflite_int8,tflite_dynamic,onnx_int8"
# The tests on one trained run share its fixture (20 epochs under mixed_float16,
# which a CPU emulates: about 90 s) and its export to every format; they run with
# the slow checks of CI's stage 2. The default run keeps the int8 tests below on their own small models,
# and exports with parity in test_api.py, test_cli.py and test_models.py.
_EVERY_FORMAT = pytest.mark.slow


def digits_cnn():
    """Conv(3x3, 1->16)-BN-ReLU-Conv(3x3, 16->32)-BN-ReLU-GAP-Dense on 8x8x1 digits."""
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(inp)
    h = L.ReLU()(L.BatchNormalization(momentum=0.9, name="bn")(h))
    h = L.Conv2D(32, 3, padding="same", use_bias=False, name="conv2")(h)
    h = L.ReLU()(L.BatchNormalization(momentum=0.9, name="bn2")(h))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(10, name="head", dtype="float32")(h), name="digits_cnn")


def run_record(splits):
    """`config.json` as `keras-wrs train digits` writes it (`runs.record.resolved_config`)."""
    config = Config(dataset="digits", epochs=20, batch_size=64)
    hp = types.SimpleNamespace(
        learning_rate=0.1, weight_decay=0.0, lr_scale=1.0, steps_per_epoch=23, total_steps=460
    )
    strategy = tf.distribute.get_strategy()
    return record.resolved_config(
        config, hp, splits, "mixed_float16", strategy, {"workers": 1}, {"applied": True}
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A run directory like `keras-wrs train digits` writes: WRS SGD, mixed_float16."""
    splits = load_splits("digits")
    stored = run_record(splits)
    x = normalize(splits.x_train, splits.info)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = digits_cnn()
        optimizer = keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model)
        model.compile(
            optimizer,
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(x, splits.y_train, batch_size=64, epochs=20, verbose=0)
        run = tmp_path_factory.mktemp("digits_run")
        model.save(run / "model.keras")
    finally:
        keras.config.set_dtype_policy("float32")
    record.write_config(run, stored)
    return run


@pytest.fixture(scope="module")
def exported(digits_run):
    return export_model(digits_run, formats=ALL, float16=True)


@_EVERY_FORMAT
def test_every_format_is_written_and_passes_parity_on_the_runs_test_data(digits_run, exported):
    out = digits_run / "export"
    assert sorted(p.name for p in out.iterdir()) == [
        "export.json",
        "model.dynamic.tflite",
        "model.float16.onnx",
        "model.int8.onnx",
        "model.int8.tflite",
        "model.onnx",
        "model.tflite",
        "saved_model",
    ]
    assert not [p for p in digits_run.iterdir() if p.name.startswith(".")]
    report = exported.report
    assert report.passed and report.real_batch and report.n == 256
    assert report.batch.startswith("the run's own test data: digits test split, first 256 of 360")
    rows = {(row.runtime, row.output): row for row in report.rows}
    source = rows[("keras source model as trained (mixed_float16)", "scores")]
    assert source.max_abs > 0 and source.tolerance.atol == 1e-2  # float16 really differs
    for label in ("tflite: LiteRT interpreter", "onnx: onnxruntime CPU (opset 15)"):
        assert rows[(label, "scores")].max_abs <= 1e-4
        assert rows[(label, "scores")].top1_agreement == 1.0
    for label in (
        "tflite int8: LiteRT interpreter",
        "onnx int8 (QDQ): onnxruntime CPU",
        "tflite dynamic-range: LiteRT interpreter",
    ):
        row = rows[(label, "scores")]
        assert row.top1_agreement >= 0.99 and 0 < row.max_abs <= 0.25 * row.scale
        assert row.tolerance.min_top1 == 0.99


@_EVERY_FORMAT
def test_manifest_lists_every_file_with_size_parity_and_calibration(digits_run, exported):
    out = digits_run / "export"
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["kind"] == "keras-wrs export"
    artifacts = manifest["artifacts"]
    assert set(artifacts) == {
        "saved_model",
        "onnx",
        "onnx_float16",
        "tflite",
        "tflite_int8",
        "tflite_dynamic",
        "onnx_int8",
    }
    for entry in artifacts.values():
        path = out / entry["path"]
        size = (
            path.stat().st_size
            if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        )
        assert entry["size"] == size
        assert entry["parity"] and all(row["passed"] for row in entry["parity"])
    calibration = manifest["calibration"]
    assert calibration["examples"] == 256
    assert calibration["source"].startswith(
        "the run's own training data: digits train split, 256 of 1437 drawn with seed 0"
    )
    assert artifacts["onnx_int8"]["quantization"]["calibration"] == calibration
    assert "calibration" not in artifacts["tflite_dynamic"]["quantization"]  # it takes none
    assert artifacts["tflite"]["dynamic_batch"] and artifacts["tflite_int8"]["dynamic_batch"]


@_EVERY_FORMAT
def test_tflite_metadata_matches_onnx_and_int8_io_parameters_are_recorded(exported):
    onnx_meta = read_metadata(exported.files["onnx"])
    for fmt in ("tflite", "tflite_int8", "tflite_dynamic"):
        meta = read_tflite_metadata(exported.files[fmt])
        for key in (
            "class_names",
            "preprocessing",
            "keras_wrs_version",
            "config_hash",
            "input_name",
            "output_name",
            "input_shape",
        ):
            assert meta[key] == onnx_meta[key]
        assert meta["format"] == fmt
    assert onnx_meta["class_names"] == [str(i) for i in range(10)]
    io = read_tflite_metadata(exported.files["tflite_int8"])["input_output"]
    assert io["input"]["dtype"] == io["output"]["dtype"] == "int8"
    assert io["input"]["scale"] > 0 and -128 <= io["input"]["zero_point"] <= 127
    assert (
        read_tflite_metadata(exported.files["tflite"])["input_output"]["input"]["dtype"]
        == "float32"
    )
    int8_onnx = read_metadata(exported.files["onnx_int8"])
    assert int8_onnx["precision"] == "int8" and int8_onnx["quantization"]["qdq_pairs"] > 0
    ops = {node.op_type for node in onnx.load(str(exported.files["onnx_int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


@_EVERY_FORMAT
def test_tflite_files_keep_names_and_a_dynamic_batch(exported):
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
    for fmt in ("tflite", "tflite_int8", "tflite_dynamic"):
        run = load_tflite_runner(exported.files[fmt], "images", "scores")
        assert run(x[:1]).shape == (1, 10) and run(x).shape == (5, 10)


def _tensor_dtypes(path):
    from ai_edge_litert.interpreter import Interpreter

    return {
        str(np.dtype(t["dtype"])) for t in Interpreter(model_path=str(path)).get_tensor_details()
    }


@_EVERY_FORMAT
def test_dynamic_range_file_has_int8_weights_and_float_input_and_output(exported):
    io = read_tflite_metadata(exported.files["tflite_dynamic"])["input_output"]
    assert io["input"]["dtype"] == io["output"]["dtype"] == "float32"
    assert "int8" in _tensor_dtypes(exported.files["tflite_dynamic"])
    assert "int8" not in _tensor_dtypes(exported.files["tflite"])
    sizes = {fmt: exported.files[fmt].stat().st_size for fmt in ("tflite", "tflite_dynamic")}
    assert sizes["tflite_dynamic"] < 0.6 * sizes["tflite"]


def test_int8_input_quantization_by_hand():
    x = np.array([-1.0, 0.0, 0.26, 100.0], np.float32)
    # q = clip(round(x / scale) + zero_point, -128, 127)
    np.testing.assert_array_equal(quantize(x, np.int8, 0.5, -3), [-5, -3, -2, 127])
    np.testing.assert_array_equal(quantize(x, np.float32, 0.0, 0), x)


def test_calibration_and_batch_from_npz_files(tmp_path):
    model = digits_cnn()
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "cal.npz", x=rng.normal(size=(40, 8, 8, 1)).astype("float32"))
    np.savez(tmp_path / "check.npz", x=rng.normal(size=(8, 8, 8, 1)).astype("float32"))
    loose = keras_wrs.export.Tolerance(atol=0.0, rtol=1.0, min_top1=0.0)  # untrained model
    result = export_model(
        model,
        tmp_path / "out",
        formats="tflite_int8,onnx_int8",
        calibration=tmp_path / "cal.npz",
        batch=tmp_path / "check.npz",
        tolerance_int8=loose,
    )
    manifest = json.loads((tmp_path / "out" / "export.json").read_text())
    assert manifest["calibration"] == {"examples": 40, "source": "given file cal.npz['x']"}
    assert sorted(result.files) == ["manifest", "onnx_int8", "tflite_int8"]
    assert not (tmp_path / "out" / "saved_model").exists()  # scratch SavedModel removed
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "calibration, match",
    [
        (np.zeros((4, 8, 8, 3), "float32"), r"shape \(4, 8, 8, 3\); the model takes"),
        (np.zeros((4, 8, 8, 1), "uint8"), r"dtype uint8; it must hold floating-point"),
        (np.zeros((0, 8, 8, 1), "float32"), r"is empty"),
        (np.full((4, 8, 8, 1), np.nan, "float32"), r"contains 256 NaN or infinite"),
    ],
)
def test_bad_calibration_is_refused_before_any_conversion(tmp_path, calibration, match):
    np.save(tmp_path / "cal.npy", calibration)
    batch = np.zeros((4, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=match):
        export_model(
            digits_cnn(),
            tmp_path / "out",
            formats="saved_model,tflite_int8",
            calibration=tmp_path / "cal.npy",
            batch=batch,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.npy"]


def test_quantized_formats_need_real_check_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"checked by top-1 agreement on real examples.*RANDOM"):
        export_model(
            digits_cnn(),
            tmp_path / "out",
            formats="onnx_int8",
            calibration=np.zeros((4, 8, 8, 1), "float32"),
        )
    with pytest.raises(ValueError, match=r"no run config.json naming its data set.*--calibration"):
        export_model(
            digits_cnn(),
            tmp_path / "out",
            formats="tflite_int8",
            batch=np.zeros((4, 8, 8, 1), "float32"),
        )
    assert list(tmp_path.iterdir()) == []


class Wave(L.Layer):
    """cos(x): LiteRT has a float COS kernel but no int8 one."""

    def call(self, x):
        return tf.math.cos(x)


def test_unquantizable_layer_is_named_and_the_other_formats_are_written(tmp_path):
    inp = keras.Input((8, 8, 1))
    h = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, name="conv")(inp))
    model = keras.Model(inp, L.Dense(10, name="head")(Wave(name="wave")(h)), name="wavy")
    x = np.random.default_rng(2).normal(size=(16, 8, 8, 1)).astype("float32")
    loose = keras_wrs.export.Tolerance(atol=0.0, rtol=1.0, min_top1=0.0)  # untrained model
    with pytest.raises(
        TfliteConversionError,
        match=r"cannot quantize .* op COS in layer 'wave' "
        r"\(class Wave.*written to",
    ) as info:
        export_model(
            model, tmp_path / "out", formats=ALL, calibration=x, batch=x, tolerance_int8=loose
        )
    assert info.value.format == "tflite_int8" and info.value.unsupported[0][:3] == (
        "wave",
        "Wave",
        "COS",
    )
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [  # dynamic-range keeps COS in float32
        "export.json",
        "model.dynamic.tflite",
        "model.int8.onnx",
        "model.onnx",
        "model.tflite",
        "saved_model",
    ]
    errors = json.loads((out / "export.json").read_text())["errors"]
    assert list(errors) == ["tflite_int8"] and "COS" in errors["tflite_int8"]


@_EVERY_FORMAT  # the trained run's fixture
def test_int8_calibrated_on_unpreprocessed_images_fails_parity_and_writes_nothing(
    digits_run, tmp_path
):
    from keras_wrs.export import ParityError

    raw = load_splits("digits").x_train[:256].astype("float32")  # 0-16, not (x*r - mean)/std
    with pytest.raises(ParityError, match=r"failed for: tflite int8: LiteRT interpreter"):
        export_model(digits_run, tmp_path / "out", formats="tflite_int8", calibration=raw)
    assert list(tmp_path.iterdir()) == []

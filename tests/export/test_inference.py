"""The float32 copy keeps layer state; Normalization in ONNX; `--overwrite` deletes only exports."""

import json

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

from keras_wrs.export import ParityError, export_model, inference_copy

L = keras.layers
RNG = np.random.default_rng(0)
STATS_DATA = RNG.normal(3.0, 2.0, size=(64, 8, 8, 4)).astype("float32")


def normalized(adapt=True, name="normed"):
    """Normalization (adapted: mean 3, std 2) - Conv - BN - GAP - Dense on 8x8x4."""
    inp = keras.Input((8, 8, 4))
    norm = L.Normalization(name="norm")
    if adapt:
        norm.adapt(STATS_DATA)
    h = L.BatchNormalization(momentum=0.9, name="bn")(L.Conv2D(8, 3, name="conv")(norm(inp)))
    h = L.GlobalAveragePooling2D()(L.ReLU()(h))
    return keras.Model(inp, L.Dense(3, name="head")(h), name=name)


def inputs(n=16, seed=1):
    return np.random.default_rng(seed).normal(3.0, 2.0, size=(n, 8, 8, 4)).astype("float32")


def numpy_twin(model, x):
    """The Normalization step by hand: (x - mean) / sqrt(variance) with the adapted statistics."""
    return (x - STATS_DATA.mean(axis=(0, 1, 2))) / np.sqrt(STATS_DATA.var(axis=(0, 1, 2)))


@keras.saving.register_keras_serializable(package="test_export_defects")
class Shift(L.Layer):
    """Adds an offset set after construction and missing from `get_config`: copies lose it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offset = 0.0

    def call(self, x):
        return x + self.offset


def test_copy_keeps_adapted_normalization_statistics():
    model = normalized()
    copy = inference_copy(model)
    x = inputs()
    np.testing.assert_allclose(copy(x), model(x), atol=1e-6)
    norm_in = keras.Model(copy.inputs, copy.get_layer("norm").output)
    np.testing.assert_allclose(norm_in(x), numpy_twin(model, x), atol=1e-4)


def test_copy_keeps_statistics_of_a_loaded_model(tmp_path):
    normalized().save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    x = inputs()
    np.testing.assert_allclose(inference_copy(loaded)(x), loaded(x), atol=1e-6)


def test_audit_of_stateful_layers_batchnorm_discretization_and_lookup():
    inp = keras.Input((6,))
    bn = L.BatchNormalization(momentum=0.5, name="bn")
    h = bn(inp)
    disc = L.Discretization(num_bins=4, name="disc")
    disc.adapt(RNG.normal(size=(100, 6)).astype("float32"))
    bins = disc(h)
    lookup = L.IntegerLookup(output_mode="one_hot", name="lookup")
    lookup.adapt(np.array([[0], [1], [2], [3]]))
    onehot = lookup(L.Reshape((6, 1))(bins))
    model = keras.Model(inp, L.Dense(3, name="head")(L.Flatten()(onehot)), name="stateful")
    bn.moving_mean.assign(np.full(6, 0.7, "float32"))
    bn.moving_variance.assign(np.full(6, 3.0, "float32"))
    x = RNG.normal(size=(32, 6)).astype("float32")
    copy = inference_copy(model)
    np.testing.assert_array_equal(
        copy.get_layer("bn").moving_mean.numpy(), np.full(6, 0.7, "float32")
    )
    np.testing.assert_array_equal(copy.get_layer("disc").bin_boundaries, disc.bin_boundaries)
    assert copy.get_layer("lookup").get_vocabulary() == lookup.get_vocabulary()
    np.testing.assert_allclose(copy(x), model(x), atol=1e-6)


def test_parity_always_compares_with_the_trained_model(tmp_path):
    result = export_model(normalized(), tmp_path / "out", formats="saved_model", batch=inputs(8))
    first = result.report.rows[0]
    assert first.runtime == "keras source model as trained (float32)" and first.passed
    assert first.max_abs <= 1e-6


def test_a_copy_that_differs_from_its_source_fails_the_export(tmp_path):
    inp = keras.Input((8, 8, 4))
    shift = Shift(name="shift")
    h = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, name="conv")(inp))
    model = keras.Model(inp, L.Dense(3, name="head")(shift(h)), name="shifted")
    shift.offset = 5.0  # state the rebuilt copy cannot know
    with pytest.raises(ParityError, match=r"failed for: keras source model as trained"):
        export_model(model, tmp_path / "out", formats="saved_model", batch=inputs(8))
    assert list(tmp_path.iterdir()) == []


def test_normalization_model_exports_to_onnx_with_one_input(tmp_path):
    model = normalized()
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx", batch=inputs(8))
    assert result.report.passed and not result.errors
    session = ort.InferenceSession(str(result.files["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = inputs(5, seed=7)
    np.testing.assert_allclose(session.run(None, {"images": x})[0], model(x), atol=1e-5)


def test_tensor_left_as_a_graph_input_is_named_by_layer():
    """The live-function conversion keras-wrs used before: the error now names the layer."""
    import tf2onnx

    from keras_wrs.export.errors import OnnxConversionError
    from keras_wrs.export.formats.onnx import check_graph_inputs

    copy = inference_copy(normalized())
    spec = tf.TensorSpec((None, 8, 8, 4), tf.float32, name="images")
    fn = tf.function(lambda x: {"scores": copy(x, training=False)}, input_signature=[spec])
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=15)
    with pytest.raises(
        OnnxConversionError,
        match=r"besides 'images'.*layer 'norm' \(class "
        r"Normalization",
    ):
        check_graph_inputs(proto, copy, "images")


def test_saved_model_is_still_written_when_only_onnx_fails_to_load(tmp_path, monkeypatch):
    """ONNX Runtime refusing the file is an ONNX failure, not the end of the export."""
    from keras_wrs.export.errors import OnnxConversionError
    from keras_wrs.export.formats import onnx as onnx_format

    def refuse(path, input_name):  # what load_onnx_runner raises when ORT cannot load a file
        raise OnnxConversionError(f"ONNX Runtime cannot load {path}", unsupported=[])

    monkeypatch.setattr(onnx_format, "load_onnx_runner", refuse)
    with pytest.raises(OnnxConversionError, match="cannot load.*written to") as info:
        export_model(normalized(), tmp_path / "out", batch=inputs(8))
    assert info.value.result.report.passed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["export.json", "saved_model"]


def test_overwrite_replaces_only_a_keras_wrs_export(tmp_path):
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "todo.txt").write_text("keep me")
    run = tmp_path / "other_run"
    run.mkdir()
    normalized().save(run / "model.keras")
    for target in (plain, run):
        with pytest.raises(FileExistsError, match="is not a keras-wrs export.*will not delete"):
            export_model(
                normalized(), target, formats="saved_model", overwrite=True, batch=inputs(4)
            )
    assert (plain / "todo.txt").read_text() == "keep me"
    assert sorted(p.name for p in run.iterdir()) == ["model.keras"]
    out = tmp_path / "out"
    export_model(normalized(), out, formats="saved_model", batch=inputs(4))
    assert json.loads((out / "export.json").read_text())["kind"] == "keras-wrs export"
    (out / "stale.txt").write_text("from the previous export")
    export_model(normalized(), out, formats="saved_model", overwrite=True, batch=inputs(4))
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "saved_model"]

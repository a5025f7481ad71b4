"""Export of a WRS-trained mixed-precision model to SavedModel and ONNX, and its errors."""

import hashlib
import json
import os

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf

import keras_wrs
from keras_wrs.export import (
    OnnxConversionError,
    ParityError,
    export_model,
    inference_copy,
    read_metadata,
)

L = keras.layers
CLASSES = ["cat", "dog", "bird"]


def conv_bn(name="tiny"):
    """Conv(3x3, 4->8)-BN-ReLU-GAP-Dense on 8x8 inputs."""
    inp = keras.Input((8, 8, 4))
    h = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
    h = L.BatchNormalization(momentum=0.9, name="bn")(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(3, name="head", dtype="float32")(h)
    return keras.Model(inp, out, name=name)


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 4)).astype("float32"), rng.integers(0, 3, size=n)


@keras.saving.register_keras_serializable(package="test_export")
class Noisy(L.Layer):
    """Adds fresh noise on every call, even in inference: no export can match it."""

    def call(self, x):
        return x + tf.random.normal(tf.shape(x))


class Fancy(L.Layer):
    """Uses Lgamma, which tf2onnx cannot convert."""

    def call(self, x):
        return tf.math.lgamma(tf.abs(x) + 1.0)


def with_layer(layer):
    inp = keras.Input((8, 8, 4))
    h = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    h = layer(L.GlobalAveragePooling2D()(h))
    return keras.Model(inp, L.Dense(3, name="head")(h), name="custom")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as `keras-wrs train` writes it, trained with WRS SGD under mixed_float16."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = conv_bn()
        optimizer = keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(*data(), batch_size=16, epochs=2, verbose=0)
        assert optimizer.iterations.numpy() == 8
        norms = np.linalg.norm(model.get_layer("conv").kernel.numpy().reshape(-1, 8), axis=0)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # the WRS optimizer did rescale
        run = tmp_path_factory.mktemp("run")
        model.save(run / "model.keras")
    finally:
        keras.config.set_dtype_policy("float32")
    config = {"dataset": {"name": "toy", "class_names": CLASSES}, "preprocessing": {"scale": 1.0}}
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture(scope="module")
def exported(run_dir):
    return export_model(run_dir, float16=True)


def test_inference_copy_is_float32_uncompiled_with_the_trained_weights(run_dir):
    keras.config.set_dtype_policy("mixed_float16")
    model = keras.saving.load_model(run_dir / "model.keras")
    copy = inference_copy(model)
    assert keras.config.dtype_policy().name == "mixed_float16"  # global policy restored
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert getattr(copy, "optimizer", None) is None and model.optimizer is not None
    assert not copy.compiled
    for src, dst in zip(model.weights, copy.weights, strict=True):
        np.testing.assert_array_equal(src.numpy(), dst.numpy())
    x, _ = data(8, seed=1)
    out = copy(x, training=False)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out, np.asarray(model(x, training=False), "float32"), atol=5e-3)


def test_export_of_a_run_dir_writes_both_formats_and_passes_parity(run_dir, exported):
    out = run_dir / "export"
    assert exported.output == out
    assert sorted(p.name for p in out.iterdir()) == [
        "export.json",
        "model.float16.onnx",
        "model.onnx",
        "saved_model",
    ]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no staging left
    report = exported.report
    assert report.passed and not report.real_batch and "RANDOM" in report.batch
    rows = {row.runtime: row for row in report.rows}
    assert set(rows) == {
        "keras source model as trained (mixed_float16)",
        "saved_model: tf.saved_model.load",
        "saved_model: keras TFSMLayer",
        "onnx: onnxruntime CPU (opset 15)",
        "onnx float16: onnxruntime CPU",
    }
    assert rows["saved_model: tf.saved_model.load"].max_abs <= 1e-6
    assert rows["onnx: onnxruntime CPU (opset 15)"].max_abs <= 1e-5
    assert rows["onnx: onnxruntime CPU (opset 15)"].top1_agreement == 1.0
    assert (
        rows["keras source model as trained (mixed_float16)"].max_abs > 0
    )  # float16 really differs
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["parity"]["passed"] and manifest["opset"] == 15
    assert manifest["files"]["onnx"] == "model.onnx"
    assert manifest["sizes"]["onnx"] == (out / "model.onnx").stat().st_size
    summary = exported.summary()
    assert str(out / "model.onnx") in summary and "KiB" in summary and "PASS" in summary


def test_onnx_float32_graph_is_folded_without_batchnorm_or_cast(exported):
    proto = onnx.load(str(exported.files["onnx"]))
    ops = {node.op_type for node in proto.graph.node}
    assert "Conv" in ops
    assert not ops & {"BatchNormalization", "Cast", "Mul", "Sqrt", "Sub"}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    assert {i.data_type for i in proto.graph.initializer} & floats == {onnx.TensorProto.FLOAT}
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain == ""] == [("", 15)]


def test_onnx_names_dynamic_batch_and_metadata(run_dir, exported):
    proto = onnx.load(str(exported.files["onnx"]))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("images", "scores")

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert dims(inp) == ["batch", 8, 8, 4] and dims(out) == ["batch", 3]
    meta = read_metadata(exported.files["onnx"])
    config = json.loads((run_dir / "config.json").read_text())
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert meta["config_hash"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert meta["class_names"] == CLASSES and meta["dataset"] == "toy"
    assert meta["input_shape"] == [None, 8, 8, 4] and meta["opset"] == 15
    assert meta["preprocessing"] == {"outside_model": {"scale": 1.0}, "inside_model": []}
    assert meta["keras_wrs_version"] == keras_wrs.__version__
    session = ort.InferenceSession(str(exported.files["onnx"]), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        assert session.run(None, {"images": data(n)[0]})[0].shape == (n, 3)


def test_float16_onnx_keeps_float32_io(exported):
    proto = onnx.load(str(exported.files["onnx_float16"]))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in {init.data_type for init in proto.graph.initializer}
    assert read_metadata(exported.files["onnx_float16"])["precision"] == "float16"


def test_saved_model_signature_reloads_and_holds_no_training_state(run_dir, exported):
    path = str(exported.files["saved_model"])
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.name == "images" and spec.shape.as_list() == [None, 8, 8, 4]
    x, _ = data(5, seed=2)
    via_tf = signature(images=tf.constant(x))["scores"].numpy()
    via_keras = keras.layers.TFSMLayer(path, call_endpoint="serve")(x)["scores"]
    np.testing.assert_array_equal(via_tf, np.asarray(via_keras))
    copy = inference_copy(keras.saving.load_model(run_dir / "model.keras", compile=False))
    np.testing.assert_allclose(via_tf, copy(x, training=False), atol=1e-6)
    # conv kernel + BN (4) + head (2): no optimizer slots, iterations or WRS state
    assert len(loaded.variables) == len(copy.weights) == 7


def test_given_npz_batch_is_reported_real_and_check_only_writes_nothing(run_dir, tmp_path):
    np.savez(tmp_path / "batch.npz", x=data(6, seed=3)[0], y=np.zeros(6))
    before = sorted(os.listdir(tmp_path))
    keras.config.set_dtype_policy("mixed_float16")  # as in the process that trained the model
    result = export_model(
        run_dir,
        tmp_path / "out",
        batch=tmp_path / "batch.npz",
        formats="saved_model,onnx",
        check_only=True,
    )
    assert keras.config.dtype_policy().name == "mixed_float16"
    assert result.output is None and sorted(os.listdir(tmp_path)) == before
    assert result.report.passed and result.report.real_batch and result.report.n == 6
    assert {row.runtime for row in result.report.rows} >= {"saved_model: keras TFSMLayer"}
    assert result.report.batch == "given batch batch.npz['x']"


def test_augmentation_and_dropout_in_the_model_stay_out_of_serving(tmp_path):
    inp = keras.Input((8, 8, 4))
    h = L.RandomFlip(seed=1)(L.Rescaling(0.5, name="scale")(inp))
    h = L.GlobalAveragePooling2D()(L.BatchNormalization()(L.Conv2D(8, 3)(h)))
    model = keras.Model(inp, L.Dense(3)(L.Dropout(0.5)(h)), name="augmented")
    result = export_model(model, tmp_path / "out")  # leaked randomness would fail parity
    assert result.report.passed and len(result.report.rows) == 4  # trained model + 3 runtimes
    assert result.metadata["preprocessing"]["inside_model"] == [
        {"layer": "scale", "class": "Rescaling"}
    ]
    ops = {node.op_type for node in onnx.load(str(result.files["onnx"])).graph.node}
    assert not {op for op in ops if "Random" in op}


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_model_file_is_a_clear_error(run_dir, tmp_path, damage):
    bad = tmp_path / "model.keras"
    raw = (run_dir / "model.keras").read_bytes()
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a zip" * 100)
    with pytest.raises(ValueError, match="could not be loaded as a Keras model.*corrupted"):
        export_model(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_never_built_model_is_a_clear_error(tmp_path):
    model = keras.Sequential([L.Dense(3)])
    with pytest.raises(ValueError, match="never been built.*keras.Input"):
        export_model(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_subclassed_model_is_a_clear_error(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(TypeError, match="subclassed model.*keras.Input"):
        export_model(net, tmp_path / "out")


def test_multi_output_model_is_a_clear_error(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, [L.Dense(2)(inp), L.Dense(3)(inp)])
    with pytest.raises(ValueError, match="2 outputs.*one head at a time"):
        export_model(model, tmp_path / "out")


def test_existing_target_is_refused_and_untouched_then_replaced_on_request(run_dir, tmp_path):
    out = tmp_path / "out"
    export_model(run_dir, out, formats="onnx")
    (out / "marker").write_text("previous export")
    with pytest.raises(FileExistsError, match="already exists.*overwrite=True"):
        export_model(run_dir, out, formats="saved_model")
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "marker", "model.onnx"]
    export_model(run_dir, out, formats="saved_model", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "saved_model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, staging or backup


def test_unwritable_targets_are_clear_errors(run_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not an export directory"):
        export_model(run_dir, tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="parent .* is not an existing directory"):
        export_model(run_dir, tmp_path / "file" / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_parent_is_a_clear_error(run_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="is not writable"):
            export_model(run_dir, locked / "out")
    finally:
        locked.chmod(0o700)


def test_parity_failure_raises_writes_nothing_and_keeps_the_old_export(tmp_path):
    model = with_layer(Noisy(name="noisy"))
    out = tmp_path / "out"
    export_model(with_layer(L.ReLU(name="relu")), out, formats="onnx")
    (out / "marker").write_text("previous export")
    with pytest.raises(
        ParityError, match="for: keras source.*saved_model.*Nothing was written.*untouched"
    ):
        export_model(model, out, formats="saved_model", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "marker", "model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unconvertible_layer_names_layer_and_op_and_saved_model_still_exported(tmp_path):
    model = with_layer(Fancy(name="fancy"))
    with pytest.raises(
        OnnxConversionError,
        match=r"op 'Lgamma' in layer 'fancy' \(class Fancy"
        r".*written to",
    ) as info:
        export_model(model, tmp_path / "out")
    assert info.value.unsupported[0][:3] == ("fancy", "Fancy", "Lgamma")
    out = tmp_path / "out"
    assert info.value.result.output == out and info.value.result.report.passed
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "saved_model"]
    assert "Lgamma" in json.loads((out / "export.json").read_text())["errors"]["onnx"]
    signature = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    assert signature(images=tf.zeros((2, 8, 8, 4)))["scores"].shape == (2, 3)


def test_unconvertible_layer_with_onnx_only_writes_nothing(tmp_path):
    with pytest.raises(OnnxConversionError, match="layer 'fancy'.*Nothing was written"):
        export_model(with_layer(Fancy(name="fancy")), tmp_path / "out", formats="onnx")
    assert list(tmp_path.iterdir()) == []

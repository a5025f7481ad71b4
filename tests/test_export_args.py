"""Export arguments, parity arithmetic and parity batches: every error names the fix."""

import json

import keras
import numpy as np
import pytest

from keras_wrs.export import ParityBatch, Tolerance, export_model, load_batch, random_batch
from keras_wrs.export.batch import as_parity_batch
from keras_wrs.export.parity import compare, run_parity

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
        ({"formats": "tflite16"}, r"`formats` must name one or more of saved_model, onnx, tflite"
                                  r", tflite_int8, tflite_dynamic, onnx_int8.*tflite16"),
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
        ({"batch": np.zeros((2, 8, 8, 3))},
         r"shape \(2, 8, 8, 3\), the model takes \(n,\) \+ \(8, 8, 4\)"),
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
        (json.dumps({"data": {"class_names": "abc"}}),
         r"`class_names` .* must be a list of strings"),
    ],
)
def test_bad_run_config_is_a_clear_error(run_dir, config, match):
    (run_dir / "config.json").write_text(config)
    with pytest.raises(ValueError, match=match):
        export_model(run_dir)
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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"atol": -1.0, "rtol": 0.0}, r"`atol` must be a number >= 0.*atol=-1.0"),
        ({"atol": 0.0, "rtol": "x"}, r"`rtol` must be a number >= 0.*rtol='x'"),
        ({"atol": 0.0, "rtol": float("nan")}, r"`rtol` must be a number >= 0"),
        ({"atol": 0.0, "rtol": 0.0, "min_top1": 1.5}, r"`min_top1` must be in \[0, 1\]"),
    ],
)
def test_bad_tolerances(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Tolerance(**kwargs)


def test_compare_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = np.array([[1.0, 0.5], [0.0, 1.0]])  # one element off by 0.5, arg-max unchanged
    row = compare("rt", "y", out, ref, Tolerance(atol=0.5, rtol=0.0))
    assert (row.max_abs, row.mean_abs, row.top1_agreement, row.passed) == (0.5, 0.125, 1.0, True)
    assert not compare("rt", "y", out, ref, Tolerance(atol=0.4, rtol=0.0)).passed
    # rtol scales with the output's size max|ref|: 0.5 <= 0.1 + 0.4 * 1 passes, 0.1 + 0.3 * 1 not
    assert compare("rt", "y", out, ref, Tolerance(atol=0.1, rtol=0.4)).passed
    assert not compare("rt", "y", out, ref, Tolerance(atol=0.1, rtol=0.3)).passed
    assert compare("rt", "y", 10 * out, 10 * ref, Tolerance(atol=0.0, rtol=0.5)).passed
    flipped = np.array([[0.0, 1.0], [0.0, 1.0]])
    row = compare("rt", "y", flipped, ref, Tolerance(atol=1.0, rtol=0.0))
    assert row.top1_agreement == 0.5 and not row.passed
    assert compare("rt", "y", flipped, ref, Tolerance(atol=1.0, rtol=0.0, min_top1=None)).passed
    nan = np.array([[np.nan, 0.0], [0.0, 1.0]])
    assert not compare("rt", "y", nan, ref, Tolerance(atol=1e9, rtol=0.0)).passed
    row = compare("rt", "y", ref[:1], ref, Tolerance(atol=1e9, rtol=0.0))
    assert not row.passed and row.max_abs == float("inf")


def test_report_table_names_batch_runtimes_and_verdicts():
    batch = ParityBatch(np.arange(6, dtype="float32").reshape(3, 2), "given array", real=True)
    runtimes = [("same", lambda x: x, Tolerance(0.0, 0.0)),
                ("shifted", lambda x: x + 1.0, Tolerance(0.5, 0.0))]
    report = run_parity(lambda x: x, runtimes, batch, "y", "numpy")
    assert not report.passed and [r.runtime for r in report.failures()] == ["shifted"]
    table = report.table()
    assert "Parity vs numpy on given array (n=3)" in table
    assert "PASS" in table.splitlines()[2] and "FAIL" in table.splitlines()[3]
    assert json.loads(json.dumps(report.as_dict()))["passed"] is False


def softmax32(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_logit_differences_equal_logits_minus_the_top_logit():
    from keras_wrs.export.parity import is_probability, logit_differences

    z = np.random.default_rng(0).normal(scale=4.0, size=(6, 5))
    top = np.argmax(z, axis=1)
    expected = z - z[np.arange(6), top][:, None]  # the NumPy twin: z_k - z_top
    np.testing.assert_allclose(logit_differences(softmax32(z), top), expected, atol=1e-5)
    assert is_probability(softmax32(z)) and not is_probability(z)
    under = logit_differences(np.array([[1.0, 1e-31]]), np.array([0]))
    assert under[0, 0] == 0 and np.isnan(under[0, 1])  # an underflowed entry carries nothing


def test_saturated_softmax_hides_an_error_that_the_logits_row_catches():
    from keras_wrs.export.parity import saturated_fraction

    z = np.array([[30.0, 0.0, -5.0], [1.0, 0.0, -1.0]])
    shifted = z + np.array([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    ref, out = softmax32(z), softmax32(shifted)
    assert np.abs(ref - out).max() < 1e-5 and saturated_fraction(ref) == 0.5
    batch = ParityBatch(z.astype("float32"), "given array", real=True)
    report = run_parity(lambda x: softmax32(x), [("shifted", lambda x: out, Tolerance(1e-5, 1e-4))],
                        batch, "y", "ref")
    scores, logits = report.rows
    assert scores.passed and scores.output == "y"
    assert not logits.passed and logits.output == "y (logits)"
    assert logits.max_abs == pytest.approx(0.5, abs=1e-4)
    assert any("50% of the reference outputs are saturated" in w for w in report.warnings)
    assert "saturated" in report.table()


def test_quantized_rows_skip_logits_and_pass_on_top1_agreement():
    from keras_wrs.export.parity import INT8

    rng = np.random.default_rng(3)
    z = rng.normal(scale=3.0, size=(200, 4))
    ref = softmax32(z)
    flipped = ref.copy()
    flipped[:3] = ref[:3, ::-1]  # 3 of 200 examples change class: 98.5% < 99%
    batch = ParityBatch(z.astype("float32"), "given array", real=True)
    report = run_parity(lambda x: softmax32(x), [("int8", lambda x: flipped, INT8, False)],
                        batch, "y", "ref")
    (row,) = report.rows
    assert row.top1_agreement == pytest.approx(0.985) and not row.passed
    flipped[2] = ref[2]  # 2 of 200 flips: exactly the 99% threshold
    report = run_parity(lambda x: softmax32(x), [("int8", lambda x: flipped, INT8, False)],
                        batch, "y", "ref")
    assert report.rows[0].top1_agreement == pytest.approx(0.99)


def test_logits_row_ignores_noise_near_underflow_but_not_a_dropped_probability():
    from keras_wrs.export.parity import compare_logits

    ref = np.array([[1.0, 2e-35, 1e-10]])
    tol = Tolerance(1e-5, 1e-4)
    near_underflow = np.array([[1.0, 1e-35, 1e-10]])  # both below 1e-30: no logit information
    assert compare_logits("rt", "y", near_underflow, ref, tol).passed
    dropped = np.array([[1.0, 2e-35, 1e-31]])  # 1e-10 became < 1e-30: a real error
    row = compare_logits("rt", "y", dropped, ref, tol)
    assert not row.passed and row.max_abs == float("inf")

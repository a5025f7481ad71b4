"""Parity arithmetic: tolerances, the element-wise and top-1 rules, logits rows, the report."""

import json

import numpy as np
import pytest

from keras_wrs.export import INT8, ParityBatch, Tolerance
from keras_wrs.export.parity import (
    compare,
    compare_logits,
    is_probability,
    logit_differences,
    run_parity,
    saturated_fraction,
)


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
    runtimes = [
        ("same", lambda x: x, Tolerance(0.0, 0.0)),
        ("shifted", lambda x: x + 1.0, Tolerance(0.5, 0.0)),
    ]
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
    z = np.random.default_rng(0).normal(scale=4.0, size=(6, 5))
    top = np.argmax(z, axis=1)
    expected = z - z[np.arange(6), top][:, None]  # the NumPy twin: z_k - z_top
    np.testing.assert_allclose(logit_differences(softmax32(z), top), expected, atol=1e-5)
    assert is_probability(softmax32(z)) and not is_probability(z)
    under = logit_differences(np.array([[1.0, 1e-31]]), np.array([0]))
    assert under[0, 0] == 0 and np.isnan(under[0, 1])  # an underflowed entry carries nothing


def test_saturated_softmax_hides_an_error_that_the_logits_row_catches():
    z = np.array([[30.0, 0.0, -5.0], [1.0, 0.0, -1.0]])
    shifted = z + np.array([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    ref, out = softmax32(z), softmax32(shifted)
    assert np.abs(ref - out).max() < 1e-5 and saturated_fraction(ref) == 0.5
    batch = ParityBatch(z.astype("float32"), "given array", real=True)
    report = run_parity(
        lambda x: softmax32(x),
        [("shifted", lambda x: out, Tolerance(1e-5, 1e-4))],
        batch,
        "y",
        "ref",
    )
    scores, logits = report.rows
    assert scores.passed and scores.output == "y"
    assert not logits.passed and logits.output == "y (logits)"
    assert logits.max_abs == pytest.approx(0.5, abs=1e-4)
    assert any("50% of the reference outputs are saturated" in w for w in report.warnings)
    assert "saturated" in report.table()


def test_quantized_rows_skip_logits_and_pass_on_top1_agreement():
    rng = np.random.default_rng(3)
    z = rng.normal(scale=3.0, size=(200, 4))
    ref = softmax32(z)
    flipped = ref.copy()
    flipped[:3] = ref[:3, ::-1]  # 3 of 200 examples change class: 98.5% < 99%
    batch = ParityBatch(z.astype("float32"), "given array", real=True)
    report = run_parity(
        lambda x: softmax32(x), [("int8", lambda x: flipped, INT8, False)], batch, "y", "ref"
    )
    (row,) = report.rows
    assert row.top1_agreement == pytest.approx(0.985) and not row.passed
    flipped[2] = ref[2]  # 2 of 200 flips: exactly the 99% threshold
    report = run_parity(
        lambda x: softmax32(x), [("int8", lambda x: flipped, INT8, False)], batch, "y", "ref"
    )
    assert report.rows[0].top1_agreement == pytest.approx(0.99)


def test_logits_row_ignores_noise_near_underflow_but_not_a_dropped_probability():
    ref = np.array([[1.0, 2e-35, 1e-10]])
    tol = Tolerance(1e-5, 1e-4)
    near_underflow = np.array([[1.0, 1e-35, 1e-10]])  # both below 1e-30: no logit information
    assert compare_logits("rt", "y", near_underflow, ref, tol).passed
    dropped = np.array([[1.0, 2e-35, 1e-31]])  # 1e-10 became < 1e-30: a real error
    row = compare_logits("rt", "y", dropped, ref, tol)
    assert not row.passed and row.max_abs == float("inf")

"""`verify_scale_invariance`: verdicts against the brute-force twin, nested outputs, cost."""

import keras
import numpy as np
import pytest
from support.invariance import brute_force_invariant
from support.nets import conv_bn

import keras_wrs

L = keras.layers


def _batch(shape, n=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


def _verified(model, x):
    report = keras_wrs.verify_scale_invariance(model, x, variables="all")
    return {r.path for r in report.results if r.invariant}


def test_verifier_flags_wrong_selection():
    m = conv_bn()
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 4)).astype("float32")
    report = keras_wrs.verify_scale_invariance(m, x, variables=[m.get_layer("head").kernel])
    assert not report.ok and report.failures[0].path == "head/kernel"
    assert "NO" in str(report)
    before = [v.numpy() for v in m.variables]
    assert keras_wrs.verify_scale_invariance(m, x).ok
    for b, v in zip(before, m.variables, strict=True):  # the model's state is never written
        np.testing.assert_array_equal(b, v.numpy())


def test_verifier_runs_stochastic_layers_as_fit_does_without_changing_them():
    inp = keras.Input((8, 8, 4))
    h = L.Conv2D(4, 3, padding="same", name="c")(inp)
    h = L.SpatialDropout2D(0.5, name="sd")(L.BatchNormalization()(h))
    h = L.GaussianNoise(0.3, name="noise")(h)
    noisy = L.GaussianNoise(0.3, name="noise_before_bn")(
        L.Conv2D(4, 3, padding="same", name="n")(inp)
    )
    h = L.Concatenate()([h, L.BatchNormalization()(noisy)])
    m = keras.Model(
        inp, L.Dense(2, name="head")(L.Dropout(0.5, name="drop")(L.GlobalAveragePooling2D()(h)))
    )
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 4)).astype("float32")
    before = [v.numpy() for v in m.variables]
    report = keras_wrs.verify_scale_invariance(m, x, variables="all")
    # Noise added before BatchNorm does not scale with the filter.
    assert {r.path: r.invariant for r in report.results} == {
        "c/kernel": True,
        "n/kernel": False,
        "head/kernel": False,
    }
    assert str(report) == str(keras_wrs.verify_scale_invariance(m, x, variables="all"))
    assert (m.get_layer("sd").rate, m.get_layer("noise").stddev, m.get_layer("drop").rate) == (
        0.5,
        0.3,
        0.5,
    )
    for b, v in zip(before, m.variables, strict=True):  # seeds and weights untouched
        np.testing.assert_array_equal(b, v.numpy())


class _Counter(L.Layer):
    """The identity, counting its runs (one per forward pass of the model).

    On JAX the check runs compiled functions, whose Python runs once per
    trace; a debug callback runs at every execution.
    """

    calls = 0

    @staticmethod
    def _tick():
        _Counter.calls += 1

    def call(self, x):
        if keras.backend.backend() == "jax":
            import jax

            jax.debug.callback(_Counter._tick)
        else:
            _Counter._tick()
        return x


def _deep(blocks):
    inp = keras.Input((8, 8, 4))
    h = _Counter()(inp)
    for i in range(blocks):
        h = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name=f"c{i}")(h)))
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))


def test_cost_is_a_few_passes_whatever_the_number_of_kernels():
    x = _batch((8, 8, 4))
    passes = []
    for blocks in (2, 12):
        m = _deep(blocks)
        _Counter.calls = 0
        report = keras_wrs.verify_scale_invariance(m, x, variables="all")
        passes.append(_Counter.calls)
        assert len(report.results) == blocks + 1 and len(report.failures) == 1
    # A backward pass at each of two test points, and at the first two the
    # outputs and one finite check of the group: 6 passes for 3 or 13 kernels.
    assert passes == [6, 6]


def test_dict_list_and_nested_outputs():
    inp = keras.Input((8, 8, 4))
    a = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name="a")(inp))
    b = L.Conv2D(4, 3, padding="same", name="b")(inp)  # reaches an output unnormalized
    c = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name="c")(inp))
    pooled = L.GlobalAveragePooling2D()
    outputs = {
        "logits": L.Dense(2, name="head")(pooled(a)),
        "maps": [b, {"normalized": c, "argmax": keras.ops.argmax(c, axis=-1)}],
    }
    m = keras.Model(inp, outputs)
    x = _batch((8, 8, 4))
    assert _verified(m, x) == brute_force_invariant(m, x) == {"a/kernel", "c/kernel"}
    assert {s.path for s in keras_wrs.select_scale_invariant(m)} == {"a/kernel", "c/kernel"}


def test_verdicts_are_named_in_the_table():
    m = conv_bn()
    report = keras_wrs.verify_scale_invariance(m, _batch((8, 8, 4)), variables="all")
    assert [(r.path, r.verdict) for r in report.results] == [
        ("c1/kernel", "invariant"),
        ("c2/kernel", "invariant"),
        ("head/kernel", "varies"),
    ]
    lines = str(report).splitlines()
    assert lines[0].split()[:4] == ["path", "|cos(w,", "grad)|", "relative"]
    assert lines[3].endswith("NO: a filter's radial derivative is not zero")
    assert report.results[0].cosine < 1e-5 and report.results[2].cosine > 1e-2


def test_errors():
    with pytest.raises(ValueError, match="'unbuilt' is not built"):
        keras_wrs.verify_scale_invariance(
            keras.Sequential([L.Dense(2)], name="unbuilt"), np.zeros((2, 2))
        )
    with pytest.raises(
        ValueError,
        match="`variables` must be None, \"all\" or a list of kernels. Received: variables='some'",
    ):
        keras_wrs.verify_scale_invariance(conv_bn(), variables="some")

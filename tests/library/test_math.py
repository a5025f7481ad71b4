"""keras_wrs.math against NumPy twins written from the formulas."""

import numpy as np
import pytest
from keras import ops

from keras_wrs import _backend
from keras_wrs import math as wmath

RNG = np.random.default_rng(0)


@pytest.fixture
def float64():
    """float64 on every backend (JAX computes it only in x64 mode), as `SpanNoise` does."""
    with _backend.float64_scope("float64"):
        yield


def np_norms(w, axes):
    return np.sqrt(np.sum(np.asarray(w, np.float64) ** 2, axis=tuple(axes), keepdims=True))


@pytest.mark.parametrize(
    "ndim, channel_axes, granularity, expected",
    [
        (4, (-1,), "filter", (0, 1, 2)),
        (4, (-2,), "filter", (0, 1, 3)),
        (4, (-2, -1), "filter", (0, 1)),
        (2, (-1,), "filter", (0,)),
        (4, (-1,), "layer", (0, 1, 2, 3)),
    ],
)
def test_reduction_axes(ndim, channel_axes, granularity, expected):
    assert wmath.reduction_axes(ndim, channel_axes, granularity) == expected


def test_reduction_axes_rejects_unknown_granularity():
    with pytest.raises(
        ValueError, match=r"`granularity` must be one of .*Received: granularity='channel'"
    ):
        wmath.reduction_axes(4, (-1,), "channel")


def test_filter_norms_and_rescale_match_numpy():
    w = RNG.normal(size=(3, 3, 4, 8)).astype("float32")
    axes = (0, 1, 2)
    np.testing.assert_allclose(wmath.filter_norms(w, axes), np_norms(w, axes), rtol=1e-6)
    target = RNG.uniform(0.5, 2.0, size=(1, 1, 1, 8)).astype("float32")
    out = ops.convert_to_numpy(wmath.rescale(w, target, axes))
    np.testing.assert_allclose(out, w / np_norms(w, axes) * target, rtol=1e-5)


def test_rescale_leaves_zero_filter_zero():
    w = RNG.normal(size=(5, 3)).astype("float32")
    w[:, 1] = 0
    out = ops.convert_to_numpy(wmath.rescale(w, 1.0, (0,)))
    assert np.all(out[:, 1] == 0) and np.all(np.isfinite(out))
    np.testing.assert_allclose(np_norms(out, (0,))[0, [0, 2]], 1.0, rtol=1e-6)


def test_angle_is_arccos_of_normalized_dot():
    a = RNG.normal(size=(3, 3, 4, 8))
    b = a + 0.3 * RNG.normal(size=a.shape)
    axes = (0, 1, 2)
    cos = np.sum(a * b, axis=axes) / (
        np.linalg.norm(a.reshape(-1, 8), axis=0) * np.linalg.norm(b.reshape(-1, 8), axis=0)
    )
    got = ops.convert_to_numpy(wmath.angle(a.astype("float32"), b.astype("float32"), axes)).reshape(
        -1
    )
    np.testing.assert_allclose(got, np.arccos(cos), rtol=1e-5)
    assert got.min() > 0.05  # the test compares real rotations, not zeros


@pytest.mark.parametrize("size", [1e-4, 1e-3, 2e-2])
def test_angle_of_one_small_step_is_accurate_in_float32(size):
    # An optimizer step turns a filter by 1e-4-1e-1 rad. Measured over 20 draws:
    # this formula within 1.2e-4 (relative) at 1e-4 rad and 7e-7 at 2e-2; the arccos
    # of the float32 cosine was off by 860% at 1e-4 rad, 100% at 1e-3, 0.15% at 2e-2.
    a = RNG.normal(size=(3, 3, 16, 4))
    b = a + size * np.linalg.norm(a.reshape(-1, 4), axis=0) / 12 * RNG.normal(size=a.shape)
    ua, ub = (x.reshape(-1, 4) / np.linalg.norm(x.reshape(-1, 4), axis=0) for x in (a, b))
    want = np.arctan2(  # float64, from the cross and dot terms: exact here
        np.sqrt(np.maximum(np.sum(ua**2, 0) * np.sum(ub**2, 0) - np.sum(ua * ub, 0) ** 2, 0)),
        np.sum(ua * ub, 0),
    )
    got = ops.convert_to_numpy(wmath.angle(a.astype("float32"), b.astype("float32"), (0, 1, 2)))
    np.testing.assert_allclose(got.reshape(-1), want, rtol=5e-4)


def test_angle_zero_filter_is_zero_and_opposite_is_pi():
    a = RNG.normal(size=(6, 2)).astype("float32")
    b = a.copy()
    b[:, 0] = 0
    b[:, 1] = -a[:, 1]
    got = ops.convert_to_numpy(wmath.angle(a, b, (0,))).reshape(-1)
    np.testing.assert_allclose(got, [0.0, np.pi], atol=1e-3)


def test_radial_tangential_matches_numpy_and_reassembles():
    w = RNG.normal(size=(9, 5))
    delta = 0.1 * RNG.normal(size=w.shape)
    radial, tangential = (
        ops.convert_to_numpy(t).reshape(-1)
        for t in wmath.radial_tangential(delta.astype("float32"), w.astype("float32"), (0,))
    )
    unit = w / np.linalg.norm(w, axis=0)
    r = np.sum(delta * unit, axis=0)
    t = np.linalg.norm(delta - r * unit, axis=0)
    np.testing.assert_allclose(radial, r, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tangential, t, rtol=1e-4)
    np.testing.assert_allclose(radial**2 + tangential**2, np.sum(delta**2, axis=0), rtol=1e-4)


def test_effective_learning_rate_powers():
    norms = np.array([0.5, 1.0, 2.0], "float32")
    for p in (0, 1, 2):
        np.testing.assert_allclose(
            wmath.effective_learning_rate(0.1, norms, p), 0.1 / norms**p, rtol=1e-6
        )


def test_kernel_matrix_matches_layer_output():
    import keras

    layer = keras.layers.Conv2D(6, 3, padding="valid")
    x = RNG.normal(size=(1, 3, 3, 4)).astype("float32")
    y = ops.convert_to_numpy(layer(x)).reshape(-1) - ops.convert_to_numpy(layer.bias)
    w2d = ops.convert_to_numpy(wmath.kernel_matrix(layer.kernel, (-1,)))
    # A 3x3 input and valid padding: one patch, the input flattened in (h, w, c) order.
    np.testing.assert_allclose(x.reshape(-1) @ w2d, y, rtol=1e-5, atol=1e-6)


def test_kernel_matrix_rejects_other_channel_axes():
    with pytest.raises(ValueError, match=r"channel_axes=\(-2,\)"):
        wmath.kernel_matrix(np.zeros((3, 3, 8, 4)), (-2,))


@pytest.mark.usefixtures("float64")
def test_span_basis_and_project_match_svd():
    basis = np.linalg.qr(RNG.normal(size=(12, 4)))[0]
    x = RNG.normal(size=(50, 4)) @ basis.T  # 50 vectors in a 4-dim subspace of R^12
    span, comp, rank = wmath.span_basis(wmath.gram(x), 1e-9)
    assert int(rank) == 4
    u = np.linalg.svd(x.T, full_matrices=False)[0][:, :4]  # twin: left singular vectors
    w = RNG.normal(size=(12, 3))
    par = ops.convert_to_numpy(wmath.project(w, span))
    perp = ops.convert_to_numpy(wmath.project(w, comp))
    np.testing.assert_allclose(par, u @ (u.T @ w), atol=1e-10)
    np.testing.assert_allclose(perp, w - u @ (u.T @ w), atol=1e-10)

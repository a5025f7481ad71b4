"""Span and weight noise: im2col, Gram spans, randomized range finder against explicit twins."""

import re

import keras
import numpy as np
import pytest
from keras import ops
from support.twins import np_noise, np_patches

from keras_wrs import _backend
from keras_wrs import math as wmath
from keras_wrs.dynamics import span as wspan

L = keras.layers
RNG = np.random.default_rng(0)


@pytest.fixture
def float64():
    """float64 on every backend (JAX computes it only in x64 mode), as `SpanNoise` does."""
    with _backend.float64_scope("float64"):
        yield


CONVS = [
    (L.Conv2D, dict(kernel_size=3, padding="same"), (2, 6, 6, 3)),
    (L.Conv2D, dict(kernel_size=(3, 2), strides=2, padding="valid"), (2, 7, 6, 3)),
    (L.Conv2D, dict(kernel_size=3, padding="same", dilation_rate=2), (2, 6, 6, 2)),
    (L.Conv1D, dict(kernel_size=3, padding="causal", dilation_rate=2), (2, 9, 3)),
    (L.Conv1D, dict(kernel_size=2, strides=3, padding="same"), (2, 10, 3)),
    (L.Conv3D, dict(kernel_size=2, padding="valid"), (1, 3, 4, 3, 2)),
]


@pytest.mark.parametrize("cls, kwargs, shape", CONVS)
def test_conv_patches_match_loops_and_layer_output(cls, kwargs, shape):
    layer = cls(5, **kwargs)
    x = RNG.normal(size=shape).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    got = ops.convert_to_numpy(wspan.layer_patches(layer, x))
    nd = len(shape) - 2
    tup = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)
    want = np_patches(
        x, tup(layer.kernel_size), tup(layer.strides), layer.padding, tup(layer.dilation_rate)
    )
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The definition that matters: patch . filter is the layer's pre-activation.
    w2d = ops.convert_to_numpy(wmath.kernel_matrix(layer.kernel, (-1,)))
    pre = y.reshape(-1, 5) - ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(got @ w2d, pre, atol=1e-5)


def test_dense_patches_are_input_rows():
    layer = L.Dense(4)
    x = RNG.normal(size=(2, 3, 6)).astype("float32")
    layer(x)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(wspan.layer_patches(layer, x)), x.reshape(-1, 6)
    )


@pytest.mark.parametrize(
    "layer, reason",
    [
        (L.DepthwiseConv2D(3), "DepthwiseConv2D layers are not supported"),
        (L.Conv2DTranspose(4, 3), "Conv2DTranspose layers are not supported"),
        (L.Conv2D(4, 3, groups=2), r"grouped convolution \(groups=2\)"),
        (None, "owning layer is unknown"),
    ],
)
def test_unsupported_layers_say_why(layer, reason):
    assert re.search(reason, wspan.span_unsupported_reason(layer))


def low_rank_rows(n=200, d=20, r=6, decay=False):
    basis = np.linalg.qr(RNG.normal(size=(d, r)))[0]
    scale = np.logspace(0, -2, r) if decay else np.ones(r)
    return (RNG.normal(size=(n, r)) * scale) @ basis.T


@pytest.mark.usefixtures("float64")
def test_exact_span_noise_matches_svd_twin():
    x = low_rank_rows()
    w2d = RNG.normal(size=(20, 7))
    span, comp, rank = wspan.exact_span(wspan.accumulate_gram(None, x), 1e-9)
    got = ops.convert_to_numpy(wspan.noise_stats(w2d, span, comp))
    want = np_noise(w2d, x, 1e-9)
    assert int(rank) == want[4] == 6
    np.testing.assert_allclose(got, want[:4], rtol=1e-9)


@pytest.mark.usefixtures("float64")
def test_gram_accumulates_over_batches():
    x = RNG.normal(size=(30, 5))
    g = wspan.accumulate_gram(wspan.accumulate_gram(None, x[:10]), x[10:])
    np.testing.assert_allclose(ops.convert_to_numpy(g), x.T @ x, rtol=1e-12)


def _apply(grams):
    # `@`: on PyTorch, ops.matmul computes float64 in float32.
    return lambda ms: [ops.convert_to_tensor(g) @ m for g, m in zip(grams, ms, strict=True)]


@pytest.mark.usefixtures("float64")
def test_randomized_equals_exact_when_rank_fits_in_sketch():
    x = low_rank_rows(d=40, r=12, decay=True)
    w2d = RNG.normal(size=(40, 5))
    g = x.T @ x
    ((span_r, _, rank_r),) = wspan.randomized_spans(
        _apply([g]), [40], 1e-9, sketch_size=22, power_iterations=1
    )
    span, comp, rank = wspan.exact_span(ops.convert_to_tensor(g), 1e-9)
    assert int(rank_r) == int(rank) == 12
    np.testing.assert_allclose(
        ops.convert_to_numpy(wspan.noise_stats(w2d, span_r)),
        ops.convert_to_numpy(wspan.noise_stats(w2d, span, comp)),
        rtol=1e-8,
    )


@pytest.mark.usefixtures("float64")
def test_randomized_over_estimates_noise_when_sketch_is_too_small():
    x = low_rank_rows(d=40, r=20, decay=True)
    w2d = RNG.normal(size=(40, 5))
    g = x.T @ x
    ((span_r, _, rank_r),) = wspan.randomized_spans(_apply([g]), [40], 1e-9, sketch_size=8)
    span, comp, _ = wspan.exact_span(ops.convert_to_tensor(g), 1e-9)
    small = ops.convert_to_numpy(wspan.noise_stats(w2d, span_r))
    exact = ops.convert_to_numpy(wspan.noise_stats(w2d, span, comp))
    assert int(rank_r) == 8
    # Y = G^(q+1) Omega lies in range(G) = S, so the sketch spans a subspace of S.
    assert small[2] > exact[2] + 0.1 and np.all(small[:3] >= exact[:3] - 1e-9)

"""Weight noise: the part of a kernel orthogonal to the span of its layer's inputs.

A Dense or convolution output is `y_i = w . x_i` over the layer's input
vectors `x_i` (Conv: the im2col patches), so the gradient of `w` lies in
their span `S` and SGD never changes `w_perp`, the component outside it
(PAPER.md, input-span property). `S` is estimated on a probe set as the
eigenvectors of the Gram matrix `sum_i x_i x_i^T` whose eigenvalue exceeds
`rel_threshold` times the largest.

References:
    Liu et al., "Weight Rescaling: Effective and Robust Regularization for
    Deep Neural Networks with Batch Normalization", arXiv 2102.03497.
    Halko, Martinsson, Tropp, "Finding structure with randomness", SIAM
    Review 53(2), 2011 (the randomized range finder).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_wrs import math as wmath

__all__ = [
    "span_unsupported_reason",
    "im2col",
    "layer_patches",
    "accumulate_gram",
    "randomized_spans",
    "exact_span",
    "noise_stats",
]

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_NOT_SPANNED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def span_unsupported_reason(layer) -> str | None:
    """Why weight noise cannot be measured for `layer`'s kernel, or None."""
    if layer is None:
        return "its owning layer is unknown (kernel named by a path outside any layer)"
    if isinstance(layer, _NOT_SPANNED) or not isinstance(layer, (keras.layers.Dense, *_CONV)):
        return f"{type(layer).__name__} layers are not supported (only Dense and Conv1D/2D/3D)"
    if getattr(layer, "groups", 1) != 1:
        return f"grouped convolution (groups={layer.groups}) is not supported"
    return None


def _same_padding(n: int, k: int, s: int, d: int) -> tuple[int, int, int]:
    """TensorFlow's "same" rule: `(before, after, outputs)` along one axis."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2, out


def im2col(x, kernel_size, strides, dilation_rate, padding):
    """Patches of a channels-last `x`, one row per output position.

    Each kernel tap is one strided slice of the padded input, so the cost is
    `O(n d)` memory moves on every backend.

    Args:
        x: `(batch, *spatial, c)` tensor.
        kernel_size, strides, dilation_rate: one int per spatial axis.
        padding: `"valid"` or `"same"`.

    Returns:
        `(batch, *out_spatial, prod(kernel_size) * c)`, the last axis in
        `(taps..., channel)` order (the kernel's own row order).
    """
    pads, outs = [], []
    for n, k, s, d in zip(x.shape[1:-1], kernel_size, strides, dilation_rate, strict=True):
        if padding == "same":
            before, after, out = _same_padding(n, k, s, d)
        else:
            before, after, out = 0, 0, (n - (k - 1) * d - 1) // s + 1
        pads.append((before, after))
        outs.append(out)
    xp = ops.pad(x, [(0, 0), *pads, (0, 0)])
    taps = []
    for tap in np.ndindex(*kernel_size):
        index = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilation_rate, outs, strides, strict=True)
        )
        taps.append(xp[(slice(None), *index, slice(None))])
    return ops.concatenate(taps, axis=-1)


def layer_patches(layer, x):
    """The input vectors of a Dense or ConvND layer, as rows of a matrix.

    For Dense, the last axis of `x`; for a convolution, the im2col patches
    with the layer's own kernel size, strides, padding (causal included) and
    dilation, in the row order of `math.kernel_matrix(kernel)`, so that
    patch `i` times that matrix is the layer's pre-activation at position
    `i` (see `im2col`).

    Args:
        layer: a Dense or Conv1D/2D/3D layer (groups=1).
        x: the layer's input.

    Returns:
        `(n, d)` float32 tensor, `d = prod(kernel_size) * c_in` (Dense:
        input size).
    """
    x = ops.cast(x, "float32")
    if isinstance(layer, keras.layers.Dense):
        return ops.reshape(x, (-1, x.shape[-1]))
    if layer.data_format == "channels_first":
        x = ops.moveaxis(x, 1, -1)
    padding = layer.padding
    if padding == "causal":
        left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
        x = ops.pad(x, [[0, 0], [left, 0], [0, 0]])
        padding = "valid"
    p = im2col(
        x, tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate), padding
    )
    return ops.reshape(p, (-1, p.shape[-1]))


def accumulate_gram(gram, patches, dtype: str = "float64"):
    """`gram + patches^T patches`, accumulated in `dtype`."""
    p = ops.convert_to_tensor(patches, dtype)
    g = wmath.gram(p)
    return g if gram is None else gram + g


def exact_span(gram, rel_threshold: float):
    """Span and complement bases from a full eigendecomposition, `O(d^3)`.

    Returns:
        `(span, complement, rank)` as in `math.span_basis`.
    """
    return wmath.span_basis(gram, rel_threshold)


def randomized_spans(
    apply_grams,
    dims,
    rel_threshold: float,
    sketch_size: int,
    power_iterations: int = 1,
    seed: int = 0,
    dtype: str = "float64",
):
    """Span estimates by a randomized range finder, without forming Gram matrices.

    For each layer: `Y = G^(q+1) Omega` with a Gaussian `Omega` of
    `sketch_size` columns, `Q = orth(Y)`, then the eigenvectors of
    `Q^T G Q` whose eigenvalue exceeds `rel_threshold` times the largest.
    `apply_grams([M_1, ...])` returns `[G_1 @ M_1, ...]` for all layers at
    once, one pass over the probe: `O(n d k)` with `k = sketch_size`
    instead of `O(n d^2)`; `2 + q` passes in all, and `O(d k^2)` after.

    Accuracy (Halko et al. 2011, Thm 10.6 and Cor. 10.10): if a layer's
    inputs have rank `r <= k - 10`, `Q` spans them exactly up to rounding
    and the result equals `exact_span`. Otherwise at most `k` directions are
    kept; the directions left out count as noise, so the noise norm is
    over-estimated, by the weight the kernel puts on eigen-directions beyond
    the k-th.

    Args:
        apply_grams: `[M_i] -> [G_i @ M_i]` for `(d_i, k_i)` matrices.
        dims: the dimensions `d_i` of each layer's input vectors.
        rel_threshold: relative eigenvalue threshold.
        sketch_size: number of random directions `k` (capped at `d_i`).
        power_iterations: extra passes `q`, sharpening the spectrum.
        seed: seed of `Omega`.
        dtype: computation dtype.

    Returns:
        One `(span, None, rank)` per layer: a `(d, k)` basis with orthonormal
        or zero columns (no complement basis is formed), and its rank.
    """
    rng = np.random.default_rng(seed)
    ms = [ops.convert_to_tensor(rng.standard_normal((d, min(sketch_size, d))), dtype) for d in dims]
    ys = apply_grams(ms)
    for _ in range(power_iterations):
        ys = apply_grams([ops.qr(y)[0] for y in ys])
    qs = [ops.qr(y)[0] for y in ys]
    out = []
    for q, gq in zip(qs, apply_grams(qs), strict=True):
        small = ops.transpose(q) @ gq  # `@`, not ops.matmul: float64 (see keras_wrs.math)
        sub, _, rank = wmath.span_basis((small + ops.transpose(small)) / 2, rel_threshold)
        out.append((q @ sub, None, rank))
    return out


def noise_stats(w2d, span, complement=None, epsilon: float = wmath.EPSILON):
    """Weight noise of a kernel given a basis of its input span.

    Args:
        w2d: `(d, c)` kernel matrix (`math.kernel_matrix`).
        span: `(d, k)` basis of the span (orthonormal or zero columns).
        complement: basis of the orthogonal complement, if known: projecting
            onto it directly avoids the cancellation in `w - P_S w` when
            `w_perp` is small.
        epsilon: filters with a smaller norm get ratio 0.

    Returns:
        float64 `(4,)` tensor: mean and max over filters of
        `||w_perp_k|| / ||w_k||`, the noise norm `||w_perp||` of the whole
        kernel, and the in-span norm `||w_par||`.
    """
    w = ops.convert_to_tensor(w2d, span.dtype)
    perp = wmath.project(w, complement) if complement is not None else w - wmath.project(w, span)
    par = w - perp
    col = ops.sqrt(ops.sum(ops.square(w), axis=0))
    perp_col = ops.sqrt(ops.sum(ops.square(perp), axis=0))
    # where and sum / count, not ops.maximum / ops.mean: float64 (see keras_wrs.math).
    ratio = ops.where(col > epsilon, perp_col / ops.where(col > epsilon, col, 1.0), 0.0)
    return ops.stack(
        [
            ops.sum(ratio) / ratio.shape[0],
            ops.max(ratio),
            ops.sqrt(ops.sum(ops.square(perp))),
            ops.sqrt(ops.sum(ops.square(par))),
        ]
    )

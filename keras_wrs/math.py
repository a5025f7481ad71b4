"""The geometry of filters: norms, rescaling, angles and update decomposition.

Every formula of keras-wrs that acts on a kernel lives here, as a small pure
function over `keras.ops`, so that the optimizers and the callbacks share one
implementation and the tests have one thing to compare against NumPy.

A *filter* is the slice of a kernel that feeds one output channel. Which axes
of the kernel index the channel depends on the layer (see
`keras_wrs.selection`); everything here takes the complementary *reduction
axes*, the axes a filter's norm sums over.

The span functions compute in float64 where asked. Keras's type promotion
turns float64 into float32 in `ops.matmul` (PyTorch), `ops.maximum` with a
scalar (PyTorch) and `ops.mean` (JAX, PyTorch), so the code here uses the `@`
operator (each backend's own product), `sum / count` and `where` instead.
"""

from __future__ import annotations

import math as _pymath
from collections.abc import Sequence

from keras import ops

from keras_wrs.checks import GRANULARITIES, check_granularity

__all__ = [
    "GRANULARITIES",
    "reduction_axes",
    "filter_norms",
    "rescale",
    "angle",
    "radial_tangential",
    "effective_learning_rate",
    "kernel_matrix",
    "gram",
    "span_basis",
    "project",
    "abs_cosine",
    "remove_radial",
    "normalize",
    "bias_correction",
]


# Norms below this are treated as zero: the filter is left as it is.
EPSILON = 1e-12


def reduction_axes(
    ndim: int, channel_axes: Sequence[int], granularity: str = "filter"
) -> tuple[int, ...]:
    """Axes a filter norm sums over.

    Args:
        ndim: rank of the kernel.
        channel_axes: axes that index output channels (negative allowed),
            e.g. `(-1,)` for Conv2D/Dense, `(-2,)` for Conv2DTranspose,
            `(-2, -1)` for DepthwiseConv2D.
        granularity: `"filter"` (one norm per output channel) or `"layer"`
            (one norm for the whole kernel).

    Returns:
        A sorted tuple of non-negative axes.

    Example:
        >>> reduction_axes(4, (-1,))
        (0, 1, 2)
    """
    check_granularity(granularity)
    if granularity == "layer":
        return tuple(range(ndim))
    kept = {a % ndim for a in channel_axes}
    return tuple(a for a in range(ndim) if a not in kept)


def filter_norms(w, axes: Sequence[int]):
    """Euclidean norm of each filter, in float32, with the reduced axes kept.

    Args:
        w: kernel tensor.
        axes: reduction axes (from `reduction_axes`).

    Returns:
        float32 tensor broadcastable against `w`.
    """
    w = ops.cast(w, "float32")
    return ops.sqrt(ops.sum(ops.square(w), axis=tuple(axes), keepdims=True))


def rescale(w, target, axes: Sequence[int], epsilon: float = EPSILON):
    """Rescale each filter to norm `target`: `w_k <- target_k * w_k / ||w_k||`.

    A filter whose norm is below `epsilon` is left as it is (a zero filter
    stays zero, never NaN).

    Args:
        w: kernel tensor.
        target: scalar or tensor broadcastable against the norms.
        axes: reduction axes.
        epsilon: norms below it are not rescaled.

    Returns:
        The rescaled kernel, float32.

    References:
        Liu et al., "Weight Rescaling: Effective and Robust Regularization for
        Deep Neural Networks with Batch Normalization", arXiv 2102.03497.
    """
    w = ops.cast(w, "float32")
    norms = filter_norms(w, axes)
    safe = ops.where(norms > epsilon, norms, ops.ones_like(norms))
    scale = ops.where(norms > epsilon, ops.cast(target, "float32") / safe, 1.0)
    return w * scale


def _dot(a, b, axes):
    return ops.sum(ops.cast(a, "float32") * ops.cast(b, "float32"), axis=tuple(axes), keepdims=True)


def angle(a, b, axes: Sequence[int], epsilon: float = EPSILON):
    """Angle in radians between matching filters of `a` and `b`.

    The angle whose cosine is `<a_k, b_k> / (||a_k|| ||b_k||)`, computed as
    `2 atan2(||â_k - b̂_k||, ||â_k + b̂_k||)` with `â = a / ||a||` (Kahan's
    formula): as accurate for the small angles of one optimizer step as for
    large ones, where the arccos of a float32 cosine near 1 loses most digits
    (an angle of 0.02 rad was off by 4e-5). Zero where either filter is zero.

    Args:
        a, b: kernels of the same shape (e.g. `w_t` and `w_{t+1}`).
        axes: reduction axes.
        epsilon: norms below it count as zero.

    Returns:
        float32 tensor of angles with the reduced axes kept.
    """
    na, nb = filter_norms(a, axes), filter_norms(b, axes)
    zero = (na <= epsilon) | (nb <= epsilon)
    ua = ops.cast(a, "float32") / ops.maximum(na, epsilon)
    ub = ops.cast(b, "float32") / ops.maximum(nb, epsilon)
    theta = 2.0 * ops.arctan2(filter_norms(ua - ub, axes), filter_norms(ua + ub, axes))
    return ops.where(zero, 0.0, theta)


def radial_tangential(delta, w, axes: Sequence[int], epsilon: float = EPSILON):
    """Split an update `delta` of kernel `w` into radial and tangential parts.

    radial_k = <delta_k, w_k> / ||w_k|| (signed: positive grows the filter),
    tangential_k = || delta_k - radial_k * w_k / ||w_k|| ||.

    Args:
        delta: the update, `w_{t+1} - w_t`.
        w: the kernel before the update, `w_t`.
        axes: reduction axes.
        epsilon: norms below it count as zero (all of `delta` is tangential).

    Returns:
        `(radial, tangential)`, float32 tensors with the reduced axes kept.
    """
    norms = filter_norms(w, axes)
    unit = ops.cast(w, "float32") / ops.maximum(norms, epsilon)
    radial = _dot(delta, unit, axes)
    tangential = ops.cast(delta, "float32") - radial * unit
    return radial, ops.sqrt(ops.sum(ops.square(tangential), axis=tuple(axes), keepdims=True))


def effective_learning_rate(learning_rate, norms, power: float):
    """Effective learning rate of scale-invariant filters: `lr / ||w_k||^power`.

    A scale-invariant filter's gradient scales as `1/||w||`, so plain SGD
    turns the filter's direction at the rate `lr / ||w||^2` (`power=2`);
    optimizers that normalize the gradient elementwise (Adam, RMSprop, Lion)
    move it by about `lr` per coordinate, an angle of `lr / ||w||`
    (`power=1`); layer-wise trust ratios (LAMB) make the step proportional to
    `||w||` (`power=0`).

    Args:
        learning_rate: scalar learning rate.
        norms: filter norms (from `filter_norms`).
        power: exponent of the norm.

    Returns:
        float32 tensor shaped like `norms`; `inf` where a norm is zero.

    References:
        van Laarhoven, "L2 Regularization versus Batch and Weight
        Normalization", arXiv 1706.05350; Liu et al., arXiv 2102.03497.
    """
    lr = ops.cast(learning_rate, "float32")
    return lr / ops.power(ops.cast(norms, "float32"), float(power))


def kernel_matrix(w, channel_axes: Sequence[int]):
    """A kernel as a `(d, channels)` matrix, one filter per column.

    Only kernels with a single output-channel axis that is last (Dense and
    ConvND) have this layout; the row order is the one of the layer's input
    vectors (`im2col` patches, see `keras_wrs.span.layer_patches`).

    Args:
        w: kernel tensor.
        channel_axes: must be `(-1,)` or `(ndim - 1,)`.

    Returns:
        The reshaped kernel, same dtype.
    """
    ndim = len(w.shape)
    if [a % ndim for a in channel_axes] != [ndim - 1]:
        raise ValueError(
            "Only kernels with output channels on the last axis (Dense, "
            f"ConvND) have an input span. Received: channel_axes={tuple(channel_axes)} "
            f"for a kernel of shape {tuple(w.shape)}"
        )
    return ops.reshape(w, (-1, w.shape[-1]))


def gram(x):
    """Gram matrix `sum_i x_i x_i^T` of the rows of a `(n, d)` matrix.

    Args:
        x: rows are the vectors.

    Returns:
        `(d, d)` tensor, dtype of `x`.
    """
    x = ops.convert_to_tensor(x)
    return ops.transpose(x) @ x


def span_basis(gram_matrix, rel_threshold: float):
    """Eigenvectors of a Gram matrix split into span and complement.

    The span of the vectors is estimated as the eigenvectors whose
    eigenvalue exceeds `rel_threshold` times the largest one. Shapes stay
    static: columns outside the span (resp. inside) are zeroed.

    Args:
        gram_matrix: symmetric positive semi-definite `(d, d)` matrix.
        rel_threshold: relative eigenvalue threshold in `[0, 1)`.

    Returns:
        `(span, complement, rank)`: two `(d, d)` matrices whose non-zero
        columns are orthonormal, and the number of span columns (int32).
    """
    values, vectors = ops.eigh(gram_matrix)
    keep = values > rel_threshold * ops.max(values)
    mask = ops.cast(keep, vectors.dtype)
    return vectors * mask, vectors * (1 - mask), ops.sum(ops.cast(keep, "int32"))


def project(w2d, basis):
    """Orthogonal projection of the columns of `w2d` onto `basis`'s columns.

    Args:
        w2d: `(d, c)` matrix (from `kernel_matrix`).
        basis: `(d, k)` matrix with orthonormal or zero columns.

    Returns:
        `basis @ basis^T @ w2d`, in `basis`'s dtype.
    """
    w2d = ops.convert_to_tensor(w2d, basis.dtype)
    return basis @ (ops.transpose(basis) @ w2d)


def abs_cosine(a, b, axes: Sequence[int], epsilon: float = 1e-8):
    """`|cos|` between matching slices of `a` and `b`, float32, reduced axes kept.

    Each slice is divided by `max(||slice||, epsilon)` before the dot product,
    as `torch.nn.functional.cosine_similarity` does (the AdamP reference's test).

    Args:
        a, b: tensors of the same shape (e.g. a gradient and its weight).
        axes: reduction axes (one slice per remaining index).
        epsilon: lower bound of each norm.
    """
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    a = a / ops.maximum(filter_norms(a, axes), epsilon)
    b = b / ops.maximum(filter_norms(b, axes), epsilon)
    return ops.abs(ops.sum(a * b, axis=tuple(axes), keepdims=True))


def remove_radial(update, w, axes: Sequence[int], epsilon: float = 1e-8):
    """`update` without its part along each slice of `w`: `u_k - w^_k <w^_k, u_k>`.

    `w^_k = w_k / (||w_k|| + epsilon)`, the AdamP reference's projection (it
    adds `epsilon` to the norm, where `radial_tangential` clamps it).

    Args:
        update: the step direction.
        w: the weights the step starts from.
        axes: reduction axes.
        epsilon: added to each norm.

    Returns:
        float32 tensor shaped like `update`.

    References:
        Heo et al., "AdamP", ICLR 2021, arXiv 2006.08217.
    """
    update = ops.cast(update, "float32")
    unit = ops.cast(w, "float32") / (filter_norms(w, axes) + epsilon)
    return update - unit * ops.sum(unit * update, axis=tuple(axes), keepdims=True)


def normalize(x, axes: Sequence[int], epsilon: float = EPSILON):
    """`x_k / max(||x_k||, epsilon)` per slice, float32 (a zero slice stays zero)."""
    x = ops.cast(x, "float32")
    return x / ops.maximum(filter_norms(x, axes), epsilon)


def bias_correction(beta: float, step):
    """`1 - beta**step` in float32, as `-expm1(step * log(beta))`.

    The direct form cancels: in float32, `1 - 0.999**1` is off by 1.3e-5
    relative (0.999 is not a float32 number). The logarithm is taken in
    double precision, so the result is accurate to a few ulps.

    Args:
        beta: a decay rate in [0, 1).
        step: the step count (1 for the first step), scalar tensor.
    """
    step = ops.cast(step, "float32")
    if beta == 0:
        return ops.ones_like(step)
    return -ops.expm1(step * _pymath.log(beta))

"""Which layers hold a kernel with output filters, and on which axes."""

from __future__ import annotations

import keras

from keras_wrs._walk import iter_layers

__all__ = ["kernel_channel_axes", "layer_kernels"]


def kernel_channel_axes(layer) -> tuple[str, tuple[int, ...]] | None:
    """Which kernel of `layer` may be rescaled, and its output-channel axes.

    Args:
        layer: a Keras layer.

    Returns:
        `(attribute name, channel axes)`, or None for layers without such a
        kernel. Conv and Dense kernels keep output channels on the last axis,
        Conv*Transpose on axis -2, depthwise kernels `(kh, kw, in, mult)` on
        the last two; SeparableConv's pointwise kernel on the last.
    """
    L = keras.layers
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return "pointwise_kernel", (-1,)
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return "kernel", (-2, -1)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return "kernel", (-2,)
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D, L.Dense)):
        return "kernel", (-1,)
    return None


def layer_kernels(model) -> list[tuple]:
    """`(kernel, channel axes, layer)` for every built Conv/Dense-like layer, once each."""
    out, seen = [], set()
    for layer in iter_layers(model):
        spec = kernel_channel_axes(layer)
        if spec is None or not layer.built:
            continue
        v = getattr(layer, spec[0], None)
        if v is not None and id(v) not in seen:
            seen.add(id(v))
            out.append((v, spec[1], layer))
    return out

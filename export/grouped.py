"""Grouped convolutions of the float32 copy, computed without XLA so that every format converts.

On CPU, Keras's TensorFlow backend runs a convolution whose kernel sees
fewer channels than its input (a `Conv2D` or `Conv3D` with `groups > 1`)
inside a `tf.function(jit_compile=True)`: TensorFlow has no CPU kernel for
grouped convolution. The exported graph then holds a call into an XLA
function that tf2onnx leaves unconverted (`StatefulPartitionedCall`;
tensorflow-onnx issue 2099). KerasHub's MobileNet blocks write their
depthwise convolutions this way.

In the float32 inference copy, each such layer computes the same function
through `convolution_op`, the hook Keras's layers call and its weight
standardization example overrides: a depthwise convolution when every group
is one input channel of a `Conv2D` (the kernel `(kh, kw, 1, C * m)` read as
`(kh, kw, C, m)`: output channel `c * m + j` is filter `j` of group `c` in
both), else one convolution per group, concatenated. The parity check
compares the copy with the trained model, which still runs Keras's own
grouped convolution.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["ungroup_convolutions"]


def _is_grouped(layer) -> bool:
    return (
        isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv3D))
        and layer.groups > 1
        and type(layer).convolution_op is keras.layers.Conv2D.convolution_op
    )


def _channel_slice(x, axis: int, start: int, size: int):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, start + size)
    return x[tuple(index)]


def _convolution_op(layer):
    """`layer.convolution_op` without a grouped kernel."""
    axis = -1 if layer.data_format == "channels_last" else 1
    args = {
        "strides": tuple(layer.strides),
        "padding": layer.padding,
        "data_format": layer.data_format,
        "dilation_rate": layer.dilation_rate,
    }

    def convolution_op(inputs, kernel):
        groups, channels = layer.groups, inputs.shape[axis]
        per_group = kernel.shape[-1] // groups
        if layer.rank == 2 and groups == channels:
            depthwise = ops.reshape(kernel, tuple(kernel.shape[:2]) + (channels, per_group))
            return ops.depthwise_conv(inputs, depthwise, **args)
        width = channels // groups
        parts = [
            ops.conv(
                _channel_slice(inputs, axis, g * width, width),
                kernel[..., g * per_group : (g + 1) * per_group],
                **args,
            )
            for g in range(groups)
        ]
        return ops.concatenate(parts, axis=axis)

    return convolution_op


def ungroup_convolutions(layers) -> list[str]:
    """Makes each grouped `Conv2D`/`Conv3D` among `layers` compute without a grouped kernel.

    Args:
        layers: the layers of the float32 inference copy (never a model
            being trained: the layers keep their weights but no longer call
            Keras's grouped convolution).

    Returns:
        The names of the layers changed.
    """
    changed = []
    for layer in layers:
        if _is_grouped(layer):
            layer.convolution_op = _convolution_op(layer)
            changed.append(layer.name)
    return changed

"""Find the kernels that feed BatchNormalization, from a model's graph.

A kernel is scale-invariant per output filter when every use of its layer
reaches a `BatchNormalization` over the same channel axis through nothing but
the layer's own bias and ops that keep each channel apart: reshapes that keep
the channel axis, concatenation along it, max pooling, valid-padded average
pooling and global pooling; on a path without bias also zero padding and
dropout, which scale with the filter but do not shift with the bias. Scaling filter `k` by
`c > 0` then scales channel `k` of the pre-normalization activations by `c`
(the bias is removed by the batch mean), which training-mode BatchNorm divides
out again.

The walk follows Keras's functional graph (nodes and the tensors they
consume), through nested functional and Sequential models and shared layers.

`iter_layers` is the project's one walk over a model's layers: every other
module that needs "all layers of a model" calls it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import keras

__all__ = ["Selection", "select_scale_invariant", "kernel_channel_axes", "iter_layers"]


@dataclasses.dataclass(frozen=True)
class Selection:
    """One kernel chosen for rescaling.

    Attributes:
        variable: the kernel (`keras.Variable`).
        path: `variable.path` when selected.
        channel_axes: axes of the kernel that index output channels.
        layer: the layer owning the kernel, or None when selected by path.
        reason: why it was chosen, for `describe_rescaling`.
    """

    variable: object
    path: str
    channel_axes: tuple
    layer: object = None
    reason: str = ""


def iter_layers(model, include_self: bool = False):
    """Every layer of `model`, recursively, each once, parents before children.

    Nested models and the sublayers of subclassed layers are included (a
    KerasHub task's backbone, a user's `ConvBNReLU` block and the Conv and
    BatchNormalization inside it). Only public API is used: a `keras.Model`
    lists its direct sublayers in `model.layers` (graph order for functional
    models); a plain `keras.Layer` has no public list of sublayers, so its
    attributes are read with `vars()`, looking through lists, tuples and
    dicts, which are the places Keras's own attribute tracking finds them.

    Args:
        model: a Keras layer or model.
        include_self: whether to yield `model` itself first.

    Yields:
        Keras layers, depth first, in attribute / graph order.

    Example:
        >>> convs = [l for l in iter_layers(model) if isinstance(l, keras.layers.Conv2D)]
    """
    seen = {id(model)}
    if include_self:
        yield model
    stack = list(reversed(_sublayers(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(reversed(_sublayers(layer)))


def _sublayers(layer) -> list:
    """The layers `layer` holds directly (see `iter_layers`)."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    found, todo = [], list(vars(layer).values())
    while todo:
        value = todo.pop(0)
        if isinstance(value, keras.Layer):
            found.append(value)
        elif isinstance(value, dict):
            todo[:0] = list(value.values())
        elif isinstance(value, (list, tuple)):
            todo[:0] = list(value)
    return found


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


def _is_linear(layer) -> bool:
    act = getattr(layer, "activation", None)
    return act is None or act is keras.activations.linear


def _output_channel_axis(layer, rank: int) -> int:
    fmt = getattr(layer, "data_format", "channels_last")
    return 1 if fmt == "channels_first" else rank - 1


class _Graph:
    """Consumers of every tensor in a model, nested models flattened."""

    def __init__(self, model):
        self.consumers = defaultdict(list)  # id(tensor) -> [(node, position)]
        self.exits = {}  # id(inner output) -> [outer tensors it becomes]
        self.nodes = set()
        self.layers = []  # in graph order, nested models expanded
        self._models = set()
        self.top_outputs = {id(t) for t in _functional(model).outputs}
        self._add(_functional(model))

    def _add(self, fn):
        self._models.add(id(fn))
        for op in fn.operations:
            if _functional(op) is None and op not in self.layers:
                self.layers.append(op)
        for nodes in fn._nodes_by_depth.values():
            for node in nodes:
                self.nodes.add(id(node))
                for pos, t in enumerate(node.input_tensors):
                    self.consumers[id(t)].append((node, pos))
                inner = _functional(node.operation)
                if inner is not None and not node.is_input:
                    for t_in, t_out in zip(inner.outputs, node.outputs):
                        self.exits.setdefault(id(t_in), []).append(t_out)
                    if id(inner) not in self._models:
                        self._add(inner)


def _functional(op):
    """The functional graph behind a model, or None."""
    if isinstance(op, keras.Sequential):
        return getattr(op, "_functional", None)
    if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
        return op
    return None


def _reaches_bn(graph, tensor, axis, shifted, seen=()):
    """Whether every consumer path of `tensor` ends in a BN over `axis`.

    `shifted`: the tensor may carry a per-channel constant (a bias), which
    rules out ops that commute with scaling but not with a shift.
    Returns the BN layer names reached, or None if some path does not.
    """
    if id(tensor) in graph.top_outputs:
        return None
    found = []
    uses = list(graph.consumers.get(id(tensor), []))
    for outer in graph.exits.get(id(tensor), []):
        r = _reaches_bn(graph, outer, axis, shifted, seen)
        if r is None:
            return None
        found += r
    if not uses and not found:
        return None
    for node, pos in uses:
        op = node.operation
        rank = len(tensor.shape)
        if isinstance(op, keras.layers.BatchNormalization):
            if op.axis % rank != axis % rank:
                return None
            found.append(op.name)
            continue
        inner = _functional(op)
        if inner is not None:
            nxt, nxt_axis = inner.inputs[pos], axis
        else:
            nxt, nxt_axis = node.outputs[0], _next_channel_axis(op, node, axis % rank, shifted)
            if nxt_axis is None:
                return None
        if id(nxt) in seen:
            return None
        r = _reaches_bn(graph, nxt, nxt_axis, shifted, seen + (id(nxt),))
        if r is None:
            return None
        found += r
    return found


L = keras.layers
# Per channel, these map `c * x + b` to `c * f(x) + b` for every c > 0 and
# constant b: each filter's channel stays its own, scaled and shifted.
_POOLS = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)
_VALID_POOLS = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
_GLOBAL_POOLS = (
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
)
# These map `c * x` to `c * f(x)` but a shift not to a shift: they keep
# invariance only on a path that carries no bias.
_PADDINGS = (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
_DROPOUTS = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianDropout)


def _next_channel_axis(op, node, axis, shifted):
    """The channel axis in `op`'s output, or None if `op` mixes or breaks channels.

    Args:
        op: the consuming layer.
        node: its node (input and output tensors).
        axis: non-negative channel axis of the consumed tensor.
        shifted: whether the tensor may carry a per-channel bias.
    """
    x, y = node.input_tensors[0], node.outputs[0]
    rank = len(x.shape)
    if isinstance(op, L.Identity):
        return axis
    if isinstance(op, (L.Reshape, L.Flatten)):
        # Row-major reshapes keep element (..., k) in channel k iff the last
        # dimension is unchanged.
        keeps = axis == rank - 1 and x.shape[-1] is not None and x.shape[-1] == y.shape[-1]
        return len(y.shape) - 1 if keeps else None
    if isinstance(op, L.Concatenate):
        # Along the channel axis each input's channels get their own slots.
        return axis if op.axis % rank == axis else None
    if isinstance(op, _PADDINGS + _DROPOUTS) and shifted:
        return None
    if isinstance(op, _DROPOUTS):
        return axis  # elementwise or whole-channel masks: the layout is kept
    if isinstance(op, _VALID_POOLS) and op.padding != "valid":
        return None  # "same" padding's border averages are backend-defined
    if not isinstance(op, _POOLS + _VALID_POOLS + _GLOBAL_POOLS + _PADDINGS):
        return None
    if axis != _output_channel_axis(op, rank):
        return None
    if isinstance(op, _GLOBAL_POOLS) and not getattr(op, "keepdims", False):
        return len(y.shape) - 1 if axis == rank - 1 else 1
    return axis


def select_scale_invariant(model) -> list[Selection]:
    """Kernels of `model` that are scale-invariant per output filter.

    Args:
        model: a built functional or Sequential Keras model (nested models
            and shared layers are followed).

    Returns:
        One `Selection` per kernel, in model order.

    Raises:
        ValueError: the model has no graph (a subclassed model) or no
            scale-invariant kernel.

    Example:
        >>> for s in select_scale_invariant(model):
        ...     print(s.path, s.reason)
    """
    if _functional(model) is None:
        raise ValueError(
            "Automatic selection needs a functional or built Sequential model; "
            f"received {type(model).__name__} {getattr(model, 'name', '')!r}, "
            "which has no layer graph. Build the model first (give it an Input), "
            "or pass `rescale=` a list of kernels, a regex on variable paths or "
            "a callable `variable -> bool`."
        )
    graph = _Graph(model)
    out = []
    for layer in graph.layers:
        spec = kernel_channel_axes(layer)
        if spec is None or not _is_linear(layer):
            continue
        nodes = [n for n in layer._inbound_nodes if id(n) in graph.nodes]
        bns = []
        for node in nodes:
            t = node.outputs[0]
            axis = _output_channel_axis(layer, len(t.shape))
            r = _reaches_bn(graph, t, axis, shifted=bool(getattr(layer, "use_bias", False)))
            if r is None:
                bns = None
                break
            bns += r
        if not nodes or not bns:
            continue
        kernel = getattr(layer, spec[0])
        via = "bias, " if getattr(layer, "use_bias", False) else ""
        out.append(
            Selection(
                variable=kernel,
                path=kernel.path,
                channel_axes=spec[1],
                layer=layer,
                reason=f"{type(layer).__name__} '{layer.name}' -> {via}"
                + ", ".join(f"BatchNormalization '{b}'" for b in dict.fromkeys(bns)),
            )
        )
    if not out:
        raise ValueError(
            f"Model {model.name!r} has no scale-invariant kernel: no Conv, "
            "DepthwiseConv, SeparableConv or Dense layer (with a linear "
            "activation) whose every output reaches a BatchNormalization over "
            "its channel axis. WRS has nothing to rescale here; use weight "
            "decay, or pass `rescale=` kernels you know to be scale-invariant."
        )
    return out

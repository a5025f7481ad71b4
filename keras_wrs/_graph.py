"""Which BatchNormalization layers a kernel's outputs reach in a functional graph.

This walk explains a selection: it names the BatchNormalization layers behind
a kernel ("Conv2D 'c1' -> bias, BatchNormalization 'bn1'") and finds the
frozen ones that keep a kernel out. The decision itself is numerical
(`keras_wrs._invariance`): the walk cannot see inside subclassed layers.

A kernel's outputs explain its invariance when every use of its layer
reaches a `BatchNormalization` over the same channel axis through nothing but
the layer's own bias and ops that keep each channel apart: reshapes that keep
the channel axis, concatenation along it, max pooling, valid-padded average
pooling and global pooling; on a path without bias also zero padding and
dropout, which scale with the filter but do not shift with the bias.

The walk follows Keras's functional graph (nodes and the tensors they
consume), through nested functional and Sequential models and shared layers.
"""

from __future__ import annotations

from collections import defaultdict

import keras

__all__ = ["batchnorm_paths"]


def batchnorm_paths(model) -> dict:
    """`{id(layer): [BatchNormalization layers]}` for the layers of `model`'s graph
    whose every output reaches BatchNormalization over its channel axis.

    Layers of the graph whose outputs do not all reach one map to None;
    layers outside any functional graph (inside subclassed layers, or every
    layer of a subclassed model) are absent.
    """
    fn = _functional(model)
    if fn is None:
        return {}
    graph = _Graph(model)
    out = {}
    for layer in graph.layers:
        if not hasattr(layer, "_inbound_nodes"):
            continue
        nodes = [n for n in layer._inbound_nodes if id(n) in graph.nodes]
        out[id(layer)] = _layer_reaches(graph, layer, nodes) if _is_linear(layer) else None
    return out


def _layer_reaches(graph, layer, nodes):
    bns = []
    for node in nodes:
        if not node.outputs:
            return None
        t = node.outputs[0]
        axis = _output_channel_axis(layer, len(t.shape))
        r = _reaches_bn(graph, t, axis, shifted=bool(getattr(layer, "use_bias", False)))
        if r is None:
            return None
        bns += r
    return list({id(b): b for b in bns}.values()) or None


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
                    for t_in, t_out in zip(inner.outputs, node.outputs, strict=True):
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
    Returns the BN layers reached, or None if some path does not.
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
            found.append(op)
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
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
)
# These map `c * x` to `c * f(x)` but a shift not to a shift: they keep
# invariance only on a path that carries no bias.
_PADDINGS = (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
_DROPOUTS = (
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianDropout,
)


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

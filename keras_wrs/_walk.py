"""The one walk over a model's layers (`keras_wrs.selection.iter_layers`).

Only public API is used: a `keras.Model` lists its direct sublayers in
`model.layers` (graph order for functional models); a plain `keras.Layer` has
no public list of sublayers, so its attributes are read with `vars()`, looking
through lists, tuples and dicts, which are the places Keras's own attribute
tracking finds them.
"""

from __future__ import annotations

import keras

__all__ = ["iter_layers", "owners"]


def iter_layers(model, include_self: bool = False):
    """Every layer of `model`, recursively, each once, parents before children.

    Nested models and the sublayers of subclassed layers are included (a
    KerasHub task's backbone, a user's `ConvBNReLU` block and the Conv and
    BatchNormalization inside it). The implicit `InputLayer` of a nested
    `Sequential` is left out, as `Sequential.layers` leaves it out.

    Args:
        model: a Keras layer or model.
        include_self: whether to yield `model` itself first.

    Yields:
        Keras layers, depth first, in attribute / graph order.

    Example:
        >>> convs = [l for l in iter_layers(model) if isinstance(l, keras.layers.Conv2D)]
    """
    for layer, _ in _walk(model, include_self):
        yield layer


def owners(model) -> dict:
    """`{id(layer): the layer or model holding it}` for every layer under `model`."""
    return {id(layer): parent for layer, parent in _walk(model, False)}


def _walk(model, include_self):
    """`(layer, parent)` pairs, depth first."""
    seen = {id(model)}
    if include_self:
        yield model, None
    stack = [(child, model) for child in reversed(_sublayers(model))]
    while stack:
        layer, parent = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer, parent
        stack.extend((child, layer) for child in reversed(_sublayers(layer)))


def _sublayers(layer) -> list:
    """The layers `layer` holds directly."""
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

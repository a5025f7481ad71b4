"""Which kernels are scale-invariant per output filter under `fit`.

A kernel is scale-invariant per output filter when multiplying any one of its
filters by `c > 0` leaves the model's training-mode function unchanged: the
filter feeds a BatchNormalization that normalizes with batch statistics
(through its own bias and ops that keep each channel apart), so the scale is
divided out again. Such kernels can be rescaled after every step without
changing what the network computes.

The decision is numerical (`keras_wrs._invariance`): the radial derivative
`<w_k, dL/dw_k>` of a random loss is zero for every invariant filter at every
weight, so a few backward passes at perturbed weights test every filter of
every kernel at once, wherever the kernel sits (functional graph, nested
model, subclassed block), and under the same training-mode semantics as `fit`:
a BatchNormalization with `trainable=False` normalizes with its moving
statistics there, so the kernel before it is not invariant and is left out.
The functional graph, where there is one, names the BatchNormalization layers
behind each kernel (`keras_wrs._graph`), for the reasons users read.

`iter_layers` is the project's one walk over a model's layers: every module
that needs "all layers of a model" calls it.
"""

from __future__ import annotations

import dataclasses
import weakref

import keras

from keras_wrs._graph import batchnorm_paths
from keras_wrs._invariance import check_kernels
from keras_wrs._kernels import kernel_channel_axes, layer_kernels
from keras_wrs._walk import iter_layers, owners

__all__ = [
    "Selection",
    "candidate_kernels",
    "excluded_kernels",
    "iter_layers",
    "kernel_channel_axes",
    "select_scale_invariant",
]


@dataclasses.dataclass(frozen=True)
class Selection:
    """One kernel chosen for rescaling (or, from `excluded_kernels`, left out).

    Attributes:
        variable: the kernel (`keras.Variable`).
        path: `variable.path` when selected.
        channel_axes: axes of the kernel that index output channels.
        layer: the layer owning the kernel, or None when selected by path.
        reason: why it was chosen (or left out), for `describe_rescaling`.
    """

    variable: object
    path: str
    channel_axes: tuple
    layer: object = None
    reason: str = ""


def candidate_kernels(model) -> list[Selection]:
    """Every built Conv/Dense-like kernel of `model`, in layer order (reason empty)."""
    return [Selection(v, v.path, axes, layer) for v, axes, layer in layer_kernels(model)]


def select_scale_invariant(model, x=None) -> list[Selection]:
    """Kernels of `model` that are scale-invariant per output filter under `fit`.

    Args:
        model: a built Keras model: functional, Sequential, a KerasHub task or
            backbone, with nested models and subclassed blocks; a subclassed
            model without `keras.Input` needs `x`.
        x: a batch of inputs for the numerical test, or None for random
            inputs shaped like the model's inputs.

    Returns:
        One `Selection` per kernel, in model order, each with its reason.

    Raises:
        ValueError: the model is not built, has no known inputs and no `x`
            was given, or has no scale-invariant kernel.

    Example:
        >>> for s in select_scale_invariant(model):
        ...     print(s.path, s.reason)
    """
    selected = list(_analysis(model, x)[0])  # a copy: the cached list stays as it is
    if not selected:
        raise ValueError(
            f"Model {model.name!r} has no scale-invariant kernel: no trainable Conv, "
            "DepthwiseConv, SeparableConv or Dense kernel whose filters the model's "
            "training-mode outputs are invariant to (a BatchNormalization with "
            "`trainable=False` does not count: it normalizes with its moving statistics "
            "under fit). WRS has nothing to rescale here; use weight decay. "
            f"Why each kernel was left out: keras_wrs.selection.excluded_kernels(model)."
        )
    return selected


def excluded_kernels(model, x=None) -> list[Selection]:
    """The candidate kernels `select_scale_invariant` leaves out, each with the reason.

    Args:
        model: as for `select_scale_invariant`.
        x: as for `select_scale_invariant`.

    Returns:
        One `Selection` per Conv/Dense-like kernel not selected, in model order.
    """
    return list(_analysis(model, x)[1])


# Results per model, recomputed when its layers, variables or trainable flags change.
_CACHE = weakref.WeakKeyDictionary()


def _fingerprint(model):
    return tuple((id(layer), layer.trainable, len(layer.weights)) for layer in iter_layers(model))


def _analysis(model, x):
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: call it on a batch (or give it a "
            "`keras.Input`) before selecting scale-invariant kernels."
        )
    key = _fingerprint(model)
    cached = _CACHE.get(model) if x is None else None
    if cached is not None and cached[0] == key:
        return cached[1]
    candidates = candidate_kernels(model)
    checks = check_kernels(model, candidates, x) if candidates else []
    paths, parent = batchnorm_paths(model), owners(model)
    selected, excluded = [], []
    for c in checks:
        s = c.selection
        if c.invariant:
            selected.append(dataclasses.replace(s, reason=_selected_reason(c, paths, parent)))
        else:
            excluded.append(dataclasses.replace(s, reason=_excluded_reason(c, paths, parent)))
    if x is None:
        _CACHE[model] = (key, (selected, excluded))
    return selected, excluded


def _where(layer, parent):
    """`Conv2D 'c1'`, with the enclosing subclassed layer when there is one."""
    text = f"{type(layer).__name__} '{layer.name}'"
    outer = parent.get(id(layer))
    if outer is not None and not isinstance(outer, keras.Model):
        text += f" (in {type(outer).__name__} '{outer.name}')"
    return text


def _bn_names(bns):
    return ", ".join(f"BatchNormalization '{b.name}'" for b in bns)


def _selected_reason(check, paths, parent):
    layer = check.selection.layer
    bns = paths.get(id(layer))
    if bns:
        via = "bias, " if getattr(layer, "use_bias", False) else ""
        return f"{type(layer).__name__} '{layer.name}' -> {via}{_bn_names(bns)}"
    cosine = "" if check.cosine != check.cosine else f"|cos(w_k, dL/dw_k)| <= {check.cosine:.1e}, "
    return (
        f"{_where(layer, parent)}: every filter scale-invariant in training mode "
        f"(numerical test: {cosine}outputs changed by {check.relative_change:.1e} with "
        "filters scaled by 0.5-2)"
    )


def _frozen_batchnorms(layer, paths, parent):
    """Frozen BatchNormalization layers the kernel's outputs reach, or in its block."""
    bns = paths.get(id(layer)) or []
    frozen = [b for b in bns if not b.trainable]
    outer = parent.get(id(layer))
    if not frozen and outer is not None and not isinstance(outer, keras.Model):
        frozen = [
            b
            for b in iter_layers(outer)
            if isinstance(b, keras.layers.BatchNormalization) and not b.trainable
        ]
    return frozen


def _excluded_reason(check, paths, parent):
    layer = check.selection.layer
    where = _where(layer, parent)
    if check.verdict == "not_trainable":
        return f"{where}: not trainable, so no optimizer updates it"
    if check.verdict == "no_gradient":
        return (
            f"{where}: the model's outputs do not depend on it (no gradient reaches "
            "it), so there is nothing to keep at a norm"
        )
    frozen = _frozen_batchnorms(layer, paths, parent)
    if frozen:
        return (
            f"{where}: feeds {_bn_names(frozen)}, frozen (trainable=False): it "
            "normalizes with its moving statistics under fit, so the kernel's scale "
            "reaches the outputs"
        )
    if check.verdict == "changed":
        return (
            f"{where}: scaling its filters by 0.5-2 changed the training-mode outputs "
            f"by {check.relative_change:.1e}"
        )
    return (
        f"{where}: not scale-invariant in training mode (|cos(w_k, dL/dw_k)| = "
        f"{check.cosine:.1e} for some filter; an invariant filter gives 0)"
    )

"""Which kernels the dynamics callbacks watch, and their names in the logs.

`tracked_kernels` picks the kernels to watch: the ones a keras-wrs optimizer
rescales, else the model's scale-invariant kernels (so a plain Keras
SGD + weight decay baseline is measured by the same tool), plus any kernel
the user names by layer name or variable path. `kernel_keys` gives each a
short name for the log keys (`keras_wrs.dynamics.logkeys`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keras_wrs.selection import Selection, iter_layers, kernel_channel_axes, select_scale_invariant

__all__ = ["tracked_kernels", "kernel_keys", "outside_graph"]


def _owner(model, variable):
    """The innermost layer holding `variable` (nested models come first)."""
    owner = None
    for layer in list(iter_layers(model)):
        if any(w is variable for w in layer.weights):
            owner = layer
    return owner


def _with_layer(model, s: Selection) -> Selection:
    if s.layer is not None:
        return s
    return Selection(s.variable, s.path, s.channel_axes, _owner(model, s.variable), s.reason)


def _default_kernels(model) -> list[Selection]:
    from keras_wrs.optimizers import WRSMixin, base_optimizer

    opt = base_optimizer(getattr(model, "optimizer", None))
    if isinstance(opt, WRSMixin):
        # Keras builds the optimizer inside the first traced step: before it,
        # resolve `rescale=` against the same variables, without building.
        chosen = (
            opt.rescale_selection
            if opt.built
            else opt.resolved_selection(model.trainable_variables)
        )
        if chosen:
            return [_with_layer(model, s) for s in chosen]
    return select_scale_invariant(model)


def _named_kernel(model, name: str) -> Selection:
    layers = list(iter_layers(model))
    for layer in layers:
        if layer.name == name:
            spec = kernel_channel_axes(layer)
            if spec is None:
                raise ValueError(
                    f"`kernels` names layer {name!r}, a {type(layer).__name__}, which "
                    "has no Dense or convolution kernel. Name a Dense or Conv layer, "
                    "or a kernel's variable path."
                )
            v = getattr(layer, spec[0])
            return Selection(v, v.path, spec[1], layer, "named by layer")
    for v in model.weights:
        if v.path == name or v.path.endswith("/" + name):
            layer = _owner(model, v)
            spec = kernel_channel_axes(layer) if layer is not None else None
            axes = spec[1] if spec and getattr(layer, spec[0]) is v else (-1,)
            return Selection(v, v.path, axes, layer, "named by path")
    with_kernels = [lay.name for lay in layers if kernel_channel_axes(lay)]
    raise ValueError(
        f"`kernels` names {name!r}, which is neither a layer name nor a variable "
        f"path of model {model.name!r}. Layers with kernels: {', '.join(with_kernels)}; "
        f"variable paths look like {model.weights[0].path!r}."
    )


def tracked_kernels(model, kernels: Sequence[str] = (), default: bool = True) -> list[Selection]:
    """The kernels a dynamics callback watches.

    Args:
        model: the model being trained (compiled, so its optimizer is known).
        kernels: extra kernels, each a layer name or a variable path.
        default: also watch the kernels the model's keras-wrs optimizer
            rescales, or, for any other optimizer, the model's
            scale-invariant kernels (`select_scale_invariant`).

    Returns:
        Selections in model order, default ones first, no duplicates; each
        has its owning `layer` where the model has one, and a `reason`
        starting with "named" when the user named it.

    Raises:
        ValueError: a name matches nothing, or nothing is left to watch.
    """
    out = []
    if default:
        try:
            out = list(_default_kernels(model))  # a copy: the entries are replaced below
        except ValueError as e:
            if not kernels:
                raise ValueError(
                    f"{e} To watch other kernels, name them: `kernels=[layer name "
                    "or variable path, ...]`."
                ) from None
    for name in kernels:
        s = _named_kernel(model, name)
        same = [i for i, t in enumerate(out) if t.variable is s.variable]
        if same:  # keep its place, but remember the user asked for it
            out[same[0]] = dataclasses.replace(out[same[0]], reason=s.reason)
        else:
            out.append(s)
    if not out:
        raise ValueError(
            "Nothing to watch: `default=False` and `kernels` is empty. Pass "
            "`kernels=[layer name or variable path, ...]`."
        )
    return out


def kernel_keys(selections: Sequence[Selection]) -> list[str]:
    """Short names for logs: the layer name where unique, else the path."""
    names = [s.layer.name if s.layer is not None else s.path for s in selections]
    return [n if names.count(n) == 1 else s.path for n, s in zip(names, selections, strict=True)]


def outside_graph(model, selections: Sequence[Selection]) -> list[Selection]:
    """The selections whose layer is not a layer of `model`'s graph.

    Such a layer is called inside a subclassed layer or a nested model, so its
    input is no tensor of `model`'s graph (what `SpanNoise` reads). Selections
    without a layer are not listed.
    """
    in_graph = {id(layer) for layer in model.layers}
    return [s for s in selections if s.layer is not None and id(s.layer) not in in_graph]

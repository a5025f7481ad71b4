"""The `rescale=` argument: which kernels an optimizer rescales.

`rescale` may be a model, a list of variables or paths, a regex, a callable or
a `{path: channel_axes}` dict. It is checked when the optimizer is created
(`validate_rescale`) and resolved against the optimizer's variables when it is
built (`resolve_rescale`); `serialize_rescale` gives its `get_config` form.
"""

from __future__ import annotations

import inspect
import re

import keras

from keras_wrs import math as wmath
from keras_wrs.selection import Selection, select_scale_invariant

__all__ = [
    "validate_rescale",
    "resolve_rescale",
    "serialize_rescale",
    "variable_path",
    "checked_reduction_axes",
]

_ACCEPTED = (
    "a Keras model (automatic selection), a list of variables or variable "
    "paths, a regex on `variable.path`, a callable `variable -> bool`, a dict "
    "`{path: channel_axes}`, or `[]` to turn rescaling off"
)
_DEFAULT_AXES = (-1,)


def validate_rescale(rescale):
    """Checks the form of `rescale` early; returns it, normalized.

    Raises:
        ValueError: for an invalid regex or an unsupported type.
    """
    if rescale is None or isinstance(rescale, keras.Model):
        return rescale
    if callable(rescale):
        return _checked_filter(rescale)
    if isinstance(rescale, str):
        try:
            re.compile(rescale)
        except re.error as e:
            raise ValueError(
                f"`rescale` is not a valid regular expression ({e}). Received: rescale={rescale!r}"
            ) from None
        return rescale
    if isinstance(rescale, dict):
        return {str(k): _validate_axes(k, v) for k, v in rescale.items()}
    if isinstance(rescale, (list, tuple)):
        for item in rescale:
            if not isinstance(item, (str, Selection, keras.Variable)) and not _is_raw_variable(
                item
            ):
                raise ValueError(
                    "`rescale` as a list must hold variables or variable paths; "
                    f"it holds {type(item).__name__} {item!r}. Accepted: {_ACCEPTED}."
                )
        return list(rescale)
    raise ValueError(f"`rescale` must be {_ACCEPTED}. Received: rescale={rescale!r}")


def _checked_filter(fn):
    """A `variable -> bool` callable; Layers, classes and other callables are refused."""
    if isinstance(fn, (keras.Layer, type)):
        what = (
            f"the class {fn.__name__}"
            if isinstance(fn, type)
            else f"the {type(fn).__name__} {getattr(fn, 'name', '')!r}"
        )
        raise ValueError(
            f"`rescale` was given {what}, which is not a filter `variable -> bool`. For "
            "automatic selection pass the whole model (`rescale=model`); for one layer's "
            "kernel pass `rescale=[layer.kernel]`. Accepted: " + _ACCEPTED + "."
        )
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise ValueError(
            f"`rescale` callable {fn!r} must take one argument (a variable) and return a "
            "bool, e.g. `lambda v: v.path.endswith('kernel')`. Accepted: " + _ACCEPTED + "."
        ) from None
    except ValueError:  # no signature to read (some builtins): called as given
        pass
    return fn


def _validate_axes(path, axes):
    axes = tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
    if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
        raise ValueError(
            f"`rescale` dict values must be integer channel axes (e.g. -1, or [-2, -1] "
            f"for DepthwiseConv kernels). Received: rescale={{{path!r}: {axes!r}}}"
        )
    return axes


def variable_path(v) -> str:
    """`v.path` for Keras variables; the name of a raw backend variable (tf.Variable)."""
    path = getattr(v, "path", None)
    return path if isinstance(path, str) else str(getattr(v, "name", repr(v)))


def _is_raw_variable(item):
    """A backend variable Keras optimizers accept beside keras.Variable (tf.Variable)."""
    return all(hasattr(item, a) for a in ("assign", "shape", "dtype", "name"))


def serialize_rescale(rescale):
    """JSON form of an unresolved `rescale` (before the optimizer is built)."""
    if isinstance(rescale, keras.Model):
        return {s.path: list(s.channel_axes) for s in select_scale_invariant(rescale)}
    if rescale is None or isinstance(rescale, str):
        return rescale
    if isinstance(rescale, dict):
        return {k: list(v) for k, v in rescale.items()}
    if isinstance(rescale, list):
        return {_path(x): list(_axes(x)) for x in rescale}
    raise ValueError(
        "A `rescale` callable cannot be saved before the optimizer is built. "
        "Build it first (`optimizer.build(model.trainable_variables)` or one "
        "training step), or pass a list of variables or a regex instead."
    )


def _path(item):
    return (
        item
        if isinstance(item, str)
        else item.path
        if isinstance(item, Selection)
        else variable_path(item)
    )


def _axes(item):
    return item.channel_axes if isinstance(item, Selection) else _DEFAULT_AXES


def resolve_rescale(rescale, var_list) -> list[Selection]:
    """The `Selection`s of `rescale` among `var_list`, in `var_list` order.

    Args:
        rescale: a value accepted by `validate_rescale`.
        var_list: the variables the optimizer is built with.

    Raises:
        ValueError: `rescale` unset, selecting nothing where something was
            asked for, or naming variables that are not in `var_list`.
    """
    if rescale is None:
        raise ValueError(
            "`rescale` is not set, so the optimizer does not know which kernels "
            "to rescale. Pass `rescale=model` for automatic selection of the "
            "kernels that feed BatchNormalization, a list of variables, a regex "
            "on variable paths, or `rescale=[]` to turn rescaling off."
        )
    if isinstance(rescale, keras.Model):
        return _from_model(rescale, var_list)
    if isinstance(rescale, str):
        chosen = [v for v in var_list if re.search(rescale, variable_path(v))]
        if not chosen:
            raise ValueError(
                f"`rescale` regex {rescale!r} matches no trainable variable path. "
                f"Paths are like {_examples(var_list)}."
            )
        return [_selection(v, f"path matches {rescale!r}") for v in chosen]
    if callable(rescale):
        chosen = [v for v in var_list if rescale(v)]
        if not chosen:
            raise ValueError(
                f"`rescale` callable {rescale!r} selects no trainable variable; "
                "pass `rescale=[]` to turn rescaling off."
            )
        return [_selection(v, "selected by callable") for v in chosen]
    items = rescale.items() if isinstance(rescale, dict) else [(x, _axes(x)) for x in rescale]
    return [_find(item, axes, var_list) for item, axes in items]


def _selection(v, reason, axes=_DEFAULT_AXES):
    return Selection(v, variable_path(v), tuple(axes), reason=reason)


def _from_model(model, var_list):
    keys = {id(v) for v in var_list}
    found = select_scale_invariant(model)
    chosen = [s for s in found if id(s.variable) in keys]
    if not chosen:
        raise ValueError(
            f"None of the scale-invariant kernels of model {model.name!r} "
            f"({', '.join(s.path for s in found)}) is among the variables this "
            "optimizer is built with: was `rescale=` given a different model "
            "than the one compiled, or are those layers frozen?"
        )
    return chosen


def _find(item, axes, var_list):
    if not isinstance(item, str):
        v = item.variable if isinstance(item, Selection) else item
        if not any(v is w for w in var_list):
            raise ValueError(
                f"`rescale` lists variable {variable_path(v)!r}, which is not among the "
                "variables this optimizer is built with (the compiled model's "
                "trainable variables). Pass kernels of the model you compile."
            )
        return item if isinstance(item, Selection) else _selection(v, "listed", axes)
    return Selection(_by_path(item, var_list), item, tuple(axes), reason="listed by path")


def _by_path(path, var_list):
    """Exact path, else a unique match on whole trailing components.

    Sequential models change paths on reload (`net/c1/kernel` becomes
    `c1/kernel`), so a saved path may be a suffix of the new one or the other
    way round.
    """
    paths = [(variable_path(v), v) for v in var_list]
    exact = [v for p, v in paths if p == path]
    if exact:
        return exact[0]
    near = [v for p, v in paths if p.endswith("/" + path) or path.endswith("/" + p)]
    if len(near) == 1:
        return near[0]
    what = "matches several" if near else "matches no"
    raise ValueError(
        f"`rescale` path {path!r} {what} trainable variable of the model "
        f"(paths are like {_examples(var_list)}). Pass the kernels of the "
        "model you compile."
    )


def _examples(var_list):
    return ", ".join(repr(variable_path(v)) for v in list(var_list)[:3])


def checked_reduction_axes(selection, granularity):
    """Reduction axes of a selected variable, refusing shapes that have no filters."""
    shape, path = tuple(selection.variable.shape), selection.path
    if len(shape) == 0:
        raise ValueError(
            f"`rescale` selects the scalar variable {path!r}: a scalar has no filter "
            "to rescale. Select kernels only (e.g. a regex ending in 'kernel$')."
        )
    bad = [a for a in selection.channel_axes if not -len(shape) <= a < len(shape)]
    if bad:
        raise ValueError(
            f"`rescale` gives variable {path!r} of shape {shape} channel axes "
            f"{tuple(selection.channel_axes)}; axes {bad} are out of range for rank "
            f"{len(shape)}. Use axes in [-{len(shape)}, {len(shape) - 1}] (-1 for Conv "
            "and Dense kernels, -2 for Conv*Transpose)."
        )
    axes = wmath.reduction_axes(len(shape), selection.channel_axes, granularity)
    if not axes:
        raise ValueError(
            f"`rescale` selects variable {path!r} of shape {shape}, whose channel axes "
            f"{tuple(selection.channel_axes)} leave nothing to sum a filter norm over: "
            "each element would be set to +-target. A 1-D variable is a bias or a "
            "BatchNorm scale, not a kernel: narrow the selection (e.g. a regex ending "
            "in 'kernel$'), or pass granularity='layer' for one norm over the whole variable."
        )
    return axes

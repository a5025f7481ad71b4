"""Keras optimizers that rescale scale-invariant kernels after every step.

One mixin, `WRSMixin`, adds weight rescaling to any Keras optimizer through
its public hooks (`build`, `update_step`, `finalize_variable_values`,
`get_config`, `exclude_from_weight_decay`); `wrs(cls)` applies it to a class,
yours included. `SGD`, `Adam`, `AdamW`, `RMSprop`, `Nadam`, `Lion` and `Lamb`
are the Keras optimizers of the same name with the mixin applied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math as _pymath
import re

import keras
from keras import ops

from keras_wrs import math as wmath
from keras_wrs.selection import Selection
from keras_wrs.resolve import resolve_rescale, serialize_rescale, validate_rescale

__all__ = ["WRSMixin", "wrs", "SGD", "Adam", "AdamW", "RMSprop", "Nadam", "Lion", "Lamb"]

WRS_ARGS_DOC = """
    Weight rescaling (keras-wrs) arguments:
        rescale: which kernels to rescale after each step. A Keras model
            (automatic selection of the kernels that feed BatchNormalization,
            see `keras_wrs.select_scale_invariant`), a list of variables or
            variable paths, a regex searched in `variable.path`, a callable
            `variable -> bool`, or a dict `{path: channel_axes}` (the form
            `get_config` writes). `[]` turns rescaling off; leaving it unset
            raises when the optimizer is built. Kernels chosen by list, regex
            or callable keep output channels on their last axis.
        target_norm: `1.0` (default), any positive float, or `"initial"`:
            each filter's norm when the optimizer is built, kept as optimizer
            state so that it survives checkpoints.
        granularity: `"filter"` (default: one norm per output channel, the
            unit BatchNorm normalizes) or `"layer"` (one norm per kernel).
        rescale_every: rescale after every n-th step (default 1).

    Rescaling runs after the parent's update, in float32; a filter of norm
    zero stays zero. Optimizer state (momentum, moments) is left alone.
    `weight_decay`, if given, applies only to variables that are not
    rescaled.
"""


@dataclasses.dataclass
class _Rescaled:
    """A selected kernel, its reduction axes and its target (float or Variable)."""

    selection: Selection
    axes: tuple
    target: object


@dataclasses.dataclass
class _WRSState:
    """Held in one untracked object so Keras never mistakes kernels for state."""

    spec: object
    user_wd_exclusions: tuple = (None, None)
    rescaled: dict = dataclasses.field(default_factory=dict)  # var index -> _Rescaled


def _validate_target(target_norm):
    if target_norm == "initial" and isinstance(target_norm, str):
        return target_norm
    ok = isinstance(target_norm, (int, float)) and not isinstance(target_norm, bool)
    if not ok or not _pymath.isfinite(target_norm) or target_norm <= 0:
        raise ValueError(
            "`target_norm` must be a positive finite number or the string "
            f'"initial". Received: target_norm={target_norm!r}'
        )
    return float(target_norm)


def _validate_every(rescale_every):
    if isinstance(rescale_every, bool) or not isinstance(rescale_every, int) or rescale_every < 1:
        raise ValueError(
            "`rescale_every` must be an integer >= 1 (rescale after every n-th "
            f"step). Received: rescale_every={rescale_every!r}"
        )
    return rescale_every


class WRSMixin:
    """Adds weight rescaling to a Keras optimizer class. Use `wrs(cls)`."""

    def __init__(
        self, *args, rescale=None, target_norm=1.0, granularity="filter", rescale_every=1, **kwargs
    ):
        super().__init__(*args, **kwargs)
        wmath.reduction_axes(1, (-1,), granularity)  # validates granularity
        self.target_norm = _validate_target(target_norm)
        self.granularity = granularity
        self.rescale_every = _validate_every(rescale_every)
        self._wrs = _WRSState(spec=validate_rescale(rescale))

    @property
    def rescale_selection(self) -> list[Selection]:
        """The kernels this optimizer rescales (empty until it is built)."""
        return [r.selection for r in self._wrs.rescaled.values()]

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        self._wrs.user_wd_exclusions = (var_list, var_names)
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def build(self, var_list):
        selections = resolve_rescale(self._wrs.spec, var_list)
        user_list, user_names = self._wrs.user_wd_exclusions
        super().exclude_from_weight_decay(
            var_list=list(user_list or []) + [s.variable for s in selections],
            var_names=user_names,
        )
        super().build(var_list)
        self._wrs.rescaled = {
            self._get_variable_index(s.variable): self._make_rescaled(s) for s in selections
        }

    def _make_rescaled(self, selection):
        v = selection.variable
        axes = wmath.reduction_axes(len(v.shape), selection.channel_axes, self.granularity)
        if self.target_norm != "initial":
            return _Rescaled(selection, axes, self.target_norm)
        shape = tuple(1 if a in axes else d for a, d in enumerate(v.shape))
        # Reading the kernel inside a traced train step breaks XLA: read it
        # eagerly, outside any trace.
        with _init_scope():
            initial = keras.ops.convert_to_numpy(wmath.filter_norms(v, axes))
        target = self.add_variable(
            shape, initializer=lambda shape, dtype: ops.cast(initial, dtype),
            dtype="float32", name=_var_name(v.path) + "_target_norm",
        )
        return _Rescaled(selection, axes, target)

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate)
        r = self._wrs.rescaled.get(self._get_variable_index(variable))
        if r is not None:
            self._rescale(variable, r)

    def _rescale(self, variable, r):
        new = wmath.rescale(variable, r.target, r.axes)
        if self.rescale_every > 1:
            due = ops.equal((self.iterations + 1) % self.rescale_every, 0)
            new = ops.where(due, new, ops.cast(variable, "float32"))
        self.assign(variable, ops.cast(new, variable.dtype))

    def finalize_variable_values(self, var_list):
        """Writes EMA weights back (Keras), then projects them onto the targets."""
        super().finalize_variable_values(var_list)
        if self.use_ema:
            for r in self._wrs.rescaled.values():
                v = r.selection.variable
                v.assign(ops.cast(wmath.rescale(v, r.target, r.axes), v.dtype))

    def get_config(self):
        config = super().get_config()
        rescale = (
            {s.path: list(s.channel_axes) for s in self.rescale_selection}
            if self.built
            else serialize_rescale(self._wrs.spec)
        )
        config.update(
            rescale=rescale,
            target_norm=self.target_norm,
            granularity=self.granularity,
            rescale_every=self.rescale_every,
        )
        return config


def _var_name(path):
    return re.sub(r"[^A-Za-z0-9_]", "_", path)


def _init_scope():
    """Leaves any traced function (TensorFlow); other backends build eagerly."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.init_scope()


def wrs(optimizer_class, name=None):
    """Returns `optimizer_class` with weight rescaling added.

    Args:
        optimizer_class: a `keras.optimizers.Optimizer` subclass, Keras's own
            or yours.
        name: class name; defaults to the parent's name.

    Returns:
        A subclass accepting every argument of `optimizer_class` plus the WRS
        arguments, registered for `.keras` saving under package "keras_wrs".

    Example:
        >>> MySGD = keras_wrs.wrs(keras.optimizers.SGD, name="MySGD")
        >>> opt = MySGD(0.1, momentum=0.9, rescale=model)
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise TypeError(
            "`optimizer_class` must be a subclass of keras.optimizers.Optimizer. "
            f"Received: optimizer_class={optimizer_class!r}"
        )
    if issubclass(optimizer_class, WRSMixin):
        return optimizer_class
    name = name or optimizer_class.__name__
    doc = f"{optimizer_class.__name__} with weight rescaling (keras-wrs).\n{WRS_ARGS_DOC}"
    cls = type(name, (WRSMixin, optimizer_class), {"__doc__": doc, "__module__": __name__})
    return keras.saving.register_keras_serializable(package="keras_wrs", name=name)(cls)


SGD = wrs(keras.optimizers.SGD)
Adam = wrs(keras.optimizers.Adam)
AdamW = wrs(keras.optimizers.AdamW)
RMSprop = wrs(keras.optimizers.RMSprop)
Nadam = wrs(keras.optimizers.Nadam)
Lion = wrs(keras.optimizers.Lion)
Lamb = wrs(keras.optimizers.Lamb)

"""Keras optimizers that rescale scale-invariant kernels after every step.

One mixin, `WRSMixin`, adds weight rescaling to any Keras optimizer through
its public hooks (`build`, `update_step`, `finalize_variable_values`,
`get_config`, `exclude_from_weight_decay`, `apply`); `wrs(cls)` applies it
to a class, yours included. `SGD`, `Adam`, `AdamW`, `RMSprop`, `Nadam`,
`Lion`, `Lamb`, `Adagrad`, `Adadelta`, `Adamax`, `Adafactor` and `Muon` are
the Keras optimizers of the same name with the mixin applied.

Where the rescale runs: after each variable's `update_step` (TensorFlow, JAX,
and PyTorch for classes Keras has no fused version of). On PyTorch, Keras's
own SGD, Adam, AdamW, RMSprop, Nadam, Lion, Adagrad, Adadelta and Adamax
update all variables at once through fused `torch._foreach_*` kernels in
`_backend_update_step` and never call `update_step`; their keras-wrs twins
derive from those fused classes and rescale right after that fused step (the
one private hook used, the one Keras's own backends override). When EMA
weights are written over the model (`ema_overwrite_frequency`), `apply`
projects them back onto the targets.
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
from keras_wrs.resolve import checked_reduction_axes, resolve_rescale, serialize_rescale, validate_rescale

__all__ = [
    "WRSMixin", "wrs", "SGD", "Adam", "AdamW", "RMSprop", "Nadam", "Lion", "Lamb",
    "Adagrad", "Adadelta", "Adamax", "Adafactor", "Muon",
]

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

    _wrs_fused = False  # set by `wrs()` for Keras's fused PyTorch classes

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
        axes = checked_reduction_axes(selection, self.granularity)
        if self.target_norm != "initial":
            return _Rescaled(selection, axes, self.target_norm)
        shape = tuple(1 if a in axes else d for a, d in enumerate(v.shape))
        # Reading the kernel inside a traced train step breaks XLA: read it
        # eagerly, outside any trace.
        with _init_scope():
            initial = keras.ops.convert_to_numpy(wmath.filter_norms(v, axes))
        target = self.add_variable(
            shape, initializer=lambda shape, dtype: ops.cast(initial, dtype),
            dtype="float32", name=_var_name(selection.path) + "_target_norm",
        )
        return _Rescaled(selection, axes, target)

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate)
        r = self._wrs.rescaled.get(self._get_variable_index(variable))
        if r is not None:
            self._rescale(variable, r, self._due_in_update_step())

    def _due_in_update_step(self):
        if self.rescale_every == 1:
            return None
        return ops.equal((self.iterations + 1) % self.rescale_every, 0)

    def _rescale(self, variable, r, due=None):
        new = wmath.rescale(variable, r.target, r.axes)
        if due is not None:
            new = ops.where(due, new, ops.cast(variable, "float32"))
        self.assign(variable, ops.cast(new, variable.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras's fused PyTorch optimizers update every variable here at once
        # and never call `update_step`: rescale right after, at the point
        # `update_step` would have (before EMA, on update steps only). This
        # is the hook Keras's backends override for the same reason.
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        if not self._wrs_fused:
            return
        due = self._due_in_update_step()
        for variable in trainable_variables:
            r = self._wrs.rescaled.get(self._get_variable_index(variable))
            if r is not None:
                self._rescale(variable, r, due)

    def apply(self, grads, trainable_variables=None):
        """Keras's `apply`, then the projection of EMA weights written over the model.

        With `use_ema=True` and `ema_overwrite_frequency=n`, Keras writes the
        moving averages over the weights every n steps, after every
        `update_step` has run; the averages of unit filters are shorter than
        the target, so the overwritten kernels are projected back.
        """
        overwrites = bool(self.use_ema and self.ema_overwrite_frequency)
        before = ops.add(self.iterations, 0) if overwrites else None  # a copy of the count
        super().apply(grads, trainable_variables)
        if not (overwrites and len(grads) and self._wrs.rescaled):
            return
        # Keras's own test for the overwrite, on the count before the step.
        due = ops.equal((before + 1) % self.ema_overwrite_frequency, 0)
        for i, r in self._wrs.rescaled.items():
            self._rescale(self._trainable_variables[i], r, due)

    def _apply_weight_decay(self, variables):
        # Keras's PyTorch optimizer calls `torch._foreach_mul_` on the list of
        # decayed variables, which fails when that list is empty (every
        # variable rescaled, hence excluded from decay).
        if self.weight_decay is None or not any(self._use_weight_decay(v) for v in variables):
            return
        super()._apply_weight_decay(variables)

    def __reduce__(self):
        # Keras pickles an optimizer as a `.keras` archive loaded back by
        # `cls._unpickle_model`; a class made by `wrs()` is no module
        # attribute, so the loader is taken from Keras's base class, and the
        # archive finds the class through its registered name.
        _, args = super().__reduce__()
        return keras.optimizers.Optimizer._unpickle_model, args

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


# Optimizers that rebuild the weights from their own state every step: a
# rescaled weight is overwritten from that state at the next step, so the
# result would be neither the published algorithm nor WRS.
_REFUSED = {
    "Ftrl": (
        "FTRL recomputes every weight from its accumulators (`linear`, "
        "`accumulator`) at each step, and folds the current weight into "
        "`linear`. Rescaling the weight does not rescale that state, so the "
        "next step starts from the unrescaled iterate again"
    ),
    "ScheduleFreeAdamW": (
        "Schedule-Free AdamW stores an interpolation of two sequences in the "
        "weights and recovers the averaged sequence from them at each step. "
        "Rescaling the stored interpolation corrupts that recovery"
    ),
}
# Wrappers whose `apply` hands the step to inner optimizers: a mixin on the
# wrapper would never run.
_WRAPPERS = {
    "LossScaleOptimizer": "keras.optimizers.LossScaleOptimizer(keras_wrs.optimizers.SGD(..., rescale=model))",
    "MultiOptimizer": (
        "keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap("
        "default_optimizer=keras_wrs.optimizers.SGD(..., rescale=model), ...))"
    ),
}
_OWN_NAMES = {}  # registered name of each class this module defines -> its Keras parent
_TWINS = {}  # (parent class, name) -> class made by wrs()


def _check_wrappable(optimizer_class):
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise TypeError(
            "`optimizer_class` must be a subclass of keras.optimizers.Optimizer. "
            f"Received: optimizer_class={optimizer_class!r}"
        )
    for base in optimizer_class.__mro__:
        keras_cls = getattr(keras.optimizers, base.__name__, None)
        if base is not keras_cls:
            continue
        if base.__name__ in _WRAPPERS:
            raise ValueError(
                f"`wrs()` cannot add rescaling to {base.__name__}: it hands each step "
                "to the optimizers it wraps, so rescaling on the wrapper would never "
                f"run. Wrap a keras-wrs optimizer instead: {_WRAPPERS[base.__name__]}. "
                f"Received: optimizer_class={optimizer_class.__name__}"
            )
        if base.__name__ in _REFUSED:
            raise ValueError(
                f"`wrs()` refuses {base.__name__}: {_REFUSED[base.__name__]}. Use "
                "it without keras-wrs, or pick an optimizer that updates the weights "
                "in place (SGD, Adam, AdamW, RMSprop, Nadam, Lion, Lamb, Adagrad, "
                f"Adadelta, Adamax, Adafactor, Muon). Received: optimizer_class={optimizer_class.__name__}"
            )


def _check_name(optimizer_class, name):
    """A user's class may never take the registered name of one of ours."""
    if name in _OWN_NAMES:
        raise ValueError(
            f"The class name {name!r} is the registered name of keras-wrs's own "
            f"`keras_wrs.optimizers.{name}` (keras.optimizers.{_OWN_NAMES[name]} "
            "with rescaling); a second class under it would replace it when models "
            f"are saved and loaded. Pass another name: wrs({optimizer_class.__name__}, "
            f"name='My{name}'). Received: name={name!r}"
        )


def _fast_base(optimizer_class):
    """The class Keras instantiates for `optimizer_class` on this backend.

    On PyTorch, Keras swaps its exact optimizer classes for subclasses that
    update all variables at once with fused `torch._foreach_*` kernels
    (`keras/src/backend/torch/optimizers`); subclasses of Keras's classes do
    not get the swap. Deriving from the swapped class keeps the fused path.
    """
    if keras.backend.backend() != "torch":
        return optimizer_class
    return type(optimizer_class.__new__(optimizer_class))


def wrs(optimizer_class, name=None):
    """Returns `optimizer_class` with weight rescaling added.

    Args:
        optimizer_class: a `keras.optimizers.Optimizer` subclass, Keras's own
            or yours. `LossScaleOptimizer` and `MultiOptimizer` are refused
            (wrap keras-wrs optimizers in them instead), and so are `Ftrl` and
            `ScheduleFreeAdamW`, which rebuild the weights from their state
            every step.
        name: class name and registered name; defaults to the parent's name.
            The names of keras-wrs's own classes (`SGD`, `Adam`, ...) are
            taken: `wrs(keras.optimizers.SGD)` returns `keras_wrs.optimizers.SGD`
            itself, and another class of that name needs `name=`.

    Returns:
        A subclass accepting every argument of `optimizer_class` plus the WRS
        arguments, registered for `.keras` saving under package "keras_wrs".
        Calling `wrs` again with the same class and name returns the same
        class.

    Raises:
        TypeError: `optimizer_class` is not an optimizer class.
        ValueError: a refused optimizer, or a name keras-wrs owns.

    Example:
        >>> MySGD = keras_wrs.wrs(keras.optimizers.SGD, name="MySGD")
        >>> opt = MySGD(0.1, momentum=0.9, rescale=model)
    """
    _check_wrappable(optimizer_class)
    if issubclass(optimizer_class, WRSMixin):
        return optimizer_class
    key = (optimizer_class, name or optimizer_class.__name__)
    if key in _TWINS:
        return _TWINS[key]
    _check_name(optimizer_class, key[1])
    cls = _make_class(optimizer_class, key[1])
    _TWINS[key] = cls
    return cls


def _make_class(optimizer_class, name):
    base = _fast_base(optimizer_class)
    doc = f"{optimizer_class.__name__} with weight rescaling (keras-wrs).\n{WRS_ARGS_DOC}"
    attrs = {"__doc__": doc, "__module__": __name__, "_wrs_fused": base is not optimizer_class}
    cls = type(name, (WRSMixin, base), attrs)
    return keras.saving.register_keras_serializable(package="keras_wrs", name=name)(cls)


def _own(optimizer_class):
    cls = wrs(optimizer_class)
    _OWN_NAMES[cls.__name__] = optimizer_class.__name__
    return cls


SGD = _own(keras.optimizers.SGD)
Adam = _own(keras.optimizers.Adam)
AdamW = _own(keras.optimizers.AdamW)
RMSprop = _own(keras.optimizers.RMSprop)
Nadam = _own(keras.optimizers.Nadam)
Lion = _own(keras.optimizers.Lion)
Lamb = _own(keras.optimizers.Lamb)
Adagrad = _own(keras.optimizers.Adagrad)
Adadelta = _own(keras.optimizers.Adadelta)
Adamax = _own(keras.optimizers.Adamax)
Adafactor = _own(keras.optimizers.Adafactor)
Muon = _own(keras.optimizers.Muon)

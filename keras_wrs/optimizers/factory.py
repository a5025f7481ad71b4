"""`wrs(cls)`: any Keras optimizer class with weight rescaling, and the refusals.

Keras's `Ftrl` and `ScheduleFreeAdamW` rebuild the weights from their state
each step, and `LossScaleOptimizer` / `MultiOptimizer` hand the step to inner
optimizers: those are refused with the reason and what to do instead.
"""

from __future__ import annotations

import keras

from keras_wrs._backend import fused_base
from keras_wrs.optimizers.wrs_mixin import WRS_ARGS_DOC, WRSMixin

__all__ = ["wrs", "own_class", "base_optimizer"]

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
    if not (
        isinstance(optimizer_class, type)
        and issubclass(optimizer_class, keras.optimizers.Optimizer)
    ):
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
    base = fused_base(optimizer_class)
    doc = f"{optimizer_class.__name__} with weight rescaling (keras-wrs).\n{WRS_ARGS_DOC}"
    # The public module, whatever file defines the class: pickles and `.keras`
    # files written by 0.1.0 name it.
    attrs = {
        "__doc__": doc,
        "__module__": "keras_wrs.optimizers",
        "_wrs_fused": base is not optimizer_class,
    }
    cls = type(name, (WRSMixin, base), attrs)
    return keras.saving.register_keras_serializable(package="keras_wrs", name=name)(cls)


def own_class(optimizer_class):
    """`wrs(optimizer_class)` under the parent's name, reserved for keras-wrs's own classes."""
    cls = wrs(optimizer_class)
    _OWN_NAMES[cls.__name__] = optimizer_class.__name__
    return cls


def base_optimizer(optimizer):
    """The optimizer doing the updates (unwraps `LossScaleOptimizer`)."""
    return getattr(optimizer, "inner_optimizer", optimizer)

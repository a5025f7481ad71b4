"""Corrected weight decay: SGDC and AdamC (Defazio, arXiv 2506.02285).

Decoupled weight decay multiplies the weights by `1 - lr_t * wd` at each step.
For normalized layers that sets the equilibrium ratio ||g|| / ||w|| to a value
that moves with the learning-rate schedule; decaying by `lr_t**2 / lr_max * wd`
instead keeps it fixed through the schedule (timm's
`corrected_weight_decay=True`).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_wrs._backend import fused_base

__all__ = ["SGDC", "AdamC", "corrected_decay_rate"]

CORRECTED_ARGS_DOC = """
    Corrected weight decay arguments:
        corrected_weight_decay: `True` (default): each step decays the
            weights by `learning_rate_t**2 / max_learning_rate * weight_decay`
            instead of Keras's `learning_rate_t * weight_decay`. `False` is
            the Keras parent, bit for bit.
        max_learning_rate: the peak of the learning-rate schedule. Defaults
            to `learning_rate` when that is a number; required when it is a
            schedule or a callable.

    The decay runs right before each variable's update, as Keras's does, and
    skips the variables excluded with `exclude_from_weight_decay`.

    References:
        Defazio, "Why Gradients Rapidly Increase Near the End of Training",
        arXiv 2506.02285; timm's `corrected_weight_decay=True`.
"""


def corrected_decay_rate(learning_rate, max_learning_rate, weight_decay):
    """Fraction of the weights removed by one step: `lr_t**2 / lr_max * wd`."""
    lr = ops.cast(learning_rate, "float32")
    return lr * lr / max_learning_rate * weight_decay


def _peak(learning_rate, max_learning_rate):
    if max_learning_rate is None:
        if isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool):
            return float(learning_rate)
        raise ValueError(
            "`max_learning_rate` is required with corrected weight decay when `learning_rate` "
            f"is a schedule or a callable: pass the schedule's peak value. Received: "
            f"learning_rate={learning_rate!r}, max_learning_rate=None"
        )
    ok = isinstance(max_learning_rate, (int, float)) and not isinstance(max_learning_rate, bool)
    if not ok or not math.isfinite(max_learning_rate) or max_learning_rate <= 0:
        raise ValueError(
            "`max_learning_rate` must be a positive number (the peak of the learning-rate "
            f"schedule). Received: max_learning_rate={max_learning_rate!r}"
        )
    return float(max_learning_rate)


class _CorrectedDecay:
    """Replaces Keras's decoupled decay by the corrected one (see module docstring)."""

    _fused = False  # set for Keras's fused PyTorch classes

    def __init__(self, *args, corrected_weight_decay=True, max_learning_rate=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(corrected_weight_decay, bool):
            raise ValueError(
                "`corrected_weight_decay` must be True or False. Received: "
                f"corrected_weight_decay={corrected_weight_decay!r}"
            )
        self.corrected_weight_decay = corrected_weight_decay
        lr = kwargs.get("learning_rate", args[0] if args else self._default_learning_rate)
        self.max_learning_rate = (
            _peak(lr, max_learning_rate) if corrected_weight_decay else max_learning_rate
        )

    @property
    def _corrected(self):
        return self.corrected_weight_decay and bool(self.weight_decay)

    def _apply_weight_decay(self, variables):
        if not self._corrected:
            super()._apply_weight_decay(variables)

    def _decay(self, variable, learning_rate):
        if self._use_weight_decay(variable):
            rate = corrected_decay_rate(learning_rate, self.max_learning_rate, self.weight_decay)
            self.assign(variable, variable - variable * ops.cast(rate, variable.dtype))

    def update_step(self, gradient, variable, learning_rate):
        if self._corrected and not self._fused:
            self._decay(variable, learning_rate)
        super().update_step(gradient, variable, learning_rate)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras's fused PyTorch classes update every variable here and never
        # call `update_step`: decay first, as Keras's own decay runs first.
        if self._corrected and self._fused:
            for variable in trainable_variables:
                self._decay(variable, learning_rate)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            corrected_weight_decay=self.corrected_weight_decay,
            max_learning_rate=self.max_learning_rate,
        )
        return config


def _make(parent, name, default_lr):
    base = fused_base(parent)
    doc = f"Keras's `{parent.__name__}` with corrected weight decay ({name}).\n{CORRECTED_ARGS_DOC}"
    attrs = {
        "__doc__": doc,
        "__module__": __name__,
        "_fused": base is not parent,
        "_default_learning_rate": default_lr,
    }
    cls = type(name, (_CorrectedDecay, base), attrs)
    return keras.saving.register_keras_serializable(package="keras_wrs", name=name)(cls)


SGDC = _make(keras.optimizers.SGD, "SGDC", 0.01)
AdamC = _make(keras.optimizers.AdamW, "AdamC", 0.001)

"""The Keras hooks weight rescaling overrides beyond `build` and `update_step`.

Each override says which Keras behaviour it answers. `WRSMixin` inherits them;
every weight they change goes through `WRSMixin._rescale_selected`.

Where the rescale runs: after each variable's `update_step` (TensorFlow, JAX,
and PyTorch for classes Keras has no fused version of). On PyTorch, Keras's
own SGD, Adam, AdamW, RMSprop, Nadam, Lion, Adagrad, Adadelta and Adamax
update all variables at once through fused `torch._foreach_*` kernels in
`_backend_update_step` and never call `update_step`; their keras-wrs twins
derive from those fused classes and rescale right after that fused step (the
one private hook used, the one Keras's own backends override). `apply`
rescales the selected kernels Keras skipped for want of a gradient, and, when
EMA weights are written over the model (`ema_overwrite_frequency`), projects
them back onto the targets.
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

from keras_wrs.saving import overrides_compile

__all__ = ["KerasHookOverrides"]


class KerasHookOverrides:
    """Keras optimizer hooks overridden for weight rescaling (a base of `WRSMixin`)."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras's fused PyTorch optimizers update every variable here at once
        # and never call `update_step`: rescale right after, at the point
        # `update_step` would have (before EMA, on update steps only). This
        # is the hook Keras's backends override for the same reason.
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        if not self._wrs_fused:
            return
        due = self._due_in_update_step()
        pairs = (
            (v, self._wrs.rescaled.get(self._get_variable_index(v))) for v in trainable_variables
        )
        self._rescale_selected([(v, r) for v, r in pairs if r is not None], due)

    def apply(self, grads, trainable_variables=None):
        """Keras's `apply`, then two projections onto the targets.

        A selected kernel whose gradient is None (one that feeds only outputs
        the loss leaves out) gets no `update_step`: Keras skips it. It is
        rescaled here, so that every selected filter is at its target after
        every step, gradient or not.

        With `use_ema=True` and `ema_overwrite_frequency=n`, Keras writes the
        moving averages over the weights every n steps, after every
        `update_step` has run; the averages of unit filters are shorter than
        the target, so the overwritten kernels are projected back.
        """
        overwrites = bool(self.use_ema and self.ema_overwrite_frequency)
        without = [i for i, g in enumerate(grads) if g is None]
        # A copy of the count before the step, for the tests Keras makes on it.
        before = ops.add(self.iterations, 0) if overwrites or without else None
        super().apply(grads, trainable_variables)
        if without and self._wrs.rescaled:
            variables = (
                self._trainable_variables
                if trainable_variables is None
                else list(trainable_variables)
            )
            pairs = [
                (variables[i], self._wrs.rescaled.get(self._get_variable_index(variables[i])))
                for i in without
            ]
            due = (
                None if self.rescale_every == 1 else ops.equal((before + 1) % self.rescale_every, 0)
            )
            self._rescale_selected([(v, r) for v, r in pairs if r is not None], due)
        if not (overwrites and len(grads) and self._wrs.rescaled):
            return
        # Keras's own test for the overwrite, on the count before the step.
        due = ops.equal((before + 1) % self.ema_overwrite_frequency, 0)
        self._rescale_selected(
            [(self._trainable_variables[i], r) for i, r in self._wrs.rescaled.items()], due
        )

    def _apply_weight_decay(self, variables):
        # Keras's PyTorch optimizer calls `torch._foreach_mul_` on the list of
        # decayed variables, which fails when that list is empty (every
        # variable rescaled, hence excluded from decay).
        if self.weight_decay is None or not any(self._use_weight_decay(v) for v in variables):
            return
        super()._apply_weight_decay(variables)

    def save_own_variables(self, store):
        """Keras's save, and a warning where `keras.saving.load_model` would lose this optimizer.

        Keras restores an optimizer from a `.keras` file only for models whose
        `compile()` is Keras's own; KerasHub task models override it and come
        back with Adam, their saved optimizer state skipped.
        """
        super().save_own_variables(store)
        model = self.rescale_spec()
        if isinstance(model, keras.Model) and overrides_compile(model):
            warnings.warn(
                f"Model {model.name!r} ({type(model).__name__}) overrides compile(), so "
                f"keras.saving.load_model will not restore this {type(self).__name__} from a "
                ".keras file: the model comes back with its class's default optimizer and "
                "without this one's state. Load it with keras_wrs.load_model(path), which "
                "restores the optimizer, its selection and its state.",
                stacklevel=2,
            )

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
            self._rescale_selected([(r.selection.variable, r) for r in self._wrs.rescaled.values()])

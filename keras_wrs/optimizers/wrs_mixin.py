"""`WRSMixin`: the weight-rescaling algorithm, added to any Keras optimizer.

After the parent optimizer's update of a selected kernel, every output filter
`w_k` of it is set to `target * w_k / ||w_k||` (`keras_wrs.math.rescale`).
The kernels are chosen by the `rescale=` argument (`kernel_spec`), resolved
once when the optimizer is built. The Keras hooks that need more than
`build` / `update_step` (fused PyTorch steps, EMA overwrites, weight-decay
exclusion, pickling) live in `keras_hooks.py`; every write goes through
`_rescale_selected`.
"""

from __future__ import annotations

import dataclasses
import re

import keras
from keras import ops

from keras_wrs import math as wmath
from keras_wrs._backend import init_scope
from keras_wrs.checks import check_granularity, check_rescale_every, check_target_norm
from keras_wrs.optimizers.keras_hooks import KerasHookOverrides
from keras_wrs.optimizers.kernel_spec import (
    checked_reduction_axes,
    resolve_rescale,
    serialize_rescale,
    validate_rescale,
)
from keras_wrs.selection import Selection

__all__ = ["WRSMixin", "WRS_ARGS_DOC"]

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


class WRSMixin(KerasHookOverrides):
    """Adds weight rescaling to a Keras optimizer class. Use `wrs(cls)`."""

    _wrs_fused = False  # set by `wrs()` for Keras's fused PyTorch classes

    def __init__(
        self, *args, rescale=None, target_norm=1.0, granularity="filter", rescale_every=1, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.target_norm = check_target_norm(target_norm)
        self.granularity = check_granularity(granularity)
        self.rescale_every = check_rescale_every(rescale_every)
        self._wrs = _WRSState(spec=validate_rescale(rescale))

    def rescale_spec(self):
        """The `rescale=` argument as given (validated, not yet resolved).

        A method, not a property: Keras's saving walks an optimizer's public
        attributes, and a model reached from its own optimizer would loop.
        """
        return self._wrs.spec

    @property
    def rescale_selection(self) -> list[Selection]:
        """The kernels this optimizer rescales (empty until it is built)."""
        return [r.selection for r in self._wrs.rescaled.values()]

    @property
    def rescale_targets(self) -> list[tuple[Selection, object]]:
        """`(selection, target)` per rescaled kernel: a float, or the stored initial norms."""
        return [(r.selection, r.target) for r in self._wrs.rescaled.values()]

    def resolved_selection(self, var_list) -> list[Selection]:
        """The kernels `rescale=` selects among `var_list`, without building anything."""
        return resolve_rescale(self._wrs.spec, var_list)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        self._wrs.user_wd_exclusions = (var_list, var_names)
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def build(self, var_list):
        selections = self.resolved_selection(var_list)
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
        with init_scope():
            initial = keras.ops.convert_to_numpy(wmath.filter_norms(v, axes))
        target = self.add_variable(
            shape,
            initializer=lambda shape, dtype: ops.cast(initial, dtype),
            dtype="float32",
            name=_var_name(selection.path) + "_target_norm",
        )
        return _Rescaled(selection, axes, target)

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate)
        r = self._wrs.rescaled.get(self._get_variable_index(variable))
        if r is not None:
            self._rescale_selected([(variable, r)], self._due_in_update_step())

    def _due_in_update_step(self):
        if self.rescale_every == 1:
            return None
        return ops.equal((self.iterations + 1) % self.rescale_every, 0)

    def _rescale_selected(self, items, due=None):
        """The one place weights are rescaled: `w_k <- target * w_k / ||w_k||`.

        Args:
            items: `(variable, _Rescaled)` pairs.
            due: None (always), or a boolean tensor: rescale only where true.
        """
        for variable, r in items:
            new = wmath.rescale(variable, r.target, r.axes)
            if due is not None:
                new = ops.where(due, new, ops.cast(variable, "float32"))
            self.assign(variable, ops.cast(new, variable.dtype))

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

"""SGDP and AdamP: SGD and Adam without the radial part of the update on scale-invariant weights.

Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021 (arXiv 2006.08217); reference
implementation: the `adamp` package (0.3.0), which these classes follow step
for step (PyTorch's layout has output channels first, Keras's last: the
"channel" of the reference is the last axis here).
"""

from __future__ import annotations

import dataclasses
import math

import keras
from keras import ops

from keras_wrs import math as wmath
from keras_wrs.checks import as_real_number
from keras_wrs.optimizers.kernel_spec import (
    checked_reduction_axes,
    resolve_rescale,
    serialize_rescale,
    validate_rescale,
)

__all__ = ["SGDP", "AdamP", "projected_update", "COSINE"]

COSINE = "cosine"

PROJECTION_DOC = """
        delta: threshold of the cosine test: a weight is taken as
            scale-invariant when `|cos(grad, w)| < delta / sqrt(d)` for every
            output channel (`d` = elements per channel), else for the whole
            variable (`d` = its size). `0` never projects. Defaults to `0.1`.
        wd_ratio: weight decay is multiplied by this on projected variables.
            Defaults to `0.1`.
        projection: which variables are projected. `"cosine"` (default): the
            reference's test above, on every variable of rank >= 2, at every
            step. Or keras-wrs's selection, fixed when the optimizer is built:
            a Keras model (the kernels that feed BatchNormalization, see
            `keras_wrs.select_scale_invariant`), a list of variables or
            variable paths, a regex searched in `variable.path`, a callable
            `variable -> bool` or a dict `{path: channel_axes}`; the selected
            kernels are projected per output channel at every step and no
            other variable is. `[]` turns the projection off."""


def _check(name, value, low, high=math.inf, high_open=False, fix=""):
    number = as_real_number(value)
    ok = number is not None and math.isfinite(number) and low <= number
    if not ok or not (number < high if high_open else number <= high):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"`{name}` must be a number in {bound}{fix}. Received: {name}={value!r}")
    return float(number)


def projected_update(update, w, grad, delta, wd_ratio, epsilon):
    """The reference's projection step for one variable (Keras layout).

    Tries the output channels (last axis) first, then the whole variable: if
    `max |cos(grad_k, w_k)| < delta / sqrt(d)`, the radial part of `update`
    is removed on those slices and weight decay is scaled by `wd_ratio`.

    Args:
        update: the step direction (momentum buffer or Adam ratio).
        w: the variable before the step.
        grad: the gradient the cosine test looks at.
        delta, wd_ratio, epsilon: as in `SGDP`.

    Returns:
        `(update, decay_factor)`: float32 tensor and float32 scalar.
    """
    shape, ndim = tuple(w.shape), len(w.shape)
    channel, layer = tuple(range(ndim - 1)), tuple(range(ndim))
    per_channel = math.prod(shape[:-1])
    hit_channel = ops.max(wmath.abs_cosine(grad, w, channel, epsilon)) < delta / math.sqrt(
        per_channel
    )
    hit_layer = ops.max(wmath.abs_cosine(grad, w, layer, epsilon)) < delta / math.sqrt(
        math.prod(shape)
    )
    update = ops.cast(update, "float32")
    out = ops.where(
        hit_channel,
        wmath.remove_radial(update, w, channel, epsilon),
        ops.where(hit_layer, wmath.remove_radial(update, w, layer, epsilon), update),
    )
    factor = ops.where(ops.logical_or(hit_channel, hit_layer), wd_ratio, 1.0)
    return out, ops.cast(factor, "float32")


def _renamed(error):
    """A `rescale=` error from the shared spec reader, about `projection=`."""
    return ValueError(
        str(error).replace("`rescale`", "`projection`").replace("rescale=", "projection=")
    )


def _is_cosine(projection):
    return isinstance(projection, str) and projection == COSINE


def _validate_projection(projection):
    if _is_cosine(projection):
        return projection
    if projection is None:
        raise ValueError(
            '`projection` must be "cosine" (the reference\'s per-step test), a keras-wrs '
            "selection (a model, variables, paths, a regex, a callable or a dict) or [] "
            "(no projection). Received: projection=None"
        )
    try:
        return validate_rescale(projection)
    except ValueError as e:
        raise _renamed(e) from None


@dataclasses.dataclass
class _Projection:
    """What is projected; held in one untracked object so Keras never tracks kernels as state."""

    spec: object
    # variable index -> (path, channel axes, reduction axes), for a keras-wrs selection
    selected: dict = dataclasses.field(default_factory=dict)


class _ProjectedOptimizer(keras.optimizers.Optimizer):
    """Shared machinery of SGDP and AdamP: arguments, selection, decay, config."""

    def __init__(
        self, learning_rate, epsilon, delta, wd_ratio, projection, nesterov, weight_decay, **kwargs
    ):
        weight_decay = None if weight_decay is None else _check("weight_decay", weight_decay, 0.0)
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        self.epsilon = _check("epsilon", epsilon, 0.0)
        if self.epsilon == 0:
            raise ValueError(
                "`epsilon` must be > 0: it guards the divisions by weight and gradient "
                f"norms. Received: epsilon={epsilon!r}"
            )
        self.delta = _check("delta", delta, 0.0, fix=" (0 never projects)")
        self.wd_ratio = _check("wd_ratio", wd_ratio, 0.0)
        if not isinstance(nesterov, bool):
            raise ValueError(f"`nesterov` must be True or False. Received: nesterov={nesterov!r}")
        self.nesterov = nesterov
        self._projection = _Projection(_validate_projection(projection))

    @property
    def projection(self):
        """`"cosine"`, or the keras-wrs selection as given (resolved at build)."""
        return self._projection.spec

    @property
    def projected_selection(self):
        """`{variable path: channel axes}` of a keras-wrs selection (empty in cosine mode or unbuilt)."""
        return {path: channel for path, channel, _ in self._projection.selected.values()}

    def build(self, var_list):
        chosen = []
        if not _is_cosine(self.projection):
            try:
                chosen = [
                    (s, checked_reduction_axes(s, "filter"))
                    for s in resolve_rescale(self.projection, var_list)
                ]
            except ValueError as e:
                raise _renamed(e) from None
        super().build(var_list)
        self._projection.selected = {
            self._get_variable_index(s.variable): (s.path, tuple(s.channel_axes), axes)
            for s, axes in chosen
        }

    def _apply_weight_decay(self, variables):
        # The decay of SGDP/AdamP depends on each variable's projection test,
        # so it runs inside `update_step`.
        return

    def _project(self, update, variable, gradient):
        if len(variable.shape) < 2 and _is_cosine(self.projection):
            return ops.cast(update, "float32"), 1.0
        if _is_cosine(self.projection):
            return projected_update(
                update, variable, gradient, self.delta, self.wd_ratio, self.epsilon
            )
        selected = self._projection.selected.get(self._get_variable_index(variable))
        if selected is None:
            return ops.cast(update, "float32"), 1.0
        return wmath.remove_radial(update, variable, selected[2], self.epsilon), self.wd_ratio

    def _decayed(self, variable, learning_rate, factor, scale=1.0):
        w = ops.cast(variable, "float32")
        if not self.weight_decay or not self._use_weight_decay(variable):
            return w
        lr = ops.cast(learning_rate, "float32")
        return w * (1.0 - lr * self.weight_decay * factor / scale)

    def get_config(self):
        config = super().get_config()
        projection = self.projection
        if not _is_cosine(projection):
            projection = (
                {path: list(axes) for path, axes in self.projected_selection.items()}
                if self.built
                else serialize_rescale(projection)
            )
        config.update(
            epsilon=self.epsilon,
            delta=self.delta,
            wd_ratio=self.wd_ratio,
            nesterov=self.nesterov,
            projection=projection,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_wrs", name="SGDP")
class SGDP(_ProjectedOptimizer):
    (
        """SGD with momentum, projected on scale-invariant weights (SGDP).

    Step for a variable `w` with gradient `g` (the reference's order):
    `b <- momentum * b + (1 - dampening) * g`; `d = g + momentum * b` with
    Nesterov, else `b`; on variables that look scale-invariant `d` loses its
    component along `w` and the decay is scaled by `wd_ratio`;
    `w <- w * (1 - lr * weight_decay * ratio / (1 - momentum))`;
    `w <- w - lr * d`.

    The momentum buffer is PyTorch's (`b` accumulates gradients, the learning
    rate multiplies the step), not Keras `SGD`'s (which accumulates
    `lr * g`): the two agree for a constant learning rate.

    Args:
        learning_rate: float, schedule or callable. Defaults to `0.01`.
        momentum: in [0, 1). Defaults to `0.0`.
        dampening: in [0, 1]. Defaults to `0.0`.
        weight_decay: decoupled decay coefficient (`None` or >= 0), applied
            as in the reference (divided by `1 - momentum`).
        nesterov: Nesterov momentum. Defaults to `False`.
        epsilon: guards norms in the cosine test and the projection.
            Defaults to `1e-8`.
    """
        + PROJECTION_DOC
        + """

    Reference arguments: `lr` is `learning_rate`, `eps` is `epsilon`.

    References:
        Heo et al., ICLR 2021, arXiv 2006.08217; the `adamp` package 0.3.0.
    """
    )

    effective_lr_power = 2.0

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        dampening=0.0,
        weight_decay=None,
        nesterov=False,
        epsilon=1e-8,
        delta=0.1,
        wd_ratio=0.1,
        projection=COSINE,
        name="SGDP",
        **kwargs,
    ):
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not 0 <= momentum < 1
        ):
            raise ValueError(
                "`momentum` must be a float between [0, 1] and below 1 (SGDP divides the "
                f"weight decay by 1 - momentum). Received: momentum={momentum!r}"
            )
        super().__init__(
            learning_rate,
            epsilon,
            delta,
            wd_ratio,
            projection,
            nesterov,
            weight_decay,
            name=name,
            **kwargs,
        )
        self.momentum = float(momentum)
        self.dampening = _check("dampening", dampening, 0.0, 1.0)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        g = ops.cast(gradient, "float32")
        buf = self._momentums[self._get_variable_index(variable)]
        new_buf = ops.cast(buf, "float32") * self.momentum + g * (1.0 - self.dampening)
        d = g + self.momentum * new_buf if self.nesterov else new_buf
        d, factor = self._project(d, variable, g)
        # Without Nesterov the reference projects its momentum buffer in
        # place (`d_p` is the buffer itself): the projected buffer is kept.
        self.assign(buf, ops.cast(new_buf if self.nesterov else d, buf.dtype))
        w = self._decayed(variable, learning_rate, factor, 1.0 - self.momentum)
        self.assign(variable, ops.cast(w - ops.cast(learning_rate, "float32") * d, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, dampening=self.dampening)
        return config


@keras.saving.register_keras_serializable(package="keras_wrs", name="AdamP")
class AdamP(_ProjectedOptimizer):
    (
        """Adam, projected on scale-invariant weights (AdamP).

    Step (the reference's order): Adam's moments `m`, `v`;
    `p = m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)` (with Nesterov,
    `beta_1 * m + (1 - beta_1) * g` in place of `m`); on variables that look
    scale-invariant `p` loses its component along `w` and the decay is scaled
    by `wd_ratio`; `w <- w * (1 - lr * weight_decay * ratio)`;
    `w <- w - lr / (1 - beta_1^t) * p`.

    `epsilon` is added to the bias-corrected root of `v`, as in PyTorch (Keras
    `Adam` adds it before the correction).

    Args:
        learning_rate: float, schedule or callable. Defaults to `0.001`.
        beta_1, beta_2: moment decay rates in [0, 1). Default `0.9`, `0.999`.
        epsilon: Defaults to `1e-8`.
        weight_decay: decoupled decay coefficient (`None` or >= 0).
        nesterov: Defaults to `False`.
    """
        + PROJECTION_DOC
        + """

    Reference arguments: `lr` is `learning_rate`, `betas` is
    `(beta_1, beta_2)`, `eps` is `epsilon`.

    References:
        Heo et al., ICLR 2021, arXiv 2006.08217; the `adamp` package 0.3.0.
    """
    )

    effective_lr_power = 1.0

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=None,
        delta=0.1,
        wd_ratio=0.1,
        nesterov=False,
        projection=COSINE,
        name="AdamP",
        **kwargs,
    ):
        super().__init__(
            learning_rate,
            epsilon,
            delta,
            wd_ratio,
            projection,
            nesterov,
            weight_decay,
            name=name,
            **kwargs,
        )
        self.beta_1 = _check("beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = _check("beta_2", beta_2, 0.0, 1.0, high_open=True)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def update_step(self, gradient, variable, learning_rate):
        g = ops.cast(gradient, "float32")
        i = self._get_variable_index(variable)
        m_var, v_var = self._momentums[i], self._velocities[i]
        t = ops.cast(self.iterations + 1, "float32")
        m = ops.cast(m_var, "float32") * self.beta_1 + g * (1.0 - self.beta_1)
        v = ops.cast(v_var, "float32") * self.beta_2 + g * g * (1.0 - self.beta_2)
        self.assign(m_var, ops.cast(m, m_var.dtype))
        self.assign(v_var, ops.cast(v, v_var.dtype))
        denom = ops.sqrt(v) / ops.sqrt(wmath.bias_correction(self.beta_2, t)) + self.epsilon
        step_size = ops.cast(learning_rate, "float32") / wmath.bias_correction(self.beta_1, t)
        numerator = self.beta_1 * m + (1.0 - self.beta_1) * g if self.nesterov else m
        p, factor = self._project(numerator / denom, variable, g)
        w = self._decayed(variable, learning_rate, factor)
        self.assign(variable, ops.cast(w - step_size * p, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2)
        return config

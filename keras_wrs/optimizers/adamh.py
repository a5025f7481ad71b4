"""AdamH: Adam on the hyperball (Wen et al., 2026).

For each selected kernel `W` with radius `R` (its norm when the optimizer is
built), one step is

    W <- R * Normalize(W - lr * R * Normalize(u))

with `u` Adam's update `m^ / (sqrt(v^) + epsilon)` and `Normalize(x) = x / ||x||`
(Frobenius, per kernel, as published; per output filter with
`granularity="filter"`). Both the weight norm and the step norm are fixed, so
the angle a kernel turns per step is set by the learning rate alone. It is
weight rescaling (`WRSMixin` with `target_norm="initial"`) applied to an Adam
step whose length is fixed: the selection, the stored radii, the rescale and
every Keras hook are the mixin's.

Variables that are not selected (biases, BatchNorm scales, the classifier
head) take Keras's `Adam` step with the same learning rate, and `weight_decay`
if given. The ports route them the same way: levanter's `AdamHConfig` sends
every non-matrix parameter and embeddings to plain Adam (no decay, its own
`adam_lr`); NVIDIA Emerging-Optimizers' hyperball applies to every parameter
handed to it, and the other parameters go to a separate optimizer.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_wrs import math as wmath
from keras_wrs.optimizers.wrs_mixin import WRSMixin

__all__ = ["AdamH", "hyperball_step"]


def hyperball_step(w, u, radius, learning_rate, axes, epsilon: float = wmath.EPSILON):
    """`R * Normalize(W - lr * R * Normalize(u))` over `axes`, float32.

    Args:
        w: the kernel.
        u: the base optimizer's update direction (Adam's `m^ / (sqrt(v^) + eps)`).
        radius: `R`, broadcastable against the norms (per kernel or per filter).
        learning_rate: scalar.
        axes: reduction axes of a norm (all axes for the published per-kernel form).
        epsilon: norms below it count as zero (a zero update leaves `w` alone).

    References:
        Wen, Dang, Lyu, Ma, Liang, "Hyperball optimization" (AdamH), 2026.
    """
    radius = ops.cast(radius, "float32")
    lr = ops.cast(learning_rate, "float32")
    moved = ops.cast(w, "float32") - lr * radius * wmath.normalize(u, axes, epsilon)
    return wmath.rescale(moved, radius, axes)


@keras.saving.register_keras_serializable(package="keras_wrs", name="AdamH")
class AdamH(WRSMixin, keras.optimizers.Adam):
    """Adam on the hyperball: fixed kernel norms, fixed step norms (AdamH).

    Selected kernels (`rescale=`, as for every keras-wrs optimizer) move by
    `W <- R * Normalize(W - lr * R * Normalize(u))`, `u` being Adam's update
    with PyTorch's epsilon placement (`m^ / (sqrt(v^) + epsilon)`), `R` the
    kernel's norm when the optimizer is built (stored as optimizer state,
    saved in checkpoints). Every other variable takes Keras's `Adam` step.
    No weight decay acts on the selected kernels; the angle they turn per
    step is about `learning_rate` radians (a Keras callback
    `WeightDynamics` reports `eff_lr` = `learning_rate` for them).

    Args:
        learning_rate: float, schedule or callable. For selected kernels, the
            step length relative to the radius. Defaults to `0.001`.
        beta_1, beta_2, epsilon, amsgrad: Adam's, as in `keras.optimizers.Adam`
            (`epsilon` defaults to `1e-8`, the ports' value).
        rescale: which kernels live on the hyperball: a model (the kernels
            that feed BatchNormalization), variables, paths, a regex, a
            callable or a `{path: channel_axes}` dict. `[]` turns the
            hyperball off: the optimizer is then Keras's `Adam`.
        granularity: `"layer"` (default, as published: one radius per
            kernel) or `"filter"` (one radius and one step norm per output
            channel).
        target_norm: `"initial"` (default, the published `R`) or a positive
            float, the same radius for every kernel or filter (as NVIDIA's
            `hyperball_radius`); the first step moves the kernel onto it.

    References:
        Wen et al., "Hyperball optimization", 2026; ports in levanter
        (`AdamHConfig`) and NVIDIA Emerging-Optimizers (`HyperballHook`).
    """

    effective_lr_power = 0.0

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        amsgrad=False,
        rescale=None,
        granularity="layer",
        target_norm="initial",
        name="AdamH",
        **kwargs,
    ):
        if "rescale_every" in kwargs:
            raise ValueError(
                "AdamH rescales after every step (the hyperball update needs it); "
                f"remove `rescale_every`. Received: rescale_every={kwargs['rescale_every']!r}"
            )
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            rescale=rescale,
            granularity=granularity,
            target_norm=target_norm,
            name=name,
            **kwargs,
        )

    def update_step(self, gradient, variable, learning_rate):
        r = self._wrs.rescaled.get(self._get_variable_index(variable))
        if r is None:  # Keras's Adam step
            super().update_step(gradient, variable, learning_rate)
            return
        u = self._adam_direction(gradient, variable)
        new = hyperball_step(variable, u, r.target, learning_rate, r.axes)
        self.assign(variable, ops.cast(new, variable.dtype))

    def _adam_direction(self, gradient, variable):
        """Updates Adam's moments as Keras does; returns `m^ / (sqrt(v^) + epsilon)`."""
        i = self._get_variable_index(variable)
        m, v = self._momentums[i], self._velocities[i]
        g = ops.cast(gradient, m.dtype)
        self.assign_add(m, (g - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(g) - v) * (1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[i]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        t = self.iterations + 1
        m_hat = ops.cast(m, "float32") / wmath.bias_correction(self.beta_1, t)
        v_hat = ops.cast(v, "float32") / wmath.bias_correction(self.beta_2, t)
        return m_hat / (ops.sqrt(v_hat) + self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.pop("rescale_every")
        return config

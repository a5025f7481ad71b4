"""Per-layer weight dynamics: norms, effective learning rate, angular updates.

One function per metric, each a reduction over filters of a formula in
`keras_wrs.math`, and the `WeightDynamics` callback that evaluates them on
device on a step schedule.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from keras import ops

from keras_wrs import math as wmath
from keras_wrs._backend import gradient, jit
from keras_wrs._files import atomic_write_npz
from keras_wrs.checks import check_granularity
from keras_wrs.dynamics import logkeys
from keras_wrs.dynamics.callback import DynamicsCallback, learning_rate_power, step_schedule
from keras_wrs.dynamics.kernels import kernel_keys, tracked_kernels
from keras_wrs.dynamics.logkeys import GRADIENT_METRICS, STATE_METRICS, STEP_METRICS
from keras_wrs.dynamics.probe import (
    as_tensor_batch,
    check_probe_inputs,
    check_probe_targets,
    loss_function,
    probe_batches,
)
from keras_wrs.optimizers import base_optimizer

__all__ = [
    "WeightDynamics",
    "norm_stats",
    "mean_effective_learning_rate",
    "mean_angle",
    "update_parts",
    "gradient_norm",
]


def norm_stats(w, axes):
    """Mean, min and max filter norm: a `(3,)` float32 tensor."""
    n = wmath.filter_norms(w, axes)
    return ops.stack([ops.mean(n), ops.min(n), ops.max(n)])


def mean_effective_learning_rate(learning_rate, w, axes, power):
    """Mean over filters of `lr / ||w_k||^power` (see `math.effective_learning_rate`)."""
    return ops.mean(
        wmath.effective_learning_rate(learning_rate, wmath.filter_norms(w, axes), power)
    )


def mean_angle(a, b, axes):
    """Mean over filters of the angle (radians) between `a_k` and `b_k`.

    With `a = w_t`, `b = w_{t+1}` it is the angular update of one step; with
    `a = w_0` the rotation from initialization.
    """
    return ops.mean(wmath.angle(a, b, axes))


def update_parts(w_before, w_after, axes):
    """Mean over filters of the radial (signed) and tangential parts of an update.

    Returns:
        `(2,)` float32 tensor `[radial, tangential]`, see `math.radial_tangential`.
    """
    delta = ops.cast(w_after, "float32") - ops.cast(w_before, "float32")
    radial, tangential = wmath.radial_tangential(delta, w_before, axes)
    return ops.stack([ops.mean(radial), ops.mean(tangential)])


def gradient_norm(g):
    """Euclidean (Frobenius) norm of a kernel's gradient, float32."""
    return ops.sqrt(ops.sum(ops.square(ops.cast(g, "float32"))))


class WeightDynamics(DynamicsCallback):
    """Logs how watched kernels move: norms, effective LR, angular updates.

    For each watched kernel `K` it adds to the epoch's `logs` (and so to
    `History`, `CSVLogger`, `TensorBoard` and the progress bar):

    * `norm_mean/K`, `norm_min/K`, `norm_max/K`: filter norms `||w_k||`;
    * `eff_lr/K`: mean of `lr / ||w_k||^p`, `p` = 2 for SGD, 1 for Adam-like
      optimizers, 0 for LAMB (`lr_power`); `lr` is the optimizer's current
      learning rate (schedules applied; momentum's `1 / (1 - beta)` not
      included);
    * `rotation/K`: mean angle (radians) between `w_k` and its value when
      training first began;
    * `angular_update/K`: mean angle between `w_k` before and after a step;
    * `radial/K`, `tangential/K`: mean signed radial part
      `<dw_k, w_k>/||w_k||` and norm of the tangential part of a step;
    * `grad_norm/K` (with `probe`): norm of the kernel's gradient of the loss
      on the probe batch, before the step.

    The first five are read at the end of the epoch; the others are means
    over the epoch's measured steps (NaN when none was measured). Every
    measurement is also kept in `series` under the same keys (step series),
    and written to `log_dir` for TensorBoard when given. Measuring a step
    copies the watched kernels before it and runs a few reductions after it,
    on device; values are read back once per epoch.

    Keras callbacks do not see the training gradients, so `grad_norm` is
    measured on a fixed probe batch (one extra forward and backward pass per
    measured step, BatchNorm in training mode, no side effect on training).

    Runs on TensorFlow, JAX and PyTorch (compiled with `tf.function` /
    `jax.jit`, eager on PyTorch). Under JAX, `fit` keeps the training state
    off the model within an epoch; each measured step attaches it first
    (Keras's own state sync), so a sparse `schedule` costs less there.

    Place it before `CSVLogger` / `TensorBoard` in the callbacks list: Keras
    passes one `logs` dict along the list.

    Args:
        kernels: extra kernels to watch, by layer name or variable path.
        default: watch the kernels a keras-wrs optimizer rescales, or, with
            any other optimizer, the model's scale-invariant kernels.
        schedule: measure steps where it says so: an integer n (every n
            steps, default 1), `"log"` (log-spaced) or `step -> bool`.
        lr_power: `"auto"` or the exponent `p` of the effective LR.
        granularity: `"filter"` (default) or `"layer"` (one norm per kernel).
        probe: optional `(x, y)` batch (or dataset, first batch) for
            `grad_norm`.
        log_dir: optional directory for TensorBoard step series.
        initial: where `rotation` measures from: `None` (the kernels at the
            start of this callback's first `fit`), a dict from kernel key
            (as in the logs) to array, or the path of an `.npz` file: read
            if it exists, else written there (atomically) at the start of
            `fit`. A resumed run that passes the same path measures
            `rotation` from its true start, not from the restored weights.

    Example:
        >>> dyn = WeightDynamics(schedule=10)
        >>> history = model.fit(x, y, epochs=5, callbacks=[dyn])
        >>> history.history["angular_update/conv1"]
    """

    def __init__(
        self,
        kernels: Sequence[str] = (),
        default: bool = True,
        schedule=1,
        lr_power="auto",
        granularity: str = "filter",
        probe=None,
        log_dir: str | None = None,
        initial=None,
    ):
        super().__init__(log_dir)
        if isinstance(kernels, str):
            kernels = [kernels]
        self.kernels = list(kernels)
        self.default = default
        self._due = step_schedule(schedule, "schedule")
        self.lr_power = lr_power
        self.granularity = check_granularity(granularity)
        self._probe = None if probe is None else probe_batches(probe, "probe", True, None, 1)[0]
        if not (initial is None or isinstance(initial, (str, os.PathLike, Mapping))):
            raise TypeError(
                f"`initial` must be None, a dict from kernel key to array or the "
                f"path of an .npz file. Received: initial={initial!r} "
                f"(type {type(initial).__name__})."
            )
        self.initial = initial
        self._init = None
        self.selections = []

    def setup(self):
        if self._probe is not None:
            check_probe_inputs(self.model, self._probe[0], "probe")
            check_probe_targets(self.model, self._probe[1], "probe")
        self._power = learning_rate_power(self.model.optimizer, self.lr_power)
        self.selections = tracked_kernels(self.model, self.kernels, self.default)
        self.keys = kernel_keys(self.selections)
        self._vars = [s.variable for s in self.selections]
        self._axes = [
            wmath.reduction_axes(len(v.shape), s.channel_axes, self.granularity)
            for v, s in zip(self._vars, self.selections, strict=True)
        ]
        if self._init is None:
            self._init = self._initial_kernels()
        self._prev, self._grads, self._epoch_steps = None, None, []
        self._update_fn = jit(self._update_metrics)
        self._state_fn = jit(self._state_metrics)
        if self._probe is not None:
            x, y = as_tensor_batch(self._probe[0]), as_tensor_batch(self._probe[1])
            loss_fn, self._loss_vars = loss_function(self.model, x, y, variables=self._vars)
            self._grad_fn = jit(lambda values, rest: self._gradient_norms(loss_fn, values, rest))

    def _initial_kernels(self):
        """The kernels `rotation` measures from (see `initial`)."""
        given = self.initial
        is_path = isinstance(given, (str, os.PathLike))
        if given is None or (is_path and not Path(given).exists()):
            snapshot = self._snapshot()
            if is_path:
                atomic_write_npz(
                    Path(given),
                    dict(zip(self.keys, map(ops.convert_to_numpy, snapshot), strict=True)),
                )
            return snapshot
        arrays, where = (
            (_read_npz(Path(given)), repr(str(given))) if is_path else (given, "the dict")
        )
        if sorted(arrays) != sorted(self.keys):
            raise ValueError(
                f"`initial` ({where}) must hold the watched kernels "
                f"{sorted(self.keys)}; it holds {sorted(arrays)}. Pass the file "
                "this model's run wrote, or a new path to start one."
            )
        out = []
        for key, v in zip(self.keys, self._vars, strict=True):
            value = np.asarray(arrays[key])
            if value.shape != tuple(v.shape):
                raise ValueError(
                    f"`initial` ({where}) holds kernel {key!r} with shape "
                    f"{value.shape}, but the model's has {tuple(v.shape)}."
                )
            out.append(ops.convert_to_tensor(value, dtype=v.dtype))
        return out

    # Device computations: pure functions of the values they are given -----
    def _snapshot(self):
        return [ops.copy(w) for w in self.current(self._vars)]

    def _update_metrics(self, before, current):
        rows = []
        for b, w, axes in zip(before, current, self._axes, strict=True):
            rows.append(
                ops.concatenate(
                    [ops.reshape(mean_angle(b, w, axes), (1,)), update_parts(b, w, axes)]
                )
            )
        return ops.stack(rows)

    def _state_metrics(self, init, current, learning_rate):
        rows = []
        for w0, w, axes in zip(init, current, self._axes, strict=True):
            eff = mean_effective_learning_rate(learning_rate, w, axes, self._power)
            rot = mean_angle(w0, w, axes)
            rows.append(ops.concatenate([norm_stats(w, axes), ops.stack([eff, rot])]))
        return ops.stack(rows)

    @staticmethod
    def _gradient_norms(loss_fn, values, rest):
        return ops.stack([gradient_norm(g) for g in gradient(loss_fn, values, rest)])

    def _probe_gradient_norms(self):
        values = self.current(self._loss_vars)
        n = len(self._vars)
        return self._grad_fn(values[:n], values[n:])

    def _update(self, before):
        return self._update_fn(before, self.current(self._vars))

    def _state(self):
        return self._state_fn(self._init, self.current(self._vars), self._learning_rate())

    def _learning_rate(self):
        return ops.cast(base_optimizer(self.model.optimizer).learning_rate, "float32")

    def _names(self, metrics):
        return logkeys.keys(metrics, self.keys)

    # Schedule ------------------------------------------------------------
    def before_step(self, step):
        if not self._due(step):
            return
        self._prev = self.guard("angular_update", self._snapshot)
        if self._probe is not None:
            self._grads = self.guard("grad_norm", self._probe_gradient_norms)

    def after_step(self, step):
        row = {}
        if self._prev is not None:
            upd = self.guard("angular_update", self._update, self._prev)
            if upd is not None:
                row["update"] = upd
                self.record(step, self._names(STEP_METRICS), upd)
        if self._grads is not None:
            row["grad"] = self._grads
            self.record(step, self._names(GRADIENT_METRICS), self._grads)
        if self._prev is not None or self._grads is not None:
            state = self.guard("norms", self._state)
            if state is not None:
                self.record(step + 1, self._names(STATE_METRICS), state)
            self._epoch_steps.append(row)
        self._prev, self._grads = None, None

    def epoch_values(self, epoch):
        # Every key, every epoch (NaN when not measured or failed): History
        # keeps one list per key, aligned with epochs.
        out = dict.fromkeys(self._names(STATE_METRICS), float("nan"))
        state = self.guard("norms", self._state)
        if state is not None:
            out.update(
                zip(
                    self._names(STATE_METRICS), ops.convert_to_numpy(state).reshape(-1), strict=True
                )
            )
        steps, self._epoch_steps = self._epoch_steps, []
        out.update(self._step_means([r.get("update") for r in steps], STEP_METRICS))
        if self._probe is not None:
            out.update(self._step_means([r.get("grad") for r in steps], GRADIENT_METRICS))
        return out

    def _step_means(self, values, metrics):
        values = [v for v in values if v is not None]
        names = self._names(metrics)
        if not values:
            return dict.fromkeys(names, float("nan"))
        mean = ops.convert_to_numpy(ops.mean(ops.stack(values), axis=0)).reshape(-1)
        return dict(zip(names, mean, strict=True))


def _read_npz(path: Path) -> dict:
    """The arrays of an `.npz` file (no pickles), or a ValueError naming `initial`."""
    try:
        with np.load(path, allow_pickle=False) as found:
            return {k: found[k] for k in found.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"`initial`={str(path)!r} cannot be read as an .npz file "
            f"({type(err).__name__}: {err}). Restore the file the run wrote, or "
            "pass a new path (rotation then measures from this fit's start)."
        ) from err

"""Sharpness: the top Hessian eigenvalue of the training loss, against 2/lr.

Gradient descent with learning rate `lr` is stable on a quadratic only while
the largest Hessian eigenvalue stays below `2/lr`; with full-batch GD,
networks train at the *edge of stability*, where the sharpness rises to about
`2/lr` and hovers there. The eigenvalue is found by power iteration on
Hessian-vector products (double backpropagation on TensorFlow and PyTorch,
forward-over-reverse `jax.jvp` of `jax.grad` on JAX), on a fixed probe batch.

References:
    Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient Descent on Neural Networks
    Typically Occurs at the Edge of Stability", ICLR 2021.
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural
    Computation 6(1), 1994.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_wrs import _backend
from keras_wrs.checks import positive_int
from keras_wrs.dynamics.callback import DynamicsCallback, step_schedule
from keras_wrs.dynamics.logkeys import SHARPNESS_METRICS
from keras_wrs.dynamics.probe import (
    as_tensor_batch,
    check_probe_inputs,
    check_probe_targets,
    loss_function,
    probe_batches,
)
from keras_wrs.optimizers import base_optimizer

__all__ = [
    "hessian_vector_product",
    "top_hessian_eigenvalue",
    "edge_of_stability",
    "Sharpness",
]


def hessian_vector_product(loss_fn, variables, vectors):
    """`H v` for the Hessian `H` of `loss_fn()` in `variables`, at their current values.

    A convenience over `keras_wrs._backend.hessian_vector_product`, which
    takes a pure function of the values (what the `Sharpness` callback
    compiles): here `loss_fn` reads the variables, and their values are
    substituted in a `keras.StatelessScope`.

    Args:
        loss_fn: zero-argument callable returning a scalar loss.
        variables: list of Keras variables.
        vectors: list of tensors shaped like `variables`.

    Returns:
        List of tensors `H v`, shaped like `variables` (zeros where the loss
        does not depend on a variable).
    """

    def pure(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return loss_fn()

    values = [_backend.read(v) for v in variables]
    vectors = [ops.convert_to_tensor(u, v.dtype) for u, v in zip(vectors, variables, strict=True)]
    return _backend.hessian_vector_product(pure, values, vectors)


def _dot(a, b):
    return sum(float(ops.sum(x * y)) for x, y in zip(a, b, strict=True))


def top_hessian_eigenvalue(hvp, initial, max_iterations: int = 20, tolerance: float = 1e-3):
    """Largest-magnitude Hessian eigenvalue by power iteration.

    `v <- H v / ||H v||`, with the Rayleigh quotient `v^T H v` as the
    estimate; stops when two successive estimates differ by at most
    `tolerance` times the latest. The error after `k` iterations shrinks
    like `(lambda_2 / lambda_1)^(2k)`.

    Args:
        hvp: `list of tensors -> list of tensors`, the product `H v`.
        initial: starting vector (list of tensors), not all zero.
        max_iterations: at most this many products.
        tolerance: relative change that counts as converged.

    Returns:
        `(eigenvalue, eigenvector, iterations, converged)`; the eigenvector
        (unit norm) warm-starts the next call.
    """
    norm = np.sqrt(_dot(initial, initial))
    v = [x / norm for x in initial]
    estimate, converged, i = float("nan"), False, 0
    for i in range(1, max_iterations + 1):
        hv = hvp(v)
        new = _dot(v, hv)
        size = np.sqrt(_dot(hv, hv))
        if size == 0 or not np.isfinite(size):
            return new, v, i, False
        v = [x / size for x in hv]
        converged = abs(new - estimate) <= tolerance * abs(new)
        estimate = new
        if converged:
            break
    return estimate, v, i, converged


def edge_of_stability(optimizer) -> float:
    """Sharpness at which the optimizer's step becomes unstable on a quadratic.

    `2/lr` for gradient descent; `(2 + 2 beta) / lr` with heavy-ball
    momentum `beta` and `(2 + 2 beta) / (lr (1 + 2 beta))` with Nesterov
    (Cohen et al. 2021, appendix). For other optimizers the nominal `2/lr`:
    their stability depends on the preconditioned Hessian.

    Args:
        optimizer: a Keras optimizer (a `LossScaleOptimizer` is unwrapped).

    Returns:
        The threshold, a float.
    """
    opt = base_optimizer(optimizer)
    lr = float(ops.convert_to_numpy(opt.learning_rate))
    if isinstance(opt, keras.optimizers.SGD):
        beta = float(opt.momentum)
        if opt.nesterov:
            return (2 + 2 * beta) / (lr * (1 + 2 * beta))
        return (2 + 2 * beta) / lr
    return 2.0 / lr


class Sharpness(DynamicsCallback):
    """Logs the top Hessian eigenvalue of the loss on a probe batch, and `2/lr`.

    Adds `sharpness` and `edge_of_stability` (see `edge_of_stability`) to
    the logs of every `every_n_epochs`-th epoch (NaN in others) and, with a
    step `schedule`, to `series`. The Hessian is over all trainable
    variables (or `variables`), with BatchNorm in training mode on the whole
    probe as one batch, without side effects on training. Each estimate
    costs up to `max_iterations` Hessian-vector products (about two to four
    forward-backward passes each); it warm-starts from the previous
    eigenvector, so later estimates usually converge in a few.

    Power iteration finds the eigenvalue of largest magnitude: early in
    training, or with a large negative curvature, it may be negative.
    Under `mixed_float16`, products are computed in float16 and are noisy.

    Args:
        probe: `(x, y)` arrays used as one batch, or a dataset (first batch).
        every_n_epochs: epoch period (at epoch end).
        schedule: optional step schedule (`n`, `"log"`, callable) for
            step series, e.g. to watch the edge of stability within an epoch.
        max_iterations: power iterations per estimate.
        tolerance: relative change of the estimate that stops iterating.
        variables: optional list of variables (default: all trainable).
        seed: seed of the first starting vector.
        log_dir: optional directory for TensorBoard step series.

    Example:
        >>> sharp = Sharpness((x[:256], y[:256]), schedule=50)
        >>> model.fit(x, y, batch_size=len(x), epochs=200, callbacks=[sharp])
    """

    def __init__(
        self,
        probe,
        every_n_epochs: int = 1,
        schedule=None,
        max_iterations: int = 20,
        tolerance: float = 1e-3,
        variables=None,
        seed: int = 0,
        log_dir: str | None = None,
    ):
        super().__init__(log_dir)
        self.every_n_epochs = positive_int(every_n_epochs, "every_n_epochs")
        self._due = None if schedule is None else step_schedule(schedule, "schedule")
        self.max_iterations = positive_int(max_iterations, "max_iterations")
        if not (isinstance(tolerance, (int, float)) and tolerance > 0):
            raise ValueError(f"`tolerance` must be a number > 0. Received: tolerance={tolerance!r}")
        self.tolerance = float(tolerance)
        x, y = probe_batches(probe, "probe", need_targets=True, batch_size=None, max_batches=1)[0]
        self._x, self._y = as_tensor_batch(x), as_tensor_batch(y)
        self._variables, self.seed, self._vector = variables, seed, None

    def setup(self):
        check_probe_inputs(self.model, self._x, "probe")
        check_probe_targets(self.model, self._y, "probe")
        vs = self._variables if self._variables is not None else self.model.trainable_variables
        if not vs:
            raise ValueError(
                "`variables` is empty: the Hessian needs at least one trainable variable."
            )
        self._vars = list(vs)
        loss_fn, self._loss_vars = loss_function(self.model, self._x, self._y, variables=self._vars)
        # Module-level lookup at trace time, so that a test can replace it.
        self._hvp_fn = _backend.jit(
            lambda vec, values, rest: _backend.hessian_vector_product(loss_fn, values, vec, rest)
        )
        if self._vector is None:
            rng = np.random.default_rng(self.seed)
            self._vector = [
                ops.convert_to_tensor(rng.standard_normal(v.shape), "float32") for v in self._vars
            ]

    def _hvp(self, vectors):
        values = self.current(self._loss_vars)
        n = len(self._vars)
        return self._hvp_fn(vectors, values[:n], values[n:])

    def estimate(self) -> tuple[float, int, bool]:
        """Top eigenvalue now: `(eigenvalue, iterations, converged)`."""
        value, self._vector, its, ok = top_hessian_eigenvalue(
            self._hvp, self._vector, self.max_iterations, self.tolerance
        )
        return value, its, ok

    def _measure(self, step):
        value, its, _ = self.estimate()
        row = [value, edge_of_stability(self.model.optimizer), its]
        self.record(step, list(SHARPNESS_METRICS), np.array(row))
        return row

    def after_step(self, step):
        if self._due is not None and self._due(step):
            self.guard("sharpness", self._measure, step + 1)

    def epoch_values(self, epoch):
        row = None
        if epoch % self.every_n_epochs == 0:
            row = self.guard("sharpness", self._measure, self.step)
        if row is None:
            row = [float("nan"), float("nan")]
        return dict(zip(SHARPNESS_METRICS[:2], row[:2], strict=True))

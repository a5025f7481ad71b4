"""`DynamicsCallback`, the base of the training-dynamics callbacks, and its schedules.

* `step_schedule` turns `every n steps` / `"log"` / a callable into a
  predicate on the global step.
* `DynamicsCallback` is the base callback: a global step counter, step series
  kept in memory (and optionally written to a TensorBoard directory), epoch
  values added to `logs` (so `History`, `CSVLogger`, the progress bar and
  `TensorBoard` see them), and metrics that fail at run time logged once and
  switched off instead of interrupting training.
"""

from __future__ import annotations

import logging
import math as _pymath
from collections.abc import Callable, Sequence

import keras

from keras_wrs._backend import read, require_tensorflow

__all__ = [
    "DynamicsCallback",
    "step_schedule",
    "learning_rate_power",
]

logger = logging.getLogger("keras_wrs")


def _log_spaced(per_decade: int = 10) -> Callable[[int], bool]:
    """Steps 0 to per_decade - 1, then the integers nearest `10**(i / per_decade)`."""

    def due(step: int) -> bool:
        if step < per_decade:
            return True
        # round(10**(i/p)) == step  <=>  i in [p*log10(step-0.5), p*log10(step+0.5))
        i = _pymath.ceil(per_decade * _pymath.log10(step - 0.5))
        return 10 ** (i / per_decade) < step + 0.5

    return due


def step_schedule(schedule, name: str = "schedule") -> Callable[[int], bool]:
    """A predicate `step -> bool` from `n` (every n steps), `"log"` or a callable.

    Args:
        schedule: integer `>= 1`, `"log"` (steps 0-9, then ten per decade:
            10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 126, ...), or a callable
            taking the global step (0-based) and returning a bool.
        name: argument name for error messages.

    Returns:
        The predicate.
    """
    if callable(schedule):
        return schedule
    if schedule == "log":
        return _log_spaced()
    if isinstance(schedule, bool) or not isinstance(schedule, int) or schedule < 1:
        raise ValueError(
            f'`{name}` must be an integer >= 1 (every n steps), "log" or a callable '
            f"`step -> bool`. Received: {name}={schedule!r}"
        )
    return lambda step: step % schedule == 0


def learning_rate_power(optimizer, power="auto") -> float:
    """Exponent `p` of the effective learning rate `lr / ||w||^p`.

    `"auto"`: the optimizer's own `effective_lr_power` attribute where it has
    one (keras-wrs's SGDP: 2, AdamP: 1, AdamH: 0), else 2 for `SGD` (and
    subclasses), 0 for `Lamb` (its trust ratio already scales steps by
    `||w||`), 1 for every other optimizer (Adam-like, elementwise normalized
    updates).
    """
    if power != "auto":
        ok = isinstance(power, (int, float)) and not isinstance(power, bool) and power >= 0
        if not ok:
            raise ValueError(
                '`lr_power` must be "auto" or a number >= 0 (2 for SGD, 1 for '
                f"Adam-like optimizers). Received: lr_power={power!r}"
            )
        return float(power)
    from keras_wrs.optimizers import base_optimizer

    opt = base_optimizer(optimizer)
    if getattr(opt, "effective_lr_power", None) is not None:
        return float(opt.effective_lr_power)
    if isinstance(opt, keras.optimizers.SGD):
        return 2.0
    if isinstance(opt, keras.optimizers.Lamb):
        return 0.0
    return 1.0


class DynamicsCallback(keras.callbacks.Callback):
    """Base class of the dynamics callbacks.

    Subclasses implement `setup()` (at train begin; may raise for bad
    configuration), `before_step(step)`, `after_step(step)` and
    `epoch_values(epoch) -> dict` (floats added to the epoch's `logs`). They
    record step series with `record(step, keys, vector)` and run each metric
    through `guard(name, fn, ...)`, which logs a failure once and switches
    that metric off.

    Attributes:
        series: `{key: [(step, value), ...]}`, every measurement of the run.
        step: the global step (optimizer iterations when training began plus
            the steps taken since).
    """

    def __init__(self, log_dir: str | None = None):
        super().__init__()
        if log_dir:
            require_tensorflow("`log_dir` (TensorBoard step series, written by tf.summary)")
        self.log_dir = log_dir
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.step = 0
        self._pending: list[tuple[int, dict]] = []
        self._failed: set[str] = set()
        self._writer = None
        self._begin = 0

    # Keras hooks ---------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.setup()

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch
        self.guard("before_step", self.before_step, self.step)

    def on_train_batch_end(self, batch, logs=None):
        self.guard("after_step", self.after_step, self.step)
        # With steps_per_execution > 1 one call covers several steps.
        self.step += max(1, batch - self._begin + 1)

    def on_epoch_end(self, epoch, logs=None):
        values = self.guard("epoch_values", self.epoch_values, epoch) or {}
        self.flush()
        if logs is not None:
            logs.update({k: float(v) for k, v in values.items()})

    def on_train_end(self, logs=None):
        self.flush()

    # For subclasses ------------------------------------------------------
    def current(self, variables) -> list:
        """The values of `variables` now, as tensors.

        Under JAX, `fit` keeps the training state outside the model between
        epochs; `self.model` attaches it first (Keras's own sync), so that a
        variable never reads a stale value.
        """
        _ = self.model
        return [read(v) for v in variables]

    def setup(self):
        """Resolve kernels and check arguments against the model."""

    def before_step(self, step: int):
        """Called before global step `step` runs."""

    def after_step(self, step: int):
        """Called after global step `step` ran."""

    def epoch_values(self, epoch: int) -> dict:
        """Floats to add to the logs of `epoch`."""
        return {}

    def guard(self, name: str, fn, *args):
        """Runs `fn(*args)`; on an exception logs it once and returns None."""
        if name in self._failed:
            return None
        try:
            return fn(*args)
        except Exception as e:  # a metric must never stop training
            self._failed.add(name)
            logger.warning(
                "keras-wrs %s: %s failed at step %d and is switched off for the "
                "rest of training (%s: %s)",
                type(self).__name__,
                name,
                self.step,
                type(e).__name__,
                e,
            )
            return None

    def record(self, step: int, keys: Sequence[str], values):
        """Keeps a vector of scalars measured at `step`, one per key.

        The values stay on the device until `flush` (at the epoch's end), so
        measuring does not wait for the device.
        """
        self._pending.append((step, list(keys), values))

    def flush(self):
        """Turns pending tensors into floats, into `series` and TensorBoard."""
        pending, self._pending = self._pending, []
        rows = []
        for step, keys, values in pending:
            flat = keras.ops.convert_to_numpy(values).reshape(-1)
            rows.append((step, {k: float(v) for k, v in zip(keys, flat, strict=True)}))
        for step, values in rows:
            for k, v in values.items():
                self.series.setdefault(k, []).append((step, v))
        if self.log_dir and rows:
            self.guard("tensorboard", self._write, rows)

    def _write(self, rows):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for step, values in rows:
                for k, v in values.items():
                    tf.summary.scalar(k, v, step=step)
        self._writer.flush()

"""Keras callbacks of a recipe run.

`StopOnNaN` (Keras's `TerminateOnNaN`, extended to the validation loss),
`Throughput` (images per second, and each epoch's CPU and wall seconds), `ShortProgbar` (a progress bar that shows
loss and accuracy only), `CtrlC` (Ctrl-C that stops the run even where Python
swallows it) and `dynamics_callbacks`: the library's
`WeightDynamics` and `SpanNoise`, whose epoch values land in the same `logs`
as the loss, so `history.csv`, TensorBoard and `summary.json` carry them.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import threading
import time

import keras

__all__ = ["StopOnNaN", "Throughput", "ShortProgbar", "CtrlC", "dynamics_callbacks"]


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras's `TerminateOnNaN`, remembering where the loss stopped being finite.

    Keras checks the training loss after each batch. That loss is a running
    mean over the epoch, and can stay finite (1e25) while the weights are
    already NaN; the epoch's validation loss then is not finite. Both stop
    the run.

    Attributes:
        diverged: `{"epoch", "batch", "loss", "metric"}` once it stopped
            training, else None (`batch` is None when found at epoch end).
    """

    def __init__(self):
        super().__init__()
        self.diverged = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        super().on_batch_end(batch, logs)
        if self.diverged is None and self.model.stop_training and loss is not None:
            self.diverged = {
                "epoch": self._epoch + 1,
                "batch": int(batch),
                "loss": float(loss),
                "metric": "loss",
            }

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is not None:
            return
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                print(f"Epoch {epoch + 1}: {key} is {value}, terminating training", flush=True)
                self.model.stop_training = True
                self.diverged = {
                    "epoch": epoch + 1,
                    "batch": None,
                    "loss": float(value),
                    "metric": key,
                }
                return


class Throughput(keras.callbacks.Callback):
    """Images per second of the training steps, validation excluded.

    Within each epoch the clock starts when the first batch ends, so graph
    tracing and compilation (first epoch) and iterator start-up are left out;
    the epoch's rate is `(steps - 1) * batch_size / elapsed`. The value
    `images_per_second` is added to each epoch's logs.

    Each epoch's logs also get `epoch_cpu_seconds`, the process CPU time
    (user + system, all threads: the input pipeline's too) from the start of
    the epoch to its end, its validation included, and `epoch_wall_seconds`,
    the wall time of the same span. On a machine shared with other jobs the
    CPU seconds are the steadier measure of the work.

    Args:
        batch_size: global batch size (all replicas).

    Attributes:
        rates: images/second of each finished epoch with at least 2 steps.
    """

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.rates: list[float] = []
        self._first = None
        self._last = None
        self._steps = 0
        self._epoch_start = (time.process_time(), time.perf_counter())

    def on_epoch_begin(self, epoch, logs=None):
        self._first, self._last, self._steps = None, None, 0
        self._epoch_start = (time.process_time(), time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._first is None:
            self._first = now
        else:
            self._steps += 1
        self._last = now

    def on_epoch_end(self, epoch, logs=None):
        rate = float("nan")
        if self._steps and self._last > self._first:
            rate = self._steps * self.batch_size / (self._last - self._first)
            self.rates.append(rate)
        if logs is not None:
            logs["images_per_second"] = rate
            cpu, wall = self._epoch_start
            logs["epoch_cpu_seconds"] = time.process_time() - cpu
            logs["epoch_wall_seconds"] = time.perf_counter() - wall

    @property
    def images_per_second(self):
        """Median of the epochs' rates (None before any)."""
        return statistics.median(self.rates) if self.rates else None


class ShortProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar showing only loss and accuracy, train and held out.

    The dynamics callbacks add dozens of `metric/kernel` values to the logs;
    they belong in `history.csv` and TensorBoard, not on the terminal. Keras
    calls the held-out split's metrics `val_*`; the recipes evaluate each
    epoch on the test split (or on a validation split held out of the
    training set), so the bar names them after that split: `test_accuracy`.
    Pass it in `callbacks` with `model.fit(verbose=0)`: it keeps its own
    verbosity.

    Args:
        verbose: `"auto"`/1 (progress bar) or 2 (one line per epoch).
        keys: the log keys to show.
        held_out: the name of the split behind the `val_*` keys.
    """

    def __init__(
        self,
        verbose="auto",
        keys=("loss", "accuracy", "val_loss", "val_accuracy"),
        held_out="test",
    ):
        super().__init__()
        self._verbose = verbose
        self.keys = tuple(keys)
        self.held_out = held_out

    def set_params(self, params):
        super().set_params({**params, "verbose": self._verbose})

    def _short(self, logs):
        if logs is None:
            return None
        return {k.replace("val_", f"{self.held_out}_", 1): logs[k] for k in self.keys if k in logs}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._short(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._short(logs))


class CtrlC(keras.callbacks.Callback):
    """Ctrl-C that stops `fit`, even where Python swallows its KeyboardInterrupt.

    Python raises KeyboardInterrupt wherever the main thread runs Python code
    when the signal arrives. Inside a weakref callback or a `__del__` (which
    garbage collection runs in the middle of a step), the exception is
    printed as "Exception ignored in ..." and dropped: the run went on to its
    last epoch and exited 0 after a Ctrl-C (seen under JAX). While
    `installed()`, SIGINT also sets `pressed`, and the callback raises
    KeyboardInterrupt at the next batch or epoch end; leaving the block with
    `pressed` set raises it too.

    Only Python's own handler is replaced: a SIGINT ignored (a background
    job) or handled by the caller stays as it is, and so does one outside
    the main thread (where no handler can be set).

    Attributes:
        pressed: whether SIGINT arrived while installed.
    """

    def __init__(self):
        super().__init__()
        self.pressed = False

    def _handle(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def _check(self, *args, **kwargs):
        if self.pressed:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check

    @contextlib.contextmanager
    def installed(self):
        """Replace Python's SIGINT handler for the block, then restore it."""
        replace = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        previous = signal.signal(signal.SIGINT, self._handle) if replace else None
        try:
            yield self
        finally:
            if replace:
                signal.signal(signal.SIGINT, previous)
        self._check()


def dynamics_callbacks(config, probe_x, every, initial=None):
    """Callbacks that measure training dynamics (empty if `config.dynamics` is off).

    `WeightDynamics` every `every` steps, and `SpanNoise` (weight noise
    ratio on `probe_x`) every `config.noise_every` epochs.

    Args:
        config: the run's `Config`.
        probe_x: a batch of normalized training inputs for span estimates.
        every: measurement period in steps (the trainer measures twice per
            epoch: each measurement synchronizes the device).
        initial: `WeightDynamics`'s `initial` (the run's `initial_kernels.npz`,
            so that a resumed run measures `rotation` from its start).

    Returns:
        A list of Keras callbacks, to be placed before `CSVLogger`.
    """
    if not config.dynamics:
        return []
    from keras_wrs.dynamics import SpanNoise, WeightDynamics

    return [
        WeightDynamics(schedule=every, initial=initial),
        SpanNoise(
            probe_x,
            kernels=list(config.noise_kernels),
            every_n_epochs=config.noise_every,
            rel_threshold=config.noise_threshold,
        ),
    ]

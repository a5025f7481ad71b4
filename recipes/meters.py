"""Keras callbacks of the recipes: throughput, and a progress bar that stays short."""

from __future__ import annotations

import statistics
import time

import keras

__all__ = ["Throughput", "ShortProgbar"]


class Throughput(keras.callbacks.Callback):
    """Images per second of the training steps, validation excluded.

    Within each epoch the clock starts when the first batch ends, so graph
    tracing and compilation (first epoch) and iterator start-up are left out;
    the epoch's rate is `(steps - 1) * batch_size / elapsed`. The value
    `images_per_second` is added to each epoch's logs.

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

    def on_epoch_begin(self, epoch, logs=None):
        self._first, self._last, self._steps = None, None, 0

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

    @property
    def images_per_second(self):
        """Median of the epochs' rates (None before any)."""
        return statistics.median(self.rates) if self.rates else None


class ShortProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar showing only loss and accuracy, train and test.

    The dynamics callbacks add dozens of `metric/kernel` values to the logs;
    they belong in `history.csv` and TensorBoard, not on the terminal. Pass it
    in `callbacks` with `model.fit(verbose=0)`: it keeps its own verbosity.

    Args:
        verbose: `"auto"`/1 (progress bar) or 2 (one line per epoch).
        keys: the log keys to show.
    """

    def __init__(self, verbose="auto",
                 keys=("loss", "accuracy", "val_loss", "val_accuracy")):
        super().__init__()
        self._verbose = verbose
        self.keys = tuple(keys)

    def set_params(self, params):
        super().set_params({**params, "verbose": self._verbose})

    def _short(self, logs):
        return None if logs is None else {k: logs[k] for k in self.keys if k in logs}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._short(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._short(logs))

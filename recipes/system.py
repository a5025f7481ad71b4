"""Devices, precision and distribution: the parts of a run that depend on hardware."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

__all__ = ["resolve_precision", "precision_policy", "make_strategy", "has_gpu"]


def has_gpu():
    """Whether TensorFlow sees a GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(precision):
    """The Keras dtype policy name for a config's `precision`.

    `"mixed"` means `mixed_float16` on a GPU (tensor cores, loss scaling) and
    `mixed_bfloat16` elsewhere (CPU, TPU): float16 has no fast path on CPUs.
    """
    if precision == "mixed":
        return "mixed_float16" if has_gpu() else "mixed_bfloat16"
    return precision


@contextlib.contextmanager
def precision_policy(precision):
    """Set the global dtype policy for the duration of the block."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        yield keras.config.dtype_policy().name
    finally:
        keras.config.set_dtype_policy(previous)


def _cpu_devices():
    return [d.name.replace("physical_device:", "")
            for d in tf.config.list_logical_devices("CPU")]


_STRATEGIES = {}


def make_strategy(name, jit_compile=False):
    """A `tf.distribute` strategy by name, one instance per name and process.

    Reusing the instance matters: a second `MirroredStrategy` in one process
    breaks the first one's collectives.

    Args:
        name: `"default"` (no strategy), `"one_device"` (the first GPU, else
            the CPU), `"mirrored"` (all GPUs; without GPUs, all logical CPU
            devices) or `"multi_worker"` (`MultiWorkerMirroredStrategy`,
            cluster from the `TF_CONFIG` environment variable).
        jit_compile: whether the run compiles with XLA; XLA with a mirrored
            strategy fails on CPUs, so that combination is refused here.

    Returns:
        A `tf.distribute.Strategy`.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if jit_compile and name in ("mirrored", "multi_worker") and not gpus:
        raise ValueError(
            f"XLA (jit_compile=true) with strategy={name!r} fails on CPUs in "
            f"TensorFlow; use jit_compile=false or a GPU machine.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        _STRATEGIES[name] = _new_strategy(name, gpus)
    return _STRATEGIES[name]


def _new_strategy(name, gpus):
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(None if gpus else _cpu_devices())
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}. Valid strategies: "
                     f"default, mirrored, multi_worker, one_device.")

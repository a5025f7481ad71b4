"""Devices, precision, compilation and distribution: what depends on the backend and hardware.

The recipes run on every Keras backend. What each setting means on each:

| setting | TensorFlow | JAX | PyTorch |
|---|---|---|---|
| `precision="mixed"` | `mixed_float16` on a GPU, else `mixed_bfloat16` | same | same |
| `jit_compile=True` | XLA | XLA (`jax.jit`) | `torch.compile` (TorchInductor) |
| `jit_compile=False` | `tf.function` graph | XLA all the same (see below) | eager |
| `strategy` | `tf.distribute` by name | `"default"` only | `"default"` only |

On JAX, Keras's `jit_compile=False` runs every step op by op without
compiling, for debugging (about 100x slower on a GPU:
`benchmarks/train_results_gpu.md`); a recipe step on JAX is always compiled
by XLA. On PyTorch, `jit_compile=True` makes Keras wrap its train, test and
predict steps in `torch.compile` (`keras/src/backend/torch/trainer.py`),
which compiles with TorchInductor on first use (it needs a C++ compiler on
CPUs); `False` is PyTorch's eager mode. On a busy 2-core CPU a smoke run of
`fashion_mnist_small` (a recipe with `jit_compile=True`) under
`torch.compile` had not finished its first 2-step run after 20 minutes
(Dynamo recompiled on stride changes until its recompile limit): on PyTorch
CPUs pass `--set jit_compile=false`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata

import keras

__all__ = [
    "resolve_precision",
    "precision_policy",
    "resolve_jit_compile",
    "make_strategy",
    "has_gpu",
    "devices",
    "backend_versions",
    "SingleDevice",
]


def has_gpu():
    """Whether the active Keras backend sees a GPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def devices():
    """The active backend's devices: `[{"name", "type", ...details}]`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [
            {"name": str(d), "type": d.platform.upper(), "device_kind": d.device_kind}
            for d in jax.devices()
        ]
    if backend == "torch":
        import torch

        gpus = [
            {"name": f"cuda:{i}", "type": "GPU", "device_name": torch.cuda.get_device_name(i)}
            for i in range(torch.cuda.device_count())
        ]
        return [{"name": "cpu", "type": "CPU"}] + gpus
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices():
        details = {}
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
        found.append(
            {
                "name": device.name,
                "type": device.device_type,
                **{k: str(v) for k, v in details.items()},
            }
        )
    return found


def backend_versions():
    """The Keras backend in use and the versions of the installed backend libraries."""
    versions = {"backend": keras.backend.backend()}
    for package in ("tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch"):
        try:
            versions[package.replace("-", "_")] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "tensorflow_cpu" in versions:
        versions.setdefault("tensorflow", versions.pop("tensorflow_cpu"))
    return versions


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


def resolve_jit_compile(jit_compile):
    """The `jit_compile` to give `model.compile` on the active backend.

    The config's value on TensorFlow (XLA or not) and PyTorch
    (`torch.compile` or eager); always True on JAX, where False would mean
    uncompiled op-by-op steps (see the module docstring).
    """
    return True if keras.backend.backend() == "jax" else bool(jit_compile)


class SingleDevice:
    """The strategy of a run without `tf.distribute`: Keras places the model.

    It stands where a `tf.distribute.Strategy` would (`scope()`,
    `num_replicas_in_sync`) on backends other than TensorFlow.
    """

    num_replicas_in_sync = 1

    def scope(self):
        """A context that changes nothing."""
        return contextlib.nullcontext()


def _cpu_devices():
    import tensorflow as tf

    return [d.name.replace("physical_device:", "") for d in tf.config.list_logical_devices("CPU")]


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
        A `tf.distribute.Strategy`; a `SingleDevice` for `"default"` on
        backends other than TensorFlow.

    Raises:
        ValueError: an unknown name, XLA with a mirrored strategy on CPUs, or
            a `tf.distribute` strategy on another backend.
    """
    if keras.backend.backend() != "tensorflow":
        return _non_tensorflow_strategy(name)
    import tensorflow as tf

    if name == "multi_worker":
        # Before anything that starts TensorFlow's runtime (listing logical
        # devices does): collectives are configured at program startup.
        from keras_wrs.recipes.training import cluster

        if jit_compile and not tf.config.list_physical_devices("GPU"):
            raise ValueError(
                "XLA (jit_compile=true) with strategy='multi_worker' fails on "
                "CPUs in TensorFlow; use jit_compile=false or a GPU machine."
            )
        return cluster.multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if jit_compile and name in ("mirrored", "multi_worker") and not gpus:
        raise ValueError(
            f"XLA (jit_compile=true) with strategy={name!r} fails on CPUs in "
            f"TensorFlow; use jit_compile=false or a GPU machine."
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        _STRATEGIES[name] = _new_strategy(name, gpus)
    return _STRATEGIES[name]


def _non_tensorflow_strategy(name):
    if name == "default":
        return SingleDevice()
    backend = keras.backend.backend()
    if name in ("one_device", "mirrored", "multi_worker"):
        raise ValueError(
            f"strategy={name!r} is a tf.distribute strategy: it needs the "
            f"TensorFlow backend (KERAS_BACKEND=tensorflow, `pip install "
            f"'keras-wrs[cpu]'` or [gpu]). On the {backend} backend use "
            f"strategy='default' (one device)."
        )
    raise ValueError(
        f"Unknown strategy {name!r}. Valid strategies: default, mirrored, multi_worker, one_device."
    )


def _new_strategy(name, gpus):
    import tensorflow as tf

    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(None if gpus else _cpu_devices())
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        f"Unknown strategy {name!r}. Valid strategies: default, mirrored, multi_worker, one_device."
    )

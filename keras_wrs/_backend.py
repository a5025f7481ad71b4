"""Checks that TensorFlow is installed, with an error that says how to get it."""

import importlib.util

__all__ = ["require_tensorflow"]


def require_tensorflow() -> None:
    """Raise an ImportError naming the extras when TensorFlow is missing.

    Only the TensorFlow backend needs it: the optimizers use `keras.ops` and
    public optimizer hooks, so they also run under KERAS_BACKEND=jax.
    """
    import os

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
        raise ImportError(
            "keras-wrs needs TensorFlow, which is not installed. Install it with "
            "the extra that fits your machine: `pip install 'keras-wrs[cpu]'` "
            "(CPU only, the smaller tensorflow-cpu wheel), `pip install "
            "'keras-wrs[gpu]'` (tensorflow with CUDA) or `pip install "
            "'keras-wrs[tf]'` (the plain tensorflow wheel)."
        )

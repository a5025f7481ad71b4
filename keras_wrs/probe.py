"""Probe data for the dynamics callbacks: checked early, used without side effects.

A probe is a small, fixed set of examples the callbacks evaluate the model on
(the span of a layer's inputs, the gradient norm, the sharpness). Evaluating
must not disturb training: BatchNormalization moving statistics, metric
states and random seeds touched by the probe forward pass are discarded
(`keras.StatelessScope`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["probe_batches", "check_probe_inputs", "probe_loss", "as_tensor_batch"]

_FORMS = (
    "an array of inputs, a tuple `(x, y)` of arrays, or a `tf.data.Dataset` "
    "yielding `x` or `(x, y)` batches"
)


def _split(element):
    if isinstance(element, (tuple, list)):
        if not 1 <= len(element) <= 3:
            raise ValueError(f"a probe element must be x, (x,), (x, y) or (x, y, w); got {len(element)} items")
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def _num_rows(x) -> int:
    first = keras.tree.flatten(x)[0]
    return int(first.shape[0]) if len(first.shape) else 0


def _slice(tree, start, stop):
    return keras.tree.map_structure(lambda a: a[start:stop], tree)


def probe_batches(
    probe, name: str = "probe", need_targets: bool = False, batch_size: int | None = 256,
    max_batches: int | None = None,
) -> list[tuple]:
    """Normalizes a probe into a non-empty list of `(x, y)` batches.

    Args:
        probe: array `x`, tuple `(x, y)` or `(x, y, sample_weight)` of arrays,
            or a `tf.data.Dataset` of batches.
        name: argument name for error messages.
        need_targets: whether `y` is required (losses need it).
        batch_size: rows per batch for arrays; `None` keeps one batch.
        max_batches: use at most this many batches.

    Returns:
        A list of `(x, y)` with `y` None when not given.

    Raises:
        ValueError: unsupported type, no example, or missing targets.
    """
    import tensorflow as tf

    if isinstance(probe, tf.data.Dataset):
        batches = [_split(e) for e in (probe.take(max_batches) if max_batches else probe)]
    elif isinstance(probe, (tuple, list)) or hasattr(probe, "shape"):
        x, y = _split(tuple(probe)) if isinstance(probe, (tuple, list)) else (probe, None)
        if not hasattr(keras.tree.flatten(x)[0], "shape"):
            raise ValueError(f"`{name}` must be {_FORMS}. Received: {name} of type {type(probe).__name__}")
        n = _num_rows(x)
        step = batch_size or max(n, 1)
        batches = [(_slice(x, i, i + step), None if y is None else _slice(y, i, i + step)) for i in range(0, n, step)]
        batches = batches[:max_batches] if max_batches else batches
    else:
        raise ValueError(f"`{name}` must be {_FORMS}. Received: {name}={probe!r}")
    batches = [b for b in batches if _num_rows(b[0]) > 0]
    if not batches:
        raise ValueError(
            f"`{name}` holds no example (it is empty). Pass at least one batch of "
            "inputs, e.g. a few hundred training examples."
        )
    if need_targets and any(y is None for _, y in batches):
        raise ValueError(
            f"`{name}` must hold targets, `(x, y)`, to evaluate the loss. "
            f"Received inputs only (x of shape {tuple(keras.tree.flatten(batches[0][0])[0].shape)})."
        )
    return batches


def check_probe_inputs(model, x, name: str = "probe"):
    """Raises a ValueError if `x` does not fit the model's inputs.

    Args:
        model: a model with known inputs (functional, Sequential) or any
            built model (then only the call is tried by the caller).
        x: one probe batch of inputs.
        name: argument name for error messages.
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return
    given = keras.tree.flatten(x)
    if len(given) != len(inputs):
        raise ValueError(
            f"`{name}` gives {len(given)} input array(s); model {model.name!r} takes "
            f"{len(inputs)} ({', '.join(str(t.shape) for t in inputs)})."
        )
    for a, t in zip(given, inputs):
        want = tuple(t.shape)
        got = tuple(a.shape)
        ok = len(got) == len(want) and all(w is None or w == g for w, g in zip(want[1:], got[1:]))
        if not ok:
            raise ValueError(
                f"`{name}` inputs have shape {got}; model {model.name!r} expects "
                f"{want} (None: any size). Pass probe examples shaped like the "
                "training inputs."
            )


def probe_loss(model, x, y, training: bool = True):
    """The model's compiled loss on a probe batch, without side effects.

    BatchNormalization runs in training mode by default (batch statistics,
    as in the training step) but its moving statistics are not updated.
    Under `tf.distribute`, Keras divides losses by the number of replicas;
    that is undone here, so the value is the same with and without a
    strategy.

    Args:
        model: a compiled model.
        x, y: one probe batch.
        training: the mode of the forward pass.

    Returns:
        Scalar float32 loss (regularization losses included).
    """
    import tensorflow as tf

    with keras.StatelessScope():
        y_pred = model(x, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return ops.cast(loss, "float32") * float(replicas)


def as_tensor_batch(x):
    """NumPy arrays in a batch as tensors (tensors are kept as they are)."""
    return keras.tree.map_structure(
        lambda a: ops.convert_to_tensor(a) if isinstance(a, np.ndarray) else a, x
    )

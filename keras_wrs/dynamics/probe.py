"""Probe data for the dynamics callbacks: checked early, used without side effects.

A probe is a small, fixed set of examples the callbacks evaluate the model on
(the span of a layer's inputs, the gradient norm, the sharpness). Evaluating
must not disturb training: BatchNormalization moving statistics, metric
states and random seeds touched by the probe forward pass are discarded
(`keras.StatelessScope`).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

from keras_wrs._backend import is_tf_dataset, num_replicas

__all__ = [
    "probe_batches",
    "take_examples",
    "check_probe_inputs",
    "check_probe_targets",
    "probe_loss",
    "loss_function",
    "as_tensor_batch",
]

_FORMS = (
    "an array of inputs, a tuple `(x, y)` of arrays, or an iterable of "
    "`x` or `(x, y)` batches (a `tf.data.Dataset`, a `torch.utils.data.DataLoader`, ...)"
)


def _split(element):
    if isinstance(element, (tuple, list)):
        if not 1 <= len(element) <= 3:
            raise ValueError(
                f"a probe element must be x, (x,), (x, y) or (x, y, w); got {len(element)} items"
            )
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def _num_rows(x) -> int:
    first = keras.tree.flatten(x)[0]
    return int(first.shape[0]) if len(first.shape) else 0


def _slice(tree, start, stop):
    return keras.tree.map_structure(lambda a: a[start:stop], tree)


def _is_batch_iterable(probe) -> bool:
    """A dataset or loader of batches, as opposed to an array or an `(x, y)` tuple."""
    if is_tf_dataset(probe):
        return True
    if isinstance(probe, (str, bytes, tuple, list, dict)) or hasattr(probe, "shape"):
        return False
    return hasattr(probe, "__iter__")


def probe_batches(
    probe,
    name: str = "probe",
    need_targets: bool = False,
    batch_size: int | None = 256,
    max_batches: int | None = None,
) -> list[tuple]:
    """Normalizes a probe into a non-empty list of `(x, y)` batches.

    Args:
        probe: array `x`, tuple `(x, y)` or `(x, y, sample_weight)` of arrays,
            or an iterable of batches (`tf.data.Dataset`, PyTorch
            `DataLoader`, a list, a generator).
        name: argument name for error messages.
        need_targets: whether `y` is required (losses need it).
        batch_size: rows per batch for arrays; `None` keeps one batch.
        max_batches: use at most this many batches.

    Returns:
        A list of `(x, y)` with `y` None when not given.

    Raises:
        ValueError: unsupported type, no example, or missing targets.
    """
    if _is_batch_iterable(probe):
        batches = [_split(e) for e in itertools.islice(probe, max_batches)]
    elif isinstance(probe, (tuple, list)) or hasattr(probe, "shape"):
        x, y = _split(tuple(probe)) if isinstance(probe, (tuple, list)) else (probe, None)
        if not hasattr(keras.tree.flatten(x)[0], "shape"):
            raise ValueError(
                f"`{name}` must be {_FORMS}. Received: {name} of type {type(probe).__name__}"
            )
        n = _num_rows(x)
        step = batch_size or max(n, 1)
        batches = [
            (_slice(x, i, i + step), None if y is None else _slice(y, i, i + step))
            for i in range(0, n, step)
        ]
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
    for x, y in batches:
        _check_batch(x, y, name)
    return batches


def _check_batch(x, y, name):
    """Equal row counts in `x` and `y`, and finite values: a probe fails here, not mid-`fit`."""
    arrays = keras.tree.flatten(x) + ([] if y is None else keras.tree.flatten(y))
    rows = {int(a.shape[0]) if len(a.shape) else 0 for a in arrays}
    if len(rows) > 1:
        raise ValueError(
            f"`{name}` holds inputs and targets with different numbers of examples "
            f"({sorted(rows)}). Pass `(x, y)` with one target per example."
        )
    for a in arrays:
        values = ops.convert_to_numpy(a)
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise ValueError(
                f"`{name}` holds NaN or infinite values (an array of shape {values.shape}). "
                "Pass finite examples, e.g. a batch of the training data after preprocessing."
            )


def take_examples(batches: list[tuple], limit: int | None) -> list[tuple]:
    """The first `limit` examples of a list of `(x, y)` batches (all when None)."""
    if limit is None:
        return batches
    out, left = [], limit
    for x, y in batches:
        if left <= 0:
            break
        n = _num_rows(x)
        if n > left:
            x, y = _slice(x, 0, left), None if y is None else _slice(y, 0, left)
        out.append((x, y))
        left -= min(n, left)
    return out


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
    for a, t in zip(given, inputs, strict=True):
        want = tuple(t.shape)
        got = tuple(a.shape)
        ok = len(got) == len(want) and all(
            w is None or w == g for w, g in zip(want[1:], got[1:], strict=True)
        )
        if not ok:
            raise ValueError(
                f"`{name}` inputs have shape {got}; model {model.name!r} expects "
                f"{want} (None: any size). Pass probe examples shaped like the "
                "training inputs."
            )


def check_probe_targets(model, y, name: str = "probe"):
    """Raises a ValueError if integer class labels in `y` fall outside the model's classes.

    Only checked where the answer is certain: a single output with a known
    number of classes (its last dimension) and integer targets of one
    label per example, as sparse categorical losses take them.
    """
    outputs = getattr(model, "outputs", None)
    if y is None or not outputs or len(outputs) != 1 or len(keras.tree.flatten(y)) != 1:
        return
    classes = outputs[0].shape[-1]
    labels = ops.convert_to_numpy(keras.tree.flatten(y)[0])
    if classes is None or labels.dtype.kind not in "iu" or labels.size == 0:
        return
    if labels.ndim > 1 and labels.shape[-1] == classes:
        return  # one-hot or multi-label targets
    low, high = int(labels.min()), int(labels.max())
    if classes > 1 and (low < 0 or high >= classes):
        raise ValueError(
            f"`{name}` labels run from {low} to {high}, but model {model.name!r} has "
            f"{classes} outputs (labels 0 to {classes - 1}). Pass targets of the training data."
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
    fn, variables = loss_function(model, x, y, training)
    # `.value`, not a detached read: inside an enclosing StatelessScope (as
    # in `sharpness.hessian_vector_product`) it is the substituted value,
    # and gradients must flow through it.
    return fn([v.value for v in variables])


def loss_function(model, x, y, training: bool = True, variables=None):
    """`probe_loss` as a pure function of variable values, for autodiff and `jit`.

    Args:
        model: a compiled model.
        x, y: one probe batch.
        training: the mode of the forward pass.
        variables: the variables to differentiate in (default: all of
            `model.variables`).

    Returns:
        `(fn, variables + rest)`: `fn(values, rest_values=None)` is the loss
        with `variables` set to `values` and the model's other variables set
        to `rest_values` (or read as they are when None); the second item
        lists the variables in that order, so
        `fn(*split(current values))` is the loss now.

    Example:
        >>> fn, vs = loss_function(model, x, y, variables=model.trainable_variables)
        >>> n = len(model.trainable_variables)
        >>> values = [v.value for v in vs]
        >>> fn(values[:n], values[n:])
    """
    chosen = list(model.variables if variables is None else variables)
    ids = {id(v) for v in chosen}
    rest = [v for v in model.variables if id(v) not in ids]

    def fn(values, rest_values=None):
        mapping = list(zip(chosen, values, strict=True))
        if rest_values is not None:
            mapping += list(zip(rest, rest_values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            y_pred = model(x, training=training)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)
        return ops.cast(loss, "float32") * float(num_replicas())

    return fn, chosen + rest


def as_tensor_batch(x):
    """A batch as tensors of the Keras backend (NumPy, or another framework's tensors)."""
    return keras.tree.map_structure(
        lambda a: a if ops.is_tensor(a) else ops.convert_to_tensor(np.asarray(a)), x
    )

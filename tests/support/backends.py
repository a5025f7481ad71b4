"""Which Keras backend the tests run on, and markers for what only one backend has."""

import importlib.util

import keras
import pytest

BACKEND = keras.backend.backend()

# Tests of TensorFlow-only machinery (tf.distribute, tf.summary, tf.data
# specifics) skip on the other backends.
requires_tf = pytest.mark.skipif(
    BACKEND != "tensorflow", reason=f"TensorFlow-only machinery; the backend is {BACKEND!r}"
)

tf_installed = importlib.util.find_spec("tensorflow") is not None


class SGDGradients:
    """Twin of a probe gradient, by Keras's own training step on every backend.

    A copy of `model` set to a recorded state takes one plain SGD step with
    learning rate 1024 (a power of two: `lr * g` is exact) on `(x, y)`;
    `(w_before - w_after) / 1024` is the gradient of the training-mode loss,
    accurate to about 1e-7 relative. The copy is compiled once and reused.

    Args:
        model: the model whose architecture to copy (`clone_model`).
        loss: the loss (as compiled in the original model).
    """

    LR = 1024.0

    def __init__(self, model, loss):
        self.twin = keras.models.clone_model(model)
        self.twin.compile(keras.optimizers.SGD(self.LR), loss)

    def __call__(self, state, x, y, paths):
        """float64 gradients at `state` (`{variable path: array}`), one per path."""
        import numpy as np

        for v in self.twin.variables:
            v.assign(state[v.path])
        self.twin.train_on_batch(x, y)
        after = {v.path: np.asarray(v, np.float64) for v in self.twin.variables}
        return [(state[p] - after[p]) / self.LR for p in paths]

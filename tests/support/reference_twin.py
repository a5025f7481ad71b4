"""Twin runs: one gradient sequence through a reference optimizer and a keras-wrs optimizer.

The network is a small Conv-BN net with a head and biases whose kernels are
scale-invariant in three ways: `c1` and `c2` per output channel (BatchNorm;
`c2` has a bias), `c3` only as a whole (a LayerNormalization over height,
width and channels), and the `head` not at all. At every step the gradient is
taken at the *reference's* weights (a probe copy of the network loaded with
them) and the same arrays go to both optimizers, so round-off in our weights
never feeds back into the gradients: at large learning rates the network
amplifies a 1e-7 difference to O(1) within a few steps.

References are PyTorch optimizers (the `adamp` package, timm), whose layout
has output channels first (`np.moveaxis(kernel, -1, 0)` here), or NumPy
functions `step(weights, grads, t) -> weights` in Keras's layout.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import keras
import numpy as np

L = keras.layers


def conv_bn_ln(seed=0):
    """Conv-BN-ReLU, Conv(+bias)-BN-ReLU, Conv-LayerNorm(H, W, C)-ReLU, GAP, Dense(+bias)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = L.ReLU()(L.BatchNormalization(momentum=0.9, name="bn1")(x))
    x = L.Conv2D(16, 3, strides=2, padding="same", name="c2")(x)
    x = L.ReLU()(L.BatchNormalization(momentum=0.9, name="bn2")(x))
    x = L.Conv2D(16, 1, use_bias=False, name="c3")(x)
    x = L.ReLU()(L.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, name="ln")(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10, name="head")(x))


def batch(step, n=16):
    rng = np.random.default_rng(1000 + step)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 10, n)


def gradients(model, x, y):
    """Gradients of the training-mode cross-entropy, as NumPy arrays, on any backend."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return [g.numpy() for g in _tf_gradients(model)(x, y)]
    if backend == "jax":
        grads = _jax_gradients(model)(
            [v.value for v in variables], [v.value for v in model.non_trainable_variables], x, y
        )
        return [np.asarray(g) for g in grads]
    for v in variables:
        v.value.grad = None
    loss_fn(y, model(x, training=True)).backward()
    return [v.value.grad.detach().cpu().numpy() for v in variables]


def _tf_gradients(model):
    """A compiled gradient function per model (eager TensorFlow is 5x slower here)."""
    if not hasattr(model, "_twin_gradients"):
        import tensorflow as tf

        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def grads(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            return tape.gradient(loss, model.trainable_variables)

        model._twin_gradients = grads
    return model._twin_gradients


def _jax_gradients(model):
    if not hasattr(model, "_twin_gradients"):
        import jax

        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def f(values, rest, x, y):
            out, _ = model.stateless_call(values, rest, x, training=True)
            return loss_fn(y, out)

        model._twin_gradients = jax.jit(jax.grad(f))
    return model._twin_gradients


def _apply_function(optimizer, variables):
    """`optimizer.apply` compiled: `tf.function`, or `jax.jit` of Keras's stateless apply."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda grads: optimizer.apply(grads, variables))
    if backend == "jax":
        import jax

        stateless = jax.jit(optimizer.stateless_apply)

        def apply(grads):
            state = [v.value for v in optimizer.variables]
            new_values, new_state = stateless(state, grads, [v.value for v in variables])
            for v, value in zip(
                [*variables, *optimizer.variables], [*new_values, *new_state], strict=True
            ):
                v.assign(value)

        return apply
    return lambda grads: optimizer.apply(grads, variables)


def to_torch(a):
    """Keras layout (output channels last) to PyTorch's (first)."""
    return np.moveaxis(a, -1, 0) if a.ndim > 1 else a


def from_torch(a):
    return np.moveaxis(a, 0, -1) if a.ndim > 1 else a


class TorchReference:
    """A PyTorch optimizer over copies of the weights; `step(grads, t)` in Keras layout."""

    def __init__(self, factory, weights, schedule=None, before_step=None):
        import torch

        self.torch = torch
        self.params = [torch.nn.Parameter(torch.tensor(to_torch(w).copy())) for w in weights]
        self.optimizer = factory(self.params)
        self.schedule, self.before_step = schedule, before_step

    @property
    def weights(self):
        return [from_torch(p.detach().numpy()) for p in self.params]

    def step(self, grads, t):
        for p, g in zip(self.params, grads, strict=True):
            p.grad = self.torch.tensor(to_torch(g).copy())
        for group in self.optimizer.param_groups:
            if self.schedule is not None:
                group["lr"] = float(self.schedule(t))
            if self.before_step is not None:
                self.before_step(group, t)
        self.optimizer.step()


class NumpyReference:
    """`step_fn(weights, grads, t) -> weights`, in float64, in Keras layout."""

    def __init__(self, step_fn, weights):
        self.weights = [np.asarray(w, np.float64) for w in weights]
        self.step_fn = step_fn

    def step(self, grads, t):
        self.weights = self.step_fn(self.weights, [np.asarray(g, np.float64) for g in grads], t)


def run_twin(make_optimizer, make_reference, steps=100, seed=0, watch=None):
    """Runs both for `steps` steps; returns `{path: max|ours - ref| / max|ref|}`.

    Args:
        make_optimizer: `model -> keras optimizer`.
        make_reference: `initial weights (list, Keras layout) -> reference`.
        steps: number of steps.
        seed: initial weights.
        watch: optional `(weights, grads, t) -> None`, called at each step
            with the reference's weights and the gradients it gets.
    """
    probe, model = conv_bn_ln(seed), conv_bn_ln(seed)
    variables = model.trainable_variables
    reference = make_reference([keras.ops.convert_to_numpy(v) for v in variables])
    optimizer = make_optimizer(model)
    optimizer.build(variables)
    apply = _apply_function(optimizer, variables)
    for t in range(steps):
        weights = reference.weights
        for v, w in zip(probe.trainable_variables, weights, strict=True):
            v.assign(np.asarray(w, np.float32))
        grads = gradients(probe, *batch(t))
        if watch is not None:
            watch(weights, grads, t)
        reference.step(grads, t)
        apply([keras.ops.convert_to_tensor(g) for g in grads])
    return {
        v.path: relative_difference(keras.ops.convert_to_numpy(v), w)
        for v, w in zip(variables, reference.weights, strict=True)
    }


def relative_difference(ours, theirs):
    """`max|ours - theirs| / max|theirs|` (0 when both are zero)."""
    scale = float(np.max(np.abs(theirs)))
    diff = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))))
    return diff / scale if scale else diff


def timm_optim(name):
    """`timm.optim.<name>`, without importing timm's package when torchvision is missing.

    timm's `__init__` imports its models (torchvision); its optimizer modules
    need only torch. A CPU-only environment installs timm with `--no-deps`.
    """
    try:
        return importlib.import_module(f"timm.optim.{name}")
    except ImportError:
        spec = importlib.util.find_spec("timm")
        if spec is None:
            raise
    root = spec.submodule_search_locations[0]
    for package, path in (("timm", root), ("timm.optim", f"{root}/optim")):
        if not hasattr(sys.modules.get(package), "__path__"):
            module = types.ModuleType(package)
            module.__path__ = [path]
            sys.modules[package] = module
    return importlib.import_module(f"timm.optim.{name}")

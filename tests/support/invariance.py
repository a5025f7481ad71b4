"""The brute-force twin of the scale-invariance test: one forward pass per kernel.

Independent of `keras_wrs._invariance` (which takes radial derivatives of
random losses and confirms them in groups): here each kernel's filters are
scaled by their own random factors in [0.5, 2], one kernel at a time, and the
training-mode outputs compared, at weights with biases, BatchNorm gammas and
betas and other 1-D variables moved away from their initial values (at
initialization biases are 0, which makes some non-invariant paths look
invariant). BatchNorm epsilon is set to 1e-20, the one term that makes exact
invariance approximate.
"""

import contextlib

import keras
import numpy as np

from keras_wrs.selection import candidate_kernels, iter_layers

__all__ = ["brute_force_changes", "brute_force_invariant", "random_batch", "RTOL"]

RTOL = 2e-3  # as keras_wrs.verify: the same definition of "unchanged"


def random_batch(model, n=8, size=None, seed=1):
    """A float batch for a model with one image-like input (None dims set to `size`)."""
    shape = tuple(size if d is None else d for d in model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


def _leaves(outputs):
    return [
        keras.ops.convert_to_numpy(y).astype("float64")
        for y in keras.tree.flatten(outputs)
        if "float" in str(y.dtype)
    ]


def _relative_change(a, b):
    ref = max(max(np.max(np.abs(y)) for y in a), 1e-12)
    return max(np.max(np.abs(y - z)) for y, z in zip(a, b, strict=True)) / ref


@contextlib.contextmanager
def _same_torch_noise():
    """Unseeded Dropout on PyTorch draws from torch's global generator: fix it per pass."""
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def brute_force_changes(model, x, seed=0) -> dict:
    """`{kernel path: relative change of the outputs when its filters are scaled}`."""
    rng = np.random.default_rng(seed)
    trainable = model.trainable_variables
    values = []
    for v in trainable:
        a = keras.ops.convert_to_numpy(v.value)
        if a.ndim <= 1:
            a = a + rng.normal(0.3, 0.5, size=a.shape).astype(a.dtype)
        values.append(a)
    non_trainable = [v.value for v in model.non_trainable_variables]
    bns = [
        layer
        for layer in iter_layers(model, include_self=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    saved = [bn.epsilon for bn in bns]
    index = {id(v): i for i, v in enumerate(trainable)}
    try:
        for bn in bns:
            bn.epsilon = 1e-20

        def run(vals):
            with _same_torch_noise():
                return _leaves(model.stateless_call(vals, non_trainable, x, training=True)[0])

        base = run(values)
        out = {}
        for s in candidate_kernels(model):
            i = index.get(id(s.variable))
            if i is None:
                continue
            w = values[i]
            kept = {a % w.ndim for a in s.channel_axes}
            shape = tuple(d if a in kept else 1 for a, d in enumerate(w.shape))
            scaled = list(values)
            scaled[i] = (w * np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=shape))).astype(
                w.dtype
            )
            out[s.path] = _relative_change(base, run(scaled))
    finally:
        for bn, eps in zip(bns, saved, strict=True):
            bn.epsilon = eps
    return out


def brute_force_invariant(model, x, seed=0, rtol=RTOL) -> set:
    """Paths of the trainable kernels whose scaling leaves the outputs unchanged."""
    return {p for p, rel in brute_force_changes(model, x, seed).items() if rel <= rtol}

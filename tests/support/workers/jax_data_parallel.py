"""WRS under Keras's JAX distribution API, in its own process (2 CPU devices).

Run by tests/test_jax_distribution.py with `KERAS_BACKEND=jax` and
`XLA_FLAGS=--xla_force_host_platform_device_count=2`. Trains the same
Conv-BN model with keras-wrs SGD from the same initial weights four ways:

* `one`: no distribution (one device);
* `data`: `keras.distribution.DataParallel` over both devices (batch split,
  weights replicated);
* `model_out`: `ModelParallel`, both selected kernels sharded over their
  output channels (each device holds whole filters);
* `model_in`: `ModelParallel`, both kernels sharded over their input-channel
  axis (each filter is split across the devices, so its norm needs a
  reduction across them, which XLA inserts).

Saves every weight after every step, plus how the kernels were laid out, to
an .npz file.

Usage: python jax_dp_worker.py OUT.npz
"""

import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax
import keras
import numpy as np
from support import nets

from keras_wrs.optimizers import SGD

GLOBAL_BATCH = 16
STEPS = 4
KERNELS = ("c1/kernel", "c2/kernel")


def _distribution(kind):
    devices = keras.distribution.list_devices("cpu")
    if kind == "one":
        return None
    if kind == "data":
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
    layout = keras.distribution.LayoutMap(mesh)
    axes = (None, None, None, "model") if kind == "model_out" else (None, None, "model", None)
    for path in KERNELS:
        layout[path] = axes
    return keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch")


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([np.asarray(w.value) for w in self.model.weights])


def _shard_devices(model):
    """Devices holding each selected kernel, and its per-device shard shapes."""
    out = {}
    for w in model.weights:
        if w.path in KERNELS:
            shards = w.value.addressable_shards
            out[w.path] = (len(w.value.sharding.device_set), shards[0].data.shape)
    return out


def _train(kind, x, y):
    distribution = _distribution(kind)
    scope = distribution.scope() if distribution else contextlib.nullcontext()
    with scope:
        model = nets.conv_bn(name=kind)
        rng = np.random.default_rng(0)
        model.set_weights(
            [
                rng.normal(scale=0.5, size=w.shape).astype("float32")
                if w.path.endswith("kernel")
                else np.asarray(w.value)
                for w in model.weights
            ]
        )
        model.compile(
            optimizer=SGD(learning_rate=0.1, momentum=0.9, rescale=model), loss=nets.loss()
        )
        record = _Record()
        model.fit(
            x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[record]
        )
        return model, record.steps, _shard_devices(model)


def main(out):
    assert len(jax.devices()) == 2, jax.devices()
    x, y = nets.data(GLOBAL_BATCH * STEPS, seed=1)
    arrays = {}
    for kind in ("one", "data", "model_out", "model_in"):
        model, steps, shards = _train(kind, x, y)
        arrays[f"{kind}_names"] = np.array([w.path for w in model.weights])
        for path, (count, shape) in shards.items():
            arrays[f"{kind}_devices_{path}"] = np.array(count)
            arrays[f"{kind}_shard_{path}"] = np.array(shape)
        for s, weights in enumerate(steps):
            for i, w in enumerate(weights):
                arrays[f"{kind}_{s}_{i}"] = w
    np.savez(out + ".tmp.npz", **arrays)
    os.replace(out + ".tmp.npz", out)


if __name__ == "__main__":
    main(sys.argv[1])

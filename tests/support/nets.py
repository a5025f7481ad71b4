"""Tiny models shared by the core tests."""

import keras
import numpy as np

L = keras.layers


def conv_bn(width=8, bn_momentum=0.9, synchronized=False, name="tiny"):
    """Conv(3x3, 4->8)-BN-ReLU-Conv(no bias)-BN-ReLU-GAP-Dense on 8x8 inputs."""
    inp = keras.Input((8, 8, 4), name="image")
    h = L.Conv2D(width, 3, padding="same", name="c1")(inp)
    h = L.BatchNormalization(momentum=bn_momentum, synchronized=synchronized, name="bn1")(h)
    h = L.ReLU()(h)
    h = L.Conv2D(width, 3, padding="same", use_bias=False, name="c2")(h)
    h = L.BatchNormalization(momentum=bn_momentum, synchronized=synchronized, name="bn2")(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(3, name="head")(h)
    return keras.Model(inp, out, name=name)


def sequential_conv_bn(name="net"):
    return keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            L.Conv2D(8, 3, padding="same", name="c1"),
            L.BatchNormalization(momentum=0.9, name="bn1"),
            L.ReLU(),
            L.GlobalAveragePooling2D(),
            L.Dense(3, name="head"),
        ],
        name=name,
    )


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 4)).astype("float32")
    y = rng.integers(0, 3, size=n)
    return x, y


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def norms(w, axes=(0, 1, 2)):
    return np.sqrt(np.sum(np.square(np.asarray(w, dtype=np.float64)), axis=axes))

"""One process of the cross-backend tests: a seeded WRS run under `KERAS_BACKEND`.

Run by tests/test_backends_cross.py, once per Keras backend, each in its own
interpreter (a backend is chosen before Keras is imported). The model (a
Conv-BN network), its initial weights (from `INIT.npz`, drawn by NumPy) and
the batches (`keras_wrs.recipes.data.pipeline` on digits, with crops and flips)
are the same on every backend, so the trajectories may differ only by the
backends' float32 arithmetic.

Usage:
    python backend_run.py trajectory INIT.npz OUT.npz [--steps N]
        N steps of `fit` with keras-wrs SGD (WRS); every variable after every
        step goes to OUT.npz as `step{i}/{j}` (j indexes `model.weights`).
    python backend_run.py save INIT.npz MODEL.keras [--steps N]
        N steps, then `model.save(MODEL.keras)` (optimizer and WRS state).
    python backend_run.py resume MODEL.keras OUT.npz [--steps N] [--export DIR]
        Load MODEL.keras, check its optimizer state, N more steps (the stream
        continues where the saved run stopped), then optionally export with
        `keras_wrs.export` (TensorFlow).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import keras
import numpy as np

import keras_wrs
from keras_wrs.recipes import data

BATCH = 32
STEPS_PER_EPOCH = 4


def build_model():
    """A small Conv-BN-ReLU network on 8x8x1 digits; two kernels are rescaled."""
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i, width in enumerate((8, 16)):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"c{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x))


def initial_weights(model, seed=0):
    """NumPy-drawn weights for `model`, the same on every backend."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, 0.3, v.shape).astype("float32")
        if "kernel" in v.path
        else np.asarray(v.numpy())
        for v in model.weights
    ]


def compiled(init):
    model = build_model()
    model.set_weights([init[f"w{j}"] for j in range(len(model.weights))])
    model.compile(
        optimizer=keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    return model


def stream(start_epoch, steps):
    """The recipes' training stream on digits, from `start_epoch`, `steps` long."""
    splits = data.load_splits("digits")
    epochs = start_epoch + -(-steps // STEPS_PER_EPOCH)
    batches, _ = data.train_dataset(
        splits,
        BATCH,
        seed=0,
        start_epoch=start_epoch,
        epochs=epochs,
        steps_per_epoch=STEPS_PER_EPOCH,
    )
    return batches


class Record(keras.callbacks.Callback):
    """Every variable after every training step."""

    def __init__(self):
        super().__init__()
        self.arrays = {}

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        for j, v in enumerate(self.model.weights):
            self.arrays[f"step{step}/{j}"] = keras.ops.convert_to_numpy(v)


def fit(model, start_epoch, steps):
    record = Record()
    model.fit(
        stream(start_epoch, steps),
        epochs=steps // STEPS_PER_EPOCH,
        steps_per_epoch=STEPS_PER_EPOCH,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    )
    return record.arrays


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("init", "trajectory", "save", "resume"))
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--export")
    args = parser.parse_args(argv)
    if args.steps % STEPS_PER_EPOCH:
        parser.error(f"--steps must be a multiple of {STEPS_PER_EPOCH}")
    if args.mode == "init":
        np.savez(args.target, **{f"w{j}": w for j, w in enumerate(initial_weights(build_model()))})
        return 0
    if args.mode in ("trajectory", "save"):
        model = compiled(np.load(args.source))
        arrays = fit(model, 0, args.steps)
        if args.mode == "save":
            model.save(args.target)
        else:
            np.savez(
                args.target,
                backend=keras.backend.backend(),
                paths=np.array([v.path for v in model.weights]),
                **arrays,
            )
        return 0
    model = keras.saving.load_model(args.source)
    done = int(model.optimizer.iterations.numpy())
    arrays = fit(model, done // STEPS_PER_EPOCH, args.steps)
    arrays["resumed_at"] = np.array(done)
    arrays["target_norm"] = np.array(float(model.optimizer.target_norm))
    if args.export:
        from keras_wrs.export import export_model

        export_model(
            model,
            args.export,
            formats="saved_model,onnx",
            batch=data.probe_batch(data.load_splits("digits"), 16),
        )
    np.savez(args.target, backend=keras.backend.backend(), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())

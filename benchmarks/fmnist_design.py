"""The measurements behind `fmnist_resnet9` (`benchmarks/fmnist_time_to_accuracy.md`).

Plain Keras on in-memory Fashion-MNIST arrays (read by the recipes' checked
IDX reader), with process CPU seconds (`resource.getrusage`, all threads)
next to wall seconds, because the machine they ran on was shared:

    # 1. CPU seconds a 60,000-image epoch: network x precision x XLA (30 steps)
    python benchmarks/fmnist_design.py probe resnet9 --width 16 --batch 256 --precision mixed_bfloat16
    python benchmarks/fmnist_design.py probe resnet --depth 20 --width 16 --batch 256 --xla
    # 4. threads: THREADS=1 caps TensorFlow's intra/inter-op pools (run two at once)
    THREADS=1 python benchmarks/fmnist_design.py probe resnet9 --steps 60 --precision mixed_bfloat16
    # 2. a bare `fit` on 54,000 images, validation on the fixed 6,000 (test untouched)
    python benchmarks/fmnist_design.py train --method wd --lr 0.2 --wd 5e-3
    python benchmarks/fmnist_design.py train --method wrs --lr 0.2 --wd 5e-3

Each prints one JSON line per measurement (per epoch for `train`). Section 3
(the recipe trainer) is `keras-wrs train fmnist_resnet9` with its history's
`epoch_cpu_seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _threads():
    count = int(os.environ.get("THREADS", "0"))
    if count:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)
    return count


def _model(args):
    from keras_wrs.recipes import models

    kwargs = {"width": args.width}
    if args.model == "resnet":
        kwargs["depth"] = args.depth
    return getattr(models, args.model)(input_shape=(28, 28, 1), num_classes=10, **kwargs)


def _fashion_mnist():
    from keras_wrs.recipes.data import fashion_mnist as fm

    directory, _ = fm.find_idx_dir()
    if directory is None:
        sys.exit(f"Fashion-MNIST not found. {fm.HOW_TO_GET}")
    return fm.load_idx_splits(directory)


def probe(args):
    """CPU and wall seconds of `--steps` training steps on random inputs."""
    threads = _threads()
    import keras

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    model = _model(args)
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.xla,
    )
    n = args.batch * args.steps
    x = np.random.default_rng(0).normal(size=(n, 28, 28, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, n)
    model.fit(x[: 3 * args.batch], y[: 3 * args.batch], batch_size=args.batch, verbose=0)
    wall, cpu = time.perf_counter(), _cpu()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    print(
        json.dumps(
            {
                "model": args.model,
                "width": args.width,
                "batch": args.batch,
                "xla": args.xla,
                "precision": args.precision,
                "threads": threads,
                "params": model.count_params(),
                "img_per_s_wall": round(n / wall),
                "cpu_ms_per_img": round(1000 * cpu / n, 3),
                "epoch60k_cpu_s": round(60_000 * cpu / n, 1),
                "load1": os.getloadavg()[0],
            }
        ),
        flush=True,
    )


def _augment(images, rng, pad):
    """Zero-pad `pad`, random crop back to 28x28, random horizontal flip."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy, dx = rng.integers(0, 2 * pad + 1, n), rng.integers(0, 2 * pad + 1, n)
    rows = dy[:, None] + np.arange(28)[None]
    cols = dx[:, None] + np.arange(28)[None]
    out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def train(args):
    """A bare `fit`, one epoch per call, on the 54,000 / 6,000 split of the recipes."""
    _threads()
    import keras

    from keras_wrs.recipes import data

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    x_tr, y_tr, x_te, y_te = _fashion_mnist()
    splits = data.subset_splits(
        data.splits_from_arrays("fashion_mnist", x_tr, y_tr, x_te, y_te), validation_examples=6000
    )
    mean, std = splits.info.mean[0], splits.info.std[0]

    def normalize(images):
        return (images.astype("float32") / 255.0 - mean) / std

    model = _model(args)
    steps = len(splits.y_train) // args.batch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps * (args.epochs - 1), warmup_target=args.lr, warmup_steps=steps
    )
    kwargs = {"learning_rate": schedule, "momentum": 0.9, "nesterov": True}
    if args.method in ("wd", "wrs"):
        kwargs["weight_decay"] = args.wd
    if args.method == "wrs":
        from keras_wrs.optimizers import SGD

        optimizer = SGD(rescale=model, **kwargs)
    else:
        optimizer = keras.optimizers.SGD(**kwargs)
    model.compile(
        optimizer,
        keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=["accuracy"],
    )
    x_val, y_val = normalize(splits.x_val), keras.utils.to_categorical(splits.y_val, 10)
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        wall, cpu = time.perf_counter(), _cpu()
        order = rng.permutation(len(splits.y_train))[: steps * args.batch]
        x = normalize(_augment(splits.x_train[order], rng, 2))
        y = keras.utils.to_categorical(splits.y_train[order], 10)
        history = model.fit(x, y, batch_size=args.batch, shuffle=False, verbose=0)
        train_wall, train_cpu = time.perf_counter() - wall, _cpu() - cpu
        cpu = _cpu()
        val = model.evaluate(x_val, y_val, batch_size=1000, verbose=0, return_dict=True)
        print(
            json.dumps(
                {
                    "epoch": epoch + 1,
                    "method": args.method,
                    "train_accuracy": round(history.history["accuracy"][0], 4),
                    "val_accuracy": round(val["accuracy"], 4),
                    "train_wall_s": round(train_wall, 1),
                    "train_cpu_s": round(train_cpu, 1),
                    "val_cpu_s": round(_cpu() - cpu, 1),
                    "load1": os.getloadavg()[0],
                }
            ),
            flush=True,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("probe", "train"))
    parser.add_argument("model", nargs="?", default="resnet9", choices=("resnet9", "resnet"))
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=20, help="resnet only")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--method", default="wd", choices=("none", "wd", "wrs"))
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--wd", type=float, default=5e-3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    (probe if args.mode == "probe" else train)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput of the WRS optimizers on a GPU, through Keras's JAX backend.

The keras-wrs optimizers use only `keras.ops` and Keras's public optimizer
hooks, so they run on any Keras backend. This benchmark exists because the GPU
machines this project can borrow have JAX but no TensorFlow, and TensorFlow's
GPU wheel (572 MB) is too large to carry there: it measures the same settings
as `bench_train.py` (WRS vs the same SGD-momentum without rescaling vs Keras
SGD with weight decay; float32 vs mixed precision) with `model.fit` on
ResNet-20 (the recipes' builder) and random CIFAR-shaped arrays held in memory.
On JAX every train step is compiled by XLA (`jit_compile=True`); one row runs
with `jit_compile=False` to show what that costs.

Each setting: one `fit` call to compile and warm up, then `--repeats` timed
`fit` calls of `--steps` steps; the median is reported.

Command (on the GPU machine):
    KERAS_BACKEND=jax python benchmarks/bench_train_jax.py --out benchmarks/train_results_gpu.md

`bench_gpu.py` goes further: the recipe trainer against a bare `fit` on
device-resident arrays, a ~10M-parameter model, and the Fashion-MNIST protocol.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

import keras_wrs
from keras_wrs.recipes.models import resnet

SGD = dict(learning_rate=0.1, momentum=0.9)
# name -> (description, dtype policy, jit_compile, optimizer factory); the first is the baseline.
SETTINGS = {
    "wd": (
        "Keras SGD-momentum + weight decay",
        "float32",
        True,
        lambda m: keras.optimizers.SGD(weight_decay=5e-4, **SGD),
    ),
    "off": (
        "keras-wrs SGD-momentum, rescale=[] (off)",
        "float32",
        True,
        lambda m: keras_wrs.optimizers.SGD(rescale=[], **SGD),
    ),
    "wrs": (
        "keras-wrs SGD-momentum, WRS (rescale=model)",
        "float32",
        True,
        lambda m: keras_wrs.optimizers.SGD(rescale=m, **SGD),
    ),
    "wd_fp16": (
        "Keras SGD-momentum + weight decay",
        "mixed_float16",
        True,
        lambda m: keras.optimizers.SGD(weight_decay=5e-4, **SGD),
    ),
    "wrs_fp16": (
        "keras-wrs WRS",
        "mixed_float16",
        True,
        lambda m: keras_wrs.optimizers.SGD(rescale=m, **SGD),
    ),
    "wd_bf16": (
        "Keras SGD-momentum + weight decay",
        "mixed_bfloat16",
        True,
        lambda m: keras.optimizers.SGD(weight_decay=5e-4, **SGD),
    ),
    "wrs_bf16": (
        "keras-wrs WRS",
        "mixed_bfloat16",
        True,
        lambda m: keras_wrs.optimizers.SGD(rescale=m, **SGD),
    ),
    "wrs_nojit": (
        "keras-wrs WRS, jit_compile=False",
        "float32",
        False,
        lambda m: keras_wrs.optimizers.SGD(rescale=m, **SGD),
    ),
}


def measure(name, steps, batch_size, repeats):
    """Median images/second of `repeats` timed fits of `steps` steps."""
    _, policy, jit, make = SETTINGS[name]
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = resnet(depth=20)
    model.compile(
        optimizer=make(model),
        jit_compile=jit,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.random((steps * batch_size, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch_size)
    model.fit(x[: 3 * batch_size], y[: 3 * batch_size], batch_size=batch_size, verbose=0)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, verbose=0, shuffle=False)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    keras.config.set_dtype_policy("float32")
    return statistics.median(rates)


def device():
    import jax

    d = jax.devices()[0]
    return f"{d.device_kind} ({d.platform}), jax {jax.__version__}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "train_results_gpu.md")
    )
    args = parser.parse_args(argv)
    names = [n for n in args.settings.split(",") if n]
    bad = [n for n in names if n not in SETTINGS]
    if bad:
        parser.error(f"unknown settings {bad}; valid: {', '.join(SETTINGS)}")
    results = {}
    for name in names:
        steps = args.steps if SETTINGS[name][2] else max(2, args.steps // 10)
        results[name] = measure(name, steps, args.batch_size, args.repeats)
        print(f"{name}: {results[name]:.0f} images/s", flush=True)
    base = results[names[0]]
    rows = [
        f"| {SETTINGS[n][0]} | {SETTINGS[n][1]} | {'on' if SETTINGS[n][2] else 'off'} | "
        f"{r:.0f} | {r / base:.2f}x |"
        for n, r in results.items()
    ]
    text = (
        f"""# Training throughput on a GPU: ResNet-20, Keras JAX backend

Command: `KERAS_BACKEND=jax python benchmarks/bench_train_jax.py {" ".join(argv if argv is not None else sys.argv[1:])}`
Date: {datetime.date.today().isoformat()}. Device: {device()}; host {platform.machine()}, {os.cpu_count()} logical cores.
Versions: Python {platform.python_version()}, keras {keras.__version__}, keras-wrs {keras_wrs.__version__}, numpy {np.__version__}.
What runs: `model.fit` on ResNet-20 (0.27M parameters), random 32x32x3 arrays in host memory, batch {args.batch_size}, SGD momentum 0.9, {args.steps} steps per timed fit (a tenth of that without jit), median of {args.repeats}. Throughput includes Keras's host-to-device batch transfer.

| setting | dtype policy | XLA (jit_compile) | images/s | vs first row |
|---|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of the training-dynamics callbacks as a fraction of a training step.

Trains ResNet-20 (CIFAR shapes, random data) with `model.fit` and one
callback at a time, wrapped in a timer that measures, in the same run and
step by step, the training step itself and the time the callback's hooks
add. Costs are reported per measurement, in units of the median step time,
and amortized over a CIFAR-10 epoch (391 steps of batch 128) for the
callbacks that run once per epoch.

Usage:
    python benchmarks/bench_callbacks.py                 # prints the table
    python benchmarks/bench_callbacks.py --write benchmarks/callbacks_results.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_wrs
from keras_wrs.dynamics import (
    Sharpness,
    SpanNoise,
    WeightDynamics,
)
from keras_wrs.recipes.models import resnet

CIFAR_EPOCH = 391  # steps of batch 128 in a CIFAR-10 epoch


class Timed(keras.callbacks.Callback):
    """Runs `inner` and times its hooks and, between them, the training step."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.step_s, self.hook_s, self.epoch_s = inner, [], [], []

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def _timed(self, fn, *args):
        t = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t

    def on_train_begin(self, logs=None):
        self.begin_s = self._timed(self.inner.on_train_begin, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.inner.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._hook = self._timed(self.inner.on_train_batch_begin, batch, logs)
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_s.append(time.perf_counter() - self._t)
        self.hook_s.append(self._hook + self._timed(self.inner.on_train_batch_end, batch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_s.append(self._timed(self.inner.on_epoch_end, epoch, logs))

    def on_train_end(self, logs=None):
        self.inner.on_train_end(logs)


def build(batch):
    model = resnet(depth=20)
    model.compile(
        keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def data(batch, n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    return (
        x,
        y,
        tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat(),
    )


def measure(label, make_callback, args, x, y, ds):
    keras.utils.set_random_seed(0)
    model = build(args.batch)
    timed = Timed(make_callback(x, y))
    # Epoch 0 absorbs tracing; epoch 1 is timed.
    model.fit(ds, steps_per_epoch=args.steps, epochs=2, callbacks=[timed], verbose=0)
    steps = timed.step_s[args.steps :]
    hooks = timed.hook_s[args.steps :]
    step = statistics.median(steps)
    return {
        "label": label,
        "step_ms": 1e3 * step,
        "per_step": statistics.median(h / s for h, s in zip(hooks, steps, strict=True)),
        "epoch_end_ms": 1e3 * timed.epoch_s[-1],
        "epoch_end_steps": timed.epoch_s[-1] / step,
    }


CASES = {
    "none (baseline)": lambda x, y: keras.callbacks.Callback(),
    "WeightDynamics, every step": lambda x, y: WeightDynamics(schedule=1),
    "WeightDynamics + grad_norm (probe 32), every step": lambda x, y: WeightDynamics(
        schedule=1, probe=(x[:32], y[:32])
    ),
    "SpanNoise eigh float64 (probe 64), per epoch": lambda x, y: SpanNoise(x[:64]),
    "SpanNoise randomized k=64, q=0 (probe 64), per epoch": lambda x, y: SpanNoise(
        x[:64], method="randomized", sketch_size=64, power_iterations=0
    ),
    "Sharpness (probe 64, 10 iterations), per epoch": lambda x, y: Sharpness(
        (x[:64], y[:64]), max_iterations=10, tolerance=1e-12
    ),
}


def large_layer(d=2304, n=4096, k=256, seed=0):
    """Exact vs randomized span on one wide layer (3x3x256 patches), synthetic inputs.

    Rows `n x d` with singular values `1/sqrt(j+1)` up to a rank `r`, then 0;
    a random 64-filter kernel. Times the span and noise computation alone
    (float64), and compares the noise ratio.
    """
    from keras import ops

    from keras_wrs.dynamics import span as wspan

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    w = rng.normal(size=(d, 64))
    out = []
    for rank in (k // 2, 1500):
        sv = np.where(np.arange(d) < rank, 1.0 / np.sqrt(1 + np.arange(d)), 0.0)
        rows = ops.convert_to_tensor(((rng.normal(size=(n, d)) * sv) @ basis.T).astype("float32"))
        t = time.perf_counter()
        span, comp, got = wspan.exact_span(wspan.accumulate_gram(None, rows), 1e-6)
        exact = ops.convert_to_numpy(wspan.noise_stats(w, span, comp))
        out.append((rank, "eigh", time.perf_counter() - t, int(got), exact[0]))
        p64 = ops.cast(rows, "float64")
        for q in (0, 1):
            t = time.perf_counter()
            ((span, _, got),) = wspan.randomized_spans(
                lambda ms, p64=p64: [ops.matmul(ops.transpose(p64), ops.matmul(p64, ms[0]))],
                [d],
                1e-6,
                k,
                q,
            )
            approx = ops.convert_to_numpy(wspan.noise_stats(w, span))
            out.append(
                (rank, f"randomized k={k}, q={q}", time.perf_counter() - t, int(got), approx[0])
            )
    lines = [
        "| input rank | method | time (s) | span rank found | noise ratio (mean over filters) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r} | {m} | {t:.2f} | {g} | {v:.4f} |" for r, m, t, g, v in out]
    return "\n".join(lines)


def table(rows, steps):
    out = [
        "| callback | step time (ms) | cost per step, fraction of a step | epoch-end cost (ms) | "
        f"epoch-end cost, in steps | per CIFAR-10 epoch ({CIFAR_EPOCH} steps), fraction |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        amortized = r["per_step"] + r["epoch_end_steps"] / CIFAR_EPOCH
        out.append(
            f"| {r['label']} | {r['step_ms']:.0f} | {r['per_step']:.3f} | {r['epoch_end_ms']:.0f} | "
            f"{r['epoch_end_steps']:.2f} | {amortized:.3f} |"
        )
    return "\n".join(out)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tf_wheel():
    from importlib import metadata

    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return f"tensorflow {tf.__version__}"


def describe():
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"Machine: {_cpu_name()}, {os.cpu_count()} logical cores, no GPU, "
        f"{platform.system()} {platform.machine()}; load average at start: {load}.\n"
        f"Versions: Python {platform.python_version()}, keras-wrs {keras_wrs.__version__}, "
        f"keras {keras.__version__}, {_tf_wheel()}, numpy {np.__version__}."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--steps", type=int, default=8, help="timed steps (after as many warm-up steps)"
    )
    parser.add_argument("--write", help="write a markdown report to this file")
    args = parser.parse_args(argv)
    machine = describe()
    t0 = time.perf_counter()
    x, y, ds = data(args.batch)
    rows = []
    for label, make in CASES.items():
        rows.append(measure(label, make, args, x, y, ds))
        print(rows[-1], flush=True)
    text = table(rows, args.steps)
    print(text)
    large = large_layer()
    print(large)
    text += "\n" + LARGE + large + "\n"
    if args.write:
        cmd = f"python benchmarks/bench_callbacks.py --batch {args.batch} --steps {args.steps} --write {args.write}"
        with open(args.write, "w") as f:
            f.write(
                HEADER.format(
                    cmd=cmd,
                    date=time.strftime("%Y-%m-%d"),
                    wall=time.perf_counter() - t0,
                    machine=machine,
                    batch=args.batch,
                    steps=args.steps,
                )
                + text
                + "\n"
                + NOTES
            )
    return 0


HEADER = """# Dynamics callbacks benchmark: cost as a fraction of a training step

Command: `{cmd}`
Date: {date}; wall time {wall:.0f} s.
{machine}
Model: ResNet-20 (`keras_wrs.recipes.models.resnet(depth=20)`, 0.27M parameters, 19 scale-invariant
conv kernels watched), `keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model)`, float32, batch
{batch} of random 32x32x3 inputs. One `model.fit` per row: {steps} warm-up steps, then {steps} timed
steps. A wrapper times, step by step in the same run, the training step and the callback's hooks;
the cost per step is the median of hook time / step time. Epoch-end costs (SpanNoise, Sharpness,
and WeightDynamics' end-of-epoch read-back) are one measurement, in units of the median step.
Timings on this kind of machine vary by 30-50% from run to run; compare ratios within one run.

"""

LARGE = """
## The cheaper path for wide layers

One layer with d = 3x3x256 = 2304 (a VGG-16 block), N = 4096 input vectors (64 examples, 8x8
positions), synthetic inputs of a given rank, float64, the span and noise computation alone
(`span.exact_span` vs `span.randomized_spans`; `q` = power iterations):

"""

NOTES = """
Reading the tables: the last column of the first is what each schedule costs over a CIFAR-10
epoch (per-step cost + epoch-end cost / 391). Step times differ between rows because other
processes shared the 2 cores; each ratio is taken within its own run.

- `WeightDynamics(schedule=1)` is its most expensive schedule (a copy of the watched kernels before
  the step, a few reductions after it); `schedule=10` or `"log"` divides that cost accordingly.
  `grad_norm` costs one forward-backward pass of the probe per measured step.
- SpanNoise's exact path is dominated by the float64 Gram accumulation, O(N d^2) with d up to 576
  here, then the eigendecompositions. Its randomized path does not pay on ResNet-20: each of its
  `2 + q` passes repeats the probe forward pass and the im2col, and 2k/d is not small for d <= 576
  (layers with d <= 2k get the exact span anyway). It pays on wide layers (second table): 10-20x
  faster, exact when the input rank is at most k - 10, an over-estimate of the noise otherwise.
- Sharpness costs about 2-4 forward-backward passes of the probe per power iteration; later
  estimates warm-start from the previous eigenvector and usually stop early (`tolerance`), which
  this one-shot measurement (`tolerance=1e-12`, all 10 iterations) does not show.
"""

if __name__ == "__main__":
    sys.exit(main())

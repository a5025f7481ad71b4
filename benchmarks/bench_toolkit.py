"""Cost of SGDP/AdamP, AdamH and SGDC/AdamC against their Keras bases, one model, one process.

Each optimizer trains its own copy of ResNet-20 (`keras_wrs.recipes.models`,
depth 20, width 16, 0.27M parameters) at 32x32x3 on one fixed random batch,
and is timed two ways, interleaved round by round with every other optimizer
(so a change of machine load hits every row of a round alike):

- train step: `model.train_on_batch` (forward, backward, optimizer; the
  compiled train function, XLA off);
- optimizer step: `optimizer.apply` of fixed gradients in a `tf.function`
  (the optimizer's own work, with nothing around it).

An untimed round first: right after all models are built, the first call of
each earlier model's train function took seconds (measured: 6.7 s, then
0.1-0.2 s).

Each row's ratio is the median over rounds of (its time / its base's time in
the same round). The bases are Keras's classes with the same arguments: SGD
(momentum 0.9, weight decay 5e-4), Adam and AdamW (weight decay 5e-2); SGDP
gets 5e-5, its decay being divided by 1 - momentum.

Command:
    python benchmarks/bench_toolkit.py                  # writes benchmarks/toolkit_results.md
    python benchmarks/bench_toolkit.py --rounds 1 --steps 2 --batch-size 16 --out r.md   # smoke
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_wrs
from keras_wrs import optimizers as wo
from keras_wrs.recipes.models import resnet

SGD = {"learning_rate": 0.1, "momentum": 0.9}
ADAM = {"learning_rate": 1e-3, "weight_decay": 5e-2}

# name -> (base row, factory(model) -> optimizer); a base row names itself.
OPTIMIZERS = {
    "keras SGD": ("keras SGD", lambda m: keras.optimizers.SGD(weight_decay=5e-4, **SGD)),
    "SGDP (cosine test)": ("keras SGD", lambda m: wo.SGDP(weight_decay=5e-5, **SGD)),
    "SGDP (projection=model)": (
        "keras SGD",
        lambda m: wo.SGDP(weight_decay=5e-5, projection=m, **SGD),
    ),
    "SGDC": ("keras SGD", lambda m: wo.SGDC(weight_decay=5e-4, **SGD)),
    "WRS SGD (rescale=model)": (
        "keras SGD",
        lambda m: wo.SGD(weight_decay=5e-4, rescale=m, **SGD),
    ),
    "keras Adam": ("keras Adam", lambda m: keras.optimizers.Adam(**ADAM)),
    "AdamP (cosine test)": ("keras Adam", lambda m: wo.AdamP(**ADAM)),
    "AdamH (rescale=model)": ("keras Adam", lambda m: wo.AdamH(rescale=m, **ADAM)),
    "keras AdamW": ("keras AdamW", lambda m: keras.optimizers.AdamW(**ADAM)),
    "AdamC": ("keras AdamW", lambda m: wo.AdamC(**ADAM)),
}


def setup(factory, batch, seed):
    """A compiled ResNet-20 with its optimizer, its batch, and a compiled optimizer step."""
    keras.utils.set_random_seed(seed)
    model = resnet((32, 32, 3), 10, depth=20)
    optimizer = factory(model)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    x, y = batch
    model.train_on_batch(x, y)  # builds the optimizer, traces the train function
    rng = np.random.default_rng(seed)
    grads = [
        tf.constant(1e-3 * rng.normal(size=v.shape).astype("float32"))
        for v in model.trainable_variables
    ]
    apply = tf.function(lambda: optimizer.apply(grads, model.trainable_variables))
    apply()  # traces
    return model, apply


def timed(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3  # ms per call


def run(args):
    rng = np.random.default_rng(0)
    batch = (
        rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32"),
        rng.integers(0, 10, args.batch_size),
    )
    built = {name: setup(factory, batch, 0) for name, (_, factory) in OPTIMIZERS.items()}
    train = {name: [] for name in OPTIMIZERS}
    step = {name: [] for name in OPTIMIZERS}
    loads = []
    x, y = batch
    for model, apply in built.values():
        # An untimed round: the first call of each after all are built runs for seconds.
        model.train_on_batch(x, y)
        apply()
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, (model, apply) in built.items():
            train[name].append(timed(lambda m=model: m.train_on_batch(x, y), args.steps))
            step[name].append(timed(apply, args.apply_steps))
    return train, step, loads


def ratio(times, name):
    base = OPTIMIZERS[name][0]
    return statistics.median(t / b for t, b in zip(times[name], times[base], strict=True))


def table(train, step):
    lines = [
        "| optimizer | base | train step, ms (median) | vs base | optimizer step, ms (median) "
        "| vs base | train step each round (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (base, _) in OPTIMIZERS.items():
        base_cell = "(base)" if base == name else base
        lines.append(
            f"| {name} | {base_cell} | {statistics.median(train[name]):.0f} | "
            f"{ratio(train, name):.2f}x | {statistics.median(step[name]):.1f} | "
            f"{ratio(step, name):.2f}x | {', '.join(f'{t:.0f}' for t in train[name])} |"
        )
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="train steps per optimizer and round")
    ap.add_argument("--apply-steps", type=int, default=20, help="optimizer steps per round")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "toolkit_results.md"))
    args = ap.parse_args(argv)
    before, started = os.getloadavg(), time.perf_counter()
    train, step, loads = run(args)
    after = os.getloadavg()
    lines = [
        "# Cost of the toolkit's optimizers against their Keras bases",
        "",
        f"Command: `python benchmarks/bench_toolkit.py --rounds {args.rounds} --steps "
        f"{args.steps} --apply-steps {args.apply_steps} --batch-size {args.batch_size}`",
        f"Date: {datetime.date.today()}; wall time {time.perf_counter() - started:.0f} s.",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical cores, no GPU; load average "
        f"(1, 5, 15 min) before: {' '.join(f'{x:.2f}' for x in before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in after)}; 1-minute load at the start of each round: "
        f"{', '.join(f'{x:.1f}' for x in loads)}.",
        f"Versions: Python {platform.python_version()}, keras-wrs {keras_wrs.__version__}, "
        f"keras {keras.__version__}, tensorflow {tf.__version__}.",
        f"What runs: ResNet-20 (0.27M parameters, 65 variables) at 32x32x3, batch "
        f"{args.batch_size} of random images, float32, XLA off; {args.rounds} rounds, each "
        f"timing every optimizer in turn ({args.steps} train steps, {args.apply_steps} "
        "optimizer steps). Ratios: median over rounds of the row's time over its base's in "
        "the same round.",
        "",
        *table(train, step),
        "",
    ]
    with open(args.out + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(args.out + ".tmp", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

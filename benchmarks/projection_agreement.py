"""How often AdamP's per-step cosine test and keras-wrs's selection disagree, on the recipes' models.

AdamP (`keras_wrs.optimizers.AdamP(projection="cosine")`, the reference's
rule) decides at every step, per kernel, whether a weight looks
scale-invariant: `|cos(grad, w)| < delta / sqrt(d)` for every output channel
(then it projects per channel), else for the whole kernel (per layer).
keras-wrs's selection (`keras_wrs.select_scale_invariant(model)`) decides
once, per kernel, from the model. This script trains each registered model of
`keras_wrs.recipes.models.MODELS` for a few steps with the recipes' `sgdp`
regularization (AdamP with the recipe's weight decay, at a constant learning
rate) and records, per step and per kernel (every trainable variable of
rank >= 2, the ones the test looks at), whether the test fired, per channel
or per layer, next to whether the kernel is selected.

The decision is the optimizer's own function (`keras_wrs.optimizers.sgdp.
projected_update`) on the optimizer's inputs (the step's gradient and the
kernel before the step), evaluated in the same compiled step, just before
`optimizer.apply`.

Each model is built at the input size of the first recipe that uses it, with
that recipe's `model_kwargs`, on that recipe's data when it is available
offline (digits, Fashion-MNIST); the CIFAR recipes' models train on
`synthetic_shapes` (the same 32x32x3 shape, 10 classes, not CIFAR).

Command:
    python benchmarks/projection_agreement.py            # writes benchmarks/projection_agreement_results.md
    python benchmarks/projection_agreement.py --models small_cnn,resnet8 --steps 5 --out r.md   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_wrs
from keras_wrs.optimizers.sgdp import projected_update
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import data
from keras_wrs.recipes.models import MODELS, build_model
from keras_wrs.recipes.training import optim

OFFLINE = ("digits", "fashion_mnist", "synthetic_shapes")
NONE, CHANNEL, LAYER = 0, 1, 2


def recipe_for(model_name):
    """`(recipe name, Config)`: the first recipe of the model with offline data, else the first."""
    using = [(n, c) for n, c in cfg.RECIPES.items() if c.model == model_name]
    offline = [(n, c) for n, c in using if c.dataset in OFFLINE]
    return (offline or using)[0]


def run_config(config, batch_size, steps):
    """The recipe's config for this measurement: `sgdp` with Adam, offline data, no extras."""
    changes = dict(
        regularization="sgdp",
        optimizer="adam",
        batch_size=batch_size,
        precision="float32",
        jit_compile=False,
        dynamics=False,
        plots=False,
        tensorboard=False,
        validation_examples=None,
    )
    if config.dataset not in OFFLINE:
        changes.update(
            dataset="synthetic_shapes",
            synthetic_train=batch_size * steps,
            synthetic_test=batch_size,
            data_dir=None,
        )
    if config.train_examples is not None:
        changes["train_examples"] = max(config.train_examples, batch_size * steps)
    return cfg.validate(dataclasses.replace(config, **changes))


def _decision(gradient, kernel, optimizer):
    """0: the cosine test did not fire; 1: it fired per channel; 2: per layer.

    `projected_update` of a direction with a different length per output
    channel along the kernel: a per-channel projection removes all of it, a
    per-layer one only part of it, none leaves it whole (and the decay factor
    at 1).
    """
    channels = kernel.shape[-1]
    scale = 1.0 + keras.ops.arange(channels, dtype="float32") / channels
    direction = keras.ops.cast(kernel, "float32") * scale
    out, factor = projected_update(
        direction, kernel, gradient, optimizer.delta, optimizer.wd_ratio, optimizer.epsilon
    )
    left = keras.ops.sqrt(keras.ops.sum(out * out)) / keras.ops.sqrt(
        keras.ops.sum(direction * direction)
    )
    fired = factor < 1.0
    return tf.where(fired, tf.where(left < 1e-3, CHANNEL, LAYER), NONE)


def measure(model_name, batch_size, steps, seed):
    recipe, config = recipe_for(model_name)
    config = run_config(config, batch_size, steps)
    keras.utils.set_random_seed(seed)
    splits = data.splits_for(config)
    model = build_model(
        config.model, splits.info.input_shape, splits.info.num_classes, **config.model_kwargs
    )
    hp = optim.resolve_hyperparameters(config, steps)
    optimizer = optim.make_optimizer(config, hp, hp.learning_rate, model)
    assert type(optimizer).__name__ == "AdamP" and optimizer.projection == "cosine"
    variables = model.trainable_variables
    optimizer.build(variables)
    kernels = [i for i, v in enumerate(variables) if len(v.shape) >= 2]
    selected = {s.path for s in keras_wrs.select_scale_invariant(model)}
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, variables)
        decided = tf.stack([_decision(grads[i], variables[i], optimizer) for i in kernels])
        optimizer.apply(grads, variables)
        return loss, decided

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(splits.y_train))
    decisions, losses = [], []
    start = time.perf_counter()
    for s in range(steps):
        idx = order[(s * batch_size) % len(order) :][:batch_size]
        x = data.normalize(splits.x_train[idx], splits.info)
        loss, decided = step(x, splits.y_train[idx].astype("int32"))
        decisions.append(decided.numpy())
        losses.append(float(loss))
    seconds = time.perf_counter() - start
    paths = [variables[i].path for i in kernels]
    return {
        "model": model_name,
        "recipe": recipe,
        "dataset": config.dataset,
        "input": tuple(splits.info.input_shape),
        "kwargs": config.model_kwargs,
        "params": sum(int(np.prod(v.shape)) for v in variables),
        "paths": paths,
        "selected": [p in selected for p in paths],
        "decisions": np.array(decisions),  # (steps, kernels)
        "loss": (losses[0], losses[-1]),
        "seconds": seconds,
    }


def _pct(count, total):
    return f"{100 * count / total:.1f}%" if total else "-"


def summary_row(r):
    d, sel = r["decisions"], np.array(r["selected"])
    fired = d != NONE
    n_sel = int(sel.sum())
    on_sel, on_other = fired[:, sel], fired[:, ~sel]
    missed = int((~on_sel).sum())
    extra = int(on_other.sum())
    cells = d.size
    disagree_kernels = int((~on_sel).any(axis=0).sum() + on_other.any(axis=0).sum())
    shape = "x".join(map(str, r["input"]))
    kwargs = ", ".join(f"{k}={v}" for k, v in r["kwargs"].items()) or "defaults"
    return (
        f"| {r['model']} ({kwargs}) | {r['recipe']}, {shape}, {r['dataset']} | "
        f"{r['params']:,} | {d.shape[1]} | {n_sel} | "
        f"{_pct(int(on_sel.sum()), on_sel.size)} ({_pct(int((d[:, sel] == CHANNEL).sum()), on_sel.size)} "
        f"per channel) | {_pct(extra, on_other.size)} | "
        f"{missed + extra} of {cells} ({_pct(missed + extra, cells)}) | {disagree_kernels} |"
    )


def kernel_rows(r):
    d, rows = r["decisions"], []
    for j, (path, sel) in enumerate(zip(r["paths"], r["selected"], strict=True)):
        fired = d[:, j] != NONE
        if fired.all() == sel and (fired.any() == sel):
            continue  # agrees at every step
        rows.append(
            f"| {r['model']} | `{path}` | {'yes' if sel else 'no'} | "
            f"{_pct(int(fired.sum()), len(fired))} | {_pct(int((d[:, j] == CHANNEL).sum()), len(fired))} | "
            f"{_pct(int((d[:, j] == LAYER).sum()), len(fired))} |"
        )
    return rows


def write(results, args, started, load_before, out):
    """The results file (rewritten after every model, so a long run leaves what it measured)."""
    command = (
        f"python benchmarks/projection_agreement.py --models {args.models} --steps {args.steps} "
        f"--batch-size {args.batch_size} --seed {args.seed}"
    )
    lines = [
        "# AdamP's cosine test vs keras-wrs's selection on the recipes' models",
        "",
        f"Command: `{command}`",
        f"Date: {datetime.date.today()}; wall time {time.perf_counter() - started:.0f} s.",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical cores, no GPU; load average "
        f"(1, 5, 15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        f"Versions: Python {platform.python_version()}, keras-wrs {keras_wrs.__version__}, "
        f"keras {keras.__version__}, tensorflow {tf.__version__}.",
        f"What runs: {args.steps} steps, batch {args.batch_size}, seed {args.seed}, of the "
        'recipes\' `sgdp` regularization with `adam` (AdamP, `projection="cosine"`, delta 0.1, '
        "wd_ratio 0.1, lr 1e-3 constant, the recipe's weight decay), float32. At every step and "
        "for every kernel (trainable variable of rank >= 2), whether the cosine test fired, "
        "next to `keras_wrs.select_scale_invariant(model)` (selected or not).",
        "",
        "| model | recipe, input, data | parameters | kernels | selected | test fired on selected "
        "kernels (kernel-steps) | test fired on unselected kernels | disagreements (kernel-steps) "
        "| kernels disagreeing at some step |",
        "|---|---|---|---|---|---|---|---|---|",
        *(summary_row(r) for r in results),
        "",
        "Kernels where the two disagree at some step (the fraction of steps the test fired, and "
        "how):",
        "",
        "| model | kernel | selected | fired | per channel | per layer |",
        "|---|---|---|---|---|---|",
        *(row for r in results for row in kernel_rows(r)),
        "",
    ]
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(out + ".tmp", out)
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "projection_agreement_results.md")
    )
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    for name in args.models.split(","):
        results.append(measure(name, args.batch_size, args.steps, args.seed))
        r = results[-1]
        print(
            f"{name}: {r['seconds']:.0f} s, loss {r['loss'][0]:.3f} -> {r['loss'][1]:.3f}",
            flush=True,
        )
        text = write(results, args, started, load_before, args.out)
    print(text)


if __name__ == "__main__":
    main()

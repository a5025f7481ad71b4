"""Training throughput of the recipe trainer: ResNet-20 on synthetic CIFAR-shaped data.

Runs `keras_wrs.recipes.train` (the code behind `keras-wrs train`) on the
synthetic shapes data set (32x32x3, 10 classes, batch 128) once per setting,
in one process, and reports training images/second: float32 vs mixed
precision, XLA on and off, and keras-wrs WRS vs the same SGD-momentum without
rescaling vs Keras SGD with weight decay. Each setting trains two epochs of
`--steps` steps; the first (tracing, compilation) is discarded, and within the
second the clock starts after the first step (`recipes.training.callbacks.Throughput`).
Dynamics callbacks, TensorBoard and plots are off: this measures the training
step. With `--repeats n` the settings run n times, interleaved, and the median
is reported. Compare the ratio column, not absolute numbers across machines.

Command:
    python benchmarks/bench_train.py                     # writes benchmarks/train_results.md
    python benchmarks/bench_train.py --steps 3 --out r.md --settings wd,wrs   # smoke
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.training import system
from keras_wrs.recipes.training.train import train

# name -> (description, config changes); the first is the baseline of the ratios.
SETTINGS = {
    "wd": ("Keras SGD-momentum + weight decay, float32", {"regularization": "wd"}),
    "none": ("Keras SGD-momentum, no regularization, float32", {"regularization": "none"}),
    "wrs": ("keras-wrs SGD-momentum, WRS (rescale=model), float32", {"regularization": "wrs"}),
    "wd_xla": (
        "Keras SGD-momentum + weight decay, XLA",
        {"regularization": "wd", "jit_compile": True},
    ),
    "wrs_xla": ("keras-wrs WRS, XLA", {"regularization": "wrs", "jit_compile": True}),
    "wrs_mixed": (
        "keras-wrs WRS, mixed precision",
        {"regularization": "wrs", "precision": "mixed"},
    ),
    "wrs_mixed_xla": (
        "keras-wrs WRS, mixed precision + XLA",
        {"regularization": "wrs", "precision": "mixed", "jit_compile": True},
    ),
}


def base_config(steps, batch_size):
    """The `shapes_resnet20` recipe, cut to two epochs of `steps` steps."""
    return dataclasses.replace(
        cfg.RECIPES["shapes_resnet20"],
        epochs=2,
        steps_per_epoch=steps,
        batch_size=batch_size,
        warmup_epochs=0.0,
        synthetic_train=steps * batch_size,
        synthetic_test=2 * batch_size,
        dynamics=False,
        tensorboard=False,
        plots=False,
    )


def measure(config, workdir):
    """Images/second of the second epoch of one run, and its dtype policy."""
    keras.backend.clear_session()
    run_dir = tempfile.mkdtemp(dir=workdir)
    summary = train(config, run_dir, verbose=0)
    with open(os.path.join(run_dir, "history.csv")) as f:
        rates = [float(row["images_per_second"]) for row in csv.DictReader(f)]
    return rates[-1], summary["dtype_policy"]


def machine():
    """One line about the hardware, and one about the software."""
    env = rundir.environment()
    gpus = [d.get("device_name", d["name"]) for d in env["devices"] if d["type"] == "GPU"]
    hw = (
        f"{env['cpu']}, {env['cpu_count']} logical cores, {platform.system()} "
        f"{platform.machine()}" + (f"; GPU: {', '.join(gpus)}" if gpus else "; no GPU")
    )
    v = env["versions"]
    sw = (
        f"Python {v['python']}, keras-wrs {keras_wrs.__version__}, keras {v['keras']}, "
        f"tensorflow {v['tensorflow']}"
    )
    return hw, sw


def run(names, steps, batch_size, repeats):
    """`{name: (median images/s, dtype policy)}`, settings interleaved per repeat."""
    base = base_config(steps, batch_size)
    results = {name: [] for name in names}
    policies = {}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(repeats):
            for name in names:
                config = dataclasses.replace(base, **SETTINGS[name][1])
                rate, policies[name] = measure(config, workdir)
                results[name].append(rate)
                print(f"{name}: {rate:.1f} images/s", flush=True)
    return {n: (statistics.median(r), policies[n], r) for n, r in results.items()}


def table(results):
    """Markdown rows; ratios against the first setting."""
    names = list(results)
    baseline = results[names[0]][0]
    lines = [
        "| setting | dtype policy | XLA | images/s (median) | each repeat | vs first row |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        rate, policy, each = results[name]
        xla = "on" if SETTINGS[name][1].get("jit_compile") else "off"
        lines.append(
            f"| {SETTINGS[name][0]} | {policy} | {xla} | {rate:.1f} | "
            f"{', '.join(f'{r:.0f}' for r in each)} | {rate / baseline:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma-separated from {', '.join(SETTINGS)}"
    )
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch (default 10)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "train_results.md")
    )
    args = parser.parse_args(argv)
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or args.steps < 2 or args.batch_size < 1 or args.repeats < 1:
        parser.error(
            f"unknown settings {unknown} (valid: {', '.join(SETTINGS)}) "
            "or steps < 2, batch size < 1, repeats < 1"
        )
    load_before = os.getloadavg()
    start = time.perf_counter()
    results = run(names, args.steps, args.batch_size, args.repeats)
    wall = time.perf_counter() - start
    hw, sw = machine()
    mixed = system.resolve_precision("mixed")
    text = f"""# Training throughput: ResNet-20, synthetic CIFAR-shaped data

Command: `python benchmarks/bench_train.py {" ".join(argv if argv is not None else sys.argv[1:])}`
Date: {datetime.date.today().isoformat()}; wall time {wall:.0f} s.
Machine: {hw}; load average (1, 5, 15 min) before the run: {" ".join(f"{x:.2f}" for x in load_before)}, after: {" ".join(f"{x:.2f}" for x in os.getloadavg())}.
Versions: {sw}.
What runs: `keras_wrs.recipes.train` on `synthetic_shapes` (procedurally drawn shapes, 32x32x3, 10 classes: synthetic, not a benchmark of accuracy), ResNet-20 (0.27M parameters), batch {args.batch_size}, SGD momentum 0.9, {args.steps} steps per epoch; images/s of the second epoch after its first step, median of {args.repeats} interleaved repeat(s). "mixed" is {mixed} on this machine (mixed_float16 on a GPU). Dynamics callbacks, TensorBoard and plots off.
Timings on a 2-core machine shared with other processes vary by 30-50% from run to run; read the ratios within one run.

{table(results)}
"""
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    sys.exit(main())

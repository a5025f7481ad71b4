"""GPU benchmark through Keras's JAX backend: input pipeline, WRS cost, Fashion-MNIST.

One prepared script for a short GPU lease (the GPU machine has JAX and
PyTorch but no TensorFlow and no Keras). Stages, in this order, each written
to `--out` as soon as it is measured (a run cut short keeps what it did):

1. `pipeline`: images/s of the recipes' training stream alone
   (`keras_wrs.recipes.data.pipeline`, pad-crop + flip + normalization in NumPy),
   with its prefetch threads and without.
2. `feed`: the recipe trainer (`keras_wrs.recipes.training.train`, the code behind
   `keras-wrs train`, on synthetic 32x32x3 shapes) against a bare
   `model.fit` of the same model, optimizer and batch on device-resident
   arrays, per dtype policy; XLA on (on JAX every step is XLA-compiled). The
   ratio says whether the input pipeline sets the pace (goal >= 0.9).
3. `optimizers`: keras-wrs WRS vs the same SGD-momentum with `rescale=[]`
   vs Keras SGD-momentum + weight decay, on ResNet-20 (0.27M parameters) and
   WRN-16-8 (11.0M), per dtype policy, bare `fit` on device arrays, the
   settings interleaved `--repeats` times; step time as ratios within the
   run (goal: WRS <= 1.03x of rescaling off).
4. `fmnist`: the GPU confirmation of `recipes/results/fmnist_full/PROTOCOL.md`:
   recipe `fmnist_resnet20` (ResNet-20, pad-4 crop + flip, SGD-momentum
   lr 0.1), trained on 54,000 images with the protocol's fixed 6,000-image
   validation split (`validation_examples=6000`), WD at the protocol's
   default 5e-3 (decoupled) vs WRS, x `--fmnist-seeds` (shared: the pairs),
   `--fmnist-epochs` epochs, through the sweep runner
   (`keras_wrs.recipes.sweeps.runner`): resumable cell by cell, each
   finished cell's config/summary/history collected in `--fmnist-results`
   (beside `--out`, so they come back with it). Its table: test and
   validation accuracy per method, the paired WRS - WD difference with its
   95% interval and verdict at the protocol's 0.2 pp margin, and the epochs
   to 90% and 92% validation accuracy (`keras_wrs.recipes.sweeps.stats`).

Every measurement: `recipes.training.callbacks.Throughput` (second epoch, clock started
after its first step, validation excluded), so trainer and bare fit are
timed alike. `--budget-s` stops starting new measurements after that many
seconds; what was skipped is listed.

How to run it on the GPU machine (through the `device` tool), from the
repository root, with keras and its small dependencies carried in an
ignored folder (check first with `pip show` what the machine lacks):

    pip download --no-deps keras==3.15.1 namex optree -d .gpu/wheels  # here
    cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/      # here
    # on the device (carry: [".gpu"]), one command, about 13 minutes:
    pip install --no-deps .gpu/wheels/*.whl && pip install --no-deps -e . &&
    KERAS_BACKEND=jax PYTHONUNBUFFERED=1 python benchmarks/bench_gpu.py \\
        --data-dir .gpu/fashion-mnist --budget-s 720 --out $OUT/bench_gpu.md

Smoke test on a CPU (tiny sizes; what `tests` cannot afford on every run):
    KERAS_BACKEND=jax python benchmarks/bench_gpu.py --steps 3 --batch-size 16 \\
        --repeats 1 --policies float32 --models resnet20 --fmnist-epochs 1 \\
        --fmnist-seeds 1,2 --fmnist-set steps_per_epoch=2 --fmnist-set warmup_epochs=0 \\
        --fmnist-set model_kwargs.depth=8 --out /some/dir/r.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import data
from keras_wrs.recipes.models import build_model
from keras_wrs.recipes.sweeps import grid as compare
from keras_wrs.recipes.training import optim, system
from keras_wrs.recipes.training.callbacks import Throughput
from keras_wrs.recipes.training.train import train

STAGES = ("pipeline", "feed", "optimizers", "fmnist")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
MODELS = {"resnet20": "ResNet-20", "wrn16_8": "WRN-16-8"}
# name -> (description, config.regularization, rescaling off)
OPTIMIZERS = {
    "wd": ("Keras SGD-momentum + weight decay 5e-4", "wd", False),
    "off": ("keras-wrs SGD-momentum, rescale=[] (off)", "wrs", True),
    "wrs": ("keras-wrs SGD-momentum, WRS", "wrs", False),
}


class Budget:
    """Seconds left of `--budget-s`; `ok()` is False once they are spent."""

    def __init__(self, seconds):
        self.end = time.perf_counter() + seconds
        self.skipped = []

    def ok(self, what):
        if time.perf_counter() < self.end:
            return True
        self.skipped.append(what)
        return False


def base_config(args, policy="float32", model="resnet20"):
    """The `shapes_resnet20` recipe cut to two epochs of `--steps` steps."""
    return dataclasses.replace(
        cfg.RECIPES["shapes_resnet20"],
        model=model,
        epochs=2,
        steps_per_epoch=args.steps,
        batch_size=args.batch_size,
        warmup_epochs=0.0,
        precision=policy,
        jit_compile=True,
        synthetic_train=args.steps * args.batch_size,
        synthetic_test=args.batch_size,
        dynamics=False,
        tensorboard=False,
        plots=False,
    )


def measure_pipeline(args, splits, prefetch):
    """Images/s of iterating the training stream, no model."""
    stream, steps = data.train_dataset(
        splits, args.batch_size, epochs=2, steps_per_epoch=args.steps, prefetch=prefetch
    )
    stream[0]
    start = time.perf_counter()
    for i in range(1, len(stream)):
        stream[i]
    rate = (len(stream) - 1) * args.batch_size / (time.perf_counter() - start)
    stream.close()
    return rate


def compiled_model(config, splits, rescale_off=False):
    """The recipe's model and optimizer for `config`, compiled as `train` does."""
    hp = optim.resolve_hyperparameters(config, config.steps_per_epoch)
    model = build_model(
        config.model,
        splits.info.input_shape,
        splits.info.num_classes,
        kernel_regularizer=optim.kernel_regularizer(config, hp),
        **config.model_kwargs,
    )
    # `rescale=[]`: the same keras-wrs optimizer and arguments, rescaling off.
    optimizer = optim.make_optimizer(
        config, hp, optim.learning_rate_schedule(config, hp), [] if rescale_off else model
    )
    model.compile(
        optimizer=optimizer,
        jit_compile=True,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def device_arrays(config, splits):
    """`steps * batch` normalized inputs and one-hot labels, put on the device."""
    import jax

    stream, _ = data.train_dataset(
        splits,
        config.batch_size,
        augment="none",
        steps_per_epoch=config.steps_per_epoch,
        prefetch=0,
    )
    x, y = (np.concatenate(a) for a in zip(*(stream[i] for i in range(len(stream))), strict=True))
    return jax.device_put(x), jax.device_put(y)


def bare_fit(model, arrays, batch_size, epochs=2):
    """Images/s of the last epoch of `fit` on device arrays."""
    meter = Throughput(batch_size)
    model.fit(
        *arrays, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=[meter]
    )
    return meter.rates[-1]


def measure_feed(args, policy, workdir):
    """(recipe trainer images/s, bare fit images/s) for one dtype policy."""
    config = base_config(args, policy)
    summary = train(config, tempfile.mkdtemp(dir=workdir), verbose=0)
    recipe = summary["images_per_second"]
    keras.backend.clear_session()
    with system.precision_policy(policy):
        splits = data.splits_for(config)
        model = compiled_model(config, splits)
        bare = bare_fit(model, device_arrays(config, splits), config.batch_size)
    keras.backend.clear_session()
    return recipe, bare


def measure_optimizers(args, model_name, policy):
    """`{setting: [images/s per repeat]}`, the settings interleaved."""
    config = base_config(args, policy, model_name)
    rates = {name: [] for name in OPTIMIZERS}
    with system.precision_policy(policy):
        splits = data.splits_for(config)
        arrays = device_arrays(config, splits)
        models = {}
        for name, (_, reg, off) in OPTIMIZERS.items():
            keras.utils.set_random_seed(0)
            models[name] = compiled_model(
                dataclasses.replace(config, regularization=reg), splits, rescale_off=off
            )
            bare_fit(models[name], arrays, config.batch_size, epochs=1)  # compile
        for _ in range(args.repeats):
            for name, model in models.items():
                rates[name].append(bare_fit(model, arrays, config.batch_size))
    keras.backend.clear_session()
    return rates


def run_fmnist(args):
    """The protocol's WD vs WRS confirmation; returns its markdown table."""
    from keras_wrs.recipes.runs import rundir
    from keras_wrs.recipes.sweeps import runner, stats

    base = dataclasses.replace(
        cfg.RECIPES["fmnist_resnet20"],
        epochs=args.fmnist_epochs,
        data_dir=args.data_dir,
        precision=args.fmnist_precision,
        jit_compile=True,
        plots=False,
        tensorboard=False,
        validation_examples=6000,
        weight_decay=5e-3,
    )
    base = cfg.override(base, args.fmnist_set)
    grid = compare.Grid(("wd", "wrs"), ("sgdm",), tuple(args.fmnist_seeds))
    cells = [(compare.compare_cell_name(c), c) for c in compare.grid_configs(base, grid)]
    summaries = runner.run_cells(
        cells,
        args.fmnist_dir,
        resume=True,
        results_dir=args.fmnist_results,
        verbose=2,
        recipe="fmnist_resnet20",
    )
    by = {(s["regularization"], s["seed"]): s for s in summaries}
    seeds = [s for s in args.fmnist_seeds if ("wd", s) in by and ("wrs", s) in by]
    lines = [
        "| method | seeds | test accuracy (%) | validation accuracy (%) | "
        "epochs to 90% / 92% val (mean) |",
        "|---|---|---|---|---|",
    ]
    for reg in ("wd", "wrs"):
        runs = [by[(reg, s)] for s in seeds]
        test = [100 * r["test_accuracy"] for r in runs]
        val = [100 * r["validation_accuracy"] for r in runs]
        reached = []
        for target in (0.90, 0.92):
            epochs = [
                stats.time_to_accuracy(
                    rundir.read_history(
                        Path(args.fmnist_results) / f"{reg}-sgdm-s{s}" / "history.csv"
                    ),
                    target,
                )[0]
                for s in seeds
            ]
            hit = [e for e in epochs if e is not None]
            reached.append(f"{np.mean(hit):.1f} ({len(hit)}/{len(epochs)})" if hit else "-")
        spread = lambda v: f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2f}"
        lines.append(
            f"| {reg} | {len(seeds)} | {spread(test)} | {spread(val)} | {' / '.join(reached)} |"
        )
    for key, label in (("test_accuracy", "test"), ("validation_accuracy", "validation")):
        d = stats.paired_difference(
            [by[("wrs", s)][key] for s in seeds], [by[("wd", s)][key] for s in seeds]
        )
        lines.append(
            f"\nWRS - WD, {label}, {d.n} paired seeds: {100 * d.mean:+.2f} pp, "
            f"95% CI [{100 * d.low:+.2f}, {100 * d.high:+.2f}]: "
            f"{stats.verdict(d, 0.002)} at a 0.2 pp margin."
        )
    return "\n".join(lines)


def header(args, argv):
    import jax

    d = jax.devices()[0]
    return (
        f"# GPU benchmark through Keras's JAX backend (`benchmarks/bench_gpu.py`)\n\n"
        f"Command: `KERAS_BACKEND=jax python benchmarks/bench_gpu.py {' '.join(argv)}`\n"
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"Device: {d.device_kind} ({d.platform}), {len(jax.devices())} device(s); host "
        f"{platform.machine()}, {os.cpu_count()} logical cores.\n"
        f"Versions: Python {platform.python_version()}, jax {jax.__version__}, keras "
        f"{keras.__version__}, keras-wrs {keras_wrs.__version__}, numpy {np.__version__}.\n"
        f"Sizes: batch {args.batch_size}, {args.steps} steps per epoch, images/s of the "
        f"second epoch after its first step.\n"
    )


class Report:
    """Markdown written whole after every measurement, plus raw JSON lines."""

    def __init__(self, path, head):
        self.path, self.parts = path, [head]
        self.raw = open(os.path.splitext(path)[0] + ".jsonl", "a")

    def add(self, text, **raw):
        if raw:
            self.raw.write(json.dumps(raw) + "\n")
            self.raw.flush()
        if text:
            self.parts.append(text)
        with open(self.path + ".tmp", "w") as f:
            f.write("\n".join(self.parts) + "\n")
        os.replace(self.path + ".tmp", self.path)


def stage_pipeline(args, report, budget):
    splits = data.splits_for(base_config(args))
    rows = []
    for prefetch in (None, 0):
        if budget.ok(f"pipeline prefetch={prefetch}"):
            rate = measure_pipeline(args, splits, prefetch)
            label = "threads (default)" if prefetch is None else "none"
            rows.append(f"| {label} | {rate:.0f} |")
            report.add("", stage="pipeline", prefetch=prefetch, images_per_second=rate)
    report.add(
        "## Input pipeline alone (synthetic 32x32x3, pad-crop + flip)\n\n"
        "| prefetch | images/s |\n|---|---|\n" + "\n".join(rows) + "\n"
    )


def stage_feed(args, report, budget, workdir):
    rows = []
    for policy in args.policies:
        if budget.ok(f"feed {policy}"):
            recipe, bare = measure_feed(args, policy, workdir)
            rows.append(
                f"| ResNet-20 | {policy} | {recipe:.0f} | {bare:.0f} | {recipe / bare:.2f} |"
            )
            report.add("", stage="feed", policy=policy, recipe=recipe, bare=bare)
    report.add(
        "## Recipe trainer vs bare `fit` on device arrays (XLA on)\n\n"
        "| model | dtype policy | recipe trainer images/s | bare fit images/s | "
        "ratio |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def stage_optimizers(args, report, budget):
    rows = []
    for model_name in args.models:
        for policy in args.policies:
            if not budget.ok(f"optimizers {model_name} {policy}"):
                continue
            rates = measure_optimizers(args, model_name, policy)
            med = {n: statistics.median(r) for n, r in rates.items()}
            for name, (desc, _, _) in OPTIMIZERS.items():
                rows.append(
                    f"| {MODELS[model_name]} | {policy} | {desc} | {med[name]:.0f} | "
                    f"{', '.join(f'{r:.0f}' for r in rates[name])} | "
                    f"{med['wd'] / med[name]:.3f}x | {med['off'] / med[name]:.3f}x |"
                )
            report.add("", stage="optimizers", model=model_name, policy=policy, rates=rates)
    report.add(
        "## WRS vs rescaling off vs SGD + WD (bare `fit`, device arrays, XLA on)\n\n"
        "Step time ratios: a setting's step time divided by the WD row's and by the "
        "rescaling-off row's (WRS goal: <= 1.03x of off).\n\n"
        "| model | dtype policy | setting | images/s (median) | each repeat | "
        "step time vs WD | step time vs off |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=780.0)
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files")
    parser.add_argument("--fmnist-epochs", type=int, default=30)
    parser.add_argument("--fmnist-seeds", default="1,2,3")
    parser.add_argument("--fmnist-precision", default="mixed_bfloat16")
    parser.add_argument(
        "--fmnist-set",
        action="append",
        default=[],
        help="KEY=VALUE override of the fmnist_resnet20 config (repeatable)",
    )
    parser.add_argument("--fmnist-dir", help="comparison directory (default: beside --out)")
    parser.add_argument(
        "--fmnist-results",
        help="where each finished cell's config/summary/history is collected "
        "(default: fmnist_gpu_cells beside --out)",
    )
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "bench_gpu_results.md")
    )
    args = parser.parse_args(argv)
    args.stages, args.policies, args.models = (
        [s for s in v.split(",") if s] for v in (args.stages, args.policies, args.models)
    )
    args.fmnist_seeds = [int(s) for s in args.fmnist_seeds.split(",") if s]
    for what, given, valid in (
        ("--stages", args.stages, STAGES),
        ("--policies", args.policies, POLICIES),
        ("--models", args.models, MODELS),
    ):
        if not given or set(given) - set(valid):
            parser.error(f"{what}: {','.join(given)!r}; valid: {', '.join(valid)}")
    if keras.backend.backend() != "jax":
        parser.error(
            f"runs on Keras's JAX backend (KERAS_BACKEND=jax); got {keras.backend.backend()!r}"
        )
    args.fmnist_dir = args.fmnist_dir or os.path.join(
        os.path.dirname(os.path.abspath(args.out)), "fmnist_gpu"
    )
    args.fmnist_results = args.fmnist_results or os.path.join(
        os.path.dirname(os.path.abspath(args.out)), "fmnist_gpu_cells"
    )
    budget = Budget(args.budget_s)
    report = Report(args.out, header(args, argv))
    with tempfile.TemporaryDirectory() as workdir:
        if "pipeline" in args.stages:
            stage_pipeline(args, report, budget)
        if "feed" in args.stages:
            stage_feed(args, report, budget, workdir)
        if "optimizers" in args.stages:
            stage_optimizers(args, report, budget)
    if "fmnist" in args.stages and budget.ok("fmnist"):
        report.add(
            "## Fashion-MNIST GPU confirmation (`fmnist_resnet20`, 54,000 + 6,000 "
            f"validation, WD 5e-3 vs WRS, SGD-momentum, {args.fmnist_epochs} epochs, "
            f"{args.fmnist_precision})\n\n" + run_fmnist(args) + "\n"
        )
    if budget.skipped:
        report.add(
            f"Skipped (budget of {args.budget_s:.0f} s spent): {', '.join(budget.skipped)}.\n"
        )
    print(open(args.out).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())

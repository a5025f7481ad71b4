"""ONNX Runtime vs TensorFlow SavedModel inference on CPU, batch 1 and 64.

Exports ResNet-20 and VGG16-BN (CIFAR shapes, 32x32x3, 10 classes, random
weights: speed does not depend on the weights) with `keras_wrs.export`, which
also checks that both formats agree with Keras, then times single calls of
the SavedModel's serving signature and of an ONNX Runtime CPU session on the
same inputs. Calls alternate between the two runtimes so that load from
other processes hits both alike; compare the ratio column, not absolute
numbers across machines.

A second table measures the numerical differences the parity tolerances of
`keras_wrs.export.parity` are set from: each model is built under
`mixed_float16`, its BatchNorm statistics are set from one batch (so that
outputs have a realistic size), and the float32 export, the float16 ONNX and
the mixed-precision source are compared with the float32 Keras copy.

Command:
    python benchmarks/bench_export.py                      # writes benchmarks/export_results.md
    python benchmarks/bench_export.py --models resnet20 --repeats 3 --out /tmp/r.md   # smoke
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_wrs.export import Tolerance, export_model  # noqa: E402
from keras_wrs.export.parity import FLOAT16, FLOAT32  # noqa: E402
from keras_wrs.export.metadata import library_versions  # noqa: E402
from keras_wrs.export.onnx_export import load_onnx_runner  # noqa: E402
from keras_wrs.export.saved_model import load_signature  # noqa: E402
from keras_wrs.recipes.models import resnet, vgg16_bn  # noqa: E402

__all__ = ["BUILDERS", "measure", "precision_rows", "main"]

BUILDERS = {
    "resnet20": lambda: resnet(input_shape=(32, 32, 3), num_classes=10, depth=20),
    "vgg16_bn": lambda: vgg16_bn(input_shape=(32, 32, 3), num_classes=10),
}
NAMES = ("images", "scores")


def _runtimes(result) -> dict:
    return {
        "tf_saved_model": load_signature(result.files["saved_model"], *NAMES),
        "onnxruntime": load_onnx_runner(result.files["onnx"], NAMES[0]),
    }


def measure(runtimes: dict, batch: int, repeats: int, warmup: int = 2) -> dict:
    """Times single calls of each runtime on one batch, alternating runtimes.

    Args:
        runtimes: name to function of a float32 array.
        batch: batch size.
        repeats: timed calls per runtime.
        warmup: untimed calls per runtime first.

    Returns:
        Name to list of call times in seconds.
    """
    x = np.random.default_rng(0).standard_normal((batch, 32, 32, 3), dtype=np.float32)
    for fn in runtimes.values():
        for _ in range(warmup):
            fn(x)
    times = {name: [] for name in runtimes}
    for _ in range(repeats):
        for name, fn in runtimes.items():
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return times


def _row(model: str, batch: int, name: str, seconds: list[float]) -> dict:
    median = statistics.median(seconds)
    p90 = sorted(seconds)[max(0, int(round(0.9 * len(seconds))) - 1)]
    return {"model": model, "batch": batch, "runtime": name, "median_ms": 1e3 * median,
            "p90_ms": 1e3 * p90, "images_per_s": batch / median, "seconds": seconds}


def run(models, batches, repeats, workdir: Path) -> tuple[list[dict], list[str]]:
    """Exports each model and measures both runtimes at each batch size.

    Args:
        models: keys of `BUILDERS`.
        batches: batch sizes.
        repeats: timed calls per runtime and batch size.
        workdir: where the exports go.

    Returns:
        Result rows and the parity tables of the exports.
    """
    rows, parity = [], []
    for model_name in models:
        model = BUILDERS[model_name]()
        result = export_model(model, workdir / model_name, formats="saved_model,onnx")
        parity.append(f"{model_name}:\n{result.report.table()}")
        runtimes = _runtimes(result)
        for batch in batches:
            for name, seconds in measure(runtimes, batch, repeats).items():
                rows.append(_row(model_name, batch, name, seconds))
    return rows, parity


def _calibrated(builder, x):
    """A model whose BatchNorm statistics are those of batch `x`."""
    model = builder()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    return model


def precision_rows(models, workdir: Path) -> list[tuple[str, object]]:
    """Differences of every exported runtime from the float32 Keras copy.

    Args:
        models: keys of `BUILDERS`.
        workdir: scratch directory.

    Returns:
        `(model name, ParityRow)` pairs.
    """
    rng = np.random.default_rng(1)
    calibration = rng.standard_normal((64, 32, 32, 3), dtype=np.float32)
    batch = rng.standard_normal((64, 32, 32, 3), dtype=np.float32)
    anything = Tolerance(atol=1e9, rtol=0.0, min_top1=None)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        rows = []
        for name in models:
            model = _calibrated(BUILDERS[name], calibration)
            result = export_model(model, workdir / f"{name}_precision", float16=True, batch=batch,
                                  tolerance=anything, tolerance_float16=anything, check_only=True)
            rows += [(name, row) for row in result.report.rows if "TFSMLayer" not in row.runtime]
    finally:
        keras.config.set_dtype_policy(previous)
    return rows


def _precision_table(rows) -> list[str]:
    lines = ["| model | runtime | max abs diff | mean abs diff | max abs ref | max diff / max ref "
             "| default bound atol + rtol * max ref |", "|---|---|---|---|---|---|---|"]
    for name, row in rows:
        tol = FLOAT16 if ("float16" in row.runtime) else FLOAT32
        bound = tol.atol + tol.rtol * row.scale
        lines.append(f"| {name} | {row.runtime} | {row.max_abs:.3g} | {row.mean_abs:.3g} | "
                     f"{row.scale:.3g} | {row.max_abs / row.scale:.2g} | {bound:.3g} |")
    return lines


def _paired_speedup(rows: list[dict], model: str, batch: int) -> float:
    """Median over repeats of SavedModel time / ONNX Runtime time of adjacent calls."""
    by_runtime = {r["runtime"]: r["seconds"] for r in rows
                  if (r["model"], r["batch"]) == (model, batch)}
    pairs = zip(by_runtime["tf_saved_model"], by_runtime["onnxruntime"])
    return statistics.median(tf_s / ort_s for tf_s, ort_s in pairs)


def _table(rows: list[dict]) -> list[str]:
    lines = ["| model | batch | runtime | median latency (ms) | p90 (ms) | images/s | "
             "ONNX Runtime speed-up |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        speedup = ""
        if r["runtime"] == "onnxruntime":
            speedup = f"{_paired_speedup(rows, r['model'], r['batch']):.2f}x"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['runtime']} | {r['median_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['images_per_s']:.1f} | {speedup} |")
    return lines


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def _load() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def report(rows, parity, precision, args, load_before, wall) -> str:
    """The results file as Markdown."""
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items() if v)
    return "\n".join([
        "# Export benchmark: ONNX Runtime vs TensorFlow SavedModel on CPU",
        "",
        f"Command: `python benchmarks/bench_export.py --models {','.join(args.models)} "
        f"--batches {','.join(map(str, args.batches))} --repeats {args.repeats}`",
        f"Date: {datetime.date.today().isoformat()}; wall time {wall:.0f} s.",
        f"Machine: {_machine()}; load average (1, 5, 15 min) before the run: {load_before}, "
        f"after: {_load()}.",
        f"Versions: Python {platform.python_version()}, {versions}.",
        "Both runtimes use their default thread pools (all cores). Models have random weights "
        "(CIFAR shapes, 32x32x3, 10 classes); inputs are random. Each number is over "
        f"{args.repeats} timed single calls after 2 warm-up calls, the two runtimes "
        "alternating call by call. Speed-up = median over the repeats of (SavedModel time / "
        "ONNX Runtime time) of adjacent calls, which cancels slow drifts in machine load.",
        "Timings on this kind of machine vary by 30-50% from run to run, more when the load "
        "average exceeds the core count (other processes competing for the cores); the "
        "ratios within one run are the result.",
        "",
        "## Inference speed",
        "",
        *_table(rows),
        "",
        "## Numerical differences behind the parity tolerances",
        "",
        "Models built under mixed_float16, BatchNorm statistics set from one random batch "
        "(so that logits have a realistic size), then compared with their float32 Keras copy "
        "on 64 other random inputs. The float32 bound is atol=1e-5, rtol=1e-4; the float16 "
        "bound (float16 ONNX, mixed-precision source) is atol=1e-2, rtol=5e-2.",
        "",
        *_precision_table(precision),
        "",
        "## Parity of the exports timed above (every row must pass before timing)",
        "",
        "```",
        *parity,
        "```",
        "",
    ])


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,vgg16_bn",
                        type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument("--batches", default="1,64", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).with_name("export_results.md")))
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in BUILDERS]
    if unknown or not args.models:
        parser.error(f"--models must be from {sorted(BUILDERS)}; received {args.models}")
    if args.repeats < 1 or any(b < 1 for b in args.batches):
        parser.error("--repeats and --batches must be positive")
    return args


def main(argv=None) -> int:
    """Runs the benchmark and writes the results file."""
    args = _parse(argv)
    load_before = _load()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        rows, parity = run(args.models, args.batches, args.repeats, Path(workdir))
        precision = precision_rows(args.models, Path(workdir))
    text = report(rows, parity, precision, args, load_before, time.perf_counter() - start)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

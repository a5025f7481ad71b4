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

A third part trains ResNet-20 and MobileNetV2 briefly with keras-wrs WRS SGD
on Fashion-MNIST (padded to 32x32x1), exports all five formats (SavedModel,
ONNX, LiteRT float32, LiteRT int8, LiteRT dynamic-range, ONNX int8; the int8
files calibrated on 256 training images), and measures size on disk, CPU
latency at batch 1 and 64, and top-1 agreement with the Keras float32 model
and accuracy on the whole test set.

Command:
    python benchmarks/bench_export.py                      # writes benchmarks/export_results.md
    python benchmarks/bench_export.py --models resnet20 --repeats 3 --quant-models none \
        --out results.md                                    # smoke
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

import keras
import numpy as np

from keras_wrs.export import Tolerance, export_model
from keras_wrs.export.formats.litert import load_tflite_runner
from keras_wrs.export.formats.onnx import load_onnx_runner
from keras_wrs.export.formats.saved_model import load_signature
from keras_wrs.export.metadata import library_versions
from keras_wrs.export.parity import FLOAT16, FLOAT32
from keras_wrs.recipes.models import resnet, vgg16_bn

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


def measure(runtimes: dict, batch: int, repeats: int, warmup: int = 2, shape=(32, 32, 3)) -> dict:
    """Times single calls of each runtime on one batch, alternating runtimes.

    Args:
        runtimes: name to function of a float32 array.
        batch: batch size.
        repeats: timed calls per runtime.
        warmup: untimed calls per runtime first.
        shape: one input's shape.

    Returns:
        Name to list of call times in seconds.
    """
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
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
    return {
        "model": model,
        "batch": batch,
        "runtime": name,
        "median_ms": 1e3 * median,
        "p90_ms": 1e3 * p90,
        "images_per_s": batch / median,
        "seconds": seconds,
    }


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
            result = export_model(
                model,
                workdir / f"{name}_precision",
                float16=True,
                batch=batch,
                tolerance=anything,
                tolerance_float16=anything,
                check_only=True,
            )
            rows += [(name, row) for row in result.report.rows if "TFSMLayer" not in row.runtime]
    finally:
        keras.config.set_dtype_policy(previous)
    return rows


def _precision_table(rows) -> list[str]:
    lines = [
        "| model | runtime | max abs diff | mean abs diff | max abs ref | max diff / max ref "
        "| default bound atol + rtol * max ref |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows:
        tol = FLOAT16 if ("float16" in row.runtime) else FLOAT32
        bound = tol.atol + tol.rtol * row.scale
        lines.append(
            f"| {name} | {row.runtime} | {row.max_abs:.3g} | {row.mean_abs:.3g} | "
            f"{row.scale:.3g} | {row.max_abs / row.scale:.2g} | {bound:.3g} |"
        )
    return lines


def _paired_speedup(rows: list[dict], model: str, batch: int) -> float:
    """Median over repeats of SavedModel time / ONNX Runtime time of adjacent calls."""
    by_runtime = {
        r["runtime"]: r["seconds"] for r in rows if (r["model"], r["batch"]) == (model, batch)
    }
    pairs = zip(by_runtime["tf_saved_model"], by_runtime["onnxruntime"], strict=True)
    return statistics.median(tf_s / ort_s for tf_s, ort_s in pairs)


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | batch | runtime | median latency (ms) | p90 (ms) | images/s | "
        "ONNX Runtime speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = ""
        if r["runtime"] == "onnxruntime":
            speedup = f"{_paired_speedup(rows, r['model'], r['batch']):.2f}x"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['runtime']} | {r['median_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['images_per_s']:.1f} | {speedup} |"
        )
    return lines


def _mobilenetv2():
    """keras.applications MobileNetV2 for 32x32x1, BatchNorm momentum 0.9.

    Its own momentum of 0.999 leaves the moving statistics at 83% of their
    initial values after the 189 steps of a 3-epoch run, and the model then
    predicts one class for every test image (accuracy 0.1000 in a first run).
    """
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 1), weights=None, classes=10, alpha=1.0
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


QUANT_BUILDERS = {
    "resnet20": lambda: resnet(input_shape=(32, 32, 1), num_classes=10, depth=20),
    "mobilenetv2": _mobilenetv2,
}
# A model no better than this fraction of correct answers tells nothing about
# agreement (one class everywhere agrees with itself); the benchmark stops
# (`--min-accuracy`).
MIN_ACCURACY = 0.5
QUANT_FORMATS = "saved_model,onnx,tflite,tflite_int8,tflite_dynamic,onnx_int8"


def fashion_mnist(train_examples: int, seed: int = 0):
    """Fashion-MNIST, preprocessed as a run would, padded to 32x32x1."""
    from keras_wrs.recipes.data import load_splits, normalize

    splits = load_splits("fashion_mnist")
    pad = ((0, 0), (2, 2), (2, 2), (0, 0))
    index = np.random.default_rng(seed).permutation(len(splits.x_train))[:train_examples]
    x_train = np.pad(normalize(splits.x_train[index], splits.info), pad)
    x_test = np.pad(normalize(splits.x_test, splits.info), pad)
    return x_train, splits.y_train[index], x_test, splits.y_test


def train_briefly(name: str, x, y, epochs: int):
    """keras-wrs WRS SGD-momentum, a few epochs on a training subset."""
    import keras_wrs

    keras.utils.set_random_seed(0)
    model = QUANT_BUILDERS[name]()
    optimizer = keras_wrs.optimizers.SGD(0.05, momentum=0.9, rescale=model)
    probs = model.layers[-1].get_config().get("activation") == "softmax"
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not probs)
    model.compile(optimizer, loss)
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return model


def _quant_runtimes(result) -> dict:
    files, threads = result.files, os.cpu_count()
    runtimes = {
        "tf_saved_model": load_signature(files["saved_model"], *NAMES),
        "onnx float32": load_onnx_runner(files["onnx"], NAMES[0]),
        "onnx int8 (QDQ)": load_onnx_runner(files["onnx_int8"], NAMES[0]),
        "tflite float32": load_tflite_runner(files["tflite"], *NAMES, num_threads=threads),
        "tflite int8": load_tflite_runner(files["tflite_int8"], *NAMES, num_threads=threads),
        "tflite dynamic-range": load_tflite_runner(
            files["tflite_dynamic"], *NAMES, num_threads=threads
        ),
    }
    sizes = {
        "tf_saved_model": result.sizes["saved_model"],
        "onnx float32": result.sizes["onnx"],
        "onnx int8 (QDQ)": result.sizes["onnx_int8"],
        "tflite float32": result.sizes["tflite"],
        "tflite int8": result.sizes["tflite_int8"],
        "tflite dynamic-range": result.sizes["tflite_dynamic"],
    }
    return runtimes, sizes


def _chunked(fn, x, size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i : i + size])) for i in range(0, len(x), size)])


def agreement(runtimes: dict, reference, x, y) -> dict:
    """Top-1 agreement with the Keras float32 model and accuracy over the whole test set."""
    ref = _chunked(reference, x)
    same = {
        "agree": 1.0,
        "acc": float(np.mean(ref.argmax(1) == y)),
        "max_abs": 0.0,
        "mean_abs": 0.0,
    }
    rows = {"keras float32": same, "tf_saved_model": same}  # the SavedModel is the reference
    for name, fn in runtimes.items():
        if name == "tf_saved_model":
            continue
        out = _chunked(fn, x)
        diff = np.abs(out - ref)
        rows[name] = {
            "agree": float(np.mean(out.argmax(1) == ref.argmax(1))),
            "acc": float(np.mean(out.argmax(1) == y)),
            "max_abs": float(diff.max()),
            "mean_abs": float(diff.mean()),
        }
    return rows


def quantized_section(
    models,
    batches,
    repeats,
    workdir: Path,
    train_examples: int,
    epochs: int,
    min_accuracy: float = MIN_ACCURACY,
) -> dict:
    """Trains, exports (all formats) and measures each model on Fashion-MNIST."""
    x_train, y_train, x_test, y_test = fashion_mnist(train_examples)
    calibration = x_train[np.random.default_rng(1).permutation(len(x_train))[:256]]
    found = {}
    for name in models:
        start = time.perf_counter()
        model = train_briefly(name, x_train, y_train, epochs)
        train_s = time.perf_counter() - start
        accuracy = float(np.mean(_chunked(model.predict_on_batch, x_test).argmax(1) == y_test))
        if accuracy < min_accuracy:
            raise SystemExit(
                f"bench_export: {name} reached test accuracy {accuracy:.4f} after "
                f"{epochs} epochs (below --min-accuracy {min_accuracy}); agreement "
                "with it would say nothing. Raise --epochs or --train-examples."
            )
        # Report-only int8 rows, so that a model below the default bar is measured too;
        # `default_int8_verdict` applies the default rule to the same rows.
        result = export_model(
            model,
            workdir / f"{name}_quant",
            formats=QUANT_FORMATS,
            calibration=calibration,
            batch=x_test[:256],
            tolerance_int8=Tolerance(atol=0.0, rtol=1e9, min_top1=None),
        )
        runtimes, sizes = _quant_runtimes(result)
        copy_fn = runtimes["tf_saved_model"]
        timed = {}
        for batch in batches:
            times = measure(runtimes, batch, repeats, shape=x_test.shape[1:])
            timed[batch] = {k: statistics.median(v) for k, v in times.items()}
        found[name] = {
            "train_s": train_s,
            "sizes": sizes,
            "latency": timed,
            "agreement": agreement(runtimes, copy_fn, x_test, y_test),
            "parity": result.report.table(),
            "verdicts": default_int8_verdict(result.report),
        }
    return found


def default_int8_verdict(report) -> dict:
    """Whether each int8 row passes the default rule (`keras_wrs.export.INT8`)."""
    from keras_wrs.export import INT8

    return {
        row.runtime: (
            row.top1_agreement >= INT8.min_top1 and row.max_abs <= INT8.atol + INT8.rtol * row.scale
        )
        for row in report.rows
        if "int8" in row.runtime
    }


def _quant_tables(found: dict, batches) -> list[str]:
    head = (
        "| model | runtime | size (KiB) | size vs onnx float32 | "
        + " | ".join(f"batch {b} median (ms) | batch {b} vs onnx float32" for b in batches)
        + " | top-1 agreement with Keras (10,000 test images) | test accuracy | "
        "max abs score error | mean abs score error |"
    )
    lines = [head, "|" + "---|" * (8 + 2 * len(batches))]
    for model, f in found.items():
        base_size = f["sizes"]["onnx float32"]
        for rt, size in f["sizes"].items():
            a = f["agreement"][rt]
            cells = [model, rt, f"{size / 1024:.0f}", f"{size / base_size:.2f}x"]
            for b in batches:
                ms, base = f["latency"][b][rt], f["latency"][b]["onnx float32"]
                cells += [f"{1e3 * ms:.2f}", f"{ms / base:.2f}x"]
            cells += [
                f"{a['agree']:.4f}",
                f"{a['acc']:.4f}",
                f"{a['max_abs']:.3g}",
                f"{a['mean_abs']:.3g}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        acc = f["agreement"]["keras float32"]["acc"]
        lines.append(
            f"| {model} | keras float32 (reference) | | | "
            + "| | " * len(batches)
            + f"1.0000 | {acc:.4f} | 0 | 0 |"
        )
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


def _quant_report(found: dict, args) -> list[str]:
    if not found:
        return []
    return [
        "## LiteRT and int8 on Fashion-MNIST: size, latency, agreement with Keras",
        "",
        f"Models trained briefly with keras-wrs WRS SGD-momentum ({args.train_examples} "
        f"training images, {args.epochs} epochs, batch 128; images padded to 32x32x1), then "
        f"exported with `keras_wrs.export.export_model(formats='{QUANT_FORMATS}')`: int8 "
        "calibrated on 256 training images, parity checked on the first 256 test images. "
        "Agreement, accuracy and score errors are over all 10,000 test images, against the "
        "float32 SavedModel (equal to the Keras copy within 1e-5). Latency: median of "
        f"{args.repeats} single calls after 2 warm-ups, runtimes alternating call by call; "
        f"LiteRT runs with num_threads={os.cpu_count()} and ONNX Runtime with its default "
        "(all cores). 'tflite dynamic-range' is the `tflite_dynamic` format (int8 weights, "
        "float32 activations, no calibration). Scores are logits "
        "for ResNet-20 and softmax probabilities for MobileNetV2 (keras.applications, "
        "BatchNorm momentum set to 0.9 for so short a run).",
        "",
        *_quant_tables(found, args.batches),
        "",
        "Parity tables of these exports (the check every export runs before it is written):",
        "",
        "```",
        *[f"{m}:\n{f['parity']}" for m, f in found.items()],
        "```",
        "",
        "Default int8 rule (top-1 agreement >= 0.99 and max error <= 0.25 x max |score| on the "
        "256-image check batch) on these rows: "
        + "; ".join(
            f"{m} {rt}: {'PASS' if ok else 'FAIL'}"
            for m, f in found.items()
            for rt, ok in f["verdicts"].items()
        )
        + ".",
        "",
        "Training time per model (s): "
        + ", ".join(f"{m} {f['train_s']:.0f}" for m, f in found.items())
        + ".",
        "",
    ]


def report(rows, parity, precision, args, load_before, wall, found=None) -> str:
    """The results file as Markdown."""
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items() if v)
    quant = ",".join(args.quant_models) or "none"
    return "\n".join(
        [
            "# Export benchmark: ONNX Runtime vs TensorFlow SavedModel on CPU",
            "",
            f"Command: `python benchmarks/bench_export.py --models {','.join(args.models)} "
            f"--batches {','.join(map(str, args.batches))} --repeats {args.repeats} "
            f"--quant-models {quant} --train-examples {args.train_examples} "
            f"--epochs {args.epochs}`",
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
            *_quant_report(found or {}, args),
        ]
    )


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="resnet20,vgg16_bn",
        type=lambda s: [m for m in s.split(",") if m and m != "none"],
        help="models for the SavedModel vs ONNX part, or 'none'",
    )
    parser.add_argument("--batches", default="1,64", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--quant-models",
        default="resnet20,mobilenetv2",
        type=lambda s: [m for m in s.split(",") if m and m != "none"],
        help="models for the LiteRT/int8 part, or 'none'",
    )
    parser.add_argument("--train-examples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=MIN_ACCURACY,
        help="stop when a trained model's test accuracy is below this "
        f"(default {MIN_ACCURACY}; 0 for smoke runs)",
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("export_results.md")))
    args = parser.parse_args(argv)
    if any(m not in QUANT_BUILDERS for m in args.quant_models):
        parser.error(
            f"--quant-models must be from {sorted(QUANT_BUILDERS)} or 'none'; "
            f"received {args.quant_models}"
        )
    unknown = [m for m in args.models if m not in BUILDERS]
    if unknown or not (args.models or args.quant_models):
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
        found = quantized_section(
            args.quant_models,
            args.batches,
            args.repeats,
            Path(workdir),
            args.train_examples,
            args.epochs,
            args.min_accuracy,
        )
    text = report(rows, parity, precision, args, load_before, time.perf_counter() - start, found)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

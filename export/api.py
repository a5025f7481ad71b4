"""`export_model`: float32 copy, every format, parity against the trained model, atomic commit.

Layout of an export directory:

    saved_model/         TensorFlow SavedModel, signature "serving_default" (= "serve")
    model.onnx           float32 ONNX
    model.float16.onnx   float16 weights, float32 inputs/outputs (with float16=True)
    model.tflite         LiteRT (TFLite) float32
    model.int8.tflite    LiteRT full-integer int8 (int8 input and output)
    model.int8.onnx      ONNX static QDQ int8 (float32 input and output)
    export.json          manifest: every file with its size and parity rows, metadata,
                         calibration, versions

The parity check always includes the model as the user trained it: its
outputs are compared with the float32 inference copy (float32 tolerance, or
the float16 one when it computes under a mixed policy), and every exported
file is compared with that copy. A copy that lost state (a `Normalization`
layer without its statistics) therefore fails the export.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from keras_wrs.export import atomic
from keras_wrs.export import formats as fm
from keras_wrs.export.errors import ConversionError, ParityError
from keras_wrs.export.formats import FORMATS, parse_formats
from keras_wrs.export.formats import onnx as ox
from keras_wrs.export.inference import inference_copy, input_shape
from keras_wrs.export.inputs import (
    DEFAULT_CALIBRATION_SIZE,
    ParityBatch,
    as_parity_batch,
    check_calibration,
    load_batch,
    load_calibration,
    random_batch,
)
from keras_wrs.export.metadata import artifact_size, build_manifest, build_metadata
from keras_wrs.export.parity import FLOAT16, FLOAT32, INT8, ParityReport, Tolerance, run_parity
from keras_wrs.export.plan import ExportPlan, make_plan
from keras_wrs.export.source import ExportSource, load_source, run_calibration, run_test_batch
from keras_wrs.selection import iter_layers

__all__ = ["FORMATS", "ExportResult", "export_model", "parse_formats"]

MANIFEST_FILE = atomic.MANIFEST_FILE
DEFAULT_REAL_BATCH = 256  # see keras_wrs.export.parity: the quantized top-1 rule needs >= 100


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and verified.

    Attributes:
        output: the export directory, or `None` after a check-only run.
        files: artifact name (`saved_model`, `onnx`, `onnx_float16`,
            `tflite`, `tflite_int8`, `tflite_dynamic`, `onnx_int8`, `manifest`) to its path
            (inside `output`, or relative when nothing was written).
        sizes: artifact name to size in bytes.
        report: the parity report.
        metadata: the metadata stored with the export.
        opset: the ONNX opset, or `None` without ONNX.
        errors: format to error message for formats that could not be made.
    """

    output: Path | None
    files: dict
    sizes: dict
    report: ParityReport
    metadata: dict
    opset: int | None
    errors: dict

    def summary(self) -> str:
        """Paths, sizes and the parity table, as printed by the CLI."""
        where = str(self.output) if self.output else "(check only: nothing written)"
        lines = [f"Export: {where}"]
        lines += [
            f"  {name:<13} {path}  ({_human(self.sizes[name])})"
            for name, path in self.files.items()
        ]
        lines += [f"  {fmt:<13} NOT EXPORTED: {msg}" for fmt, msg in self.errors.items()]
        return "\n".join(lines + ["", self.report.table()])


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _default_output(source: ExportSource) -> Path:
    if source.run_dir is not None:
        return source.run_dir / "export"
    if source.model_path is not None:
        return source.model_path.with_name(source.model_path.stem + "_export")
    raise ValueError(
        "`output` is required when exporting an in-memory model. Pass a directory to create, "
        "e.g. output='exports/my_model'."
    )


def _check_not_source(output: Path, source: ExportSource) -> None:
    """Refuses an output that would replace the model being exported."""
    if source.model_path is None:
        return
    if output.resolve() in source.model_path.resolve().parents:
        raise ValueError(
            f"`output`={str(output)!r} contains the model being exported "
            f"({str(source.model_path)!r}); replacing it would delete the model. Choose "
            "another output directory, e.g. RUN_DIR/export."
        )


def _parity_batch(plan: ExportPlan, shape, source: ExportSource) -> ParityBatch:
    batch = plan.batch
    if isinstance(batch, (str, Path)):
        batch = load_batch(batch, batch_key=plan.batch_key)
    if batch is not None:
        return as_parity_batch(batch, shape)
    size = DEFAULT_REAL_BATCH if plan.batch_size is None else plan.batch_size
    real, reason = run_test_batch(source.record, size)
    if real is not None:
        return as_parity_batch(real, shape)
    size = 8 if plan.batch_size is None else plan.batch_size
    fallback = random_batch(shape, batch_size=size, seed=plan.seed)
    return dataclasses.replace(fallback, description=f"{fallback.description}; {reason}")


def _check_real(pbatch: ParityBatch, formats) -> None:
    quantized = [f for f in formats if f in fm.QUANTIZED]
    if quantized and not pbatch.real:
        raise ValueError(
            f"Formats {quantized} are checked by top-1 agreement on real examples, but the "
            f"parity batch is {pbatch.description}. Pass `batch=` (CLI: --batch FILE.npz) with "
            "held-out model inputs, or export a run directory whose data can be read."
        )


def _calibration(plan: ExportPlan, shape, source: ExportSource):
    if not plan.calibrated:
        return None
    calibration = plan.calibration
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration, key=plan.calibration_key)
    if calibration is None:
        calibration = run_calibration(source.record, plan.calibration_size, plan.seed)
    return check_calibration(calibration, shape)


def _mixed_policies(model) -> list[str]:
    return sorted(
        {
            layer.dtype_policy.name
            for layer in iter_layers(model)
            if layer.dtype_policy.compute_dtype != "float32"
        }
    )


def _source_runtime(model, tolerances) -> tuple:
    """The model as trained, compared with its float32 copy."""
    policies = _mixed_policies(model)
    policy = ", ".join(policies) if policies else "float32"
    tol = tolerances["float16"] if policies else tolerances["float32"]
    return (
        f"keras source model as trained ({policy})",
        lambda x: model(x, training=False),
        tol,
        True,
        None,
    )


def _build_verified(staging, source, copy, pbatch, plan: ExportPlan, metadata, cal):
    """Writes every format into `staging`, checks parity, writes the manifest."""
    written = fm.write_formats(
        staging,
        plan.artifacts,
        model=copy,
        names=plan.names,
        opset=plan.opset,
        metadata=metadata,
        calibration=cal,
    )
    if not written.files:
        _raise_conversion(next(iter(written.errors.values())), None)
    checks = [_source_runtime(source.model, plan.tolerances)]
    checks += fm.runtimes(written, plan.names, plan.opset, plan.tolerances)
    if not written.files:
        _raise_conversion(next(iter(written.errors.values())), None)
    labels = {label: artifact for label, _, _, _, artifact in checks}
    label = f"keras float32 copy of {copy.name!r}"
    report = run_parity(
        lambda x: copy(x, training=False), [c[:4] for c in checks], pbatch, plan.names[1], label
    )
    atomic.raise_if_interrupted()
    if not report.passed:
        failed = ", ".join(row.runtime for row in report.failures())
        raise ParityError(
            f"Parity check failed for: {failed}. Nothing was written and an "
            f"existing export is untouched.\n{report.table()}",
            report,
        )
    sizes = {name: artifact_size(path) for name, path in written.files.items()}
    manifest = build_manifest(
        source, written, staging, sizes, metadata, plan.opset, report, labels, cal
    )
    files = dict(written.files)
    files["manifest"] = staging / MANIFEST_FILE
    files["manifest"].write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    sizes["manifest"] = artifact_size(files["manifest"])
    return files, sizes, report, written.errors


def _raise_conversion(err: ConversionError, result) -> None:
    if result is None:
        note = " Nothing was written."
    elif result.output is None:
        note = " The other formats passed parity (check only: nothing written)."
    else:
        note = f" The other formats passed parity and were written to {result.output}."
    raise type(err)(str(err) + note, err.unsupported, result, err.format) from err


def export_model(
    source,
    output=None,
    *,
    formats=("saved_model", "onnx"),
    opset: int = ox.DEFAULT_OPSET,
    float16: bool = False,
    batch=None,
    batch_key: str | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    calibration=None,
    calibration_key: str | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    tolerance: Tolerance = FLOAT32,
    tolerance_float16: Tolerance = FLOAT16,
    tolerance_int8: Tolerance = INT8,
    overwrite: bool = False,
    check_only: bool = False,
    input_name: str = "images",
    output_name: str = "scores",
    custom_objects: dict | None = None,
) -> ExportResult:
    """Exports a trained model to SavedModel, ONNX and LiteRT, verified against Keras.

    The model is rebuilt in float32 (see `inference_copy`), each format is
    written to a staging directory, the trained model and every runtime are
    compared with the Keras float32 copy on one batch, and only a passing
    export is moved to `output`.

    Args:
        source: a `keras.Model`, a `.keras` file, a run directory holding
            `model.keras` (and `config.json`), or an `ExportSource`.
        output: the export directory to create; defaults to `RUN_DIR/export`
            or `<model>_export` beside a `.keras` file.
        formats: names from `FORMATS` (list or comma-separated):
            `saved_model`, `onnx`, `tflite`, `tflite_int8`, `tflite_dynamic`,
            `onnx_int8`.
        opset: ONNX opset, 9-18 (default 15, see `keras_wrs.export.formats.onnx`; 13 or more
            with `onnx_int8`).
        float16: also write `model.float16.onnx` (float16 weights, for GPUs).
        batch: parity inputs: an array, a `ParityBatch`, or a `.npy`/`.npz`
            path. `None` uses the run's own test data when the source is a
            run directory whose data can be read, else seeded random inputs,
            reported as such (quantized formats then refuse to run).
        batch_key: the array to read from an `.npz` batch.
        batch_size: examples of run test data (default 256) or of random
            inputs (default 8) when `batch` is `None`.
        seed: seed of the random inputs and of the calibration draw.
        calibration: int8 calibration inputs: an array, a `CalibrationSet`
            or a `.npz`/`.npy` path; `None` draws `calibration_size` examples
            from the run's training data.
        calibration_key: the array to read from an `.npz` calibration file.
        calibration_size: examples drawn from the run's training data.
        tolerance: criterion for float32 runtimes (default atol=1e-5,
            rtol=1e-4, full top-1 agreement; justified in
            `keras_wrs.export.parity`).
        tolerance_float16: criterion for float16 runtimes (default atol=1e-2,
            rtol=5e-2, top-1 reported only).
        tolerance_int8: criterion for int8 runtimes (default top-1 agreement
            >= 0.99 and error <= 0.25 of the output's size).
        overwrite: replace an existing keras-wrs export at `output`.
        check_only: run everything in a temporary directory, write nothing.
        input_name: name of the input in every format.
        output_name: name of the output in every format.
        custom_objects: classes needed to load a `.keras` file.

    Returns:
        An `ExportResult`.

    Raises:
        ParityError: the copy or a runtime disagrees with Keras; nothing is
            written.
        ConversionError: a format was impossible (`OnnxConversionError`,
            `TfliteConversionError`); the other formats are written if they
            pass, and the error carries their result.
        FileExistsError, FileNotFoundError, PermissionError, ValueError,
            TypeError: bad arguments, detected before any file is written.
        ExportInterrupted: SIGTERM or Ctrl-C arrived; nothing is left behind.
            It is a `KeyboardInterrupt`.
    """
    plan = make_plan(
        formats=formats,
        opset=opset,
        float16=float16,
        input_name=input_name,
        output_name=output_name,
        tolerances={"float32": tolerance, "float16": tolerance_float16, "int8": tolerance_int8},
        batch=batch,
        batch_key=batch_key,
        batch_size=batch_size,
        seed=seed,
        calibration=calibration,
        calibration_key=calibration_key,
        calibration_size=calibration_size,
        overwrite=overwrite,
        check_only=check_only,
    )
    if not isinstance(source, ExportSource):
        source = load_source(source, custom_objects=custom_objects)
    with atomic.interruptible():
        if plan.check_only:
            return _export(source, None, plan)
        output = Path(output) if output is not None else _default_output(source)
        _check_not_source(output, source)
        output = atomic.check_target(output, plan.overwrite)
        with atomic.export_lock(output):
            return _export(source, output, plan)


def _export(source: ExportSource, output: Path | None, plan: ExportPlan) -> ExportResult:
    copy = inference_copy(source.model)
    shape = input_shape(copy)
    pbatch = _parity_batch(plan, shape, source)
    _check_real(pbatch, plan.formats)
    cal = _calibration(plan, shape, source)
    metadata = build_metadata(source, copy, *plan.names)
    atomic.raise_if_interrupted()
    with atomic.staging_directory(None if output is None else output.parent) as staging:
        files, sizes, report, errors = _build_verified(
            staging, source, copy, pbatch, plan, metadata, cal
        )
        final = None if output is None else atomic.commit(staging, output, plan.overwrite)
    base = final if final is not None else Path(".")
    files = {name: base / path.relative_to(staging) for name, path in files.items()}
    result = ExportResult(
        final,
        files,
        sizes,
        report,
        metadata,
        plan.opset,
        {fmt: str(err) for fmt, err in errors.items()},
    )
    if errors:
        _raise_conversion(next(iter(errors.values())), result)
    return result

"""`export_model`: float32 copy, SavedModel and ONNX, parity check, atomic commit.

Layout of an export directory:

    saved_model/         TensorFlow SavedModel, signature "serving_default" (= "serve")
    model.onnx           float32 ONNX (when "onnx" is among the formats)
    model.float16.onnx   float16 weights, float32 inputs/outputs (with float16=True)
    export.json          manifest: files, sizes, metadata, parity report, versions
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from keras_wrs.export import atomic
from keras_wrs.export import onnx_export as ox
from keras_wrs.export import saved_model as sm
from keras_wrs.export.batch import ParityBatch, as_parity_batch, load_batch, random_batch
from keras_wrs.export.errors import OnnxConversionError, ParityError
from keras_wrs.export.inference import all_layers, inference_copy, input_shape
from keras_wrs.export.metadata import build_metadata, library_versions
from keras_wrs.export.parity import FLOAT16, FLOAT32, ParityReport, Tolerance, run_parity
from keras_wrs.export.source import ExportSource, load_source

__all__ = ["FORMATS", "ExportResult", "export_model", "parse_formats"]

FORMATS = ("saved_model", "onnx")
SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "model.onnx"
ONNX_FLOAT16_FILE = "model.float16.onnx"
MANIFEST_FILE = "export.json"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and verified.

    Attributes:
        output: the export directory, or `None` after a check-only run.
        files: artifact name (`saved_model`, `onnx`, `onnx_float16`,
            `manifest`) to its path (inside `output`, or relative when
            nothing was written).
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
        lines += [f"  {name:<13} {path}  ({_human(self.sizes[name])})"
                  for name, path in self.files.items()]
        lines += [f"  {fmt:<13} NOT EXPORTED: {msg}" for fmt, msg in self.errors.items()]
        return "\n".join(lines + ["", self.report.table()])


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def parse_formats(formats) -> tuple[str, ...]:
    """Normalizes `"saved_model,onnx"` or a sequence of format names.

    Args:
        formats: a comma-separated string or a sequence of names.

    Returns:
        The formats in canonical order, without repeats.

    Raises:
        ValueError: an unknown or empty format list.
    """
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(
            f"`formats` must name one or more of {', '.join(FORMATS)}. Received: "
            f"formats={formats!r}. Example: formats='saved_model,onnx'."
        )
    return tuple(f for f in FORMATS if f in names)


def _check_names(input_name: str, output_name: str) -> None:
    for arg, name in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"`{arg}` must be an identifier (letters, digits, underscore). "
                f"Received: {arg}={name!r}"
            )
    if input_name == output_name:
        raise ValueError(
            f"`input_name` and `output_name` must differ. Received: both {input_name!r}"
        )


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


def _parity_batch(batch, batch_key, batch_size: int, seed: int, shape) -> ParityBatch:
    if batch is None:
        return random_batch(shape, batch_size=batch_size, seed=seed)
    if isinstance(batch, (str, Path)):
        batch = load_batch(batch, batch_key=batch_key)
    return as_parity_batch(batch, shape)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_onnx(copy, staging, opset, float16, names, metadata, errors) -> dict:
    meta = {**metadata, "opset": opset, "precision": "float32"}
    try:
        proto = ox.convert_to_onnx(copy, opset, *names)
        files = {"onnx": ox.save_onnx(proto, staging / ONNX_FILE, meta)}
    except OnnxConversionError as err:
        errors["onnx"] = err
        return {}
    if float16:
        try:
            half = ox.float16_copy(proto)
            meta = {**meta, "precision": "float16"}
            files["onnx_float16"] = ox.save_onnx(half, staging / ONNX_FLOAT16_FILE, meta)
        except OnnxConversionError as err:
            errors["onnx_float16"] = err
    return files


def _write_formats(copy, staging, formats, opset, float16, names, metadata):
    files, errors = {}, {}
    if "saved_model" in formats:
        files["saved_model"] = sm.write_saved_model(copy, staging / SAVED_MODEL_DIR, *names)
    if "onnx" in formats:
        files.update(_write_onnx(copy, staging, opset, float16, names, metadata, errors))
    return files, errors


def _mixed_policies(model) -> list[str]:
    return sorted({layer.dtype_policy.name for layer in all_layers(model)
                   if layer.dtype_policy.compute_dtype != "float32"})


def _runtimes(files, source_model, opset, names, tol32, tol16):
    input_name, output_name = names
    runtimes = []
    policies = _mixed_policies(source_model)
    if policies:
        label = f"keras source model ({', '.join(policies)})"
        runtimes.append((label, lambda x: source_model(x, training=False), tol16))
    if "saved_model" in files:
        path = files["saved_model"]
        runtimes.append(
            ("saved_model: tf.saved_model.load", sm.load_signature(path, *names), tol32))
        runtimes.append(
            ("saved_model: keras TFSMLayer", sm.load_tfsm_layer(path, output_name), tol32))
    if "onnx" in files:
        run = ox.load_onnx_runner(files["onnx"], input_name)
        runtimes.append((f"onnx: onnxruntime CPU (opset {opset})", run, tol32))
    if "onnx_float16" in files:
        run = ox.load_onnx_runner(files["onnx_float16"], input_name)
        runtimes.append(("onnx float16: onnxruntime CPU", run, tol16))
    return runtimes


def _manifest(source, files, staging, sizes, metadata, opset, report, errors) -> dict:
    return {
        "source": source.label,
        "files": {name: str(path.relative_to(staging)) for name, path in files.items()},
        "sizes": sizes,
        "serving": {"signature": "serving_default", "endpoint": sm.ENDPOINT,
                    "onnx_batch_dim": ox.BATCH_DIM},
        "opset": opset,
        "metadata": metadata,
        "parity": report.as_dict(),
        "errors": {fmt: str(err) for fmt, err in errors.items()},
        "versions": library_versions(),
    }


def _build_verified(staging, source, copy, pbatch, formats, opset, float16, names, metadata,
                    tolerances):
    """Writes every format into `staging`, checks parity, writes the manifest."""
    files, errors = _write_formats(copy, staging, formats, opset, float16, names, metadata)
    if not files:
        _raise_conversion(next(iter(errors.values())), None)
    runtimes = _runtimes(files, source.model, opset, names, *tolerances)
    label = f"keras float32 copy of {copy.name!r}"
    report = run_parity(lambda x: copy(x, training=False), runtimes, pbatch, names[1], label)
    if not report.passed:
        failed = ", ".join(row.runtime for row in report.failures())
        raise ParityError(f"Parity check failed for: {failed}. Nothing was written and an "
                          f"existing export is untouched.\n{report.table()}", report)
    sizes = {name: _size(path) for name, path in files.items()}
    manifest = _manifest(source, files, staging, sizes, metadata, opset, report, errors)
    files["manifest"] = staging / MANIFEST_FILE
    files["manifest"].write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    sizes["manifest"] = _size(files["manifest"])
    return files, sizes, report, errors


def _check_tolerances(tolerance, tolerance_float16) -> None:
    for arg, value in (("tolerance", tolerance), ("tolerance_float16", tolerance_float16)):
        if not isinstance(value, Tolerance):
            raise TypeError(
                f"`{arg}` must be a keras_wrs.export.Tolerance, e.g. Tolerance(atol=1e-5, "
                f"rtol=1e-4). Received: {arg}={value!r}"
            )


def _raise_conversion(err: OnnxConversionError, result) -> None:
    if result is None:
        note = " Nothing was written."
    elif result.output is None:
        note = " The other formats passed parity (check only: nothing written)."
    else:
        note = f" The other formats passed parity and were written to {result.output}."
    raise OnnxConversionError(str(err) + note, err.unsupported, result) from err


def export_model(
    source,
    output=None,
    *,
    formats=FORMATS,
    opset: int = ox.DEFAULT_OPSET,
    float16: bool = False,
    batch=None,
    batch_key: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
    tolerance: Tolerance = FLOAT32,
    tolerance_float16: Tolerance = FLOAT16,
    overwrite: bool = False,
    check_only: bool = False,
    input_name: str = "images",
    output_name: str = "scores",
    custom_objects: dict | None = None,
) -> ExportResult:
    """Exports a trained model to SavedModel and/or ONNX, verified against Keras.

    The model is rebuilt in float32 (see `inference_copy`), each format is
    written to a staging directory, every runtime is compared with the Keras
    float32 copy on one batch, and only a passing export is moved to
    `output`.

    Args:
        source: a `keras.Model`, a `.keras` file, a run directory holding
            `model.keras` (and `config.json`), or an `ExportSource`.
        output: the export directory to create; defaults to `RUN_DIR/export`
            or `<model>_export` beside a `.keras` file.
        formats: `"saved_model"`, `"onnx"` or both (list or comma-separated).
        opset: ONNX opset, 14-18 (default 15, see `onnx_export`).
        float16: also write `model.float16.onnx` (float16 weights, for GPUs).
        batch: parity inputs: an array, a `ParityBatch`, or a `.npy`/`.npz`
            path. `None` uses seeded random inputs, reported as such.
        batch_key: the array to read from an `.npz` batch.
        batch_size: number of random inputs when `batch` is `None`.
        seed: seed of the random inputs.
        tolerance: criterion for float32 runtimes (default atol=1e-5,
            rtol=1e-4, full top-1 agreement; justified in
            `keras_wrs.export.parity`).
        tolerance_float16: criterion for float16 runtimes (default atol=1e-2,
            rtol=5e-2, top-1 reported only).
        overwrite: replace an existing export at `output`.
        check_only: run everything in a temporary directory, write nothing.
        input_name: name of the input in both formats.
        output_name: name of the output in both formats.
        custom_objects: classes needed to load a `.keras` file.

    Returns:
        An `ExportResult`.

    Raises:
        ParityError: a runtime disagrees with Keras; nothing is written.
        OnnxConversionError: ONNX was impossible; the other formats are
            written if they pass, and the error carries their result.
        FileExistsError, FileNotFoundError, PermissionError, ValueError,
            TypeError: bad arguments, detected before any file is written.
    """
    formats = parse_formats(formats)
    opset = ox.validate_opset(opset) if "onnx" in formats else None
    if float16 and "onnx" not in formats:
        raise ValueError("`float16=True` makes an ONNX file; add 'onnx' to `formats`.")
    _check_names(input_name, output_name)
    _check_tolerances(tolerance, tolerance_float16)
    if not isinstance(source, ExportSource):
        source = load_source(source, custom_objects=custom_objects)
    if not check_only:
        output = Path(output) if output is not None else _default_output(source)
        _check_not_source(output, source)
        output = atomic.check_target(output, overwrite)
    copy = inference_copy(source.model)
    pbatch = _parity_batch(batch, batch_key, batch_size, seed, input_shape(copy))
    names = (input_name, output_name)
    metadata = build_metadata(source, copy, *names)
    with atomic.staging_directory(None if check_only else output.parent) as staging:
        files, sizes, report, errors = _build_verified(
            staging, source, copy, pbatch, formats, opset, float16, names, metadata,
            (tolerance, tolerance_float16))
        final = None if check_only else atomic.commit(staging, output, overwrite)
    base = final if final is not None else Path(".")
    files = {name: base / path.relative_to(staging) for name, path in files.items()}
    result = ExportResult(final, files, sizes, report, metadata, opset,
                          {fmt: str(err) for fmt, err in errors.items()})
    if errors:
        _raise_conversion(next(iter(errors.values())), result)
    return result

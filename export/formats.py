"""Writing each export format into the staging directory, and the runtimes that check them.

Every format starts from one SavedModel of the float32 inference copy: ONNX
is converted from it by tf2onnx, LiteRT by the TFLite converter (float32,
full-integer int8, or dynamic-range: int8 weights and float32 activations),
and the int8 ONNX file is quantized from the float32 ONNX file. When the SavedModel
or the float32 ONNX file is not itself requested it is written to a hidden
scratch path in the staging directory and removed before the commit. A
format that fails to convert or to load is recorded with its error; the
others go on.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from keras_wrs.export import atomic
from keras_wrs.export import onnx_export as ox
from keras_wrs.export import onnx_quant as oq
from keras_wrs.export import saved_model as sm
from keras_wrs.export import tflite_export as tl
from keras_wrs.export.errors import ConversionError

__all__ = ["FORMATS", "QUANTIZED", "CALIBRATED", "FILES", "Written", "parse_formats", "write_formats",
           "runtimes"]

FORMATS = ("saved_model", "onnx", "tflite", "tflite_int8", "tflite_dynamic", "onnx_int8")
# Checked by top-1 agreement on real examples (the int8 tolerance).
QUANTIZED = ("tflite_int8", "tflite_dynamic", "onnx_int8")
# Need a calibration set.
CALIBRATED = ("tflite_int8", "onnx_int8")
FILES = {
    "saved_model": "saved_model",
    "onnx": "model.onnx",
    "onnx_float16": "model.float16.onnx",
    "tflite": "model.tflite",
    "tflite_int8": "model.int8.tflite",
    "tflite_dynamic": "model.dynamic.tflite",
    "onnx_int8": "model.int8.onnx",
}
_SCRATCH = {"saved_model": ".scratch_saved_model", "onnx": ".scratch_model.onnx"}


@dataclasses.dataclass
class Written:
    """What `write_formats` produced.

    Attributes:
        files: artifact name to path (requested artifacts only).
        errors: artifact name to the `ConversionError` that stopped it.
        details: artifact name to JSON-ready facts (precision, quantization).
    """

    files: dict
    errors: dict
    details: dict


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
            f"formats={formats!r}. Example: formats='saved_model,onnx,tflite'."
        )
    return tuple(f for f in FORMATS if f in names)


def _saved_model(copy, staging, formats, names, out: Written) -> Path:
    keep = "saved_model" in formats
    path = staging / (FILES["saved_model"] if keep else _SCRATCH["saved_model"])
    sm.write_saved_model(copy, path, *names)
    if keep:
        out.files["saved_model"] = path
        out.details["saved_model"] = {"precision": "float32"}
    return path


def _onnx(copy, staging, formats, opts, source, out: Written) -> Path | None:
    keep = "onnx" in formats
    path = staging / (FILES["onnx"] if keep else _SCRATCH["onnx"])
    meta = {**opts["metadata"], "format": "onnx", "opset": opts["opset"], "precision": "float32"}
    try:
        proto = ox.convert_to_onnx(source, copy, opts["opset"], *opts["names"])
        ox.save_onnx(proto, path, meta)
    except ConversionError as err:
        for fmt in ("onnx", "onnx_int8"):
            if fmt in formats:
                out.errors[fmt] = err
        return None
    if keep:
        out.files["onnx"] = path
        out.details["onnx"] = {"precision": "float32", "opset": opts["opset"]}
        if opts["float16"]:
            _onnx_float16(proto, staging, meta, out)
    return path


def _onnx_float16(proto, staging, meta, out: Written) -> None:
    try:
        half = ox.float16_copy(proto)
        path = ox.save_onnx(half, staging / FILES["onnx_float16"], {**meta, "precision": "float16"})
    except ConversionError as err:
        out.errors["onnx_float16"] = err
        return
    out.files["onnx_float16"] = path
    out.details["onnx_float16"] = {"precision": "float16 weights, float32 input and output"}


def _onnx_int8(float_path, staging, opts, out: Written) -> None:
    cal = opts["calibration"]
    path = staging / FILES["onnx_int8"]
    try:
        proto = oq.quantize_onnx(float_path, path, cal.inputs, opts["names"][0])
        summary = {**oq.quantization_summary(proto), "calibration": cal.summary()}
        meta = {**opts["metadata"], "format": "onnx_int8", "opset": opts["opset"],
                "precision": "int8", "quantization": summary}
        ox.save_onnx(proto, path, meta)
    except ConversionError as err:
        path.unlink(missing_ok=True)
        out.errors["onnx_int8"] = err
        return
    out.files["onnx_int8"] = path
    out.details["onnx_int8"] = {"precision": "int8", "quantization": summary}


_TFLITE_PRECISION = {"tflite": "float32", "tflite_int8": "int8",
                     "tflite_dynamic": "dynamic-range int8"}
_TFLITE_SCHEME = {
    "tflite_int8": "full-integer post-training quantization: weights int8 per channel, "
                   "activations int8, int8 input and output",
    "tflite_dynamic": "dynamic-range quantization: weights int8, activations float32 "
                      "(quantized on the fly where a kernel supports it), float32 input and "
                      "output, no calibration",
}


def _tflite(copy, source, staging, fmt, opts, out: Written) -> None:
    cal = opts["calibration"] if fmt == "tflite_int8" else None
    path = staging / FILES[fmt]
    try:
        content = tl.convert_tflite(source, copy, None if cal is None else cal.inputs,
                                    dynamic_range=fmt == "tflite_dynamic")
    except ConversionError as err:
        out.errors[fmt] = err
        return
    path.write_bytes(content)
    io = tl.io_quantization(path)
    dynamic = io["input"]["shape_signature"][0] == -1
    detail = {"precision": _TFLITE_PRECISION[fmt], "input_output": io, "dynamic_batch": dynamic}
    if fmt in _TFLITE_SCHEME:
        detail["quantization"] = {"scheme": _TFLITE_SCHEME[fmt]}
        if cal is not None:
            detail["quantization"]["calibration"] = cal.summary()
    meta = {**opts["metadata"], "format": fmt, **detail}
    path.write_bytes(tl.add_metadata(content, meta))
    out.files[fmt] = path
    out.details[fmt] = detail


def write_formats(copy, staging: Path, formats, opts: dict) -> Written:
    """Writes every requested format of `copy` into `staging`.

    Args:
        copy: the float32 inference copy.
        staging: the staging directory.
        formats: parsed formats.
        opts: `names` (input, output), `opset`, `float16`, `metadata` and
            `calibration` (a `CalibrationSet`, for the int8 formats).

    Returns:
        A `Written`; scratch files are removed.
    """
    out = Written({}, {}, {})
    source = _saved_model(copy, staging, formats, opts["names"], out)
    atomic.raise_if_interrupted()  # checkpoints: a signal stops the export between steps
    if {"onnx", "onnx_int8"} & set(formats):
        float_onnx = _onnx(copy, staging, formats, opts, source, out)
        atomic.raise_if_interrupted()
        if float_onnx is not None and "onnx_int8" in formats:
            _onnx_int8(float_onnx, staging, opts, out)
            atomic.raise_if_interrupted()
    for fmt in ("tflite", "tflite_int8", "tflite_dynamic"):
        if fmt in formats:
            _tflite(copy, source, staging, fmt, opts, out)
            atomic.raise_if_interrupted()
    remove_scratch(staging)
    return out


def remove_scratch(staging: Path) -> None:
    """Deletes the scratch SavedModel and ONNX file, if any."""
    shutil.rmtree(staging / _SCRATCH["saved_model"], ignore_errors=True)
    (staging / _SCRATCH["onnx"]).unlink(missing_ok=True)


_LABELS = {
    "onnx": "onnx: onnxruntime CPU (opset {opset})",
    "onnx_float16": "onnx float16: onnxruntime CPU",
    "onnx_int8": "onnx int8 (QDQ): onnxruntime CPU",
    "tflite": "tflite: LiteRT interpreter",
    "tflite_int8": "tflite int8: LiteRT interpreter",
    "tflite_dynamic": "tflite dynamic-range: LiteRT interpreter",
}


def _loader(name, path, names):
    if name.startswith("onnx"):
        return ox.load_onnx_runner(path, names[0])
    return tl.load_tflite_runner(path, *names)


def runtimes(written: Written, names, opset, tolerances: dict) -> list[tuple]:
    """The runtimes that check each written file, and the file each one checks.

    A file that its runtime cannot load is moved from `written.files` to
    `written.errors` and deleted.

    Args:
        written: what `write_formats` produced.
        names: `(input_name, output_name)`.
        opset: the ONNX opset (for labels).
        tolerances: `float32`, `float16` and `int8` `Tolerance`s.

    Returns:
        `(label, function, tolerance, logits, artifact)` tuples.
    """
    found = []
    if "saved_model" in written.files:
        path = written.files["saved_model"]
        tol = tolerances["float32"]
        found.append(("saved_model: tf.saved_model.load", sm.load_signature(path, *names), tol,
                      True, "saved_model"))
        found.append(("saved_model: keras TFSMLayer", sm.load_tfsm_layer(path, names[1]), tol,
                      True, "saved_model"))
    for name in ("onnx", "onnx_float16", "tflite", "onnx_int8", "tflite_int8", "tflite_dynamic"):
        if name not in written.files:
            continue
        kind = "int8" if name in QUANTIZED else "float16" if name == "onnx_float16" else "float32"
        atomic.raise_if_interrupted()
        try:
            run = _loader(name, written.files[name], names)
        except ConversionError as err:
            written.errors[name] = err
            path = written.files.pop(name)
            path.unlink(missing_ok=True)
            continue
        label = _LABELS[name].format(opset=opset)
        found.append((label, run, tolerances[kind], kind != "int8", name))
    return found

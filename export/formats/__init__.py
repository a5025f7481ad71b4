"""The export formats: one `FormatSpec` per file, how it is written, and what checks it.

Every format starts from one SavedModel of the float32 inference copy: ONNX
is converted from it by tf2onnx, LiteRT by the TFLite converter (float32,
full-integer int8, or dynamic-range: int8 weights and float32 activations),
and the float16 and int8 ONNX files are made from the float32 ONNX file. When
the SavedModel or the float32 ONNX file is not itself requested it is written
to a hidden scratch path in the staging directory and removed before the
commit. A format that fails to convert or to load is recorded with its error;
the others go on.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from collections.abc import Callable
from pathlib import Path

from keras_wrs.export import atomic
from keras_wrs.export.errors import ConversionError
from keras_wrs.export.formats import litert, onnx, onnx_int8, saved_model
from keras_wrs.export.formats._common import WriteJob

__all__ = [
    "FORMATS",
    "SPECS",
    "QUANTIZED",
    "CALIBRATED",
    "FILES",
    "FormatSpec",
    "Written",
    "parse_formats",
    "write_formats",
    "remove_scratch",
    "runtimes",
]

# The names `formats=` accepts, in the order `parse_formats` returns them.
FORMATS = ("saved_model", "onnx", "tflite", "tflite_int8", "tflite_dynamic", "onnx_int8")


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """One exported artifact: its file, how it is written and what checks it.

    Attributes:
        name: the artifact's name in `ExportResult.files` and the manifest.
        file: its file (or directory) name in the export directory.
        precision: the tolerance it is checked with: `float32`, `float16` or
            `int8` (int8 files are checked by top-1 agreement on real
            examples, and have no logits row).
        write: `write(job, path) -> details` writes the file and returns its
            facts for the manifest; it raises `ConversionError`.
        runtimes: `(label, load)` pairs; `load(path, names)` returns a
            function from float32 inputs to outputs (`{opset}` in a label is
            filled in).
        requires: the artifact it is made from, if any.
        calibrated: whether it needs a calibration set.
    """

    name: str
    file: str
    precision: str
    write: Callable
    runtimes: tuple[tuple[str, Callable], ...]
    requires: str | None = None
    calibrated: bool = False

    @property
    def quantized(self) -> bool:
        """Whether the file is checked by top-1 agreement on real examples."""
        return self.precision == "int8"

    @property
    def scratch(self) -> str:
        """Where it is written when only a later format needs it."""
        return f".scratch_{self.file}"


def _onnx_runner(path, names):
    return onnx.load_onnx_runner(path, names[0])


def _litert_runner(path, names):
    return litert.load_tflite_runner(path, *names)


def _signature_runner(path, names):
    return saved_model.load_signature(path, *names)


def _tfsm_runner(path, names):
    return saved_model.load_tfsm_layer(path, names[1])


# In the order they are written and checked.
SPECS = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "saved_model",
            "saved_model",
            "float32",
            saved_model.write,
            (
                ("saved_model: tf.saved_model.load", _signature_runner),
                ("saved_model: keras TFSMLayer", _tfsm_runner),
            ),
        ),
        FormatSpec(
            "onnx",
            "model.onnx",
            "float32",
            onnx.write,
            (("onnx: onnxruntime CPU (opset {opset})", _onnx_runner),),
            requires="saved_model",
        ),
        FormatSpec(
            "onnx_float16",
            "model.float16.onnx",
            "float16",
            onnx.write_float16,
            (("onnx float16: onnxruntime CPU", _onnx_runner),),
            requires="onnx",
        ),
        FormatSpec(
            "tflite",
            "model.tflite",
            "float32",
            functools.partial(litert.write, fmt="tflite"),
            (("tflite: LiteRT interpreter", _litert_runner),),
            requires="saved_model",
        ),
        FormatSpec(
            "onnx_int8",
            "model.int8.onnx",
            "int8",
            onnx_int8.write,
            (("onnx int8 (QDQ): onnxruntime CPU", _onnx_runner),),
            requires="onnx",
            calibrated=True,
        ),
        FormatSpec(
            "tflite_int8",
            "model.int8.tflite",
            "int8",
            functools.partial(litert.write, fmt="tflite_int8"),
            (("tflite int8: LiteRT interpreter", _litert_runner),),
            requires="saved_model",
            calibrated=True,
        ),
        FormatSpec(
            "tflite_dynamic",
            "model.dynamic.tflite",
            "int8",
            functools.partial(litert.write, fmt="tflite_dynamic"),
            (("tflite dynamic-range: LiteRT interpreter", _litert_runner),),
            requires="saved_model",
        ),
    )
}
QUANTIZED = tuple(name for name, spec in SPECS.items() if spec.quantized)
CALIBRATED = tuple(name for name, spec in SPECS.items() if spec.calibrated)
FILES = {name: spec.file for name, spec in SPECS.items()}


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


def _needed(artifacts) -> list[str]:
    """The requested artifacts and what they are made from, in writing order."""
    needed = set(artifacts)
    for name in reversed(SPECS):
        if name in needed and SPECS[name].requires:
            needed.add(SPECS[name].requires)
    return [name for name in SPECS if name in needed]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_formats(
    staging: Path, artifacts, *, model, names, opset, metadata, calibration
) -> Written:
    """Writes every requested artifact of `model` into `staging`.

    Args:
        staging: the staging directory.
        artifacts: names from `SPECS` (the parsed formats, plus
            `onnx_float16` when asked for).
        model: the float32 inference copy.
        names: `(input_name, output_name)`.
        opset: the ONNX opset, or `None` without ONNX.
        metadata: the export's metadata.
        calibration: a `CalibrationSet` for the calibrated formats, else `None`.

    Returns:
        A `Written`; scratch files are removed.
    """
    needed = _needed(artifacts)
    paths = {
        name: staging / (SPECS[name].file if name in artifacts else SPECS[name].scratch)
        for name in needed
    }
    job = WriteJob(
        model,
        tuple(names),
        opset,
        metadata,
        calibration,
        paths.get("saved_model"),
        paths.get("onnx"),
    )
    out, failed = Written({}, {}, {}), {}
    for name in needed:
        spec, kept = SPECS[name], name in artifacts
        try:
            if spec.requires in failed:  # what it is made from could not be made
                raise failed[spec.requires]
            details = spec.write(job, paths[name])
        except ConversionError as err:
            _remove(paths[name])
            failed[name] = err
            if kept:
                out.errors[name] = err
            continue
        if kept:
            out.files[name], out.details[name] = paths[name], details
        atomic.raise_if_interrupted()  # checkpoints: a signal stops the export between steps
    remove_scratch(staging)
    return out


def remove_scratch(staging: Path) -> None:
    """Deletes the scratch SavedModel and ONNX file, if any."""
    for spec in SPECS.values():
        _remove(staging / spec.scratch)


def runtimes(written: Written, names, opset, tolerances: dict) -> list[tuple]:
    """The runtimes that check each written file, and the file each one checks.

    A file that its runtime cannot load is moved from `written.files` to
    `written.errors` and deleted.

    Args:
        written: what `write_formats` produced.
        names: `(input_name, output_name)`.
        opset: the ONNX opset (for labels).
        tolerances: precision (`float32`, `float16`, `int8`) to `Tolerance`.

    Returns:
        `(label, function, tolerance, logits, artifact)` tuples.
    """
    found = []
    for name, spec in SPECS.items():
        if name not in written.files:
            continue
        atomic.raise_if_interrupted()
        try:
            loaded = [
                (label.format(opset=opset), load(written.files[name], names))
                for label, load in spec.runtimes
            ]
        except ConversionError as err:
            written.errors[name] = err
            _remove(written.files.pop(name))
            continue
        found += [
            (label, run, tolerances[spec.precision], not spec.quantized, name)
            for label, run in loaded
        ]
    return found

"""`ExportPlan`: every argument of `export_model` but the source and output, checked at once.

Each check runs before any work is done (no model is copied, no file
written), and its message names the argument, the value received and the
fix. Tolerances are keyed by precision (`float32`, `float16`, `int8`), the
keys `keras_wrs.export.formats.FormatSpec.precision` uses.
"""

from __future__ import annotations

import dataclasses
import re
import types

from keras_wrs.export import formats as fm
from keras_wrs.export.formats import onnx as ox
from keras_wrs.export.formats import onnx_int8 as oq
from keras_wrs.export.formats import parse_formats
from keras_wrs.export.inputs import DEFAULT_CALIBRATION_SIZE, count
from keras_wrs.export.parity import Tolerance

__all__ = ["TOLERANCE_ARGUMENTS", "ExportPlan", "make_plan"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The `export_model` argument that sets each precision's tolerance.
TOLERANCE_ARGUMENTS = {
    "float32": "tolerance",
    "float16": "tolerance_float16",
    "int8": "tolerance_int8",
}


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """The arguments of `export_model` besides source and output, checked once, together.

    Attributes:
        formats: the parsed formats, in canonical order.
        opset: the validated ONNX opset, or `None` when no ONNX file is made.
        float16: whether `model.float16.onnx` is written too.
        names: `(input_name, output_name)`.
        tolerances: precision (`float32`, `float16`, `int8`) to `Tolerance`.
        batch: parity inputs as given (array, `ParityBatch`, path or `None`).
        batch_key: the array of an `.npz` batch.
        batch_size: examples of run data or random inputs when `batch` is `None`.
        seed: seed of the random inputs and of the calibration draw.
        calibration: calibration inputs as given (array, `CalibrationSet`,
            path or `None`).
        calibration_key: the array of an `.npz` calibration file.
        calibration_size: examples drawn from the run's training data.
        overwrite: replace an existing keras-wrs export.
        check_only: write nothing.
    """

    formats: tuple[str, ...]
    opset: int | None
    float16: bool
    names: tuple[str, str]
    tolerances: types.MappingProxyType
    batch: object = None
    batch_key: str | None = None
    batch_size: int | None = None
    seed: int = 0
    calibration: object = None
    calibration_key: str | None = None
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    overwrite: bool = False
    check_only: bool = False

    @property
    def artifacts(self) -> tuple[str, ...]:
        """The files to write: the formats, and the float16 ONNX file when asked for."""
        return self.formats + (("onnx_float16",) if self.float16 else ())

    @property
    def calibrated(self) -> bool:
        """Whether a format needs a calibration set."""
        return bool(set(self.formats) & set(fm.CALIBRATED))


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


def _check_tolerances(tolerances: dict) -> None:
    for precision, value in tolerances.items():
        if not isinstance(value, Tolerance):
            arg = TOLERANCE_ARGUMENTS[precision]
            raise TypeError(
                f"`{arg}` must be a keras_wrs.export.Tolerance, e.g. Tolerance(atol=1e-5, "
                f"rtol=1e-4). Received: {arg}={value!r}"
            )


def make_plan(
    *, formats, opset, float16, input_name, output_name, tolerances: dict, **inputs
) -> ExportPlan:
    """Checks `export_model`'s arguments before any work and groups them.

    Args:
        formats: names from `FORMATS` (list or comma-separated).
        opset: the ONNX opset (checked only when an ONNX format is asked for).
        float16: also write the float16 ONNX file.
        input_name: the input's name in every format.
        output_name: the output's name in every format.
        tolerances: precision (`float32`, `float16`, `int8`) to `Tolerance`.
        **inputs: the other fields of `ExportPlan` (batch, calibration,
            overwrite, check_only).

    Returns:
        An `ExportPlan`.

    Raises:
        ValueError, TypeError: an argument is wrong; the message names it,
            the value received and the fix.
    """
    formats = parse_formats(formats)
    uses_onnx = bool({"onnx", "onnx_int8"} & set(formats))
    opset = ox.validate_opset(opset) if uses_onnx else None
    if float16 and "onnx" not in formats:
        raise ValueError("`float16=True` makes an ONNX file; add 'onnx' to `formats`.")
    if "onnx_int8" in formats and opset < oq.MIN_OPSET:
        raise ValueError(
            f"Format 'onnx_int8' quantizes weights per channel, which needs opset "
            f">= {oq.MIN_OPSET}. Received: opset={opset}. Pass opset={oq.MIN_OPSET} "
            f"or more (the default is {ox.DEFAULT_OPSET})."
        )
    _check_names(input_name, output_name)
    _check_tolerances(tolerances)
    plan = ExportPlan(
        formats,
        opset,
        bool(float16),
        (input_name, output_name),
        types.MappingProxyType(dict(tolerances)),
        **inputs,
    )
    if plan.batch is None and plan.batch_size is not None:
        count(plan.batch_size, "batch_size")
    if plan.calibrated:
        count(
            plan.calibration_size, "calibration_size", f"The default is {DEFAULT_CALIBRATION_SIZE}."
        )
    return plan

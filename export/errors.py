"""Errors raised by `keras_wrs.export` when an export cannot be trusted or made.

Bad arguments raise the built-in `ValueError`, `TypeError`, `FileExistsError`
or `OSError` (each message names the argument, the value and the fix); the
classes here cover what only an export can find out.
"""

from __future__ import annotations

__all__ = ["ParityError", "ConversionError", "OnnxConversionError", "TfliteConversionError"]


class ParityError(RuntimeError):
    """An exported model does not reproduce the Keras model within tolerance.

    Attributes:
        report: the `keras_wrs.export.ParityReport` that failed.
    """

    def __init__(self, message: str, report):
        super().__init__(message)
        self.report = report


class ConversionError(RuntimeError):
    """A converter could not express part of the model in one format.

    Attributes:
        unsupported: list of `(layer, layer_class, op_type, node_name)` tuples,
            one per op the converter could not handle.
        result: the `keras_wrs.export.ExportResult` of the formats that were
            exported and verified anyway (for example the SavedModel), or
            `None` when nothing was written.
        format: the export format that failed (`"onnx"`, `"tflite_int8"`, ...).
    """

    format = "export"

    def __init__(self, message: str, unsupported, result=None, format=None):
        super().__init__(message)
        self.unsupported = list(unsupported)
        self.result = result
        if format is not None:
            self.format = format


class OnnxConversionError(ConversionError):
    """tf2onnx or ONNX Runtime could not make or load an ONNX model."""

    format = "onnx"


class TfliteConversionError(ConversionError):
    """The LiteRT (TFLite) converter could not convert or fully quantize the model."""

    format = "tflite"

"""Errors raised by `keras_wrs.export` when an export cannot be trusted or made.

Bad arguments raise the built-in `ValueError`, `TypeError`, `FileExistsError`
or `OSError` (each message names the argument, the value and the fix); the two
classes here cover what only an export can find out.
"""

from __future__ import annotations

__all__ = ["ParityError", "OnnxConversionError"]


class ParityError(RuntimeError):
    """An exported model does not reproduce the Keras model within tolerance.

    Attributes:
        report: the `keras_wrs.export.ParityReport` that failed.
    """

    def __init__(self, message: str, report):
        super().__init__(message)
        self.report = report


class OnnxConversionError(RuntimeError):
    """tf2onnx could not express part of the model in ONNX.

    Attributes:
        unsupported: list of `(layer, layer_class, op_type, node_name)` tuples,
            one per TensorFlow op left unconverted.
        result: the `keras_wrs.export.ExportResult` of the formats that were
            exported and verified anyway (for example the SavedModel), or
            `None` when nothing was written.
    """

    def __init__(self, message: str, unsupported, result=None):
        super().__init__(message)
        self.unsupported = list(unsupported)
        self.result = result

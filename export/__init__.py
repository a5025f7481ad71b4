"""Export trained models to SavedModel, ONNX and LiteRT, verified against Keras."""

from keras_wrs.export.api import FORMATS, ExportResult, export_model, parse_formats
from keras_wrs.export.atomic import ExportInterrupted
from keras_wrs.export.cli import add_export_arguments, run_export
from keras_wrs.export.errors import (
    ConversionError,
    OnnxConversionError,
    ParityError,
    TfliteConversionError,
)
from keras_wrs.export.formats.litert import read_tflite_metadata
from keras_wrs.export.formats.onnx import DEFAULT_OPSET, SUPPORTED_OPSETS, read_metadata
from keras_wrs.export.inference import inference_copy
from keras_wrs.export.inputs import (
    CalibrationSet,
    ParityBatch,
    check_calibration,
    load_batch,
    load_calibration,
    random_batch,
)
from keras_wrs.export.parity import FLOAT16, FLOAT32, INT8, ParityReport, ParityRow, Tolerance
from keras_wrs.export.source import ExportSource, load_source

__all__ = [
    "DEFAULT_OPSET",
    "FLOAT16",
    "FLOAT32",
    "FORMATS",
    "INT8",
    "SUPPORTED_OPSETS",
    "CalibrationSet",
    "ConversionError",
    "ExportInterrupted",
    "ExportResult",
    "ExportSource",
    "OnnxConversionError",
    "ParityBatch",
    "ParityError",
    "ParityReport",
    "ParityRow",
    "TfliteConversionError",
    "Tolerance",
    "add_export_arguments",
    "check_calibration",
    "export_model",
    "inference_copy",
    "load_batch",
    "load_calibration",
    "load_source",
    "parse_formats",
    "random_batch",
    "read_metadata",
    "read_tflite_metadata",
    "run_export",
]
